//! A pod as Elixir sees it: `%PodDist.Pod{}`, derived from the record the index keeps.

use std::net::IpAddr;

use pod_dist_core::host::hosts;
use pod_dist_core::pod::{self, ContainerPort, DistPort, PodRecord};
use rustler::{Encoder, Env, NifMap, NifStruct, NifUnitEnum, NifUntaggedEnum, Term};

/// `%PodDist.Pod{}`: a pod record, with the hosts it is named by in a cluster whose DNS
/// domain is known and the distribution ports it declares. Borrows from the record.
#[derive(NifStruct)]
#[module = "PodDist.Pod"]
#[rustler(encode)]
pub struct Pod<'a> {
    uid: &'a str,
    namespace: &'a str,
    name: &'a str,
    ip: Option<Ip>,
    ips: Vec<Ip>,
    hostname: Option<&'a str>,
    subdomain: Option<&'a str>,
    node_name: Option<&'a str>,
    phase: Phase,
    ready: bool,
    terminating: bool,
    labels: Pairs<'a>,
    annotations: Pairs<'a>,
    ports: Vec<Port<'a>>,
    hosts: Hosts,
    dist_ports: Vec<(Basename<'a>, u16)>,
}

impl<'a> Pod<'a> {
    /// The pod of `record` in a cluster whose DNS domain is `cluster_domain`.
    pub fn new(record: &'a PodRecord, cluster_domain: &str) -> Pod<'a> {
        let built = hosts(record, cluster_domain);
        Pod {
            uid: &record.uid,
            namespace: &record.namespace,
            name: &record.name,
            ip: record.ip().map(Ip),
            ips: record.ips.iter().copied().map(Ip).collect(),
            hostname: record.hostname.as_deref(),
            subdomain: record.subdomain.as_deref(),
            node_name: record.node_name.as_deref(),
            phase: record.phase.into(),
            ready: record.ready,
            terminating: record.terminating,
            labels: Pairs(&record.labels),
            annotations: Pairs(&record.annotations),
            ports: record.ports.iter().map(Port::from).collect(),
            hosts: Hosts {
                pod_name: built.pod_name,
                ip: built.ip,
                dashed_ip: built.dashed_ip,
                hostname_fqdn: built.hostname_fqdn,
            },
            dist_ports: record
                .dist_ports()
                .map(|(declared, port)| (declared.into(), port))
                .collect(),
        }
    }
}

/// An IP as `:inet` writes it: a 4-tuple or an 8-tuple.
#[derive(Debug, Clone, Copy)]
pub struct Ip(pub IpAddr);

impl Encoder for Ip {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self.0 {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                (a, b, c, d).encode(env)
            }
            IpAddr::V6(v6) => {
                let [a, b, c, d, e, f, g, h] = v6.segments();
                let segments = [a, b, c, d, e, f, g, h].map(|s| s.encode(env));
                rustler::types::tuple::make_tuple(env, &segments)
            }
        }
    }
}

/// `status.phase` as an atom.
#[derive(NifUnitEnum, Debug, Clone, Copy)]
pub enum Phase {
    /// `:pending`
    Pending,
    /// `:running`
    Running,
    /// `:succeeded`
    Succeeded,
    /// `:failed`
    Failed,
    /// `:unknown`
    Unknown,
}

impl From<pod::Phase> for Phase {
    fn from(phase: pod::Phase) -> Phase {
        match phase {
            pod::Phase::Pending => Phase::Pending,
            pod::Phase::Running => Phase::Running,
            pod::Phase::Succeeded => Phase::Succeeded,
            pod::Phase::Failed => Phase::Failed,
            pod::Phase::Unknown => Phase::Unknown,
        }
    }
}

/// Labels or annotations (sorted pairs in the record) as a map of strings.
pub struct Pairs<'a>(&'a [(Box<str>, Box<str>)]);

impl Encoder for Pairs<'_> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        let keys: Vec<Term> = self.0.iter().map(|(k, _)| (**k).encode(env)).collect();
        let values: Vec<Term> = self.0.iter().map(|(_, v)| (**v).encode(env)).collect();
        // The record's keys are unique, as Kubernetes' are.
        Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| Term::map_new(env))
    }
}

/// A declared container port: `%{name: name | nil, port: port, container: name}`.
#[derive(NifMap)]
#[rustler(encode)]
pub struct Port<'a> {
    name: Option<&'a str>,
    port: u16,
    container: &'a str,
}

impl<'a> From<&'a ContainerPort> for Port<'a> {
    fn from(port: &'a ContainerPort) -> Port<'a> {
        Port {
            name: port.name.as_deref(),
            port: port.port,
            container: &port.container,
        }
    }
}

/// The host part of the pod's node names in each form (see `pod_dist_core::host::hosts`).
#[derive(NifMap)]
#[rustler(encode)]
pub struct Hosts {
    pod_name: Option<String>,
    ip: Option<String>,
    dashed_ip: Option<String>,
    hostname_fqdn: Option<String>,
}

/// Whose distribution port it is: a basename (`dist-<basename>`), or `:any` (`dist`).
#[derive(NifUntaggedEnum)]
#[rustler(encode)]
pub enum Basename<'a> {
    /// `:any`: a port named `dist`.
    Any(AnyNode),
    /// The basename of `dist-<basename>`.
    Node(&'a str),
}

/// The atom `:any`.
#[derive(NifUnitEnum)]
pub enum AnyNode {
    /// `:any`
    Any,
}

impl<'a> From<DistPort<'a>> for Basename<'a> {
    fn from(declared: DistPort<'a>) -> Basename<'a> {
        match declared {
            DistPort::Node(basename) => Basename::Node(basename),
            DistPort::Any => Basename::Any(AnyNode::Any),
        }
    }
}

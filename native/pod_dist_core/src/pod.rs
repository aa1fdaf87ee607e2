//! The slim pod record the index keeps: what distribution needs, not the whole Pod.

use std::net::IpAddr;
use std::sync::Arc;

use crate::wire::WirePod;

/// Pod lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, not all containers running.
    Pending,
    /// Bound to a node, containers running.
    Running,
    /// All containers exited successfully.
    Succeeded,
    /// All containers exited, one failed.
    Failed,
    /// Anything else.
    Unknown,
}

impl Phase {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Unknown => "Unknown",
        }
    }

    fn parse(phase: Option<&str>) -> Self {
        match phase {
            Some("Pending") => Phase::Pending,
            Some("Running") => Phase::Running,
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            _ => Phase::Unknown,
        }
    }
}

/// A named container port, for epmd-less node declarations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    /// Port name (`dist-api`), if any.
    pub name: Option<Box<str>>,
    /// Port number.
    pub port: u16,
    /// Container declaring it.
    pub container: Box<str>,
}

/// Which nodes a declared distribution port serves (see [`PodRecord::dist_ports`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistPort<'a> {
    /// `dist-<basename>`: node `<basename>@<pod>`.
    Node(&'a str),
    /// `dist`: any node of the pod without its own port.
    Any,
}

/// What PodDist knows of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// `metadata.uid`
    pub uid: Box<str>,
    /// `metadata.namespace`
    pub namespace: Arc<str>,
    /// `metadata.name`
    pub name: Arc<str>,
    /// `status.podIPs` (falling back to `status.podIP`), in the order the kubelet gave.
    pub ips: Box<[IpAddr]>,
    /// `spec.hostname`
    pub hostname: Option<Box<str>>,
    /// `spec.subdomain`
    pub subdomain: Option<Box<str>>,
    /// `spec.nodeName`; shared by the index among the pods of a node.
    pub node_name: Option<Arc<str>>,
    /// `status.phase`
    pub phase: Phase,
    /// The Ready condition is True.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// `spec.hostNetwork`: the pod's IPs are its node's, shared with the node's other
    /// such pods, so they identify no pod.
    pub host_network: bool,
    /// `metadata.creationTimestamp`, in seconds since the epoch (0 when absent): among
    /// pods equally alive, the newest owns a reused IP.
    pub created: i64,
    /// `metadata.labels`, sorted by key.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// `metadata.annotations`, sorted by key, without kubectl's last-applied copy.
    pub annotations: Box<[(Box<str>, Box<str>)]>,
    /// Declared container ports.
    pub ports: Box<[ContainerPort]>,
}

/// kubectl's copy of the whole object: large and of no use for distribution.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

impl PodRecord {
    /// The record for `pod`, or `None` when it lacks a namespace, name or uid.
    pub fn from_pod(pod: &WirePod) -> Option<PodRecord> {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| ips.iter().filter_map(|ip| ip.ip.parse().ok()).collect())
            .unwrap_or_default();
        if ips.is_empty() {
            ips.extend(
                status
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        let strings = |map: Option<&std::collections::BTreeMap<String, String>>| -> Box<[(Box<str>, Box<str>)]> {
            map.into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != LAST_APPLIED)
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect()
        };
        let ports = spec
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| {
                c.ports.iter().flatten().filter_map(move |p| {
                    Some(ContainerPort {
                        name: p.name.as_deref().map(Into::into),
                        port: u16::try_from(p.container_port).ok()?,
                        container: c.name.as_str().into(),
                    })
                })
            })
            .collect();
        let nonempty = |s: Option<&String>| s.filter(|s| !s.is_empty()).map(|s| s.as_str().into());
        Some(PodRecord {
            uid: nonempty(meta.uid.as_ref())?,
            namespace: meta.namespace.as_deref().filter(|s| !s.is_empty()).map(Arc::from)?,
            name: meta.name.as_deref().filter(|s| !s.is_empty()).map(Arc::from)?,
            ips: ips.into(),
            hostname: nonempty(spec.and_then(|s| s.hostname.as_ref())),
            subdomain: nonempty(spec.and_then(|s| s.subdomain.as_ref())),
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|s| !s.is_empty())
                .map(Arc::from),
            phase: Phase::parse(status.and_then(|s| s.phase.as_deref())),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            terminating: meta.deletion_timestamp.is_some(),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            created: meta.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second()),
            labels: strings(meta.labels.as_ref()),
            annotations: strings(meta.annotations.as_ref()),
            ports,
        })
    }

    /// The pod's first IP (the one `status.podIP` names), if assigned.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }

    /// The nodes the pod declares for epmd-less mode, in declaration order: a container
    /// port named `dist-<basename>` is the port of node `<basename>@<this pod>`
    /// ([`DistPort::Node`]); one named `dist` serves any basename ([`DistPort::Any`]).
    pub fn dist_ports(&self) -> impl Iterator<Item = (DistPort<'_>, u16)> {
        self.ports.iter().filter_map(|p| {
            let declared = match p.name.as_deref()? {
                "dist" => DistPort::Any,
                name => DistPort::Node(name.strip_prefix("dist-").filter(|b| !b.is_empty())?),
            };
            Some((declared, p.port))
        })
    }

    /// The port of node `basename@<this pod>` in epmd-less mode, with the declaration it
    /// comes from: its own (the first `dist-<basename>`), else the first shared `dist`
    /// one. The one rule both peers (where to dial) and the node itself (where to
    /// listen) follow.
    pub fn dist_port(&self, basename: &str) -> Option<(DistPort<'_>, u16)> {
        let mut any = None;
        for (declared, port) in self.dist_ports() {
            match declared {
                DistPort::Node(name) if name == basename => return Some((declared, port)),
                DistPort::Any if any.is_none() => any = Some((declared, port)),
                _ => {}
            }
        }
        any
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        lookup(&self.labels, key)
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        lookup(&self.annotations, key)
    }

    /// Heap bytes this record holds alone (not its namespace and node names, which the
    /// index shares), for the memory benchmark.
    pub fn heap_bytes(&self) -> usize {
        let pairs = |p: &[(Box<str>, Box<str>)]| p.iter().map(|(k, v)| k.len() + v.len() + 32).sum::<usize>();
        let opt = |s: &Option<Box<str>>| s.as_ref().map_or(0, |s| s.len());
        // Namespace and node names are shared among pods: the index counts them once.
        self.uid.len()
            // An Arc<str> carries its two counters.
            + self.name.len()
            + 16
            + self.ips.len() * std::mem::size_of::<IpAddr>()
            + opt(&self.hostname)
            + opt(&self.subdomain)
            + pairs(&self.labels)
            + pairs(&self.annotations)
            + self
                .ports
                .iter()
                .map(|p| {
                    std::mem::size_of::<ContainerPort>() + p.container.len() + p.name.as_ref().map_or(0, |n| n.len())
                })
                .sum::<usize>()
    }
}

fn lookup<'a>(pairs: &'a [(Box<str>, Box<str>)], key: &str) -> Option<&'a str> {
    pairs
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &*pairs[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary (even absurd) pod JSON: conversion never panics, and what it keeps
        /// is what the pod said.
        #[test]
        fn conversion_is_total(
            name in ".{0,300}",
            ips in proptest::collection::vec(".{0,45}", 0..4),
            labels in proptest::collection::btree_map(".{0,100}", ".{0,1000}", 0..8),
            port in any::<i32>(),
            ready in any::<bool>(),
        ) {
            let pod: WirePod = serde_json::from_value(serde_json::json!({
                "metadata": { "name": name, "namespace": "ns", "uid": "u", "labels": labels },
                "spec": { "containers": [{ "name": "c", "ports": [{ "name": "dist", "containerPort": port }] }] },
                "status": {
                    "podIPs": ips.iter().map(|ip| serde_json::json!({ "ip": ip })).collect::<Vec<_>>(),
                    "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }]
                }
            })).unwrap();
            match PodRecord::from_pod(&pod) {
                None => prop_assert!(name.is_empty()),
                Some(record) => {
                    prop_assert_eq!(&*record.name, name.as_str());
                    prop_assert_eq!(record.ready, ready);
                    prop_assert!(record.ips.len() <= ips.len());
                    prop_assert_eq!(record.labels.len(), labels.len());
                    prop_assert_eq!(record.ports.len(), usize::from(u16::try_from(port).is_ok()));
                }
            }
        }
    }

    #[test]
    fn dist_port_prefers_the_basename_then_the_shared_port() {
        let pod: WirePod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "uid": "u" },
            "spec": { "containers": [
                { "name": "a", "ports": [{ "name": "dist", "containerPort": 4370 }, { "containerPort": 80 }] },
                { "name": "b", "ports": [{ "name": "dist-worker", "containerPort": 4371 }] }
            ] }
        }))
        .unwrap();
        let record = PodRecord::from_pod(&pod).unwrap();
        assert_eq!(record.dist_port("worker"), Some((DistPort::Node("worker"), 4371)));
        assert_eq!(record.dist_port("api"), Some((DistPort::Any, 4370)));
        assert_eq!(record.dist_port(""), Some((DistPort::Any, 4370)));
        assert_eq!(
            record.dist_ports().collect::<Vec<_>>(),
            [(DistPort::Any, 4370), (DistPort::Node("worker"), 4371)]
        );
        let bare = PodRecord {
            ports: Box::new([]),
            ..record
        };
        assert_eq!(bare.dist_port("api"), None);
    }

    #[test]
    fn ipv6_only_and_several_ips_are_kept_in_order() {
        let pod: WirePod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "uid": "u" },
            "status": { "podIP": "fd00::1", "podIPs": [{ "ip": "fd00::1" }, { "ip": "10.0.0.1" }, { "ip": "bogus" }] }
        }))
        .unwrap();
        let record = PodRecord::from_pod(&pod).unwrap();
        assert_eq!(
            record.ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            ["fd00::1", "10.0.0.1"]
        );
        assert_eq!(record.ip(), Some("fd00::1".parse().unwrap()));
        assert_eq!(record.phase, Phase::Unknown);
    }
}

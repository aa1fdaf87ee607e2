//! Pod records, health and events as Elixir terms.

use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use pod_dist_core::host::hosts;
use pod_dist_core::index::PodChange;
use pod_dist_core::pod::{DistPort, PodRecord};
use pod_dist_core::watch::{ErrorKind, Health, WatchEvent};
use rustler::{Encoder, Env, Term};

mod keys {
    rustler::atoms! {
        nil, uid, namespace, name, ip, ips, hostname, subdomain, node_name, phase, ready,
        terminating, labels, annotations, ports, port, container,
        synced, last_sync, resource_version, errors, last_error, pods, index_bytes,
        api_url, credentials, namespaces, all, restarts, last_restart,
        added, changed, deleted, api_error, hosts, pod_name, dashed_ip, hostname_fqdn, dist_ports,
        error, service_account, cluster_domain, unreachable, certificate, unauthorized, forbidden,
        status, client, crashed, throttled, any, source, service,
        pending, running, succeeded, failed, unknown
    }
}

/// An IP as `:inet` writes it: a 4- or 8-tuple.
pub fn ip<'a>(env: Env<'a>, ip: IpAddr) -> Term<'a> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            (a, b, c, d).encode(env)
        }
        IpAddr::V6(v6) => {
            let segments: Vec<Term> = v6.segments().iter().map(|s| s.encode(env)).collect();
            rustler::types::tuple::make_tuple(env, &segments)
        }
    }
}

fn optional<'a>(env: Env<'a>, value: Option<&str>) -> Term<'a> {
    value.map_or_else(|| keys::nil().encode(env), |s| s.encode(env))
}

fn pairs<'a>(env: Env<'a>, pairs: &[(Box<str>, Box<str>)]) -> Term<'a> {
    let keys: Vec<Term> = pairs.iter().map(|(k, _)| (**k).encode(env)).collect();
    let values: Vec<Term> = pairs.iter().map(|(_, v)| (**v).encode(env)).collect();
    Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| Term::map_new(env))
}

/// A pod's declared container ports, as a list of maps.
fn ports<'a>(env: Env<'a>, pod: &PodRecord) -> Term<'a> {
    let ports: Vec<Term> = pod
        .ports
        .iter()
        .map(|p| {
            let entries = [
                (keys::name().encode(env), optional(env, p.name.as_deref())),
                (keys::port().encode(env), p.port.encode(env)),
                (keys::container().encode(env), (*p.container).encode(env)),
            ];
            map(env, &entries)
        })
        .collect();
    ports.encode(env)
}

/// The nodes a pod declares for epmd-less mode: `{basename, port}`, `{:any, port}` for a
/// port named `dist` (see `PodRecord::dist_ports`).
pub fn dist_ports<'a>(env: Env<'a>, pod: &PodRecord) -> Term<'a> {
    pod.dist_ports()
        .map(|(declared, port)| match declared {
            DistPort::Node(basename) => (basename, port).encode(env),
            DistPort::Any => (keys::any(), port).encode(env),
        })
        .collect::<Vec<_>>()
        .encode(env)
}

/// The host part of the pod's node names in each form (see `pod_dist_core::host::hosts`).
fn host_forms<'a>(env: Env<'a>, pod: &PodRecord, cluster_domain: &str) -> Term<'a> {
    let built = hosts(pod, cluster_domain);
    let entries = [
        (keys::pod_name().encode(env), optional(env, built.pod_name.as_deref())),
        (keys::ip().encode(env), optional(env, built.ip.as_deref())),
        (keys::dashed_ip().encode(env), optional(env, built.dashed_ip.as_deref())),
        (
            keys::hostname_fqdn().encode(env),
            optional(env, built.hostname_fqdn.as_deref()),
        ),
    ];
    map(env, &entries)
}

/// A pod record as a map with atom keys, with the hosts it is named by in a cluster
/// whose DNS domain is `cluster_domain`, and its declared distribution ports.
pub fn pod<'a>(env: Env<'a>, pod: &PodRecord, cluster_domain: &str) -> Term<'a> {
    use pod_dist_core::pod::Phase;
    let phase = match pod.phase {
        Phase::Pending => keys::pending(),
        Phase::Running => keys::running(),
        Phase::Succeeded => keys::succeeded(),
        Phase::Failed => keys::failed(),
        Phase::Unknown => keys::unknown(),
    };
    let entries = [
        (keys::uid().encode(env), (*pod.uid).encode(env)),
        (keys::namespace().encode(env), (*pod.namespace).encode(env)),
        (keys::name().encode(env), (*pod.name).encode(env)),
        (
            keys::ip().encode(env),
            pod.ip().map_or_else(|| keys::nil().encode(env), |a| ip(env, a)),
        ),
        (
            keys::ips().encode(env),
            pod.ips.iter().map(|a| ip(env, *a)).collect::<Vec<_>>().encode(env),
        ),
        (keys::hostname().encode(env), optional(env, pod.hostname.as_deref())),
        (keys::subdomain().encode(env), optional(env, pod.subdomain.as_deref())),
        (keys::node_name().encode(env), optional(env, pod.node_name.as_deref())),
        (keys::phase().encode(env), phase.encode(env)),
        (keys::ready().encode(env), pod.ready.encode(env)),
        (keys::terminating().encode(env), pod.terminating.encode(env)),
        (keys::labels().encode(env), pairs(env, &pod.labels)),
        (keys::annotations().encode(env), pairs(env, &pod.annotations)),
        (keys::ports().encode(env), ports(env, pod)),
        (keys::hosts().encode(env), host_forms(env, pod, cluster_domain)),
        (keys::dist_ports().encode(env), dist_ports(env, pod)),
    ];
    map(env, &entries)
}

fn map<'a>(env: Env<'a>, entries: &[(Term<'a>, Term<'a>)]) -> Term<'a> {
    let keys: Vec<Term> = entries.iter().map(|(k, _)| *k).collect();
    let values: Vec<Term> = entries.iter().map(|(_, v)| *v).collect();
    Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| Term::map_new(env))
}

/// Watched namespaces as strings, `:all` for every namespace.
fn namespaces<'a>(env: Env<'a>, namespaces: &[Option<String>]) -> Term<'a> {
    match namespaces {
        [None] => keys::all().encode(env),
        _ => namespaces.iter().flatten().collect::<Vec<_>>().encode(env),
    }
}

/// Watch health as a map.
pub fn health<'a>(env: Env<'a>, health: &Health) -> Term<'a> {
    let last_sync = health
        .last_sync
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or_else(|| keys::nil().encode(env), |d| (d.as_millis() as u64).encode(env));
    let entries = [
        (keys::synced().encode(env), health.synced.encode(env)),
        (keys::last_sync().encode(env), last_sync),
        (
            keys::resource_version().encode(env),
            optional(env, health.resource_version.as_deref()),
        ),
        (keys::errors().encode(env), health.errors.encode(env)),
        (
            keys::last_error().encode(env),
            optional(env, health.last_error.as_deref()),
        ),
        (keys::pods().encode(env), health.pods.encode(env)),
        (keys::index_bytes().encode(env), health.index_bytes.encode(env)),
        (
            keys::error().encode(env),
            health
                .last_error_kind
                .map_or_else(|| keys::nil().encode(env), |kind| error_kind(env, kind)),
        ),
        (
            keys::service_account().encode(env),
            health.service_account.as_ref().map_or_else(
                || keys::nil().encode(env),
                |(namespace, name)| (namespace.as_str(), name.as_str()).encode(env),
            ),
        ),
        (keys::cluster_domain().encode(env), health.cluster_domain.encode(env)),
        (
            keys::api_url().encode(env),
            optional(env, health.origin.as_ref().map(|(url, _)| url.as_str())),
        ),
        (
            keys::credentials().encode(env),
            optional(env, health.origin.as_ref().map(|(_, source)| *source)),
        ),
        (keys::namespaces().encode(env), namespaces(env, &health.namespaces)),
        (
            keys::source().encode(env),
            health.service.as_deref().map_or_else(
                || keys::pods().encode(env),
                |service| (keys::service(), service).encode(env),
            ),
        ),
        (keys::restarts().encode(env), health.restarts.encode(env)),
        (
            keys::last_restart().encode(env),
            optional(env, health.last_restart.as_deref()),
        ),
    ];
    map(env, &entries)
}

/// An error kind as an atom, `{:status, code}` for other HTTP statuses.
fn error_kind(env: Env<'_>, kind: ErrorKind) -> Term<'_> {
    match kind {
        ErrorKind::Unreachable => keys::unreachable().encode(env),
        ErrorKind::Certificate => keys::certificate().encode(env),
        ErrorKind::Unauthorized => keys::unauthorized().encode(env),
        ErrorKind::Forbidden => keys::forbidden().encode(env),
        ErrorKind::Status(code) => (keys::status(), code).encode(env),
        ErrorKind::Client => keys::client().encode(env),
        ErrorKind::Crashed => keys::crashed().encode(env),
        ErrorKind::Throttled => keys::throttled().encode(env),
    }
}

/// A watch event: `{:added, pod}`, `{:changed, old, new}`, `{:deleted, pod}`,
/// `:synced` or `{:api_error, message}`.
pub fn event<'a>(env: Env<'a>, event: &WatchEvent, cluster_domain: &str) -> Term<'a> {
    let pod = |p| pod(env, p, cluster_domain);
    match event {
        WatchEvent::Pod(PodChange::Added(p)) => (keys::added(), pod(p)).encode(env),
        WatchEvent::Pod(PodChange::Changed { old, new }) => (keys::changed(), pod(old), pod(new)).encode(env),
        WatchEvent::Pod(PodChange::Deleted(p)) => (keys::deleted(), pod(p)).encode(env),
        WatchEvent::Synced => keys::synced().encode(env),
        WatchEvent::ApiError(message) => (keys::api_error(), message.as_str()).encode(env),
    }
}

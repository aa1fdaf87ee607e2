//! Pod records, health and events as Elixir terms.

use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use kube_dist_core::index::PodChange;
use kube_dist_core::pod::PodRecord;
use kube_dist_core::watch::{Health, WatchEvent};
use rustler::{Encoder, Env, Term};

mod keys {
    rustler::atoms! {
        nil, uid, namespace, name, ip, ips, hostname, subdomain, node_name, phase, ready,
        terminating, labels, annotations, ports, port, container,
        synced, last_sync, resource_version, errors, last_error, last_error_kind, pods, index_bytes,
        api_url, credentials, namespaces, all, restarts, last_restart,
        added, changed, deleted, api_error,
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
pub fn ports<'a>(env: Env<'a>, pod: &PodRecord) -> Term<'a> {
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

/// A pod record as a map with atom keys.
pub fn pod<'a>(env: Env<'a>, pod: &PodRecord) -> Term<'a> {
    use kube_dist_core::pod::Phase;
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
            keys::last_error_kind().encode(env),
            health
                .last_error
                .as_ref()
                .map_or(0, |_| health.last_error_kind)
                .encode(env),
        ),
        (
            keys::api_url().encode(env),
            optional(env, health.origin.as_ref().map(|(url, _)| url.as_str())),
        ),
        (
            keys::credentials().encode(env),
            optional(env, health.origin.as_ref().map(|(_, source)| *source)),
        ),
        (keys::namespaces().encode(env), namespaces(env, &health.namespaces)),
        (keys::restarts().encode(env), health.restarts.encode(env)),
        (
            keys::last_restart().encode(env),
            optional(env, health.last_restart.as_deref()),
        ),
    ];
    map(env, &entries)
}

/// A watch event: `{:added, pod}`, `{:changed, old, new}`, `{:deleted, pod}`,
/// `:synced` or `{:api_error, message}`.
pub fn event<'a>(env: Env<'a>, event: &WatchEvent) -> Term<'a> {
    match event {
        WatchEvent::Pod(PodChange::Added(p)) => (keys::added(), pod(env, p)).encode(env),
        WatchEvent::Pod(PodChange::Changed { old, new }) => (keys::changed(), pod(env, old), pod(env, new)).encode(env),
        WatchEvent::Pod(PodChange::Deleted(p)) => (keys::deleted(), pod(env, p)).encode(env),
        WatchEvent::Synced => keys::synced().encode(env),
        WatchEvent::ApiError(message) => (keys::api_error(), message.as_str()).encode(env),
    }
}

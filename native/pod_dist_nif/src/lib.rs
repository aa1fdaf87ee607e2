//! The NIF boundary: typed Elixir terms in, [`pod_dist_core`] calls, derived Elixir
//! terms out.
//!
//! Rules kept by every function here: anything that can wait runs on a dirty scheduler
//! or on the tokio runtime; nothing blocks a normal scheduler. A bad argument raises
//! `ArgumentError` naming what is wrong (see [`args`]). A panic (a bug) is caught by
//! rustler, which raises `ErlangError` `:nif_panicked` (the panic's message goes to the
//! VM's stderr): the VM lives on.

mod args;
mod event;
mod health;
mod options;
mod pod;
mod registry;
mod subscription;

use std::sync::Arc;
use std::time::Duration;

use pod_dist_core::index::Resolution;
use pod_dist_core::pod::{DistPort, PodRecord};
use pod_dist_core::runtime::runtime;
use pod_dist_core::watch::Watch;
use rustler::types::atom::{self, Atom};
use rustler::{Encoder, Env, LocalPid, NifTaggedEnum, NifUnitEnum, OwnedEnv, ResourceArc, Term};

use crate::args::{Answer, Declared, Family, Name, Refusal};
use crate::health::Health;
use crate::options::Options;
use crate::pod::{Ip, Pod};

/// The Elixir-side handle of a watch. Watches with equal options are shared; the
/// watch stops when the last handle is garbage-collected.
pub struct WatchHandle(Arc<Watch>);

#[rustler::resource_impl]
impl rustler::Resource for WatchHandle {}

/// What `start_watch` answers: `{:ok, handle, :new | :shared}` or `{:error, message}`.
#[derive(NifTaggedEnum)]
#[rustler(encode)]
enum Started {
    Ok(ResourceArc<WatchHandle>, Start),
    Error(String),
}

/// Whether the watch was started now or joined.
#[derive(NifUnitEnum)]
enum Start {
    New,
    Shared,
}

/// `start_watch(options)`: connects and starts (or joins) a watch: `{:ok, handle, :new}`
/// for a watch started now, `{:ok, handle, :shared}` for one joined, `{:error, message}`
/// when no client can be made (credentials not found, a URL that is none).
#[rustler::nif(schedule = "DirtyIo")]
fn start_watch(options: Options) -> Started {
    match registry::watch(options) {
        Ok((watch, new)) => Started::Ok(
            ResourceArc::new(WatchHandle(watch)),
            if new { Start::New } else { Start::Shared },
        ),
        Err(message) => Started::Error(message),
    }
}

/// `check_options(options)`: `:ok` for options `start_watch` would take (see
/// [`options`]); nothing is started.
#[rustler::nif]
fn check_options(_options: Options) -> Atom {
    atom::ok()
}

/// `carries_labels(options)`: whether a watch with `options` gives pods with labels and
/// annotations (see [`Options::carries_labels`]).
#[rustler::nif]
fn carries_labels(options: Options) -> bool {
    options.carries_labels()
}

/// `notify_synced(handle, pid, tag, timeout_ms)`: returns `:ok` at once; `pid` then gets
/// `{tag, true}` when the initial list is in (at once if it is), or `{tag, false}` after
/// `timeout_ms` or if the watch stops first. The wait runs on the tokio runtime, so the
/// caller waits in a `receive` and holds no scheduler, dirty or not.
#[rustler::nif]
fn notify_synced(handle: ResourceArc<WatchHandle>, pid: LocalPid, tag: Term<'_>, timeout_ms: u64) -> Atom {
    let owned = OwnedEnv::new();
    let tag = owned.save(tag);
    let synced = handle.0.wait_synced(Duration::from_millis(timeout_ms));
    runtime().spawn(async move {
        let synced = synced.await;
        // A tokio thread, never a scheduler: sending is allowed here. A dead
        // receiver makes it fail, and there is nobody left to tell.
        let _ =
            OwnedEnv::new().send_and_clear(&pid, |env| (owned.run(|tag_env| tag.load(tag_env).in_env(env)), synced));
    });
    atom::ok()
}

/// `list_pods(handle)`: every indexed pod as a `%PodDist.Pod{}`, from one consistent
/// snapshot.
#[rustler::nif(schedule = "DirtyCpu")]
fn list_pods(env: Env<'_>, handle: ResourceArc<WatchHandle>) -> Term<'_> {
    let records = handle.0.pods();
    let domain = handle.0.cluster_domain();
    // Each pod encoded as soon as it is built: its borrowed fields never pile up.
    records
        .iter()
        .map(|record| Pod::new(record, domain).encode(env))
        .collect::<Vec<Term>>()
        .encode(env)
}

/// The answer to `host` in `family`: `found`'s `{:ok, ip, ...}` tuple for the IP and its
/// pod (`None` for an IP no live pod owns); `:error` when no pod answers (a host that is
/// no name: see [`Name`]), `{:error, :ambiguous}`, and `{:error, :not_synced}` when no
/// pod answers yet to a host that may be a pod while the initial list is not in (never
/// for IPs, `localhost` or names no pod can have: see `Host::may_be_pod`). A hash
/// lookup: the functions below run on a normal scheduler in microseconds.
fn resolve<'a>(
    env: Env<'a>,
    handle: &WatchHandle,
    host: Name,
    family: Family,
    found: impl FnOnce(Ip, Option<&PodRecord>) -> Term<'a>,
) -> Term<'a> {
    let answer = match host.0.map(|host| handle.0.resolve(&host, family.0)) {
        None | Some(Resolution::NotFound) => Answer::NotFound,
        Some(Resolution::Found(ip, pod)) => Answer::Found(found(Ip(ip), pod.as_deref())),
        Some(Resolution::Ambiguous(_)) => Answer::Refused(Refusal::Ambiguous),
        Some(Resolution::NotSynced) => Answer::Refused(Refusal::NotSynced),
    };
    answer.encode(env)
}

/// `address(handle, host, family)`: `{:ok, ip}`, the IP of `host` (a string, charlist or
/// atom, as the distribution passes it) of `family` (`:inet` or `:inet6`), or an error
/// as [`resolve`] says.
#[rustler::nif]
fn address(env: Env<'_>, handle: ResourceArc<WatchHandle>, host: Name, family: Family) -> Term<'_> {
    resolve(env, &handle, host, family, |ip, _| (atom::ok(), ip).encode(env))
}

/// `lookup(handle, host, family)`: `{:ok, ip, pod | nil}`, the pod as `list_pods` gives it.
#[rustler::nif]
fn lookup(env: Env<'_>, handle: ResourceArc<WatchHandle>, host: Name, family: Family) -> Term<'_> {
    let domain = handle.0.cluster_domain();
    resolve(env, &handle, host, family, |ip, record| {
        (atom::ok(), ip, record.map(|record| Pod::new(record, domain))).encode(env)
    })
}

/// `node_address(handle, host, basename, family)`: `{:ok, ip, {port, :own | :shared} |
/// nil}`, where node `basename@host` listens in epmd-less mode: the port its pod declares
/// for that basename (`:own`) or for any (`:shared`); `nil`: its pod declares no port
/// for it, or no pod owns the IP.
#[rustler::nif]
fn node_address(
    env: Env<'_>,
    handle: ResourceArc<WatchHandle>,
    host: Name,
    basename: Name,
    family: Family,
) -> Term<'_> {
    resolve(env, &handle, host, family, |ip, record| {
        let port = record
            .zip(basename.0.as_deref())
            .and_then(|(record, basename)| record.dist_port(basename))
            .map(|(declared, port)| match declared {
                DistPort::Node(_) => (port, Declared::Own),
                DistPort::Any => (port, Declared::Shared),
            });
        (atom::ok(), ip, port).encode(env)
    })
}

/// `health(handle)`: the health map (dirty: sizing the index walks every record).
#[rustler::nif(schedule = "DirtyCpu")]
fn health(env: Env<'_>, handle: ResourceArc<WatchHandle>) -> Term<'_> {
    let health = handle.0.health();
    Health::from(&health).encode(env)
}

/// `subscribe(handle, pid, tag)`: `pid` receives `{:pod_dist, tag, event}` for every
/// change from now on, until it exits; meanwhile the subscription keeps the watch alive.
/// A `pid` that is not alive subscribes nothing.
#[rustler::nif]
fn subscribe<'a>(env: Env<'a>, handle: ResourceArc<WatchHandle>, pid: LocalPid, tag: Term<'a>) -> Atom {
    subscription::subscribe(env, &handle.0, pid, tag);
    atom::ok()
}

/// `subscribe_status(handle, pid, tag)`: `pid` hears the watch's status, with its health
/// at that moment (the map `health` returns): `{:pod_dist, tag, {:synced, health}}` after
/// every complete (re-)list (at once if the watch is synced already), `{:pod_dist, tag,
/// {:api_error, message, health}}`, and `{:pod_dist, tag, :stopped}` when the watch
/// stops. No pod changes, and the subscription does not keep the watch alive: it ends
/// with the watch's last handle. For `PodDist.Telemetry`'s reporter, which must neither
/// cost a message per pod change nor make watches immortal.
#[rustler::nif]
fn subscribe_status<'a>(env: Env<'a>, handle: ResourceArc<WatchHandle>, pid: LocalPid, tag: Term<'a>) -> Atom {
    subscription::subscribe_status(env, &handle.0, pid, tag);
    atom::ok()
}

/// `panic_for_test()`: panics, so tests can see what a bug in a NIF gives its caller
/// (rustler catches the unwind and raises) and that the VM lives on.
#[cfg(feature = "test-hooks")]
#[rustler::nif]
fn panic_for_test() -> Atom {
    panic!("deliberate panic in a NIF")
}

/// `panic_watch_for_test(handle)`: the watch task panics at its next event, so tests can
/// prove it is restarted and followed again (see `Watch::panic_at_next_event`).
#[cfg(feature = "test-hooks")]
#[rustler::nif]
fn panic_watch_for_test(handle: ResourceArc<WatchHandle>) -> Atom {
    handle.0.panic_at_next_event();
    atom::ok()
}

rustler::init!("Elixir.PodDist.Native");

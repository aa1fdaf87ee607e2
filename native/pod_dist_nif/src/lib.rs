//! The NIF boundary: Elixir terms in, [`pod_dist_core`] calls, Elixir terms out.
//!
//! Rules kept by every function here: anything that can wait runs on a dirty
//! scheduler or on the tokio runtime; a panic becomes `{:error, {:panic, message}}`;
//! nothing blocks a normal scheduler.

mod encode;
mod options;
mod registry;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Duration;

use pod_dist_core::pod::{DistPort, PodRecord};
use pod_dist_core::runtime::runtime;
use pod_dist_core::watch::{Watch, WatchEvent};
use rustler::{Encoder, Env, LocalPid, OwnedEnv, ResourceArc, Term};

mod atoms {
    rustler::atoms! { ok, error, panic, pod_dist, ambiguous, not_synced, inet, inet6, own, shared, new, synced, api_error, stopped }
}

/// The Elixir-side handle of a watch. Watches with equal options are shared; the
/// watch stops when the last handle is garbage-collected.
pub struct WatchHandle(Arc<Watch>);

#[rustler::resource_impl]
impl rustler::Resource for WatchHandle {}

/// One subscriber of a watch. It unsubscribes when the subscribing process goes down (a
/// process monitor). It refers to the watch weakly: what keeps the watch alive, if
/// anything, is the subscriber's closure (`subscribe`'s does, `subscribe_status`'s not).
pub struct Subscription {
    watch: Weak<Watch>,
    id: u64,
}

#[rustler::resource_impl]
impl rustler::Resource for Subscription {
    const IMPLEMENTS_DOWN: bool = true;

    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: rustler::Monitor) {
        if let Some(watch) = self.watch.upgrade() {
            watch.unsubscribe(self.id);
        }
    }
}

/// Runs `f`, turning a panic into `{:error, {:panic, message}}` so a bug in here
/// cannot take the VM down or leave a caller without an answer.
fn guarded<'a>(env: Env<'a>, f: impl FnOnce() -> Result<Term<'a>, String>) -> Term<'a> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(term)) => term,
        Ok(Err(reason)) => (atoms::error(), reason).encode(env),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            (atoms::error(), (atoms::panic(), message)).encode(env)
        }
    }
}

/// `start_watch(options)`: connects and starts (or joins) a watch: `{:ok, handle, :new}`
/// for a watch started now, `{:ok, handle, :shared}` for one joined.
#[rustler::nif(schedule = "DirtyIo")]
fn start_watch<'a>(env: Env<'a>, options: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let options = options::decode(options)?;
        let (watch, new) = registry::watch(options)?;
        let started = if new { atoms::new() } else { atoms::shared() };
        Ok((atoms::ok(), ResourceArc::new(WatchHandle(watch)), started).encode(env))
    })
}

/// `notify_synced(handle, pid, tag, timeout_ms)`: returns `:ok` at once; `pid` then gets
/// `{tag, true}` when the initial list is in (at once if it is), or `{tag, false}` after
/// `timeout_ms` or if the watch stops first. The wait runs on the tokio runtime, so the
/// caller waits in a `receive` and holds no scheduler, dirty or not.
#[rustler::nif]
fn notify_synced<'a>(
    env: Env<'a>,
    handle: ResourceArc<WatchHandle>,
    pid: LocalPid,
    tag: Term<'a>,
    timeout_ms: u64,
) -> Term<'a> {
    guarded(env, || {
        let owned = OwnedEnv::new();
        let tag = owned.save(tag);
        let synced = handle.0.wait_synced(Duration::from_millis(timeout_ms));
        runtime().spawn(async move {
            let synced = synced.await;
            // A tokio thread, never a scheduler: sending is allowed here. A dead
            // receiver makes it fail, and there is nobody left to tell.
            let _ = OwnedEnv::new().send_and_clear(&pid, |env| {
                (owned.run(|tag_env| tag.load(tag_env).in_env(env)), synced).encode(env)
            });
        });
        Ok(atoms::ok().encode(env))
    })
}

/// `list_pods(handle)`: every indexed pod as a map, from one consistent snapshot.
#[rustler::nif(schedule = "DirtyCpu")]
fn list_pods(env: Env<'_>, handle: ResourceArc<WatchHandle>) -> Term<'_> {
    guarded(env, || {
        let pods = handle.0.pods();
        let domain = handle.0.cluster_domain();
        Ok(pods
            .iter()
            .map(|p| encode::pod(env, p, domain))
            .collect::<Vec<_>>()
            .encode(env))
    })
}

/// The answer to `host` in `family` as `{:ok, ip, ...}` with what `found` adds for the
/// pod (`nil` for an IP no live pod owns); `:error` when no pod answers,
/// `{:error, :ambiguous}`, and `{:error, :not_synced}` when no pod answers yet to a host
/// that may be a pod while the initial list is not in (never for IPs, `localhost` or
/// names no pod can have: see `Host::may_be_pod`). A hash lookup: the functions below
/// run on a normal scheduler in microseconds.
fn resolved<'a>(
    env: Env<'a>,
    handle: &WatchHandle,
    host: Term<'a>,
    family: rustler::Atom,
    found: impl FnOnce(Option<&PodRecord>) -> Option<Term<'a>>,
) -> Result<Term<'a>, String> {
    use pod_dist_core::index::{Family, Resolution};
    let Some(host) = text(host) else {
        return Ok(atoms::error().encode(env));
    };
    let family = match family {
        f if f == atoms::inet() => Family::Inet,
        f if f == atoms::inet6() => Family::Inet6,
        _ => return Err("family must be :inet or :inet6".into()),
    };
    Ok(match handle.0.resolve(&host, family) {
        Resolution::Found(ip, pod) => match found(pod.as_deref()) {
            None => (atoms::ok(), encode::ip(env, ip)).encode(env),
            Some(detail) => (atoms::ok(), encode::ip(env, ip), detail).encode(env),
        },
        Resolution::NotFound => atoms::error().encode(env),
        Resolution::Ambiguous(_) => (atoms::error(), atoms::ambiguous()).encode(env),
        Resolution::NotSynced => (atoms::error(), atoms::not_synced()).encode(env),
    })
}

/// `address(handle, host, family)`: the IP of `host` (a string, charlist or atom, as the
/// distribution passes it) of `family` (`:inet` or `:inet6`): `{:ok, ip}`, or an error
/// as [`resolved`] says.
#[rustler::nif]
fn address<'a>(env: Env<'a>, handle: ResourceArc<WatchHandle>, host: Term<'a>, family: rustler::Atom) -> Term<'a> {
    guarded(env, || resolved(env, &handle, host, family, |_| None))
}

/// `lookup(handle, host, family)`: `{:ok, ip, pod | nil}`, the pod as `list_pods` gives it.
#[rustler::nif]
fn lookup<'a>(env: Env<'a>, handle: ResourceArc<WatchHandle>, host: Term<'a>, family: rustler::Atom) -> Term<'a> {
    let nil = rustler::types::atom::nil().encode(env);
    guarded(env, || {
        resolved(env, &handle, host, family, |pod| {
            Some(pod.map_or(nil, |pod| encode::pod(env, pod, handle.0.cluster_domain())))
        })
    })
}

/// `node_address(handle, host, basename, family)`: `{:ok, ip, {port, :own | :shared} |
/// nil}`, where node `basename@host` listens in epmd-less mode: the port its pod declares
/// for that basename (`:own`) or for any (`:shared`); `nil`: its pod declares no port
/// for it, or no pod owns the IP.
#[rustler::nif]
fn node_address<'a>(
    env: Env<'a>,
    handle: ResourceArc<WatchHandle>,
    host: Term<'a>,
    basename: Term<'a>,
    family: rustler::Atom,
) -> Term<'a> {
    let nil = rustler::types::atom::nil().encode(env);
    guarded(env, || {
        resolved(env, &handle, host, family, |pod| {
            let port = pod
                .zip(text(basename))
                .and_then(|(pod, basename)| pod.dist_port(&basename));
            Some(port.map_or(nil, |(declared, port)| match declared {
                DistPort::Node(_) => (port, atoms::own()).encode(env),
                DistPort::Any => (port, atoms::shared()).encode(env),
            }))
        })
    })
}

/// `check_options(options)`: `:ok`, or `{:error, reason}` for options `start_watch`
/// would refuse (see [`options::decode`]); nothing is started.
#[rustler::nif]
fn check_options<'a>(env: Env<'a>, options: Term<'a>) -> Term<'a> {
    guarded(env, || options::decode(options).map(|_| atoms::ok().encode(env)))
}

/// A name as Erlang hands it over: a binary, a charlist or an atom.
fn text(term: Term<'_>) -> Option<String> {
    if let Ok(binary) = term.decode::<rustler::Binary>() {
        return std::str::from_utf8(binary.as_slice()).ok().map(str::to_string);
    }
    // Rustler's list decoding panics on an improper list: only proper ones get there.
    if term.list_length().is_ok() {
        let chars = term.decode::<Vec<u32>>().ok()?;
        return chars.into_iter().map(char::from_u32).collect();
    }
    term.atom_to_string().ok()
}

/// `health(handle)`: sync state, resourceVersion, errors, pod count and index size
/// (dirty: sizing the index walks every record).
#[rustler::nif(schedule = "DirtyCpu")]
fn health(env: Env<'_>, handle: ResourceArc<WatchHandle>) -> Term<'_> {
    guarded(env, || Ok(encode::health(env, &handle.0.health())))
}

/// `subscribe(handle, pid, tag)`: `pid` receives `{:pod_dist, tag, event}` for every
/// change from now on, until it exits; meanwhile the subscription keeps the watch alive.
#[rustler::nif]
fn subscribe<'a>(env: Env<'a>, handle: ResourceArc<WatchHandle>, pid: LocalPid, tag: Term<'a>) -> Term<'a> {
    guarded(env, || add_subscriber(env, &handle, pid, tag))
}

/// `subscribe_status(handle, pid, tag)`: `pid` hears the watch's status, with its health
/// at that moment (the map `health` returns): `{:pod_dist, tag, {:synced, health}}` after
/// every complete (re-)list (at once if the watch is synced already), `{:pod_dist, tag,
/// {:api_error, message, health}}`, and `{:pod_dist, tag, :stopped}` when the watch
/// stops. No pod changes, and the subscription does not keep the watch alive: it ends
/// with the watch's last handle. For `PodDist.Telemetry`'s reporter, which must neither
/// cost a message per pod change nor make watches immortal.
#[rustler::nif]
fn subscribe_status<'a>(env: Env<'a>, handle: ResourceArc<WatchHandle>, pid: LocalPid, tag: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let id = handle.0.subscriber_id();
        let subscription = ResourceArc::new(Subscription {
            watch: Arc::downgrade(&handle.0),
            id,
        });
        if subscription.monitor(Some(env), &pid).is_none() {
            return Err("the subscriber process is not alive".into());
        }
        let status = Status::new(pid, tag);
        let watch = Arc::downgrade(&handle.0);
        handle.0.subscribe_as(
            id,
            Box::new(move |event: &WatchEvent| {
                let _keep = &subscription;
                let Some(watch) = watch.upgrade() else {
                    return true;
                };
                match event {
                    WatchEvent::Pod(_) => true,
                    WatchEvent::Synced | WatchEvent::ApiError(_) => status.send(event, &watch.health()),
                }
            }),
        );
        if handle.0.is_synced() {
            let health = handle.0.health();
            let message = (atoms::synced(), encode::health(env, &health));
            let _ = env.send(&pid, (atoms::pod_dist(), tag, message));
        }
        Ok(atoms::ok().encode(env))
    })
}

/// Where a status subscription's messages go; tells `:stopped` when dropped (with the
/// watch's subscriber list, when the watch stops).
struct Status {
    pid: LocalPid,
    tag: Option<(OwnedEnv, rustler::env::SavedTerm)>,
}

impl Status {
    fn new(pid: LocalPid, tag: Term<'_>) -> Status {
        let owned = OwnedEnv::new();
        let saved = owned.save(tag);
        Status {
            pid,
            tag: Some((owned, saved)),
        }
    }

    /// Sends `{:pod_dist, tag, message}`; `false` once the receiver is dead. Called on a
    /// tokio thread (a publish), never a scheduler.
    fn send(&self, event: &WatchEvent, health: &pod_dist_core::watch::Health) -> bool {
        let Some((owned, tag)) = &self.tag else {
            return false;
        };
        OwnedEnv::new()
            .send_and_clear(&self.pid, |env| {
                let tag = owned.run(|tag_env| tag.load(tag_env).in_env(env));
                let health = encode::health(env, health);
                let message = match event {
                    WatchEvent::ApiError(message) => (atoms::api_error(), message.as_str(), health).encode(env),
                    _ => (atoms::synced(), health).encode(env),
                };
                (atoms::pod_dist(), tag, message)
            })
            .is_ok()
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        let (pid, tag) = (self.pid, self.tag.take());
        // Dropped wherever the watch's last handle goes, a scheduler thread too, where no
        // message may be sent from outside a process: the runtime sends it.
        runtime().spawn(async move {
            if let Some((owned, tag)) = tag {
                let _ = OwnedEnv::new().send_and_clear(&pid, |env| {
                    let tag = owned.run(|tag_env| tag.load(tag_env).in_env(env));
                    (atoms::pod_dist(), tag, atoms::stopped())
                });
            }
        });
    }
}

fn add_subscriber<'a>(env: Env<'a>, handle: &WatchHandle, pid: LocalPid, tag: Term<'a>) -> Result<Term<'a>, String> {
    let owned = OwnedEnv::new();
    let tag_term = tag;
    let tag = owned.save(tag);
    let id = handle.0.subscriber_id();
    let domain = handle.0.cluster_domain().to_string();
    let subscription = ResourceArc::new(Subscription {
        watch: Arc::downgrade(&handle.0),
        id,
    });
    if subscription.monitor(Some(env), &pid).is_none() {
        return Err("the subscriber process is not alive".into());
    }
    let keeper = handle.0.clone();
    handle.0.subscribe_as(
        id,
        Box::new(move |event: &WatchEvent| {
            // Owning the subscription and the watch here is what keeps them alive; the
            // monitor's `down` removes this closure, and with it the last reference.
            let _keep = (&subscription, &keeper);
            // Runs on a tokio thread, never a scheduler, so sending is allowed; a failed
            // send means the subscriber is dead, and it is dropped.
            let mut message_env = OwnedEnv::new();
            message_env
                .send_and_clear(&pid, |env| {
                    (
                        atoms::pod_dist(),
                        owned.run(|tag_env| tag.load(tag_env).in_env(env)),
                        encode::event(env, event, &domain),
                    )
                })
                .is_ok()
        }),
    );
    // An error is published once, when it starts: one met before this subscription
    // (a 403 at start, while the subscriber was being set up) is told now, or it would
    // never be. Read after subscribing, so it may come twice but is never missed.
    if let Some(message) = handle.0.current_error() {
        let event = encode::event(env, &WatchEvent::ApiError(message), handle.0.cluster_domain());
        // Failing only if the subscriber died meanwhile: its monitor cleans up.
        let _ = env.send(&pid, (atoms::pod_dist(), tag_term, event));
    }
    Ok(atoms::ok().encode(env))
}

/// `panic_for_test()`: panics, so tests can see what a bug in a NIF gives its caller
/// (rustler catches the unwind and raises) and that the VM lives on.
#[cfg(feature = "test-hooks")]
#[rustler::nif]
fn panic_for_test() -> rustler::Atom {
    panic!("deliberate panic in a NIF")
}

/// `panic_watch_for_test(handle)`: the watch task panics at its next event, so tests can
/// prove it is restarted and followed again (see `Watch::panic_at_next_event`).
#[cfg(feature = "test-hooks")]
#[rustler::nif]
fn panic_watch_for_test(env: Env<'_>, handle: ResourceArc<WatchHandle>) -> Term<'_> {
    guarded(env, || {
        handle.0.panic_at_next_event();
        Ok(atoms::ok().encode(env))
    })
}

rustler::init!("Elixir.PodDist.Native");

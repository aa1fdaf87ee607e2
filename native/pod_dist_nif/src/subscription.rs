//! Subscribers of a watch: processes that receive its events (`subscribe`) or only its
//! status (`subscribe_status`) as `{:pod_dist, tag, _}` messages.

use std::sync::{Arc, Weak};

use pod_dist_core::runtime::runtime;
use pod_dist_core::watch::{Health as WatchHealth, Watch, WatchEvent};
use rustler::env::SavedTerm;
use rustler::{Env, LocalPid, OwnedEnv, ResourceArc, Term};

use crate::event::{Event, Message, Status};
use crate::health::Health;

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

/// A subscription of `pid` to `watch`, monitoring `pid`; `None` when `pid` is not alive
/// (then there is nobody to tell anything).
fn monitored(env: Env<'_>, watch: &Arc<Watch>, pid: &LocalPid) -> Option<(u64, ResourceArc<Subscription>)> {
    let id = watch.subscriber_id();
    let subscription = ResourceArc::new(Subscription {
        watch: Arc::downgrade(watch),
        id,
    });
    subscription.monitor(Some(env), pid)?;
    Some((id, subscription))
}

/// A term kept for later messages, in its own env.
struct Tag(OwnedEnv, SavedTerm);

impl Tag {
    fn new(term: Term<'_>) -> Tag {
        let owned = OwnedEnv::new();
        let saved = owned.save(term);
        Tag(owned, saved)
    }

    /// The tag, copied into `env`.
    fn load<'a>(&self, env: Env<'a>) -> Term<'a> {
        self.0.run(|tag_env| self.1.load(tag_env).in_env(env))
    }
}

/// Every change from now on goes to `pid` as `{:pod_dist, tag, event}`, until it exits;
/// meanwhile the subscription keeps the watch alive.
pub fn subscribe(env: Env<'_>, watch: &Arc<Watch>, pid: LocalPid, tag: Term<'_>) {
    let Some((id, subscription)) = monitored(env, watch, &pid) else {
        return;
    };
    let saved = Tag::new(tag);
    let domain = watch.cluster_domain().to_string();
    let keeper = watch.clone();
    watch.subscribe_as(
        id,
        Box::new(move |event: &WatchEvent| {
            // Owning the subscription and the watch here is what keeps them alive; the
            // monitor's `down` removes this closure, and with it the last reference.
            let _keep = (&subscription, &keeper);
            // Runs on a tokio thread, never a scheduler, so sending is allowed; a failed
            // send means the subscriber is dead, and it is dropped.
            OwnedEnv::new()
                .send_and_clear(&pid, |env| Message {
                    tag: saved.load(env),
                    body: Event::new(event, &domain),
                })
                .is_ok()
        }),
    );
    // An error is published once, when it starts: one met before this subscription
    // (a 403 at start, while the subscriber was being set up) is told now, or it would
    // never be. Read after subscribing, so it may come twice but is never missed.
    if let Some(message) = watch.current_error() {
        let error = WatchEvent::ApiError(message);
        let body = Event::new(&error, watch.cluster_domain());
        // Failing only if the subscriber died meanwhile: its monitor cleans up.
        let _ = env.send(&pid, Message { tag, body });
    }
}

/// `pid` hears the watch's status with its health at that moment; see the NIF
/// `subscribe_status`. The subscription does not keep the watch alive.
pub fn subscribe_status(env: Env<'_>, watch: &Arc<Watch>, pid: LocalPid, tag: Term<'_>) {
    let Some((id, subscription)) = monitored(env, watch, &pid) else {
        return;
    };
    let listener = Listener {
        pid,
        tag: Some(Tag::new(tag)),
    };
    let weak = Arc::downgrade(watch);
    watch.subscribe_as(
        id,
        Box::new(move |event: &WatchEvent| {
            let _keep = &subscription;
            let Some(watch) = weak.upgrade() else {
                return true;
            };
            match event {
                WatchEvent::Pod(_) => true,
                WatchEvent::Synced | WatchEvent::ApiError(_) => listener.send(event, &watch.health()),
            }
        }),
    );
    if watch.is_synced() {
        let health = watch.health();
        let body = Status::Synced(Health::from(&health));
        let _ = env.send(&pid, Message { tag, body });
    }
}

/// Where a status subscription's messages go; tells `:stopped` when dropped (with the
/// watch's subscriber list, when the watch stops).
struct Listener {
    pid: LocalPid,
    tag: Option<Tag>,
}

impl Listener {
    /// Sends the status `event` means; `false` once the receiver is dead. Called on a
    /// tokio thread (a publish), never a scheduler.
    fn send(&self, event: &WatchEvent, health: &WatchHealth) -> bool {
        let Some(tag) = &self.tag else {
            return false;
        };
        let health = Health::from(health);
        let body = match event {
            WatchEvent::ApiError(message) => Status::ApiError(message, health),
            _ => Status::Synced(health),
        };
        OwnedEnv::new()
            .send_and_clear(&self.pid, |env| Message {
                tag: tag.load(env),
                body,
            })
            .is_ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let (pid, tag) = (self.pid, self.tag.take());
        // Dropped wherever the watch's last handle goes, a scheduler thread too, where no
        // message may be sent from outside a process: the runtime sends it.
        runtime().spawn(async move {
            if let Some(tag) = tag {
                let _ = OwnedEnv::new().send_and_clear(&pid, |env| Message {
                    tag: tag.load(env),
                    body: Status::Stopped,
                });
            }
        });
    }
}

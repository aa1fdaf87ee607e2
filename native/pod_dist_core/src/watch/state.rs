//! What a watch shares between its task (the only writer) and its readers: the index,
//! whether it is synced, its health and its subscribers, with the few transitions the
//! task makes on them.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use kube::runtime::watcher::{self, Event};

use super::failure::{describe, service_account, Subject};
use super::health::{ErrorKind, Health};
use super::subscribers::Subscribers;
use super::{WatchEvent, WatchSpec};
use crate::index::{PodChange, PodIndex};
use crate::pod::PodRecord;

pub(super) struct State {
    pub(super) cluster_domain: String,
    /// See [`WatchSpec::home`].
    pub(super) home: Option<String>,
    index: RwLock<PodIndex>,
    pub(super) synced: tokio::sync::watch::Sender<bool>,
    health: Mutex<Health>,
    pub(super) subscribers: Subscribers,
    /// Whether the server serves streaming lists, as far as the watch has learnt (see
    /// [`super::lists`]); kept across namespaces and clients.
    pub(super) streaming: Arc<AtomicBool>,
    /// Set by [`super::Watch::panic_at_next_event`]: the watch panics at its next event.
    /// Behind the `test-hooks` feature, not `cfg(test)`: the tests that use it (the
    /// ExUnit suite through the NIF, and the simulator-backed tests in the root
    /// workspace) build this crate as a dependency.
    #[cfg(feature = "test-hooks")]
    pub(super) panic_at_next_event: AtomicBool,
    /// Tests set it to look at the index while a re-list's index is being built. Only this
    /// crate's unit tests can reach it (it takes the private [`State`]): `cfg(test)`.
    #[cfg(test)]
    while_indexing: Mutex<Option<Look>>,
}

/// What a test runs at a point of the watch, given its state.
#[cfg(test)]
type Look = Box<dyn FnOnce(&State) + Send>;

impl State {
    pub(super) fn new(spec: &WatchSpec) -> State {
        State {
            cluster_domain: spec.cluster_domain.clone(),
            home: spec.home.clone(),
            index: RwLock::new(PodIndex::new()),
            synced: tokio::sync::watch::channel(false).0,
            health: Mutex::new(Health {
                namespaces: spec.namespaces.clone(),
                service: spec.service.clone(),
                cluster_domain: spec.cluster_domain.clone(),
                ..Health::default()
            }),
            subscribers: Subscribers::new(),
            streaming: Arc::new(AtomicBool::new(true)),
            #[cfg(feature = "test-hooks")]
            panic_at_next_event: AtomicBool::new(false),
            #[cfg(test)]
            while_indexing: Mutex::new(None),
        }
    }

    pub(super) fn read_index(&self) -> RwLockReadGuard<'_, PodIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write_index(&self) -> RwLockWriteGuard<'_, PodIndex> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Never held across a publish (nor an await): a status subscriber reads the health
    /// from inside its callback, and readers on schedulers take it too.
    pub(super) fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Test hook: panics if a test asked for it (see [`super::Watch::panic_at_next_event`]).
    pub(super) fn panic_if_asked(&self) {
        #[cfg(feature = "test-hooks")]
        if self
            .panic_at_next_event
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            panic!("injected by a test");
        }
    }

    /// Replaces a namespace's pods after a (re-)list; returns what changed. The next
    /// index is built from a copy of the current one, under no lock but a read lock
    /// (which readers share), and swapped in under the write lock: lookups go on
    /// answering from the current index while thousands of pods are indexed, and wait at
    /// most for a pointer swap. The copy cannot go stale before the swap: this watch
    /// task is the index's only writer (a restarted watch runs after the old one ended).
    pub(super) fn replace(&self, namespace: Option<&str>, records: Vec<PodRecord>) -> Vec<PodChange> {
        let mut next = self.read_index().clone();
        let changes = next.replace(namespace, records);
        #[cfg(test)]
        if let Some(look) = self.while_indexing.lock().unwrap().take() {
            look(self);
        }
        if changes.is_empty() {
            // A re-list that found what the watch already knew (the usual 410): nothing
            // to swap.
            return changes;
        }
        let previous = std::mem::replace(&mut *self.write_index(), next);
        // Freed after the lock is released: the tables of every pod.
        drop(previous);
        changes
    }

    /// Tells every subscriber each event, in order (see [`Subscribers::publish`]).
    pub(super) fn publish(&self, events: impl IntoIterator<Item = WatchEvent>) {
        self.subscribers.publish(events);
    }

    /// The watch works (an event was applied): no error is current.
    pub(super) fn recovered(&self) {
        self.health().recovered();
    }

    /// Records a failure; subscribers hear of it once per kind, however often retries fail.
    pub(super) fn failed(&self, kind: ErrorKind, message: String, account: Option<(String, String)>) {
        let news = self.health().failed(kind, &message, account);
        if news {
            tracing::warn!("{message}");
            self.publish([WatchEvent::ApiError(message)]);
        }
    }

    /// Records a watcher's failure, described for `subject`; its kind.
    pub(super) fn failed_with(&self, error: &watcher::Error, subject: &Subject) -> ErrorKind {
        let (kind, message) = describe(error, subject);
        let account = (kind == ErrorKind::Forbidden)
            .then(|| service_account(&message))
            .flatten();
        self.failed(kind, message, account);
        kind
    }

    /// Records that the watch died and will be restarted. The index keeps what it holds
    /// (lookups go on answering from it) but is no longer known to match the server: it
    /// is not synced again until the restarted watch has listed every namespace.
    pub(super) fn restarting(&self, reason: String) {
        self.synced.send_replace(false);
        self.health().restarting(&reason);
        tracing::error!("{reason}");
        // A subscriber may be what panicked: telling them must not kill the supervisor.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| self.publish([WatchEvent::ApiError(reason)])));
    }

    /// Notes the resourceVersion of the object an event carries, if it carries one.
    pub(super) fn saw<K: Metadata<Ty = ObjectMeta>>(&self, event: &watcher::Result<Event<K>>) {
        let object = match event {
            Ok(Event::Apply(object) | Event::Delete(object) | Event::InitApply(object)) => object,
            Ok(Event::Init | Event::InitDone) | Err(_) => return,
        };
        if let Some(rv) = &object.metadata().resource_version {
            self.health().resource_version = Some(rv.clone());
        }
    }

    /// A (re-)list is in and `changes` were made to the index; `complete`: every
    /// namespace has been listed, the index matches the server.
    pub(super) fn listed(&self, changes: Vec<PodChange>, complete: bool) {
        let mut health = self.health();
        health.last_sync = Some(SystemTime::now());
        health.recovered();
        drop(health);
        self.publish(changes.into_iter().map(WatchEvent::Pod));
        release_list_memory();
        if complete {
            // Tell subscribers before waking `synced` waiters: whoever subscribes after
            // waiting must not receive a stale `Synced`.
            self.publish([WatchEvent::Synced]);
            self.health().synced = true;
            self.synced.send_replace(true);
        }
    }
}

/// A list page holds hundreds of pods (the response text, then their decoded fields)
/// before the index keeps a few hundred bytes of each; glibc keeps the freed pages in its
/// arenas for good unless asked to give them back.
fn release_list_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> WatchSpec {
        WatchSpec {
            namespaces: vec![Some("default".into())],
            home: Some("default".into()),
            slice_managed_by: None,
            label_selector: None,
            field_selector: None,
            service: None,
            cluster_domain: "cluster.local".into(),
        }
    }

    fn record(name: &str, ip: &str) -> PodRecord {
        crate::index::tests::record("default", name, &[ip])
    }

    #[test]
    fn lookups_answer_from_the_current_index_while_a_relist_is_indexed() {
        let state = State::new(&spec());
        state.replace(Some("default"), vec![record("a", "198.51.100.1")]);
        let (looked, lookups) = std::sync::mpsc::channel();
        *state.while_indexing.lock().unwrap() = Some(Box::new(move |state: &State| {
            // From another thread, as a scheduler would look up: the index must be free.
            let pods = std::thread::scope(|s| {
                s.spawn(|| state.index.try_read().map(|index| index.len()).ok())
                    .join()
                    .unwrap()
            });
            looked.send(pods).unwrap();
        }));
        let changes = state.replace(
            Some("default"),
            vec![record("a", "198.51.100.1"), record("b", "198.51.100.2")],
        );
        // Readable while the re-list was indexed, and still the index before it.
        assert_eq!(lookups.try_recv(), Ok(Some(1)));
        assert!(matches!(changes.as_slice(), [PodChange::Added(pod)] if &*pod.name == "b"));
        assert_eq!(state.read_index().len(), 2);
    }

    #[test]
    fn the_newest_resource_version_is_the_last_object_seen() {
        let state = State::new(&spec());
        let pod = |rv: &str| -> crate::wire::WirePod {
            serde_json::from_value(serde_json::json!({ "metadata": { "name": "a", "resourceVersion": rv } })).unwrap()
        };
        state.saw(&Ok(Event::InitApply(pod("5"))));
        state.saw(&Ok(Event::Delete(pod("7"))));
        state.saw(&Ok(Event::<crate::wire::WirePod>::InitDone));
        state.saw(&Err::<Event<crate::wire::WirePod>, _>(
            watcher::Error::NoResourceVersion,
        ));
        assert_eq!(state.health().resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn a_complete_listing_tells_subscribers_before_it_wakes_synced_waiters() {
        let state = Arc::new(State::new(&spec()));
        let synced = state.synced.subscribe();
        let (heard, events) = std::sync::mpsc::channel();
        state.subscribers.subscribe(
            1,
            Box::new(move |event| {
                // What a waiter woken now would see: not yet synced when Synced is heard.
                heard.send((event.clone(), *synced.borrow())).is_ok()
            }),
        );
        let changes = state.replace(Some("default"), vec![record("a", "198.51.100.1")]);
        state.listed(changes, false);
        assert!(!*state.synced.borrow() && !state.health().synced);
        state.listed(Vec::new(), true);
        let events: Vec<_> = events.try_iter().collect();
        assert!(
            matches!(
                events.as_slice(),
                [
                    (WatchEvent::Pod(PodChange::Added(_)), false),
                    (WatchEvent::Synced, false)
                ]
            ),
            "{events:?}"
        );
        assert!(*state.synced.borrow() && state.health().synced);

        state.restarting("the watch panicked: boom".into());
        assert!(!*state.synced.borrow() && !state.health().synced);
    }
}

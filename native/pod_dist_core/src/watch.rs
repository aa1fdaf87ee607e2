//! One watch: kube-runtime's watcher (list, then watch from the list's
//! resourceVersion, bookmarks, re-list on `410 Gone`) per namespace, paced after
//! failures by [`crate::retry`], feeding the pod index and telling subscribers what
//! changed. A supervisor restarts the whole watch if it ever dies.
//!
//! Readers never wait for the writer. Lookups (`resolve`, on normal BEAM schedulers)
//! take the index's read lock; the watch task, its only writer, takes the write lock
//! for one pod's upsert or removal, or to swap in a whole index that a (re-)list built
//! beside the current one. Subscribers are called from a snapshot of their list,
//! outside the lock that subscribing and unsubscribing take: encoding and sending
//! events holds nothing a scheduler waits on.
//!
//! The parts, by job: `supervisor` (restarts, reconnects, the pod source's loop),
//! `relist` (what each pod event does to the index), [`lists`] (how the initial
//! state is listed), `slice_source` (the EndpointSlice source's loop), `state`
//! (what the task shares with readers), `subscribers`, `health` and `failure`
//! (a failure's kind and its message).

use std::sync::{Arc, RwLockReadGuard};
use std::time::Duration;

use kube::Client;

use crate::index::{Family, PodChange, PodIndex, Resolution};
use crate::pod::PodRecord;
use state::State;

mod failure;
mod health;
pub mod lists;
mod relist;
mod slice_source;
mod state;
mod subscribers;
mod supervisor;

pub use health::{ErrorKind, Health};
pub use supervisor::panic_message;

/// What to watch: the namespaces (`None`: all) and optional selectors, or the
/// EndpointSlices of one Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchSpec {
    /// Namespaces to watch; `None` means every namespace. With a [`WatchSpec::service`],
    /// only the first counts, and it must be named.
    pub namespaces: Vec<Option<String>>,
    /// The source: `None` watches pods; `Some(name)` watches the EndpointSlices of the
    /// Service `name` in the first namespace (see `slice_source`), so the credentials
    /// need no access to pods. The selectors are for pods and then unused.
    pub service: Option<String>,
    /// With a [`WatchSpec::service`]: the `endpointslice.kubernetes.io/managed-by` value
    /// a slice must carry to be read; `None`: the EndpointSlice controller's
    /// ([`crate::slice_wire::CONTROLLER_MANAGER`]). Whoever may write slices with that
    /// value in the namespace speaks for the Service's pods.
    pub slice_managed_by: Option<String>,
    /// `labelSelector`
    pub label_selector: Option<String>,
    /// `fieldSelector`
    pub field_selector: Option<String>,
    /// The cluster's DNS domain, for fully qualified host names (`cluster.local`).
    pub cluster_domain: String,
    /// The namespace names are resolved from, as cluster DNS would for a pod of it
    /// (bare pod names are looked up there); `None`: only names that carry a namespace.
    pub home: Option<String>,
}

/// What subscribers hear.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A pod was added, changed or deleted.
    Pod(PodChange),
    /// Every namespace has completed a (re-)list: the index matches the server.
    Synced,
    /// The API failed; the index keeps its last known state. Sent once per new error.
    ApiError(String),
}

/// A subscriber callback; returning `false` unsubscribes it.
pub type Subscriber = Box<dyn FnMut(&WatchEvent) -> bool + Send>;

/// Makes kube clients for a watch (called again after a 401).
pub trait MakeClient: Fn() -> Result<Client, String> + Send + Sync + 'static {}
impl<F: Fn() -> Result<Client, String> + Send + Sync + 'static> MakeClient for F {}

/// A running watch. Dropping it stops the watch.
pub struct Watch {
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Starts watching on `runtime`, with clients from `make_client`. A new client is
    /// made whenever the API answers 401, so a rotated token file is read at once.
    pub fn start(make_client: impl MakeClient, spec: &WatchSpec, runtime: &tokio::runtime::Handle) -> Watch {
        let state = Arc::new(State::new(spec));
        let task = runtime.spawn(supervisor::supervise(
            make_client,
            supervisor::Target::new(spec),
            state.clone(),
        ));
        Watch { state, task }
    }

    /// Records which API server this watch follows and with which credentials.
    pub fn set_origin(&self, api_url: String, source: &'static str) {
        self.state.health().origin = Some((api_url, source));
    }

    /// Waits until every namespace has been listed, up to `timeout`; true if synced.
    pub async fn synced(&self, timeout: Duration) -> bool {
        self.wait_synced(timeout).await
    }

    /// A future that is true once every namespace has been listed, false after `timeout`
    /// or when the watch stops first. It holds no reference on the watch, so a waiter
    /// never keeps a watch alive.
    pub fn wait_synced(&self, timeout: Duration) -> impl std::future::Future<Output = bool> + Send + 'static {
        let mut rx = self.state.synced.subscribe();
        async move {
            tokio::time::timeout(timeout, rx.wait_for(|synced| *synced))
                .await
                .is_ok_and(|r| r.is_ok())
        }
    }

    /// Whether the initial list is in.
    pub fn is_synced(&self) -> bool {
        *self.state.synced.borrow()
    }

    /// The index, for reading.
    pub fn index(&self) -> RwLockReadGuard<'_, PodIndex> {
        self.state.read_index()
    }

    /// Resolves a host name in any Kubernetes form (see [`crate::host`]) from the index,
    /// to an address of `family`. While the initial list is not in, a host that may be a
    /// pod and is not found is [`Resolution::NotSynced`] rather than `NotFound`: the caller
    /// decides whether to wait.
    pub fn resolve(&self, host: &str, family: Family) -> Resolution {
        let host = crate::host::parse(host, &self.state.cluster_domain);
        match self.index().resolve(&host, self.state.home.as_deref(), family) {
            Resolution::NotFound | Resolution::Ambiguous(_) if host.may_be_pod() && !self.is_synced() => {
                Resolution::NotSynced
            }
            resolution => resolution,
        }
    }

    /// A fresh subscriber id, for [`Watch::subscribe_as`].
    pub fn subscriber_id(&self) -> u64 {
        self.state.subscribers.next_id()
    }

    /// Adds a subscriber; it hears every event from now on. Returns its id.
    pub fn subscribe(&self, subscriber: Subscriber) -> u64 {
        let id = self.subscriber_id();
        self.subscribe_as(id, subscriber);
        id
    }

    /// Adds a subscriber under an id from [`Watch::subscriber_id`]. Brief: it never waits
    /// for a publish under way (the subscriber hears the events published after it).
    pub fn subscribe_as(&self, id: u64, subscriber: Subscriber) {
        self.state.subscribers.subscribe(id, subscriber);
    }

    /// Removes a subscriber: it hears nothing more, even from a publish under way. Brief:
    /// it never waits for a publish.
    pub fn unsubscribe(&self, id: u64) {
        self.state.subscribers.unsubscribe(id);
    }

    /// Every indexed pod, sorted by namespace then name. Sorted after the read lock is
    /// released: the lock is held only to copy pointers.
    pub fn pods(&self) -> Vec<Arc<PodRecord>> {
        let records = self.index().records();
        crate::index::sorted(records)
    }

    /// The API error the watch is in now, if any (cleared once it works again). Cheap,
    /// unlike [`Watch::health`], which sizes the index.
    pub fn current_error(&self) -> Option<String> {
        self.state.health().last_error.clone()
    }

    /// The cluster DNS domain qualified names are read (and built) in.
    pub fn cluster_domain(&self) -> &str {
        &self.state.cluster_domain
    }

    /// Test hook: the watch task panics when the next event arrives, as a bug in
    /// decoding, indexing or a subscriber would make it, so that tests can watch the
    /// supervisor restart it. Only in builds with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub fn panic_at_next_event(&self) {
        self.state
            .panic_at_next_event
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The watch's health now.
    pub fn health(&self) -> Health {
        let mut health = self.state.health().clone();
        let index = self.index();
        health.pods = index.len();
        health.index_bytes = index.heap_bytes();
        health
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

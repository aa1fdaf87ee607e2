//! One watch: kube-runtime's watcher (list, then watch from the list's
//! resourceVersion, bookmarks, re-list on `410 Gone`) per namespace, paced after
//! failures by [`crate::retry`], feeding the pod index and telling subscribers what
//! changed. A supervisor restarts the whole watch if it ever dies.
//!
//! Readers never wait for the writer. Lookups (`resolve`, on normal BEAM schedulers)
//! take the index's read lock; the watch task, its only writer, takes the write lock
//! for one pod's upsert or removal, or to swap in a whole index that a (re-)list built
//! beside the current one ([`State::replace`]). Subscribers are called from a snapshot
//! of their list, outside the lock that subscribing and unsubscribing take
//! ([`State::publish`]): encoding and sending events holds nothing a scheduler waits on.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::time::Instant;

use crate::index::{Family, PodChange, PodIndex, Resolution};
use crate::pod::PodRecord;
use crate::retry::{jitter, Backoff, Paced};
use crate::wire::WirePod;
use lists::Listing;

pub mod lists;
mod slice_source;

/// What to watch: the namespaces (`None`: all) and optional selectors, or the
/// EndpointSlices of one Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchSpec {
    /// Namespaces to watch; `None` means every namespace. With a [`WatchSpec::service`],
    /// only the first counts, and it must be named.
    pub namespaces: Vec<Option<String>>,
    /// The source: `None` watches pods; `Some(name)` watches the EndpointSlices of the
    /// Service `name` in the first namespace (see [`slice_source`]), so the credentials
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

/// The watch's health, for diagnostics.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Every namespace has been listed at least once.
    pub synced: bool,
    /// When the last (re-)list completed.
    pub last_sync: Option<SystemTime>,
    /// The newest resourceVersion seen on an object.
    pub resource_version: Option<String>,
    /// Errors seen since the start.
    pub errors: u64,
    /// The last error, cleared once the watch works again.
    pub last_error: Option<String>,
    /// Pods indexed.
    pub pods: usize,
    /// Heap bytes held by the index (records and lookup tables).
    pub index_bytes: usize,
    /// What failed last; `None` while nothing does.
    pub last_error_kind: Option<ErrorKind>,
    /// The service account (namespace, name) the API named when it denied access, kept
    /// once learnt: whom a Role must be bound to.
    pub service_account: Option<(String, String)>,
    /// The cluster DNS domain qualified names are read in.
    pub cluster_domain: String,
    /// How often the watch died (a panic) and was restarted.
    pub restarts: u64,
    /// Why it was last restarted; kept after it recovers, for diagnostics.
    pub last_restart: Option<String>,
    /// The API server watched, and where its credentials came from (for diagnostics).
    pub origin: Option<(String, &'static str)>,
    /// The namespaces watched; `None` stands for all of them.
    pub namespaces: Vec<Option<String>>,
    /// The Service whose EndpointSlices are the source; `None`: pods are.
    pub service: Option<String>,
}

impl Health {
    /// The watch works again: no error is current (the count and the service account
    /// learnt stay, for diagnostics).
    fn recovered(&mut self) {
        self.last_error = None;
        self.last_error_kind = None;
    }
}

/// What kind of failure the watch is in, for diagnostics to act on without reading
/// the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API server could not be reached.
    Unreachable,
    /// The API server's certificate is not signed by the configured CA.
    Certificate,
    /// `401`: the credentials were rejected.
    Unauthorized,
    /// `403`: the credentials may not list or watch pods (or the Service's slices).
    Forbidden,
    /// Another HTTP status.
    Status(u16),
    /// No client could be made from the configuration.
    Client,
    /// The watch itself died (a bug) and is being restarted.
    Crashed,
    /// `429`: the API server's priority and fairness turned requests away; the watch
    /// waits the server's `Retry-After` (see [`crate::retry::RETRY_AFTER_CAP`]) on top of
    /// its backoff before the next.
    Throttled,
}

struct State {
    cluster_domain: String,
    /// See [`WatchSpec::home`].
    home: Option<String>,
    index: RwLock<PodIndex>,
    synced: tokio::sync::watch::Sender<bool>,
    health: Mutex<Health>,
    /// Copied on write: a publish calls a snapshot of it, so (un)subscribing never waits
    /// for events to be sent.
    subscribers: Mutex<Arc<Vec<Arc<Slot>>>>,
    /// Held by a publish for its whole run, so that each subscriber hears events in the
    /// order they were published. Only publishers take it.
    publishing: Mutex<()>,
    next_subscriber: std::sync::atomic::AtomicU64,
    /// Whether the server serves streaming lists, as far as the watch has learnt (see
    /// [`lists`]); kept across namespaces and clients.
    streaming: Arc<AtomicBool>,
    /// Set by [`Watch::panic_at_next_event`]: the watch panics at its next event. Behind
    /// the `test-hooks` feature, not `cfg(test)`: the tests that use it (the ExUnit suite
    /// through the NIF, and the simulator-backed tests in the root workspace) build this
    /// crate as a dependency.
    #[cfg(feature = "test-hooks")]
    panic_at_next_event: std::sync::atomic::AtomicBool,
    /// Tests set it to look at the index while a re-list's index is being built. Only this
    /// crate's unit tests can reach it (it takes the private [`State`]): `cfg(test)`.
    #[cfg(test)]
    while_indexing: Mutex<Option<Look>>,
}

/// What a test runs at a point of the watch, given its state.
#[cfg(test)]
type Look = Box<dyn FnOnce(&State) + Send>;

/// One subscriber in the list.
struct Slot {
    id: u64,
    /// Set once it unsubscribed or declined an event: it hears nothing more, even from a
    /// publish already under way with a snapshot that still holds it.
    removed: AtomicBool,
    /// Locked only by the publisher (which holds `publishing`): never contended.
    callback: Mutex<Subscriber>,
}

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
        let mut config = watcher::Config::default();
        let source = match &spec.service {
            Some(service) => {
                use crate::slice_wire::{CONTROLLER_MANAGER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
                let managed_by = spec.slice_managed_by.as_deref().unwrap_or(CONTROLLER_MANAGER);
                // Only the manager's slices are even sent: anyone else's speak for nobody.
                config = config.labels(&format!(
                    "{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={managed_by}"
                ));
                Source::Slices {
                    namespace: spec.namespaces.first().cloned().flatten().unwrap_or_default(),
                    service: service.clone(),
                    managed_by: managed_by.to_string(),
                }
            }
            None => {
                if let Some(labels) = &spec.label_selector {
                    config = config.labels(labels);
                }
                if let Some(fields) = &spec.field_selector {
                    config = config.fields(fields);
                }
                Source::Pods
            }
        };
        let target = Target {
            namespaces: spec.namespaces.clone(),
            source,
            config,
        };
        let task = runtime.spawn(supervise(make_client, target, state.clone()));
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
        self.state.index.read().unwrap_or_else(|p| p.into_inner())
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
        self.state
            .next_subscriber
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
        self.state.subscribe(id, subscriber);
    }

    /// Removes a subscriber: it hears nothing more, even from a publish under way. Brief:
    /// it never waits for a publish.
    pub fn unsubscribe(&self, id: u64) {
        self.state.unsubscribe(id);
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
        self.state.panic_at_next_event.store(true, Ordering::Relaxed);
    }

    /// The watch's health now.
    pub fn health(&self) -> Health {
        let mut health = self.state.health.lock().unwrap_or_else(|p| p.into_inner()).clone();
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

/// Makes kube clients for a watch (called again after a 401).
pub trait MakeClient: Fn() -> Result<Client, String> + Send + Sync + 'static {}
impl<F: Fn() -> Result<Client, String> + Send + Sync + 'static> MakeClient for F {}

/// What one watch follows.
struct Target {
    namespaces: Vec<Option<String>>,
    source: Source,
    config: watcher::Config,
}

/// Where the index's records come from.
enum Source {
    /// The pods of [`Target::namespaces`].
    Pods,
    /// The EndpointSlices of one Service, written by `managed_by`.
    Slices {
        namespace: String,
        service: String,
        managed_by: String,
    },
}

/// Runs the watch, and runs it again whenever it dies: a panic anywhere in it (a bug in
/// decoding, indexing or a subscriber) must not leave the index frozen, still claiming
/// to be synced, for the rest of the VM's life. Restarts are paced like API retries, so
/// a watch that keeps dying neither spins nor asks the API more often than retries do.
async fn supervise(make_client: impl MakeClient, target: Target, state: Arc<State>) {
    let mut restarts = Backoff::default();
    loop {
        let ended = AssertUnwindSafe(run(&make_client, &target, &state))
            .catch_unwind()
            .await;
        let reason = match ended {
            Ok(()) => "the watch stopped".to_string(),
            Err(panic) => format!("the watch panicked: {}", panic_message(&*panic)),
        };
        let delay = restarts.failed(Instant::now(), jitter());
        state.restarting(format!("{reason}; restarting it in {} ms", delay.as_millis()));
        tokio::time::sleep(delay).await;
    }
}

/// A panic's message, when it has one.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Follows the API with a fresh client each time the last one's credentials were
/// rejected (a rotated token file is read again), pacing those restarts like retries.
async fn run(make_client: &impl MakeClient, target: &Target, state: &State) {
    let mut reconnects = Backoff::default();
    // The slices known, kept across clients: a relist after a 401 keeps the grace of
    // endpoints on the move.
    let mut merge = crate::slices::SliceMerge::default();
    loop {
        match make_client() {
            Ok(client) => match &target.source {
                Source::Pods => follow(client, target, state).await,
                Source::Slices {
                    namespace,
                    service,
                    managed_by,
                } => {
                    let slices = slice_source::Slices {
                        namespace,
                        service,
                        managed_by,
                    };
                    slice_source::follow(client, &slices, &target.config, &mut merge, state).await
                }
            },
            Err(message) => state.failed(ErrorKind::Client, message, None),
        }
        // A watch that worked for a while starts the schedule over: a rotated token is
        // read again within a second; a token that stays rejected is asked about no
        // more often than a failing watch retries.
        tokio::time::sleep(reconnects.failed(Instant::now(), jitter())).await;
    }
}

/// Follows every namespace with one client until the API rejects its credentials.
async fn follow(client: Client, target: &Target, state: &State) {
    let namespaces = target.namespaces.len();
    let streams = target.namespaces.iter().map(|ns| {
        let api = match ns {
            Some(ns) => Api::<WirePod>::namespaced(client.clone(), ns),
            None => Api::<WirePod>::all(client.clone()),
        };
        let ns = ns.clone();
        let open: lists::Open<WirePod> = Box::new(move |config| watcher::watcher(api.clone(), config).boxed());
        Paced::new(Listing::new(open, target.config.clone(), state.streaming.clone()))
            .map(move |event| (ns.clone(), event))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    // A re-list arrives as Init, InitApply..., InitDone; it replaces the namespace's
    // pods only when complete, so readers never see a half-listed index.
    let mut relists: HashMap<Option<String>, Vec<PodRecord>> = HashMap::new();
    let mut listed: HashSet<Option<String>> = HashSet::new();
    while let Some((ns, event)) = events.next().await {
        #[cfg(feature = "test-hooks")]
        if state
            .panic_at_next_event
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            panic!("injected by a test");
        }
        let changes = match event {
            Ok(Event::Init) => {
                relists.insert(ns, Vec::new());
                continue;
            }
            Ok(Event::InitApply(pod)) => {
                state.saw(&pod.metadata);
                relists.entry(ns).or_default().extend(PodRecord::from_pod(&pod));
                continue;
            }
            Ok(Event::InitDone) => {
                let records = relists.remove(&ns).unwrap_or_default();
                let changes = state.replace(ns.as_deref(), records);
                listed.insert(ns);
                state.listed(changes, listed.len() == namespaces);
                continue;
            }
            Ok(Event::Apply(pod)) => {
                state.saw(&pod.metadata);
                PodRecord::from_pod(&pod).and_then(|r| state.write_index().upsert(r))
            }
            Ok(Event::Delete(pod)) => {
                state.saw(&pod.metadata);
                let (namespace, name) = (
                    pod.metadata.namespace.unwrap_or_default(),
                    pod.metadata.name.unwrap_or_default(),
                );
                state.write_index().remove(&namespace, &name)
            }
            // A 410 only means "re-list", which the watcher is doing: not worth an alarm.
            Err(error) if is_expired(&error) => continue,
            Err(error) => {
                let scope = ns
                    .as_deref()
                    .map_or("all namespaces".to_string(), |ns| format!("namespace {ns:?}"));
                let kind = state.failed_with(&error, &Subject::pods(&scope));
                if kind == ErrorKind::Unauthorized {
                    // A fresh client re-reads the token file: a rotated token works at once.
                    return;
                }
                continue;
            }
        };
        state.health().recovered();
        state.publish(changes.into_iter().map(WatchEvent::Pod));
    }
}

impl State {
    fn new(spec: &WatchSpec) -> State {
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
            subscribers: Mutex::new(Arc::new(Vec::new())),
            publishing: Mutex::new(()),
            next_subscriber: std::sync::atomic::AtomicU64::new(1),
            streaming: Arc::new(AtomicBool::new(true)),
            #[cfg(feature = "test-hooks")]
            panic_at_next_event: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            while_indexing: Mutex::new(None),
        }
    }

    fn subscribe(&self, id: u64, subscriber: Subscriber) {
        let slot = Arc::new(Slot {
            id,
            removed: AtomicBool::new(false),
            callback: Mutex::new(subscriber),
        });
        // Copies the list (a few pointers per subscriber) only while a publish holds a
        // snapshot of it; that snapshot keeps the old list, so nothing is freed here.
        Arc::make_mut(&mut self.subscribers()).push(slot);
    }

    fn unsubscribe(&self, id: u64) {
        let removed = self.remove_subscribers(|slot| {
            let this = slot.id == id;
            if this {
                slot.removed.store(true, Ordering::Release);
            }
            this
        });
        // Dropped outside the lock: a subscriber may hold the last reference to this watch.
        drop(removed);
    }

    fn read_index(&self) -> RwLockReadGuard<'_, PodIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, PodIndex> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces a namespace's pods after a (re-)list; returns what changed. The next
    /// index is built from a copy of the current one, under no lock but a read lock
    /// (which readers share), and swapped in under the write lock: lookups go on
    /// answering from the current index while thousands of pods are indexed, and wait at
    /// most for a pointer swap. The copy cannot go stale before the swap: this watch
    /// task is the index's only writer (a restarted watch runs after the old one ended).
    fn replace(&self, namespace: Option<&str>, records: Vec<PodRecord>) -> Vec<PodChange> {
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

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failure; subscribers hear of it once per kind, however often retries fail.
    fn failed(&self, kind: ErrorKind, message: String, account: Option<(String, String)>) {
        let mut health = self.health();
        health.errors += 1;
        let new = health.last_error.is_none() || health.last_error_kind != Some(kind);
        health.last_error = Some(message.clone());
        health.last_error_kind = Some(kind);
        if account.is_some() {
            health.service_account = account;
        }
        drop(health);
        if new {
            tracing::warn!("{message}");
            self.publish([WatchEvent::ApiError(message)]);
        }
    }

    /// Records that the watch died and will be restarted. The index keeps what it holds
    /// (lookups go on answering from it) but is no longer known to match the server: it
    /// is not synced again until the restarted watch has listed every namespace.
    fn restarting(&self, reason: String) {
        self.synced.send_replace(false);
        let mut health = self.health();
        health.synced = false;
        health.restarts += 1;
        health.errors += 1;
        health.last_error = Some(reason.clone());
        health.last_error_kind = Some(ErrorKind::Crashed);
        health.last_restart = Some(reason.clone());
        drop(health);
        tracing::error!("{reason}");
        // A subscriber may be what panicked: telling them must not kill the supervisor.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| self.publish([WatchEvent::ApiError(reason)])));
    }

    fn saw(&self, metadata: &ObjectMeta) {
        if let Some(rv) = &metadata.resource_version {
            self.health().resource_version = Some(rv.clone());
        }
    }

    /// A (re-)list is in and `changes` were made to the index; `complete`: every
    /// namespace has been listed, the index matches the server.
    fn listed(&self, changes: Vec<PodChange>, complete: bool) {
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

    /// Records a watcher's failure, described for `subject`; its kind.
    fn failed_with(&self, error: &watcher::Error, subject: &Subject) -> ErrorKind {
        let (kind, message) = describe(error, subject);
        let account = (kind == ErrorKind::Forbidden)
            .then(|| service_account(&message))
            .flatten();
        self.failed(kind, message, account);
        kind
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Arc<Vec<Arc<Slot>>>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the subscribers `which` picks out of the list, and returns them: the caller
    /// drops them after the lock is released (a subscriber may hold the last reference
    /// to its watch).
    fn remove_subscribers(&self, mut which: impl FnMut(&Slot) -> bool) -> Vec<Arc<Slot>> {
        let mut list = self.subscribers();
        let (gone, kept): (Vec<_>, Vec<_>) = list.iter().cloned().partition(|slot| which(slot));
        if gone.is_empty() {
            return gone;
        }
        // The old list is only pointers to slots that `gone` and `kept` hold too.
        *list = Arc::new(kept);
        gone
    }

    /// Tells every subscriber each event, in order. The subscriber list is locked only
    /// to take a snapshot of it: encoding and sending run under no lock that
    /// subscribing, unsubscribing or a lookup takes. A subscriber that returns `false`
    /// is removed.
    fn publish(&self, events: impl IntoIterator<Item = WatchEvent>) {
        let publishing = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = self.subscribers().clone();
        let mut declined = false;
        for event in events {
            for slot in snapshot.iter() {
                if slot.removed.load(Ordering::Acquire) {
                    continue;
                }
                let mut callback = slot.callback.lock().unwrap_or_else(|p| p.into_inner());
                if !callback(&event) {
                    slot.removed.store(true, Ordering::Release);
                    declined = true;
                }
            }
        }
        let gone = if declined {
            self.remove_subscribers(|slot| slot.removed.load(Ordering::Acquire))
        } else {
            Vec::new()
        };
        drop(publishing);
        // Dropped outside every lock: a subscriber may hold the last reference to its
        // watch, and the snapshot may hold the last reference to a removed subscriber.
        drop(gone);
        drop(snapshot);
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

fn is_expired(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// The service account a denial names: the API says `User
/// "system:serviceaccount:<namespace>:<name>" cannot list resource "pods" ...`.
fn service_account(message: &str) -> Option<(String, String)> {
    let rest = &message[message.find("system:serviceaccount:")? + "system:serviceaccount:".len()..];
    let account = rest.split(|c: char| c == '"' || c.is_whitespace()).next()?;
    let (namespace, name) = account.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (namespace.to_string(), name.to_string()))
}

/// What a watch reads, for its error messages: what it is, and what to grant on a 403.
struct Subject {
    what: String,
    grant: String,
}

impl Subject {
    fn pods(scope: &str) -> Subject {
        Subject {
            what: format!("pods in {scope}"),
            grant: "grant get, list and watch on pods to this service account (a Role and RoleBinding in each watched namespace)".into(),
        }
    }

    fn slices(namespace: &str, service: &str) -> Subject {
        Subject {
            what: format!("endpointslices of service {service:?} in namespace {namespace:?}"),
            grant: format!("grant get, list and watch on endpointslices (API group discovery.k8s.io) to this service account (a Role and RoleBinding in namespace {namespace:?}); no access to pods is needed"),
        }
    }
}

/// A readable account of a watch failure that says what to fix, and its kind.
fn describe(error: &watcher::Error, subject: &Subject) -> (ErrorKind, String) {
    let scope = &subject.what;
    let api_error = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(&**status),
        watcher::Error::WatchError(status) => Some(&**status),
        _ => None,
    };
    let mut kind = match api_error.map(|s| s.code) {
        Some(401) => ErrorKind::Unauthorized,
        Some(429) => ErrorKind::Throttled,
        Some(403) => ErrorKind::Forbidden,
        Some(code) => ErrorKind::Status(code),
        None => ErrorKind::Unreachable,
    };
    let message = match api_error {
        Some(status) if status.code == 401 => format!(
            "{scope}: 401 Unauthorized: the API rejected the token (expired or rotated service-account token, or wrong credentials)"
        ),
        Some(status) if status.code == 403 => format!(
            "{scope}: 403 Forbidden: {}. Fix: {}",
            status.message, subject.grant
        ),
        Some(status) if status.code == 429 => {
            let wait = crate::retry::retry_after(error).map_or_else(
                || "no Retry-After given".to_string(),
                |wait| format!("waiting {} s (its Retry-After, at most {} s) before the next", wait.as_secs(), crate::retry::RETRY_AFTER_CAP.as_secs()),
            );
            format!(
                "{scope}: 429 Too Many Requests: the API server's priority and fairness is turning this service account's requests away; {wait}. Fix: if it lasts, give the service account its own priority level (examples/kubernetes/flowschema.yaml)"
            )
        }
        Some(status) => format!("{scope}: {} {}", status.code, status.message),
        None => {
            let cause = root_cause(error);
            let hint = if cause.to_lowercase().contains("certificate") {
                kind = ErrorKind::Certificate;
                ". Fix: the API server's certificate is not signed by the configured CA (ca_file, or the service account's ca.crt)"
            } else {
                "; retrying with backoff"
            };
            format!("{scope}: cannot reach the API server: {cause}{hint}")
        }
    };
    (kind, message)
}

/// The innermost error of a chain: "client error (Connect)" says little, the certificate
/// or connection failure under it says what is wrong.
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_names_its_service_account() {
        let denied = r#"pods in namespace "prod": 403 Forbidden: pods is forbidden: User "system:serviceaccount:prod:api" cannot list resource "pods" in API group "" in the namespace "prod". Fix: grant"#;
        assert_eq!(service_account(denied), Some(("prod".into(), "api".into())));
        assert_eq!(service_account(r#"User "jane" cannot list"#), None);
        assert_eq!(service_account("system:serviceaccount:prod"), None);
    }

    fn spec() -> WatchSpec {
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
    fn subscribing_and_unsubscribing_never_wait_for_a_publish_under_way() {
        use std::sync::mpsc;
        let state = Arc::new(State::new(&spec()));
        // A subscriber slow to take its first event (a busy send): the publish stays
        // inside it until the test releases it.
        let (inside, entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let (slow_heard, slow_events) = mpsc::channel();
        state.subscribe(
            1,
            Box::new(move |event| {
                let _ = inside.send(());
                let _ = released.recv();
                slow_heard.send(event.clone()).is_ok()
            }),
        );
        let publisher = {
            let state = state.clone();
            std::thread::spawn(move || state.publish([WatchEvent::Synced, WatchEvent::ApiError("second".into())]))
        };
        entered.recv().unwrap();

        // Meanwhile, as the NIF's subscribe and the monitor's down callback do on a
        // scheduler: neither waits for the publish (were they to, this would hang, the
        // publish being released only after they return).
        let (done, returned) = mpsc::channel();
        {
            let state = state.clone();
            std::thread::spawn(move || {
                let (heard, events) = mpsc::channel();
                state.subscribe(2, Box::new(move |event| heard.send(event.clone()).is_ok()));
                state.unsubscribe(1);
                let _ = done.send(events);
            });
        }
        let new_events = returned
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribe or unsubscribe waited for the publish under way");
        drop(release);
        publisher.join().unwrap();

        // The removed subscriber heard nothing after its removal, not even the rest of
        // the publish under way; the new one hears what is published after it came.
        state.publish([WatchEvent::ApiError("third".into())]);
        assert_eq!(slow_events.try_iter().collect::<Vec<_>>(), [WatchEvent::Synced]);
        assert_eq!(
            new_events.try_iter().collect::<Vec<_>>(),
            [WatchEvent::ApiError("third".into())]
        );
        assert_eq!(state.subscribers().len(), 1);
    }

    #[test]
    fn a_subscriber_that_declines_an_event_is_removed_and_hears_no_more() {
        let state = State::new(&spec());
        let (heard, events) = std::sync::mpsc::channel();
        let mut left = 2;
        state.subscribe(
            1,
            Box::new(move |event| {
                let _ = heard.send(event.clone());
                left -= 1;
                left > 0
            }),
        );
        state.publish((0..4).map(|i| WatchEvent::ApiError(i.to_string())));
        state.publish([WatchEvent::Synced]);
        let events: Vec<_> = events.try_iter().collect();
        assert_eq!(
            events,
            [WatchEvent::ApiError("0".into()), WatchEvent::ApiError("1".into())]
        );
        assert!(state.subscribers().is_empty());
    }
}

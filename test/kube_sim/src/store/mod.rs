//! A store of one kind: the objects, their resourceVersions, a bounded change history and
//! the fan-out of every change to open watches.
//!
//! Every change bumps one global resourceVersion, as etcd's revision does. The history
//! ([`history`]) lets a watch resume from an older version, and lets a paged list stay
//! consistent at its first page's version by rolling later changes back; once a version
//! falls out of the history, both answer `410 Expired` like the real server after
//! compaction. What differs between kinds (checks, defaults, fields) is [`object::Stored`]; continue
//! tokens are [`paging`]'s. Stores of several kinds share one [`Clock`].

pub mod history;
pub mod object;
mod paging;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::broadcast;

use crate::meta::{new_uid, now, random_suffix, unix_now};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use history::{key_of, Change, History};
use paging::{decode_continue, encode_continue};

pub use history::{EventType, Key};
pub use object::Stored;

/// Which pods a list or watch selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `None` for all namespaces.
    pub namespace: Option<String>,
    /// `?labelSelector=`
    pub labels: LabelSelector,
    /// `?fieldSelector=`
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether `object` is selected.
    pub fn matches<T: Stored>(&self, object: &T) -> bool {
        let meta = object.metadata();
        let in_namespace = match &self.namespace {
            Some(ns) => meta.namespace.as_deref() == Some(ns.as_str()),
            None => true,
        };
        in_namespace && self.labels.matches(meta.labels.as_ref()) && self.fields.matches_with(|f| object.field(f))
    }

    fn selects_everything_in_scope(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// The resourceVersion semantics of a list request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListVersion {
    /// No `resourceVersion`, or `"0"`: the current state.
    Latest,
    /// `resourceVersion=N` (with `resourceVersionMatch=NotOlderThan` or none).
    NotOlderThan(u64),
    /// `resourceVersion=N&resourceVersionMatch=Exact`.
    Exact(u64),
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage<T = Pod> {
    /// The selected pods, ordered by namespace then name.
    pub items: Vec<Arc<T>>,
    /// The resourceVersion the page is consistent with.
    pub rv: u64,
    /// Token for the next page, if any.
    pub continue_token: Option<String>,
    /// Pods left after this page (only for unfiltered lists, as the real server).
    pub remaining: Option<i64>,
}

/// What a new watch starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Replay every change after this resourceVersion.
    After(u64),
    /// Send the current objects as `ADDED` first.
    WithInitialState,
    /// Only changes from now on.
    Now,
}

/// Everything a watch needs, taken atomically so no change falls between the parts.
#[derive(Debug)]
pub struct WatchFeed<T = Pod> {
    /// The current objects, for `WatchStart::WithInitialState`.
    pub initial: Vec<Arc<T>>,
    /// Historic changes to replay, for `WatchStart::After`.
    pub replay: Vec<Arc<Change<T>>>,
    /// The resourceVersion the feed starts after.
    pub rv: u64,
    /// Live changes.
    pub live: broadcast::Receiver<Arc<Change<T>>>,
}

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deletion<T = Pod> {
    /// The pod is gone.
    Removed(Arc<T>),
    /// The pod is terminating and goes after the grace period.
    Terminating(Arc<T>, Duration),
}

struct Inner<T> {
    pods: BTreeMap<Key, Arc<T>>,
    history: History<T>,
}

/// The resourceVersion sequence: one per simulator, shared by its stores as etcd's
/// revision is shared by every kind.
#[derive(Debug)]
pub struct Clock(AtomicU64);

impl Default for Clock {
    fn default() -> Self {
        Clock(AtomicU64::new(FIRST_RV))
    }
}

impl Clock {
    /// The last resourceVersion given out.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// The storage of one kind (pods by default).
pub struct Store<T = Pod> {
    inner: Mutex<Inner<T>>,
    clock: Arc<Clock>,
    changes: broadcast::Sender<Arc<Change<T>>>,
}

/// A fresh resourceVersion space starts high, as real clusters' do, so clients never
/// mistake a version for a count.
const FIRST_RV: u64 = 1000;

impl<T: Stored> Store<T> {
    /// A store keeping at most `history_limit` changes for resuming watches.
    pub fn new(history_limit: usize) -> Self {
        Self::with_clock(history_limit, Arc::default())
    }

    /// A store whose resourceVersions come from `clock`.
    pub fn with_clock(history_limit: usize, clock: Arc<Clock>) -> Self {
        let (changes, _) = broadcast::channel(history_limit.clamp(1024, 65536));
        Store {
            inner: Mutex::new(Inner {
                pods: BTreeMap::new(),
                history: History::new(history_limit, clock.current()),
            }),
            clock,
            changes,
        }
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change<T>>> {
        self.changes.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panicking request must not wedge the whole simulator.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.clock.current()
    }

    /// Number of pods stored.
    pub fn len(&self) -> usize {
        self.lock().pods.len()
    }

    /// Whether no pod is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the change history, so older resourceVersions answer `410 Expired`.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.compact(self.clock.current());
    }

    /// One object.
    pub fn get(&self, namespace: &str, name: &str) -> Result<Arc<T>, ApiError> {
        let key = (namespace.to_string(), name.to_string());
        self.lock()
            .pods
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found_of(T::PLURAL, T::GROUP, name))
    }

    /// Creates an object in `namespace`, filling in what the server owns.
    pub fn create(&self, namespace: &str, mut object: T) -> Result<Arc<T>, ApiError> {
        let meta = object.metadata_mut();
        if let Some(ns) = &meta.namespace {
            if ns != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        if meta.name.as_deref().unwrap_or("").is_empty() {
            match &meta.generate_name {
                Some(prefix) if !prefix.is_empty() => meta.name = Some(format!("{prefix}{}", random_suffix())),
                _ => {
                    return Err(ApiError::invalid_of(
                        T::KIND,
                        T::GROUP,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ))
                }
            }
        }
        object.validate()?;
        object.default_fields(true);
        let meta = object.metadata_mut();
        meta.namespace = Some(namespace.to_string());
        meta.uid = Some(new_uid());
        meta.creation_timestamp = Some(now());
        meta.generation = Some(1);
        meta.deletion_timestamp = None;

        let mut inner = self.lock();
        let key = key_of(&object);
        if inner.pods.contains_key(&key) {
            return Err(ApiError::already_exists_of(T::PLURAL, T::GROUP, &key.1));
        }
        Ok(self.commit(&mut inner, EventType::Added, None, object))
    }

    /// Updates an object through `change`, which sees the stored object and returns the new
    /// one. A change that alters nothing commits nothing, as on the real server.
    pub fn update(
        &self,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&T) -> Result<T, ApiError>,
    ) -> Result<Arc<T>, ApiError> {
        let mut inner = self.lock();
        let key = (namespace.to_string(), name.to_string());
        let old = inner
            .pods
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found_of(T::PLURAL, T::GROUP, name))?;
        let mut new = change(&old)?;
        let old_meta = old.metadata();
        if let Some(rv) = new.metadata().resource_version.as_deref().filter(|rv| !rv.is_empty()) {
            if Some(rv) != old_meta.resource_version.as_deref() {
                return Err(ApiError::conflict_of(T::PLURAL, T::GROUP, name));
            }
        }
        let spec_changed = new.spec_changed(&old);
        // Identity and server-owned fields cannot be changed by clients.
        let meta = new.metadata_mut();
        meta.name = old_meta.name.clone();
        meta.namespace = old_meta.namespace.clone();
        meta.uid = old_meta.uid.clone();
        meta.creation_timestamp = old_meta.creation_timestamp.clone();
        meta.deletion_timestamp = old_meta.deletion_timestamp.clone();
        meta.deletion_grace_period_seconds = old_meta.deletion_grace_period_seconds;
        meta.resource_version = old_meta.resource_version.clone();
        meta.generation = old_meta.generation;
        if spec_changed {
            meta.generation = Some(old_meta.generation.unwrap_or(0) + 1);
        }
        new.validate()?;
        new.default_fields(false);
        if new == *old {
            return Ok(old);
        }
        Ok(self.commit(&mut inner, EventType::Modified, Some(old), new))
    }

    /// Deletes an object: at once, or gracefully when its kind says so (see
    /// [`Stored::grace_seconds`]); a graceful deletion only sets the deletion timestamp.
    pub fn delete(&self, namespace: &str, name: &str, grace_seconds: Option<i64>) -> Result<Deletion<T>, ApiError> {
        let mut inner = self.lock();
        let key = (namespace.to_string(), name.to_string());
        let old = inner
            .pods
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found_of(T::PLURAL, T::GROUP, name))?;
        let Some(grace) = old.grace_seconds(grace_seconds) else {
            let removed = self.remove(&mut inner, &key);
            return Ok(Deletion::Removed(removed));
        };
        let old_meta = old.metadata();
        if old_meta.deletion_timestamp.is_some() {
            // Already terminating: a second delete may only shorten the wait.
            let current = old_meta.deletion_grace_period_seconds.unwrap_or(grace);
            if grace >= current {
                return Ok(Deletion::Terminating(old, Duration::from_secs(current as u64)));
            }
        }
        let mut terminating = (*old).clone();
        let deadline = unix_now() + grace;
        let meta = terminating.metadata_mut();
        meta.deletion_timestamp = Time(Timestamp::from_second(deadline).unwrap_or(Timestamp::UNIX_EPOCH)).into();
        meta.deletion_grace_period_seconds = Some(grace);
        let updated = self.commit(&mut inner, EventType::Modified, Some(old), terminating);
        Ok(Deletion::Terminating(updated, Duration::from_secs(grace as u64)))
    }

    /// Removes a terminating pod once its grace period is over, unless it was replaced
    /// by a pod of the same name meanwhile.
    pub fn finish_termination(&self, namespace: &str, name: &str, uid: &str) {
        let mut inner = self.lock();
        let key = (namespace.to_string(), name.to_string());
        let same = inner
            .pods
            .get(&key)
            .is_some_and(|p| p.metadata().uid.as_deref() == Some(uid));
        if same {
            self.remove(&mut inner, &key);
        }
    }

    fn remove(&self, inner: &mut Inner<T>, key: &Key) -> Arc<T> {
        let old = inner.pods.get(key).cloned().expect("caller checked the key");
        let last = (*old).clone();
        self.commit(inner, EventType::Deleted, Some(old), last)
    }

    fn commit(&self, inner: &mut Inner<T>, kind: EventType, old: Option<Arc<T>>, mut pod: T) -> Arc<T> {
        let rv = self.clock.next();
        pod.metadata_mut().resource_version = Some(rv.to_string());
        let pod = Arc::new(pod);
        let key = key_of(&*pod);
        if kind == EventType::Deleted {
            inner.pods.remove(&key);
        } else {
            inner.pods.insert(key, pod.clone());
        }
        let change = Arc::new(Change::new(rv, kind, old, pod.clone()));
        inner.history.record(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
        pod
    }

    /// One page of the objects selected by `filter`.
    pub fn list(
        &self,
        filter: &Filter,
        version: ListVersion,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage<T>, ApiError> {
        let inner = self.lock();
        let current = self.clock.current();
        let (rv, start) = match continue_token {
            Some(token) => {
                let (rv, start) = decode_continue(token)?;
                if rv < inner.history.oldest_rv() {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some(start))
            }
            None => match version {
                ListVersion::Latest => (current, None),
                ListVersion::NotOlderThan(v) | ListVersion::Exact(v) if v > current => {
                    return Err(ApiError::too_large_resource_version(v, current))
                }
                ListVersion::NotOlderThan(_) => (current, None),
                ListVersion::Exact(v) if v < inner.history.oldest_rv() => {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {v} ({})",
                        inner.history.oldest_rv()
                    )))
                }
                ListVersion::Exact(v) => (v, None),
            },
        };
        let view = inner.state_at(rv, start.as_ref(), filter.namespace.as_deref());
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut selected = view.into_iter().filter(|(_, pod)| filter.matches(&**pod));
        let items: Vec<Arc<T>> = selected.by_ref().take(limit).map(|(_, pod)| pod).collect();
        let rest: Vec<(Key, Arc<T>)> = selected.collect();
        let continue_token = rest.first().map(|(key, _)| encode_continue(rv, key));
        let remaining = (continue_token.is_some() && filter.selects_everything_in_scope()).then_some(rest.len() as i64);
        Ok(ListPage {
            items,
            rv,
            continue_token,
            remaining,
        })
    }

    /// Opens a change feed for a watch.
    pub fn watch(&self, start: WatchStart, filter: &Filter) -> Result<WatchFeed<T>, ApiError> {
        let inner = self.lock();
        let live = self.changes.subscribe();
        let current = self.clock.current();
        let mut feed = WatchFeed {
            initial: Vec::new(),
            replay: Vec::new(),
            rv: current,
            live,
        };
        match start {
            WatchStart::Now => {}
            WatchStart::WithInitialState => {
                feed.initial = inner.pods.values().filter(|p| filter.matches(&***p)).cloned().collect();
            }
            WatchStart::After(v) if v > current => return Err(ApiError::too_large_resource_version(v, current)),
            WatchStart::After(v) if v < inner.history.oldest_rv() => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {v} ({})",
                    inner.history.oldest_rv()
                )))
            }
            WatchStart::After(v) => {
                feed.replay = inner.history.since(v);
                feed.rv = v;
            }
        }
        Ok(feed)
    }
}

impl<T: Stored> Inner<T> {
    /// The pods of `namespace` (or all) as they were at `rv`, from key `start` on,
    /// rolling back every later change in the history.
    fn state_at(&self, rv: u64, start: Option<&Key>, namespace: Option<&str>) -> BTreeMap<Key, Arc<T>> {
        let in_scope = |key: &Key| namespace.is_none_or(|ns| key.0 == ns) && start.is_none_or(|s| key >= s);
        let mut view: BTreeMap<Key, Arc<T>> = match (start, namespace) {
            (Some(s), _) => self
                .pods
                .range(s.clone()..)
                .filter(|(k, _)| in_scope(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            (None, Some(ns)) => self
                .pods
                .range((ns.to_string(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            (None, None) => self.pods.clone(),
        };
        self.history.roll_back(&mut view, rv, in_scope);
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::pod;

    fn everything() -> Filter {
        Filter::default()
    }

    /// Each case the pod index must get right can be made through the Pod API, as on a
    /// real server: an evicted pod that keeps its IPs, hostNetwork pods sharing their
    /// node's IP, dual-stack podIPs; and what a real server refuses is refused.
    #[test]
    fn evicted_host_network_and_dual_stack_pods() {
        use crate::fixtures::running;
        let store = Store::new(100);
        let status = |name: &str, change: &dyn Fn(&mut k8s_openapi::api::core::v1::PodStatus)| {
            store.update("ns", name, |old: &Pod| {
                let mut new = (*old).clone();
                change(new.status.get_or_insert_with(Default::default));
                Ok(new)
            })
        };
        store.create("ns", pod("evicted")).unwrap();
        status("evicted", &|s| running(s, &["10.0.0.7"], true)).unwrap();
        let evicted = status("evicted", &|s| {
            s.phase = Some("Failed".into());
            s.reason = Some("Evicted".into());
        })
        .unwrap();
        let kept = evicted.status.as_ref().unwrap();
        assert_eq!(
            (kept.phase.as_deref(), kept.pod_ip.as_deref()),
            (Some("Failed"), Some("10.0.0.7"))
        );

        for name in ["agent-a", "agent-b"] {
            let mut p = pod(name);
            p.spec.as_mut().unwrap().host_network = Some(true);
            store.create("ns", p).unwrap();
            status(name, &|s| running(s, &["192.168.1.5"], true)).unwrap();
            assert_eq!(
                store.get("ns", name).unwrap().spec.as_ref().unwrap().host_network,
                Some(true)
            );
        }

        store.create("ns", pod("dual")).unwrap();
        let dual = status("dual", &|s| running(s, &["fd00::7", "10.0.0.8"], true)).unwrap();
        let ips: Vec<_> = dual
            .status
            .as_ref()
            .unwrap()
            .pod_ips
            .iter()
            .flatten()
            .map(|ip| ip.ip.as_str())
            .collect();
        assert_eq!(ips, ["fd00::7", "10.0.0.8"]);
        // podIP alone, as older clients write it, fills podIPs in.
        let only = status("dual", &|s| {
            s.pod_ips = None;
            s.pod_ip = Some("10.0.0.9".into());
        })
        .unwrap();
        assert_eq!(
            only.status.as_ref().unwrap().pod_ips.as_ref().unwrap()[0].ip,
            "10.0.0.9"
        );

        let refused = |ips: &[&str]| status("dual", &|s| running(s, ips, true)).unwrap_err();
        assert_eq!(refused(&["10.0.0.1", "10.0.0.2"]).code, 422, "two IPv4 addresses");
        assert_eq!(
            refused(&["fd00::1", "10.0.0.1", "fd00::2"]).code,
            422,
            "three addresses"
        );
        assert_eq!(refused(&["10.0.0.1", "10.0.0.1"]).code, 422, "a duplicate");
        assert_eq!(refused(&["not-an-ip"]).code, 422);
        let mismatch = status("dual", &|s| {
            running(s, &["10.0.0.1"], true);
            s.pod_ip = Some("10.0.0.2".into());
        });
        assert_eq!(mismatch.unwrap_err().code, 400);
    }

    #[test]
    fn paged_list_stays_consistent_while_pods_change() {
        let store = Store::new(100);
        for i in 0..5 {
            store.create("ns", pod(&format!("p{i}"))).unwrap();
        }
        let first = store.list(&everything(), ListVersion::Latest, Some(2), None).unwrap();
        assert_eq!(first.remaining, Some(3));
        store.delete("ns", "p3", None).unwrap();
        store.create("ns", pod("p9")).unwrap();
        let second = store
            .list(
                &everything(),
                ListVersion::Latest,
                Some(10),
                first.continue_token.as_deref(),
            )
            .unwrap();
        let names: Vec<_> = second.items.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["p2", "p3", "p4"]);
        assert_eq!(second.rv, first.rv);
        assert!(second.continue_token.is_none());
    }

    #[test]
    fn compaction_expires_old_versions() {
        let store = Store::new(100);
        store.create("ns", pod("a")).unwrap();
        let rv = store.resource_version();
        store.create("ns", pod("b")).unwrap();
        assert_eq!(
            store.watch(WatchStart::After(rv), &everything()).unwrap().replay.len(),
            1
        );
        store.compact();
        assert_eq!(store.watch(WatchStart::After(rv), &everything()).unwrap_err().code, 410);
        let page = store.list(&everything(), ListVersion::Latest, Some(1), None).unwrap();
        store.create("ns", pod("c")).unwrap();
        store.compact();
        assert_eq!(
            store
                .list(&everything(), ListVersion::Latest, None, page.continue_token.as_deref())
                .unwrap_err()
                .code,
            410
        );
    }

    #[test]
    fn history_limit_bounds_resumable_versions() {
        let store = Store::new(2);
        let start = store.resource_version();
        for i in 0..3 {
            store.create("ns", pod(&format!("p{i}"))).unwrap();
        }
        assert_eq!(
            store.watch(WatchStart::After(start), &everything()).unwrap_err().code,
            410
        );
        assert_eq!(
            store
                .watch(WatchStart::After(start + 1), &everything())
                .unwrap()
                .replay
                .len(),
            2
        );
    }

    #[test]
    fn noop_update_commits_nothing_and_stale_update_conflicts() {
        let store = Store::new(10);
        let created = store.create("ns", pod("a")).unwrap();
        let rv = store.resource_version();
        let same = store.update("ns", "a", |p| Ok(p.clone())).unwrap();
        assert_eq!(store.resource_version(), rv);
        assert_eq!(same.metadata.resource_version, created.metadata.resource_version);
        store
            .update("ns", "a", |p| {
                let mut p = p.clone();
                p.metadata.labels = Some([("x".into(), "y".into())].into());
                Ok(p)
            })
            .unwrap();
        let stale = store.update("ns", "a", |_| Ok((*created).clone()));
        assert_eq!(stale.unwrap_err().code, 409);
    }

    #[test]
    fn graceful_delete_only_for_scheduled_pods() {
        let store = Store::new(10);
        let mut loose = pod("loose");
        loose.spec.as_mut().unwrap().node_name = None;
        store.create("ns", loose).unwrap();
        assert!(matches!(
            store.delete("ns", "loose", None).unwrap(),
            Deletion::Removed(_)
        ));
        let created = store.create("ns", pod("bound")).unwrap();
        let Deletion::Terminating(p, grace) = store.delete("ns", "bound", Some(5)).unwrap() else {
            panic!("expected graceful")
        };
        assert!(p.metadata.deletion_timestamp.is_some());
        assert_eq!(grace, Duration::from_secs(5));
        store.finish_termination("ns", "bound", created.metadata.uid.as_deref().unwrap());
        assert_eq!(store.get("ns", "bound").unwrap_err().code, 404);
    }

    #[test]
    fn invalid_pods_are_rejected() {
        let store = Store::new(10);
        assert_eq!(store.create("ns", pod("Bad_Name")).unwrap_err().code, 422);
        let mut empty = pod("empty");
        empty.spec = None;
        assert_eq!(store.create("ns", empty).unwrap_err().code, 422);
        let mut generated = pod("");
        generated.metadata.generate_name = Some("web-".into());
        assert!(store
            .create("ns", generated)
            .unwrap()
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("web-"));
    }
}

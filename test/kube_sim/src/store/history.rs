//! The change log: every committed change, kept for resuming watches and for rolling
//! a paged list back to its first page's version.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;

use super::object::Stored;

/// A pod's identity in the store: `(namespace, name)`.
pub type Key = (String, String);

/// The kind of a change, as named in watch events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was updated.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change to one object.
#[derive(Debug)]
pub struct Change<T = Pod> {
    /// The resourceVersion this change created.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// The object before the change (`None` for `Added`).
    pub old: Option<Arc<T>>,
    /// The object after the change; for `Deleted`, its last state.
    pub new: Arc<T>,
    json: OnceLock<Bytes>,
}

impl<T: Stored> Change<T> {
    /// A change committed at `rv`.
    pub fn new(rv: u64, kind: EventType, old: Option<Arc<T>>, new: Arc<T>) -> Self {
        Change {
            rv,
            kind,
            old,
            new,
            json: OnceLock::new(),
        }
    }

    /// The new object as JSON, serialised once however many watches send it.
    pub fn object_json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&*self.new).unwrap_or_default()))
    }

    fn key(&self) -> Key {
        key_of(&*self.new)
    }
}

/// An object's key.
pub fn key_of<T: Stored>(object: &T) -> Key {
    let meta = object.metadata();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The last changes, at most `limit` of them.
#[derive(Debug)]
pub struct History<T = Pod> {
    changes: VecDeque<Arc<Change<T>>>,
    limit: usize,
    oldest_rv: u64,
}

impl<T: Stored> History<T> {
    /// An empty history starting at `rv`, keeping at most `limit` changes.
    pub fn new(limit: usize, rv: u64) -> Self {
        History {
            changes: VecDeque::new(),
            limit: limit.max(1),
            oldest_rv: rv,
        }
    }

    /// The oldest resourceVersion a watch or continue token may start from.
    pub fn oldest_rv(&self) -> u64 {
        self.oldest_rv
    }

    /// Records a change, forgetting the oldest beyond the limit.
    pub fn record(&mut self, change: Arc<Change<T>>) {
        self.changes.push_back(change);
        while self.changes.len() > self.limit {
            if let Some(dropped) = self.changes.pop_front() {
                self.oldest_rv = dropped.rv;
            }
        }
    }

    /// Forgets every change: versions before `rv` are expired from now on.
    pub fn compact(&mut self, rv: u64) {
        self.changes.clear();
        self.oldest_rv = rv;
    }

    /// The changes after `rv`, oldest first.
    pub fn since(&self, rv: u64) -> Vec<Arc<Change<T>>> {
        self.changes.iter().filter(|c| c.rv > rv).cloned().collect()
    }

    /// Rolls `view` (current objects) back to how they were at `rv`, for keys `in_scope`.
    pub fn roll_back(&self, view: &mut BTreeMap<Key, Arc<T>>, rv: u64, in_scope: impl Fn(&Key) -> bool) {
        // Newest first, so each key ends with its state just before the oldest later change.
        for change in self.changes.iter().rev().take_while(|c| c.rv > rv) {
            let key = change.key();
            if !in_scope(&key) {
                continue;
            }
            match (&change.kind, &change.old) {
                (EventType::Added, _) | (_, None) => view.remove(&key),
                (_, Some(old)) => view.insert(key, old.clone()),
            };
        }
    }
}

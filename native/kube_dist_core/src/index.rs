//! The pod index: the current records, keyed by namespace and name.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pod::PodRecord;

/// What an index update did to one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum PodChange {
    /// A pod appeared.
    Added(Arc<PodRecord>),
    /// A pod's record changed (IP, readiness, termination, labels, ...).
    Changed {
        /// Before.
        old: Arc<PodRecord>,
        /// After.
        new: Arc<PodRecord>,
    },
    /// A pod is gone.
    Deleted(Arc<PodRecord>),
}

type Key = (Box<str>, Box<str>);

/// All indexed pods.
#[derive(Debug, Default)]
pub struct PodIndex {
    pods: HashMap<Key, Arc<PodRecord>>,
}

impl PodIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of pods.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Every pod, sorted by namespace then name.
    pub fn pods(&self) -> Vec<Arc<PodRecord>> {
        let mut pods: Vec<_> = self.pods.values().cloned().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }

    /// One pod.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<PodRecord>> {
        self.pods.get(&(namespace.into(), name.into()))
    }

    /// Adds or replaces a pod; `None` when nothing changed.
    pub fn upsert(&mut self, record: PodRecord) -> Option<PodChange> {
        let key = (record.namespace.clone(), record.name.clone());
        match self.pods.get(&key) {
            Some(old) if **old == record => None,
            Some(old) => {
                let old = old.clone();
                let new = Arc::new(record);
                self.pods.insert(key, new.clone());
                Some(PodChange::Changed { old, new })
            }
            None => {
                let new = Arc::new(record);
                self.pods.insert(key, new.clone());
                Some(PodChange::Added(new))
            }
        }
    }

    /// Removes a pod.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<PodChange> {
        self.pods
            .remove(&(namespace.into(), name.into()))
            .map(PodChange::Deleted)
    }

    /// Replaces every pod in `namespace` (`None`: all) with `records`, as after a
    /// (re-)list, and returns only the differences, so a re-list after `410 Gone` or an
    /// outage reports what really changed and nothing else.
    pub fn replace(&mut self, namespace: Option<&str>, records: Vec<PodRecord>) -> Vec<PodChange> {
        let fresh: HashMap<Key, ()> = records
            .iter()
            .map(|r| ((r.namespace.clone(), r.name.clone()), ()))
            .collect();
        let gone: Vec<Key> = self
            .pods
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|n| **ns == *n))
            .filter(|key| !fresh.contains_key(*key))
            .cloned()
            .collect();
        let mut changes: Vec<PodChange> = gone.iter().filter_map(|(ns, name)| self.remove(ns, name)).collect();
        changes.extend(records.into_iter().filter_map(|r| self.upsert(r)));
        changes
    }
}

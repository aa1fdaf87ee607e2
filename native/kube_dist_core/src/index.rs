//! The pod index: current pod records, and the lookups that turn any Kubernetes host
//! form into a pod and its IP in O(1).
//!
//! IP safety: Kubernetes reuses pod IPs. Every IP has an owner, the pod that most
//! recently acquired it; a pod only resolves while it owns its IP, so a terminating
//! pod whose IP was handed to a newer pod stops resolving, and no lookup can return an
//! IP that now belongs to someone else.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::host::Host;
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

/// The answer to a host lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// The host is this IP; the pod, when one owns it.
    Found(IpAddr, Option<Arc<PodRecord>>),
    /// No live pod answers to the host.
    NotFound,
    /// Several pods answer to it and none is preferred; sorted by namespace.
    Ambiguous(Vec<Arc<PodRecord>>),
    /// No pod answers yet, but the host may name a pod and the initial list is not in:
    /// the answer may change once it is (see [`crate::watch::Watch::resolve`]).
    NotSynced,
}

// The record's own strings, shared: a key costs no allocation however often it is kept.
type Key = (Arc<str>, Arc<str>);

fn key(pod: &PodRecord) -> Key {
    (pod.namespace.clone(), pod.name.clone())
}

/// All indexed pods and their lookup tables.
#[derive(Debug, Default)]
pub struct PodIndex {
    pods: HashMap<Key, Arc<PodRecord>>,
    by_name: HashMap<Arc<str>, Vec<Key>>,
    by_hostname: HashMap<(Box<str>, Box<str>), Vec<Key>>,
    /// Pods holding each IP, in the order they acquired it: the last one owns it.
    ip_holders: HashMap<IpAddr, Vec<Key>>,
    /// One copy of each namespace's and node's name for all their pods. Never shrinks:
    /// namespaces and nodes are few next to pods, and long-lived.
    shared: HashSet<Arc<str>>,
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
    pub fn upsert(&mut self, mut record: PodRecord) -> Option<PodChange> {
        record.namespace = self.share(&record.namespace);
        record.node_name = record.node_name.map(|node| self.share(&node));
        let new = Arc::new(record);
        let old = self.pods.get(&key(&new)).cloned();
        match &old {
            Some(old) if **old == *new => return None,
            Some(old) => self.unlink(old, Some(&new)),
            None => {}
        }
        self.link(&new, old.as_deref());
        self.pods.insert(key(&new), new.clone());
        Some(match old {
            Some(old) => PodChange::Changed { old, new },
            None => PodChange::Added(new),
        })
    }

    fn share(&mut self, name: &Arc<str>) -> Arc<str> {
        match self.shared.get(name) {
            Some(shared) => shared.clone(),
            None => {
                self.shared.insert(name.clone());
                name.clone()
            }
        }
    }

    /// Removes a pod; it stops resolving at once.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<PodChange> {
        let old = self.pods.remove(&(namespace.into(), name.into()))?;
        self.unlink(&old, None);
        Some(PodChange::Deleted(old))
    }

    /// Replaces every pod in `namespace` (`None`: all) with `records`, as after a
    /// (re-)list, and returns only the differences, so a re-list after `410 Gone` or an
    /// outage reports what really changed and nothing else.
    pub fn replace(&mut self, namespace: Option<&str>, records: Vec<PodRecord>) -> Vec<PodChange> {
        let fresh: HashSet<Key> = records.iter().map(key).collect();
        let gone: Vec<Key> = self
            .pods
            .keys()
            .filter(|(ns, _)| namespace.is_none_or(|n| **ns == *n))
            .filter(|k| !fresh.contains(*k))
            .cloned()
            .collect();
        let mut changes: Vec<PodChange> = gone.iter().filter_map(|(ns, name)| self.remove(ns, name)).collect();
        changes.extend(records.into_iter().filter_map(|r| self.upsert(r)));
        changes
    }

    fn link(&mut self, pod: &Arc<PodRecord>, before: Option<&PodRecord>) {
        let k = key(pod);
        if before.is_none() {
            self.by_name.entry(pod.name.clone()).or_insert_with(one).push(k.clone());
        }
        if let (Some(h), Some(s)) = (&pod.hostname, &pod.subdomain) {
            let same = before.is_some_and(|b| b.hostname == pod.hostname && b.subdomain == pod.subdomain);
            if !same {
                self.by_hostname
                    .entry((h.clone(), s.clone()))
                    .or_insert_with(one)
                    .push(k.clone());
            }
        }
        for ip in pod.ips.iter() {
            if !before.is_some_and(|b| b.ips.contains(ip)) {
                // Acquired now: this pod becomes the IP's owner.
                self.ip_holders.entry(*ip).or_insert_with(one).push(k.clone());
            }
        }
    }

    /// Drops `pod` from the lookup tables, keeping what `after` (its next version) still holds.
    fn unlink(&mut self, pod: &PodRecord, after: Option<&PodRecord>) {
        let k = key(pod);
        if after.is_none() {
            remove_from(&mut self.by_name, &pod.name, &k);
        }
        if let (Some(h), Some(s)) = (&pod.hostname, &pod.subdomain) {
            let same = after.is_some_and(|a| a.hostname == pod.hostname && a.subdomain == pod.subdomain);
            if !same {
                remove_from(&mut self.by_hostname, &(h.clone(), s.clone()), &k);
            }
        }
        for ip in pod.ips.iter() {
            if !after.is_some_and(|a| a.ips.contains(ip)) {
                remove_from(&mut self.ip_holders, ip, &k);
            }
        }
    }

    /// The pod that owns `ip`.
    pub fn owner(&self, ip: &IpAddr) -> Option<&Arc<PodRecord>> {
        self.ip_holders
            .get(ip)
            .and_then(|holders| holders.last())
            .and_then(|k| self.pods.get(k))
    }

    /// The IP `pod` resolves to: its first IP, while it still owns it.
    pub fn resolvable_ip(&self, pod: &PodRecord) -> Option<IpAddr> {
        let ip = pod.ip()?;
        let owner = self.ip_holders.get(&ip)?.last()?;
        (owner.0 == pod.namespace && owner.1 == pod.name).then_some(ip)
    }

    /// Resolves a classified host. Among several candidates, one in `home` (the
    /// caller's own namespace) wins; otherwise the answer is `Ambiguous`.
    pub fn resolve(&self, host: &Host, home: Option<&str>) -> Resolution {
        let pods = |keys: Option<&Vec<Key>>| -> Vec<&Arc<PodRecord>> {
            keys.into_iter().flatten().filter_map(|k| self.pods.get(k)).collect()
        };
        let candidates = match host {
            Host::Ip(ip) => return Resolution::Found(*ip, self.owner(ip).cloned()),
            // The name spells the IP: the answer is that IP, if a pod of the namespace owns it.
            Host::DashedIp { ip, namespace, or_pod } => match self.owner(ip).filter(|p| *p.namespace == **namespace) {
                Some(pod) => return Resolution::Found(*ip, Some(pod.clone())),
                None => or_pod
                    .as_ref()
                    .and_then(|name| self.get(namespace, name))
                    .into_iter()
                    .collect(),
            },
            Host::Name(name) => pods(self.by_name.get(name.as_str())),
            Host::Pod { name, namespace } => self.get(namespace, name).into_iter().collect(),
            Host::NameDotNamespace(a, b) => match self.get(b, a) {
                Some(pod) => vec![pod],
                None => pods(self.by_hostname.get(&(a.as_str().into(), b.as_str().into()))),
            },
            Host::Hostname {
                hostname,
                subdomain,
                namespace,
            } => {
                let key = (hostname.as_str().into(), subdomain.as_str().into());
                pods(self.by_hostname.get(&key))
                    .into_iter()
                    .filter(|p| *p.namespace == **namespace)
                    .collect()
            }
            Host::Other => Vec::new(),
        };
        let mut usable: Vec<(&Arc<PodRecord>, IpAddr)> = candidates
            .into_iter()
            .filter_map(|p| Some((p, self.resolvable_ip(p)?)))
            .collect();
        if usable.len() > 1 {
            if let Some(home) = home {
                let at_home: Vec<_> = usable.iter().filter(|(p, _)| &*p.namespace == home).cloned().collect();
                if at_home.len() == 1 {
                    usable = at_home;
                }
            }
        }
        match usable.as_slice() {
            [] => Resolution::NotFound,
            [(pod, ip)] => Resolution::Found(*ip, Some((*pod).clone())),
            many => {
                let mut pods: Vec<Arc<PodRecord>> = many.iter().map(|(p, _)| (*p).clone()).collect();
                pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                Resolution::Ambiguous(pods)
            }
        }
    }

    /// Bytes the index holds on the heap (records and tables), for the memory benchmark;
    /// the allocator's own overhead is not counted.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        // A table has about capacity * 8/7 slots, each an entry and a control byte.
        fn table<K, V>(map: &HashMap<K, V>) -> usize {
            map.capacity() * 8 / 7 * (size_of::<(K, V)>() + 1)
        }
        fn table_of<K>(set: &HashSet<K>) -> usize {
            set.capacity() * 8 / 7 * (size_of::<K>() + 1)
        }
        fn holders<K>(map: &HashMap<K, Vec<Key>>) -> usize {
            table(map) + map.values().map(|v| v.capacity() * size_of::<Key>()).sum::<usize>()
        }
        // A record lives in an Arc: its two counters too.
        let records: usize = self
            .pods
            .values()
            .map(|p| p.heap_bytes() + size_of::<PodRecord>() + 16)
            .sum();
        let hostnames: usize = self.by_hostname.keys().map(|(h, s)| h.len() + s.len()).sum();
        let shared: usize = table_of(&self.shared) + self.shared.iter().map(|s| s.len() + 16).sum::<usize>();
        records
            + table(&self.pods)
            + holders(&self.by_name)
            + holders(&self.by_hostname)
            + hostnames
            + holders(&self.ip_holders)
            + shared
    }
}

// Nearly every name and IP has a single holder: room for one, not the four a first push
// reserves (that alone was 200 bytes a pod).
fn one() -> Vec<Key> {
    Vec::with_capacity(1)
}

fn remove_from<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Key>>, at: &K, key: &Key) {
    if let Some(keys) = map.get_mut(at) {
        keys.retain(|k| k != key);
        if keys.is_empty() {
            map.remove(at);
        }
    }
}

#[cfg(test)]
mod tests;

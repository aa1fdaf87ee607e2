//! The pod index: current pod records, and the lookups that turn any Kubernetes host
//! form into a pod and its IP in O(1).
//!
//! IP ownership. Kubernetes reuses pod IPs, and a Failed or Succeeded pod (an evicted
//! one, a finished Job's) keeps its `podIPs` until it is garbage-collected, possibly
//! for hours. So every IP has one owner among the pods holding it, chosen by what the
//! pods are, never by the order a list or the events came in:
//!
//! 1. a live pod (Pending, Running or Unknown, and not terminating) over
//! 2. a terminating one, over
//! 3. a dead one (Failed or Succeeded);
//! 4. among equals, the newest `creationTimestamp` (then the greater namespace and
//!    name, so that even pods created in the same second have one answer).
//!
//! Each IP of a dual-stack pod is owned on its own. hostNetwork pods hold their node's
//! IP, which many pods share: they never own an IP, so they never take one from a pod
//! and no IP lookup answers with them.
//!
//! What resolves: a pod, by any of its names, to its first IP of the asked family,
//! while it owns that IP (a hostNetwork pod: always); an IP to its owner, unless that
//! owner is dead. So no lookup hands out an IP that belongs to another pod, and a
//! dead pod answers to its name only while no other pod holds its IP. Which names
//! reach which pods is [`PodIndex::resolve`]'s table (the README's too).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::host::Host;
use crate::pod::{Phase, PodRecord};

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

/// The address family a lookup asks for, as the distribution's `inet` and `inet6`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    #[default]
    Inet,
    /// IPv6.
    Inet6,
}

impl Family {
    /// Whether `ip` is of this family.
    pub fn holds(self, ip: &IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::Inet, IpAddr::V4(_)) | (Family::Inet6, IpAddr::V6(_))
        )
    }
}

// The record's own strings, shared: a key costs no allocation however often it is kept.
type Key = (Arc<str>, Arc<str>);

fn key(pod: &PodRecord) -> Key {
    (pod.namespace.clone(), pod.name.clone())
}

// (namespace, spec.hostname, spec.subdomain)
type HostnameKey = (Arc<str>, Box<str>, Box<str>);

/// How strongly a pod holds its IPs: the greatest holder owns an IP (see the module doc).
fn rank(pod: &PodRecord) -> (u8, i64, &str, &str) {
    let liveness = match pod.phase {
        Phase::Failed | Phase::Succeeded => 0,
        _ if pod.terminating => 1,
        _ => 2,
    };
    (liveness, pod.created, &pod.namespace, &pod.name)
}

fn is_dead(pod: &PodRecord) -> bool {
    matches!(pod.phase, Phase::Failed | Phase::Succeeded)
}

/// All indexed pods and their lookup tables. A clone shares the records (they are
/// `Arc`s) and copies only the tables: what a re-list builds its next index from, off
/// any lock (see [`crate::watch`]).
#[derive(Debug, Default, Clone)]
pub struct PodIndex {
    pods: HashMap<Key, Arc<PodRecord>>,
    /// Pods by namespace, hostname and subdomain (several when pods share them).
    by_hostname: HashMap<HostnameKey, Vec<Arc<PodRecord>>>,
    /// Every pod holding each IP, hostNetwork pods aside; the greatest [`rank`] owns it.
    ip_holders: HashMap<IpAddr, Vec<Arc<PodRecord>>>,
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
        sorted(self.records())
    }

    /// Every pod, in no order: cheap enough to take under a lock and sort after.
    pub fn records(&self) -> Vec<Arc<PodRecord>> {
        self.pods.values().cloned().collect()
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
            Some(old) => self.unlink(old),
            None => {}
        }
        self.link(&new);
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
        self.unlink(&old);
        Some(PodChange::Deleted(old))
    }

    /// Replaces every pod in `namespace` (`None`: all) with `records`, as after a
    /// (re-)list, and returns only the differences, so a re-list after `410 Gone` or an
    /// outage reports what really changed and nothing else. The order of `records`
    /// changes nothing: ownership is by rank.
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

    fn link(&mut self, pod: &Arc<PodRecord>) {
        if let (Some(h), Some(s)) = (&pod.hostname, &pod.subdomain) {
            self.by_hostname
                .entry((pod.namespace.clone(), h.clone(), s.clone()))
                .or_insert_with(one)
                .push(pod.clone());
        }
        if !pod.host_network {
            for ip in pod.ips.iter() {
                self.ip_holders.entry(*ip).or_insert_with(one).push(pod.clone());
            }
        }
    }

    /// Drops this version of a pod from the lookup tables.
    fn unlink(&mut self, pod: &Arc<PodRecord>) {
        if let (Some(h), Some(s)) = (&pod.hostname, &pod.subdomain) {
            remove_from(
                &mut self.by_hostname,
                &(pod.namespace.clone(), h.clone(), s.clone()),
                pod,
            );
        }
        for ip in pod.ips.iter() {
            remove_from(&mut self.ip_holders, ip, pod);
        }
    }

    /// The greatest holder of `ip`, dead or not.
    fn holder(&self, ip: &IpAddr) -> Option<&Arc<PodRecord>> {
        self.ip_holders.get(ip)?.iter().max_by(|a, b| rank(a).cmp(&rank(b)))
    }

    /// The pod `ip` resolves to: its owner, unless that pod is dead.
    pub fn owner(&self, ip: &IpAddr) -> Option<&Arc<PodRecord>> {
        self.holder(ip).filter(|p| !is_dead(p))
    }

    /// The IP `pod` resolves to in `family`: its first IP of that family, while it owns
    /// it (a hostNetwork pod owns nothing and always resolves).
    pub fn resolvable_ip(&self, pod: &PodRecord, family: Family) -> Option<IpAddr> {
        let ip = pod.ips.iter().copied().find(|ip| family.holds(ip))?;
        if pod.host_network {
            return Some(ip);
        }
        let owner = self.holder(&ip)?;
        (owner.namespace == pod.namespace && owner.name == pod.name).then_some(ip)
    }

    fn with_hostname<'a>(
        &'a self,
        namespace: Option<&str>,
        hostname: &str,
        subdomain: &str,
    ) -> impl Iterator<Item = &'a Arc<PodRecord>> {
        namespace
            .and_then(|ns| self.by_hostname.get(&(ns.into(), hostname.into(), subdomain.into())))
            .into_iter()
            .flatten()
    }

    fn usable<'a>(
        &self,
        pods: impl IntoIterator<Item = &'a Arc<PodRecord>>,
        family: Family,
    ) -> Vec<(&'a Arc<PodRecord>, IpAddr)> {
        pods.into_iter()
            .filter_map(|p| Some((p, self.resolvable_ip(p, family)?)))
            .collect()
    }

    /// Resolves a classified host as cluster DNS would answer a pod of namespace `home`
    /// (its search list being `<home>.svc.<domain> svc.<domain> <domain>`), pod names
    /// standing for service names:
    ///
    /// | host | pods it may reach, in this order |
    /// |---|---|
    /// | `web-0` | pod `web-0` of `home` |
    /// | `web-0.db` | hostname `web-0` of subdomain `db` in `home`; else pod `web-0` of namespace `db` |
    /// | `web-0.prod.pod` | pod `web-0` of `prod` |
    /// | `web-0.db.prod[.svc[.<domain>]]` | hostname `web-0` of subdomain `db` in `prod` |
    /// | `10-42-2-46.prod.pod[.<domain>]` | the owner of 10.42.2.46, if it is a pod of `prod` |
    /// | `10.42.2.46` | that IP, with its owner if any |
    ///
    /// A step with no pod owning an IP of `family` gives way to the next; a step with
    /// several is `Ambiguous` (pods sharing a hostname and subdomain). Without a `home`,
    /// the forms that need it reach nothing.
    pub fn resolve(&self, host: &Host, home: Option<&str>, family: Family) -> Resolution {
        let usable = match host {
            Host::Ip(ip) if family.holds(ip) => return Resolution::Found(*ip, self.owner(ip).cloned()),
            Host::DashedIp { ip, namespace, .. } if family.holds(ip) => {
                return match self.owner(ip).filter(|p| *p.namespace == **namespace) {
                    Some(pod) => Resolution::Found(*ip, Some(pod.clone())),
                    None => Resolution::NotFound,
                };
            }
            Host::Ip(_) | Host::DashedIp { .. } | Host::Other => Vec::new(),
            Host::Name(name) => self.usable(home.and_then(|home| self.get(home, name)), family),
            Host::Pod { name, namespace } => self.usable(self.get(namespace, name), family),
            Host::NameDotNamespace(a, b) => {
                let by_hostname = self.usable(self.with_hostname(home, a, b), family);
                if by_hostname.is_empty() {
                    self.usable(self.get(b, a), family)
                } else {
                    by_hostname
                }
            }
            Host::Hostname {
                hostname,
                subdomain,
                namespace,
            } => self.usable(self.with_hostname(Some(namespace), hostname, subdomain), family),
        };
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
        fn holders<K>(map: &HashMap<K, Vec<Arc<PodRecord>>>) -> usize {
            table(map)
                + map
                    .values()
                    .map(|v| v.capacity() * size_of::<Arc<PodRecord>>())
                    .sum::<usize>()
        }
        // A record lives in an Arc: its two counters too.
        let records: usize = self
            .pods
            .values()
            .map(|p| p.heap_bytes() + size_of::<PodRecord>() + 16)
            .sum();
        let hostnames: usize = self.by_hostname.keys().map(|(_, h, s)| h.len() + s.len()).sum();
        let shared: usize = table_of(&self.shared) + self.shared.iter().map(|s| s.len() + 16).sum::<usize>();
        records + table(&self.pods) + holders(&self.by_hostname) + hostnames + holders(&self.ip_holders) + shared
    }
}

/// `pods` sorted by namespace then name.
pub fn sorted(mut pods: Vec<Arc<PodRecord>>) -> Vec<Arc<PodRecord>> {
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    pods
}

// Nearly every IP and hostname has a single holder: room for one, not the four a first
// push reserves.
fn one() -> Vec<Arc<PodRecord>> {
    Vec::with_capacity(1)
}

fn remove_from<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Arc<PodRecord>>>, at: &K, pod: &Arc<PodRecord>) {
    if let Some(pods) = map.get_mut(at) {
        pods.retain(|p| !Arc::ptr_eq(p, pod));
        if pods.is_empty() {
            map.remove(at);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

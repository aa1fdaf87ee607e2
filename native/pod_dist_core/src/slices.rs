//! The slice source's merge: the EndpointSlices of one Service in, the index's pod
//! records out, with no flap when endpoints move between slices. Pure: no I/O, no
//! clock; every decision is a function of the state, the event and the `now` it is
//! given.
//!
//! # From endpoints to pod records
//!
//! An endpoint with a `targetRef` of kind `Pod` (name and uid required) in the slice's
//! own namespace (the reference's `namespace` absent or equal to it) stands for that pod;
//! endpoints without one (addresses managed by hand), with a reference to another kind or
//! to another namespace's pod (no EndpointSlice controller writes that: only someone
//! pointing a pod's name elsewhere would), and slices of `addressType: FQDN` are not pods
//! and are ignored. A pod's record joins every endpoint that names it, in any slice:
//!
//! - `ips`: the union of their addresses, IPv4 first, then IPv6 (a dual-stack Service
//!   has one slice of each family per set of pods; slices do not say which family the
//!   pod lists first), each family in slice-name order;
//! - `ready`: the `serving` condition, which the EndpointSlice controller sets from the
//!   pod's Ready condition, so it is the pods source's `ready`. Not `ready`: with
//!   `publishNotReadyAddresses` (which the slice source needs, to learn of pods before
//!   they are ready) the controller sets `ready` on every endpoint. Absent, `serving`
//!   defers to `ready`, which is true when absent (the API's defaults);
//! - `terminating`: the `terminating` condition (false when absent);
//! - `phase`: `Running` when serving, else `Pending`. Slices hold only pods with an IP
//!   that are neither Succeeded nor Failed; a Ready pod is Running, but a pod not yet
//!   ready may still be starting its containers, which the slice does not say. `Pending`
//!   is the claim that never makes a node dial a pod whose node may not listen yet, and
//!   it ranks as live for IP ownership; `Unknown` would falsely say the pod's node is
//!   lost. So `eligible: :running` behaves as `:ready` with this source;
//! - `hostname`, `node_name`: the endpoint's; `subdomain`: the Service's name when the
//!   endpoint has a hostname (the controller sets one only for a pod whose
//!   `spec.subdomain` is this Service), so `hostname.service.ns.svc...` resolves as from
//!   pods;
//! - `ports`: the slice's TCP ports that have a number, named after the Service's ports
//!   (so the `dist-<basename>` / `dist` rule reads them), the container being the
//!   Service's name. Ports are per slice (pods whose named target port resolves to
//!   different numbers land in different slices); a pod in several slices has the union,
//!   sorted by name and port;
//! - what slices do not carry stays empty: no labels, no annotations, `created` 0 (IP
//!   ownership among equally live pods then falls back to namespace and name), and
//!   `host_network` false (a hostNetwork pod's endpoint carries its node's IP).
//!
//! When the endpoints of a pod disagree (a stale copy in a slice not yet updated), the
//! one applied last speaks for its hostname, node and readiness: each write of a slice
//! holds the controller's view of the pod at that write, and one watch delivers writes in
//! order. The uid is the one of the endpoint applied last among those still in a slice
//! (endpoints kept after they left, below, only when there is none): endpoints of another
//! uid are an older pod of the same name, and ignored. `terminating` is true if any
//! endpoint of that uid says so: a pod never stops terminating.
//!
//! # No flap when an endpoint moves
//!
//! The controller moves an endpoint from slice A to slice B (ports changed, slices
//! rebalanced, a slice deleted and recreated) with separate writes, so the watch may
//! deliver A without the pod before B with it: the pod is then in no slice for a moment.
//! The rule: **what an endpoint said of a pod is kept for a grace period after it leaves
//! its slice, unless a slice of the same address family names the pod meanwhile**. Such
//! a kept endpoint (a ghost) counts, for its family, as if still in its slice; once its
//! deadline passes the pod's record is built without it: the pod loses that family's IP,
//! or, with no endpoint left, is removed. So whatever order A's and B's updates arrive
//! in, within the grace, the index sees no removal and no lost address, and nothing at
//! all when the pod's record is the same in B. The cost: a pod that really left every
//! slice (deleted, or turned Succeeded or Failed) is removed `grace` later than the slice
//! said so; a deleted pod was first seen terminating, at once.
//!
//! Each event ([`SliceMerge::apply`], [`SliceMerge::delete`], [`SliceMerge::relist`])
//! and each timer tick ([`SliceMerge::expire`]) returns the index operations to apply
//! and the next deadline at which `expire` must be called. An event first applies its
//! change, then expires what is due: a pod named again by the event that came at its
//! deadline is kept. A relist is taken as applying every listed slice and deleting every
//! other: a pod it does not name is kept for the grace too (the list may have been taken
//! in the middle of a move). A pod with a new uid under an old name is another pod: its
//! predecessor is removed, then it is added, at once.
//!
//! In a watch loop: the watcher's `Apply` and `Delete` go to [`SliceMerge::apply`] and
//! [`SliceMerge::delete`]; `Init` starts collecting slices, `InitApply` collects one,
//! `InitDone` hands them all to [`SliceMerge::relist`] (whose result
//! [`SliceMerge::records`] can replace the index in one swap); and a timer set to the
//! latest [`Outcome::next_deadline`] calls [`SliceMerge::expire`]. The operations of one
//! call are best applied under one write lock: a pod replaced under its name is never
//! seen missing.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::index::{PodChange, PodIndex};
use crate::pod::{ContainerPort, Phase, PodRecord};
use crate::slice_wire::{WireEndpoint, WireEndpointSlice};

/// How long a pod's endpoint is kept after it left its slice, waiting for another slice
/// to name the pod. The controller writes the slices of one Service back to back, so a
/// move completes within milliseconds on a healthy API; two seconds cover a slow one.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// (namespace, name), of a slice or of a pod.
type Key = (Arc<str>, Arc<str>);

/// An address family; ordered, IPv4 first, as records list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of_slice(address_type: &str) -> Option<Family> {
        match address_type {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    fn holds(self, ip: &IpAddr) -> bool {
        matches!((self, ip), (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_)))
    }
}

/// One slice, as the merge keeps it.
#[derive(Debug, Clone)]
struct Slice {
    family: Family,
    /// When it was applied, in events: the latest word on a pod wins.
    seq: u64,
    service: Option<Arc<str>>,
    ports: Arc<[ContainerPort]>,
    endpoints: Vec<Endpoint>,
}

/// One endpoint that names a pod.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    pod: Key,
    uid: Arc<str>,
    /// Its addresses of the slice's family.
    ips: Box<[IpAddr]>,
    hostname: Option<Box<str>>,
    node_name: Option<Arc<str>>,
    /// `serving`, defaulted.
    ready: bool,
    terminating: bool,
}

/// What one slice said of one pod, kept after the slice stopped saying it.
#[derive(Debug, Clone)]
struct Ghost {
    deadline: Instant,
    slice: Key,
    seq: u64,
    service: Option<Arc<str>>,
    ports: Arc<[ContainerPort]>,
    endpoint: Endpoint,
}

/// An endpoint with what its slice adds to it, live or kept.
#[derive(Clone, Copy)]
struct View<'a> {
    /// In a slice now, not kept.
    live: bool,
    slice: &'a Key,
    family: Family,
    seq: u64,
    service: Option<&'a Arc<str>>,
    ports: &'a [ContainerPort],
    endpoint: &'a Endpoint,
}

/// An operation on the [`PodIndex`], in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexOp {
    /// [`PodIndex::upsert`] this record.
    Upsert(PodRecord),
    /// [`PodIndex::remove`] this pod.
    Remove {
        /// Its namespace.
        namespace: Arc<str>,
        /// Its name.
        name: Arc<str>,
    },
}

impl IndexOp {
    /// Applies the operation to `index`; what it changed there.
    pub fn apply_to(self, index: &mut PodIndex) -> Option<PodChange> {
        match self {
            IndexOp::Upsert(record) => index.upsert(record),
            IndexOp::Remove { namespace, name } => index.remove(&namespace, &name),
        }
    }
}

/// What an event or a tick asks of the index, and when to call
/// [`SliceMerge::expire`] next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Operations to apply to the index, in order (pods sorted by namespace and name).
    pub ops: Vec<IndexOp>,
    /// The earliest deadline of a kept endpoint, if any.
    pub next_deadline: Option<Instant>,
}

/// The slices of a Service, and the pod records they make (see the module doc).
#[derive(Debug)]
pub struct SliceMerge {
    grace: Duration,
    seq: u64,
    slices: HashMap<Key, Slice>,
    /// The slices naming each pod.
    members: HashMap<Key, Vec<Key>>,
    /// Per pod and family, the endpoint kept after it left its slice.
    ghosts: HashMap<(Key, Family), Ghost>,
    /// The ghosts by deadline.
    deadlines: BTreeSet<(Instant, Key, Family)>,
    /// The records the index was given.
    published: HashMap<Key, PodRecord>,
}

impl Default for SliceMerge {
    fn default() -> Self {
        SliceMerge::new(DEFAULT_GRACE)
    }
}

impl SliceMerge {
    /// An empty merge, keeping vanished endpoints for `grace`.
    pub fn new(grace: Duration) -> Self {
        SliceMerge {
            grace,
            seq: 0,
            slices: HashMap::new(),
            members: HashMap::new(),
            ghosts: HashMap::new(),
            deadlines: BTreeSet::new(),
            published: HashMap::new(),
        }
    }

    /// A slice was added or changed (the watcher's `Apply`).
    pub fn apply(&mut self, slice: &WireEndpointSlice, now: Instant) -> Outcome {
        match convert(slice) {
            Some((key, slice)) => self.change(vec![(key, slice)], now),
            None => self.expire(now),
        }
    }

    /// A slice was deleted (the watcher's `Delete`).
    pub fn delete(&mut self, slice: &WireEndpointSlice, now: Instant) -> Outcome {
        match convert(slice) {
            Some((key, _)) => self.change(vec![(key, None)], now),
            None => self.expire(now),
        }
    }

    /// A complete (re-)list: these are all the slices there are (the watcher's
    /// `InitDone`, with the slices of its `InitApply`s).
    pub fn relist(&mut self, slices: &[WireEndpointSlice], now: Instant) -> Outcome {
        // In the list's order: the API lists by name, and the later of two slices naming
        // a pod (rare) is the one that speaks for it.
        let listed: Vec<(Key, Option<Slice>)> = slices.iter().filter_map(convert).collect();
        let keys: std::collections::HashSet<&Key> = listed.iter().map(|(key, _)| key).collect();
        let mut changes: Vec<(Key, Option<Slice>)> = self
            .slices
            .keys()
            .filter(|key| !keys.contains(key))
            .map(|key| (key.clone(), None))
            .collect();
        changes.extend(listed);
        self.change(changes, now)
    }

    /// Drops the kept endpoints whose deadline is `now` or past (a timer tick).
    pub fn expire(&mut self, now: Instant) -> Outcome {
        let mut touched = BTreeSet::new();
        self.expire_into(now, &mut touched);
        self.outcome(touched)
    }

    /// The earliest deadline of a kept endpoint.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _, _)| *deadline)
    }

    /// Every record the index holds when all operations were applied: for a
    /// [`PodIndex::replace`] of the whole index after a relist, instead of the relist's
    /// operations one by one.
    pub fn records(&self) -> Vec<PodRecord> {
        self.published.values().cloned().collect()
    }

    /// Slices known.
    pub fn slice_count(&self) -> usize {
        self.slices.len()
    }

    /// Replaces the slices of `changes` (`None`: deleted), keeps what vanished, expires
    /// what is due and returns what changed for the index.
    fn change(&mut self, changes: Vec<(Key, Option<Slice>)>, now: Instant) -> Outcome {
        let mut touched: BTreeSet<Key> = BTreeSet::new();
        // The slices replaced, and per pod and family the latest endpoint they held
        // (by slice and endpoint position): a ghost only if no slice names it any more.
        let mut replaced: Vec<(Key, Slice)> = Vec::new();
        let mut vanished: HashMap<(Key, Family), (usize, usize)> = HashMap::new();
        for (key, new) in changes {
            if let Some(old) = self.slices.remove(&key) {
                let at = replaced.len();
                for (i, endpoint) in old.endpoints.iter().enumerate() {
                    self.unlink(&endpoint.pod, &key);
                    touched.insert(endpoint.pod.clone());
                    vanished
                        .entry((endpoint.pod.clone(), old.family))
                        .and_modify(|kept| {
                            if old.seq > replaced[kept.0].1.seq {
                                *kept = (at, i);
                            }
                        })
                        .or_insert((at, i));
                }
                replaced.push((key.clone(), old));
            }
            if let Some(mut slice) = new {
                self.seq += 1;
                slice.seq = self.seq;
                for endpoint in &slice.endpoints {
                    let slices = self.members.entry(endpoint.pod.clone()).or_default();
                    if !slices.contains(&key) {
                        slices.push(key.clone());
                    }
                    touched.insert(endpoint.pod.clone());
                }
                self.slices.insert(key, slice);
            }
        }
        // A family that lost its last live endpoint keeps the one that vanished.
        for ((pod, family), (at, i)) in vanished {
            if self.has_live(&pod, family) {
                continue;
            }
            let (key, old) = &replaced[at];
            let ghost = Ghost {
                deadline: now + self.grace,
                slice: key.clone(),
                seq: old.seq,
                service: old.service.clone(),
                ports: old.ports.clone(),
                endpoint: old.endpoints[i].clone(),
            };
            match self.ghosts.get_mut(&(pod.clone(), family)) {
                // Kept already: the first deadline stands, the latest word is kept.
                Some(kept) => {
                    if ghost.seq > kept.seq {
                        *kept = Ghost {
                            deadline: kept.deadline,
                            ..ghost
                        };
                    }
                }
                None => {
                    self.deadlines.insert((ghost.deadline, pod.clone(), family));
                    self.ghosts.insert((pod, family), ghost);
                }
            }
        }
        // A family named again by a slice needs its ghost no more.
        for pod in &touched {
            for family in [Family::V4, Family::V6] {
                if self.has_live(pod, family) {
                    self.drop_ghost(pod, family);
                }
            }
        }
        self.expire_into(now, &mut touched);
        self.outcome(touched)
    }

    fn expire_into(&mut self, now: Instant, touched: &mut BTreeSet<Key>) {
        while let Some((deadline, pod, family)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.drop_ghost(&pod, family);
            touched.insert(pod);
        }
    }

    fn drop_ghost(&mut self, pod: &Key, family: Family) {
        if let Some(ghost) = self.ghosts.remove(&(pod.clone(), family)) {
            self.deadlines.remove(&(ghost.deadline, pod.clone(), family));
        }
    }

    fn unlink(&mut self, pod: &Key, slice: &Key) {
        if let Some(slices) = self.members.get_mut(pod) {
            slices.retain(|s| s != slice);
            if slices.is_empty() {
                self.members.remove(pod);
            }
        }
    }

    fn has_live(&self, pod: &Key, family: Family) -> bool {
        self.members
            .get(pod)
            .into_iter()
            .flatten()
            .any(|slice| self.slices.get(slice).is_some_and(|s| s.family == family))
    }

    /// Every endpoint naming `pod`: in its slices, then kept.
    fn views<'a>(&'a self, pod: &Key) -> Vec<View<'a>> {
        let mut views = Vec::new();
        for key in self.members.get(pod).into_iter().flatten() {
            let Some((key, slice)) = self.slices.get_key_value(key) else {
                continue;
            };
            views.extend(slice.endpoints.iter().filter(|e| e.pod == *pod).map(|endpoint| View {
                live: true,
                slice: key,
                family: slice.family,
                seq: slice.seq,
                service: slice.service.as_ref(),
                ports: &slice.ports,
                endpoint,
            }));
        }
        for family in [Family::V4, Family::V6] {
            if let Some(ghost) = self.ghosts.get(&(pod.clone(), family)) {
                views.push(View {
                    live: false,
                    slice: &ghost.slice,
                    family,
                    seq: ghost.seq,
                    service: ghost.service.as_ref(),
                    ports: &ghost.ports,
                    endpoint: &ghost.endpoint,
                });
            }
        }
        views
    }

    /// The pod's record from its endpoints (see the module doc), if any names it.
    fn record<'a>(&'a self, pod: &Key) -> Option<PodRecord> {
        let views = self.views(pod);
        // The pod is the one a slice names now, if any: a kept endpoint of an older pod
        // of the same name never takes the name back.
        let newest = |views: &mut dyn Iterator<Item = &View<'a>>| views.max_by_key(|v| v.seq).copied();
        let anchor = newest(&mut views.iter().filter(|v| v.live)).or_else(|| newest(&mut views.iter()))?;
        let mut same: Vec<View> = views
            .into_iter()
            .filter(|v| v.endpoint.uid == anchor.endpoint.uid)
            .collect();
        // Of that pod, the latest word, kept or not, speaks.
        let latest = newest(&mut same.iter())?;
        same.sort_by(|a, b| (a.family, a.slice, a.seq).cmp(&(b.family, b.slice, b.seq)));
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in same.iter().flat_map(|v| v.endpoint.ips.iter()) {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        // The latest word first, then the others from the newest.
        let mut by_recency = same.clone();
        by_recency.sort_by_key(|v| std::cmp::Reverse(v.seq));
        let hostname_from = by_recency.iter().find(|v| v.endpoint.hostname.is_some());
        let mut ports: Vec<ContainerPort> = Vec::new();
        for port in same.iter().flat_map(|v| v.ports.iter()) {
            if !ports.contains(port) {
                ports.push(port.clone());
            }
        }
        ports.sort_by(|a, b| (&a.name, a.port, &a.container).cmp(&(&b.name, b.port, &b.container)));
        let ready = latest.endpoint.ready;
        Some(PodRecord {
            uid: (*latest.endpoint.uid).into(),
            namespace: pod.0.clone(),
            name: pod.1.clone(),
            ips: ips.into(),
            hostname: hostname_from.and_then(|v| v.endpoint.hostname.clone()),
            subdomain: hostname_from.and_then(|v| v.service.map(|s| (**s).into())),
            node_name: by_recency.iter().find_map(|v| v.endpoint.node_name.clone()),
            phase: if ready { Phase::Running } else { Phase::Pending },
            ready,
            terminating: same.iter().any(|v| v.endpoint.terminating),
            host_network: false,
            created: 0,
            labels: Box::new([]),
            annotations: Box::new([]),
            ports: ports.into(),
        })
    }

    /// The operations that bring the index to the records of `touched` pods.
    fn outcome(&mut self, touched: BTreeSet<Key>) -> Outcome {
        let mut ops = Vec::new();
        for pod in touched {
            let record = self.record(&pod);
            let remove = || IndexOp::Remove {
                namespace: pod.0.clone(),
                name: pod.1.clone(),
            };
            match (self.published.get(&pod), record) {
                (Some(old), Some(new)) if *old == new => {}
                (Some(old), Some(new)) => {
                    // Another pod under the same name: its predecessor is gone.
                    if old.uid != new.uid {
                        ops.push(remove());
                    }
                    ops.push(IndexOp::Upsert(new.clone()));
                    self.published.insert(pod, new);
                }
                (None, Some(new)) => {
                    ops.push(IndexOp::Upsert(new.clone()));
                    self.published.insert(pod, new);
                }
                (Some(_), None) => {
                    ops.push(remove());
                    self.published.remove(&pod);
                }
                (None, None) => {}
            }
        }
        Outcome {
            ops,
            next_deadline: self.next_deadline(),
        }
    }
}

/// The slice's key and what the merge keeps of it; `None` as the slice for a slice of
/// no IP family (FQDN), which names no pod. `None` for a slice without name or
/// namespace.
fn convert(wire: &WireEndpointSlice) -> Option<(Key, Option<Slice>)> {
    let nonempty = |s: Option<&String>| s.filter(|s| !s.is_empty()).map(|s| Arc::<str>::from(s.as_str()));
    let key: Key = (
        nonempty(wire.metadata.namespace.as_ref())?,
        nonempty(wire.metadata.name.as_ref())?,
    );
    let Some(family) = Family::of_slice(&wire.address_type) else {
        return Some((key, None));
    };
    let service: Option<Arc<str>> = wire.service_name().map(Arc::from);
    let container: Box<str> = service.as_deref().unwrap_or("").into();
    let ports: Vec<ContainerPort> = wire
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().is_none_or(|proto| proto == "TCP"))
        .filter_map(|p| {
            Some(ContainerPort {
                name: p.name.as_deref().filter(|n| !n.is_empty()).map(Into::into),
                port: u16::try_from(p.port?).ok().filter(|port| *port != 0)?,
                container: container.clone(),
            })
        })
        .collect();
    let endpoints = wire
        .endpoints
        .iter()
        .flatten()
        .filter_map(|e| endpoint(e, &key.0, family))
        .collect();
    Some((
        key,
        Some(Slice {
            family,
            seq: 0,
            service,
            ports: ports.into(),
            endpoints,
        }),
    ))
}

/// The endpoint, if it names a pod.
fn endpoint(wire: &WireEndpoint, slice_namespace: &Arc<str>, family: Family) -> Option<Endpoint> {
    let target = wire.target_ref.as_ref()?;
    if target.kind.as_deref() != Some("Pod") {
        return None;
    }
    fn nonempty(s: Option<&String>) -> Option<&str> {
        s.map(String::as_str).filter(|s| !s.is_empty())
    }
    let namespace = match nonempty(target.namespace.as_ref()) {
        None => slice_namespace.clone(),
        Some(ns) if ns == &**slice_namespace => slice_namespace.clone(),
        // A Service's slices name pods of its own namespace only: one that names another
        // namespace's pod is not the controller's, and speaks for nobody.
        Some(_) => return None,
    };
    let conditions = wire.conditions.unwrap_or_default();
    Some(Endpoint {
        pod: (namespace, nonempty(target.name.as_ref())?.into()),
        uid: nonempty(target.uid.as_ref())?.into(),
        ips: wire
            .addresses
            .iter()
            .flatten()
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .filter(|ip| family.holds(ip))
            .collect(),
        hostname: nonempty(wire.hostname.as_ref()).map(Into::into),
        node_name: nonempty(wire.node_name.as_ref()).map(Into::into),
        ready: conditions.serving(),
        terminating: conditions.terminating(),
    })
}

#[cfg(test)]
mod tests;

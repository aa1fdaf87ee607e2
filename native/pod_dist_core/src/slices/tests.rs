use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::*;
use crate::host::parse;
use crate::index::{Family as IndexFamily, Resolution};
use crate::pod::DistPort;

const NS: &str = "shop";
const SERVICE: &str = "shop-dist";
const GRACE: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An endpoint as the EndpointSlice controller writes it for a Service with
/// `publishNotReadyAddresses` (so `ready` is always true; `serving` tells).
#[derive(Debug, Clone)]
struct Ep {
    pod: String,
    uid: String,
    ip: String,
    conditions: Value,
    hostname: Option<String>,
    node: Option<String>,
}

fn ep(pod: &str, ip: &str) -> Ep {
    Ep {
        pod: pod.into(),
        uid: format!("uid-{pod}"),
        ip: ip.into(),
        conditions: json!({ "ready": true, "serving": true, "terminating": false }),
        hostname: None,
        node: Some("node-1".into()),
    }
}

impl Ep {
    fn conditions(self, conditions: Value) -> Ep {
        Ep { conditions, ..self }
    }

    fn uid(self, uid: &str) -> Ep {
        Ep {
            uid: uid.into(),
            ..self
        }
    }

    fn json(&self) -> Value {
        let mut value = json!({
            "addresses": [self.ip],
            "conditions": self.conditions,
            "targetRef": { "kind": "Pod", "namespace": NS, "name": self.pod, "uid": self.uid }
        });
        if let Some(hostname) = &self.hostname {
            value["hostname"] = json!(hostname);
        }
        if let Some(node) = &self.node {
            value["nodeName"] = json!(node);
        }
        value
    }
}

fn dist_port(port: u16) -> Value {
    json!([{ "name": "dist", "port": port, "protocol": "TCP" }])
}

/// A slice of `SERVICE`, of the family of its first endpoint's address (IPv4 if none).
fn slice_with_ports(name: &str, eps: &[Ep], ports: Value) -> WireEndpointSlice {
    let family = match eps.first() {
        Some(e) if e.ip.contains(':') => "IPv6",
        _ => "IPv4",
    };
    let endpoints: Vec<Value> = eps.iter().map(Ep::json).collect();
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": NS, "labels": { "kubernetes.io/service-name": SERVICE } },
        "addressType": family,
        "endpoints": if endpoints.is_empty() { Value::Null } else { json!(endpoints) },
        "ports": ports
    }))
    .unwrap()
}

fn slice(name: &str, eps: &[Ep]) -> WireEndpointSlice {
    slice_with_ports(name, eps, dist_port(4370))
}

fn empty_v6(name: &str) -> WireEndpointSlice {
    let mut slice = slice(name, &[]);
    slice.address_type = "IPv6".into();
    slice
}

/// The pods each upsert is for, and the removed ones marked `-`.
fn summary(outcome: &Outcome) -> Vec<String> {
    outcome
        .ops
        .iter()
        .map(|op| match op {
            IndexOp::Upsert(record) => format!("+{}", record.name),
            IndexOp::Remove { name, .. } => format!("-{name}"),
        })
        .collect()
}

fn upserted(outcome: &Outcome, pod: &str) -> PodRecord {
    outcome
        .ops
        .iter()
        .find_map(|op| match op {
            IndexOp::Upsert(record) if &*record.name == pod => Some(record.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no upsert of {pod} in {outcome:?}"))
}

fn ips(record: &PodRecord) -> Vec<String> {
    record.ips.iter().map(|ip| ip.to_string()).collect()
}

fn apply_all(index: &mut PodIndex, outcome: Outcome) -> Vec<PodChange> {
    outcome.ops.into_iter().filter_map(|op| op.apply_to(index)).collect()
}

/// The slice the slice_wire tests decode, as the controller writes it: every field turns
/// into the record the pods source would make, as far as slices tell.
#[test]
fn a_controller_slice_makes_the_records_of_its_pods() {
    let wire: WireEndpointSlice = serde_json::from_value(crate::slice_wire::tests::controller_slice()).unwrap();
    let now = Instant::now();
    let mut merge = SliceMerge::default();
    let outcome = merge.apply(&wire, now);
    // The endpoint without a targetRef is no pod.
    assert_eq!(summary(&outcome), ["+web-0", "+web-1"]);
    let web0 = upserted(&outcome, "web-0");
    let ports: Box<[ContainerPort]> = Box::new([
        ContainerPort {
            name: Some("dist".into()),
            port: 4370,
            container: "shop-dist".into(),
        },
        ContainerPort {
            name: Some("metrics".into()),
            port: 9100,
            container: "shop-dist".into(),
        },
    ]);
    assert_eq!(
        web0,
        PodRecord {
            uid: "u-0".into(),
            namespace: "shop".into(),
            name: "web-0".into(),
            ips: Box::new(["10.0.0.7".parse().unwrap()]),
            hostname: Some("web-0".into()),
            subdomain: Some("shop-dist".into()),
            node_name: Some("node-1".into()),
            // `ready` is forced by publishNotReadyAddresses; `serving` is false.
            phase: Phase::Pending,
            ready: false,
            terminating: false,
            host_network: false,
            created: 0,
            labels: Box::new([]),
            annotations: Box::new([]),
            // The UDP port names no distribution port.
            ports: ports.clone(),
        }
    );
    assert_eq!(web0.dist_port("any"), Some((DistPort::Any, 4370)));
    let web1 = upserted(&outcome, "web-1");
    // No namespace in the targetRef: the slice's. No conditions at all: ready.
    assert_eq!((&*web1.namespace, &*web1.uid), ("shop", "u-1"));
    assert_eq!(
        (web1.phase, web1.ready, web1.terminating),
        (Phase::Running, true, false)
    );
    assert_eq!((web1.hostname.as_deref(), web1.subdomain.as_deref()), (None, None));
    assert_eq!(web1.node_name, None);
    assert_eq!(web1.ports, ports);
    assert_eq!(outcome.next_deadline, None);
}

#[test]
fn slices_of_no_ip_family_and_endpoints_of_no_pod_name_nothing() {
    let now = Instant::now();
    let mut merge = SliceMerge::default();
    let fqdn: WireEndpointSlice = serde_json::from_value(json!({
        "metadata": { "name": "external", "namespace": NS, "labels": { "kubernetes.io/service-name": SERVICE } },
        "addressType": "FQDN",
        "endpoints": [{ "addresses": ["db.example.com"],
                        "targetRef": { "kind": "Pod", "name": "db", "uid": "u" } }],
        "ports": [{ "name": "dist", "port": 4370 }]
    }))
    .unwrap();
    assert_eq!(merge.apply(&fqdn, now), Outcome::default());
    let odd: WireEndpointSlice = serde_json::from_value(json!({
        "metadata": { "name": "odd", "namespace": NS },
        "addressType": "IPv4",
        "endpoints": [
            { "addresses": ["10.0.0.1"] },
            { "addresses": ["10.0.0.2"], "targetRef": { "kind": "Node", "name": "n", "uid": "u" } },
            { "addresses": ["10.0.0.3"], "targetRef": { "kind": "Pod", "name": "no-uid" } },
            { "addresses": ["10.0.0.4"], "targetRef": { "kind": "Pod", "uid": "no-name" } },
            { "addresses": ["10.0.0.5"], "targetRef": { "name": "no-kind", "uid": "u" } },
            { "addresses": ["10.0.0.6"], "targetRef": { "kind": "Pod", "namespace": "elsewhere", "name": "web-0", "uid": "u" } }
        ]
    }))
    .unwrap();
    assert_eq!(merge.apply(&odd, now), Outcome::default());
    let unnamed: WireEndpointSlice = serde_json::from_value(json!({ "addressType": "IPv4" })).unwrap();
    assert_eq!(merge.apply(&unnamed, now), Outcome::default());
    assert_eq!(merge.slice_count(), 1);
}

#[test]
fn a_dual_stack_pod_has_the_addresses_of_both_slices_ipv4_first() {
    let now = Instant::now();
    let mut merge = SliceMerge::default();
    let v6 = merge.apply(&slice("v6", &[ep("web-0", "fd00::7")]), now);
    assert_eq!(ips(&upserted(&v6, "web-0")), ["fd00::7"]);
    let v4 = merge.apply(&slice("v4", &[ep("web-0", "10.0.0.7")]), now);
    assert_eq!(ips(&upserted(&v4, "web-0")), ["10.0.0.7", "fd00::7"]);
    // Listed together, in either order: the same record.
    for order in [["v4", "v6"], ["v6", "v4"]] {
        let mut listed = SliceMerge::default();
        let slices: Vec<_> = order
            .iter()
            .map(|name| match *name {
                "v4" => slice("v4", &[ep("web-0", "10.0.0.7")]),
                _ => slice("v6", &[ep("web-0", "fd00::7")]),
            })
            .collect();
        let outcome = listed.relist(&slices, now);
        assert_eq!(ips(&upserted(&outcome, "web-0")), ["10.0.0.7", "fd00::7"]);
    }
}

/// An endpoint moves from slice a to slice b, whatever order the two updates come in:
/// no operation at all, the pod's record being the same in b.
#[test]
fn an_endpoint_moving_between_slices_in_either_order_makes_no_flap() {
    for a_first in [true, false] {
        let t = Instant::now();
        let mut merge = SliceMerge::new(GRACE);
        let mut index = PodIndex::new();
        let start = merge.relist(
            &[
                slice("a", &[ep("p", "10.0.0.1"), ep("q", "10.0.0.2")]),
                slice("b", &[ep("r", "10.0.0.3")]),
            ],
            t,
        );
        assert_eq!(apply_all(&mut index, start).len(), 3);
        let a = slice("a", &[ep("q", "10.0.0.2")]);
        let b = slice("b", &[ep("r", "10.0.0.3"), ep("p", "10.0.0.1")]);
        let (first, second) = if a_first { (a, b) } else { (b, a) };
        let one = merge.apply(&first, t + ms(3));
        let two = merge.apply(&second, t + ms(5));
        assert_eq!(
            (one.ops.clone(), two.ops.clone()),
            (vec![], vec![]),
            "a first: {a_first}"
        );
        if a_first {
            // p was in no slice for a moment: kept until the grace ends, then needed no more.
            assert_eq!(one.next_deadline, Some(t + ms(3) + GRACE));
        }
        assert_eq!(two.next_deadline, None);
        assert_eq!(merge.expire(t + GRACE * 10), Outcome::default());
        assert!(matches!(
            index.resolve(&parse("p", "cluster.local"), Some(NS), IndexFamily::Inet),
            Resolution::Found(..)
        ));
    }
}

/// A slice deleted and recreated under another name (as a slice is replaced): its pods
/// stay, untouched.
#[test]
fn a_slice_replaced_by_another_makes_no_flap() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let pods = [ep("p", "10.0.0.1"), ep("q", "10.0.0.2")];
    merge.apply(&slice("a", &pods), t);
    let deleted = merge.delete(&slice("a", &pods), t + ms(1));
    assert_eq!(deleted.ops, []);
    assert_eq!(deleted.next_deadline, Some(t + ms(1) + GRACE));
    let created = merge.apply(&slice("a2", &pods), t + ms(2));
    assert_eq!(created, Outcome::default());
    assert_eq!(merge.expire(t + GRACE * 2), Outcome::default());
}

/// A dual-stack pod's IPv4 endpoint moves while its IPv6 one stays: its IPv4 address is
/// kept all along, so it resolves over IPv4 throughout.
#[test]
fn a_move_keeps_the_moving_family_s_address() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let mut index = PodIndex::new();
    let start = merge.relist(
        &[slice("a", &[ep("p", "10.0.0.1")]), slice("c", &[ep("p", "fd00::1")])],
        t,
    );
    apply_all(&mut index, start);
    let p = parse("p", "cluster.local");
    let left = merge.apply(&slice("a", &[]), t + ms(1));
    assert_eq!(left.ops, []);
    assert!(matches!(
        index.resolve(&p, Some(NS), IndexFamily::Inet),
        Resolution::Found(..)
    ));
    let arrived = merge.apply(&slice("b", &[ep("p", "10.0.0.1")]), t + ms(2));
    assert_eq!(arrived, Outcome::default());

    // Had it not arrived, the pod would have lost its IPv4 address at the deadline.
    let lost = merge.apply(&slice("b", &[]), t + ms(3));
    assert_eq!(lost.ops, []);
    let expired = merge.expire(t + ms(3) + GRACE);
    assert_eq!(ips(&upserted(&expired, "p")), ["fd00::1"]);
    assert_eq!(expired.next_deadline, None);
}

#[test]
fn a_pod_gone_from_every_slice_is_removed_once_the_grace_ends() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let mut index = PodIndex::new();
    apply_all(
        &mut index,
        merge.apply(&slice("a", &[ep("p", "10.0.0.1"), ep("q", "10.0.0.2")]), t),
    );
    let gone = merge.apply(&slice("a", &[ep("q", "10.0.0.2")]), t + ms(10));
    assert_eq!(gone.ops, []);
    let deadline = t + ms(10) + GRACE;
    assert_eq!(gone.next_deadline, Some(deadline));
    assert_eq!(merge.expire(deadline - ms(1)).ops, []);
    let removed = merge.expire(deadline);
    assert_eq!(summary(&removed), ["-p"]);
    assert_eq!(removed.next_deadline, None);
    let changes = apply_all(&mut index, removed);
    assert!(matches!(changes.as_slice(), [PodChange::Deleted(pod)] if &*pod.name == "p"));
    assert_eq!(index.len(), 1);
    // Named again after its removal: added again, as a pod that came back.
    let back = merge.apply(
        &slice("a", &[ep("p", "10.0.0.1"), ep("q", "10.0.0.2")]),
        deadline + ms(1),
    );
    assert_eq!(summary(&back), ["+p"]);
}

#[test]
fn a_deleted_slice_takes_its_pods_once_the_grace_ends() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    merge.apply(&slice("a", &[ep("p", "10.0.0.1")]), t);
    merge.apply(&slice("b", &[ep("q", "10.0.0.2")]), t);
    assert_eq!(merge.delete(&slice("a", &[]), t + ms(1)).ops, []);
    // Another event past the deadline expires it too.
    let later = merge.apply(&slice("b", &[ep("q", "10.0.0.2"), ep("r", "10.0.0.3")]), t + GRACE * 2);
    assert_eq!(summary(&later), ["-p", "+r"]);
    assert_eq!(merge.slice_count(), 1);
}

/// An event that comes at a pod's deadline and names it again keeps it: the event is
/// applied before what is due expires.
#[test]
fn an_event_at_the_deadline_naming_the_pod_again_keeps_it() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    merge.apply(&slice("a", &[ep("p", "10.0.0.1")]), t);
    merge.apply(&slice("a", &[]), t);
    assert_eq!(
        merge.apply(&slice("b", &[ep("p", "10.0.0.1")]), t + GRACE),
        Outcome::default()
    );
}

#[test]
fn a_relist_replaces_every_slice() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let mut index = PodIndex::new();
    apply_all(
        &mut index,
        merge.relist(
            &[
                slice("a", &[ep("p", "10.0.0.1"), ep("q", "10.0.0.2")]),
                slice("b", &[ep("r", "10.0.0.3")]),
            ],
            t,
        ),
    );
    // After an outage: a is gone, b changed, c is new; q moved to c, p left for good.
    let relisted = merge.relist(
        &[
            slice(
                "b",
                &[ep("r", "10.0.0.3").conditions(json!({ "ready": true, "serving": false }))],
            ),
            slice("c", &[ep("q", "10.0.0.2"), ep("s", "10.0.0.4")]),
        ],
        t + ms(100),
    );
    assert_eq!(summary(&relisted), ["+r", "+s"]);
    assert!(!upserted(&relisted, "r").ready);
    // The records to replace the index with, the pod waiting for its grace included,
    // are what applying the operations one by one gives.
    let mut replaced = PodIndex::new();
    replaced.replace(None, merge.records());
    apply_all(&mut index, relisted);
    assert_eq!(replaced.pods(), index.pods());
    assert_eq!(index.len(), 4);
    let expired = merge.expire(t + ms(100) + GRACE);
    assert_eq!(summary(&expired), ["-p"]);
    apply_all(&mut index, expired);
    assert_eq!(
        index.pods().iter().map(|p| p.name.to_string()).collect::<Vec<_>>(),
        ["q", "r", "s"]
    );
    // A relist of nothing: every pod goes, after the grace.
    let nothing = merge.relist(&[], t + ms(200));
    assert_eq!(nothing.ops, []);
    assert_eq!(summary(&merge.expire(t + ms(200) + GRACE)), ["-q", "-r", "-s"]);
    assert_eq!(merge.slice_count(), 0);
}

/// Rare but legal: a pod in two slices of one family. It stays while either names it;
/// where they disagree, the slice applied last speaks.
#[test]
fn a_pod_in_two_slices_of_one_family() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    merge.apply(&slice("a", &[ep("p", "10.0.0.1")]), t);
    let both = merge.apply(
        &slice("b", &[ep("p", "10.0.0.1").conditions(json!({ "serving": false }))]),
        t,
    );
    let record = upserted(&both, "p");
    assert_eq!((ips(&record), record.ready), (vec!["10.0.0.1".to_string()], false));
    let a_again = merge.apply(&slice("a", &[ep("p", "10.0.0.1")]), t + ms(1));
    assert!(upserted(&a_again, "p").ready);
    // Out of a, b still holds it (not ready): no wait, no grace.
    let out_of_a = merge.apply(&slice("a", &[]), t + ms(2));
    assert!(!upserted(&out_of_a, "p").ready);
    assert_eq!(out_of_a.next_deadline, None);
    assert_eq!(merge.apply(&slice("b", &[]), t + ms(3)).ops, []);
    assert_eq!(summary(&merge.expire(t + ms(3) + GRACE)), ["-p"]);
}

#[test]
fn readiness_and_termination_follow_the_conditions() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let state = |merge: &mut SliceMerge, conditions: Value| {
        let outcome = merge.apply(&slice("a", &[ep("p", "10.0.0.1").conditions(conditions)]), t);
        let record = upserted(&outcome, "p");
        (record.phase, record.ready, record.terminating)
    };
    // Starting (publishNotReadyAddresses forces `ready`), then ready.
    assert_eq!(
        state(
            &mut merge,
            json!({ "ready": true, "serving": false, "terminating": false })
        ),
        (Phase::Pending, false, false)
    );
    assert_eq!(
        state(
            &mut merge,
            json!({ "ready": true, "serving": true, "terminating": false })
        ),
        (Phase::Running, true, false)
    );
    // Draining, without publishNotReadyAddresses: `ready` false, still serving.
    assert_eq!(
        state(
            &mut merge,
            json!({ "ready": false, "serving": true, "terminating": true })
        ),
        (Phase::Running, true, true)
    );
    assert_eq!(
        state(
            &mut merge,
            json!({ "ready": false, "serving": false, "terminating": true })
        ),
        (Phase::Pending, false, true)
    );
    // An older writer: `ready` only.
    assert_eq!(
        state(&mut merge, json!({ "ready": true })),
        (Phase::Running, true, false)
    );
    assert_eq!(
        state(&mut merge, json!({ "ready": false })),
        (Phase::Pending, false, false)
    );
    // Nothing said: ready, not terminating.
    assert_eq!(state(&mut merge, json!({})), (Phase::Running, true, false));
}

/// A dual-stack pod's two slices are written one after the other: the first one to say
/// the pod terminates is believed at once, and the other cannot undo it.
#[test]
fn a_pod_terminating_in_one_family_s_slice_is_terminating() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    merge.relist(
        &[slice("v4", &[ep("p", "10.0.0.1")]), slice("v6", &[ep("p", "fd00::1")])],
        t,
    );
    let draining = json!({ "ready": true, "serving": true, "terminating": true });
    let v4 = merge.apply(&slice("v4", &[ep("p", "10.0.0.1").conditions(draining.clone())]), t);
    assert!(upserted(&v4, "p").terminating);
    assert_eq!(
        merge.apply(&slice("v6", &[ep("p", "fd00::1").conditions(draining)]), t),
        Outcome::default()
    );
}

/// Ports come from each pod's slice: pods whose named target port resolves to another
/// number are in another slice, with their own port.
#[test]
fn ports_are_the_pod_s_slice_s() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let ports = json!([
        { "name": "dist-worker", "port": 4371 },
        { "name": "dist", "port": 4370, "protocol": "TCP" },
        { "name": "", "port": 80 },
        { "name": "all" },
        { "name": "sctp", "port": 5000, "protocol": "SCTP" }
    ]);
    let a = merge.apply(&slice_with_ports("a", &[ep("p", "10.0.0.1")], ports), t);
    let b = merge.apply(&slice_with_ports("b", &[ep("q", "10.0.0.2")], dist_port(5370)), t);
    let p = upserted(&a, "p");
    assert_eq!(
        (p.dist_port("worker"), p.dist_port("api")),
        (Some((DistPort::Node("worker"), 4371)), Some((DistPort::Any, 4370)))
    );
    assert_eq!(
        p.ports
            .iter()
            .map(|port| (port.name.as_deref(), port.port, &*port.container))
            .collect::<Vec<_>>(),
        [
            (None, 80, SERVICE),
            (Some("dist"), 4370, SERVICE),
            (Some("dist-worker"), 4371, SERVICE)
        ]
    );
    assert_eq!(upserted(&b, "q").dist_port("worker"), Some((DistPort::Any, 5370)));
    // Moved to the other port set: the pod's port changes, nothing else.
    merge.apply(
        &slice_with_ports("b", &[ep("q", "10.0.0.2"), ep("p", "10.0.0.1")], dist_port(5370)),
        t,
    );
    let a = merge.apply(&slice_with_ports("a", &[], dist_port(4370)), t);
    let expected = PodRecord {
        ports: Box::new([ContainerPort {
            name: Some("dist".into()),
            port: 5370,
            container: SERVICE.into(),
        }]),
        ..p
    };
    // The pod was in both for a moment; the ports of the slice it left go with it.
    assert_eq!(a.ops, [IndexOp::Upsert(expected)]);
}

/// A pod deleted and created again under its name (a StatefulSet's) is another pod: the
/// index hears the old one go and the new one come, even at once.
#[test]
fn a_new_pod_under_an_old_name_replaces_it() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let mut index = PodIndex::new();
    apply_all(&mut index, merge.apply(&slice("a", &[ep("web-0", "10.0.0.1")]), t));
    let replaced = merge.apply(&slice("a", &[ep("web-0", "10.0.0.9").uid("uid-new")]), t + ms(1));
    assert_eq!(summary(&replaced), ["-web-0", "+web-0"]);
    let changes = apply_all(&mut index, replaced);
    assert!(matches!(
        changes.as_slice(),
        [PodChange::Deleted(old), PodChange::Added(new)] if &*old.uid == "uid-web-0" && &*new.uid == "uid-new"
    ));
    // The old one lingering in a stale slice, written before: the newer word stands.
    let stale = merge.apply(&slice("b", &[ep("web-0", "10.0.0.1")]), t + ms(2));
    assert_eq!(summary(&stale), ["-web-0", "+web-0"]);
    let fixed = merge.apply(&slice("a", &[ep("web-0", "10.0.0.9").uid("uid-new")]), t + ms(3));
    assert_eq!(&*upserted(&fixed, "web-0").uid, "uid-new");
}

/// A dual-stack pod replaced under its name, and a late write of its IPv4 slice that
/// still names the old pod (believed: it is the latest word). Once that slice drops the
/// old pod, the new one, which a slice names, has its name back at once: what the IPv4
/// slice said of the old pod is kept for the grace, but never takes the name back.
#[test]
fn a_kept_endpoint_of_an_older_pod_never_takes_its_name_back() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    merge.relist(
        &[
            slice("v4", &[ep("web-0", "10.0.0.1")]),
            slice("v6", &[ep("web-0", "fd00::1")]),
        ],
        t,
    );
    let new = merge.apply(&slice("v6", &[ep("web-0", "fd00::9").uid("uid-new")]), t + ms(1));
    assert_eq!(summary(&new), ["-web-0", "+web-0"]);
    assert_eq!(ips(&upserted(&new, "web-0")), ["fd00::9"]);
    let late = merge.apply(&slice("v4", &[ep("web-0", "10.0.0.1"), ep("q", "10.0.0.2")]), t + ms(2));
    assert_eq!(summary(&late), ["+q", "-web-0", "+web-0"]);
    assert_eq!(&*upserted(&late, "web-0").uid, "uid-web-0");
    let dropped = merge.apply(&slice("v4", &[ep("q", "10.0.0.2")]), t + ms(3));
    assert_eq!(summary(&dropped), ["-web-0", "+web-0"]);
    let record = upserted(&dropped, "web-0");
    assert_eq!((&*record.uid, ips(&record)), ("uid-new", vec!["fd00::9".to_string()]));
    let v4 = merge.apply(
        &slice("v4", &[ep("q", "10.0.0.2"), ep("web-0", "10.0.0.9").uid("uid-new")]),
        t + ms(4),
    );
    assert_eq!(ips(&upserted(&v4, "web-0")), ["10.0.0.9", "fd00::9"]);
    assert_eq!(merge.expire(t + GRACE * 2), Outcome::default());
}

/// A dual-stack pod turns ready while its IPv4 endpoint moves: the IPv4 slice it left
/// said so last, its IPv6 slice (not yet rewritten) still says not ready. The latest
/// word of the pod stands: no readiness flap.
#[test]
fn the_latest_word_on_a_pod_stands_while_its_endpoint_moves() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let starting = json!({ "ready": true, "serving": false });
    merge.relist(
        &[
            slice("a", &[ep("p", "10.0.0.1").conditions(starting.clone())]),
            slice("v6", &[ep("p", "fd00::1").conditions(starting)]),
        ],
        t,
    );
    let ready = merge.apply(&slice("a", &[ep("p", "10.0.0.1")]), t + ms(1));
    assert!(upserted(&ready, "p").ready);
    assert_eq!(merge.apply(&slice("a", &[]), t + ms(2)).ops, []);
    assert_eq!(merge.apply(&slice("b", &[ep("p", "10.0.0.1")]), t + ms(3)).ops, []);
    assert_eq!(merge.apply(&slice("v6", &[ep("p", "fd00::1")]), t + ms(4)).ops, []);
}

/// Every host form that resolves from pods resolves from slices: the endpoint's hostname
/// under the Service, the pod's name, its dashed IP.
#[test]
fn host_forms_resolve_from_slice_records() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    let mut index = PodIndex::new();
    let mut web = ep("web-0", "10.0.0.7");
    web.hostname = Some("web-0".into());
    apply_all(
        &mut index,
        merge.relist(&[slice("a", &[web]), slice("a6", &[ep("web-0", "fd00::7")])], t),
    );
    for host in [
        "web-0",
        "web-0.shop-dist",
        "web-0.shop-dist.shop.svc.cluster.local",
        "web-0.shop.pod",
        "10-0-0-7.shop.pod.cluster.local",
    ] {
        let resolved = index.resolve(&parse(host, "cluster.local"), Some(NS), IndexFamily::Inet);
        assert!(
            matches!(&resolved, Resolution::Found(ip, Some(pod)) if ip.to_string() == "10.0.0.7" && &*pod.name == "web-0"),
            "{host}: {resolved:?}"
        );
    }
    let v6 = index.resolve(&parse("web-0", "cluster.local"), Some(NS), IndexFamily::Inet6);
    assert!(matches!(v6, Resolution::Found(ip, _) if ip.to_string() == "fd00::7"));
}

#[test]
fn an_empty_ipv6_slice_names_nothing() {
    let t = Instant::now();
    let mut merge = SliceMerge::new(GRACE);
    assert_eq!(merge.apply(&empty_v6("v6"), t), Outcome::default());
    assert_eq!(merge.slice_count(), 1);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    const SLICES: usize = 3;
    /// Events of one batch come this far apart: a batch of 2 * SLICES events lasts far
    /// less than the grace.
    const STEP: Duration = Duration::from_millis(10);

    /// One batch: per pod and family, the slices naming it (by index; never empty in
    /// the stable variant), the order the slices' updates come in, which emptied slices
    /// are deleted rather than updated, and whether it comes as a relist.
    #[derive(Debug, Clone)]
    struct Batch {
        homes: Vec<[BTreeSet<usize>; 2]>,
        order: Vec<usize>,
        delete_empty: Vec<bool>,
        relist: bool,
        /// Time before the batch.
        gap: Duration,
    }

    fn homes(pods: usize, may_leave: bool) -> impl Strategy<Value = Vec<[BTreeSet<usize>; 2]>> {
        let least = usize::from(!may_leave);
        let one = proptest::collection::btree_set(0..SLICES, least..=2);
        proptest::collection::vec([one.clone(), one], pods)
    }

    fn batch(pods: usize, may_leave: bool) -> impl Strategy<Value = Batch> {
        (
            homes(pods, may_leave),
            Just((0..2 * SLICES).collect::<Vec<_>>()).prop_shuffle(),
            proptest::collection::vec(any::<bool>(), 2 * SLICES),
            proptest::bool::weighted(0.2),
            0u64..3000,
        )
            .prop_map(|(homes, order, delete_empty, relist, gap)| Batch {
                homes,
                order,
                delete_empty,
                relist,
                gap: ms(gap),
            })
    }

    fn pod(i: usize) -> String {
        format!("pod-{i}")
    }

    /// Slice `s` (0..SLICES IPv4, then IPv6) with the pods the batch puts there.
    fn content(batch: &Batch, s: usize) -> WireEndpointSlice {
        let (family, index) = (s / SLICES, s % SLICES);
        let eps: Vec<Ep> = batch
            .homes
            .iter()
            .enumerate()
            .filter(|(_, homes)| homes[family].contains(&index))
            .map(|(i, _)| {
                let ip = if family == 0 {
                    format!("10.0.0.{}", i + 1)
                } else {
                    format!("fd00::{}", i + 1)
                };
                ep(&pod(i), &ip)
            })
            .collect();
        let mut slice = slice(&format!("s{s}"), &eps);
        slice.address_type = if family == 0 { "IPv4" } else { "IPv6" }.into();
        slice
    }

    /// Pods named by some slice.
    fn present(slices: &BTreeMap<usize, WireEndpointSlice>) -> BTreeSet<String> {
        slices
            .values()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter_map(|e| e.target_ref.as_ref()?.name.clone())
            .collect()
    }

    /// Feeds `batches` to a merge as a watch loop would, calling `expire` at each
    /// deadline; calls `check(ops, now, slices, batch)` after each call, and returns
    /// the index and the slices at the end.
    fn run(
        batches: &[Batch],
        mut check: impl FnMut(&[IndexOp], Instant, &BTreeMap<usize, WireEndpointSlice>, usize) -> Result<(), TestCaseError>,
    ) -> Result<(SliceMerge, PodIndex, BTreeMap<usize, WireEndpointSlice>, Instant), TestCaseError> {
        let mut merge = SliceMerge::new(GRACE);
        let mut index = PodIndex::new();
        let mut slices: BTreeMap<usize, WireEndpointSlice> = BTreeMap::new();
        let mut now = Instant::now();
        for (b, batch) in batches.iter().enumerate() {
            let start = now + batch.gap;
            while let Some(deadline) = merge.next_deadline().filter(|d| *d <= start) {
                let outcome = merge.expire(deadline);
                check(&outcome.ops, deadline, &slices, b)?;
                apply_all(&mut index, outcome);
            }
            now = start;
            if batch.relist {
                for s in 0..2 * SLICES {
                    let new = content(batch, s);
                    if new.endpoints.is_none() && batch.delete_empty[s] {
                        slices.remove(&s);
                    } else {
                        slices.insert(s, new);
                    }
                }
                let listed: Vec<WireEndpointSlice> = slices.values().cloned().collect();
                let outcome = merge.relist(&listed, now);
                check(&outcome.ops, now, &slices, b)?;
                apply_all(&mut index, outcome);
                continue;
            }
            for &s in &batch.order {
                now += STEP;
                let new = content(batch, s);
                let outcome = if new.endpoints.is_none() && batch.delete_empty[s] {
                    match slices.remove(&s) {
                        Some(old) => merge.delete(&old, now),
                        None => continue,
                    }
                } else {
                    slices.insert(s, new.clone());
                    merge.apply(&new, now)
                };
                check(&outcome.ops, now, &slices, b)?;
                apply_all(&mut index, outcome);
            }
        }
        Ok((merge, index, slices, now))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// A stable set of pods moved around the slices in any way and order (updates,
        /// deletions and recreations, relists), each pod in some slice of each family at
        /// the end of each batch: once the first batch is in, the index hears nothing
        /// at all, not even when every grace has passed.
        #[test]
        fn moves_of_a_stable_pod_set_never_flap(
            batches in (1usize..6).prop_flat_map(|pods| proptest::collection::vec(batch(pods, false), 1..8)),
        ) {
            let (mut merge, mut index, slices, now) = run(&batches, |ops, _, _, b| {
                if b > 0 {
                    prop_assert_eq!(ops, &[] as &[IndexOp], "batch {}", b);
                }
                Ok(())
            })?;
            let later = merge.expire(now + GRACE * 10);
            prop_assert_eq!(later.ops.clone(), vec![]);
            apply_all(&mut index, later);
            let pods = batches[0].homes.len();
            prop_assert_eq!(present(&slices).len(), pods);
            for i in 0..pods {
                let record = index.get(NS, &pod(i)).cloned();
                prop_assert!(record.is_some());
                let record = record.unwrap();
                prop_assert_eq!(ips(&record), vec![format!("10.0.0.{}", i + 1), format!("fd00::{}", i + 1)]);
            }
        }

        /// Pods come and go as well: a pod is removed only once it has been in no slice
        /// for the whole grace, and when everything has settled the index holds exactly
        /// the pods the slices name, with exactly the addresses they give.
        #[test]
        fn pods_leave_only_after_the_grace_and_the_index_ends_as_the_slices_say(
            batches in (1usize..6).prop_flat_map(|pods| proptest::collection::vec(batch(pods, true), 1..8)),
        ) {
            // When each pod was last named by some slice (None: named now).
            let mut absent_since: BTreeMap<String, Option<Instant>> = BTreeMap::new();
            let (mut merge, mut index, slices, now) = run(&batches, |ops, now, slices, _| {
                for op in ops {
                    if let IndexOp::Remove { name, .. } = op {
                        let since = absent_since.get(&**name).copied().flatten();
                        prop_assert!(
                            since.is_some_and(|since| now >= since + GRACE),
                            "{} removed at {:?} after being absent since {:?}", name, now, since
                        );
                    }
                }
                let named = present(slices);
                for i in 0..batches[0].homes.len() {
                    let entry = absent_since.entry(pod(i)).or_insert(Some(now));
                    if named.contains(&pod(i)) {
                        *entry = None;
                    } else if entry.is_none() {
                        *entry = Some(now);
                    }
                }
                Ok(())
            })?;
            apply_all(&mut index, merge.expire(now + GRACE));
            prop_assert_eq!(merge.next_deadline(), None);
            let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for slice in slices.values() {
                for e in slice.endpoints.iter().flatten() {
                    let name = e.target_ref.as_ref().unwrap().name.clone().unwrap();
                    expected.entry(name).or_default().extend(e.addresses.clone().unwrap());
                }
            }
            let actual: BTreeMap<String, Vec<String>> =
                index.pods().iter().map(|p| (p.name.to_string(), ips(p))).collect();
            for ips in expected.values_mut() {
                ips.sort_by_key(|ip| ip.contains(':'));
                ips.dedup();
            }
            prop_assert_eq!(actual, expected);
        }
    }
}

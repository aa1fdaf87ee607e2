use super::*;
use crate::host::parse;
use crate::pod::Phase;

const DOMAIN: &str = "cluster.local";

fn record(ns: &str, name: &str, ips: &[&str]) -> PodRecord {
    PodRecord {
        uid: format!("{ns}-{name}").into(),
        namespace: ns.into(),
        name: name.into(),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        hostname: None,
        subdomain: None,
        node_name: None,
        phase: Phase::Running,
        ready: true,
        terminating: false,
        labels: Box::new([]),
        annotations: Box::new([]),
        ports: Box::new([]),
    }
}

fn resolve(index: &PodIndex, host: &str) -> Resolution {
    index.resolve(&parse(host, DOMAIN), Some("prod"))
}

fn found(index: &PodIndex, host: &str) -> Option<(String, String)> {
    match resolve(index, host) {
        Resolution::Found(ip, pod) => Some((ip.to_string(), pod.map(|p| p.name.to_string()).unwrap_or_default())),
        _ => None,
    }
}

#[test]
fn every_host_form_resolves() {
    let mut index = PodIndex::new();
    let mut web = record("prod", "web-0", &["10.42.2.46", "fd00::2e"]);
    web.hostname = Some("web-0".into());
    web.subdomain = Some("db".into());
    index.upsert(web);
    let expected = Some(("10.42.2.46".to_string(), "web-0".to_string()));
    for host in [
        "web-0",
        "WEB-0.",
        "web-0.prod",
        "web-0.prod.pod",
        "10-42-2-46.prod.pod",
        "10-42-2-46.prod.pod.cluster.local",
        "web-0.db.prod.svc.cluster.local",
        "web-0.db.prod.svc",
        "web-0.db.prod",
        "web-0.db",
        "10.42.2.46",
    ] {
        assert_eq!(found(&index, host), expected, "{host}");
    }
    assert_eq!(
        found(&index, "fd00--2e.prod.pod.cluster.local"),
        Some(("fd00::2e".into(), "web-0".into()))
    );
    for host in [
        "web-1",
        "web-0.staging",
        "10-42-2-46.staging.pod",
        "web-0.db.staging.svc",
        "example.com",
        "a.b.c.d.e",
    ] {
        assert_eq!(resolve(&index, host), Resolution::NotFound, "{host}");
    }
    assert_eq!(
        resolve(&index, "10.9.9.9"),
        Resolution::Found("10.9.9.9".parse().unwrap(), None)
    );
}

#[test]
fn a_pod_name_that_spells_an_ip_still_resolves_by_name() {
    let mut index = PodIndex::new();
    index.upsert(record("prod", "a--a", &["10.0.0.9"]));
    assert_eq!(found(&index, "a--a.prod.pod"), Some(("10.0.0.9".into(), "a--a".into())));
    assert_eq!(
        resolve(&index, "a--a.prod.pod.cluster.local"),
        Resolution::NotFound,
        "qualified: an IP only"
    );
}

#[test]
fn the_same_name_in_two_namespaces_prefers_home_and_is_otherwise_ambiguous() {
    let mut index = PodIndex::new();
    index.upsert(record("prod", "api-0", &["10.0.0.1"]));
    index.upsert(record("staging", "api-0", &["10.0.0.2"]));
    assert_eq!(
        found(&index, "api-0"),
        Some(("10.0.0.1".into(), "api-0".into())),
        "home namespace wins"
    );
    assert_eq!(
        found(&index, "api-0.staging"),
        Some(("10.0.0.2".into(), "api-0".into()))
    );
    match index.resolve(&parse("api-0", DOMAIN), Some("elsewhere")) {
        Resolution::Ambiguous(pods) => {
            assert_eq!(
                pods.iter().map(|p| &*p.namespace).collect::<Vec<_>>(),
                ["prod", "staging"]
            )
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    index.remove("staging", "api-0");
    assert!(matches!(
        index.resolve(&parse("api-0", DOMAIN), None),
        Resolution::Found(..)
    ));
}

#[test]
fn a_reused_ip_never_resolves_to_the_old_name() {
    let mut index = PodIndex::new();
    let mut old = record("prod", "old", &["10.0.0.7"]);
    old.terminating = true;
    index.upsert(old.clone());
    assert_eq!(
        found(&index, "old"),
        Some(("10.0.0.7".into(), "old".into())),
        "terminating pods still resolve"
    );
    index.upsert(record("prod", "new", &["10.0.0.7"]));
    assert_eq!(
        resolve(&index, "old"),
        Resolution::NotFound,
        "the IP now belongs to new"
    );
    assert_eq!(found(&index, "new"), Some(("10.0.0.7".into(), "new".into())));
    assert_eq!(
        found(&index, "10-0-0-7.prod.pod"),
        Some(("10.0.0.7".into(), "new".into()))
    );
    // An unrelated update of the old pod does not win its IP back.
    old.ready = false;
    index.upsert(old);
    assert_eq!(resolve(&index, "old"), Resolution::NotFound);
    index.remove("prod", "new");
    assert_eq!(
        found(&index, "old"),
        Some(("10.0.0.7".into(), "old".into())),
        "ownership falls back"
    );
    index.remove("prod", "old");
    assert_eq!(resolve(&index, "old"), Resolution::NotFound);
    assert_eq!(resolve(&index, "10-0-0-7.prod.pod"), Resolution::NotFound);
}

#[test]
fn pods_without_ips_do_not_resolve_and_replace_reports_only_differences() {
    let mut index = PodIndex::new();
    index.upsert(record("prod", "pending", &[]));
    assert_eq!(resolve(&index, "pending"), Resolution::NotFound);
    index.upsert(record("prod", "a", &["10.0.0.1"]));
    let changes = index.replace(
        Some("prod"),
        vec![record("prod", "a", &["10.0.0.1"]), record("prod", "b", &["10.0.0.2"])],
    );
    let kinds: Vec<_> = changes
        .iter()
        .map(|c| match c {
            PodChange::Added(p) => format!("+{}", p.name),
            PodChange::Deleted(p) => format!("-{}", p.name),
            PodChange::Changed { new, .. } => format!("~{}", new.name),
        })
        .collect();
    assert_eq!(kinds, ["-pending", "+b"]);
}

mod model {
    //! The index against a naive model: a list of pods scanned on every lookup, with IP
    //! ownership kept as "who acquired it last".

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Upsert {
            ns: usize,
            name: usize,
            ips: Vec<usize>,
            hostname: Option<usize>,
            terminating: bool,
        },
        Remove {
            ns: usize,
            name: usize,
        },
    }

    const NAMESPACES: [&str; 2] = ["prod", "staging"];
    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::4"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..2usize, 0..4usize, proptest::collection::vec(0..4usize, 0..3), proptest::option::of(0..2usize), any::<bool>())
                .prop_map(|(ns, name, ips, hostname, terminating)| Op::Upsert { ns, name, ips, hostname, terminating }),
            1 => (0..2usize, 0..4usize).prop_map(|(ns, name)| Op::Remove { ns, name }),
        ]
    }

    #[derive(Default)]
    struct Model {
        pods: Vec<(PodRecord, HashMap<IpAddr, u64>)>,
        clock: u64,
    }

    impl Model {
        fn apply(&mut self, op: &Op) {
            match op {
                Op::Upsert {
                    ns,
                    name,
                    ips,
                    hostname,
                    terminating,
                } => {
                    let mut ips: Vec<&str> = ips.iter().map(|i| IPS[*i]).collect();
                    let mut seen = Vec::new();
                    ips.retain(|ip| {
                        !seen.contains(ip) && {
                            seen.push(*ip);
                            true
                        }
                    });
                    let mut rec = record(NAMESPACES[*ns], NAMES[*name], &ips);
                    rec.hostname = hostname.map(|h| ["h0", "h1"][h].into());
                    rec.subdomain = hostname.map(|_| "sub".into());
                    rec.terminating = *terminating;
                    self.clock += 1;
                    let previous = self
                        .pods
                        .iter()
                        .position(|(p, _)| p.namespace == rec.namespace && p.name == rec.name);
                    let mut acquired = previous.map(|i| self.pods.remove(i).1).unwrap_or_default();
                    acquired.retain(|ip, _| rec.ips.contains(ip));
                    for ip in rec.ips.iter() {
                        acquired.entry(*ip).or_insert(self.clock);
                    }
                    self.pods.push((rec, acquired));
                }
                Op::Remove { ns, name } => self
                    .pods
                    .retain(|(p, _)| !(&*p.namespace == NAMESPACES[*ns] && &*p.name == NAMES[*name])),
            }
        }

        fn owner(&self, ip: IpAddr) -> Option<&PodRecord> {
            self.pods
                .iter()
                .filter_map(|(p, acq)| acq.get(&ip).map(|t| (t, p)))
                .max_by_key(|(t, _)| **t)
                .map(|(_, p)| p)
        }

        fn resolve(&self, host: &Host, home: &str) -> Vec<(String, String, IpAddr)> {
            let usable = |p: &PodRecord| p.ip().filter(|ip| self.owner(*ip).is_some_and(|o| o.uid == p.uid));
            let matching: Vec<&PodRecord> = match host {
                Host::Name(n) => self.pods.iter().map(|(p, _)| p).filter(|p| &*p.name == n).collect(),
                Host::NameDotNamespace(a, b) => {
                    let exact: Vec<_> = self
                        .pods
                        .iter()
                        .map(|(p, _)| p)
                        .filter(|p| &*p.name == a && &*p.namespace == b)
                        .collect();
                    if exact.is_empty() {
                        self.pods
                            .iter()
                            .map(|(p, _)| p)
                            .filter(|p| p.hostname.as_deref() == Some(a) && p.subdomain.as_deref() == Some(b))
                            .collect()
                    } else {
                        exact
                    }
                }
                Host::DashedIp { ip, namespace, or_pod } => {
                    match self.owner(*ip).filter(|p| &*p.namespace == namespace) {
                        Some(p) => return vec![(p.namespace.to_string(), p.name.to_string(), *ip)],
                        None => self
                            .pods
                            .iter()
                            .map(|(p, _)| p)
                            .filter(|p| Some(&*p.name) == or_pod.as_deref() && &*p.namespace == namespace)
                            .collect(),
                    }
                }
                _ => Vec::new(),
            };
            let mut usable: Vec<_> = matching
                .into_iter()
                .filter_map(|p| Some((p.namespace.to_string(), p.name.to_string(), usable(p)?)))
                .collect();
            if usable.len() > 1 && usable.iter().filter(|(ns, _, _)| ns == home).count() == 1 {
                usable.retain(|(ns, _, _)| ns == home);
            }
            usable.sort();
            usable
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn index_matches_the_naive_model(ops in proptest::collection::vec(op(), 1..40)) {
            let mut index = PodIndex::new();
            let mut model = Model::default();
            let mut hosts: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
            for n in NAMES { for ns in NAMESPACES { hosts.push(format!("{n}.{ns}")); } }
            for h in ["h0", "h1"] { hosts.push(format!("{h}.sub")); }
            for ip in IPS { for ns in NAMESPACES { hosts.push(format!("{}.{ns}.pod", ip.replace(['.', ':'], "-"))); } }
            for op in &ops {
                model.apply(op);
                match op {
                    Op::Upsert { .. } => { index.upsert(model.pods.last().unwrap().0.clone()); }
                    Op::Remove { ns, name } => { index.remove(NAMESPACES[*ns], NAMES[*name]); }
                }
                prop_assert_eq!(index.len(), model.pods.len());
                for host in &hosts {
                    let parsed = parse(host, DOMAIN);
                    let expected = model.resolve(&parsed, "prod");
                    let actual = match index.resolve(&parsed, Some("prod")) {
                        Resolution::Found(ip, Some(p)) => vec![(p.namespace.to_string(), p.name.to_string(), ip)],
                        Resolution::Found(_, None) | Resolution::NotFound => Vec::new(),
                        Resolution::Ambiguous(pods) => pods.iter().map(|p| (p.namespace.to_string(), p.name.to_string(), p.ip().unwrap())).collect(),
                        // Only a watch answers this (the index alone knows no sync state).
                        Resolution::NotSynced => unreachable!("the index never answers NotSynced"),
                    };
                    prop_assert_eq!(actual, expected, "host {} after {:?}", host, ops);
                }
            }
        }
    }
}

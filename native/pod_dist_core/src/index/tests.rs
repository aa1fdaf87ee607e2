use super::*;
use crate::host::parse;
use crate::pod::Phase;

const DOMAIN: &str = "cluster.local";

/// A Running, Ready pod record (also for the watch's tests).
pub(crate) fn record(ns: &str, name: &str, ips: &[&str]) -> PodRecord {
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
        host_network: false,
        created: 0,
        labels: Box::new([]),
        annotations: Box::new([]),
        ports: Box::new([]),
    }
}

/// Resolves `host` for an IPv4 node of namespace `prod`.
fn resolve(index: &PodIndex, host: &str) -> Resolution {
    resolve_in(index, host, Family::Inet)
}

fn resolve_in(index: &PodIndex, host: &str, family: Family) -> Resolution {
    index.resolve(&parse(host, DOMAIN), Some("prod"), family)
}

/// The IP and pod name `host` resolves to for an IPv4 node of `prod` (a pod name of ""
/// for an IP no pod owns).
fn found(index: &PodIndex, host: &str) -> Option<(String, String)> {
    found_in(index, host, Family::Inet)
}

fn found_in(index: &PodIndex, host: &str, family: Family) -> Option<(String, String)> {
    match resolve_in(index, host, family) {
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
        found_in(&index, "fd00--2e.prod.pod.cluster.local", Family::Inet6),
        Some(("fd00::2e".into(), "web-0".into()))
    );
    assert_eq!(
        found_in(&index, "web-0", Family::Inet6),
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
fn a_pod_name_that_spells_an_ip_resolves_by_name_not_as_an_ip() {
    let mut index = PodIndex::new();
    index.upsert(record("prod", "a--a", &["10.0.0.9"]));
    assert_eq!(found(&index, "a--a"), Some(("10.0.0.9".into(), "a--a".into())));
    assert_eq!(found(&index, "a--a.prod"), Some(("10.0.0.9".into(), "a--a".into())));
    assert_eq!(
        resolve(&index, "a--a.prod.pod"),
        Resolution::NotFound,
        "a dashed IP (a::a) that no pod of prod owns"
    );
}

#[test]
fn names_resolve_from_the_home_namespace_and_shared_hostnames_are_ambiguous() {
    let mut index = PodIndex::new();
    index.upsert(record("prod", "api-0", &["10.0.0.1"]));
    index.upsert(record("staging", "api-0", &["10.0.0.2"]));
    let from = |index: &PodIndex, home: Option<&str>, host: &str| match index.resolve(
        &parse(host, DOMAIN),
        home,
        Family::Inet,
    ) {
        Resolution::Found(ip, _) => Some(ip.to_string()),
        _ => None,
    };
    assert_eq!(from(&index, Some("prod"), "api-0").as_deref(), Some("10.0.0.1"));
    assert_eq!(from(&index, Some("staging"), "api-0").as_deref(), Some("10.0.0.2"));
    assert_eq!(from(&index, Some("elsewhere"), "api-0"), None);
    assert_eq!(
        from(&index, None, "api-0"),
        None,
        "no home: only names that carry a namespace"
    );
    assert_eq!(from(&index, None, "api-0.staging").as_deref(), Some("10.0.0.2"));
    assert_eq!(from(&index, None, "api-0.prod.pod").as_deref(), Some("10.0.0.1"));
    for (name, ip) in [("db-a", "10.0.0.3"), ("db-b", "10.0.0.4")] {
        let mut pod = record("prod", name, &[ip]);
        pod.hostname = Some("db".into());
        pod.subdomain = Some("pg".into());
        index.upsert(pod);
    }
    match resolve(&index, "db.pg") {
        Resolution::Ambiguous(pods) => {
            assert_eq!(pods.iter().map(|p| &*p.name).collect::<Vec<_>>(), ["db-a", "db-b"])
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    index.remove("prod", "db-a");
    assert_eq!(found(&index, "db.pg.prod"), Some(("10.0.0.4".into(), "db-b".into())));
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

fn pod(ns: &str, name: &str, ips: &[&str], phase: Phase, terminating: bool, created: i64) -> PodRecord {
    PodRecord {
        phase,
        terminating,
        created,
        ..record(ns, name, ips)
    }
}

/// Every order of `pods`, as lists (`replace`) and as events (`upsert`): the same answers.
fn in_every_order(pods: &[PodRecord], check: impl Fn(&PodIndex, &str)) {
    fn permutations(items: Vec<PodRecord>) -> Vec<Vec<PodRecord>> {
        if items.len() <= 1 {
            return vec![items];
        }
        (0..items.len())
            .flat_map(|i| {
                let mut rest = items.clone();
                let first = rest.remove(i);
                permutations(rest).into_iter().map(move |mut p| {
                    p.insert(0, first.clone());
                    p
                })
            })
            .collect()
    }
    for order in permutations(pods.to_vec()) {
        let names: Vec<_> = order.iter().map(|p| p.name.to_string()).collect();
        let mut listed = PodIndex::new();
        listed.replace(None, order.clone());
        check(&listed, &format!("listed {names:?}"));
        let mut events = PodIndex::new();
        for p in order {
            events.upsert(p);
        }
        check(&events, &format!("events {names:?}"));
    }
}

#[test]
fn a_live_pod_owns_a_reused_ip_over_a_dead_one_whatever_the_list_order() {
    // The case: an evicted z-old keeps its IP, a-new got it; alphabetical lists
    // used to hand the IP to z-old.
    let pods = [
        pod("prod", "a-new", &["10.0.0.7"], Phase::Running, false, 200),
        pod("prod", "z-old", &["10.0.0.7"], Phase::Failed, false, 100),
    ];
    in_every_order(&pods, |index, order| {
        assert_eq!(
            found(index, "a-new"),
            Some(("10.0.0.7".into(), "a-new".into())),
            "{order}"
        );
        assert_eq!(resolve(index, "z-old"), Resolution::NotFound, "{order}");
        assert_eq!(
            found(index, "10.0.0.7"),
            Some(("10.0.0.7".into(), "a-new".into())),
            "{order}"
        );
    });
}

#[test]
fn live_beats_terminating_beats_dead_and_dead_pods_never_answer_by_ip() {
    let pods = [
        pod("prod", "dead", &["10.0.0.7"], Phase::Succeeded, false, 300),
        pod("prod", "going", &["10.0.0.7"], Phase::Running, true, 200),
        pod("prod", "live", &["10.0.0.7"], Phase::Pending, false, 100),
    ];
    in_every_order(&pods, |index, order| {
        assert_eq!(
            found(index, "live"),
            Some(("10.0.0.7".into(), "live".into())),
            "{order}"
        );
        assert_eq!(resolve(index, "going"), Resolution::NotFound, "{order}");
        assert_eq!(resolve(index, "dead"), Resolution::NotFound, "{order}");
    });
    in_every_order(&pods[..2], |index, order| {
        assert_eq!(
            found(index, "going"),
            Some(("10.0.0.7".into(), "going".into())),
            "{order}"
        );
        assert_eq!(
            found(index, "10-0-0-7.prod.pod"),
            Some(("10.0.0.7".into(), "going".into())),
            "{order}"
        );
    });
    // Alone, a dead pod answers to its name, never to its IP.
    in_every_order(&pods[..1], |index, order| {
        assert_eq!(
            found(index, "dead"),
            Some(("10.0.0.7".into(), "dead".into())),
            "{order}"
        );
        assert_eq!(resolve(index, "10-0-0-7.prod.pod"), Resolution::NotFound, "{order}");
        assert_eq!(
            resolve(index, "10.0.0.7"),
            Resolution::Found("10.0.0.7".parse().unwrap(), None),
            "{order}"
        );
    });
}

#[test]
fn among_equally_live_pods_the_newest_owns_the_ip() {
    let pods = [
        pod("prod", "newer", &["10.0.0.7"], Phase::Running, false, 200),
        pod("prod", "older", &["10.0.0.7"], Phase::Running, false, 100),
    ];
    in_every_order(&pods, |index, order| {
        assert_eq!(
            found(index, "newer"),
            Some(("10.0.0.7".into(), "newer".into())),
            "{order}"
        );
        assert_eq!(resolve(index, "older"), Resolution::NotFound, "{order}");
    });
    // The same second: still one answer whatever the order.
    let same = [
        pod("prod", "x", &["10.0.0.7"], Phase::Running, false, 100),
        pod("prod", "y", &["10.0.0.7"], Phase::Running, false, 100),
    ];
    in_every_order(&same, |index, order| {
        assert_eq!(
            found(index, "10.0.0.7"),
            Some(("10.0.0.7".into(), "y".into())),
            "{order}"
        );
    });
}

#[test]
fn host_network_pods_resolve_by_name_and_take_no_ip() {
    let node_ip = "10.1.0.5";
    let mut pods = vec![
        pod("prod", "agent-a", &[node_ip], Phase::Running, false, 200),
        pod("prod", "agent-b", &[node_ip], Phase::Running, false, 100),
    ];
    for p in &mut pods {
        p.host_network = true;
    }
    in_every_order(&pods, |index, order| {
        assert_eq!(
            found(index, "agent-a"),
            Some((node_ip.into(), "agent-a".into())),
            "{order}"
        );
        assert_eq!(
            found(index, "agent-b"),
            Some((node_ip.into(), "agent-b".into())),
            "{order}"
        );
        assert_eq!(
            resolve(index, node_ip),
            Resolution::Found(node_ip.parse().unwrap(), None),
            "{order}"
        );
        assert_eq!(resolve(index, "10-1-0-5.prod.pod"), Resolution::NotFound, "{order}");
    });
    // A pod network pod holding the same IP keeps it.
    pods.push(pod("prod", "web", &[node_ip], Phase::Running, false, 50));
    in_every_order(&pods, |index, order| {
        assert_eq!(found(index, "web"), Some((node_ip.into(), "web".into())), "{order}");
        assert_eq!(found(index, node_ip), Some((node_ip.into(), "web".into())), "{order}");
        assert_eq!(
            found(index, "agent-a"),
            Some((node_ip.into(), "agent-a".into())),
            "{order}"
        );
    });
}

#[test]
fn a_bare_name_resolves_only_in_the_home_namespace() {
    let mut index = PodIndex::new();
    index.upsert(record("staging", "web-0", &["10.0.0.2"]));
    // prod/web-0 is being recreated: DNS from prod would not answer with staging's pod.
    assert_eq!(resolve(&index, "web-0"), Resolution::NotFound);
    assert_eq!(
        found(&index, "web-0.staging"),
        Some(("10.0.0.2".into(), "web-0".into()))
    );
    index.upsert(record("prod", "web-0", &["10.0.0.1"]));
    assert_eq!(found(&index, "web-0"), Some(("10.0.0.1".into(), "web-0".into())));
}

#[test]
fn a_hostname_from_another_namespace_is_no_impostor() {
    // Namespaces [prod, other]; other/evil claims hostname web-0 of subdomain web.
    let mut index = PodIndex::new();
    let mut evil = record("other", "evil", &["10.0.0.66"]);
    evil.hostname = Some("web-0".into());
    evil.subdomain = Some("web".into());
    index.upsert(evil);
    for host in [
        "web-0.web",
        "web-0",
        "web-0.prod",
        "web-0.web.prod",
        "web-0.web.prod.svc.cluster.local",
    ] {
        assert_eq!(resolve(&index, host), Resolution::NotFound, "{host}");
    }
    assert_eq!(
        found(&index, "web-0.web.other.svc.cluster.local"),
        Some(("10.0.0.66".into(), "evil".into())),
        "where the name names its namespace"
    );
    // A name like `web-0.other` names pod web-0 of namespace other, nothing else.
    assert_eq!(resolve(&index, "web-0.other"), Resolution::NotFound);
}

#[test]
fn a_hostname_in_the_home_namespace_comes_first_as_in_the_dns_search_list() {
    // `a.b` from prod: `a.b.prod.svc` (hostname a of subdomain b in prod) is asked
    // before `a.b.svc` (pod a of namespace b).
    let mut index = PodIndex::new();
    let mut h = record("prod", "h", &["10.0.0.1"]);
    h.hostname = Some("web-0".into());
    h.subdomain = Some("staging".into());
    index.upsert(h);
    index.upsert(record("staging", "web-0", &["10.0.0.2"]));
    assert_eq!(found(&index, "web-0.staging"), Some(("10.0.0.1".into(), "h".into())));
    index.remove("prod", "h");
    assert_eq!(
        found(&index, "web-0.staging"),
        Some(("10.0.0.2".into(), "web-0".into()))
    );
}

#[test]
fn a_dashed_ip_name_is_only_the_ip_owner_of_that_namespace() {
    let mut index = PodIndex::new();
    index.upsert(record("prod", "10-0-0-7", &["10.0.0.9"]));
    assert_eq!(resolve(&index, "10-0-0-7.prod.pod"), Resolution::NotFound);
    index.upsert(record("staging", "x", &["10.0.0.7"]));
    assert_eq!(resolve(&index, "10-0-0-7.prod.pod"), Resolution::NotFound);
    assert_eq!(
        found(&index, "10-0-0-7.staging.pod"),
        Some(("10.0.0.7".into(), "x".into()))
    );
}

#[test]
fn each_family_answers_from_its_own_address_owned_on_its_own() {
    let mut index = PodIndex::new();
    index.upsert(record("prod", "dual", &["10.0.0.1", "fd00::1"]));
    index.upsert(record("prod", "v4", &["10.0.0.2"]));
    index.upsert(record("prod", "v6-first", &["fd00::3", "10.0.0.3"]));
    let v4 = |ip: &str, name: &str| Some((ip.to_string(), name.to_string()));
    assert_eq!(found_in(&index, "dual", Family::Inet), v4("10.0.0.1", "dual"));
    assert_eq!(found_in(&index, "dual", Family::Inet6), v4("fd00::1", "dual"));
    assert_eq!(found_in(&index, "v6-first", Family::Inet), v4("10.0.0.3", "v6-first"));
    assert_eq!(found_in(&index, "v6-first", Family::Inet6), v4("fd00::3", "v6-first"));
    assert_eq!(
        resolve_in(&index, "v4", Family::Inet6),
        Resolution::NotFound,
        "no IPv6 address"
    );
    // An address answers only in its own family.
    assert_eq!(resolve_in(&index, "fd00::1", Family::Inet), Resolution::NotFound);
    assert_eq!(found_in(&index, "fd00::1", Family::Inet6), v4("fd00::1", "dual"));
    assert_eq!(
        resolve_in(&index, "10-0-0-1.prod.pod", Family::Inet6),
        Resolution::NotFound
    );
    // A newer pod takes dual's IPv4 address: its IPv6 one is still its own.
    index.upsert(pod("prod", "taker", &["10.0.0.1"], Phase::Running, false, 100));
    assert_eq!(resolve_in(&index, "dual", Family::Inet), Resolution::NotFound);
    assert_eq!(found_in(&index, "dual", Family::Inet6), v4("fd00::1", "dual"));
    assert_eq!(
        found_in(&index, "fd00--1.prod.pod", Family::Inet6),
        v4("fd00::1", "dual")
    );
    // And the other way round.
    index.upsert(pod("prod", "taker6", &["fd00::3"], Phase::Running, false, 100));
    assert_eq!(found_in(&index, "v6-first", Family::Inet), v4("10.0.0.3", "v6-first"));
    assert_eq!(resolve_in(&index, "v6-first", Family::Inet6), Resolution::NotFound);
}

mod model {
    //! The index against a naive model: a list of pods scanned on every lookup, each
    //! rule of the module doc written out as plainly as possible; lists are applied in
    //! shuffled orders, and a fresh index listed in yet another order must agree.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Spec {
        name: usize,
        ips: Vec<usize>,
        hostname: Option<(usize, usize)>,
        phase: usize,
        terminating: bool,
        host_network: bool,
        created: i64,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Upsert {
            ns: usize,
            pod: Spec,
        },
        Remove {
            ns: usize,
            name: usize,
        },
        /// A (re-)list of one namespace, its pods in the order given.
        List {
            ns: usize,
            pods: Vec<Spec>,
        },
    }

    const NAMESPACES: [&str; 2] = ["prod", "staging"];
    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    // Hostnames and subdomains that collide with pod and namespace names, so that the
    // impostor cases come up.
    const HOSTNAMES: [&str; 2] = ["h0", "a"];
    const SUBDOMAINS: [&str; 2] = ["sub", "staging"];
    const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"];
    const PHASES: [Phase; 5] = [
        Phase::Pending,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Unknown,
    ];

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0..4usize,
            proptest::collection::vec(0..4usize, 0..3),
            proptest::option::of((0..2usize, 0..2usize)),
            0..5usize,
            any::<bool>(),
            prop_oneof![5 => Just(false), 1 => Just(true)],
            0..3i64,
        )
            .prop_map(
                |(name, ips, hostname, phase, terminating, host_network, created)| Spec {
                    name,
                    ips,
                    hostname,
                    phase,
                    terminating,
                    host_network,
                    created,
                },
            )
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..2usize, spec()).prop_map(|(ns, pod)| Op::Upsert { ns, pod }),
            1 => (0..2usize, 0..4usize).prop_map(|(ns, name)| Op::Remove { ns, name }),
            1 => (0..2usize, proptest::collection::vec(spec(), 0..5)).prop_map(|(ns, pods)| Op::List { ns, pods }),
        ]
    }

    fn build(ns: usize, spec: &Spec) -> PodRecord {
        let mut ips: Vec<&str> = Vec::new();
        for ip in spec.ips.iter().map(|i| IPS[*i]) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let mut rec = pod(
            NAMESPACES[ns],
            NAMES[spec.name],
            &ips,
            PHASES[spec.phase],
            spec.terminating,
            spec.created,
        );
        rec.hostname = spec.hostname.map(|(h, _)| HOSTNAMES[h].into());
        rec.subdomain = spec.hostname.map(|(_, s)| SUBDOMAINS[s].into());
        rec.host_network = spec.host_network;
        rec
    }

    /// A list names each pod once: the first spec of a name stands.
    fn listed(ns: usize, specs: &[Spec]) -> Vec<PodRecord> {
        let mut pods: Vec<PodRecord> = Vec::new();
        for spec in specs {
            let rec = build(ns, spec);
            if !pods.iter().any(|p| p.name == rec.name) {
                pods.push(rec);
            }
        }
        pods
    }

    #[derive(Default)]
    struct Model {
        pods: Vec<PodRecord>,
    }

    type Answer = Vec<(String, String, IpAddr)>;

    impl Model {
        fn apply(&mut self, op: &Op) {
            match op {
                Op::Upsert { ns, pod } => {
                    let rec = build(*ns, pod);
                    self.pods
                        .retain(|p| !(p.namespace == rec.namespace && p.name == rec.name));
                    self.pods.push(rec);
                }
                Op::Remove { ns, name } => self
                    .pods
                    .retain(|p| !(&*p.namespace == NAMESPACES[*ns] && &*p.name == NAMES[*name])),
                Op::List { ns, pods } => {
                    self.pods.retain(|p| &*p.namespace != NAMESPACES[*ns]);
                    self.pods.extend(listed(*ns, pods));
                }
            }
        }

        /// Who holds `ip` most strongly: live over terminating over dead, then newest,
        /// then the greatest namespace and name; hostNetwork pods hold nothing.
        fn holder(&self, ip: IpAddr) -> Option<&PodRecord> {
            let liveness = |p: &PodRecord| match p.phase {
                Phase::Failed | Phase::Succeeded => 0,
                _ if p.terminating => 1,
                _ => 2,
            };
            self.pods
                .iter()
                .filter(|p| !p.host_network && p.ips.contains(&ip))
                .max_by_key(|p| (liveness(p), p.created, p.namespace.clone(), p.name.clone()))
        }

        fn owner(&self, ip: IpAddr) -> Option<&PodRecord> {
            self.holder(ip)
                .filter(|p| !matches!(p.phase, Phase::Failed | Phase::Succeeded))
        }

        fn usable(&self, p: &PodRecord, family: Family) -> Option<IpAddr> {
            let ip = p.ips.iter().copied().find(|ip| family.holds(ip))?;
            (p.host_network || self.holder(ip).is_some_and(|o| o.uid == p.uid)).then_some(ip)
        }

        fn answer<'a>(&self, pods: impl Iterator<Item = &'a PodRecord>, family: Family) -> Answer {
            let mut answer: Answer = pods
                .filter_map(|p| Some((p.namespace.to_string(), p.name.to_string(), self.usable(p, family)?)))
                .collect();
            answer.sort();
            answer
        }

        fn named<'a>(&'a self, ns: &'a str, name: &'a str) -> impl Iterator<Item = &'a PodRecord> {
            self.pods
                .iter()
                .filter(move |p| &*p.namespace == ns && &*p.name == name)
        }

        fn with_hostname<'a>(&'a self, ns: &'a str, h: &'a str, s: &'a str) -> impl Iterator<Item = &'a PodRecord> {
            self.pods.iter().filter(move |p| {
                &*p.namespace == ns && p.hostname.as_deref() == Some(h) && p.subdomain.as_deref() == Some(s)
            })
        }

        fn resolve(&self, host: &Host, home: Option<&str>, family: Family) -> Answer {
            let home = home.unwrap_or("<none>");
            match host {
                Host::Ip(ip) if family.holds(ip) => {
                    let owner = self.owner(*ip);
                    vec![(
                        owner.map(|p| p.namespace.to_string()).unwrap_or_default(),
                        owner.map(|p| p.name.to_string()).unwrap_or_default(),
                        *ip,
                    )]
                }
                Host::DashedIp { ip, namespace, .. } if family.holds(ip) => self
                    .owner(*ip)
                    .filter(|p| &*p.namespace == namespace)
                    .map(|p| vec![(p.namespace.to_string(), p.name.to_string(), *ip)])
                    .unwrap_or_default(),
                Host::Name(n) => self.answer(self.named(home, n), family),
                Host::Pod { name, namespace } => self.answer(self.named(namespace, name), family),
                Host::NameDotNamespace(a, b) => {
                    let first = self.answer(self.with_hostname(home, a, b), family);
                    if first.is_empty() {
                        self.answer(self.named(b, a), family)
                    } else {
                        first
                    }
                }
                Host::Hostname {
                    hostname,
                    subdomain,
                    namespace,
                } => self.answer(self.with_hostname(namespace, hostname, subdomain), family),
                _ => Vec::new(),
            }
        }
    }

    fn actual(index: &PodIndex, host: &Host, home: Option<&str>, family: Family) -> Answer {
        match index.resolve(host, home, family) {
            Resolution::Found(ip, p) => vec![(
                p.as_ref().map(|p| p.namespace.to_string()).unwrap_or_default(),
                p.as_ref().map(|p| p.name.to_string()).unwrap_or_default(),
                ip,
            )],
            Resolution::NotFound => Vec::new(),
            // Only a watch answers this (the index alone knows no sync state).
            Resolution::NotSynced => unreachable!("the index never answers NotSynced"),
            Resolution::Ambiguous(pods) => pods
                .iter()
                .map(|p| {
                    (
                        p.namespace.to_string(),
                        p.name.to_string(),
                        index.resolvable_ip(p, family).unwrap(),
                    )
                })
                .collect(),
        }
    }

    fn hosts() -> Vec<String> {
        let mut hosts: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
        for n in NAMES.iter().chain(&HOSTNAMES) {
            for ns in NAMESPACES.iter().chain(&SUBDOMAINS) {
                hosts.push(format!("{n}.{ns}"));
                hosts.push(format!("{n}.{ns}.pod"));
            }
        }
        for h in HOSTNAMES {
            for s in SUBDOMAINS {
                for ns in NAMESPACES {
                    hosts.push(format!("{h}.{s}.{ns}.svc.{DOMAIN}"));
                }
            }
        }
        for ip in IPS {
            hosts.push(ip.to_string());
            for ns in NAMESPACES {
                hosts.push(format!("{}.{ns}.pod", ip.replace(['.', ':'], "-")));
            }
        }
        hosts
    }

    fn rotated(mut pods: Vec<PodRecord>, by: usize) -> Vec<PodRecord> {
        if !pods.is_empty() {
            let by = by % pods.len();
            pods.rotate_left(by);
            if by % 2 == 1 {
                pods.reverse();
            }
        }
        pods
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
        #[test]
        fn index_matches_the_naive_model(
            ops in proptest::collection::vec(op(), 1..30),
            shuffles in proptest::collection::vec(any::<usize>(), 30),
        ) {
            let mut index = PodIndex::new();
            let mut model = Model::default();
            let hosts: Vec<Host> = hosts().iter().map(|h| parse(h, DOMAIN)).collect();
            for (step, op) in ops.iter().enumerate() {
                model.apply(op);
                match op {
                    Op::Upsert { ns, pod } => { index.upsert(build(*ns, pod)); }
                    Op::Remove { ns, name } => { index.remove(NAMESPACES[*ns], NAMES[*name]); }
                    Op::List { ns, pods } => {
                        index.replace(Some(NAMESPACES[*ns]), rotated(listed(*ns, pods), shuffles[step]));
                    }
                }
                prop_assert_eq!(index.len(), model.pods.len());
                // The same pods listed afresh, in another order, answer the same.
                let mut fresh = PodIndex::new();
                fresh.replace(None, rotated(model.pods.clone(), shuffles[step] / 7 + 1));
                for host in &hosts {
                    for home in [Some("prod"), Some("staging"), None] {
                        for family in [Family::Inet, Family::Inet6] {
                            let expected = model.resolve(host, home, family);
                            prop_assert_eq!(&actual(&index, host, home, family), &expected, "{:?} from {:?} {:?} after {:?}", host, home, family, &ops[..=step]);
                            prop_assert_eq!(&actual(&fresh, host, home, family), &expected, "listed afresh: {:?} from {:?} {:?}", host, home, family);
                        }
                    }
                }
            }
        }
    }
}

mod built_hosts {
    //! The builder and the parser agree: every host [`crate::host::hosts`] makes for a
    //! pod resolves, through the index, to that pod and its IP.

    use super::*;
    use crate::host::{hosts, Hosts};
    use proptest::prelude::*;

    const LABEL: &str = "[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?";

    #[derive(Debug, Clone)]
    struct Spec {
        namespace: String,
        name: String,
        hostname: Option<String>,
        subdomain: Option<String>,
        v6: bool,
        host_network: bool,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            prop_oneof![
                Just("prod".to_string()),
                Just("svc".to_string()),
                Just("pod".to_string()),
                LABEL
            ],
            LABEL,
            proptest::option::of(LABEL),
            proptest::option::of(LABEL),
            any::<bool>(),
            prop_oneof![4 => Just(false), 1 => Just(true)],
        )
            .prop_map(|(namespace, name, hostname, subdomain, v6, host_network)| Spec {
                namespace,
                name,
                hostname,
                subdomain,
                v6,
                host_network,
            })
    }

    fn domain() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("cluster.local".to_string()),
            Just("pod".to_string()),
            Just("svc".to_string()),
            "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
        ]
    }

    fn all(hosts: &Hosts) -> Vec<(&'static str, &String)> {
        [
            ("pod_name", &hosts.pod_name),
            ("ip", &hosts.ip),
            ("dashed_ip", &hosts.dashed_ip),
            ("hostname_fqdn", &hosts.hostname_fqdn),
        ]
        .into_iter()
        .filter_map(|(form, host)| Some((form, host.as_ref()?)))
        .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn every_built_host_resolves_to_its_pod(
            specs in proptest::collection::vec(spec(), 1..6),
            ips in proptest::collection::vec(any::<[u8; 16]>(), 6),
            domain in domain(),
        ) {
            let mut index = PodIndex::new();
            let mut seen = HashSet::new();
            let mut hostnames = HashSet::new();
            let mut pods = Vec::new();
            for (spec, ip) in specs.iter().zip(&ips) {
                // One pod per name, one per hostname record, one per IP (the first
                // bytes tell the pods apart), as in a cluster.
                let hostname_key = (spec.namespace.clone(), spec.hostname.clone(), spec.subdomain.clone());
                if !seen.insert((spec.namespace.clone(), spec.name.clone()))
                    || (spec.hostname.is_some() && spec.subdomain.is_some() && !hostnames.insert(hostname_key))
                {
                    continue;
                }
                let ip: IpAddr = if spec.v6 {
                    let mut bytes = *ip;
                    bytes[0] = 0xfd;
                    bytes[1] = pods.len() as u8;
                    IpAddr::from(bytes)
                } else {
                    IpAddr::from([10, pods.len() as u8, ip[2], ip[3]])
                };
                let mut pod = record(&spec.namespace, &spec.name, &[]);
                pod.ips = Box::new([ip]);
                pod.hostname = spec.hostname.as_deref().map(Into::into);
                pod.subdomain = spec.subdomain.as_deref().map(Into::into);
                pod.host_network = spec.host_network;
                index.upsert(pod.clone());
                pods.push(pod);
            }
            for pod in &pods {
                let built = hosts(pod, &domain);
                let family = if pod.ips[0].is_ipv6() { Family::Inet6 } else { Family::Inet };
                prop_assert_eq!(built.pod_name.is_some(), true);
                prop_assert_eq!(built.ip.is_some(), !pod.host_network);
                prop_assert_eq!(built.hostname_fqdn.is_some(), pod.hostname.is_some() && pod.subdomain.is_some());
                for (form, host) in all(&built) {
                    let answer = index.resolve(&parse(host, &domain), Some(&pod.namespace), family);
                    match answer {
                        Resolution::Found(ip, Some(found)) => {
                            prop_assert_eq!((ip, &*found.namespace, &*found.name), (pod.ips[0], &*pod.namespace, &*pod.name), "{} {}", form, host);
                        }
                        other => prop_assert!(false, "{} {} of {:?} gave {:?}", form, host, pod, other),
                    }
                }
            }
        }
    }

    #[test]
    fn a_pod_without_a_subdomain_has_no_hostname_fqdn() {
        let mut pod = record("prod", "web-0", &["10.0.0.1"]);
        pod.hostname = Some("web-0".into());
        assert_eq!(hosts(&pod, DOMAIN).hostname_fqdn, None, "no DNS record, no name");
        pod.subdomain = Some("db".into());
        assert_eq!(
            hosts(&pod, DOMAIN).hostname_fqdn.as_deref(),
            Some("web-0.db.prod.svc.cluster.local")
        );
        pod.hostname = None;
        assert_eq!(
            hosts(&pod, DOMAIN).hostname_fqdn,
            None,
            "no spec.hostname, no DNS record"
        );
    }

    #[test]
    fn every_form_is_built() {
        let mut pod = record("prod", "web-0", &["10.42.2.46"]);
        pod.hostname = Some("web-0".into());
        pod.subdomain = Some("db".into());
        assert_eq!(
            hosts(&pod, "cluster.local."),
            Hosts {
                pod_name: Some("web-0".into()),
                ip: Some("10.42.2.46".into()),
                dashed_ip: Some("10-42-2-46.prod.pod.cluster.local".into()),
                hostname_fqdn: Some("web-0.db.prod.svc.cluster.local".into()),
            }
        );
        pod.host_network = true;
        let built = hosts(&pod, DOMAIN);
        assert_eq!((built.ip, built.dashed_ip), (None, None), "a node's IP names no pod");
        let unnamed = record("prod", "a.b", &["10.0.0.1"]);
        assert_eq!(
            hosts(&unnamed, DOMAIN).pod_name,
            None,
            "a name with dots reads as another form"
        );
        assert_eq!(hosts(&record("prod", "p", &[]), DOMAIN).dashed_ip, None);
    }
}

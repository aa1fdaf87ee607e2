//! Services and EndpointSlices: the endpoint-slice controller's decisions (pure), and
//! kube-rs listing and watching the slices it writes, with label selectors and RBAC.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use kube_sim::endpoints::{self, reconcile, MAX_ENDPOINTS_PER_SLICE};
use kube_sim::{fixtures, Config, Simulator};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// An endpoint's address and its `ready`, `serving`, `terminating` conditions.
type Conditions = (String, Option<bool>, Option<bool>, Option<bool>);

fn client(sim: &Simulator, token: String) -> Client {
    let mut config = kube::Config::new(sim.url().parse().unwrap());
    let ca = CertificateDer::from_pem_slice(sim.ca_pem().as_bytes()).unwrap();
    config.root_cert = Some(vec![ca.to_vec()]);
    config.auth_info.token = Some(token.into());
    config.default_retry = false;
    Client::try_from(config).unwrap()
}

/// A Service `name` selecting `app=<name>`, as the store would hold it.
fn service(name: &str, headless: bool, ports: &[(&str, serde_json::Value)]) -> Service {
    let ports: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, (port_name, target))| serde_json::json!({ "name": port_name, "port": 4370 + i, "targetPort": target, "protocol": "TCP" }))
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": { "team": "a" } },
        "spec": {
            "clusterIP": if headless { "None" } else { "10.96.0.10" },
            "selector": { "app": name },
            "ports": ports,
            "ipFamilies": ["IPv4", "IPv6"],
        }
    }))
    .unwrap()
}

/// A pod of `app=<app>` with IPs, readiness and a `dist` container port.
fn pod(app: &str, name: &str, ips: &[&str], ready: bool) -> Arc<Pod> {
    let mut pod = fixtures::with_port(
        fixtures::with_labels(fixtures::pod(name), &[("app", app)]),
        "dist",
        4370,
    );
    pod.metadata.namespace = Some("default".into());
    pod.metadata.uid = Some(format!("uid-{name}"));
    fixtures::running(pod.status.get_or_insert_with(Default::default), ips, ready);
    Arc::new(pod)
}

fn ipv4_pods(app: &str, n: usize) -> Vec<Arc<Pod>> {
    (0..n)
        .map(|i| {
            pod(
                app,
                &format!("{app}-{i:03}"),
                &[&format!("10.0.{}.{}", i / 200, i % 200 + 1)],
                true,
            )
        })
        .collect()
}

/// Gives the planned slices names and stores them, as the API would.
fn stored(plan: endpoints::Plan, mut existing: Vec<Arc<EndpointSlice>>) -> Vec<Arc<EndpointSlice>> {
    existing.retain(|s| !plan.delete.contains(s.metadata.name.as_ref().unwrap()));
    for updated in plan.update {
        let i = existing
            .iter()
            .position(|s| s.metadata.name == updated.metadata.name)
            .unwrap();
        existing[i] = Arc::new(updated);
    }
    let count = existing.len();
    for (i, mut created) in plan.create.into_iter().enumerate() {
        created.metadata.name = Some(format!(
            "{}{}",
            created.metadata.generate_name.clone().unwrap(),
            count + i
        ));
        existing.push(Arc::new(created));
    }
    existing
}

fn endpoint_count(slices: &[Arc<EndpointSlice>]) -> Vec<usize> {
    slices.iter().map(|s| s.endpoints.len()).collect()
}

#[test]
fn slices_hold_at_most_100_endpoints_and_keep_endpoints_in_place() {
    let web = service("web", true, &[("dist", serde_json::json!("dist"))]);
    let mut pods = ipv4_pods("web", 250);
    let slices = stored(reconcile(&web, &pods, &[]), Vec::new());
    // IPv4 pods only: the IPv6 family has no endpoint, so no slice.
    assert_eq!(endpoint_count(&slices), [100, 100, 50]);
    assert!(slices.iter().all(|s| s.address_type == "IPv4"));
    let labels = slices[0].metadata.labels.as_ref().unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(labels["service.kubernetes.io/headless"], "");
    assert_eq!(labels["team"], "a");
    let owner = &slices[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Service", "web", "uid-web")
    );
    let port = &slices[0].ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("dist"), Some(4370)));

    // Steady state: nothing to do.
    assert!(reconcile(&web, &pods, &slices).is_empty());

    // A pod goes: only its slice changes; a new pod fills that slice's room.
    let gone = pods.remove(120);
    pods.push(pod("web", "web-new", &["10.0.9.9"], true));
    let plan = reconcile(&web, &pods, &slices);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
    let after = stored(plan, slices.clone());
    assert_eq!(endpoint_count(&after), [100, 100, 50]);
    let holds = |slice: &EndpointSlice, name: &str| {
        slice
            .endpoints
            .iter()
            .any(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some(name))
    };
    assert!(!after.iter().any(|s| holds(s, gone.metadata.name.as_deref().unwrap())));
    assert!(
        holds(&after[1], "web-new"),
        "filled into the slice being updated anyway"
    );
    assert_eq!(after[0], slices[0], "untouched slices stay as they were");

    // 101 more: one full new slice, the last one into the untouched slice with room.
    pods.extend(ipv4_pods("web", 351).into_iter().skip(250).map(|p| {
        let mut p = (*p).clone();
        p.metadata.name = Some(format!("late-{}", p.metadata.name.unwrap()));
        p.metadata.uid = Some(format!("late-{}", p.metadata.uid.unwrap()));
        Arc::new(p)
    }));
    let grown = stored(reconcile(&web, &pods, &after), after.clone());
    assert_eq!(endpoint_count(&grown), [100, 100, 51, 100]);
    assert!(grown.iter().all(|s| s.endpoints.len() <= MAX_ENDPOINTS_PER_SLICE));

    // Everything goes: the slices are deleted and an empty placeholder stays.
    let placeholder = stored(reconcile(&web, &[], &grown), grown.clone());
    assert_eq!(endpoint_count(&placeholder), [0]);
    assert!(placeholder[0].ports.is_none());
    // The placeholder goes when endpoints come back.
    let back = stored(reconcile(&web, &pods[..1], &placeholder), placeholder.clone());
    assert_eq!(endpoint_count(&back), [1]);
}

#[test]
fn endpoints_carry_conditions_hostname_node_and_per_family_addresses() {
    let mut web = service(
        "web",
        true,
        &[("dist", serde_json::json!("dist")), ("epmd", serde_json::json!(4369))],
    );
    let mut ready = (*pod("web", "web-0", &["10.0.0.1", "fd00::1"], true)).clone();
    let spec = ready.spec.as_mut().unwrap();
    spec.hostname = Some("web-0".into());
    spec.subdomain = Some("web".into());
    spec.node_name = Some("node-a".into());
    let not_ready = pod("web", "web-1", &["10.0.0.2"], false);
    let mut terminating = (*pod("web", "web-2", &["10.0.0.3"], true)).clone();
    terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::UNIX_EPOCH,
    ));
    terminating.spec.as_mut().unwrap().subdomain = Some("other".into());
    terminating.spec.as_mut().unwrap().hostname = Some("web-2".into());
    let mut finished = (*pod("web", "web-3", &["10.0.0.4"], false)).clone();
    finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let other_app = pod("db", "db-0", &["10.0.0.5"], true);
    let pods = vec![
        Arc::new(ready),
        not_ready,
        Arc::new(terminating),
        Arc::new(finished),
        other_app,
    ];

    let slices = stored(reconcile(&web, &pods, &[]), Vec::new());
    let by_family: BTreeMap<&str, &EndpointSlice> = slices.iter().map(|s| (s.address_type.as_str(), &**s)).collect();
    assert_eq!(by_family.len(), 2);
    let v6 = by_family["IPv6"];
    assert_eq!(v6.endpoints.len(), 1);
    assert_eq!(v6.endpoints[0].addresses, ["fd00::1"]);

    let v4 = by_family["IPv4"];
    let conditions: Vec<Conditions> = v4
        .endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.clone().unwrap();
            (e.addresses[0].clone(), c.ready, c.serving, c.terminating)
        })
        .collect();
    assert_eq!(
        conditions,
        [
            ("10.0.0.1".into(), Some(true), Some(true), Some(false)),
            ("10.0.0.2".into(), Some(false), Some(false), Some(false)),
            ("10.0.0.3".into(), Some(false), Some(true), Some(true)),
        ]
    );
    let first = &v4.endpoints[0];
    assert_eq!(first.hostname.as_deref(), Some("web-0"), "subdomain == service name");
    assert_eq!(v4.endpoints[2].hostname, None, "another subdomain");
    assert_eq!(first.node_name.as_deref(), Some("node-a"));
    let target = first.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref(), target.uid.as_deref()),
        (Some("Pod"), Some("web-0"), Some("uid-web-0"))
    );
    // Named targetPort resolved through the container port name; numbers as given.
    let ports: Vec<(Option<&str>, Option<i32>)> =
        v4.ports.iter().flatten().map(|p| (p.name.as_deref(), p.port)).collect();
    assert_eq!(ports, [(Some("dist"), Some(4370)), (Some("epmd"), Some(4369))]);

    // publishNotReadyAddresses: every endpoint is ready.
    web.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let published = stored(reconcile(&web, &pods, &[]), Vec::new());
    let v4 = published.iter().find(|s| s.address_type == "IPv4").unwrap();
    assert!(v4
        .endpoints
        .iter()
        .all(|e| e.conditions.as_ref().unwrap().ready == Some(true)));
}

#[test]
fn a_pod_without_the_named_port_goes_to_a_slice_of_its_own_port_set() {
    let web = service("web", false, &[("dist", serde_json::json!("dist"))]);
    let mut bare = fixtures::with_labels(fixtures::pod("web-b"), &[("app", "web")]);
    bare.metadata.uid = Some("uid-web-b".into());
    bare.metadata.namespace = Some("default".into());
    fixtures::running(bare.status.get_or_insert_with(Default::default), &["10.0.0.9"], true);
    let pods = vec![pod("web", "web-a", &["10.0.0.8"], true), Arc::new(bare)];
    let slices = stored(reconcile(&web, &pods, &[]), Vec::new());
    let mut sets: Vec<(usize, usize)> = slices
        .iter()
        .map(|s| (s.ports.as_ref().map_or(0, Vec::len), s.endpoints.len()))
        .collect();
    sets.sort();
    assert_eq!(sets, [(0, 1), (1, 1)]);
}

#[test]
fn slices_managed_by_others_and_services_without_selector_are_left_alone() {
    let mut manual = service("manual", true, &[]);
    manual.spec.as_mut().unwrap().selector = None;
    assert!(reconcile(&manual, &ipv4_pods("manual", 3), &[]).is_empty());

    let web = service("web", true, &[]);
    let mut foreign: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web-mine", "namespace": "default",
            "labels": { "kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "someone-else" } },
        "addressType": "IPv4", "endpoints": [{ "addresses": ["10.9.9.9"] }]
    }))
    .unwrap();
    foreign.metadata.uid = Some("x".into());
    let plan = reconcile(&web, &ipv4_pods("web", 1), &[Arc::new(foreign)]);
    assert!(plan.delete.is_empty() && plan.update.is_empty());
    assert_eq!(plan.create.len(), 1);
}

async fn eventually<T>(mut attempt: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(value) = attempt().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 5 s")
}

#[tokio::test]
async fn kube_rs_lists_and_watches_the_controllers_slices_by_service_label() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    let admin = client(&sim, sim.admin_token());
    let services: Api<Service> = Api::namespaced(admin.clone(), "default");
    let headless: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "shop-dist" },
        "spec": { "clusterIP": "None", "selector": { "app": "shop" }, "publishNotReadyAddresses": true,
                  "ports": [{ "name": "dist-shop", "port": 4370, "targetPort": "dist-shop" }] }
    }))
    .unwrap();
    let created = services.create(&Default::default(), &headless).await.unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(
        spec.ip_families.as_deref(),
        Some(&["IPv4".to_string(), "IPv6".to_string()][..])
    );
    for i in 0..3 {
        let name = format!("shop-{i}");
        let pod = fixtures::with_port(
            fixtures::with_labels(fixtures::pod(&name), &[("app", "shop")]),
            "dist-shop",
            4370,
        );
        sim.create_pod("default", pod).unwrap();
        sim.set_status("default", &name, |s| {
            fixtures::running(s, &[&format!("10.1.0.{}", i + 1)], i != 2)
        })
        .unwrap();
    }
    sim.create_pod(
        "default",
        fixtures::with_labels(fixtures::pod("other"), &[("app", "other")]),
    )
    .unwrap();

    // The service account's Role grants pods only: slices are forbidden until granted.
    let slices: Api<EndpointSlice> = Api::namespaced(client(&sim, sim.token()), "default");
    let by_service = ListParams::default().labels("kubernetes.io/service-name=shop-dist");
    match slices.list(&by_service).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
    sim.shared()
        .auth
        .grant([("endpointslices".to_string(), "discovery.k8s.io".to_string())].into());

    let listed = eventually(async || {
        let list = slices.list(&by_service).await.unwrap();
        (list.items.iter().map(|s| s.endpoints.len()).sum::<usize>() == 3).then_some(list)
    })
    .await;
    assert_eq!(listed.items.len(), 1, "IPv4 only: no pod has an IPv6 address");
    let slice = &listed.items[0];
    assert_eq!(slice.ports.as_ref().unwrap()[0].name.as_deref(), Some("dist-shop"));
    let ready: Vec<Option<bool>> = slice
        .endpoints
        .iter()
        .map(|e| e.conditions.as_ref().unwrap().serving)
        .collect();
    assert_eq!(ready, [Some(true), Some(true), Some(false)]);
    assert!(slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=nothing"))
        .await
        .unwrap()
        .items
        .is_empty());

    // A watch from the list's version sees the slice change when a pod turns Ready.
    let rv = listed.metadata.resource_version.clone().unwrap();
    let params = WatchParams::default()
        .labels("kubernetes.io/service-name=shop-dist")
        .timeout(30);
    let mut events = slices.watch(&params, &rv).await.unwrap().boxed();
    sim.set_status("default", "shop-2", |s| fixtures::set_ready(s, true))
        .unwrap();
    let serving = loop {
        match events.try_next().await.unwrap().unwrap() {
            WatchEvent::Modified(slice) => {
                break slice
                    .endpoints
                    .iter()
                    .all(|e| e.conditions.as_ref().unwrap().serving == Some(true))
            }
            WatchEvent::Bookmark(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(serving);

    // Deleting the Service takes its slices with it.
    services.delete("shop-dist", &Default::default()).await.unwrap();
    eventually(async || slices.list(&by_service).await.unwrap().items.is_empty().then_some(())).await;
}

//! A watch fed by the EndpointSlices of one Service on the simulator: a service account
//! with no access to pods, a denial and its grant, a Service whose slices are replaced.

use std::time::Duration;

use kube_sim::{fixtures, Config, Simulator};
use pod_dist_core::index::{Family, Resolution};
use pod_dist_core::pod::PodRecord;
use pod_dist_core::watch::{ErrorKind, Health, Watch, WatchEvent};
use pod_dist_core_sim_tests::{eventually, start_watch_managed_by, start_watch_of};

/// A watch of the slices of Service `shop-dist` in `default`, as the service account.
async fn start_watch(sim: &Simulator) -> (Watch, tempfile::TempDir) {
    start_watch_of(sim, Some("shop-dist")).await
}

fn create_service(sim: &Simulator) {
    sim.shared()
        .services
        .create(
            "default",
            fixtures::headless_service("shop-dist", &[("app", "shop")], &[("dist", "dist")]),
        )
        .unwrap();
}

fn create_pod(sim: &Simulator, name: &str, ip: &str, ready: bool) {
    let pod = fixtures::with_port(
        fixtures::with_labels(fixtures::pod(name), &[("app", "shop")]),
        "dist",
        4370,
    );
    sim.create_pod("default", pod).unwrap();
    sim.set_status("default", name, |s| fixtures::running(s, &[ip], ready))
        .unwrap();
}

fn pod(watch: &Watch, name: &str) -> Option<PodRecord> {
    watch.index().get("default", name).map(|p| (**p).clone())
}

fn only_slices(sim: &Simulator) {
    sim.shared()
        .auth
        .grant([("endpointslices".to_string(), "discovery.k8s.io".to_string())].into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_service_account_without_access_to_pods_follows_them_through_the_slices() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    only_slices(&sim);
    create_service(&sim);
    create_pod(&sim, "shop-0", "10.1.0.1", true);
    create_pod(&sim, "shop-1", "10.1.0.2", false);
    // Not selected by the Service: never in the index.
    sim.create_pod("default", fixtures::ready_pod("other", "10.1.0.9"))
        .unwrap();

    let (watch, _token) = start_watch(&sim).await;
    assert!(watch.synced(Duration::from_secs(10)).await);
    eventually("both pods from the slices", || {
        pod(&watch, "shop-0").is_some() && pod(&watch, "shop-1").is_some()
    })
    .await;
    let shop0 = pod(&watch, "shop-0").unwrap();
    assert!(shop0.ready);
    assert_eq!(shop0.ips.first().map(|ip| ip.to_string()).as_deref(), Some("10.1.0.1"));
    assert_eq!(shop0.ports[0].name.as_deref(), Some("dist"));
    assert_eq!(shop0.ports[0].port, 4370);
    assert!(!pod(&watch, "shop-1").unwrap().ready);
    assert!(pod(&watch, "other").is_none());
    assert!(matches!(watch.resolve("shop-0", Family::Inet), Resolution::Found(..)));
    assert!(matches!(
        watch.resolve("10-1-0-1.default.pod", Family::Inet),
        Resolution::Found(..)
    ));
    let health: Health = watch.health();
    assert_eq!(health.service.as_deref(), Some("shop-dist"));
    assert_eq!(health.last_error, None);

    // Turning Ready, a new pod, terminating, deleted: each reaches the index.
    sim.set_status("default", "shop-1", |s| fixtures::set_ready(s, true))
        .unwrap();
    eventually("shop-1 ready", || pod(&watch, "shop-1").is_some_and(|p| p.ready)).await;
    create_pod(&sim, "shop-2", "10.1.0.3", true);
    eventually("shop-2 added", || pod(&watch, "shop-2").is_some_and(|p| p.ready)).await;
    sim.delete_pod("default", "shop-0", Some(30)).unwrap();
    eventually("shop-0 terminating", || {
        pod(&watch, "shop-0").is_some_and(|p| p.terminating)
    })
    .await;
    sim.delete_pod("default", "shop-2", Some(0)).unwrap();
    eventually("shop-2 removed after the grace", || pod(&watch, "shop-2").is_none()).await;
    assert!(pod(&watch, "shop-1").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_denial_of_the_slices_says_what_to_grant_and_the_grant_ends_it() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    // The default Role grants pods alone.
    create_service(&sim);
    create_pod(&sim, "shop-0", "10.1.0.1", true);
    let (watch, _token) = start_watch(&sim).await;
    eventually("a denial", || watch.health().last_error.is_some()).await;
    let health = watch.health();
    assert_eq!(health.last_error_kind, Some(ErrorKind::Forbidden));
    let message = health.last_error.unwrap();
    assert!(
        message.starts_with(r#"endpointslices of service "shop-dist" in namespace "default": 403 Forbidden"#),
        "{message}"
    );
    assert!(
        message.contains("Fix: grant get, list and watch on endpointslices (API group discovery.k8s.io)"),
        "{message}"
    );
    assert!(health.service_account.is_some(), "{message}");
    assert!(!watch.is_synced());

    only_slices(&sim);
    assert!(watch.synced(Duration::from_secs(15)).await);
    eventually("the pod once granted", || pod(&watch, "shop-0").is_some()).await;
    assert_eq!(watch.health().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_slice_replaced_when_the_service_s_ports_change_makes_no_pod_flap() {
    use k8s_openapi::api::core::v1::ServicePort;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use pod_dist_core::index::PodChange;

    let sim = Simulator::start(Config::default()).await.unwrap();
    only_slices(&sim);
    create_service(&sim);
    create_pod(&sim, "shop-0", "10.1.0.1", true);
    create_pod(&sim, "shop-1", "10.1.0.2", true);
    let (watch, _token) = start_watch(&sim).await;
    assert!(watch.synced(Duration::from_secs(10)).await);
    eventually("both pods", || {
        pod(&watch, "shop-0").is_some() && pod(&watch, "shop-1").is_some()
    })
    .await;
    let (events, heard) = std::sync::mpsc::channel();
    watch.subscribe(Box::new(move |event| events.send(event.clone()).is_ok()));

    // A new port set: the controller deletes the slice and writes another, two writes
    // the watch may see in either order.
    sim.shared()
        .services
        .update("default", "shop-dist", |old| {
            let mut new = old.clone();
            new.spec.as_mut().unwrap().ports.as_mut().unwrap().push(ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..Default::default()
            });
            Ok(new)
        })
        .unwrap();
    eventually("the new port on both pods", || {
        ["shop-0", "shop-1"].iter().all(|name| {
            pod(&watch, name).is_some_and(|p| p.ports.iter().any(|port| port.name.as_deref() == Some("http")))
        })
    })
    .await;
    // Past the grace: a pod dropped by the old slice's deletion would be gone by now.
    tokio::time::sleep(pod_dist_core::slices::DEFAULT_GRACE + Duration::from_millis(500)).await;
    let heard: Vec<WatchEvent> = heard.try_iter().collect();
    assert!(
        !heard
            .iter()
            .any(|e| matches!(e, WatchEvent::Pod(PodChange::Deleted(_)))),
        "{heard:?}"
    );
    assert!(pod(&watch, "shop-0").is_some() && pod(&watch, "shop-1").is_some());
}

/// A slice of the Service's name that `manager` (or nobody) wrote: `endpoints` are
/// (namespace of the targetRef, pod name, uid, address).
fn forged_slice(
    name: &str,
    manager: Option<&str>,
    endpoints: &[(&str, &str, &str, &str)],
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let mut labels = serde_json::json!({ "kubernetes.io/service-name": "shop-dist" });
    if let Some(manager) = manager {
        labels["endpointslice.kubernetes.io/managed-by"] = manager.into();
    }
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(ns, pod, uid, ip)| {
            serde_json::json!({
                "addresses": [ip], "conditions": { "ready": true, "serving": true },
                "targetRef": { "kind": "Pod", "namespace": ns, "name": pod, "uid": uid }
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "namespace": "default", "labels": labels },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "name": "dist", "port": 4370, "protocol": "TCP" }]
    }))
    .unwrap()
}

fn address(watch: &Watch, host: &str) -> Option<String> {
    match watch.resolve(host, Family::Inet) {
        Resolution::Found(ip, ..) => Some(ip.to_string()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn slices_the_endpoint_slice_controller_did_not_write_speak_for_nobody() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    only_slices(&sim);
    create_service(&sim);
    create_pod(&sim, "shop-0", "10.1.0.1", true);
    let (watch, _token) = start_watch(&sim).await;
    assert!(watch.synced(Duration::from_secs(10)).await);
    eventually("shop-0", || address(&watch, "shop-0").is_some()).await;
    let (events, heard) = std::sync::mpsc::channel();
    watch.subscribe(Box::new(move |event| events.send(event.clone()).is_ok()));

    // Someone who may write EndpointSlices points shop-0 elsewhere (a new uid: applied
    // last, it would replace the pod) and invents a pod: without the controller's label,
    // and labelled as another manager's.
    let lies = [
        ("default", "shop-0", "forged-uid", "10.9.9.9"),
        ("default", "ghost-0", "ghost-uid", "10.9.9.8"),
    ];
    for (name, manager) in [("aaa-unlabelled", None), ("aaa-other", Some("someone-else"))] {
        sim.shared()
            .slices
            .create("default", forged_slice(name, manager, &lies))
            .unwrap();
    }
    // A real change after them: once it is in, the forged slices were not.
    create_pod(&sim, "shop-1", "10.1.0.2", true);
    eventually("shop-1", || address(&watch, "shop-1").is_some()).await;

    assert_eq!(address(&watch, "shop-0").as_deref(), Some("10.1.0.1"));
    assert_eq!(address(&watch, "ghost-0"), None);
    let heard: Vec<WatchEvent> = heard.try_iter().collect();
    assert!(
        heard.iter().all(|event| !format!("{event:?}").contains("10.9.9.")),
        "{heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn slices_of_another_manager_are_read_when_named_but_never_for_another_namespace() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    only_slices(&sim);
    let (watch, _dir) = start_watch_managed_by(&sim, Some("shop-dist"), Some("mesh-controller.example.com")).await;
    assert!(watch.synced(Duration::from_secs(10)).await);

    // The mesh's slice: one pod of its namespace, and one endpoint naming a pod of
    // another namespace (which no Service's slice speaks for).
    let slice = forged_slice(
        "mesh-a",
        Some("mesh-controller.example.com"),
        &[
            ("default", "shop-0", "u-0", "10.1.0.1"),
            ("prod", "web-0", "u-1", "10.9.9.9"),
        ],
    );
    sim.shared().slices.create("default", slice).unwrap();
    eventually("shop-0 from the mesh's slice", || {
        address(&watch, "shop-0").as_deref() == Some("10.1.0.1")
    })
    .await;
    assert!(watch.index().get("prod", "web-0").is_none());
    assert_eq!(address(&watch, "web-0.prod"), None);
    assert_eq!(watch.pods().len(), 1);
}

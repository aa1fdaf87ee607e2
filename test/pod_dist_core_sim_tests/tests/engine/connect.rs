//! Where the engine finds the API: explicit options, the in-cluster service account,
//! a kubeconfig, in that order; and a server it cannot verify is never trusted.
//!
//! One test, because the in-cluster path reads process-wide environment variables.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube_sim::{fixtures, Config, Simulator};
use pod_dist_core::connect::{self, ConnectOptions, Source};
use pod_dist_core::watch::{Watch, WatchEvent, WatchSpec};

async fn list_names(resolved: connect::Resolved) -> Vec<String> {
    let client = kube::Client::try_from(resolved.config).unwrap();
    let api: kube::Api<Pod> = kube::Api::namespaced(client, "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect()
}

#[tokio::test]
async fn sources_in_order_and_tls_always_verified() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    sim.create_pod("default", fixtures::ready_pod("a", "127.0.0.1"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("sa");
    sim.write_service_account(&sa).unwrap();
    sim.write_kubeconfig(&dir.path().join("kubeconfig"), false).unwrap();

    // Explicit options win, and pick the service account's CA and token when not given.
    let explicit = ConnectOptions {
        api_url: Some(sim.url()),
        service_account_dir: Some(sa.clone()),
        ..Default::default()
    };
    let resolved = connect::config(&explicit).await.unwrap();
    assert_eq!(resolved.source, Source::Explicit);
    assert_eq!(list_names(resolved).await, ["a"]);

    // In a pod: the service host and port from the environment, no DNS.
    std::env::set_var("KUBERNETES_SERVICE_HOST", "127.0.0.1");
    std::env::set_var("KUBERNETES_SERVICE_PORT", sim.addr().port().to_string());
    let in_cluster = ConnectOptions {
        service_account_dir: Some(sa.clone()),
        ..Default::default()
    };
    let resolved = connect::config(&in_cluster).await.unwrap();
    assert_eq!(resolved.source, Source::InCluster);
    assert_eq!(resolved.default_namespace, "default");
    assert_eq!(list_names(resolved).await, ["a"]);
    std::env::remove_var("KUBERNETES_SERVICE_HOST");

    // Elsewhere: a kubeconfig.
    let kubeconfig = ConnectOptions {
        kubeconfig: Some(dir.path().join("kubeconfig")),
        ..Default::default()
    };
    let resolved = connect::config(&kubeconfig).await.unwrap();
    assert_eq!(resolved.source, Source::Kubeconfig);
    assert_eq!(list_names(resolved).await, ["a"]);

    let nothing = ConnectOptions {
        kubeconfig: Some(dir.path().join("missing")),
        ..Default::default()
    };
    let error = connect::config(&nothing).await.err().unwrap();
    assert!(error.contains("no API configuration"), "{error}");

    // A server signed by another CA fails closed, with a reason that says so.
    let other = Simulator::start(Config::default()).await.unwrap();
    std::fs::write(dir.path().join("other-ca.crt"), other.ca_pem()).unwrap();
    let wrong_ca = ConnectOptions {
        api_url: Some(sim.url()),
        ca_file: Some(dir.path().join("other-ca.crt")),
        token: Some(sim.token()),
        ..Default::default()
    };
    let resolved = connect::config(&wrong_ca).await.unwrap();
    let spec = WatchSpec {
        service: None,
        slice_managed_by: None,
        namespaces: vec![Some("default".into())],
        label_selector: None,
        field_selector: None,
        cluster_domain: "cluster.local".into(),
        home: Some("default".into()),
    };
    let config = resolved.config;
    let watch = Watch::start(
        move || connect::client(config.clone()),
        &spec,
        &tokio::runtime::Handle::current(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    watch.subscribe(Box::new(move |event: &WatchEvent| tx.send(event.clone()).is_ok()));
    let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    match event {
        WatchEvent::ApiError(message) => assert!(message.to_lowercase().contains("certificate"), "{message}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert!(watch.index().is_empty());
    assert!(!watch.synced(Duration::from_millis(100)).await);
}

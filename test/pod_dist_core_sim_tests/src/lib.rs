//! pod_dist_core's tests against the Kubernetes API simulator (`kube_sim`): a watch and
//! the API connection through kube-rs, over HTTPS, end to end (`tests/`). They use
//! pod_dist_core's public API only, plus its `test-hooks` feature
//! ([`Watch::panic_at_next_event`]), and live here, in the development workspace, so that
//! the product workspace (`native/`, all of Rust that the package ships) needs nothing of
//! the simulator. This library holds what the tests share.

use std::time::Duration;

use kube_sim::Simulator;
use pod_dist_core::connect::{self, ConnectOptions};
use pod_dist_core::watch::{Watch, WatchSpec};

/// Waits up to 15 s for `check` to hold.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 15 s: {what}");
}

/// A watch of the simulator's `default` namespace as its service account, on the calling
/// test's runtime, fed by the slices of Service `service` when there is one (by pods
/// otherwise); and the folder holding its service-account token (it is read again: keep
/// it).
pub async fn start_watch_of(sim: &Simulator, service: Option<&str>) -> (Watch, tempfile::TempDir) {
    start_watch_managed_by(sim, service, None).await
}

/// As [`start_watch_of`], trusting the slices of `slice_managed_by` when given.
pub async fn start_watch_managed_by(
    sim: &Simulator,
    service: Option<&str>,
    slice_managed_by: Option<&str>,
) -> (Watch, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    sim.write_service_account(dir.path()).unwrap();
    let options = ConnectOptions {
        api_url: Some(sim.url()),
        service_account_dir: Some(dir.path().into()),
        ..Default::default()
    };
    let config = connect::config(&options).await.unwrap().config;
    let spec = WatchSpec {
        namespaces: vec![Some("default".into())],
        home: Some("default".into()),
        label_selector: None,
        field_selector: None,
        service: service.map(Into::into),
        slice_managed_by: slice_managed_by.map(Into::into),
        cluster_domain: "cluster.local".into(),
    };
    // The product's client: its 429 errors carry the Retry-After.
    let make_client = move || connect::client(config.clone());
    (
        Watch::start(make_client, &spec, &tokio::runtime::Handle::current()),
        dir,
    )
}

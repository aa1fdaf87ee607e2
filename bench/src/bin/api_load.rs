//! What PodDist costs the API server, next to a 5 s poller: requests, LISTs and bytes
//! per minute with every pod running a watcher, at rest and under 10 pod changes/s.
//!
//!     cargo run --release -p pod_dist_bench --bin api_load -- --pods 500 --watchers 50 --window 30
//!
//! `--watchers` real clients run (each with its own connection); the figures are scaled
//! to one client per pod (`--pods`), since each client's load is independent of the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube_sim::faults::StatsSnapshot;
use kube_sim::{fixtures, Config, Simulator};
use pod_dist_bench::{kube_config, Args};
use pod_dist_core::connect;
use pod_dist_core::watch::{Watch, WatchSpec};

const NS: &str = "default";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::from_env();
    let (pods, watchers, window) = (
        args.get("pods", 500usize),
        args.get("watchers", 50usize),
        args.get("window", 30u64),
    );
    let watchers = watchers.min(pods);
    let window = Duration::from_secs(window);
    let config = Config {
        bookmark_interval: Duration::from_secs(60),
        ..Config::default()
    };
    let sim = Arc::new(Simulator::start(config).await.expect("simulator starts"));
    for i in 0..pods {
        let ip = format!("127.3.{}.{}", i / 256, i % 256);
        sim.create_pod(NS, fixtures::ready_pod(&format!("pod-{i}"), &ip))
            .unwrap();
    }
    let scale = pods as f64 / watchers as f64;
    println!(
        "api_load: {pods} pods, one client per pod ({watchers} real, scaled x{scale:.0}), {}s windows",
        window.as_secs()
    );
    println!("| client | state | requests/min | LISTs/min | MB/min |");
    println!("|---|---|---|---|---|");

    // PodDist: one watch per pod, as PodDist.Epmd or PodDist.Strategy runs in each.
    let spec = WatchSpec {
        service: None,
        slice_managed_by: None,
        namespaces: vec![Some(NS.into())],
        label_selector: None,
        field_selector: None,
        cluster_domain: "cluster.local".into(),
        home: Some(NS.into()),
    };
    let mut watches = Vec::new();
    for _ in 0..watchers {
        let config = kube_config(&sim);
        watches.push(Watch::start(
            move || connect::client(config.clone()),
            &spec,
            &tokio::runtime::Handle::current(),
        ));
    }
    for watch in &watches {
        assert!(watch.synced(Duration::from_secs(120)).await, "watch synced");
    }
    // Let every watcher move on from its initial list to its watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    measure(&sim, "PodDist watch", window, scale).await;
    drop(watches);

    // The reference: LIST every 5 s, as libcluster's Kubernetes strategy does.
    let stop = Arc::new(AtomicBool::new(false));
    for i in 0..watchers {
        let (api, stop) = (
            kube::Api::<Pod>::namespaced(kube::Client::try_from(kube_config(&sim)).unwrap(), NS),
            stop.clone(),
        );
        let offset = Duration::from_millis((5_000 * i / watchers) as u64);
        tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            while !stop.load(Ordering::Relaxed) {
                let _ = api.list(&ListParams::default()).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    measure(&sim, "5 s poller", window, scale).await;
    stop.store(true, Ordering::Relaxed);
}

/// Counts what the API served over `window`, at rest and then under churn.
async fn measure(sim: &Arc<Simulator>, client: &str, window: Duration, scale: f64) {
    for churn in [false, true] {
        let running = Arc::new(AtomicBool::new(churn));
        let driver = tokio::spawn(drive_churn(sim.clone(), running.clone()));
        sim.shared().stats.reset();
        tokio::time::sleep(window).await;
        let stats = sim.shared().stats.snapshot();
        running.store(false, Ordering::Relaxed);
        let _ = driver.await;
        report(
            client,
            if churn { "10 changes/s" } else { "at rest" },
            &stats,
            window,
            scale,
        );
    }
}

/// Ten pod changes per second, cycling through the pods.
async fn drive_churn(sim: Arc<Simulator>, running: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0usize;
    while running.load(Ordering::Relaxed) {
        tick.tick().await;
        let pods = sim.shared().store.len().max(1);
        // Every change flips a pod's readiness: pass 1 makes them unready, pass 2 ready...
        let ready = (n / pods) % 2 == 1;
        let _ = sim.set_status(NS, &format!("pod-{}", n % pods), |s| fixtures::set_ready(s, ready));
        n += 1;
    }
}

fn report(client: &str, state: &str, stats: &StatsSnapshot, window: Duration, scale: f64) {
    let per_minute = 60.0 / window.as_secs_f64() * scale;
    let requests: u64 = stats.requests.values().sum();
    println!(
        "| {client} | {state} | {:.0} | {:.0} | {:.2} |",
        requests as f64 * per_minute,
        stats.count("LIST") as f64 * per_minute,
        stats.bytes_sent as f64 * per_minute / 1e6
    );
}

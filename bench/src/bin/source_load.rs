//! Pods source against slice source: what one node's watch costs the API server and
//! how many index changes it hears, per minute, at rest, under readiness churn (what
//! clustering needs to hear) and under status churn that leaves readiness alone (a
//! container restart: what it need not hear).
//!
//!     cargo run --release -p pod_dist_bench --bin source_load -- --pods 500 --watchers 20 --window 20
//!
//! `--watchers` real watches run per source; figures are per node (per watch).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ContainerStatus;
use kube_sim::{fixtures, Config, Simulator};
use pod_dist_bench::{kube_config, Args};
use pod_dist_core::connect;
use pod_dist_core::watch::{Watch, WatchEvent, WatchSpec};

const NS: &str = "default";
const SERVICE: &str = "bench-dist";

#[derive(Clone, Copy)]
enum Churn {
    Rest,
    Readiness,
    Restarts,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::from_env();
    let (pods, watchers, window, rate) = (
        args.get("pods", 500usize),
        args.get("watchers", 20usize),
        args.get("window", 20u64),
        args.get("rate", 10u64),
    );
    let window = Duration::from_secs(window);
    let config = Config {
        bookmark_interval: Duration::from_secs(60),
        ..Config::default()
    };
    let sim = Arc::new(Simulator::start(config).await.expect("simulator starts"));
    sim.shared().auth.grant(
        [
            ("pods".to_string(), String::new()),
            ("endpointslices".to_string(), "discovery.k8s.io".to_string()),
        ]
        .into(),
    );
    sim.shared()
        .services
        .create(
            NS,
            fixtures::headless_service(SERVICE, &[("app", "bench")], &[("dist", "dist")]),
        )
        .unwrap();
    for i in 0..pods {
        let ip = format!("127.3.{}.{}", i / 256, i % 256);
        let pod = fixtures::with_port(
            fixtures::with_labels(fixtures::ready_pod(&format!("pod-{i}"), &ip), &[("app", "bench")]),
            "dist",
            4370,
        );
        sim.create_pod(NS, pod).unwrap();
    }
    // Let the slice controller catch up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "source_load: {pods} pods ({} slices), {watchers} watches per source, {rate} changes/s, {}s windows; per node",
        sim.shared().slices.len(),
        window.as_secs()
    );
    println!("| source | state | requests/min | KB/min | index changes/min |");
    println!("|---|---|---|---|---|");
    for service in [None, Some(SERVICE.to_string())] {
        let spec = WatchSpec {
            service: service.clone(),
            slice_managed_by: None,
            namespaces: vec![Some(NS.into())],
            label_selector: None,
            field_selector: None,
            cluster_domain: "cluster.local".into(),
            home: Some(NS.into()),
        };
        let heard = Arc::new(AtomicU64::new(0));
        let mut watches = Vec::new();
        for _ in 0..watchers {
            let config = kube_config(&sim);
            let watch = Watch::start(
                move || connect::client(config.clone()),
                &spec,
                &tokio::runtime::Handle::current(),
            );
            let heard = heard.clone();
            watch.subscribe(Box::new(move |event| {
                if matches!(event, WatchEvent::Pod(_)) {
                    heard.fetch_add(1, Ordering::Relaxed);
                }
                true
            }));
            watches.push(watch);
        }
        for watch in &watches {
            assert!(watch.synced(Duration::from_secs(120)).await, "watch synced");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let source = if service.is_some() { "slices" } else { "pods" };
        for churn in [Churn::Rest, Churn::Readiness, Churn::Restarts] {
            let running = Arc::new(AtomicBool::new(true));
            let driver = tokio::spawn(drive(sim.clone(), churn, rate, running.clone()));
            sim.shared().stats.reset();
            heard.store(0, Ordering::Relaxed);
            tokio::time::sleep(window).await;
            let stats = sim.shared().stats.snapshot();
            let changes = heard.load(Ordering::Relaxed);
            running.store(false, Ordering::Relaxed);
            let _ = driver.await;
            // Let the last changes settle (and the slices' grace pass) before the next window.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let per_node_minute = 60.0 / window.as_secs_f64() / watchers as f64;
            let requests: u64 = stats.requests.values().sum();
            let state = match churn {
                Churn::Rest => "at rest".to_string(),
                Churn::Readiness => format!("readiness churn, {rate}/s"),
                Churn::Restarts => format!("container restarts, {rate}/s"),
            };
            println!(
                "| {source} | {state} | {:.1} | {:.1} | {:.0} |",
                requests as f64 * per_node_minute,
                stats.bytes_sent as f64 * per_node_minute / 1e3,
                changes as f64 * per_node_minute
            );
        }
        drop(watches);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `rate` pod changes per second, cycling through the pods.
async fn drive(sim: Arc<Simulator>, churn: Churn, rate: u64, running: Arc<AtomicBool>) {
    if matches!(churn, Churn::Rest) {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate.max(1)));
    let mut n = 0usize;
    while running.load(Ordering::Relaxed) {
        tick.tick().await;
        let pods = sim.shared().store.len().max(1);
        let name = format!("pod-{}", n % pods);
        let _ = sim.set_status(NS, &name, |s| match churn {
            // Flips it, whatever an earlier window left.
            Churn::Readiness => {
                let ready = s
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                fixtures::set_ready(s, !ready)
            }
            _ => {
                let statuses = s.container_statuses.get_or_insert_with(Vec::new);
                if statuses.is_empty() {
                    statuses.push(ContainerStatus {
                        name: "app".into(),
                        ready: true,
                        ..Default::default()
                    });
                }
                statuses[0].restart_count += 1;
            }
        });
        n += 1;
    }
}

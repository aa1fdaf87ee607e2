//! Boot storm: what N nodes' watches starting within one second cost an API server
//! holding M pods, per source (pods, EndpointSlices), against a server that serves
//! streaming lists (Kubernetes 1.32+) and one that rejects them (older), next to
//! kube-runtime's default watcher (quorum lists in pages of 500: PodDist before) and to
//! a libcluster-style poller (N clients LISTing every 5 s, with and without cached
//! reads); then all N watches losing the API for a while and coming back, with and
//! without `429`s.
//!
//!     cargo run --release -p pod_dist_bench --bin boot_storm -- --pods 5000 --watches 200 --outage 30 --poll-seconds 60
//!
//! `--parts boot,poll,herd` (the default) picks the tables to measure.
//!
//! The simulator runs on its own runtime (threads named `kube-sim`), so its CPU time is
//! told apart from the clients'. Clients and simulator share the machine's cores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};
use kube_sim::faults::{Outage, StatsSnapshot};
use kube_sim::store::{Filter, ListVersion};
use kube_sim::{fixtures, Config, Simulator, StreamingLists};
use pod_dist_bench::{kube_config, percentile, threads_cpu_time, Args};
use pod_dist_core::connect;
use pod_dist_core::watch::{Watch, WatchSpec};

const NS: &str = "default";
const SERVICE: &str = "bench-dist";

/// A simulator on its own runtime, whose threads' names start with `threads`.
struct Sim {
    runtime: tokio::runtime::Runtime,
    sim: Arc<Simulator>,
    threads: String,
}

impl Sim {
    async fn start(streaming_lists: StreamingLists, pods: usize, slices: bool) -> Sim {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        // Each simulator's own names: the threads of one shut down may linger a while.
        let threads = format!("ksim-{}-", STARTED.fetch_add(1, Ordering::Relaxed));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("{threads}w"))
            .enable_all()
            .build()
            .unwrap();
        let config = Config {
            bookmark_interval: Duration::from_secs(60),
            streaming_lists,
            ..Config::default()
        };
        let sim = runtime.spawn(Simulator::start(config)).await.unwrap();
        let sim = Arc::new(sim.expect("simulator starts"));
        sim.shared().auth.grant(
            [
                ("pods".to_string(), String::new()),
                ("endpointslices".to_string(), "discovery.k8s.io".to_string()),
            ]
            .into(),
        );
        if slices {
            sim.shared()
                .services
                .create(
                    NS,
                    fixtures::headless_service(SERVICE, &[("app", "bench")], &[("dist", "dist")]),
                )
                .unwrap();
        }
        for i in 0..pods {
            let ip = format!("127.{}.{}.{}", 3 + i / 65_536, (i / 256) % 256, i % 256);
            let pod = fixtures::with_port(
                fixtures::with_labels(fixtures::ready_pod(&format!("pod-{i}"), &ip), &[("app", "bench")]),
                "dist",
                4370,
            );
            sim.create_pod(NS, pod).unwrap();
        }
        Sim { runtime, sim, threads }
    }

    fn cpu(&self) -> Duration {
        threads_cpu_time(&self.threads)
    }
}

/// Who watches: PodDist, or kube-runtime's default watcher (what PodDist did before).
#[derive(Clone, Copy, PartialEq)]
enum Client {
    Before,
    PodDist,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::from_env();
    let (pods, watches, outage, poll_seconds, parts) = (
        args.get("pods", 5_000usize),
        args.get("watches", 200usize),
        args.get("outage", 30u64),
        args.get("poll-seconds", 60u64),
        args.get("parts", "boot,poll,herd".to_string()),
    );
    let part = |name: &str| parts.split(',').any(|p| p == name);
    println!("boot_storm: {watches} watches starting within 1 s, {pods} pods");
    if part("boot") {
        boots(pods, watches).await;
    }
    if part("poll") {
        polls(pods, watches, poll_seconds).await;
    }
    if part("herd") {
        herds(pods, watches, outage).await;
    }
}

async fn boots(pods: usize, watches: usize) {
    println!();
    println!("| source | client | server | requests | quorum reads | cached lists | streamed lists | objects sent | MB sent | synced p50 / p99 / max | simulator CPU |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for slices in [false, true] {
        let cases = [
            (Client::Before, StreamingLists::Served),
            (Client::PodDist, StreamingLists::Served),
            (Client::PodDist, StreamingLists::Rejected),
        ];
        for (client, server) in cases {
            let sim = Sim::start(server, pods, slices).await;
            if slices {
                // Let the slice controller catch up.
                wait_for("the slices", || endpoints(&sim.sim) == pods).await;
            }
            boot(&sim, client, server, slices, watches).await;
            sim.runtime.shutdown_background();
        }
    }
}

async fn polls(pods: usize, watches: usize, poll_seconds: u64) {
    println!();
    println!("Poller: {watches} clients LISTing the pods every 5 s, {poll_seconds} s");
    println!();
    println!("| poller | requests | quorum reads | objects sent | MB sent | simulator CPU |");
    println!("|---|---|---|---|---|---|");
    for cached in [false, true] {
        let sim = Sim::start(StreamingLists::Served, pods, false).await;
        poll(&sim, cached, watches, Duration::from_secs(poll_seconds)).await;
        sim.runtime.shutdown_background();
    }
}

async fn herds(pods: usize, watches: usize, outage: u64) {
    println!();
    println!("Herd: {watches} PodDist watches (pods, 1.32-like server) lose the API for {outage} s");
    println!();
    println!("| on return | requests while down | 429s | quorum reads | objects sent after | all watching again after | simulator CPU |");
    println!("|---|---|---|---|---|---|---|");
    for throttled in [false, true] {
        let sim = Sim::start(StreamingLists::Served, pods, false).await;
        herd(&sim, watches, Duration::from_secs(outage), throttled).await;
        sim.runtime.shutdown_background();
    }
}

fn spec(slices: bool) -> WatchSpec {
    WatchSpec {
        service: slices.then(|| SERVICE.to_string()),
        namespaces: vec![Some(NS.into())],
        label_selector: None,
        field_selector: None,
        cluster_domain: "cluster.local".into(),
        home: Some(NS.into()),
        slice_managed_by: None,
    }
}

fn endpoints(sim: &Simulator) -> usize {
    let page = sim
        .shared()
        .slices
        .list(&Filter::default(), ListVersion::Latest, None, None)
        .unwrap();
    page.items.iter().map(|slice| slice.endpoints.len()).sum()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(600), "not within 600 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `n` PodDist watches within one second; returns them and their sync times.
async fn start_watches(sim: &Simulator, slices: bool, n: usize) -> (Vec<Watch>, Vec<Duration>) {
    let spec = spec(slices);
    let synced = Arc::new(Mutex::new(Vec::new()));
    let mut watches = Vec::new();
    let mut waiters = Vec::new();
    let start = Instant::now();
    for i in 0..n {
        tokio::time::sleep_until((start + Duration::from_secs(1) * i as u32 / n as u32).into()).await;
        let config = kube_config(sim);
        let began = Instant::now();
        let watch = Watch::start(
            move || connect::client(config.clone()),
            &spec,
            &tokio::runtime::Handle::current(),
        );
        let wait = watch.wait_synced(Duration::from_secs(600));
        let synced = synced.clone();
        waiters.push(tokio::spawn(async move {
            assert!(wait.await, "watch synced");
            synced.lock().unwrap().push(began.elapsed());
        }));
        watches.push(watch);
    }
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let synced = synced.lock().unwrap().clone();
    (watches, synced)
}

/// kube-runtime's default watcher (quorum lists, pages of 500), `n` of them started
/// within one second; their sync times. The watchers run on until `stop`.
async fn start_default_watchers(sim: &Simulator, slices: bool, n: usize, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let synced = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    for i in 0..n {
        tokio::time::sleep_until((start + Duration::from_secs(1) * i as u32 / n as u32).into()).await;
        let client = connect::client(kube_config(sim)).unwrap();
        let (tx, stop, synced) = (tx.clone(), stop.clone(), synced.clone());
        tokio::spawn(async move {
            let began = Instant::now();
            let mut told = false;
            let mut tell = |synced: &Mutex<Vec<Duration>>| {
                if !told {
                    told = true;
                    synced.lock().unwrap().push(began.elapsed());
                    let _ = tx.send(());
                }
            };
            if slices {
                let api = kube::Api::<EndpointSlice>::namespaced(client, NS);
                let config = watcher::Config::default().labels(&format!("kubernetes.io/service-name={SERVICE}"));
                let mut events = watcher::watcher(api, config).boxed();
                while let Some(event) = events.next().await {
                    if matches!(event, Ok(Event::InitDone)) {
                        tell(&synced);
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            } else {
                let api = kube::Api::<Pod>::namespaced(client, NS);
                let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = events.next().await {
                    if matches!(event, Ok(Event::InitDone)) {
                        tell(&synced);
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
        });
    }
    for _ in 0..n {
        rx.recv().await;
    }
    let synced = synced.lock().unwrap().clone();
    synced
}

async fn boot(sim: &Sim, client: Client, server: StreamingLists, slices: bool, n: usize) {
    let stats = &sim.sim.shared().stats;
    stats.reset();
    let cpu = sim.cpu();
    let stop = Arc::new(AtomicBool::new(false));
    let (watches, mut synced) = match client {
        Client::PodDist => start_watches(&sim.sim, slices, n).await,
        Client::Before => (
            Vec::new(),
            start_default_watchers(&sim.sim, slices, n, stop.clone()).await,
        ),
    };
    // Let every watch move on from its list to its watch.
    wait_for("every watch open", || stats.snapshot().open_watches as usize >= n).await;
    let snapshot = stats.snapshot();
    let cpu = sim.cpu().saturating_sub(cpu);
    stop.store(true, Ordering::Relaxed);
    drop(watches);
    let requests: u64 = snapshot.requests.values().sum();
    let times = format!(
        "{:.2} / {:.2} / {:.2} s",
        percentile(&mut synced, 50.0).as_secs_f64(),
        percentile(&mut synced, 99.0).as_secs_f64(),
        percentile(&mut synced, 100.0).as_secs_f64()
    );
    println!(
        "| {} | {} | {} | {requests} | {} | {} | {} | {} | {:.1} | {times} | {:.2} s |",
        if slices { "slices" } else { "pods" },
        match client {
            Client::Before => "kube-runtime default (before)",
            Client::PodDist => "PodDist",
        },
        match server {
            StreamingLists::Served => "1.32+ (streaming lists)",
            _ => "older (rejects them)",
        },
        snapshot.quorum_reads,
        snapshot.cached_reads,
        snapshot.streamed_reads,
        snapshot.objects_sent,
        snapshot.bytes_sent as f64 / 1e6,
        cpu.as_secs_f64()
    );
}

/// `n` clients LISTing every 5 s for `window`, spread over the 5 s.
async fn poll(sim: &Sim, cached: bool, n: usize, window: Duration) {
    let stats = &sim.sim.shared().stats;
    stats.reset();
    let cpu = sim.cpu();
    let stop = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for i in 0..n {
        let api = kube::Api::<Pod>::namespaced(connect::client(kube_config(&sim.sim)).unwrap(), NS);
        let stop = stop.clone();
        let offset = Duration::from_millis((5_000 * i / n) as u64);
        pollers.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let params = if cached {
                // libcluster's kubernetes_use_cached_resources: resourceVersion=0, no limit.
                ListParams::default().match_any()
            } else {
                ListParams::default()
            };
            while !stop.load(Ordering::Relaxed) {
                let _ = api.list(&params).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }));
    }
    tokio::time::sleep(window).await;
    let snapshot = stats.snapshot();
    let cpu = sim.cpu().saturating_sub(cpu);
    stop.store(true, Ordering::Relaxed);
    for poller in pollers {
        poller.abort();
    }
    let requests: u64 = snapshot.requests.values().sum();
    println!(
        "| every 5 s, {} | {requests} | {} | {} | {:.1} | {:.2} s |",
        if cached { "resourceVersion=0 (cached)" } else { "quorum" },
        snapshot.quorum_reads,
        snapshot.objects_sent,
        snapshot.bytes_sent as f64 / 1e6,
        cpu.as_secs_f64()
    );
}

/// `n` synced watches lose the API for `outage`; on its return, `throttled`: every
/// request is answered `429` with `Retry-After: 5` for 10 s, as an overloaded API
/// server's priority and fairness would.
async fn herd(sim: &Sim, n: usize, outage: Duration, throttled: bool) {
    let stats = &sim.sim.shared().stats;
    let (watches, _) = start_watches(&sim.sim, false, n).await;
    wait_for("every watch open", || stats.snapshot().open_watches as usize >= n).await;
    stats.reset();
    let cpu = sim.cpu();
    sim.sim.outage(Outage::Unavailable, outage);
    tokio::time::sleep(outage).await;
    sim.sim.shared().faults.recover();
    let down: StatsSnapshot = stats.snapshot();
    if throttled {
        sim.sim.shared().faults.throttle(5, Duration::from_secs(10));
    }
    let back = Instant::now();
    wait_for("every watch open again", || stats.snapshot().open_watches as usize >= n).await;
    let again = back.elapsed();
    let snapshot = stats.snapshot();
    let cpu = sim.cpu().saturating_sub(cpu);
    drop(watches);
    println!(
        "| {} | {} | {} | {} | {} | {:.1} s | {:.2} s |",
        if throttled {
            "429, Retry-After: 5, for 10 s"
        } else {
            "served at once"
        },
        down.count("UNAVAILABLE"),
        snapshot.count("THROTTLED"),
        snapshot.quorum_reads,
        snapshot.objects_sent - down.objects_sent,
        again.as_secs_f64(),
        cpu.as_secs_f64()
    );
}

//! Can the simulator carry the benchmarks? 10,000 pods, 100 concurrent watches and
//! 1,000 pod changes per second, measured as the lag from each change to its arrival
//! on every watch, and the CPU the whole process used.
//!
//!     cargo run --release -p pod_dist_bench --bin sim_scale -- --pods 10000 --watches 100 --rate 1000 --seconds 10

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt};
use kube_sim::{fixtures, Config, Simulator};
use pod_dist_bench::{cpu_time, fmt, percentile, Args};
use rustls::pki_types::pem::PemObject;

const NS: &str = "default";
const STAMP: &str = "\"bench/sent\":\"";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::from_env();
    let (pods, watches, rate, seconds) = (
        args.get("pods", 10_000usize),
        args.get("watches", 100usize),
        args.get("rate", 1_000usize),
        args.get("seconds", 10u64),
    );
    let changes = rate * seconds as usize;
    let config = Config {
        history_limit: changes + pods + 10,
        bookmark_interval: Duration::from_secs(60),
        ..Config::default()
    };
    let sim = Simulator::start(config).await.expect("simulator starts");
    for i in 0..pods {
        sim.create_pod(
            NS,
            fixtures::ready_pod(&format!("pod-{i}"), &format!("127.2.{}.{}", i / 256, i % 256)),
        )
        .unwrap();
    }
    let client = client(&sim);

    let listed = Instant::now();
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), NS);
    let mut continue_token: Option<String> = None;
    let mut count = 0;
    loop {
        let mut params = kube::api::ListParams::default().limit(500);
        if let Some(token) = &continue_token {
            params = params.continue_token(token);
        }
        let page = api.list(&params).await.unwrap();
        count += page.items.len();
        continue_token = page.metadata.continue_.filter(|t| !t.is_empty());
        if continue_token.is_none() {
            break;
        }
    }
    let list_time = listed.elapsed();
    assert_eq!(count, pods);

    let epoch = Instant::now();
    let rv = sim.shared().store.resource_version();
    let lags = Arc::new(Mutex::new(Vec::with_capacity(changes * watches)));
    let mut readers = Vec::new();
    for _ in 0..watches {
        let (client, lags) = (client.clone(), lags.clone());
        let request = http::Request::get(format!(
            "/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=3600"
        ))
        .body(Vec::new())
        .unwrap();
        let stream = client.request_stream(request).await.expect("watch opens");
        readers.push(tokio::spawn(async move {
            // Reads raw lines and finds the stamp: the reader must stay cheaper than the server.
            let mut lines = stream.lines();
            let mut seen = 0;
            let mut local = Vec::with_capacity(changes);
            while seen < changes {
                let Some(Ok(line)) = lines.next().await else { break };
                if let Some(at) = line.find(STAMP) {
                    let digits = &line[at + STAMP.len()..];
                    let end = digits.find('"').unwrap_or(0);
                    let sent = Duration::from_nanos(digits[..end].parse().unwrap_or(0));
                    local.push(epoch.elapsed().saturating_sub(sent));
                    seen += 1;
                }
            }
            lags.lock().unwrap().extend(local);
            seen
        }));
    }
    while sim.shared().stats.snapshot().open_watches < watches as i64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = rate / 100;
    let mut sent = 0;
    while sent < changes {
        tick.tick().await;
        for _ in 0..per_tick.min(changes - sent) {
            let name = format!("pod-{}", sent % pods);
            let stamp = epoch.elapsed().as_nanos().to_string();
            sim.shared()
                .store
                .update(NS, &name, |p| {
                    let mut p = p.clone();
                    p.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert("bench/sent".into(), stamp);
                    Ok(p)
                })
                .unwrap();
            sent += 1;
        }
    }
    let drive_time = started.elapsed();
    let mut delivered = 0;
    for reader in readers {
        delivered += tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .map(|r| r.unwrap_or(0))
            .unwrap_or(0);
    }
    let cpu = cpu_time() - cpu_before;
    let wall = started.elapsed();
    let mut lags = lags.lock().unwrap().clone();
    let stats = sim.shared().stats.snapshot();
    println!("sim_scale: {pods} pods, {watches} watches, {changes} changes at {rate}/s");
    println!("  initial paged list of {pods} pods (limit 500): {}", fmt(list_time));
    println!(
        "  changes driven in {:.2} s ({:.0}/s)",
        drive_time.as_secs_f64(),
        changes as f64 / drive_time.as_secs_f64()
    );
    println!(
        "  events delivered: {delivered} of {} ({:.1}%)",
        changes * watches,
        100.0 * delivered as f64 / (changes * watches) as f64
    );
    println!(
        "  change -> watch lag: p50 {} p99 {} max {}",
        fmt(percentile(&mut lags, 50.0)),
        fmt(percentile(&mut lags, 99.0)),
        fmt(percentile(&mut lags, 100.0))
    );
    println!(
        "  CPU (server + readers): {:.0}% of one core; bytes sent {} MB",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        stats.bytes_sent / 1_000_000
    );
}

fn client(sim: &Simulator) -> kube::Client {
    let mut config = kube::Config::new(sim.url().parse().unwrap());
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(sim.ca_pem().as_bytes()).unwrap();
    config.root_cert = Some(vec![ca.to_vec()]);
    config.auth_info.token = Some(sim.admin_token().into());
    kube::Client::try_from(config).unwrap()
}

//! A watch of the simulator through kube-rs: how often it asks an API that is down or
//! keeps rejecting its token, and its restart after a panic.

use std::time::Duration;

use kube_sim::{fixtures, Config, Simulator};
use pod_dist_core::index::{Family, Resolution};
use pod_dist_core::watch::{ErrorKind, Watch, WatchEvent};
use pod_dist_core_sim_tests::{eventually, start_watch_of};

fn resolves(watch: &Watch, name: &str) -> bool {
    matches!(watch.resolve(name, Family::Inet), Resolution::Found(..))
}

/// A watch of the pods of the simulator's `default` namespace (see `start_watch_of`).
async fn start_watch(sim: &Simulator) -> (Watch, tempfile::TempDir) {
    start_watch_of(sim, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_watch_that_must_list_while_the_api_is_down_asks_gently_and_is_back_at_once() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    sim.create_pod("default", fixtures::ready_pod("a", "198.51.100.1"))
        .unwrap();
    sim.outage(kube_sim::faults::Outage::Unavailable, Duration::from_secs(600));
    let (watch, _token) = start_watch(&sim).await;
    // Each try of the list begins with Event::Init: were that taken for an answer, the
    // watch would retry at the first delay (0.5 to 1 s) for as long as the API is down.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let asked = sim.shared().stats.snapshot().count("UNAVAILABLE");
    // At the shortest delays: at 0, 0.5, 2, 6.45 and 10.9 s.
    assert!((3..=5).contains(&asked), "{asked} requests in 12 s");
    assert!(!watch.is_synced());

    sim.shared().faults.recover();
    assert!(watch.synced(Duration::from_secs(5)).await);
    assert!(resolves(&watch, "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_token_that_stays_rejected_is_asked_about_no_more_often_than_retries() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    let (watch, token) = start_watch(&sim).await;
    assert!(watch.synced(Duration::from_secs(10)).await);
    // The server wants a new token, and the file holds none it accepts.
    sim.rotate_token();
    std::fs::write(token.path().join("token"), "not-a-token").unwrap();
    sim.shared()
        .faults
        .signal(kube_sim::faults::WatchSignal::Cut { expired: false });
    // Each 401 makes a new client (reading the token file again) and a new list.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let asked = sim.shared().stats.snapshot().count("UNAUTHORIZED");
    // At the shortest delays: at 0, 0.5, 2, 6.45 and 10.9 s.
    assert!((3..=5).contains(&asked), "{asked} requests in 12 s");
    assert_eq!(watch.health().last_error_kind, Some(ErrorKind::Unauthorized));

    // A good token again is read at the next try.
    sim.write_service_account(token.path()).unwrap();
    sim.create_pod("default", fixtures::ready_pod("after", "198.51.100.3"))
        .unwrap();
    eventually("the pod added after the fix", || resolves(&watch, "after")).await;
    // No error is current once it works again: neither the message nor its kind.
    let health = watch.health();
    assert_eq!((health.last_error, health.last_error_kind), (None, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_watch_that_panics_is_restarted_and_follows_the_server_again() {
    let sim = Simulator::start(Config::default()).await.unwrap();
    sim.create_pod("default", fixtures::ready_pod("before", "198.51.100.1"))
        .unwrap();
    let (watch, _token) = start_watch(&sim).await;
    assert!(watch.synced(Duration::from_secs(10)).await);
    let (events, heard) = std::sync::mpsc::channel();
    watch.subscribe(Box::new(move |event| events.send(event.clone()).is_ok()));

    // The event of this pod's creation meets the panic.
    watch.panic_at_next_event();
    sim.create_pod("default", fixtures::ready_pod("at-the-panic", "198.51.100.2"))
        .unwrap();
    eventually("a restart", || watch.health().restarts == 1).await;
    let health = watch.health();
    let reason = health.last_restart.unwrap();
    assert!(
        reason.starts_with("the watch panicked: injected by a test; restarting it in "),
        "{reason}"
    );

    // The restarted watch re-lists (the pod whose event was lost comes back), is synced
    // again, and follows what changes from then on.
    assert!(watch.synced(Duration::from_secs(10)).await);
    sim.create_pod("default", fixtures::ready_pod("after", "198.51.100.3"))
        .unwrap();
    eventually("the pods added at and after the panic", || {
        resolves(&watch, "at-the-panic") && resolves(&watch, "after")
    })
    .await;
    assert!(resolves(&watch, "before"));
    let health = watch.health();
    assert!(health.synced);
    assert_eq!(health.last_error, None);
    assert_eq!(health.restarts, 1);

    // Subscribers heard of it, and of the index being synced again afterwards.
    let heard: Vec<WatchEvent> = heard.try_iter().collect();
    let error = heard
        .iter()
        .position(|e| matches!(e, WatchEvent::ApiError(m) if m.starts_with("the watch panicked")));
    let synced = heard.iter().rposition(|e| *e == WatchEvent::Synced);
    assert!(error.is_some() && error < synced, "{heard:?}");
}

//! How a watch reads the API server's state (see `pod_dist_core::watch::lists`), told by
//! the simulator's counts: no quorum read for an initial sync, whether the server serves
//! streaming lists (as 1.32+ does), rejects them (as older servers do) or never ends them;
//! one quorum read per `410`; a `429`'s `Retry-After` waited out.

use std::time::Duration;

use kube_sim::faults::{StatsSnapshot, WatchSignal};
use kube_sim::{fixtures, Config, Simulator, StreamingLists};
use pod_dist_core::index::{Family, Resolution};
use pod_dist_core::watch::{ErrorKind, Watch};
use pod_dist_core_sim_tests::{eventually, start_watch_of};

async fn simulator(streaming_lists: StreamingLists) -> Simulator {
    let sim = Simulator::start(Config {
        streaming_lists,
        ..Config::default()
    })
    .await
    .unwrap();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        sim.create_pod("default", fixtures::ready_pod(name, &format!("198.51.100.{}", i + 1)))
            .unwrap();
    }
    sim
}

fn resolves_all(watch: &Watch) -> bool {
    ["a", "b", "c"]
        .iter()
        .all(|name| matches!(watch.resolve(name, Family::Inet), Resolution::Found(..)))
}

fn stats(sim: &Simulator) -> StatsSnapshot {
    sim.shared().stats.snapshot()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_server_with_streaming_lists_is_synced_by_one_watch_and_no_list() {
    let sim = simulator(StreamingLists::Served).await;
    let (watch, _token) = start_watch_of(&sim, None).await;
    assert!(watch.synced(Duration::from_secs(10)).await);
    assert!(resolves_all(&watch));
    let stats = stats(&sim);
    assert_eq!(
        (stats.quorum_reads, stats.cached_reads, stats.streamed_reads),
        (0, 0, 1)
    );
    assert_eq!((stats.count("LIST"), stats.count("WATCH")), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_server_that_rejects_streaming_lists_is_listed_from_its_cache_and_asked_once() {
    let sim = simulator(StreamingLists::Rejected).await;
    let (watch, token) = start_watch_of(&sim, None).await;
    assert!(watch.synced(Duration::from_secs(10)).await);
    assert!(resolves_all(&watch));
    eventually("the watch after the list", || stats(&sim).open_watches == 1).await;
    let first = stats(&sim);
    assert_eq!((first.quorum_reads, first.cached_reads), (0, 1));
    // The rejected streaming list, then the watch from the list's version.
    assert_eq!((first.count("LIST"), first.count("WATCH")), (1, 2));
    // Not a failure of the API.
    assert_eq!(watch.health().errors, 0);

    // The answer is kept: a new client (after a rotated token) lists from the cache at
    // once, without asking for a streaming list again.
    // (The rotation rewrites the token file.)
    let _ = token;
    sim.rotate_token();
    sim.shared().faults.signal(WatchSignal::Cut { expired: false });
    eventually("a list by the new client", || stats(&sim).cached_reads == 2).await;
    eventually("its watch", || stats(&sim).open_watches == 1).await;
    let second = stats(&sim);
    assert_eq!(second.quorum_reads, 0);
    // Its watch alone: no streaming list asked for (and rejected) first.
    assert_eq!(second.count("WATCH") - first.count("WATCH"), 1, "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_streaming_list_that_never_ends_is_given_up_for_a_cached_list() {
    let sim = simulator(StreamingLists::Unannounced).await;
    let (watch, _token) = start_watch_of(&sim, None).await;
    assert!(!watch.synced(Duration::from_secs(5)).await);
    // After 10 s without the end bookmark.
    assert!(watch.synced(Duration::from_secs(10)).await);
    assert!(resolves_all(&watch));
    let stats = stats(&sim);
    assert_eq!(
        (stats.quorum_reads, stats.cached_reads, stats.streamed_reads),
        (0, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_410_costs_one_quorum_read_and_a_410_of_a_streaming_watch_none() {
    for (mode, quorum, cached, streamed) in [(StreamingLists::Rejected, 1, 1, 0), (StreamingLists::Served, 0, 0, 2)] {
        let sim = simulator(mode).await;
        let (watch, _token) = start_watch_of(&sim, None).await;
        assert!(watch.synced(Duration::from_secs(10)).await);
        eventually("the watch after the list", || stats(&sim).open_watches == 1).await;
        let watches = stats(&sim).count("WATCH");
        sim.shared().faults.signal(WatchSignal::Cut { expired: true });
        eventually("a watch after the re-list", || {
            let stats = stats(&sim);
            stats.count("WATCH") == watches + 1 && stats.open_watches == 1
        })
        .await;
        sim.create_pod("default", fixtures::ready_pod("after", "198.51.100.9"))
            .unwrap();
        eventually("the pod created after the 410", || {
            matches!(watch.resolve("after", Family::Inet), Resolution::Found(..))
        })
        .await;
        let stats = stats(&sim);
        assert_eq!(
            (stats.quorum_reads, stats.cached_reads, stats.streamed_reads),
            (quorum, cached, streamed),
            "{mode:?}: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn every_watch_waits_out_a_429s_retry_after() {
    // Three watches, each of its own server, throttled from before they start: each
    // server's log is that watch's requests alone.
    let mut sims = Vec::new();
    let mut watches = Vec::new();
    for mode in [StreamingLists::Served, StreamingLists::Rejected, StreamingLists::Served] {
        let sim = simulator(mode).await;
        sim.shared().faults.throttle(10, Duration::from_secs(10));
        let (watch, token) = start_watch_of(&sim, None).await;
        sims.push(sim);
        watches.push((watch, token));
    }
    for (watch, _) in &watches {
        eventually("the 429 seen", || {
            watch.health().last_error_kind == Some(ErrorKind::Throttled)
        })
        .await;
        let message = watch.current_error().unwrap();
        assert!(message.contains("waiting 10 s"), "{message}");
    }
    for ((watch, _), sim) in watches.iter().zip(&sims) {
        let synced = watch.synced(Duration::from_secs(15)).await;
        assert!(synced, "{:?} {:?}", watch.health(), sim.shared().stats.snapshot());
        let log = sim.shared().stats.log();
        let throttled = log.iter().position(|r| r.what.starts_with("THROTTLED")).unwrap();
        let next = &log[throttled + 1];
        let waited = next.at - log[throttled].at;
        assert!(
            waited >= Duration::from_secs(10),
            "{} came {waited:?} after the 429",
            next.what
        );
        assert_eq!(log.iter().filter(|r| r.what.starts_with("THROTTLED")).count(), 1);
        assert_eq!(watch.health().last_error, None);
    }
}

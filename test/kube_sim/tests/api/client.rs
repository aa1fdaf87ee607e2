//! kube-rs, the client PodDist uses, against the simulator: paging, resourceVersion
//! semantics, 410, bookmarks, streaming lists, auth and injected faults.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use kube_sim::faults::{Outage, WatchSignal};
use kube_sim::{fixtures, Config, Simulator};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

fn client(sim: &Simulator, token: String) -> Client {
    let mut config = kube::Config::new(sim.url().parse().unwrap());
    let ca = CertificateDer::from_pem_slice(sim.ca_pem().as_bytes()).unwrap();
    config.root_cert = Some(vec![ca.to_vec()]);
    config.auth_info.token = Some(token.into());
    config.read_timeout = Some(Duration::from_secs(30));
    // The tests want to see each 503 and 504 themselves, not kube's retries.
    config.default_retry = false;
    Client::try_from(config).unwrap()
}

async fn sim_with(config: Config, pods: usize) -> (Simulator, Api<Pod>) {
    let sim = Simulator::start(config).await.unwrap();
    for i in 0..pods {
        sim.create_pod(
            "default",
            fixtures::ready_pod(&format!("p{i:02}"), &format!("127.0.0.{}", i + 1)),
        )
        .unwrap();
    }
    let api = Api::namespaced(client(&sim, sim.token()), "default");
    (sim, api)
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
}

#[tokio::test]
async fn paging_walks_a_consistent_snapshot() {
    let (sim, api) = sim_with(Config::default(), 5).await;
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&first.items), ["p00", "p01"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    sim.delete_pod("default", "p04", Some(0)).unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let rest = api
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        names(&rest.items),
        ["p02", "p03", "p04"],
        "the page still shows the snapshot"
    );
    assert_eq!(rest.metadata.resource_version, first.metadata.resource_version);
    let now = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(now.items.len(), 4);
}

#[tokio::test]
async fn list_resource_version_semantics() {
    let (sim, api) = sim_with(Config::default(), 2).await;
    let rv = sim.shared().store.resource_version();
    sim.create_pod("default", fixtures::pod("later")).unwrap();
    let exact = api
        .list(
            &ListParams::default()
                .at(&rv.to_string())
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    assert_eq!(names(&exact.items), ["p00", "p01"], "Exact shows the past");
    let newer = api
        .list(
            &ListParams::default()
                .at(&rv.to_string())
                .matching(kube::api::VersionMatch::NotOlderThan),
        )
        .await
        .unwrap();
    assert_eq!(newer.items.len(), 3);
    let future = api
        .list(
            &ListParams::default()
                .at("999999")
                .matching(kube::api::VersionMatch::NotOlderThan),
        )
        .await;
    assert!(matches!(future, Err(kube::Error::Api(s)) if s.code == 504));
    sim.shared().store.compact();
    let gone = api
        .list(
            &ListParams::default()
                .at(&rv.to_string())
                .matching(kube::api::VersionMatch::Exact),
        )
        .await;
    assert!(matches!(gone, Err(kube::Error::Api(s)) if s.code == 410));
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410() {
    let (sim, api) = sim_with(Config::default(), 1).await;
    let old = sim.shared().store.resource_version().to_string();
    sim.create_pod("default", fixtures::pod("newer")).unwrap();
    sim.shared().store.compact();
    let mut stream = api.watch(&WatchParams::default(), &old).await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(
        stream.try_next().await.unwrap().is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn watch_replays_history_then_streams_with_bookmarks() {
    let config = Config {
        bookmark_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let (sim, api) = sim_with(config, 1).await;
    let from = sim.shared().store.resource_version().to_string();
    sim.set_status("default", "p00", |s| fixtures::set_ready(s, false))
        .unwrap();
    let mut stream = api.watch(&WatchParams::default(), &from).await.unwrap().boxed();
    assert!(matches!(
        stream.try_next().await.unwrap(),
        Some(WatchEvent::Modified(_))
    ));
    sim.delete_pod("default", "p00", Some(0)).unwrap();
    assert!(matches!(stream.try_next().await.unwrap(), Some(WatchEvent::Deleted(_))));
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => assert_eq!(
            b.metadata.resource_version,
            sim.shared().store.resource_version().to_string()
        ),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn filtered_watch_turns_selector_changes_into_added_and_deleted() {
    let (sim, api) = sim_with(Config::default(), 1).await;
    let from = sim.shared().store.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().fields("status.phase=Running"), &from)
        .await
        .unwrap()
        .boxed();
    sim.create_pod("default", fixtures::pod("starting")).unwrap();
    sim.set_status("default", "starting", |s| fixtures::running(s, &["127.0.0.9"], true))
        .unwrap();
    sim.set_status("default", "p00", |s| s.phase = Some("Failed".into()))
        .unwrap();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some("starting")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Deleted(p)) => assert_eq!(p.metadata.name.as_deref(), Some("p00")),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

#[tokio::test]
async fn runtime_watcher_lists_then_watches_in_both_modes() {
    let (sim, api) = sim_with(Config::default(), 3).await;
    for config in [
        watcher::Config::default().page_size(2),
        watcher::Config::default().streaming_lists(),
    ] {
        let mut events = watcher::watcher(api.clone(), config).boxed();
        let mut initial = Vec::new();
        loop {
            match events.try_next().await.unwrap().unwrap() {
                watcher::Event::Init => {}
                watcher::Event::InitApply(p) => initial.push(p.metadata.name.unwrap()),
                watcher::Event::InitDone => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(initial, ["p00", "p01", "p02"]);
        sim.create_pod("default", fixtures::pod("fresh")).unwrap();
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::Apply(p) => assert_eq!(p.metadata.name.as_deref(), Some("fresh")),
            other => panic!("unexpected {other:?}"),
        }
        sim.delete_pod("default", "fresh", Some(0)).unwrap();
    }
    let requests = sim.shared().stats.snapshot();
    assert_eq!(
        requests.count("LIST"),
        2,
        "two pages for the paged list, none for the streaming one: {requests:?}"
    );
}

#[tokio::test]
async fn tokens_and_rbac() {
    let (sim, api) = sim_with(Config::default(), 1).await;
    let bad: Api<Pod> = Api::namespaced(client(&sim, "wrong".into()), "default");
    assert!(matches!(bad.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 401));
    sim.shared()
        .auth
        .restrict_service_account(Some(["other".to_string()].into()));
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(s.message.contains("cannot list resource \"pods\""), "{}", s.message);
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let all: Api<Pod> = Api::all(client(&sim, sim.token()));
    assert!(
        matches!(all.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("cluster scope"))
    );
    sim.shared().auth.restrict_service_account(None);
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);
    assert!(matches!(api.delete("p00", &Default::default()).await, Err(kube::Error::Api(s)) if s.code == 403));
    let old = sim.token();
    sim.rotate_token();
    let stale: Api<Pod> = Api::namespaced(client(&sim, old), "default");
    assert!(matches!(stale.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 401));
}

#[tokio::test]
async fn outages_latency_and_broken_streams() {
    let (sim, api) = sim_with(Config::default(), 1).await;
    sim.outage(Outage::Unavailable, Duration::from_millis(300));
    assert!(matches!(api.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 503));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(api.list(&ListParams::default()).await.is_ok());
    // Refused requests are counted too: benchmarks read how often clients ask meanwhile.
    assert_eq!(sim.shared().stats.snapshot().count("UNAVAILABLE"), 1);

    let fresh: Api<Pod> = Api::namespaced(client(&sim, sim.token()), "default");
    sim.outage(Outage::Offline, Duration::from_millis(300));
    assert!(matches!(fresh.list(&ListParams::default()).await, Err(e) if !matches!(e, kube::Error::Api(_))));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(sim.shared().stats.snapshot().count("DROPPED") >= 1);

    sim.shared().faults.set_latency(Duration::from_millis(200));
    let started = std::time::Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    sim.shared().faults.set_latency(Duration::ZERO);

    let from = sim.shared().store.resource_version().to_string();
    let mut stream = api.watch(&WatchParams::default(), &from).await.unwrap().boxed();
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.shared().faults.signal(WatchSignal::Malformed);
    let malformed = stream.next().await;
    assert!(
        matches!(malformed, Some(Err(_))),
        "a malformed line is a decode error: {malformed:?}"
    );
    sim.shared().faults.signal(WatchSignal::Cut { expired: false });
    assert!(stream.next().await.is_none(), "a cut watch ends");
    assert_eq!(sim.shared().stats.snapshot().open_watches, 0);
}

#[tokio::test]
async fn reads_are_counted_as_the_real_server_serves_them() {
    let (sim, api) = sim_with(Config::default(), 3).await;
    let reads = || {
        let stats = sim.shared().stats.snapshot();
        (stats.quorum_reads, stats.cached_reads, stats.streamed_reads)
    };
    // No resourceVersion: from etcd, each page.
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    api.list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(reads(), (2, 0, 0));
    // resourceVersion=0: from the watch cache, whole.
    let cached = api.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(cached.items.len(), 3);
    assert_eq!(reads(), (2, 1, 0));
    // A streaming list: the initial state, then the bookmark that ends it.
    let mut stream = api.watch(&WatchParams::streaming_lists(), "0").await.unwrap().boxed();
    for _ in 0..3 {
        assert!(matches!(stream.try_next().await.unwrap(), Some(WatchEvent::Added(_))));
    }
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(bookmark)) => {
            assert_eq!(
                bookmark
                    .metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .map(String::as_str),
                Some("true")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reads(), (2, 1, 1));
}

#[tokio::test]
async fn an_older_server_rejects_streaming_lists() {
    let config = Config {
        streaming_lists: kube_sim::StreamingLists::Rejected,
        ..Config::default()
    };
    let (_sim, api) = sim_with(config, 1).await;
    match api.watch(&WatchParams::streaming_lists(), "0").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
            assert!(
                status.message.contains("sendInitialEvents is forbidden"),
                "{}",
                status.message
            );
        }
        Ok(_) => panic!("a streaming list was served"),
        Err(other) => panic!("{other}"),
    }
    // A plain watch is served.
    let _stream = api.watch(&WatchParams::default(), "0").await.unwrap();
}

#[tokio::test]
async fn a_throttled_server_answers_429_with_retry_after() {
    let (sim, api) = sim_with(Config::default(), 1).await;
    sim.shared().faults.throttle(10, Duration::from_secs(60));
    let client = client(&sim, sim.token());
    let request = hyper::Request::get("/api/v1/namespaces/default/pods")
        .body(kube::client::Body::empty())
        .unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "10");
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 429),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.shared().stats.snapshot().count("THROTTLED"), 2);
    sim.shared().faults.throttle(10, Duration::ZERO);
    api.list(&ListParams::default()).await.unwrap();
}

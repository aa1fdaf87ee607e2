//! Watch streams: newline-delimited events from a store feed, filtered per watch,
//! with bookmarks, timeouts and the faults tests inject.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::SinkExt;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::faults::WatchSignal;
use crate::shared::Shared;
use crate::status::ApiError;
use crate::store::history::{Change, EventType};
use crate::store::{Filter, Stored, WatchFeed};
use crate::table::{self, IncludeObject, Printed};

/// A well-formed JSON line that is not a valid event: clients fail to decode it,
/// where a truncated line would only look like an unfinished chunk.
const MALFORMED: &[u8] =
    b"{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":[\"not-a-name\"]}}}\n";

/// How one watch behaves.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// `allowWatchBookmarks=true`
    pub bookmarks: bool,
    /// End of the stream (`timeoutSeconds`).
    pub timeout: Duration,
    /// Mark the end of initial events with the `k8s.io/initial-events-end` bookmark.
    pub initial_events_end: bool,
    /// Send objects as one-row Tables (`kubectl get -w`).
    pub table: Option<IncludeObject>,
}

/// Streams `feed` to `out` until the client leaves, the timeout passes or a fault ends it.
pub async fn run<T: Stored + Printed>(
    shared: Arc<Shared>,
    mut feed: WatchFeed<T>,
    filter: Filter,
    options: WatchOptions,
    out: mpsc::Sender<Bytes>,
) {
    let _open = shared.stats.watch_opened();
    let mut signals = shared.faults.subscribe();
    let mut stream = Stream {
        shared: &shared,
        out,
        options: &options,
    };
    let mut last_rv = feed.rv;

    for object in std::mem::take(&mut feed.initial) {
        if !stream.object("ADDED", &*object, None).await {
            return;
        }
    }
    if options.initial_events_end && !stream.bookmark::<T>(last_rv, true).await {
        return;
    }
    for change in std::mem::take(&mut feed.replay) {
        last_rv = change.rv;
        if !stream.change(&change, &filter).await {
            return;
        }
    }

    let deadline = tokio::time::sleep(options.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(shared.config.bookmark_interval);
    ticker.tick().await;
    loop {
        let alive = tokio::select! {
            _ = &mut deadline => return,
            _ = ticker.tick(), if options.bookmarks => stream.bookmark::<T>(last_rv, false).await,
            received = feed.live.recv() => match received {
                Ok(change) if change.rv <= last_rv => true,
                Ok(change) => {
                    last_rv = change.rv;
                    stream.change(&change, &filter).await
                }
                // Too slow to keep up: like kube-apiserver, end the watch and let the
                // client resume from its last resourceVersion.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
            },
            signal = signals.recv() => match signal {
                Ok(WatchSignal::Cut { expired: true }) => {
                    stream.send(error_line(&ApiError::expired("too old resource version"))).await;
                    return;
                }
                Ok(WatchSignal::Cut { expired: false }) | Err(RecvError::Closed) => return,
                Ok(WatchSignal::Malformed) => stream.send(Bytes::from_static(MALFORMED)).await,
                Err(RecvError::Lagged(_)) => true,
            },
        };
        if !alive {
            return;
        }
    }
}

struct Stream<'a> {
    shared: &'a Shared,
    out: mpsc::Sender<Bytes>,
    options: &'a WatchOptions,
}

impl Stream<'_> {
    /// Sends one chunk; false once the client is gone.
    async fn send(&mut self, chunk: Bytes) -> bool {
        self.shared.stats.sent(chunk.len());
        self.out.send(chunk).await.is_ok()
    }

    async fn change<T: Stored + Printed>(&mut self, change: &Change<T>, filter: &Filter) -> bool {
        match visible_as(change, filter) {
            None => true,
            Some(kind) => self.object(kind.as_str(), &*change.new, Some(change)).await,
        }
    }

    async fn object<T: Stored + Printed>(&mut self, kind: &str, object: &T, change: Option<&Change<T>>) -> bool {
        let line = match (self.options.table, change) {
            (Some(include), _) => {
                let rv = object.metadata().resource_version.clone().unwrap_or_default();
                event_line(kind, table::render([object], &rv, None, include).to_string().as_bytes())
            }
            (None, Some(change)) => event_line(kind, change.object_json()),
            (None, None) => event_line(kind, &serde_json::to_vec(object).unwrap_or_default()),
        };
        self.shared.stats.objects(1);
        self.send(line).await
    }

    async fn bookmark<T: Stored>(&mut self, rv: u64, initial_events_end: bool) -> bool {
        let mut object =
            json!({ "kind": T::KIND, "apiVersion": T::API_VERSION, "metadata": { "resourceVersion": rv.to_string() } });
        if initial_events_end {
            object["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        self.send(event_line("BOOKMARK", object.to_string().as_bytes())).await
    }
}

/// How a change looks to a watch with `filter`: a pod that starts matching is `ADDED`
/// and one that stops is `DELETED`, as the real server's filtered watches report.
fn visible_as<T: Stored>(change: &Change<T>, filter: &Filter) -> Option<EventType> {
    let before = change.old.as_deref().is_some_and(|p| filter.matches(p));
    let after = filter.matches(&*change.new);
    match change.kind {
        EventType::Added => after.then_some(EventType::Added),
        EventType::Deleted => (before || after).then_some(EventType::Deleted),
        EventType::Modified => match (before, after) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
    }
}

/// A watch stream that only says `410 Expired`, for a watch from a compacted version.
pub fn expired_stream(shared: &Shared, error: ApiError) -> impl futures::Stream<Item = Bytes> + Send + Sync + 'static {
    let line = error_line(&error);
    shared.stats.sent(line.len());
    futures::stream::iter([line])
}

fn error_line(error: &ApiError) -> Bytes {
    event_line("ERROR", error.to_status().to_string().as_bytes())
}

fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + kind.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

//! Fault switches that tests flip to see how clients cope, and the counters
//! benchmarks read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

/// How the API behaves while it is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Every request gets `503 ServiceUnavailable`.
    Unavailable,
    /// Connections are dropped without an answer, as while the server restarts.
    Offline,
}

/// A signal to every open watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchSignal {
    /// End the watch; with `expired`, first send an `ERROR` event with a 410 `Status`.
    Cut {
        /// Send `410 Expired` before closing.
        expired: bool,
    },
    /// Send one line that is not valid JSON, then carry on.
    Malformed,
}

/// The fault switches.
pub struct Faults {
    outage: Mutex<Option<(Outage, Instant)>>,
    /// Until when every request is answered `429`, and the `Retry-After` it names.
    throttle: Mutex<Option<(Instant, u64)>>,
    latency_ms: AtomicU64,
    signals: broadcast::Sender<WatchSignal>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            outage: Mutex::new(None),
            throttle: Mutex::new(None),
            latency_ms: AtomicU64::new(0),
            signals: broadcast::channel(16).0,
        }
    }
}

impl Faults {
    /// Starts an outage of `duration`, ending every open watch.
    pub fn outage(&self, kind: Outage, duration: Duration) {
        *self.outage.lock().unwrap_or_else(|p| p.into_inner()) = Some((kind, Instant::now() + duration));
        self.signal(WatchSignal::Cut { expired: false });
    }

    /// Ends any outage now.
    pub fn recover(&self) {
        *self.outage.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The outage in force, if any.
    pub fn current_outage(&self) -> Option<Outage> {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match *outage {
            Some((kind, until)) if Instant::now() < until => Some(kind),
            _ => {
                *outage = None;
                None
            }
        }
    }

    /// Answers every API request `429 Too Many Requests` with `Retry-After:
    /// retry_after_seconds` for `duration`, as API Priority and Fairness does when a
    /// flow's priority level is full (plain text, the delay in the header only). Open
    /// watches carry on.
    pub fn throttle(&self, retry_after_seconds: u64, duration: Duration) {
        *self.throttle.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now() + duration, retry_after_seconds));
    }

    /// The `Retry-After` seconds of the throttling in force, if any.
    pub fn current_throttle(&self) -> Option<u64> {
        let mut throttle = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        match *throttle {
            Some((until, seconds)) if Instant::now() < until => Some(seconds),
            _ => {
                *throttle = None;
                None
            }
        }
    }

    /// Delays every API request by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// The configured per-request delay.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// Sends `signal` to every open watch.
    pub fn signal(&self, signal: WatchSignal) {
        let _ = self.signals.send(signal);
    }

    /// A receiver of watch signals, for a new watch.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchSignal> {
        self.signals.subscribe()
    }
}

/// Request, byte and watch counters.
#[derive(Default)]
pub struct Stats {
    requests: Mutex<BTreeMap<String, u64>>,
    log: Mutex<Vec<Logged>>,
    bytes_sent: AtomicU64,
    objects_sent: AtomicU64,
    open_watches: AtomicI64,
    quorum_reads: AtomicU64,
    cached_reads: AtomicU64,
    streamed_reads: AtomicU64,
}

/// How a read of a collection's state was served, as kube-apiserver serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A list with no `resourceVersion` (or a page of one): a consistent read from
    /// etcd of the whole collection, the expensive kind.
    Quorum,
    /// A list with `resourceVersion=0` (or "not older than" a version): from the
    /// API server's watch cache, no etcd read.
    Cached,
    /// A watch with `sendInitialEvents=true`: the initial state streamed from the watch
    /// cache.
    Streamed,
}

/// One request as the log keeps it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// When it arrived.
    pub at: Instant,
    /// `"VERB path-template"`, as in [`StatsSnapshot::requests`].
    pub what: String,
}

/// Requests kept in the log; later ones are only counted.
const LOG_LIMIT: usize = 200_000;

/// A copy of the counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatsSnapshot {
    /// Requests by `"VERB path-template"`, e.g. `"LIST /api/v1/namespaces/{namespace}/pods"`.
    /// Refused ones too: `"UNAUTHORIZED path"` for each rejected token; during an outage
    /// `"UNAVAILABLE path"` for each request answered 503, `"DROPPED path"` for each
    /// dropped unanswered and `"DROPPED connection"` for each connection closed before TLS;
    /// while throttled, `"THROTTLED path"` for each request answered 429.
    pub requests: BTreeMap<String, u64>,
    /// Response body bytes sent, watch streams included.
    pub bytes_sent: u64,
    /// Watches open now.
    pub open_watches: i64,
    /// Objects sent in list pages and watch events (bookmarks and errors not counted).
    pub objects_sent: u64,
    /// Lists served by a consistent read from etcd (see [`Read::Quorum`]).
    pub quorum_reads: u64,
    /// Lists served from the watch cache (see [`Read::Cached`]).
    pub cached_reads: u64,
    /// Streaming lists served (see [`Read::Streamed`]).
    pub streamed_reads: u64,
}

impl StatsSnapshot {
    /// Requests whose verb is `verb` (`LIST`, `WATCH`, `GET`, ...), over all paths.
    pub fn count(&self, verb: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.split(' ').next() == Some(verb))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Stats {
    /// Counts one request, and logs it with its time.
    pub fn request(&self, verb: &str, template: &str) {
        let what = format!("{verb} {template}");
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            if log.len() < LOG_LIMIT {
                log.push(Logged {
                    at: Instant::now(),
                    what: what.clone(),
                });
            }
        }
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(what)
            .or_default() += 1;
    }

    /// Counts one read of a collection's state, by how it was served.
    pub fn read(&self, read: Read) {
        let counter = match read {
            Read::Quorum => &self.quorum_reads,
            Read::Cached => &self.cached_reads,
            Read::Streamed => &self.streamed_reads,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts objects sent.
    pub fn objects(&self, count: usize) {
        self.objects_sent.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// The requests logged since the start (or the last reset), in order of arrival.
    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts bytes sent.
    pub fn sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Tracks a watch for as long as the guard lives.
    pub fn watch_opened(&self) -> WatchGuard<'_> {
        self.open_watches.fetch_add(1, Ordering::Relaxed);
        WatchGuard(&self.open_watches)
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            open_watches: self.open_watches.load(Ordering::Relaxed),
            objects_sent: self.objects_sent.load(Ordering::Relaxed),
            quorum_reads: self.quorum_reads.load(Ordering::Relaxed),
            cached_reads: self.cached_reads.load(Ordering::Relaxed),
            streamed_reads: self.streamed_reads.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the request, read, object and byte counters and the log (open watches
    /// stay counted).
    pub fn reset(&self) {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for counter in [
            &self.bytes_sent,
            &self.objects_sent,
            &self.quorum_reads,
            &self.cached_reads,
            &self.streamed_reads,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// Decrements the open-watch gauge when dropped.
pub struct WatchGuard<'a>(&'a AtomicI64);

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

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
    latency_ms: AtomicU64,
    signals: broadcast::Sender<WatchSignal>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            outage: Mutex::new(None),
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
    bytes_sent: AtomicU64,
    open_watches: AtomicI64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatsSnapshot {
    /// Requests by `"VERB path-template"`, e.g. `"LIST /api/v1/namespaces/{namespace}/pods"`.
    /// Refused ones too: `"UNAUTHORIZED path"` for each rejected token; during an outage
    /// `"UNAVAILABLE path"` for each request answered 503, `"DROPPED path"` for each
    /// dropped unanswered and `"DROPPED connection"` for each connection closed before TLS.
    pub requests: BTreeMap<String, u64>,
    /// Response body bytes sent, watch streams included.
    pub bytes_sent: u64,
    /// Watches open now.
    pub open_watches: i64,
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
    /// Counts one request.
    pub fn request(&self, verb: &str, template: &str) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("{verb} {template}"))
            .or_default() += 1;
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
        }
    }

    /// Zeroes the request and byte counters (open watches stay counted).
    pub fn reset(&self) {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.bytes_sent.store(0, Ordering::Relaxed);
    }
}

/// Decrements the open-watch gauge when dropped.
pub struct WatchGuard<'a>(&'a AtomicI64);

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

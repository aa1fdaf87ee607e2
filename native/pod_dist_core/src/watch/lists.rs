//! How a watch gets the state it then follows, as cheaply for the API server as the
//! server allows: a streaming list (one watch with `sendInitialEvents=true`, ended by a
//! BOOKMARK annotated `k8s.io/initial-events-end`) where the server serves them, a list
//! from the API server's watch cache (`resourceVersion=0`) where it does not, and a
//! quorum read from etcd only for the one list that follows a `410 Gone`.
//!
//! kube-runtime's watcher takes its list settings once, for its whole life; it re-lists
//! by itself after a `410` and after a failed list. [`Plan`] decides (a pure function of
//! the watcher's errors) when the running watcher must be replaced by one with other
//! settings, and [`Listing`] does the replacing, so that:
//!
//! - a server that rejects streaming lists (`400` or `422`: before Kubernetes 1.32 the
//!   `WatchList` feature is off and the parameter forbidden) costs that one request;
//! - a server that accepts the watch but never sends the end bookmark (one that ignores
//!   the parameter, or a proxy that drops it) is given up on after [`STREAM_END_WAIT`]
//!   without an event;
//! - either answer is remembered for the watch's life (every namespace, every new
//!   client), so a fallback is paid once, not once per retry;
//! - after a `410`, one quorum list: the index must not go back in time, and an API
//!   server's watch cache may be behind what the watch had already seen (in an HA
//!   control plane, another server's). If that list fails, the retries list from the
//!   cache again: never more than one quorum read per `410`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event, ListSemantic};
use tokio::time::{Instant, Sleep};

/// How long a streaming list may go without an event (and without its end bookmark)
/// before the server is taken not to serve streaming lists. A server that does sends
/// the initial state and the bookmark at once, from its watch cache; one that ignores
/// the parameter sends the state and then nothing.
pub const STREAM_END_WAIT: Duration = Duration::from_secs(10);

/// How a watch gets its initial state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    /// One watch with `sendInitialEvents=true`; synced at the initial-events-end bookmark.
    Streaming,
    /// A list (from the watch cache, or a quorum read after a `410`), then a watch from
    /// its resourceVersion.
    ListThenWatch,
}

/// What the watcher running now was started with, and the decisions that replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The mode of the running watcher.
    pub mode: ListMode,
    /// Whether its lists are quorum reads (only right after a `410`).
    pub quorum: bool,
}

/// What to do with the running watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Let it go on: it retries or re-lists by itself, with the right settings.
    Keep,
    /// Replace it with a watcher started from [`Plan::config`]; the error that caused it
    /// is no failure of the API, only a fallback.
    Fallback,
    /// Replace it with a watcher started from [`Plan::config`], and report the error.
    Restart,
}

impl Plan {
    /// The plan of a new watch: streaming unless the watch already learnt otherwise.
    pub fn new(streaming: bool) -> Plan {
        Plan {
            mode: if streaming {
                ListMode::Streaming
            } else {
                ListMode::ListThenWatch
            },
            quorum: false,
        }
    }

    /// The watcher settings for this plan, on top of `base` (selectors, page size).
    pub fn config(&self, base: &watcher::Config) -> watcher::Config {
        match (self.mode, self.quorum) {
            (ListMode::Streaming, _) => base.clone().streaming_lists(),
            (ListMode::ListThenWatch, false) => {
                let mut config = base.clone().any_semantic();
                // kube drops `resourceVersion=0` from a list that has a limit (the watch
                // cache would ignore the limit): that list would be a quorum read. The
                // cache answers whole anyway.
                config.page_size = None;
                config
            }
            (ListMode::ListThenWatch, true) => base.clone().list_semantic(ListSemantic::MostRecent),
        }
    }

    /// The running watcher failed with `error`.
    pub fn failed(&mut self, error: &watcher::Error) -> Next {
        match self.mode {
            ListMode::Streaming if rejects_streaming(error) => {
                self.mode = ListMode::ListThenWatch;
                Next::Fallback
            }
            // A streaming watcher restarts its streaming list by itself, from the cache.
            ListMode::Streaming => Next::Keep,
            ListMode::ListThenWatch if super::failure::is_expired(error) => {
                self.quorum = true;
                Next::Restart
            }
            // The quorum list failed (or came without a resourceVersion): its retries
            // read the cache.
            ListMode::ListThenWatch
                if self.quorum
                    && matches!(
                        error,
                        watcher::Error::InitialListFailed(_) | watcher::Error::NoResourceVersion
                    ) =>
            {
                self.quorum = false;
                Next::Restart
            }
            ListMode::ListThenWatch => Next::Keep,
        }
    }

    /// A streaming list went [`STREAM_END_WAIT`] without an event or its end bookmark.
    pub fn unannounced(&mut self) -> Next {
        match self.mode {
            ListMode::Streaming => {
                self.mode = ListMode::ListThenWatch;
                Next::Fallback
            }
            ListMode::ListThenWatch => Next::Keep,
        }
    }
}

/// Whether `error` is a server's refusal of a streaming list's parameters.
fn rejects_streaming(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if matches!(status.code, 400 | 422))
}

/// Opens a watcher with the given settings.
pub type Open<K> = Box<dyn Fn(watcher::Config) -> BoxStream<'static, watcher::Result<Event<K>>> + Send>;

/// A watcher stream that follows a [`Plan`]: it replaces the watcher it runs when the
/// plan says so. Wrap it in [`crate::retry::Paced`], so that restarts are paced too.
pub struct Listing<K> {
    open: Open<K>,
    base: watcher::Config,
    plan: Plan,
    /// Whether the server serves streaming lists, as far as the watch knows: shared by
    /// the watch's listings (each namespace's, each client's).
    streaming: Arc<AtomicBool>,
    stream: BoxStream<'static, watcher::Result<Event<K>>>,
    /// While a streaming list is under way: when it is given up on.
    end_wait: Option<Pin<Box<Sleep>>>,
}

impl<K: Send + 'static> Listing<K> {
    /// Starts a watcher from `open` with `base`'s selectors, in the mode `streaming` holds.
    pub fn new(open: Open<K>, base: watcher::Config, streaming: Arc<AtomicBool>) -> Self {
        let plan = Plan::new(streaming.load(Ordering::Relaxed));
        let stream = open(plan.config(&base));
        Listing {
            open,
            base,
            plan,
            streaming,
            stream,
            end_wait: None,
        }
    }

    /// The plan of the watcher running now.
    pub fn plan(&self) -> Plan {
        self.plan
    }

    fn restart(&mut self) {
        if self.plan.mode == ListMode::ListThenWatch {
            self.streaming.store(false, Ordering::Relaxed);
        }
        self.end_wait = None;
        self.stream = (self.open)(self.plan.config(&self.base));
    }
}

impl<K: Send + 'static> Stream for Listing<K> {
    type Item = watcher::Result<Event<K>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(wait) = &mut this.end_wait {
                if wait.as_mut().poll(cx).is_ready() {
                    this.end_wait = None;
                    if this.plan.unannounced() == Next::Fallback {
                        tracing::warn!(
                            "the API server sent no end of its streaming list within {} s: listing from its watch cache instead, from now on",
                            STREAM_END_WAIT.as_secs()
                        );
                        this.restart();
                    }
                }
            }
            let item = match this.stream.poll_next_unpin(cx) {
                Poll::Ready(item) => item,
                Poll::Pending => return Poll::Pending,
            };
            match &item {
                Some(Ok(Event::Init)) if this.plan.mode == ListMode::Streaming => {
                    this.end_wait = Some(Box::pin(tokio::time::sleep(STREAM_END_WAIT)));
                }
                Some(Ok(Event::InitApply(_))) => {
                    if let Some(wait) = &mut this.end_wait {
                        wait.as_mut().reset(Instant::now() + STREAM_END_WAIT);
                    }
                }
                Some(Ok(Event::InitDone)) => this.end_wait = None,
                Some(Err(error)) => match this.plan.failed(error) {
                    Next::Keep => {}
                    Next::Fallback => {
                        tracing::info!("the API server does not serve streaming lists ({error}): listing from its watch cache instead, from now on");
                        this.restart();
                        // Not a failure: the next request is the list, at once.
                        continue;
                    }
                    Next::Restart => this.restart(),
                },
                _ => {}
            }
            return Poll::Ready(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("", "").with_code(code).boxed())
    }

    fn expired() -> watcher::Error {
        watcher::Error::WatchError(Status::failure("too old", "Expired").with_code(410).boxed())
    }

    #[test]
    fn a_server_that_rejects_streaming_lists_is_listed_from_the_cache() {
        for code in [400, 422] {
            let mut plan = Plan::new(true);
            assert_eq!(
                plan.failed(&watcher::Error::WatchStartFailed(api(code))),
                Next::Fallback
            );
            assert_eq!(plan, Plan::new(false));
        }
        // Other failures of a streaming watch are the API's, not a refusal.
        let mut plan = Plan::new(true);
        for code in [401, 403, 429, 500, 503] {
            assert_eq!(plan.failed(&watcher::Error::WatchStartFailed(api(code))), Next::Keep);
        }
        assert_eq!(plan.failed(&expired()), Next::Keep);
        assert_eq!(plan.mode, ListMode::Streaming);
    }

    #[test]
    fn a_streaming_list_without_its_end_is_given_up_once() {
        let mut plan = Plan::new(true);
        assert_eq!(plan.unannounced(), Next::Fallback);
        assert_eq!(plan.mode, ListMode::ListThenWatch);
        assert_eq!(plan.unannounced(), Next::Keep);
    }

    #[test]
    fn one_quorum_read_per_410() {
        let base = watcher::Config::default();
        let mut plan = Plan::new(false);
        // Lists come from the watch cache...
        assert_eq!(plan.config(&base).list_semantic, ListSemantic::Any);
        assert_eq!(plan.config(&base).page_size, None);
        // ...and a failed one is retried from it by the watcher itself.
        assert_eq!(plan.failed(&watcher::Error::InitialListFailed(api(503))), Next::Keep);
        assert_eq!(plan.config(&base).list_semantic, ListSemantic::Any);

        // After a 410, one quorum read.
        assert_eq!(plan.failed(&expired()), Next::Restart);
        assert_eq!(plan.config(&base).list_semantic, ListSemantic::MostRecent);
        // It failed: its retries read the cache.
        assert_eq!(plan.failed(&watcher::Error::InitialListFailed(api(429))), Next::Restart);
        assert_eq!(plan.config(&base).list_semantic, ListSemantic::Any);
        assert_eq!(plan.failed(&watcher::Error::InitialListFailed(api(429))), Next::Keep);

        // A watch that fails after the quorum list succeeded only re-watches.
        assert_eq!(plan.failed(&expired()), Next::Restart);
        assert_eq!(plan.failed(&watcher::Error::WatchStartFailed(api(503))), Next::Keep);
        assert!(plan.quorum);
    }
}

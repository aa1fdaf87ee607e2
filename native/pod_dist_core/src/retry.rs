//! When a watch asks the API again after a failure: the schedule of delays ([`delay`],
//! a pure function), the state that walks it ([`Backoff`]), and the stream adapter that
//! pauses a kube-runtime watcher by it ([`Paced`]).
//!
//! The budget: a change made once the API is back must reach every node within 5 s, and
//! a node should send about 12 requests a minute while the API is down. Each retry is
//! one request (the watch, or the list when there is no resourceVersion to watch from:
//! the watcher retries the step that failed), so the rate is 60 s over the mean delay,
//! and the wait after the API's return is bounded by the longest delay. Both only hold
//! with a retry every 5 s: the delays settle just under that, between 4.45 and 4.95 s
//! (a mean of 4.7 s: 12.8 requests a minute), leaving 50 ms for the request that finds
//! the API back and the event it brings. Before that they start at 0.5 to 1 s, so a
//! blip (a dropped connection, one 503, a `410 Gone`) costs under a second, and take
//! one step of 1.5 to 3 s. A 60 s outage therefore costs about 15 requests: the watch
//! asked again at once when its stream was cut, the two quick retries, then 12.
//!
//! A 403 (a Role missing or not yet bound) is retried on the same schedule, not faster:
//! the API is asked as gently as in an outage, so a Role granted while a node waits is
//! noticed at the next retry, under a second later while the retries are in their first
//! steps, at most 5 s later after that.
//!
//! A `429 Too Many Requests` (API Priority and Fairness shedding load) is waited out:
//! the next request waits the server's `Retry-After` (at most [`RETRY_AFTER_CAP`]) on top
//! of the backoff's delay, so a throttled fleet never comes back sooner than the server
//! asked, and the backoff's jitter still spreads it over a second or more once it does.
//!
//! Jitter: the full upper half while the delays grow (an API server restart fails every
//! node's watch at the same moment; these spread the retries over seconds), a 0.5 s band
//! at the cap (wider would lower the mean delay, and raise the rate, for the same bound).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};
use tokio::time::{Instant, Sleep};

/// The longest delay before the first retry after a success.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest delay of all: under the 5 s in which a node must see the API again.
pub const CAP: Duration = Duration::from_millis(4_950);
/// How much shorter than [`CAP`] a delay at the cap may be drawn.
pub const CAP_JITTER: Duration = Duration::from_millis(500);
/// The longest `Retry-After` honoured: a server asking for more is asked again after
/// this (plus the backoff), so a wrong header cannot stall a watch for hours.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// Each delay's ceiling is this many times the last one's, up to [`CAP`].
const GROWTH: u32 = 3;
/// A failure this long after the previous one starts the schedule over: the watch
/// worked in between, even if it said nothing (a quiet namespace sends no events).
pub const QUIET_RESET: Duration = Duration::from_secs(30);

/// The delay before retry number `attempt` (0: the first since the watch last worked),
/// given `random` in `[0, 1)`: `random` 0 gives the ceiling, values towards 1 the floor
/// (others are clamped to `[0, 1]`).
pub fn delay(attempt: u32, random: f64) -> Duration {
    let ceiling = GROWTH
        .checked_pow(attempt)
        .map_or(CAP, |factor| FIRST.saturating_mul(factor).min(CAP));
    let band = if ceiling < CAP { ceiling / 2 } else { CAP_JITTER };
    // NaN (no draw gives it, but `mul_f64` would panic on it) counts as 0.
    let random = if random.is_nan() { 0.0 } else { random.clamp(0.0, 1.0) };
    ceiling - band.mul_f64(random)
}

/// How long the server asked the client to wait before asking again (a `429`'s
/// `Retry-After`, which [`crate::connect::client`]'s clients carry into the error's
/// `Status`), capped at [`RETRY_AFTER_CAP`].
pub fn retry_after(error: &watcher::Error) -> Option<Duration> {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status,
        watcher::Error::WatchError(status) => status,
        _ => return None,
    };
    let seconds = status.details.as_ref()?.retry_after_seconds;
    (seconds > 0).then(|| Duration::from_secs(u64::from(seconds)).min(RETRY_AFTER_CAP))
}

/// Which attempt a failure at `now` is, given the previous failure's attempt and time.
pub fn attempt(previous: Option<(u32, Instant)>, now: Instant) -> u32 {
    match previous {
        Some((attempt, at)) if now.saturating_duration_since(at) < QUIET_RESET => attempt.saturating_add(1),
        _ => 0,
    }
}

/// A random number in `[0, 1)` for jitter. Std's hasher keys are random per process and
/// change on every `RandomState`: enough to keep nodes apart, and no extra crate.
pub fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a watch is in the schedule.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    previous: Option<(u32, Instant)>,
}

impl Backoff {
    /// Records a failure at `now`; returns how long to wait before the next try.
    pub fn failed(&mut self, now: Instant, random: f64) -> Duration {
        let attempt = attempt(self.previous, now);
        self.previous = Some((attempt, now));
        delay(attempt, random)
    }

    /// Records an answer from the API: the next failure starts the schedule over.
    pub fn succeeded(&mut self) {
        self.previous = None;
    }
}

/// A watcher stream that, after each error, is not polled again until the next delay
/// has passed. Unlike kube-runtime's `StreamBackoff`, it does not start the schedule over
/// on `Event::Init`: the watcher yields that before the list request it announces, so a
/// watch that must re-list while the API is down would retry at the first, shortest
/// delay forever.
pub struct Paced<S> {
    stream: S,
    backoff: Backoff,
    random: fn() -> f64,
    pause: Option<Pin<Box<Sleep>>>,
}

impl<S> Paced<S> {
    /// Paces `stream`, drawing jitter from [`jitter`].
    pub fn new(stream: S) -> Self {
        Self::with_random(stream, jitter)
    }

    /// Paces `stream`, drawing jitter from `random` (a constant makes delays exact).
    pub fn with_random(stream: S, random: fn() -> f64) -> Self {
        Paced {
            stream,
            backoff: Backoff::default(),
            random,
            pause: None,
        }
    }
}

impl<S, K> Stream for Paced<S>
where
    S: Stream<Item = watcher::Result<Event<K>>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(pause) = &mut this.pause {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let item = ready!(this.stream.poll_next_unpin(cx));
        match &item {
            Some(Err(error)) => {
                let delay =
                    this.backoff.failed(Instant::now(), (this.random)()) + retry_after(error).unwrap_or_default();
                this.pause = Some(Box::pin(tokio::time::sleep(delay)));
            }
            // Init announces a list; it is no answer from the API.
            Some(Ok(Event::Init)) | None => {}
            Some(Ok(_)) => this.backoff.succeeded(),
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_in_bounds() {
        // Ceilings (random 0) and floors (random near 1) of each attempt.
        let ceilings: Vec<_> = (0..5).map(|n| delay(n, 0.0)).collect();
        assert_eq!(ceilings, [MS(1_000), MS(3_000), CAP, CAP, CAP]);
        let floors: Vec<_> = (0..4).map(|n| delay(n, 1.0)).collect();
        assert_eq!(floors, [MS(500), MS(1_500), MS(4_450), MS(4_450)]);
        // No overflow however long an outage lasts, and random is clamped.
        assert_eq!(delay(u32::MAX, 0.5), MS(4_700));
        assert_eq!(delay(0, -3.0), MS(1_000));
        assert_eq!(delay(0, 7.0), MS(500));
        assert_eq!(delay(0, f64::NAN), MS(1_000));
    }

    #[test]
    fn the_budget_holds_for_every_draw() {
        // Back within 5 s: no delay reaches it, leaving room for the request itself.
        // About 12 requests a minute: at the cap, at least 4.45 s apart (13.5 a minute at
        // most), 4.7 s on average (12.8 a minute).
        for attempt in 0..20 {
            let draws: Vec<Duration> = (0..=100).map(|i| delay(attempt, f64::from(i) / 100.0)).collect();
            for d in &draws {
                assert!(*d <= MS(4_950), "{attempt}: {d:?}");
                assert!(*d >= MS(500), "{attempt}: {d:?}");
                if attempt >= 2 {
                    assert!(*d >= MS(4_450), "{attempt}: {d:?}");
                }
            }
            if attempt >= 2 {
                let mean = draws.iter().sum::<Duration>() / draws.len() as u32;
                let per_minute = 60.0 / mean.as_secs_f64();
                assert!((12.0..13.0).contains(&per_minute), "{attempt}: {per_minute} a minute");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn every_delay_keeps_the_budget(attempt in 0u32.., random in proptest::num::f64::ANY) {
            let d = delay(attempt, random);
            proptest::prop_assert!(d >= MS(500) && d <= CAP, "{attempt} {random}: {d:?}");
            if attempt >= 2 {
                proptest::prop_assert!(d >= CAP - CAP_JITTER, "{attempt} {random}: {d:?}");
            }
            // Never shorter than the attempt before, for the same draw.
            if attempt > 0 {
                proptest::prop_assert!(d >= delay(attempt - 1, random));
            }
        }
    }

    #[test]
    fn jitter_is_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (0..2_000).map(|_| jitter()).collect();
        assert!(draws.iter().all(|r| (0.0..1.0).contains(r)));
        let low = draws.iter().filter(|r| **r < 0.5).count();
        assert!((800..1_200).contains(&low), "{low} of 2000 below 0.5");
    }

    #[test]
    fn attempts_count_up_until_a_quiet_spell() {
        let t0 = Instant::now();
        assert_eq!(attempt(None, t0), 0);
        assert_eq!(attempt(Some((0, t0)), t0 + MS(900)), 1);
        assert_eq!(attempt(Some((7, t0)), t0 + QUIET_RESET - MS(1)), 8);
        assert_eq!(attempt(Some((7, t0)), t0 + QUIET_RESET), 0);
        assert_eq!(attempt(Some((u32::MAX, t0)), t0), u32::MAX);

        let mut backoff = Backoff::default();
        assert_eq!(backoff.failed(t0, 0.0), MS(1_000));
        assert_eq!(backoff.failed(t0 + MS(1_000), 0.0), MS(3_000));
        assert_eq!(backoff.failed(t0 + MS(4_000), 0.0), CAP);
        backoff.succeeded();
        assert_eq!(backoff.failed(t0 + MS(5_000), 0.0), MS(1_000));
    }

    /// Yields `items` in order, and the (paused) time each one came out at.
    async fn timeline(items: Vec<watcher::Result<Event<u8>>>) -> Vec<(String, Duration)> {
        let start = Instant::now();
        let mut paced = Paced::with_random(futures::stream::iter(items), || 0.0);
        let mut seen = Vec::new();
        while let Some(item) = paced.next().await {
            let label = match item {
                Ok(Event::Init) => "init",
                Ok(Event::InitApply(_)) => "apply",
                Ok(_) => "other",
                Err(_) => "error",
            };
            seen.push((label.to_string(), start.elapsed()));
        }
        seen
    }

    fn throttled(retry_after_seconds: u32) -> watcher::Result<Event<u8>> {
        let mut status = kube::core::Status::failure("Too many requests", "TooManyRequests").with_code(429);
        status.details = Some(kube::core::response::StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds,
        });
        Err(watcher::Error::InitialListFailed(kube::Error::Api(status.boxed())))
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_waits_its_retry_after_on_top_of_the_backoff_up_to_the_cap() {
        let seen = timeline(vec![
            throttled(10),
            Ok(Event::Init),
            throttled(3_600),
            Ok(Event::Init),
            throttled(0),
            Ok(Event::Init),
        ])
        .await;
        let times: Vec<Duration> = seen.iter().map(|(_, at)| *at).collect();
        // 10 s + the first delay (1 s); the cap (60 s) + the second (3 s); then no
        // Retry-After, and 63 s since the last failure: the schedule starts over (1 s).
        assert_eq!(
            times,
            [MS(0), MS(11_000), MS(11_000), MS(74_000), MS(74_000), MS(75_000)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paced_waits_after_errors_and_starts_over_only_on_answers() {
        let error = || Err(watcher::Error::NoResourceVersion);
        let seen = timeline(vec![
            // A re-list during an outage: Init does not reset the schedule.
            Ok(Event::Init),
            error(),
            Ok(Event::Init),
            error(),
            Ok(Event::Init),
            error(),
            // An answer does.
            Ok(Event::InitApply(1)),
            error(),
            Ok(Event::Init),
        ])
        .await;
        let at = |ms| MS(ms);
        assert_eq!(
            seen,
            [
                ("init".into(), at(0)),
                ("error".into(), at(0)),
                ("init".into(), at(1_000)),
                ("error".into(), at(1_000)),
                ("init".into(), at(4_000)),
                ("error".into(), at(4_000)),
                ("apply".into(), at(8_950)),
                ("error".into(), at(8_950)),
                ("init".into(), at(9_950)),
            ]
        );
    }
}

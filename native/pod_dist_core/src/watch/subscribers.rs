//! The subscriber list. Copied on write: a publish calls a snapshot of it, so
//! subscribing and unsubscribing (on BEAM schedulers) never wait for events to be
//! encoded and sent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Subscriber, WatchEvent};

/// The subscribers of one watch.
pub(super) struct Subscribers {
    list: Mutex<Arc<Vec<Arc<Slot>>>>,
    /// Held by a publish for its whole run, so that each subscriber hears events in the
    /// order they were published. Only publishers take it.
    publishing: Mutex<()>,
    next_id: AtomicU64,
}

/// One subscriber in the list.
struct Slot {
    id: u64,
    /// Set once it unsubscribed or declined an event: it hears nothing more, even from a
    /// publish already under way with a snapshot that still holds it.
    removed: AtomicBool,
    /// Locked only by the publisher (which holds `publishing`): never contended.
    callback: Mutex<Subscriber>,
}

impl Subscribers {
    pub(super) fn new() -> Subscribers {
        Subscribers {
            list: Mutex::new(Arc::new(Vec::new())),
            publishing: Mutex::new(()),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh subscriber id.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn list(&self) -> MutexGuard<'_, Arc<Vec<Arc<Slot>>>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many subscribers are in the list.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.list().len()
    }

    pub(super) fn subscribe(&self, id: u64, subscriber: Subscriber) {
        let slot = Arc::new(Slot {
            id,
            removed: AtomicBool::new(false),
            callback: Mutex::new(subscriber),
        });
        // Copies the list (a few pointers per subscriber) only while a publish holds a
        // snapshot of it; that snapshot keeps the old list, so nothing is freed here.
        Arc::make_mut(&mut self.list()).push(slot);
    }

    pub(super) fn unsubscribe(&self, id: u64) {
        let removed = self.remove(|slot| {
            let this = slot.id == id;
            if this {
                slot.removed.store(true, Ordering::Release);
            }
            this
        });
        // Dropped outside the lock: a subscriber may hold the last reference to its watch.
        drop(removed);
    }

    /// Takes the subscribers `which` picks out of the list, and returns them: the caller
    /// drops them after the lock is released (a subscriber may hold the last reference
    /// to its watch).
    fn remove(&self, mut which: impl FnMut(&Slot) -> bool) -> Vec<Arc<Slot>> {
        let mut list = self.list();
        let (gone, kept): (Vec<_>, Vec<_>) = list.iter().cloned().partition(|slot| which(slot));
        if gone.is_empty() {
            return gone;
        }
        // The old list is only pointers to slots that `gone` and `kept` hold too.
        *list = Arc::new(kept);
        gone
    }

    /// Tells every subscriber each event, in order. The list is locked only to take a
    /// snapshot of it: encoding and sending run under no lock that subscribing,
    /// unsubscribing or a lookup takes. A subscriber that returns `false` is removed.
    pub(super) fn publish(&self, events: impl IntoIterator<Item = WatchEvent>) {
        let publishing = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = self.list().clone();
        let mut declined = false;
        for event in events {
            for slot in snapshot.iter() {
                if slot.removed.load(Ordering::Acquire) {
                    continue;
                }
                let mut callback = slot.callback.lock().unwrap_or_else(|p| p.into_inner());
                if !callback(&event) {
                    slot.removed.store(true, Ordering::Release);
                    declined = true;
                }
            }
        }
        let gone = if declined {
            self.remove(|slot| slot.removed.load(Ordering::Acquire))
        } else {
            Vec::new()
        };
        drop(publishing);
        // Dropped outside every lock: a subscriber may hold the last reference to its
        // watch, and the snapshot may hold the last reference to a removed subscriber.
        drop(gone);
        drop(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn subscribing_and_unsubscribing_never_wait_for_a_publish_under_way() {
        let subscribers = Arc::new(Subscribers::new());
        // A subscriber slow to take its first event (a busy send): the publish stays
        // inside it until the test releases it.
        let (inside, entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let (slow_heard, slow_events) = mpsc::channel();
        subscribers.subscribe(
            1,
            Box::new(move |event| {
                let _ = inside.send(());
                let _ = released.recv();
                slow_heard.send(event.clone()).is_ok()
            }),
        );
        let publisher = {
            let subscribers = subscribers.clone();
            std::thread::spawn(move || subscribers.publish([WatchEvent::Synced, WatchEvent::ApiError("second".into())]))
        };
        entered.recv().unwrap();

        // Meanwhile, as the NIF's subscribe and the monitor's down callback do on a
        // scheduler: neither waits for the publish (were they to, this would hang, the
        // publish being released only after they return).
        let (done, returned) = mpsc::channel();
        {
            let subscribers = subscribers.clone();
            std::thread::spawn(move || {
                let (heard, events) = mpsc::channel();
                subscribers.subscribe(2, Box::new(move |event| heard.send(event.clone()).is_ok()));
                subscribers.unsubscribe(1);
                let _ = done.send(events);
            });
        }
        let new_events = returned
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribe or unsubscribe waited for the publish under way");
        drop(release);
        publisher.join().unwrap();

        // The removed subscriber heard nothing after its removal, not even the rest of
        // the publish under way; the new one hears what is published after it came.
        subscribers.publish([WatchEvent::ApiError("third".into())]);
        assert_eq!(slow_events.try_iter().collect::<Vec<_>>(), [WatchEvent::Synced]);
        assert_eq!(
            new_events.try_iter().collect::<Vec<_>>(),
            [WatchEvent::ApiError("third".into())]
        );
        assert_eq!(subscribers.len(), 1);
    }

    #[test]
    fn a_subscriber_that_declines_an_event_is_removed_and_hears_no_more() {
        let subscribers = Subscribers::new();
        let (heard, events) = mpsc::channel();
        let mut left = 2;
        subscribers.subscribe(
            1,
            Box::new(move |event| {
                let _ = heard.send(event.clone());
                left -= 1;
                left > 0
            }),
        );
        subscribers.publish((0..4).map(|i| WatchEvent::ApiError(i.to_string())));
        subscribers.publish([WatchEvent::Synced]);
        let events: Vec<_> = events.try_iter().collect();
        assert_eq!(
            events,
            [WatchEvent::ApiError("0".into()), WatchEvent::ApiError("1".into())]
        );
        assert_eq!(subscribers.len(), 0);
    }
}

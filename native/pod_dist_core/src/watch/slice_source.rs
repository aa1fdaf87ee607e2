//! The slice source's watch loop: the EndpointSlices of one Service, through
//! [`SliceMerge`], into the index. The data path is: the watcher's events -> the merge
//! (which keeps an endpoint that left its slice for a grace period, so a pod whose
//! endpoint moves between slices never flaps) -> index operations, applied under one
//! write lock per event -> subscribers. A timer wakes the loop at the merge's next
//! deadline to let go of endpoints that did not come back.

use std::time::Instant;

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::failure::{is_expired, Subject};
use super::health::ErrorKind;
use super::lists::{Listing, Open};
use super::state::State;
use super::WatchEvent;
use crate::index::PodChange;
use crate::retry::Paced;
use crate::slice_wire::WireEndpointSlice;
use crate::slices::{IndexOp, SliceMerge};

/// Which slices speak for the pods: those of `service` in `namespace` written by
/// `managed_by`.
pub(super) struct Slices<'a> {
    pub namespace: &'a str,
    pub service: &'a str,
    pub managed_by: &'a str,
}

impl Slices<'_> {
    /// Whether `slice` may speak for pods. The watch's label selector already asks the
    /// server for these slices alone; this holds the line should a server send others.
    fn trusted(&self, slice: &WireEndpointSlice) -> bool {
        slice.managed_by() == Some(self.managed_by) && slice.service_name() == Some(self.service)
    }
}

/// Follows `slices` until the API rejects the client's credentials (or the watcher
/// ends). `merge` outlives this call: slices on the move when a client was replaced keep
/// their grace across the relist.
pub(super) async fn follow(
    client: Client,
    slices: &Slices<'_>,
    config: &watcher::Config,
    merge: &mut SliceMerge,
    state: &State,
) {
    let api = Api::<WireEndpointSlice>::namespaced(client, slices.namespace);
    let open: Open<WireEndpointSlice> = Box::new(move |config| watcher::watcher(api.clone(), config).boxed());
    let mut events = Paced::new(Listing::new(open, config.clone(), state.streaming.clone())).boxed();
    let subject = Subject::slices(slices.namespace, slices.service);
    // A (re-)list arrives as Init, InitApply..., InitDone: the merge sees it whole.
    let mut listing: Vec<WireEndpointSlice> = Vec::new();
    loop {
        let deadline = merge.next_deadline();
        let event = tokio::select! {
            biased;
            event = events.next() => match event {
                Some(event) => event,
                None => return,
            },
            // Evaluated even when disabled: any instant will do then.
            _ = tokio::time::sleep_until(deadline.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)),
                if deadline.is_some() => {
                let outcome = merge.expire(now());
                apply(state, outcome.ops);
                continue;
            }
        };
        state.panic_if_asked();
        state.saw(&event);
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(slice)) => {
                if slices.trusted(&slice) {
                    listing.push(slice);
                }
            }
            Ok(Event::InitDone) => {
                let slices = std::mem::take(&mut listing);
                merge.relist(&slices, now());
                drop(slices);
                // One swap: readers never see a half-applied relist.
                let changes = state.replace(None, merge.records());
                state.listed(changes, true);
            }
            Ok(Event::Apply(slice)) => {
                // A slice that is no longer trusted (relabelled) is gone as far as we know.
                let outcome = if slices.trusted(&slice) {
                    merge.apply(&slice, now())
                } else {
                    merge.delete(&slice, now())
                };
                state.recovered();
                apply(state, outcome.ops);
            }
            Ok(Event::Delete(slice)) => {
                let outcome = merge.delete(&slice, now());
                state.recovered();
                apply(state, outcome.ops);
            }
            // A 410 only means "re-list", which the watcher is doing.
            Err(error) if is_expired(&error) => {}
            Err(error) => {
                if state.failed_with(&error, &subject) == ErrorKind::Unauthorized {
                    // A fresh client re-reads the token file.
                    return;
                }
            }
        }
    }
}

/// The merge's clock: tokio's, so tests that pause time move it too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Applies the operations of one merge call under one write lock (a pod replaced under
/// its name is never seen missing), then tells subscribers what changed.
fn apply(state: &State, ops: Vec<IndexOp>) {
    if ops.is_empty() {
        return;
    }
    let changes: Vec<PodChange> = {
        let mut index = state.write_index();
        ops.into_iter().filter_map(|op| op.apply_to(&mut index)).collect()
    };
    state.publish(changes.into_iter().map(WatchEvent::Pod));
}

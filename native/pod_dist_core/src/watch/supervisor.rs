//! The watch task: a supervisor that restarts it whenever it dies, a loop that makes a
//! fresh client after the API rejects the credentials, and the pod source's follow
//! loop (the slice source's is [`super::slice_source`]).

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::time::Instant;

use super::failure::Subject;
use super::health::ErrorKind;
use super::lists::{self, Listing};
use super::relist::{Relists, Step};
use super::slice_source;
use super::state::State;
use super::{MakeClient, WatchEvent, WatchSpec};
use crate::retry::{jitter, Backoff, Paced};
use crate::wire::WirePod;

/// What one watch follows.
pub(super) struct Target {
    namespaces: Vec<Option<String>>,
    source: Source,
    config: watcher::Config,
}

/// Where the index's records come from.
enum Source {
    /// The pods of [`Target::namespaces`].
    Pods,
    /// The EndpointSlices of one Service, written by `managed_by`.
    Slices {
        namespace: String,
        service: String,
        managed_by: String,
    },
}

impl Target {
    /// What `spec` asks to follow, with the watcher's selectors.
    pub(super) fn new(spec: &WatchSpec) -> Target {
        let mut config = watcher::Config::default();
        let source = match &spec.service {
            Some(service) => {
                use crate::slice_wire::{CONTROLLER_MANAGER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
                let managed_by = spec.slice_managed_by.as_deref().unwrap_or(CONTROLLER_MANAGER);
                // Only the manager's slices are even sent: anyone else's speak for nobody.
                config = config.labels(&format!(
                    "{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={managed_by}"
                ));
                Source::Slices {
                    namespace: spec.namespaces.first().cloned().flatten().unwrap_or_default(),
                    service: service.clone(),
                    managed_by: managed_by.to_string(),
                }
            }
            None => {
                if let Some(labels) = &spec.label_selector {
                    config = config.labels(labels);
                }
                if let Some(fields) = &spec.field_selector {
                    config = config.fields(fields);
                }
                Source::Pods
            }
        };
        Target {
            namespaces: spec.namespaces.clone(),
            source,
            config,
        }
    }
}

/// Runs the watch, and runs it again whenever it dies: a panic anywhere in it (a bug in
/// decoding, indexing or a subscriber) must not leave the index frozen, still claiming
/// to be synced, for the rest of the VM's life. Restarts are paced like API retries, so
/// a watch that keeps dying neither spins nor asks the API more often than retries do.
pub(super) async fn supervise(make_client: impl MakeClient, target: Target, state: std::sync::Arc<State>) {
    let mut restarts = Backoff::default();
    loop {
        let ended = AssertUnwindSafe(run(&make_client, &target, &state))
            .catch_unwind()
            .await;
        let reason = match ended {
            Ok(()) => "the watch stopped".to_string(),
            Err(panic) => format!("the watch panicked: {}", panic_message(&*panic)),
        };
        let delay = restarts.failed(Instant::now(), jitter());
        state.restarting(format!("{reason}; restarting it in {} ms", delay.as_millis()));
        tokio::time::sleep(delay).await;
    }
}

/// A panic's message, when it has one.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Follows the API with a fresh client each time the last one's credentials were
/// rejected (a rotated token file is read again), pacing those restarts like retries.
async fn run(make_client: &impl MakeClient, target: &Target, state: &State) {
    let mut reconnects = Backoff::default();
    // The slices known, kept across clients: a relist after a 401 keeps the grace of
    // endpoints on the move.
    let mut merge = crate::slices::SliceMerge::default();
    loop {
        match make_client() {
            Ok(client) => match &target.source {
                Source::Pods => follow_pods(client, target, state).await,
                Source::Slices {
                    namespace,
                    service,
                    managed_by,
                } => {
                    let slices = slice_source::Slices {
                        namespace,
                        service,
                        managed_by,
                    };
                    slice_source::follow(client, &slices, &target.config, &mut merge, state).await
                }
            },
            Err(message) => state.failed(ErrorKind::Client, message, None),
        }
        // A watch that worked for a while starts the schedule over: a rotated token is
        // read again within a second; a token that stays rejected is asked about no
        // more often than a failing watch retries.
        tokio::time::sleep(reconnects.failed(Instant::now(), jitter())).await;
    }
}

/// Follows every namespace with one client until the API rejects its credentials.
async fn follow_pods(client: Client, target: &Target, state: &State) {
    let streams = target.namespaces.iter().map(|ns| {
        let api = match ns {
            Some(ns) => Api::<WirePod>::namespaced(client.clone(), ns),
            None => Api::<WirePod>::all(client.clone()),
        };
        let ns = ns.clone();
        let open: lists::Open<WirePod> = Box::new(move |config| watcher::watcher(api.clone(), config).boxed());
        Paced::new(Listing::new(open, target.config.clone(), state.streaming.clone()))
            .map(move |event| (ns.clone(), event))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut relists = Relists::new(target.namespaces.len());
    while let Some((ns, event)) = events.next().await {
        state.panic_if_asked();
        state.saw(&event);
        let changes = match relists.step(ns, event) {
            Step::Wait => continue,
            Step::Listed {
                namespace,
                records,
                complete,
            } => {
                let changes = state.replace(namespace.as_deref(), records);
                state.listed(changes, complete);
                continue;
            }
            Step::Upsert(record) => record.and_then(|r| state.write_index().upsert(r)),
            Step::Remove { namespace, name } => state.write_index().remove(&namespace, &name),
            Step::Failed { namespace, error } => {
                let scope = namespace
                    .as_deref()
                    .map_or("all namespaces".to_string(), |ns| format!("namespace {ns:?}"));
                if state.failed_with(&error, &Subject::pods(&scope)) == ErrorKind::Unauthorized {
                    // A fresh client re-reads the token file: a rotated token works at once.
                    return;
                }
                continue;
            }
        };
        state.recovered();
        state.publish(changes.into_iter().map(WatchEvent::Pod));
    }
}

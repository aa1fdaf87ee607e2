//! The pod source's step: one watcher event of one namespace in, what to do to the
//! index out. Pure, so the re-list rules are tested without a server.
//!
//! A (re-)list arrives as `Init`, `InitApply`..., `InitDone`. Its pods are buffered and
//! replace the namespace's only when the list is complete, so readers never see a
//! half-listed index; the watch is synced once every namespace has been listed.

use std::collections::{HashMap, HashSet};

use kube::runtime::watcher::{self, Event};

use super::failure::is_expired;
use crate::pod::PodRecord;
use crate::wire::WirePod;

/// The re-lists under way, and the namespaces listed at least once.
pub(super) struct Relists {
    namespaces: usize,
    buffers: HashMap<Option<String>, Vec<PodRecord>>,
    listed: HashSet<Option<String>>,
}

/// What one event asks of the index.
#[derive(Debug)]
pub(super) enum Step {
    /// Nothing yet: a re-list is under way, or a `410 Gone`, which only means "re-list"
    /// (the watcher is doing it): not worth an alarm.
    Wait,
    /// The (re-)list of `namespace` is in: its pods are `records`. `complete`: every
    /// namespace has been listed, the index will match the server.
    Listed {
        namespace: Option<String>,
        records: Vec<PodRecord>,
        complete: bool,
    },
    /// A pod was added or changed; `None`: it lacks a namespace, name or uid.
    Upsert(Option<PodRecord>),
    /// A pod was deleted.
    Remove { namespace: String, name: String },
    /// The watcher of `namespace` failed.
    Failed {
        namespace: Option<String>,
        error: watcher::Error,
    },
}

impl Relists {
    /// For a watch of `namespaces` namespaces.
    pub(super) fn new(namespaces: usize) -> Relists {
        Relists {
            namespaces,
            buffers: HashMap::new(),
            listed: HashSet::new(),
        }
    }

    /// Takes one event of namespace `ns`.
    pub(super) fn step(&mut self, ns: Option<String>, event: watcher::Result<Event<WirePod>>) -> Step {
        match event {
            Ok(Event::Init) => {
                self.buffers.insert(ns, Vec::new());
                Step::Wait
            }
            Ok(Event::InitApply(pod)) => {
                self.buffers.entry(ns).or_default().extend(PodRecord::from_pod(&pod));
                Step::Wait
            }
            Ok(Event::InitDone) => {
                let records = self.buffers.remove(&ns).unwrap_or_default();
                self.listed.insert(ns.clone());
                Step::Listed {
                    namespace: ns,
                    records,
                    complete: self.listed.len() == self.namespaces,
                }
            }
            Ok(Event::Apply(pod)) => Step::Upsert(PodRecord::from_pod(&pod)),
            Ok(Event::Delete(pod)) => Step::Remove {
                namespace: pod.metadata.namespace.unwrap_or_default(),
                name: pod.metadata.name.unwrap_or_default(),
            },
            Err(error) if is_expired(&error) => Step::Wait,
            Err(error) => Step::Failed { namespace: ns, error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn pod(ns: &str, name: &str) -> WirePod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "namespace": ns, "name": name, "uid": format!("{ns}-{name}"), "resourceVersion": "7" },
            "status": { "phase": "Running", "podIP": "198.51.100.1" }
        }))
        .unwrap()
    }

    fn ns(name: &str) -> Option<String> {
        Some(name.into())
    }

    fn names(step: &Step) -> (Option<String>, Vec<String>, bool) {
        match step {
            Step::Listed {
                namespace,
                records,
                complete,
            } => (
                namespace.clone(),
                records.iter().map(|r| r.name.to_string()).collect(),
                *complete,
            ),
            other => panic!("not a listing: {other:?}"),
        }
    }

    #[test]
    fn a_relist_is_applied_whole_and_synced_once_every_namespace_is_listed() {
        let mut relists = Relists::new(2);
        assert!(matches!(relists.step(ns("a"), Ok(Event::Init)), Step::Wait));
        assert!(matches!(relists.step(ns("b"), Ok(Event::Init)), Step::Wait));
        assert!(matches!(
            relists.step(ns("a"), Ok(Event::InitApply(pod("a", "a-0")))),
            Step::Wait
        ));
        assert!(matches!(
            relists.step(ns("b"), Ok(Event::InitApply(pod("b", "b-0")))),
            Step::Wait
        ));
        assert!(matches!(
            relists.step(ns("a"), Ok(Event::InitApply(pod("a", "a-1")))),
            Step::Wait
        ));
        let a = relists.step(ns("a"), Ok(Event::InitDone));
        assert_eq!(names(&a), (ns("a"), vec!["a-0".into(), "a-1".into()], false));
        let b = relists.step(ns("b"), Ok(Event::InitDone));
        assert_eq!(names(&b), (ns("b"), vec!["b-0".into()], true));

        // A later re-list of one namespace starts from nothing and is complete again.
        relists.step(ns("a"), Ok(Event::Init));
        let a = relists.step(ns("a"), Ok(Event::InitDone));
        assert_eq!(names(&a), (ns("a"), vec![], true));
    }

    #[test]
    fn changes_pass_through_and_a_pod_without_a_uid_is_skipped() {
        let mut relists = Relists::new(1);
        assert!(matches!(
            relists.step(None, Ok(Event::Apply(pod("a", "a-0")))),
            Step::Upsert(Some(record)) if &*record.name == "a-0"
        ));
        let mut nameless = pod("a", "a-1");
        nameless.metadata.uid = None;
        assert!(matches!(
            relists.step(None, Ok(Event::Apply(nameless.clone()))),
            Step::Upsert(None)
        ));
        assert!(matches!(
            relists.step(None, Ok(Event::Delete(nameless))),
            Step::Remove { namespace, name } if namespace == "a" && name == "a-1"
        ));
    }

    #[test]
    fn a_410_waits_for_the_relist_and_other_errors_fail_their_namespace() {
        let mut relists = Relists::new(1);
        let gone = watcher::Error::WatchError(Status::failure("too old", "Expired").with_code(410).boxed());
        assert!(matches!(relists.step(ns("a"), Err(gone)), Step::Wait));
        let denied = watcher::Error::WatchError(Status::failure("no", "Forbidden").with_code(403).boxed());
        assert!(matches!(
            relists.step(ns("a"), Err(denied)),
            Step::Failed { namespace, .. } if namespace == ns("a")
        ));
    }
}

//! What subscribers receive: `{:pod_dist, tag, event}` messages.

use pod_dist_core::index::PodChange;
use pod_dist_core::watch::WatchEvent;
use rustler::{NifRecord, NifTaggedEnum, Term};

use crate::health::Health;
use crate::pod::Pod;

/// A message to a subscriber: `{:pod_dist, tag, body}`.
#[derive(NifRecord)]
#[tag = "pod_dist"]
#[rustler(encode)]
pub struct Message<'a, T> {
    /// The subscriber's tag, loaded into the message's env.
    pub tag: Term<'a>,
    /// An [`Event`] or a [`Status`].
    pub body: T,
}

/// A watch event (`PodDist.Watch.event/0`): `{:added, pod}`, `{:changed, old, new}`,
/// `{:deleted, pod}`, `:synced` or `{:api_error, message}`.
// Built only to be encoded at once: its size on the stack costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(NifTaggedEnum)]
#[rustler(encode)]
pub enum Event<'a> {
    /// `{:added, pod}`
    Added(Pod<'a>),
    /// `{:changed, old, new}`
    Changed(Pod<'a>, Pod<'a>),
    /// `{:deleted, pod}`
    Deleted(Pod<'a>),
    /// `:synced`
    Synced,
    /// `{:api_error, message}`
    ApiError(&'a str),
}

impl<'a> Event<'a> {
    /// `event` with its pods' hosts in a cluster whose DNS domain is `cluster_domain`.
    pub fn new(event: &'a WatchEvent, cluster_domain: &str) -> Event<'a> {
        let pod = |record| Pod::new(record, cluster_domain);
        match event {
            WatchEvent::Pod(PodChange::Added(record)) => Event::Added(pod(record)),
            WatchEvent::Pod(PodChange::Changed { old, new }) => Event::Changed(pod(old), pod(new)),
            WatchEvent::Pod(PodChange::Deleted(record)) => Event::Deleted(pod(record)),
            WatchEvent::Synced => Event::Synced,
            WatchEvent::ApiError(message) => Event::ApiError(message),
        }
    }
}

/// What a status subscriber hears (`PodDist.Telemetry`'s reporter): `{:synced, health}`,
/// `{:api_error, message, health}`, `:stopped`.
#[derive(NifTaggedEnum)]
#[rustler(encode)]
pub enum Status<'a> {
    /// `{:synced, health}`
    Synced(Health<'a>),
    /// `{:api_error, message, health}`
    ApiError(&'a str, Health<'a>),
    /// `:stopped`
    Stopped,
}

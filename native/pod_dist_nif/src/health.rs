//! A watch's health as the map `PodDist.Watch.health/1` returns.

use std::time::UNIX_EPOCH;

use pod_dist_core::watch::{self, ErrorKind};
use rustler::{NifMap, NifTaggedEnum, NifUnitEnum, NifUntaggedEnum};

/// The health map: the keys of `PodDist.Watch.health/1`'s spec.
#[derive(NifMap)]
#[rustler(encode)]
pub struct Health<'a> {
    synced: bool,
    /// When the last (re-)list completed, in milliseconds since the epoch.
    last_sync: Option<u64>,
    resource_version: Option<&'a str>,
    errors: u64,
    last_error: Option<&'a str>,
    error: Option<Error>,
    service_account: Option<(&'a str, &'a str)>,
    cluster_domain: &'a str,
    pods: usize,
    index_bytes: usize,
    api_url: Option<&'a str>,
    credentials: Option<&'a str>,
    namespaces: Namespaces<'a>,
    source: Source<'a>,
    restarts: u64,
    last_restart: Option<&'a str>,
}

impl<'a> From<&'a watch::Health> for Health<'a> {
    fn from(health: &'a watch::Health) -> Health<'a> {
        Health {
            synced: health.synced,
            last_sync: health
                .last_sync
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
            resource_version: health.resource_version.as_deref(),
            errors: health.errors,
            last_error: health.last_error.as_deref(),
            error: health.last_error_kind.map(Error::from),
            service_account: health
                .service_account
                .as_ref()
                .map(|(namespace, name)| (namespace.as_str(), name.as_str())),
            cluster_domain: &health.cluster_domain,
            pods: health.pods,
            index_bytes: health.index_bytes,
            api_url: health.origin.as_ref().map(|(url, _)| url.as_str()),
            credentials: health.origin.as_ref().map(|(_, source)| *source),
            namespaces: Namespaces::from(&health.namespaces[..]),
            source: health.service.as_deref().map_or(Source::Pods, Source::Service),
            restarts: health.restarts,
            last_restart: health.last_restart.as_deref(),
        }
    }
}

/// What the watch's last failure was (`PodDist.Watch.error/0`): an atom, or
/// `{:status, code}` for an HTTP status without an atom of its own.
#[derive(NifTaggedEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[rustler(encode)]
pub enum Error {
    /// `:unreachable`
    Unreachable,
    /// `:certificate`
    Certificate,
    /// `:unauthorized`
    Unauthorized,
    /// `:forbidden`
    Forbidden,
    /// `{:status, code}`
    Status(u16),
    /// `:client`
    Client,
    /// `:crashed`
    Crashed,
    /// `:throttled`
    Throttled,
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        match kind {
            ErrorKind::Unreachable => Error::Unreachable,
            ErrorKind::Certificate => Error::Certificate,
            ErrorKind::Unauthorized => Error::Unauthorized,
            ErrorKind::Forbidden => Error::Forbidden,
            ErrorKind::Status(code) => Error::Status(code),
            ErrorKind::Client => Error::Client,
            ErrorKind::Crashed => Error::Crashed,
            ErrorKind::Throttled => Error::Throttled,
        }
    }
}

/// The namespaces watched: `:all`, or their names.
#[derive(NifUntaggedEnum)]
#[rustler(encode)]
pub enum Namespaces<'a> {
    /// `:all`
    All(Everywhere),
    /// The names.
    Named(Vec<&'a str>),
}

/// The atom `:all`.
#[derive(NifUnitEnum)]
pub enum Everywhere {
    /// `:all`
    All,
}

impl<'a> From<&'a [Option<String>]> for Namespaces<'a> {
    /// `[None]` (the watch's form of "every namespace") is `:all`.
    fn from(namespaces: &'a [Option<String>]) -> Namespaces<'a> {
        match namespaces {
            [None] => Namespaces::All(Everywhere::All),
            _ => Namespaces::Named(namespaces.iter().flatten().map(String::as_str).collect()),
        }
    }
}

/// What the records come from: `:pods`, or `{:service, name}` (its EndpointSlices).
#[derive(NifTaggedEnum)]
#[rustler(encode)]
pub enum Source<'a> {
    /// `:pods`
    Pods,
    /// `{:service, name}`
    Service(&'a str),
}

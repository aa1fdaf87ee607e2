//! What the watch reports about itself: [`Health`], read by diagnostics, and the
//! [`ErrorKind`] of the failure it is in, for them to act on without reading prose.

use std::time::SystemTime;

/// The watch's health, for diagnostics.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Every namespace has been listed at least once.
    pub synced: bool,
    /// When the last (re-)list completed.
    pub last_sync: Option<SystemTime>,
    /// The newest resourceVersion seen on an object.
    pub resource_version: Option<String>,
    /// Errors seen since the start.
    pub errors: u64,
    /// The last error, cleared once the watch works again.
    pub last_error: Option<String>,
    /// Pods indexed.
    pub pods: usize,
    /// Heap bytes held by the index (records and lookup tables).
    pub index_bytes: usize,
    /// What failed last; `None` while nothing does.
    pub last_error_kind: Option<ErrorKind>,
    /// The service account (namespace, name) the API named when it denied access, kept
    /// once learnt: whom a Role must be bound to.
    pub service_account: Option<(String, String)>,
    /// The cluster DNS domain qualified names are read in.
    pub cluster_domain: String,
    /// How often the watch died (a panic) and was restarted.
    pub restarts: u64,
    /// Why it was last restarted; kept after it recovers, for diagnostics.
    pub last_restart: Option<String>,
    /// The API server watched, and where its credentials came from (for diagnostics).
    pub origin: Option<(String, &'static str)>,
    /// The namespaces watched; `None` stands for all of them.
    pub namespaces: Vec<Option<String>>,
    /// The Service whose EndpointSlices are the source; `None`: pods are.
    pub service: Option<String>,
}

impl Health {
    /// The watch works again: no error is current (the count and the service account
    /// learnt stay, for diagnostics).
    pub(super) fn recovered(&mut self) {
        self.last_error = None;
        self.last_error_kind = None;
    }

    /// Records a failure of `kind`; true if it is news (no error, or another kind, was
    /// current): subscribers hear of a failure once per kind, however often retries fail.
    pub(super) fn failed(&mut self, kind: ErrorKind, message: &str, account: Option<(String, String)>) -> bool {
        self.errors += 1;
        let news = self.last_error.is_none() || self.last_error_kind != Some(kind);
        self.last_error = Some(message.to_string());
        self.last_error_kind = Some(kind);
        if account.is_some() {
            self.service_account = account;
        }
        news
    }

    /// Records that the watch died and is restarted for `reason`: it is no longer
    /// synced until the restarted watch has listed every namespace.
    pub(super) fn restarting(&mut self, reason: &str) {
        self.synced = false;
        self.restarts += 1;
        self.errors += 1;
        self.last_error = Some(reason.to_string());
        self.last_error_kind = Some(ErrorKind::Crashed);
        self.last_restart = Some(reason.to_string());
    }
}

/// What kind of failure the watch is in, for diagnostics to act on without reading
/// the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API server could not be reached.
    Unreachable,
    /// The API server's certificate is not signed by the configured CA.
    Certificate,
    /// `401`: the credentials were rejected.
    Unauthorized,
    /// `403`: the credentials may not list or watch pods (or the Service's slices).
    Forbidden,
    /// Another HTTP status.
    Status(u16),
    /// No client could be made from the configuration.
    Client,
    /// The watch itself died (a bug) and is being restarted.
    Crashed,
    /// `429`: the API server's priority and fairness turned requests away; the watch
    /// waits the server's `Retry-After` (see [`crate::retry::RETRY_AFTER_CAP`]) on top of
    /// its backoff before the next.
    Throttled,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Option<(String, String)> {
        Some(("prod".into(), "api".into()))
    }

    #[test]
    fn a_failure_is_news_once_per_kind_and_again_after_a_recovery() {
        let mut health = Health::default();
        assert!(health.failed(ErrorKind::Forbidden, "403", account()));
        assert!(!health.failed(ErrorKind::Forbidden, "403 again", None));
        assert!(health.failed(ErrorKind::Unreachable, "down", None));
        assert_eq!(health.errors, 3);
        assert_eq!(health.last_error.as_deref(), Some("down"));
        // The account learnt stays through other failures and a recovery.
        health.recovered();
        assert_eq!((&health.last_error, health.last_error_kind), (&None, None));
        assert_eq!(health.service_account, account());
        assert!(health.failed(ErrorKind::Unreachable, "down", None));
    }

    #[test]
    fn a_restart_unsyncs_and_is_kept_after_the_recovery() {
        let mut health = Health {
            synced: true,
            ..Health::default()
        };
        health.restarting("the watch panicked: boom");
        assert!(!health.synced);
        assert_eq!((health.restarts, health.errors), (1, 1));
        assert_eq!(health.last_error_kind, Some(ErrorKind::Crashed));
        health.recovered();
        assert_eq!(health.last_restart.as_deref(), Some("the watch panicked: boom"));
        assert_eq!(health.last_error, None);
    }
}

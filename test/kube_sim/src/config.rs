//! How a simulator starts.

use std::net::SocketAddr;
use std::time::Duration;

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTPS API address (port 0 picks one).
    pub listen: SocketAddr,
    /// The plain-HTTP control address, if wanted. Keep it on loopback.
    pub control: Option<SocketAddr>,
    /// Changes kept for resuming watches and paging; older versions get `410 Expired`.
    pub history_limit: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Extra DNS names or IPs for the serving certificate (e.g. an address pods use).
    pub extra_sans: Vec<String>,
    /// The namespace of the service account PodDist runs as.
    pub service_account_namespace: String,
    /// The service account's name.
    pub service_account_name: String,
    /// How watches with `sendInitialEvents=true` (streaming lists) are answered.
    pub streaming_lists: StreamingLists,
}

/// How the server answers a streaming list (a watch with `sendInitialEvents=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamingLists {
    /// As Kubernetes 1.32+ does (the `WatchList` feature on): the initial state, then a
    /// BOOKMARK annotated `k8s.io/initial-events-end: "true"`.
    #[default]
    Served,
    /// As older servers do (the feature off): `422 Invalid`, the parameter forbidden.
    Rejected,
    /// The initial state with no end bookmark, as a server (or proxy) that drops the
    /// parameter and serves a plain watch from `resourceVersion=0` does.
    Unannounced,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            control: None,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            extra_sans: Vec::new(),
            service_account_namespace: "default".into(),
            service_account_name: "pod-dist".into(),
            streaming_lists: StreamingLists::Served,
        }
    }
}

//! `kube_sim`: a Kubernetes API server simulator for the core/v1 Pod API, Services and
//! `discovery.k8s.io/v1` EndpointSlices (with the endpoint-slice controller).
//!
//! It speaks the real wire protocol (HTTPS, bearer tokens, `Status` errors, discovery,
//! list/watch with resourceVersions, bookmarks, paging, selectors, Tables for kubectl)
//! so that kube-rs, kubectl and the official Python client run against it unmodified.
//! Tests drive it through this library, or through the `kube_sim` binary and its
//! loopback control port.
//!
//! Layers, top to bottom: [`Simulator`] (listeners, files for clients), [`server`]
//! (connections), [`api`] (HTTP routes), [`watch`] (event streams), [`store`] (objects of
//! each kind in [`resources`], and their history), with [`endpoints`] (the endpoint-slice
//! controller), [`auth`], [`faults`], [`selector`], [`patch`], [`query`], [`table`] and
//! [`status`] beside them. Dependencies point down: no module uses the crate root.

pub mod api;
pub mod auth;
pub mod churn;
pub mod config;
pub mod control;
pub mod endpoints;
pub mod faults;
pub mod fixtures;
pub mod manifest;
pub mod meta;
pub mod netns;
pub mod objects;
pub mod patch;
pub mod query;
pub mod resources;
pub mod selector;
mod server;
pub mod shared;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;
pub mod watch;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::Listener;
use crate::faults::Outage;
use crate::status::ApiError;
use crate::tls::CertAuthority;

pub use crate::config::{Config, StreamingLists};
pub use crate::shared::Shared;

/// A running simulator. Dropping it does not stop the listeners; they live as long as
/// the tokio runtime they were started on.
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    control_addr: Option<SocketAddr>,
    ca: CertAuthority,
}

impl Simulator {
    /// Starts the listeners on the current tokio runtime.
    pub async fn start(config: Config) -> io::Result<Simulator> {
        let api = std::net::TcpListener::bind(config.listen)?;
        Self::start_on(api, config).await
    }

    /// Starts with an API listener bound by the caller (in another network namespace, say:
    /// see [`netns::bind`]). `config.listen` is ignored.
    pub async fn start_on(api: std::net::TcpListener, config: Config) -> io::Result<Simulator> {
        let ca = CertAuthority::new("kube-sim-ca").map_err(io::Error::other)?;
        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "kubernetes.default.svc".to_string(),
        ];
        sans.extend(config.extra_sans.iter().cloned());
        let serving = ca.issue(&sans).map_err(io::Error::other)?;
        let acceptor = TlsAcceptor::from(serving.server_config().map_err(io::Error::other)?);
        let shared = Arc::new(Shared::new(config.clone()));
        endpoints::spawn(&shared);
        api.set_nonblocking(true)?;
        let listener = TcpListener::from_std(api)?;
        let addr = listener.local_addr()?;
        tokio::spawn(server::serve(listener, Some(acceptor), shared.clone(), Listener::Api));
        let control_addr = match config.control {
            Some(control) => {
                let listener = TcpListener::bind(control).await?;
                let addr = listener.local_addr()?;
                tokio::spawn(server::serve(listener, None, shared.clone(), Listener::Control));
                Some(addr)
            }
            None => None,
        };
        Ok(Simulator {
            shared,
            addr,
            control_addr,
            ca,
        })
    }

    /// The API's base URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The API's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control port's base URL, if one was asked for.
    pub fn control_url(&self) -> Option<String> {
        self.control_addr.map(|a| format!("http://{a}"))
    }

    /// The CA certificate clients must trust, PEM-encoded.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The simulator's CA, to issue more certificates from (TLS distribution tests).
    pub fn ca(&self) -> &CertAuthority {
        &self.ca
    }

    /// The service account's current token.
    pub fn token(&self) -> String {
        self.shared.auth.service_account_token()
    }

    /// The admin token.
    pub fn admin_token(&self) -> String {
        self.shared.auth.admin_token()
    }

    /// Shared state: the store, auth, faults and counters.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Creates a pod as the admin would.
    pub fn create_pod(&self, namespace: &str, pod: Pod) -> Result<Arc<Pod>, ApiError> {
        self.shared.store.create(namespace, pod)
    }

    /// Changes a pod's status as the kubelet would.
    pub fn set_status(
        &self,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut k8s_openapi::api::core::v1::PodStatus),
    ) -> Result<Arc<Pod>, ApiError> {
        self.shared.store.update(namespace, name, |old| {
            let mut new = old.clone();
            change(new.status.get_or_insert_with(Default::default));
            Ok(new)
        })
    }

    /// Deletes a pod (gracefully when it is bound to a node, as on a real cluster).
    pub fn delete_pod(&self, namespace: &str, name: &str, grace_seconds: Option<i64>) -> Result<Arc<Pod>, ApiError> {
        self.shared.delete_pod(namespace, name, grace_seconds)
    }

    /// Starts an outage: `503`s, or dropped connections, for `duration`.
    pub fn outage(&self, kind: Outage, duration: Duration) {
        self.shared.faults.outage(kind, duration);
    }

    /// Rotates the service-account token.
    pub fn rotate_token(&self) -> String {
        self.shared.rotate_token()
    }

    /// Writes a kubeconfig for the admin (`admin = true`) or the service account.
    pub fn write_kubeconfig(&self, path: &Path, admin: bool) -> io::Result<()> {
        let (user, token) = if admin {
            ("kube-sim-admin", self.admin_token())
        } else {
            ("pod-dist", self.token())
        };
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: {user}\n    namespace: {ns}\ncurrent-context: kube-sim\n",
            url = self.url(),
            ns = self.shared.config.service_account_namespace,
        );
        write_private(path, &yaml)
    }

    /// Lays out a service-account directory as the kubelet mounts it
    /// (`token`, `ca.crt`, `namespace`); token rotations rewrite its `token`.
    pub fn write_service_account(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_private(&dir.join("token"), &self.token())?;
        std::fs::write(dir.join("ca.crt"), self.ca_pem())?;
        std::fs::write(dir.join("namespace"), &self.shared.config.service_account_namespace)?;
        self.shared.set_service_account_dir(dir);
        Ok(())
    }
}

fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

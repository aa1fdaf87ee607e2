//! Where the Kubernetes API is and how to authenticate: explicit options, then the
//! in-cluster service account, then a kubeconfig. TLS verification is always on.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{Either, Full};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Where the service account is mounted in every pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach the API. Every field is optional; see [`config`] for the order.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// API server URL, e.g. `https://10.0.0.1:443`.
    pub api_url: Option<String>,
    /// CA bundle file (PEM) to verify the API server with.
    pub ca_file: Option<PathBuf>,
    /// Bearer token. Prefer `token_file`, which is re-read when it rotates.
    pub token: Option<String>,
    /// File holding the bearer token (re-read at least once a minute).
    pub token_file: Option<PathBuf>,
    /// Service-account directory for in-cluster config (default [`SERVICE_ACCOUNT_DIR`]).
    pub service_account_dir: Option<PathBuf>,
    /// Kubeconfig file (default: `KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
}

impl std::fmt::Debug for ConnectOptions {
    // Hand-written so a token can never reach a log line or an error term.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("api_url", &self.api_url)
            .field("ca_file", &self.ca_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("service_account_dir", &self.service_account_dir)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

/// Which source a configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `api_url` and friends were given.
    Explicit,
    /// `KUBERNETES_SERVICE_HOST`/`PORT` and the service-account files.
    InCluster,
    /// A kubeconfig file.
    Kubeconfig,
}

impl Source {
    /// A short name for diagnostics.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Explicit => "explicit",
            Source::InCluster => "in_cluster",
            Source::Kubeconfig => "kubeconfig",
        }
    }
}

/// A resolved client configuration, plus the namespace the credentials belong to.
pub struct Resolved {
    /// The kube-rs configuration.
    pub config: kube::Config,
    /// Where it came from.
    pub source: Source,
    /// The namespace to watch when none is configured.
    pub default_namespace: String,
}

/// Builds the client configuration: explicit `api_url` first, then in-cluster (when
/// `KUBERNETES_SERVICE_HOST` is set), then a kubeconfig.
///
/// Which token goes where: the in-cluster API server gets the pod's service-account
/// token; an explicit `api_url` gets `token` or `token_file` when one is named, else the
/// token of a named `service_account_dir`. The pod's own service-account token (in the
/// default directory) goes to an explicit `api_url` only if that is the in-cluster API
/// server: for any other server the credentials must be named, and are refused
/// otherwise (a token must never be sent silently to a server it was not issued for).
pub async fn config(options: &ConnectOptions) -> Result<Resolved, String> {
    config_in(options, Path::new(SERVICE_ACCOUNT_DIR)).await
}

/// [`config`], with the pod's own service account mounted at `default_sa_dir`.
async fn config_in(options: &ConnectOptions, default_sa_dir: &Path) -> Result<Resolved, String> {
    let sa_dir = options
        .service_account_dir
        .clone()
        .unwrap_or_else(|| default_sa_dir.to_path_buf());
    let sa_namespace = std::fs::read_to_string(sa_dir.join("namespace"))
        .ok()
        .map(|s| s.trim().to_string());
    let mut resolved = if let Some(url) = &options.api_url {
        let mut config = kube::Config::new(url.parse().map_err(|e| format!("invalid api_url {url:?}: {e}"))?);
        let ca = options
            .ca_file
            .clone()
            .or_else(|| Some(sa_dir.join("ca.crt")).filter(|p| p.exists()));
        if let Some(ca) = ca {
            config.root_cert = Some(read_ca(&ca)?);
        }
        let named = options.token.is_some() || options.token_file.is_some() || options.service_account_dir.is_some();
        let target = &config.cluster_url;
        let in_cluster = target.scheme_str() == Some("https")
            && in_cluster_address(
                target.host().unwrap_or(""),
                target.port_u16().unwrap_or(443),
                std::env::var("KUBERNETES_SERVICE_HOST").ok().as_deref(),
                std::env::var("KUBERNETES_SERVICE_PORT").ok().as_deref(),
            );
        if !named && !in_cluster && sa_dir.join("token").exists() {
            return Err(format!(
                "api_url {url:?} is not the in-cluster API server, and no credentials are named for it: pass token_file (or token; POD_DIST_TOKEN_FILE for PodDist.Epmd), or service_account_dir to send that service account's token. This pod's own service-account token ({}) is sent only to the in-cluster API server",
                sa_dir.join("token").display()
            ));
        }
        config.auth_info.token = options.token.clone().map(Into::into);
        config.auth_info.token_file = options
            .token_file
            .clone()
            .or_else(|| Some(sa_dir.join("token")).filter(|p| options.token.is_none() && p.exists()))
            .map(|p| p.display().to_string());
        Resolved {
            config,
            source: Source::Explicit,
            default_namespace: sa_namespace.clone().unwrap_or_default(),
        }
    } else if let Ok(host) = std::env::var("KUBERNETES_SERVICE_HOST") {
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        // No DNS needed: the service host is an IP (IPv6 ones need brackets).
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let url = format!("https://{authority}");
        let mut config = kube::Config::new(
            url.parse()
                .map_err(|e| format!("invalid in-cluster address {url}: {e}"))?,
        );
        config.root_cert = Some(read_ca(&sa_dir.join("ca.crt"))?);
        let token = sa_dir.join("token");
        if !token.exists() {
            return Err(format!(
                "in-cluster config: no service-account token at {}; is automountServiceAccountToken false?",
                token.display()
            ));
        }
        config.auth_info.token_file = Some(token.display().to_string());
        Resolved {
            config,
            source: Source::InCluster,
            default_namespace: sa_namespace.clone().unwrap_or_default(),
        }
    } else {
        let kubeconfig = match &options.kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        }
        .map_err(|e| format!("no API configuration: not in a cluster (KUBERNETES_SERVICE_HOST unset), no api_url given, and no usable kubeconfig: {e}"))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| format!("kubeconfig: {e}"))?;
        let namespace = config.default_namespace.clone();
        Resolved {
            config,
            source: Source::Kubeconfig,
            default_namespace: namespace,
        }
    };
    // Never trust an unverified API server, whatever a kubeconfig says.
    resolved.config.accept_invalid_certs = false;
    // The watcher retries with its own backoff and reports each failure. The client's
    // default retries (429/503/504, 15 times, doubling up to minutes) would hide an
    // outage entirely and resume tens of seconds after the API is back.
    resolved.config.default_retry = false;
    if resolved.default_namespace.is_empty() {
        resolved.default_namespace = "default".into();
    }
    Ok(resolved)
}

/// Whether an `https` URL's `host` and `port` are the in-cluster API server's: the
/// address `KUBERNETES_SERVICE_HOST` and `_PORT` give (`service_host`, `service_port`),
/// or the `kubernetes.default.svc` Service by name; never outside a pod (no service host).
fn in_cluster_address(host: &str, port: u16, service_host: Option<&str>, service_port: Option<&str>) -> bool {
    let Some(service_host) = service_host.filter(|h| !h.is_empty()) else {
        return false;
    };
    let service_port: u16 = service_port.and_then(|p| p.parse().ok()).unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let by_name = matches!(host, "kubernetes" | "kubernetes.default" | "kubernetes.default.svc")
        || host.starts_with("kubernetes.default.svc.");
    port == service_port && (host == service_host || by_name)
}

/// A digest of the credentials `config` authenticates with (SHA-256 of every
/// authentication field, secrets included, in hex): watches share only with the same
/// credentials, and no secret is kept in clear to tell them apart.
pub fn credentials_digest(config: &kube::Config) -> String {
    // Serializing AuthInfo exposes its secrets, into this buffer only.
    let fields = serde_json::to_vec(&config.auth_info).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &fields);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn read_ca(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA bundle {}: {e}", path.display()))?
        .filter_map(Result::ok)
        .map(|der| der.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(format!("CA bundle {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A kube client for `config`, built inside the shared runtime's context as kube requires.
/// Its `429` errors carry the response's `Retry-After` (see [`retry_after_in_status`]).
pub fn client(config: kube::Config) -> Result<kube::Client, String> {
    let _entered = crate::runtime::runtime().enter();
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot build the Kubernetes client: {e}"))?;
    Ok(builder
        .with_layer(&tower::util::MapResponseLayer::new(retry_after_in_status))
        .build())
}

/// A `429 Too Many Requests` with a `Retry-After` header, its body replaced by a
/// `Status` whose `details.retryAfterSeconds` holds the header's delay. kube's client
/// keeps only the body of an error (API Priority and Fairness sends plain text and the
/// delay in the header alone); this is how the delay reaches the watch
/// ([`crate::retry::retry_after`]). Other responses pass untouched.
pub fn retry_after_in_status<B>(response: http::Response<B>) -> http::Response<Either<B, Full<Bytes>>> {
    let seconds = (response.status() == http::StatusCode::TOO_MANY_REQUESTS)
        .then(|| response.headers().get(http::header::RETRY_AFTER))
        .flatten()
        .and_then(|value| value.to_str().ok()?.trim().parse::<u32>().ok());
    let Some(seconds) = seconds else {
        return response.map(Either::Left);
    };
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("Too many requests (Retry-After: {seconds} s)"),
        "reason": "TooManyRequests",
        "details": { "retryAfterSeconds": seconds },
        "code": 429,
    });
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(http::header::CONTENT_LENGTH);
    http::Response::from_parts(parts, Either::Right(Full::new(Bytes::from(status.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_cluster_api_server_is_the_service_address_or_its_name_in_a_pod() {
        let pod = (Some("10.96.0.1"), Some("443"));
        for (host, port) in [
            ("10.96.0.1", 443),
            ("kubernetes.default.svc", 443),
            ("kubernetes.default.svc.cluster.local", 443),
            ("kubernetes", 443),
        ] {
            assert!(in_cluster_address(host, port, pod.0, pod.1), "{host}:{port}");
        }
        for (host, port) in [("10.96.0.1", 6443), ("10.96.0.2", 443), ("api.example.com", 443)] {
            assert!(!in_cluster_address(host, port, pod.0, pod.1), "{host}:{port}");
        }
        // IPv6 service host; and outside a pod nothing is in-cluster.
        assert!(in_cluster_address("[fd00::1]", 443, Some("fd00::1"), None));
        assert!(!in_cluster_address("kubernetes.default.svc", 443, None, None));
    }

    /// The pod's own service account, mounted (here in a temporary directory standing
    /// for the default one): its token is offered to no server it was not issued for.
    #[tokio::test]
    async fn another_api_server_never_gets_the_pod_s_own_token_unless_named() {
        let mounted = std::env::temp_dir().join(format!("pod-dist-sa-{}", std::process::id()));
        std::fs::create_dir_all(&mounted).unwrap();
        std::fs::write(mounted.join("token"), "pod-token").unwrap();
        let elsewhere = || ConnectOptions {
            api_url: Some("https://api.example.com:6443".into()),
            ..Default::default()
        };
        let error = config_in(&elsewhere(), &mounted).await.err().unwrap();
        assert!(error.contains("pass token_file (or token"), "{error}");
        assert!(!error.contains("pod-token"), "{error}");

        // Named credentials go where they are named.
        let named = ConnectOptions {
            token: Some("for-that-server".into()),
            ..elsewhere()
        };
        let resolved = config_in(&named, &mounted).await.unwrap();
        assert_eq!(resolved.config.auth_info.token_file, None);
        let other = ConnectOptions {
            token_file: Some("/elsewhere/token".into()),
            ..elsewhere()
        };
        let resolved = config_in(&other, &mounted).await.unwrap();
        assert_eq!(
            resolved.config.auth_info.token_file.as_deref(),
            Some("/elsewhere/token")
        );
        // Naming the directory names its token.
        let dir = ConnectOptions {
            service_account_dir: Some(mounted.clone()),
            ..elsewhere()
        };
        let resolved = config_in(&dir, &mounted).await.unwrap();
        assert!(resolved.config.auth_info.token_file.is_some());
        std::fs::remove_dir_all(&mounted).unwrap();
    }

    #[tokio::test]
    async fn the_credentials_digest_tells_tokens_and_files_apart_and_hides_them() {
        let digest = |options: ConnectOptions| async move {
            let options = ConnectOptions {
                api_url: Some("https://api.example.com".into()),
                ..options
            };
            credentials_digest(&config_in(&options, Path::new("/nonexistent")).await.unwrap().config)
        };
        let token = |t: &str| ConnectOptions {
            token: Some(t.into()),
            ..Default::default()
        };
        let a = digest(token("token-a")).await;
        assert_eq!(a, digest(token("token-a")).await);
        assert_ne!(a, digest(token("token-b")).await);
        let file = ConnectOptions {
            token_file: Some("/a/token".into()),
            ..Default::default()
        };
        assert_ne!(a, digest(file).await);
        assert_eq!(a.len(), 64);
        assert!(!a.contains("token-a"));
    }
}

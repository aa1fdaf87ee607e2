//! The state every connection shares: stores, auth, faults, counters, configuration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;

use crate::auth::Auth;
use crate::config::Config;
use crate::faults::{Faults, Stats};
use crate::objects::Objects;
use crate::status::ApiError;
use crate::store::{Deletion, Store};

/// State shared by every connection.
pub struct Shared {
    /// The objects.
    pub store: Store,
    /// Objects of the other kinds manifests hold.
    pub objects: Objects,
    /// Tokens and RBAC.
    pub auth: Auth,
    /// Fault switches.
    pub faults: Faults,
    /// Counters.
    pub stats: Stats,
    /// The start configuration.
    pub config: Config,
    service_account_dir: Mutex<Option<PathBuf>>,
}

impl Shared {
    /// Fresh state: empty stores, new tokens, no faults.
    pub fn new(config: Config) -> Self {
        Shared {
            store: Store::new(config.history_limit),
            objects: Default::default(),
            auth: Auth::new(&config.service_account_namespace, &config.service_account_name),
            faults: Faults::default(),
            stats: Stats::default(),
            config,
            service_account_dir: Mutex::new(None),
        }
    }

    /// Remembers where the service-account directory was laid out, so token rotations
    /// rewrite its `token`.
    pub fn set_service_account_dir(&self, dir: &Path) {
        *self.service_account_dir.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir.to_path_buf());
    }

    /// Deletes a pod; a graceful deletion finishes by itself after the grace period.
    pub fn delete_pod(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        grace_seconds: Option<i64>,
    ) -> Result<Arc<Pod>, ApiError> {
        match self.store.delete(namespace, name, grace_seconds)? {
            Deletion::Removed(pod) => Ok(pod),
            Deletion::Terminating(pod, grace) => {
                let (ns, name, shared) = (namespace.to_string(), name.to_string(), Arc::downgrade(self));
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    if let Some(shared) = shared.upgrade() {
                        shared.store.finish_termination(&ns, &name, &uid);
                    }
                });
                Ok(pod)
            }
        }
    }

    /// Rotates the service-account token, rewriting the projected token file if one was laid out.
    pub fn rotate_token(&self) -> String {
        let token = self.auth.rotate_service_account_token();
        if let Some(dir) = self
            .service_account_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            // Like the kubelet: write aside, then rename, so readers never see half a token.
            let tmp = dir.join("..token.tmp");
            let _ = std::fs::write(&tmp, &token).and_then(|_| std::fs::rename(&tmp, dir.join("token")));
        }
        token
    }
}

//! The state every connection shares: stores, auth, faults, counters, configuration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::auth::Auth;
use crate::config::Config;
use crate::faults::{Faults, Stats};
use crate::objects::Objects;
use crate::status::ApiError;
use crate::store::{Clock, Deletion, Store, Stored};

/// State shared by every connection.
pub struct Shared {
    /// The pods.
    pub store: Store<Pod>,
    /// The Services.
    pub services: Store<Service>,
    /// The EndpointSlices (the controller's, and any a client creates).
    pub slices: Store<EndpointSlice>,
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
        let clock = Arc::new(Clock::default());
        Shared {
            store: Store::with_clock(config.history_limit, clock.clone()),
            services: Store::with_clock(config.history_limit, clock.clone()),
            slices: Store::with_clock(config.history_limit, clock),
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
        self.delete::<Pod>(namespace, name, grace_seconds)
    }

    /// Deletes an object; a graceful deletion finishes by itself after the grace period.
    pub fn delete<T: Stored>(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        grace_seconds: Option<i64>,
    ) -> Result<Arc<T>, ApiError>
    where
        Shared: StoreOf<T>,
    {
        match self.store_of().delete(namespace, name, grace_seconds)? {
            Deletion::Removed(object) => Ok(object),
            Deletion::Terminating(object, grace) => {
                let (ns, name, shared) = (namespace.to_string(), name.to_string(), Arc::downgrade(self));
                let uid = object.metadata().uid.clone().unwrap_or_default();
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    if let Some(shared) = shared.upgrade() {
                        StoreOf::<T>::store_of(&*shared).finish_termination(&ns, &name, &uid);
                    }
                });
                Ok(object)
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

/// The store of kind `T`, for handlers written once for every kind.
pub trait StoreOf<T: Stored> {
    /// The store.
    fn store_of(&self) -> &Store<T>;
}

impl StoreOf<Pod> for Shared {
    fn store_of(&self) -> &Store<Pod> {
        &self.store
    }
}

impl StoreOf<Service> for Shared {
    fn store_of(&self) -> &Store<Service> {
        &self.services
    }
}

impl StoreOf<EndpointSlice> for Shared {
    fn store_of(&self) -> &Store<EndpointSlice> {
        &self.slices
    }
}

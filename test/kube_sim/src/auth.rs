//! Bearer-token authentication and a minimal RBAC authorizer.
//!
//! Two identities exist: an admin (what kubectl and the tests that play the kubelet
//! use, never denied) and one service account (what PodDist uses), which may only
//! `get`, `list` and `watch` the resources its Role grants (pods unless changed; see
//! [`Auth::grant`]), optionally only in some namespaces. That is enough to
//! reproduce every 401 and 403 a PodDist deployment can meet.

use std::collections::BTreeSet;
use std::sync::RwLock;

use crate::status::ApiError;

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Full access.
    Admin,
    /// The service account, subject to its Role.
    ServiceAccount,
}

struct State {
    admin_token: String,
    sa_token: String,
    sa_user: String,
    /// `None`: the Role applies in every namespace (a ClusterRole binding).
    sa_namespaces: Option<BTreeSet<String>>,
    /// `(resource, group)` pairs the Role grants read access to.
    sa_resources: BTreeSet<(String, String)>,
}

/// Token checks and authorization decisions.
pub struct Auth {
    state: RwLock<State>,
}

const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

impl Auth {
    /// Auth for the service account `name` in `namespace`, with fresh random tokens.
    pub fn new(namespace: &str, name: &str) -> Self {
        Auth {
            state: RwLock::new(State {
                admin_token: random_token("admin"),
                sa_token: random_token("sa"),
                sa_user: format!("system:serviceaccount:{namespace}:{name}"),
                sa_namespaces: None,
                sa_resources: [("pods".to_string(), String::new())].into(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The admin's token.
    pub fn admin_token(&self) -> String {
        self.read().admin_token.clone()
    }

    /// The service account's current token.
    pub fn service_account_token(&self) -> String {
        self.read().sa_token.clone()
    }

    /// The service account's user name, as RBAC messages show it.
    pub fn service_account_user(&self) -> String {
        self.read().sa_user.clone()
    }

    /// Issues a new service-account token; the old one is rejected from now on.
    pub fn rotate_service_account_token(&self) -> String {
        let token = random_token("sa");
        self.write().sa_token = token.clone();
        token
    }

    /// Limits the service account to `namespaces` (`None`: every namespace).
    pub fn restrict_service_account(&self, namespaces: Option<BTreeSet<String>>) {
        self.write().sa_namespaces = namespaces;
    }

    /// Sets the resources the service account may read, as `(resource, group)` pairs
    /// (`("endpointslices", "discovery.k8s.io")`); the default is pods alone.
    pub fn grant(&self, resources: BTreeSet<(String, String)>) {
        self.write().sa_resources = resources;
    }

    /// The resources the service account may read.
    pub fn granted(&self) -> BTreeSet<(String, String)> {
        self.read().sa_resources.clone()
    }

    /// The identity behind an `Authorization` header.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Identity, ApiError> {
        let token = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
        let state = self.read();
        match token {
            Some(t) if t == state.admin_token => Ok(Identity::Admin),
            Some(t) if t == state.sa_token => Ok(Identity::ServiceAccount),
            _ => Err(ApiError::unauthorized()),
        }
    }

    /// Whether `identity` may `verb` pods in `namespace` (`None`: cluster scope).
    pub fn authorize(
        &self,
        identity: &Identity,
        verb: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<(), ApiError> {
        self.authorize_on(identity, verb, ("pods", ""), namespace, name)
    }
}

impl Auth {
    /// Whether `identity` may `verb` a resource of any API group: the service account may
    /// read what its Role grants, in the namespaces it is bound in.
    pub fn authorize_on(
        &self,
        identity: &Identity,
        verb: &str,
        (resource, group): (&str, &str),
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<(), ApiError> {
        if *identity == Identity::Admin {
            return Ok(());
        }
        let state = self.read();
        let namespace_allowed = match (&state.sa_namespaces, namespace) {
            (None, _) => true,
            (Some(allowed), Some(ns)) => allowed.contains(ns),
            (Some(_), None) => false,
        };
        let granted = state.sa_resources.contains(&(resource.to_string(), group.to_string()));
        if granted && READ_VERBS.contains(&verb) && namespace_allowed {
            Ok(())
        } else {
            Err(ApiError::forbidden_on(
                &state.sa_user,
                verb,
                resource,
                group,
                namespace,
                name,
            ))
        }
    }
}

fn random_token(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(prefix.as_bytes());
    let a = hasher.finish();
    hasher.write_u64(a);
    format!("{prefix}-{a:016x}{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_rotate_and_identities_are_authorized() {
        let auth = Auth::new("default", "pod-dist");
        let old = format!("Bearer {}", auth.service_account_token());
        assert_eq!(auth.authenticate(Some(&old)), Ok(Identity::ServiceAccount));
        auth.rotate_service_account_token();
        assert_eq!(auth.authenticate(Some(&old)).unwrap_err().code, 401);
        assert_eq!(auth.authenticate(None).unwrap_err().code, 401);

        let sa = Identity::ServiceAccount;
        assert!(auth.authorize(&sa, "watch", None, None).is_ok());
        assert_eq!(
            auth.authorize(&sa, "create", Some("default"), None).unwrap_err().code,
            403
        );
        auth.restrict_service_account(Some(["prod".to_string()].into()));
        assert!(auth.authorize(&sa, "list", Some("prod"), None).is_ok());
        let denied = auth.authorize(&sa, "list", Some("default"), None).unwrap_err();
        assert_eq!(
            denied.message,
            "pods is forbidden: User \"system:serviceaccount:default:pod-dist\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert!(auth.authorize(&Identity::Admin, "delete", None, None).is_ok());
    }
}

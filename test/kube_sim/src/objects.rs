//! The other kinds a deployment's manifests hold (ServiceAccount, ConfigMap, Secret,
//! Role, RoleBinding, Deployment), so that `kubectl apply` and `kubectl create` run
//! against the simulator as against a cluster.
//!
//! They are stored as sent, after the strict field check of [`crate::manifest`], and
//! can be read, listed, patched (as `kubectl apply` does) and deleted. Nothing acts on
//! them: there are no controllers (a Deployment creates no pods here;
//! `manifest::replicas` says which pods it would), no watches, no PUT and no
//! preconditions. Their resourceVersions come from a sequence of their own, which
//! clients must treat as opaque anyway.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::patch::{self, PatchKind};
use crate::status::ApiError;

/// A kind served here: its API group, version, resource name and kind name.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// API group, `""` for core.
    pub group: &'static str,
    /// Version within the group.
    pub version: &'static str,
    /// Resource name in URLs (`deployments`).
    pub plural: &'static str,
    /// Kind name in objects (`Deployment`).
    pub kind: &'static str,
}

/// Every kind served besides Pod; all namespaced.
pub const KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        kind: "ServiceAccount",
    },
    Kind {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
    },
    Kind {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
    },
    Kind {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        kind: "Role",
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        kind: "RoleBinding",
    },
];

impl Kind {
    /// The kind served at `group`/`version` under `plural`.
    pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
        KINDS
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// `apps/v1`, or `v1` for core.
    pub fn api_version(&self) -> String {
        match self.group {
            "" => self.version.to_string(),
            group => format!("{group}/{}", self.version),
        }
    }

    /// `/apis/apps/v1/namespaces/{namespace}/deployments`: the path template for counters.
    pub fn path_template(&self, named: bool) -> String {
        let root = match self.group {
            "" => "/api/v1".to_string(),
            group => format!("/apis/{group}/{}", self.version),
        };
        let name = if named { "/{name}" } else { "" };
        format!("{root}/namespaces/{{namespace}}/{}{name}", self.plural)
    }

    /// `(resource, group)`, as RBAC and error messages name it.
    pub fn resource(&self) -> (&'static str, &'static str) {
        (self.plural, self.group)
    }
}

/// The stored objects of every kind in [`KINDS`].
#[derive(Debug, Default)]
pub struct Objects {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_rv: u64,
    items: BTreeMap<(&'static str, String, String), Value>,
}

impl Objects {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates `object` in `namespace`, as kube-apiserver would: the object must be of
    /// `kind`, pass the strict field check (unless `strict` is off), and name itself; it
    /// gets a uid, a resourceVersion and a creation time. With `dry_run`, nothing is kept.
    pub fn create(
        &self,
        kind: &Kind,
        namespace: &str,
        mut object: Value,
        strict: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let (resource, group) = kind.resource();
        let api_version = kind.api_version();
        if object["apiVersion"] != json!(api_version) || object["kind"] != json!(kind.kind) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({api_version}) or kind ({})",
                object["apiVersion"], kind.kind
            )));
        }
        match object["metadata"]["namespace"].as_str() {
            Some(ns) if ns != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => {}
        }
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() {
            return Err(ApiError::invalid_of(
                kind.kind,
                group,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        check(kind, &object, strict)?;
        let mut state = self.state();
        let key = (kind.plural, namespace.to_string(), name.clone());
        if state.items.contains_key(&key) {
            return Err(ApiError::already_exists_of(resource, group, &name));
        }
        let rv = state.last_rv + 1;
        let metadata = &mut object["metadata"];
        metadata["namespace"] = json!(namespace);
        metadata["uid"] = json!(crate::meta::new_uid());
        metadata["resourceVersion"] = json!(rv.to_string());
        metadata["creationTimestamp"] = json!(crate::meta::now());
        if !dry_run {
            state.last_rv = rv;
            state.items.insert(key, object.clone());
        }
        Ok(object)
    }

    /// Applies a JSON, merge or strategic merge patch to an object; its identity (name,
    /// namespace, uid, creation time) stays as it was.
    pub fn patch(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        (patch_kind, patch_doc): (PatchKind, &Value),
        strict: bool,
    ) -> Result<Value, ApiError> {
        let mut state = self.state();
        let key = (kind.plural, namespace.to_string(), name.to_string());
        let old = state
            .items
            .get(&key)
            .ok_or_else(|| ApiError::not_found_of(kind.plural, kind.group, name))?;
        let mut new = old.clone();
        patch::apply(patch_kind, &mut new, patch_doc)?;
        for field in ["name", "namespace", "uid", "creationTimestamp"] {
            new["metadata"][field] = old["metadata"][field].clone();
        }
        check(kind, &new, strict)?;
        state.last_rv += 1;
        new["metadata"]["resourceVersion"] = json!(state.last_rv.to_string());
        state.items.insert(key, new.clone());
        Ok(new)
    }

    /// One object.
    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let key = (kind.plural, namespace.to_string(), name.to_string());
        self.state()
            .items
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found_of(kind.plural, kind.group, name))
    }

    /// Every object of `kind` in `namespace` (`None`: all), as a `<Kind>List`.
    pub fn list(&self, kind: &Kind, namespace: Option<&str>) -> Value {
        let state = self.state();
        let items: Vec<&Value> = state
            .items
            .iter()
            .filter(|((plural, ns, _), _)| *plural == kind.plural && namespace.is_none_or(|n| n == ns))
            .map(|(_, object)| object)
            .collect();
        json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": { "resourceVersion": state.last_rv.to_string() },
            "items": items,
        })
    }

    /// Deletes an object at once (there are no finalizers here); returns it.
    pub fn delete(&self, kind: &Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let key = (kind.plural, namespace.to_string(), name.to_string());
        self.state()
            .items
            .remove(&key)
            .ok_or_else(|| ApiError::not_found_of(kind.plural, kind.group, name))
    }
}

/// The strict field check; with `strict` off (`fieldValidation=Ignore`), only a field of
/// the wrong type is refused, an unknown one passes.
fn check(kind: &Kind, object: &Value, strict: bool) -> Result<(), ApiError> {
    match crate::manifest::check_object(kind.kind, object) {
        Err(e) if strict || !e.starts_with("unknown or malformed field") => Err(ApiError::bad_request(format!(
            "{} in body: strict decoding error: {e}",
            kind.kind
        ))),
        _ => Ok(()),
    }
}

/// Discovery: the groups besides core (`/apis`).
pub fn group_list() -> Value {
    let mut groups: Vec<Value> = Vec::new();
    for kind in KINDS.iter().filter(|k| !k.group.is_empty()) {
        if groups.iter().any(|g| g["name"] == kind.group) {
            continue;
        }
        let version = json!({ "groupVersion": kind.api_version(), "version": kind.version });
        groups.push(json!({ "name": kind.group, "versions": [version], "preferredVersion": version }));
    }
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// Discovery: the resources of `group`/`version` served here, for its `APIResourceList`.
pub fn resources(group: &str, version: &str) -> Vec<Value> {
    KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| {
            json!({
                "name": k.plural,
                "singularName": k.kind.to_lowercase(),
                "namespaced": true,
                "kind": k.kind,
                "verbs": ["create", "delete", "get", "list", "patch"],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "shop" },
            "spec": {
                "selector": { "matchLabels": { "app": "shop" } },
                "template": {
                    "metadata": { "labels": { "app": "shop" } },
                    "spec": { "containers": [{ "name": "api", "image": "shop:1" }] }
                }
            }
        })
    }

    #[test]
    fn objects_are_created_once_checked_listed_and_deleted() {
        let objects = Objects::default();
        let kind = Kind::find("apps", "v1", "deployments").unwrap();
        let created = objects.create(kind, "prod", deployment(), true, false).unwrap();
        assert_eq!(created["metadata"]["namespace"], "prod");
        assert_eq!(created["metadata"]["resourceVersion"], "1");
        assert!(created["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
        assert_eq!(objects.get(kind, "prod", "shop").unwrap(), created);
        assert_eq!(objects.list(kind, None)["items"][0], created);
        assert_eq!(objects.list(kind, Some("default"))["items"], json!([]));

        let again = objects.create(kind, "prod", deployment(), true, false).unwrap_err();
        assert_eq!(
            (again.code, again.message.as_str()),
            (409, "deployments.apps \"shop\" already exists")
        );

        let replicas = json!({ "spec": { "replicas": 3 }, "metadata": { "uid": "x" } });
        let patched = objects
            .patch(kind, "prod", "shop", (PatchKind::Strategic, &replicas), true)
            .unwrap();
        assert_eq!(patched["spec"]["replicas"], 3);
        assert_eq!(patched["metadata"]["uid"], created["metadata"]["uid"]);
        assert_eq!(patched["metadata"]["resourceVersion"], "2");
        let typo = json!({ "spec": { "replica": 3 } });
        let refused = objects.patch(kind, "prod", "shop", (PatchKind::Merge, &typo), true);
        assert_eq!(refused.unwrap_err().code, 400);
        assert_eq!(objects.get(kind, "prod", "shop").unwrap(), patched);

        objects.delete(kind, "prod", "shop").unwrap();
        let gone = objects.get(kind, "prod", "shop").unwrap_err();
        assert_eq!(
            (gone.code, gone.message.as_str()),
            (404, "deployments.apps \"shop\" not found")
        );
    }

    #[test]
    fn bad_objects_are_refused_with_the_reason() {
        let objects = Objects::default();
        let kind = Kind::find("apps", "v1", "deployments").unwrap();
        let mut typo = deployment();
        typo["spec"]["replica"] = json!(2);
        let error = objects.create(kind, "prod", typo.clone(), true, false).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(error.message.contains(".spec.replica"), "{}", error.message);
        // fieldValidation=Ignore lets an unknown field through, as the real server does.
        assert!(objects.create(kind, "prod", typo, false, true).is_ok());

        let role = Kind::find("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        assert_eq!(
            objects
                .create(role, "prod", deployment(), true, false)
                .unwrap_err()
                .code,
            400
        );
        let mut nameless = deployment();
        nameless["metadata"] = json!({});
        assert_eq!(
            objects.create(kind, "prod", nameless, true, false).unwrap_err().code,
            422
        );
        let mut elsewhere = deployment();
        elsewhere["metadata"]["namespace"] = json!("default");
        assert_eq!(
            objects.create(kind, "prod", elsewhere, true, false).unwrap_err().code,
            400
        );
        // A dry run keeps nothing.
        assert_eq!(objects.list(kind, None)["items"], json!([]));
    }

    #[test]
    fn discovery_lists_each_group_once() {
        let groups = group_list();
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["apps", "rbac.authorization.k8s.io"]);
        assert_eq!(resources("rbac.authorization.k8s.io", "v1").len(), 2);
        assert_eq!(resources("", "v1").len(), 3);
    }
}

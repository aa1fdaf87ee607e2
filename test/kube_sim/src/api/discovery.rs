//! Discovery: `/version`, `/api`, `/apis`, the resource lists and the OpenAPI v3
//! documents kubectl reads before it acts.

use hyper::Response;
use serde_json::{json, Value};

use super::call::{json_response, Body};
use crate::objects;
use crate::shared::Shared;
use crate::status::ApiError;

/// The kube-apiserver version this simulator reports.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "33");

pub fn answer(shared: &Shared, path: &str, body: Value) -> Result<Response<Body>, ApiError> {
    shared.stats.request("GET", path);
    Ok(json_response(shared, 200, &body))
}

pub fn version() -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "major": major, "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0-kube-sim"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
    })
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443" }]
    })
}

/// The `APIResourceList` of `group`/`version`: pods in core, and the other kinds.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    if group.is_empty() {
        let verbs = json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]);
        resources.push(
            json!({ "name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
            "verbs": verbs, "shortNames": ["po"], "categories": ["all"] }),
        );
        resources.push(
            json!({ "name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod",
            "verbs": ["get", "patch", "update"] }),
        );
    }
    resources.extend(objects::resources(group, version));
    let group_version = match group {
        "" => version.to_string(),
        group => format!("{group}/{version}"),
    };
    json!({ "kind": "APIResourceList", "groupVersion": group_version, "resources": resources })
}

/// The OpenAPI v3 index: one document per group version served.
pub fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({ "serverRelativeURL": "/openapi/v3/api/v1?hash=kube-sim-1" }),
    );
    for kind in objects::KINDS.iter().filter(|k| !k.group.is_empty()) {
        let path = format!("apis/{}", kind.api_version());
        let url = format!("/openapi/v3/{path}?hash=kube-sim-1");
        paths.insert(path, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

/// Just enough of a group version's OpenAPI document for kubectl to see that its kinds
/// accept server-side field validation (so `kubectl create -f` and `kubectl apply -f`
/// leave validation to the server, which checks strictly).
pub fn openapi(group: &str, version: &str) -> Value {
    let field_validation = json!({ "name": "fieldValidation", "in": "query", "schema": { "type": "string" } });
    let operation = |action: &str, kind: &str| {
        json!({
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": { "group": group, "version": version, "kind": kind },
            "parameters": [field_validation],
            "responses": { "200": { "description": "OK" } }
        })
    };
    let mut paths = serde_json::Map::new();
    if group.is_empty() {
        let pod = |action| operation(action, "Pod");
        paths.insert(
            "/api/v1/namespaces/{namespace}/pods".into(),
            json!({ "post": pod("post") }),
        );
        for path in [
            "/api/v1/namespaces/{namespace}/pods/{name}",
            "/api/v1/namespaces/{namespace}/pods/{name}/status",
        ] {
            paths.insert(path.into(), json!({ "patch": pod("patch"), "put": pod("put") }));
        }
    }
    for kind in objects::KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        paths.insert(
            kind.path_template(false),
            json!({ "post": operation("post", kind.kind) }),
        );
        // kubectl looks for the parameter on PATCH to decide that the server validates.
        paths.insert(
            kind.path_template(true),
            json!({ "patch": operation("patch", kind.kind) }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v{}.{}.0", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1) },
        "paths": paths,
        "components": { "schemas": {} }
    })
}

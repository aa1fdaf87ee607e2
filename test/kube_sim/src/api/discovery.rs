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

/// A kind kept in a store, with watches: how discovery describes it.
struct Typed {
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    short_names: &'static [&'static str],
    in_all: bool,
}

/// The kinds served with every verb and watches (all at version `v1`).
const TYPED: &[Typed] = &[
    Typed {
        group: "",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        short_names: &["po"],
        in_all: true,
    },
    Typed {
        group: "",
        plural: "services",
        singular: "service",
        kind: "Service",
        short_names: &["svc"],
        in_all: true,
    },
    Typed {
        group: "discovery.k8s.io",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        short_names: &[],
        in_all: false,
    },
];

/// Whether `group`/`version` is served at all.
pub fn served(group: &str, version: &str) -> bool {
    (version == "v1" && TYPED.iter().any(|t| t.group == group)) || !objects::resources(group, version).is_empty()
}

/// `/apis`: the groups besides core.
pub fn group_list() -> Value {
    let mut list = objects::group_list();
    for typed in TYPED.iter().filter(|t| !t.group.is_empty()) {
        let groups = list["groups"].as_array_mut().expect("group_list has groups");
        if groups.iter().any(|g| g["name"] == typed.group) {
            continue;
        }
        let version = json!({ "groupVersion": format!("{}/v1", typed.group), "version": "v1" });
        groups.push(json!({ "name": typed.group, "versions": [version], "preferredVersion": version }));
    }
    list
}

/// The `APIResourceList` of `group`/`version`: the stored kinds, pods' status, and the other kinds.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
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
    for typed in TYPED.iter().filter(|t| t.group == group && version == "v1") {
        let mut resource = json!({ "name": typed.plural, "singularName": typed.singular, "namespaced": true,
            "kind": typed.kind, "verbs": verbs });
        if !typed.short_names.is_empty() {
            resource["shortNames"] = json!(typed.short_names);
        }
        if typed.in_all {
            resource["categories"] = json!(["all"]);
        }
        resources.push(resource);
        if typed.plural == "pods" {
            resources.push(
                json!({ "name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod",
                "verbs": ["get", "patch", "update"] }),
            );
        }
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
    let typed = TYPED
        .iter()
        .filter(|t| !t.group.is_empty())
        .map(|t| format!("{}/v1", t.group));
    for group_version in objects::KINDS
        .iter()
        .filter(|k| !k.group.is_empty())
        .map(|k| k.api_version())
        .chain(typed)
    {
        let path = format!("apis/{group_version}");
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
    for typed in TYPED.iter().filter(|t| t.group == group && version == "v1") {
        let root = match group {
            "" => "/api/v1".to_string(),
            group => format!("/apis/{group}/v1"),
        };
        let collection = format!("{root}/namespaces/{{namespace}}/{}", typed.plural);
        let of = |action| operation(action, typed.kind);
        paths.insert(collection.clone(), json!({ "post": of("post") }));
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({ "patch": of("patch"), "put": of("put") }),
        );
        if typed.plural == "pods" {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({ "patch": of("patch"), "put": of("put") }),
            );
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

//! The HTTP surface: discovery, the core/v1 Pod API and its status subresource.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::patch::{self, PatchKind};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Filter, ListVersion, WatchStart};
use crate::table::{self, IncludeObject};
use crate::watch::{self, WatchOptions};
use crate::Shared;

/// A response body: whole or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// The kube-apiserver version this simulator reports.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "33");

/// Largest request body accepted, as kube-apiserver's 3 MiB limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Which listener a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The HTTPS API: tokens, RBAC, faults and latency apply.
    Api,
    /// The loopback control port: acts as admin and ignores faults, so tests can keep
    /// changing the cluster while the API is "down".
    Control,
}

/// One parsed request, on its way through the handlers.
struct Call {
    method: Method,
    segments: Vec<String>,
    query: HashMap<String, String>,
    accept: Option<String>,
    content_type: Option<String>,
    identity: Identity,
    body: Bytes,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true") | Some("1"))
    }
}

/// Answers one API request.
pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>, listener: Listener) -> Response<Body> {
    let identity = if listener == Listener::Control {
        Identity::Admin
    } else {
        let latency = shared.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if shared.faults.current_outage().is_some() {
            return error(&shared, &ApiError::unavailable());
        }
        let public = matches!(req.uri().path(), "/version" | "/healthz" | "/livez" | "/readyz");
        let header = req.headers().get(AUTHORIZATION).and_then(|h| h.to_str().ok());
        match shared.auth.authenticate(header) {
            Ok(identity) => identity,
            Err(_) if public => Identity::ServiceAccount,
            Err(e) => return error(&shared, &e),
        }
    };
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(&shared, &ApiError::bad_request("request body too large or unreadable")),
    };
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|h: &HeaderValue| h.to_str().ok())
            .map(String::from)
    };
    let call = Call {
        method: parts.method.clone(),
        segments: parts
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        accept: header(ACCEPT),
        content_type: header(CONTENT_TYPE),
        identity,
        body,
    };
    match route(&shared, &call).await {
        Ok(response) => response,
        Err(e) => error(&shared, &e),
    }
}

async fn route(shared: &Arc<Shared>, call: &Call) -> Result<Response<Body>, ApiError> {
    let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let get = call.method == Method::GET;
    match (segments.as_slice(), get) {
        (["version"], true) => discovery(shared, "/version", version()),
        (["healthz"] | ["livez"] | ["readyz"], true) => Ok(text(shared, "ok")),
        (["api"], true) => discovery(shared, "/api", api_versions()),
        (["apis"], true) => discovery(
            shared,
            "/apis",
            json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": [] }),
        ),
        (["api", "v1"], true) => discovery(shared, "/api/v1", core_resources()),
        (["openapi", "v3"], true) => discovery(shared, "/openapi/v3", openapi_index()),
        (["openapi", "v3", "api", "v1"], true) => discovery(shared, "/openapi/v3/api/v1", openapi_core()),
        (["api", "v1", "pods"], true) => collection(shared, call, None).await,
        (["api", "v1", "watch", "pods"], true) => watch(shared, call, None, true),
        (["api", "v1", "namespaces", ns, "pods"], _) => collection(shared, call, Some(ns)).await,
        (["api", "v1", "watch", "namespaces", ns, "pods"], true) => watch(shared, call, Some(ns), true),
        (["api", "v1", "namespaces", ns, "pods", name], _) => object(shared, call, ns, name, false).await,
        (["api", "v1", "namespaces", ns, "pods", name, "status"], _) => object(shared, call, ns, name, true).await,
        _ => Err(ApiError::no_route()),
    }
}

fn discovery(shared: &Shared, path: &str, body: Value) -> Result<Response<Body>, ApiError> {
    shared.stats.request("GET", path);
    Ok(json_response(shared, 200, &body))
}

async fn collection(shared: &Arc<Shared>, call: &Call, ns: Option<&str>) -> Result<Response<Body>, ApiError> {
    match call.method {
        Method::GET if call.flag("watch") => watch(shared, call, ns, false),
        Method::GET => list(shared, call, ns),
        Method::POST => {
            let ns = ns.ok_or_else(ApiError::method_not_allowed)?;
            shared.stats.request("CREATE", "/api/v1/namespaces/{namespace}/pods");
            shared.auth.authorize(&call.identity, "create", Some(ns), None)?;
            let pod: Pod = parse_body(&call.body)?;
            let created = shared.store.create(ns, pod)?;
            Ok(json_response(shared, 201, &json!(*created)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn template(ns: Option<&str>) -> &'static str {
    if ns.is_some() {
        "/api/v1/namespaces/{namespace}/pods"
    } else {
        "/api/v1/pods"
    }
}

fn filter(call: &Call, ns: Option<&str>) -> Result<Filter, ApiError> {
    let bad = |e: String| ApiError::bad_request(e);
    Ok(Filter {
        namespace: ns.map(String::from),
        labels: LabelSelector::parse(call.param("labelSelector").unwrap_or("")).map_err(bad)?,
        fields: FieldSelector::parse(call.param("fieldSelector").unwrap_or("")).map_err(bad)?,
    })
}

fn resource_version(call: &Call) -> Result<Option<u64>, ApiError> {
    match call.param("resourceVersion") {
        None => Ok(None),
        Some(rv) => rv
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}"))),
    }
}

fn list(shared: &Shared, call: &Call, ns: Option<&str>) -> Result<Response<Body>, ApiError> {
    shared.stats.request("LIST", template(ns));
    shared.auth.authorize(&call.identity, "list", ns, None)?;
    let filter = filter(call, ns)?;
    let rv = resource_version(call)?;
    if call.param("continue").is_some() && rv.is_some_and(|v| v != 0) {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    let version = match (rv, call.param("resourceVersionMatch")) {
        (None | Some(0), None | Some("NotOlderThan")) => ListVersion::Latest,
        (Some(v), None | Some("NotOlderThan")) => ListVersion::NotOlderThan(v),
        (Some(v), Some("Exact")) => ListVersion::Exact(v),
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ))
        }
        (_, Some(other)) => {
            return Err(ApiError::bad_request(format!(
                "unsupported resourceVersionMatch {other:?}"
            )))
        }
    };
    let limit = call.param("limit").and_then(|l| l.parse().ok());
    let page = shared.store.list(&filter, version, limit, call.param("continue"))?;
    let rv = page.rv.to_string();
    if table::wants_table(call.accept.as_deref()) {
        let include = IncludeObject::parse(call.param("includeObject"));
        let body = table::render(
            page.items.iter().map(|p| &**p),
            &rv,
            page.continue_token.as_deref(),
            include,
        );
        return Ok(json_response(shared, 200, &body));
    }
    let mut metadata = json!({ "resourceVersion": rv });
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    if let Some(remaining) = page.remaining {
        metadata["remainingItemCount"] = json!(remaining);
    }
    // Written by hand so 10,000 pods are serialised once, straight into the body.
    let mut body =
        format!("{{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{metadata},\"items\":[").into_bytes();
    for (i, pod) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &**pod).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    body.extend_from_slice(b"]}");
    Ok(bytes_response(shared, 200, "application/json", Bytes::from(body)))
}

fn watch(shared: &Arc<Shared>, call: &Call, ns: Option<&str>, legacy_path: bool) -> Result<Response<Body>, ApiError> {
    let template = if legacy_path {
        if ns.is_some() {
            "/api/v1/watch/namespaces/{namespace}/pods"
        } else {
            "/api/v1/watch/pods"
        }
    } else {
        template(ns)
    };
    shared.stats.request("WATCH", template);
    shared.auth.authorize(&call.identity, "watch", ns, None)?;
    let filter = filter(call, ns)?;
    let rv = resource_version(call)?;
    let send_initial = call.param("sendInitialEvents").map(|v| v == "true");
    let bookmarks = call.flag("allowWatchBookmarks");
    if send_initial == Some(true) && (call.param("resourceVersionMatch") != Some("NotOlderThan") || !bookmarks) {
        return Err(ApiError::invalid(
            "",
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan and allowWatchBookmarks is true",
        ));
    }
    let start = match (send_initial, rv) {
        (Some(true), _) => WatchStart::WithInitialState,
        (Some(false), None | Some(0)) => WatchStart::Now,
        (None, None | Some(0)) => WatchStart::WithInitialState,
        (_, Some(v)) => WatchStart::After(v),
    };
    let feed = match shared.store.watch(start, &filter) {
        Ok(feed) => feed,
        // Like the watch cache: a too-old version opens the stream, then fails it.
        Err(expired) if expired.code == 410 => return Ok(stream_response(watch::expired_stream(shared, expired))),
        Err(other) => return Err(other),
    };
    let timeout = call
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800);
    let options = WatchOptions {
        bookmarks,
        timeout: Duration::from_secs(timeout),
        initial_events_end: send_initial == Some(true),
        table: table::wants_table(call.accept.as_deref()).then(|| IncludeObject::parse(call.param("includeObject"))),
    };
    let (tx, rx) = futures::channel::mpsc::channel(256);
    tokio::spawn(watch::run(shared.clone(), feed, filter, options, tx));
    Ok(stream_response(rx))
}

fn stream_response(chunks: impl futures::Stream<Item = Bytes> + Send + Sync + 'static) -> Response<Body> {
    let body = StreamBody::new(chunks.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))));
    let mut response = Response::new(BodyExt::boxed(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn object(
    shared: &Arc<Shared>,
    call: &Call,
    ns: &str,
    name: &str,
    status: bool,
) -> Result<Response<Body>, ApiError> {
    let path = if status {
        "/api/v1/namespaces/{namespace}/pods/{name}/status"
    } else {
        "/api/v1/namespaces/{namespace}/pods/{name}"
    };
    let verb = match call.method {
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if !status => "delete",
        _ => return Err(ApiError::method_not_allowed()),
    };
    shared.stats.request(&verb.to_uppercase(), path);
    shared.auth.authorize(&call.identity, verb, Some(ns), Some(name))?;
    let pod = match verb {
        "get" => shared.store.get(ns, name)?,
        "delete" => {
            let grace = call
                .param("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
                .or_else(|| {
                    serde_json::from_slice::<Value>(&call.body)
                        .ok()?
                        .get("gracePeriodSeconds")?
                        .as_i64()
                });
            shared.delete_pod(ns, name, grace)?
        }
        "update" => {
            let new: Pod = parse_body(&call.body)?;
            if new.metadata.name.as_deref().is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            shared.store.update(ns, name, |old| Ok(scoped(old, new, status)))?
        }
        _ => {
            let content_type = call.content_type.as_deref().unwrap_or("");
            let kind = PatchKind::from_content_type(content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
            let patch_doc: Value = parse_body(&call.body)?;
            shared.store.update(ns, name, |old| {
                let mut doc = serde_json::to_value(old).map_err(|e| ApiError::bad_request(e.to_string()))?;
                patch::apply(kind, &mut doc, &patch_doc);
                let new: Pod = serde_json::from_value(doc).map_err(|e| ApiError::bad_request(e.to_string()))?;
                let mut new = scoped(old, new, status);
                // A patch never carries a precondition unless it names a resourceVersion itself.
                if patch_doc.pointer("/metadata/resourceVersion").is_none() {
                    new.metadata.resource_version = None;
                }
                Ok(new)
            })?
        }
    };
    Ok(json_response(shared, 200, &json!(*pod)))
}

/// What an update may change: the status subresource changes only status, the main
/// resource everything but status, as the pod strategies of kube-apiserver do.
fn scoped(old: &Pod, new: Pod, status: bool) -> Pod {
    if status {
        let mut kept = old.clone();
        kept.status = new.status;
        // Keep the client's resourceVersion so a stale status update still conflicts.
        kept.metadata.resource_version = new.metadata.resource_version;
        kept
    } else {
        Pod {
            status: old.status.clone(),
            ..new
        }
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized or malformed: {e}")))
}

fn version() -> Value {
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

fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443" }]
    })
}

fn core_resources() -> Value {
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
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            { "name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": verbs,
              "shortNames": ["po"], "categories": ["all"] },
            { "name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod",
              "verbs": ["get", "patch", "update"] }
        ]
    })
}

/// The OpenAPI v3 index: one document, for core/v1.
fn openapi_index() -> Value {
    json!({ "paths": { "api/v1": { "serverRelativeURL": "/openapi/v3/api/v1?hash=kube-sim-1" } } })
}

/// Just enough of the core/v1 OpenAPI document for kubectl to see that pods accept
/// server-side field validation (so `kubectl create -f` validates on the server).
fn openapi_core() -> Value {
    let gvk = json!({ "group": "", "version": "v1", "kind": "Pod" });
    let field_validation = json!({ "name": "fieldValidation", "in": "query", "schema": { "type": "string" } });
    let operation = |action: &str| {
        json!({
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [field_validation],
            "responses": { "200": { "description": "OK" } }
        })
    };
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v{}.{}.0", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1) },
        "paths": {
            "/api/v1/namespaces/{namespace}/pods": { "post": operation("post") },
            "/api/v1/namespaces/{namespace}/pods/{name}": { "patch": operation("patch"), "put": operation("put") },
            "/api/v1/namespaces/{namespace}/pods/{name}/status": { "patch": operation("patch"), "put": operation("put") }
        },
        "components": { "schemas": {} }
    })
}

fn bytes_response(shared: &Shared, code: u16, content_type: &'static str, body: Bytes) -> Response<Body> {
    shared.stats.sent(body.len());
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(shared: &Shared, code: u16, body: &Value) -> Response<Body> {
    bytes_response(shared, code, "application/json", Bytes::from(body.to_string()))
}

fn text(shared: &Shared, body: &'static str) -> Response<Body> {
    bytes_response(shared, 200, "text/plain", Bytes::from_static(body.as_bytes()))
}

/// The `Status` response for an error.
pub fn error(shared: &Shared, e: &ApiError) -> Response<Body> {
    json_response(shared, e.code, &e.to_status())
}

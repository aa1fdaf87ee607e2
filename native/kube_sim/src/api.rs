//! The HTTP surface: discovery, the core/v1 Pod API and its status subresource, and
//! the other kinds manifests hold (see [`crate::objects`]).

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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use serde_json::{json, Value};

use crate::auth::Identity;
use crate::objects::{self, Kind};
use crate::patch::{self, PatchKind};
use crate::query;
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

    /// A boolean parameter, `None` when absent; see [`query::parse_bool`].
    fn bool_param(&self, name: &str) -> Option<bool> {
        self.query.get(name).map(|v| query::parse_bool(v))
    }

    /// A boolean parameter that is false when absent.
    fn flag(&self, name: &str) -> bool {
        self.bool_param(name).unwrap_or(false)
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
            // Counted apart: benchmarks read how often clients ask while the API is down.
            shared.stats.request("UNAVAILABLE", req.uri().path());
            return error(&shared, &ApiError::unavailable());
        }
        let public = matches!(req.uri().path(), "/version" | "/healthz" | "/livez" | "/readyz");
        let header = req.headers().get(AUTHORIZATION).and_then(|h| h.to_str().ok());
        match shared.auth.authenticate(header) {
            Ok(identity) => identity,
            Err(_) if public => Identity::ServiceAccount,
            Err(e) => {
                shared.stats.request("UNAUTHORIZED", req.uri().path());
                return error(&shared, &e);
            }
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
        query: query::parse(parts.uri.query().unwrap_or("")),
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
    if let Some((kind, ns, name)) = object_route(&segments) {
        return other_object(shared, call, kind, ns, name);
    }
    match (segments.as_slice(), get) {
        (["version"], true) => discovery(shared, "/version", version()),
        (["healthz"] | ["livez"] | ["readyz"], true) => Ok(text(shared, "ok")),
        (["api"], true) => discovery(shared, "/api", api_versions()),
        (["apis"], true) => discovery(shared, "/apis", objects::group_list()),
        (["api", "v1"], true) => discovery(shared, "/api/v1", resource_list("", "v1")),
        (["apis", group, version], true) if !objects::resources(group, version).is_empty() => {
            discovery(shared, "/apis/{group}/{version}", resource_list(group, version))
        }
        (["openapi", "v3"], true) => discovery(shared, "/openapi/v3", openapi_index()),
        (["openapi", "v3", "api", "v1"], true) => discovery(shared, "/openapi/v3/api/v1", openapi("", "v1")),
        (["openapi", "v3", "apis", group, version], true) if !objects::resources(group, version).is_empty() => {
            discovery(shared, "/openapi/v3/apis/{group}/{version}", openapi(group, version))
        }
        (["api", "v1", "pods"], true) => collection(shared, call, None).await,
        (["api", "v1", "watch", "pods"], true) => watch(shared, call, None, true),
        (["api", "v1", "namespaces", ns, "pods"], _) => collection(shared, call, Some(ns)).await,
        (["api", "v1", "watch", "namespaces", ns, "pods"], true) => watch(shared, call, Some(ns), true),
        (["api", "v1", "namespaces", ns, "pods", name], _) => object(shared, call, ns, name, false).await,
        (["api", "v1", "namespaces", ns, "pods", name, "status"], _) => object(shared, call, ns, name, true).await,
        _ => Err(ApiError::no_route()),
    }
}

/// `(kind, namespace, name)` when the path is one of [`objects::KINDS`]'s.
fn object_route<'a>(segments: &[&'a str]) -> Option<(&'static Kind, Option<&'a str>, Option<&'a str>)> {
    let (group, version, rest) = match segments {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, *plural, None),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        _ => return None,
    };
    Some((Kind::find(group, version, plural)?, namespace, name))
}

/// create, get, list, patch and delete for the other kinds: no watch, no PUT.
fn other_object(
    shared: &Shared,
    call: &Call,
    kind: &Kind,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let verb = match (&call.method, ns, name) {
        (&Method::GET, _, None) if !call.flag("watch") => "list",
        (&Method::POST, Some(_), None) => "create",
        (&Method::GET, Some(_), Some(_)) => "get",
        (&Method::PATCH, Some(_), Some(_)) => "patch",
        (&Method::DELETE, Some(_), Some(_)) => "delete",
        _ => return Err(ApiError::method_not_allowed()),
    };
    shared
        .stats
        .request(&verb.to_uppercase(), &kind.path_template(name.is_some()));
    shared
        .auth
        .authorize_on(&call.identity, verb, kind.resource(), ns, name)?;
    let (ns, name) = (ns.unwrap_or_default(), name.unwrap_or_default());
    let strict = call.param("fieldValidation") != Some("Ignore");
    let (code, body) = match verb {
        "list" => (200, shared.objects.list(kind, Some(ns).filter(|ns| !ns.is_empty()))),
        "create" => {
            let dry_run = call.param("dryRun") == Some("All");
            let object = parse_body(&call.body)?;
            (201, shared.objects.create(kind, ns, object, strict, dry_run)?)
        }
        "get" => (200, shared.objects.get(kind, ns, name)?),
        "patch" => {
            let content_type = call.content_type.as_deref().unwrap_or("");
            let patch_kind = PatchKind::from_content_type(content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
            let patch_doc: Value = parse_body(&call.body)?;
            (
                200,
                shared.objects.patch(kind, ns, name, (patch_kind, &patch_doc), strict)?,
            )
        }
        _ => (200, shared.objects.delete(kind, ns, name)?),
    };
    Ok(json_response(shared, code, &body))
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
    let send_initial = call.bool_param("sendInitialEvents");
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
        "delete" => shared.delete_pod(ns, name, grace_period(call)?)?,
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
                patch::apply(kind, &mut doc, &patch_doc)?;
                let new: Pod = serde_json::from_value(doc).map_err(|e| ApiError::bad_request(e.to_string()))?;
                // The patched object still carries the stored resourceVersion unless the
                // patch set one: then it is a precondition, and a stale one conflicts.
                Ok(scoped(old, new, status))
            })?
        }
    };
    Ok(json_response(shared, 200, &json!(*pod)))
}

/// The `gracePeriodSeconds` of a delete. Like kube-apiserver, the `DeleteOptions` body is
/// read when there is one, and the query only when there is none: a client sending both
/// (the Python client does, given `body=` and `grace_period_seconds=`) gets the body's.
fn grace_period(call: &Call) -> Result<Option<i64>, ApiError> {
    if !call.body.is_empty() {
        return Ok(parse_body::<DeleteOptions>(&call.body)?.grace_period_seconds);
    }
    call.param("gracePeriodSeconds")
        .map(|g| {
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}")))
        })
        .transpose()
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

/// The `APIResourceList` of `group`/`version`: pods in core, and the other kinds.
fn resource_list(group: &str, version: &str) -> Value {
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
fn openapi_index() -> Value {
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
fn openapi(group: &str, version: &str) -> Value {
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

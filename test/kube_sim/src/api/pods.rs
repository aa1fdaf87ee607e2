//! The core/v1 Pod API: list, watch, create, get, update, patch, delete, and the status
//! subresource.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Response};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use serde_json::{json, Value};

use super::call::{bytes_response, json_response, parse_body, stream_response, Body, Call};
use crate::patch::{self, PatchKind};
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::status::ApiError;
use crate::store::{Filter, ListVersion, WatchStart};
use crate::table::{self, IncludeObject};
use crate::watch::{self, WatchOptions};

pub async fn collection(shared: &Arc<Shared>, call: &Call, ns: Option<&str>) -> Result<Response<Body>, ApiError> {
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

pub fn watch(
    shared: &Arc<Shared>,
    call: &Call,
    ns: Option<&str>,
    legacy_path: bool,
) -> Result<Response<Body>, ApiError> {
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

pub async fn object(
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

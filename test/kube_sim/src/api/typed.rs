//! The API of every kind kept in a store (pods, Services, EndpointSlices): list, watch,
//! create, get, update, patch, delete, and the pods' status subresource. One set of
//! handlers, generic over the kind: they differ only in what [`Stored`] says.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use serde_json::{json, Value};

use super::call::{bytes_response, json_response, parse_body, stream_response, Body, Call};
use crate::config::StreamingLists;
use crate::faults::Read;
use crate::patch::{self, PatchKind};
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::{Shared, StoreOf};
use crate::status::ApiError;
use crate::store::{Filter, ListVersion, Stored, WatchStart};
use crate::table::{self, IncludeObject, Printed};
use crate::watch::{self, WatchOptions};

/// What a kind's handlers need: a store on [`Shared`], a table printer.
pub trait Served: Stored + Printed + Default {}

impl<T: Stored + Printed + Default> Served for T {}

/// The collection `/.../namespaces/{ns}/<plural>` (or all namespaces): list, watch, create.
pub async fn collection<T: Served>(
    shared: &Arc<Shared>,
    call: &Call,
    ns: Option<&str>,
) -> Result<Response<Body>, ApiError>
where
    Shared: StoreOf<T>,
{
    match call.method {
        Method::GET if call.flag("watch") => watch::<T>(shared, call, ns, false),
        Method::GET => list::<T>(shared, call, ns),
        Method::POST => {
            let ns = ns.ok_or_else(ApiError::method_not_allowed)?;
            shared.stats.request("CREATE", &template::<T>(Some(ns), false));
            authorize::<T>(shared, call, "create", Some(ns), None)?;
            let object: T = parse_body(&call.body)?;
            check_kind::<T>(&call.body)?;
            let created = StoreOf::<T>::store_of(&**shared).create(ns, object)?;
            Ok(json_response(shared, 201, &json!(*created)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `/api/v1/namespaces/{namespace}/pods`, `/apis/discovery.k8s.io/v1/endpointslices`...:
/// the path template requests are counted under.
pub fn template<T: Stored>(ns: Option<&str>, named: bool) -> String {
    let root = match T::GROUP {
        "" => "/api/v1".to_string(),
        group => format!("/apis/{group}/{}", T::VERSION),
    };
    let scope = if ns.is_some() { "/namespaces/{namespace}" } else { "" };
    let name = if named { "/{name}" } else { "" };
    format!("{root}{scope}/{}{name}", T::PLURAL)
}

fn authorize<T: Stored>(
    shared: &Shared,
    call: &Call,
    verb: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    shared
        .auth
        .authorize_on(&call.identity, verb, (T::PLURAL, T::GROUP), ns, name)
}

/// A body naming another kind is refused, as the real server's decoder does.
fn check_kind<T: Stored>(body: &[u8]) -> Result<(), ApiError> {
    let head: Value = parse_body(body)?;
    let mismatch = |field: &str, expected: &str| head[field].as_str().is_some_and(|v| v != expected);
    if mismatch("kind", T::KIND) || mismatch("apiVersion", T::API_VERSION) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            head["apiVersion"],
            T::API_VERSION
        )));
    }
    Ok(())
}

fn filter<T: Served>(call: &Call, ns: Option<&str>) -> Result<Filter, ApiError> {
    let bad = |e: String| ApiError::bad_request(e);
    let supported = |field: &str| T::default().field(field).is_some();
    Ok(Filter {
        namespace: ns.map(String::from),
        labels: LabelSelector::parse(call.param("labelSelector").unwrap_or("")).map_err(bad)?,
        fields: FieldSelector::parse_for(call.param("fieldSelector").unwrap_or(""), supported).map_err(bad)?,
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

fn list<T: Served>(shared: &Shared, call: &Call, ns: Option<&str>) -> Result<Response<Body>, ApiError>
where
    Shared: StoreOf<T>,
{
    shared.stats.request("LIST", &template::<T>(ns, false));
    authorize::<T>(shared, call, "list", ns, None)?;
    let filter = filter::<T>(call, ns)?;
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
    // Like kube-apiserver: a list with no resourceVersion (and each further page of it)
    // reads etcd; one "not older than" a version (`0`: any) is answered from the watch
    // cache, whole, whatever its limit.
    let read = match version {
        ListVersion::Latest if rv.is_some() && call.param("continue").is_none() => Read::Cached,
        ListVersion::NotOlderThan(_) => Read::Cached,
        _ => Read::Quorum,
    };
    let limit = match read {
        Read::Cached => None,
        _ => call.param("limit").and_then(|l| l.parse().ok()),
    };
    let page = StoreOf::<T>::store_of(shared).list(&filter, version, limit, call.param("continue"))?;
    shared.stats.read(read);
    shared.stats.objects(page.items.len());
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
    let mut body = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{metadata},\"items\":[",
        T::KIND,
        T::API_VERSION
    )
    .into_bytes();
    for (i, pod) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &**pod).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    body.extend_from_slice(b"]}");
    Ok(bytes_response(shared, 200, "application/json", Bytes::from(body)))
}

/// A watch on the collection; `legacy_path` for the `/watch/` paths of old clients.
pub fn watch<T: Served>(
    shared: &Arc<Shared>,
    call: &Call,
    ns: Option<&str>,
    legacy_path: bool,
) -> Result<Response<Body>, ApiError>
where
    Shared: StoreOf<T>,
{
    let mut template = template::<T>(ns, false);
    if legacy_path {
        let root = match T::GROUP {
            "" => "/api/v1".to_string(),
            group => format!("/apis/{group}/{}", T::VERSION),
        };
        template = template.replacen(&root, &format!("{root}/watch"), 1);
    }
    shared.stats.request("WATCH", &template);
    authorize::<T>(shared, call, "watch", ns, None)?;
    let filter = filter::<T>(call, ns)?;
    let rv = resource_version(call)?;
    let send_initial = call.bool_param("sendInitialEvents");
    if send_initial.is_some() && shared.config.streaming_lists == StreamingLists::Rejected {
        // kube-apiserver before 1.32 (the WatchList feature off); before 1.27 the same
        // 422 forbids resourceVersionMatch on a watch.
        return Err(ApiError::invalid_options(
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        ));
    }
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
    if start == WatchStart::WithInitialState {
        shared.stats.read(Read::Streamed);
    }
    let feed = match StoreOf::<T>::store_of(&**shared).watch(start, &filter) {
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
        initial_events_end: send_initial == Some(true) && shared.config.streaming_lists == StreamingLists::Served,
        table: table::wants_table(call.accept.as_deref()).then(|| IncludeObject::parse(call.param("includeObject"))),
    };
    let (tx, rx) = futures::channel::mpsc::channel(256);
    tokio::spawn(watch::run(shared.clone(), feed, filter, options, tx));
    Ok(stream_response(rx))
}

/// One object, or (`status`) its status subresource: get, update, patch, delete.
pub async fn object<T: Served>(
    shared: &Arc<Shared>,
    call: &Call,
    ns: &str,
    name: &str,
    status: bool,
) -> Result<Response<Body>, ApiError>
where
    Shared: StoreOf<T>,
{
    let mut path = template::<T>(Some(ns), true);
    if status {
        path.push_str("/status");
    }
    let verb = match call.method {
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if !status => "delete",
        _ => return Err(ApiError::method_not_allowed()),
    };
    shared.stats.request(&verb.to_uppercase(), &path);
    authorize::<T>(shared, call, verb, Some(ns), Some(name))?;
    let store = StoreOf::<T>::store_of(&**shared);
    let pod = match verb {
        "get" => store.get(ns, name)?,
        "delete" => shared.delete::<T>(ns, name, grace_period(call)?)?,
        "update" => {
            let new: T = parse_body(&call.body)?;
            check_kind::<T>(&call.body)?;
            if new.metadata().name.as_deref().is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            store.update(ns, name, |old| Ok(T::scoped(old, new, status)))?
        }
        _ => {
            let content_type = call.content_type.as_deref().unwrap_or("");
            let kind = PatchKind::from_content_type(content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
            let patch_doc: Value = parse_body(&call.body)?;
            store.update(ns, name, |old| {
                let mut doc = serde_json::to_value(old).map_err(|e| ApiError::bad_request(e.to_string()))?;
                patch::apply(kind, &mut doc, &patch_doc)?;
                let new: T = serde_json::from_value(doc).map_err(|e| ApiError::bad_request(e.to_string()))?;
                // The patched object still carries the stored resourceVersion unless the
                // patch set one: then it is a precondition, and a stale one conflicts.
                Ok(T::scoped(old, new, status))
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

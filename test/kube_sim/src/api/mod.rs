//! The HTTP surface: authentication, then routing to the handlers: discovery, the
//! core/v1 Pod API and its status subresource, and the other kinds manifests hold (see
//! [`crate::objects`]).
//!
//! Dependencies point down: this module routes to [`typed`], [`discovery`] and [`kinds`],
//! which share the request and response helpers of [`call`] and never use the router.

mod call;
mod discovery;
mod kinds;
mod typed;

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::auth::Identity;
use crate::objects::Kind;
use crate::query;
use crate::shared::{Shared, StoreOf};
use crate::status::ApiError;

pub use call::{error, Body};
pub use discovery::KUBERNETES_VERSION;

use call::{text, Call};
use typed::Served;

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
        if let Some(retry_after) = shared.faults.current_throttle() {
            shared.stats.request("THROTTLED", req.uri().path());
            return call::too_many_requests(&shared, retry_after);
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
        return kinds::handle(shared, call, kind, ns, name);
    }
    let served = discovery::served;
    match (segments.as_slice(), get) {
        (["version"], true) => discovery::answer(shared, "/version", discovery::version()),
        (["healthz"] | ["livez"] | ["readyz"], true) => Ok(text(shared, "ok")),
        (["api"], true) => discovery::answer(shared, "/api", discovery::api_versions()),
        (["apis"], true) => discovery::answer(shared, "/apis", discovery::group_list()),
        (["api", "v1"], true) => discovery::answer(shared, "/api/v1", discovery::resource_list("", "v1")),
        (["apis", group, version], true) if served(group, version) => discovery::answer(
            shared,
            "/apis/{group}/{version}",
            discovery::resource_list(group, version),
        ),
        (["openapi", "v3"], true) => discovery::answer(shared, "/openapi/v3", discovery::openapi_index()),
        (["openapi", "v3", "api", "v1"], true) => {
            discovery::answer(shared, "/openapi/v3/api/v1", discovery::openapi("", "v1"))
        }
        (["openapi", "v3", "apis", group, version], true) if served(group, version) => discovery::answer(
            shared,
            "/openapi/v3/apis/{group}/{version}",
            discovery::openapi(group, version),
        ),
        _ => match typed_route(&segments) {
            Some(route) if route.group.is_empty() && route.plural == "pods" => {
                dispatch::<Pod>(shared, call, route).await
            }
            Some(route) if route.group.is_empty() && route.plural == "services" => {
                dispatch::<Service>(shared, call, route).await
            }
            Some(route) if route.group == "discovery.k8s.io" && route.plural == "endpointslices" => {
                dispatch::<EndpointSlice>(shared, call, route).await
            }
            _ => Err(ApiError::no_route()),
        },
    }
}

/// A path of a kind kept in a store.
struct TypedRoute<'a> {
    group: &'a str,
    plural: &'a str,
    /// The old `/watch/` prefix.
    watch: bool,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

/// `/api/v1/...` or `/apis/{group}/v1/...`, split (the kind is not checked here).
fn typed_route<'a>(segments: &[&'a str]) -> Option<TypedRoute<'a>> {
    let (group, rest) = match segments {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, "v1", rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let (namespace, plural, name, subresource) = match rest {
        [plural] => (None, *plural, None, None),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(TypedRoute {
        group,
        plural,
        watch,
        namespace,
        name,
        subresource,
    })
}

async fn dispatch<T: Served>(
    shared: &Arc<Shared>,
    call: &Call,
    route: TypedRoute<'_>,
) -> Result<Response<Body>, ApiError>
where
    Shared: StoreOf<T>,
{
    let get = call.method == Method::GET;
    match (route.watch, route.namespace, route.name, route.subresource) {
        (true, ns, None, None) if get => typed::watch::<T>(shared, call, ns, true),
        (false, ns, None, None) => typed::collection::<T>(shared, call, ns).await,
        (false, Some(ns), Some(name), None) => typed::object::<T>(shared, call, ns, name, false).await,
        // Only pods have their status subresource served.
        (false, Some(ns), Some(name), Some("status")) if T::PLURAL == "pods" => {
            typed::object::<T>(shared, call, ns, name, true).await
        }
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

//! The control port's own routes (`/_sim/...`): fault injection, RBAC changes and
//! counters, for tests and benchmarks driven from Elixir or a shell.
//!
//! Everything else on the control port is the Pod API itself, acting as admin.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, Response};
use serde_json::json;

use crate::api::{self, Body};
use crate::faults::{Outage, WatchSignal};
use crate::query;
use crate::shared::Shared;
use crate::status::ApiError;

/// Answers a `/_sim/...` request, or `None` when the path is not a control route.
pub fn handle(shared: &Arc<Shared>, method: &Method, path: &str, query: Option<&str>) -> Option<Response<Body>> {
    let action = path.strip_prefix("/_sim/")?;
    let params: HashMap<String, String> = query::parse(query.unwrap_or(""));
    let number = |name: &str| params.get(name).and_then(|v| v.parse::<u64>().ok());
    let faults = &shared.faults;
    let body = match (method, action) {
        (&Method::GET, "stats") => serde_json::to_value(shared.stats.snapshot()).ok().map(|mut stats| {
            stats["resourceVersion"] = json!(shared.store.resource_version());
            stats["pods"] = json!(shared.store.len());
            stats["services"] = json!(shared.services.len());
            stats["endpointslices"] = json!(shared.slices.len());
            stats
        }),
        (&Method::POST, "stats/reset") => Some(json!({ "reset": true }).tap(|_| shared.stats.reset())),
        (&Method::POST, "faults/unavailable") | (&Method::POST, "faults/offline") => {
            let kind = if action.ends_with("offline") {
                Outage::Offline
            } else {
                Outage::Unavailable
            };
            let seconds = number("seconds").unwrap_or(60);
            faults.outage(kind, Duration::from_millis(number("ms").unwrap_or(seconds * 1000)));
            Some(json!({ "outage": action, "ms": number("ms").unwrap_or(seconds * 1000) }))
        }
        (&Method::POST, "faults/throttle") => {
            let retry_after = number("retry_after").unwrap_or(1);
            let seconds = number("seconds").unwrap_or(60);
            faults.throttle(retry_after, Duration::from_secs(seconds));
            Some(json!({ "throttled": seconds, "retryAfter": retry_after }))
        }
        (&Method::POST, "faults/recover") => Some(json!({ "recovered": true }).tap(|_| faults.recover())),
        (&Method::POST, "faults/compact") => Some(json!({ "compacted": true }).tap(|_| shared.store.compact())),
        (&Method::POST, "faults/cut-watches") => {
            let expired = params.get("expired").is_some_and(|v| query::parse_bool(v));
            faults.signal(WatchSignal::Cut { expired });
            Some(json!({ "cut": true, "expired": expired }))
        }
        (&Method::POST, "faults/malformed") => {
            Some(json!({ "malformed": true }).tap(|_| faults.signal(WatchSignal::Malformed)))
        }
        (&Method::POST, "faults/latency") => {
            let ms = number("ms").unwrap_or(0);
            faults.set_latency(Duration::from_millis(ms));
            Some(json!({ "latencyMs": ms }))
        }
        (&Method::POST, "faults/rotate-token") => Some(json!({ "token": shared.rotate_token() })),
        (&Method::POST, "churn") => {
            let (rate, seconds) = (number("rate").unwrap_or(10), number("seconds").unwrap_or(60));
            let namespace = params.get("namespace").cloned().unwrap_or_else(|| "default".into());
            crate::churn::start(shared.clone(), namespace, rate, Duration::from_secs(seconds));
            Some(json!({ "rate": rate, "seconds": seconds, "annotation": crate::churn::CHANGED_AT }))
        }
        (&Method::POST, "rbac") => {
            let namespaces = params.get("namespaces").map(String::as_str).unwrap_or("*");
            let allowed = (namespaces != "*").then(|| {
                namespaces
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect::<BTreeSet<_>>()
            });
            shared.auth.restrict_service_account(allowed.clone());
            // `resources=pods,services,endpointslices.discovery.k8s.io`: what the Role
            // grants (unchanged when absent).
            if let Some(resources) = params.get("resources") {
                let granted = resources
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(|r| match r.split_once('.') {
                        Some((resource, group)) => (resource.to_string(), group.to_string()),
                        None => (r.to_string(), String::new()),
                    })
                    .collect();
                shared.auth.grant(granted);
            }
            let resources: Vec<String> = shared
                .auth
                .granted()
                .into_iter()
                .map(|(r, g)| if g.is_empty() { r } else { format!("{r}.{g}") })
                .collect();
            Some(json!({ "namespaces": allowed, "resources": resources }))
        }
        _ => None,
    };
    Some(match body {
        Some(body) => {
            let mut response = Response::new(http_body_util::BodyExt::boxed(http_body_util::Full::new(
                bytes::Bytes::from(body.to_string()),
            )));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        }
        None => api::error(shared, &ApiError::no_route()),
    })
}

/// Runs a side effect and hands the value on: keeps each route a single expression.
trait Tap: Sized {
    fn tap(self, effect: impl FnOnce(&Self)) -> Self {
        effect(&self);
        self
    }
}

impl<T> Tap for T {}

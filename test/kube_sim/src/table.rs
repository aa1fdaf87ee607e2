//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for
//! (`Accept: application/json;as=Table;...`), with the same pod columns as kube-apiserver.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the server default).
    Metadata,
    /// The whole pod.
    Object,
}

impl IncludeObject {
    /// Parses `?includeObject=`.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.split(',').next().is_some_and(|first| first.contains("as=Table")))
}

/// A Table of `pods`, at `resource_version`.
pub fn render<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    resource_version: &str,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let mut metadata = json!({ "resourceVersion": resource_version });
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(),
        "rows": pods.into_iter().map(|p| row(p, include)).collect::<Vec<_>>(),
    })
}

fn columns() -> Value {
    let column = |name: &str, kind: &str, format: &str, priority: u8, description: &str| json!({ "name": name, "type": kind, "format": format, "description": description, "priority": priority });
    json!([
        column("Name", "string", "name", 0, "Name must be unique within a namespace."),
        column("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
        column("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
        column("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        column("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
        column("IP", "string", "", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
        column("Node", "string", "", 1, "NodeName is a request to schedule this pod onto a specific node."),
        column("Nominated Node", "string", "", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
        column("Readiness Gates", "string", "", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
    ])
}

fn row(pod: &Pod, include: IncludeObject) -> Value {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let statuses = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or(&[]);
    let containers = spec.map(|s| s.containers.len()).unwrap_or(0);
    let ready = statuses.iter().filter(|c| c.ready).count();
    let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
    let phase = status
        .and_then(|s| s.reason.clone().or_else(|| s.phase.clone()))
        .unwrap_or_default();
    let shown_status = if pod.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        phase
    };
    let none = || "<none>".to_string();
    let age = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| short_duration(crate::meta::unix_now() - t.0.as_second()))
        .unwrap_or_else(|| "<unknown>".to_string());
    let mut row = json!({
        "cells": [
            pod.metadata.name.clone().unwrap_or_default(),
            format!("{ready}/{containers}"),
            shown_status,
            restarts,
            age,
            status.and_then(|s| s.pod_ip.clone()).unwrap_or_else(none),
            spec.and_then(|s| s.node_name.clone()).unwrap_or_else(none),
            status.and_then(|s| s.nominated_node_name.clone()).unwrap_or_else(none),
            none(),
        ]
    });
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row["object"] =
                json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": pod.metadata });
        }
        IncludeObject::Object => row["object"] = json!(pod),
    }
    row
}

/// Ages as kubectl shows them: `45s`, `3m12s`, `5h`, `12d`.
fn short_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=599 => format!("{}m{}s", s / 60, s % 60),
        600..=10799 => format!("{}m", s / 60),
        10800..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(200), "3m20s");
        assert_eq!(short_duration(3000), "50m");
        assert_eq!(short_duration(7 * 3600), "7h");
        assert_eq!(short_duration(3 * 86400), "3d");
    }

    #[test]
    fn table_accept_header_is_recognised() {
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
        assert!(!wants_table(None));
    }
}

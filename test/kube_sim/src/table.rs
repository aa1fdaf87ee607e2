//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for
//! (`Accept: application/json;as=Table;...`), with kube-apiserver's columns for pods,
//! Services and EndpointSlices.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use serde::Serialize;
use serde_json::{json, Value};

/// A kind kubectl can print: its columns, and one row's cells.
pub trait Printed: Metadata<Ty = ObjectMeta> + Serialize {
    /// The column definitions.
    fn columns() -> Value;
    /// One row's cells, in column order.
    fn cells(&self) -> Vec<Value>;
}

fn column(name: &str, kind: &str, format: &str, priority: u8, description: &str) -> Value {
    json!({ "name": name, "type": kind, "format": format, "description": description, "priority": priority })
}

fn age(meta: &ObjectMeta) -> String {
    meta.creation_timestamp
        .as_ref()
        .map(|t| short_duration(crate::meta::unix_now() - t.0.as_second()))
        .unwrap_or_else(|| "<unknown>".to_string())
}

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

/// A Table of `objects`, at `resource_version`.
pub fn render<'a, T: Printed + 'a>(
    objects: impl IntoIterator<Item = &'a T>,
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
        "columnDefinitions": T::columns(),
        "rows": objects.into_iter().map(|o| row(o, include)).collect::<Vec<_>>(),
    })
}

impl Printed for Pod {
    fn columns() -> Value {
        pod_columns()
    }

    fn cells(&self) -> Vec<Value> {
        pod_cells(self)
    }
}

fn pod_columns() -> Value {
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

fn pod_cells(pod: &Pod) -> Vec<Value> {
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
    let age = age(&pod.metadata);
    vec![
        json!(pod.metadata.name.clone().unwrap_or_default()),
        json!(format!("{ready}/{containers}")),
        json!(shown_status),
        json!(restarts),
        json!(age),
        json!(status.and_then(|s| s.pod_ip.clone()).unwrap_or_else(none)),
        json!(spec.and_then(|s| s.node_name.clone()).unwrap_or_else(none)),
        json!(status.and_then(|s| s.nominated_node_name.clone()).unwrap_or_else(none)),
        json!(none()),
    ]
}

impl Printed for Service {
    fn columns() -> Value {
        json!([
            column("Name", "string", "name", 0, "Name must be unique within a namespace."),
            column("Type", "string", "", 0, "type determines how the Service is exposed."),
            column("Cluster-IP", "string", "", 0, "clusterIP is the IP address of the service."),
            column("External-IP", "string", "", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            column("Port(s)", "string", "", 0, "The list of ports that are exposed by this service."),
            column("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
            column("Selector", "string", "", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ])
    }

    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.as_ref();
        let ports: Vec<String> = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")))
            .collect();
        let selector: Vec<String> = spec
            .and_then(|s| s.selector.as_ref())
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let or_none = |v: String| if v.is_empty() { "<none>".to_string() } else { v };
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(spec.and_then(|s| s.type_.clone()).unwrap_or_default()),
            json!(spec.and_then(|s| s.cluster_ip.clone()).unwrap_or_default()),
            json!("<none>"),
            json!(or_none(ports.join(","))),
            json!(age(&self.metadata)),
            json!(or_none(selector.join(","))),
        ]
    }
}

impl Printed for EndpointSlice {
    fn columns() -> Value {
        json!([
            column("Name", "string", "name", 0, "Name must be unique within a namespace."),
            column(
                "AddressType",
                "string",
                "",
                0,
                "addressType specifies the type of address carried by this EndpointSlice."
            ),
            column(
                "Ports",
                "string",
                "",
                0,
                "ports specifies the list of network ports exposed by each endpoint in this slice."
            ),
            column(
                "Endpoints",
                "string",
                "",
                0,
                "endpoints is a list of unique endpoints in this slice."
            ),
            column(
                "Age",
                "string",
                "",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created."
            ),
        ])
    }

    fn cells(&self) -> Vec<Value> {
        let ports: Vec<String> = self
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.port.map(|n| n.to_string()))
            .collect();
        let addresses: Vec<&str> = self
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter().map(String::as_str))
            .collect();
        // kubectl shows the first three addresses and how many more there are.
        let mut shown = addresses.iter().take(3).copied().collect::<Vec<_>>().join(",");
        if addresses.len() > 3 {
            shown.push_str(&format!(" + {} more...", addresses.len() - 3));
        }
        let or_unset = |v: String| if v.is_empty() { "<unset>".to_string() } else { v };
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(self.address_type),
            json!(or_unset(ports.join(","))),
            json!(or_unset(shown)),
            json!(age(&self.metadata)),
        ]
    }
}

fn row<T: Printed>(object: &T, include: IncludeObject) -> Value {
    let mut row = json!({ "cells": object.cells() });
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row["object"] = json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object.metadata() });
        }
        IncludeObject::Object => row["object"] = json!(object),
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

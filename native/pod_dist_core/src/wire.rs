//! The Pod as the watch decodes it: only the fields a [`PodRecord`](crate::pod::PodRecord)
//! is built from. Everything else in each object (managed fields, volumes, images,
//! resources, container statuses...) is skipped by the JSON parser without being
//! allocated, so a list of thousands of pods leaves little garbage behind and decodes
//! faster than into `k8s_openapi`'s full `Pod`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

/// A pod, decoded for the index; the API path and kind are the core `v1` Pod's.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WirePod {
    /// The metadata the index and the watcher use (name, namespace, uid,
    /// resourceVersion, creationTimestamp, deletionTimestamp, labels, annotations); the
    /// rest stays empty.
    #[serde(default, deserialize_with = "slim_metadata")]
    pub metadata: ObjectMeta,
    /// `spec`
    #[serde(default)]
    pub spec: Option<WireSpec>,
    /// `status`
    #[serde(default)]
    pub status: Option<WireStatus>,
}

/// `spec`, as far as addresses and ports go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSpec {
    /// `containers`
    #[serde(default)]
    pub containers: Vec<WireContainer>,
    /// `hostname`
    pub hostname: Option<String>,
    /// `subdomain`
    pub subdomain: Option<String>,
    /// `nodeName`
    pub node_name: Option<String>,
    /// `hostNetwork`: the pod uses its node's network, and so its node's IP.
    pub host_network: Option<bool>,
}

/// A container: its name and declared ports.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireContainer {
    /// `name`
    #[serde(default)]
    pub name: String,
    /// `ports`
    pub ports: Option<Vec<WirePort>>,
}

/// A declared container port.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePort {
    /// `name`
    pub name: Option<String>,
    /// `containerPort`
    pub container_port: i32,
}

/// `status`, as far as addresses and readiness go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireStatus {
    /// `phase`
    pub phase: Option<String>,
    /// `podIP`
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    /// `podIPs`
    #[serde(rename = "podIPs")]
    pub pod_ips: Option<Vec<WireIp>>,
    /// `conditions`
    pub conditions: Option<Vec<WireCondition>>,
}

/// One of `status.podIPs`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireIp {
    /// `ip`
    pub ip: String,
}

/// One of `status.conditions`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireCondition {
    /// `type`
    #[serde(rename = "type")]
    pub type_: String,
    /// `status`
    pub status: String,
}

/// The metadata fields worth decoding; `managedFields` alone is often half a Pod.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMetadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

pub(crate) fn slim_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let meta = SlimMetadata::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        labels: meta.labels,
        annotations: meta.annotations,
        ..ObjectMeta::default()
    })
}

/// Makes a slim wire type a Kubernetes resource kube's `Api` and watcher accept: its API
/// group, version, kind and path, and its (slim) metadata.
macro_rules! wire_resource {
    ($type:ty, group: $group:literal, version: $version:literal, kind: $kind:literal, path: $path:literal) => {
        impl k8s_openapi::Resource for $type {
            const API_VERSION: &'static str = if $group.is_empty() {
                $version
            } else {
                concat!($group, "/", $version)
            };
            const GROUP: &'static str = $group;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $path;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $type {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use wire_resource;

wire_resource!(WirePod, group: "", version: "v1", kind: "Pod", path: "pods");

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    /// A pod as full as the API serves them: the slim decoding keeps what the full one
    /// has in the fields the index reads.
    #[test]
    fn keeps_what_the_full_pod_has_in_the_fields_it_reads() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "api-1", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "creationTimestamp": "2026-12-02T02:00:00Z",
                "deletionTimestamp": "2026-12-02T03:00:00Z",
                "labels": { "app": "shop" }, "annotations": { "a": "b" },
                "managedFields": [{ "manager": "kubelet", "operation": "Update", "fieldsV1": { "f:status": {} } }],
                "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "x" }]
            },
            "spec": {
                "hostname": "h", "subdomain": "s", "nodeName": "node-1", "hostNetwork": true,
                "containers": [{
                    "name": "api", "image": "shop:1",
                    "ports": [{ "name": "dist", "containerPort": 4370, "protocol": "TCP" }],
                    "resources": { "limits": { "memory": "1Gi" } }
                }],
                "volumes": [{ "name": "certs", "secret": { "secretName": "dist-tls" } }]
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.7", "podIPs": [{ "ip": "10.0.0.7" }, { "ip": "fd00::7" }],
                "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T03:00:00Z" }],
                "containerStatuses": [{ "name": "api", "ready": true, "restartCount": 0, "image": "shop:1", "imageID": "" }]
            }
        });
        let slim: WirePod = serde_json::from_value(json.clone()).unwrap();
        let full: Pod = serde_json::from_value(json).unwrap();
        let meta = &full.metadata;
        assert_eq!(
            slim.metadata,
            ObjectMeta {
                managed_fields: None,
                owner_references: None,
                ..meta.clone()
            }
        );
        let (spec, full_spec) = (slim.spec.unwrap(), full.spec.unwrap());
        assert_eq!(spec.node_name, full_spec.node_name);
        assert_eq!(spec.host_network, full_spec.host_network);
        assert_eq!(
            (spec.hostname, spec.subdomain),
            (full_spec.hostname, full_spec.subdomain)
        );
        assert_eq!(spec.containers[0].name, "api");
        let ports = spec.containers[0].ports.as_ref().unwrap();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].container_port),
            (Some("dist"), 4370)
        );
        let status = slim.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.7"));
        let ips: Vec<_> = status.pod_ips.unwrap().into_iter().map(|ip| ip.ip).collect();
        assert_eq!(ips, ["10.0.0.7", "fd00::7"]);
        let ready = &status.conditions.unwrap()[0];
        assert_eq!((ready.type_.as_str(), ready.status.as_str()), ("Ready", "True"));
    }

    #[test]
    fn a_wrong_type_in_a_field_it_reads_is_an_error() {
        let bad = serde_json::json!({ "metadata": { "name": ["not-a-name"] } });
        assert!(serde_json::from_value::<WirePod>(bad).is_err());
    }
}

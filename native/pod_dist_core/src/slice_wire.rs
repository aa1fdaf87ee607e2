//! The EndpointSlice (`discovery.k8s.io/v1`) as the watch decodes it: only the fields
//! [`crate::slices`] builds pod records from. The rest of each object (managed fields,
//! zones, topology hints, app protocols...) is skipped by the JSON parser without being
//! allocated, as [`crate::wire`] does for pods. The type is usable as is with
//! `kube::Api` and kube-runtime's watcher (`Api::<WireEndpointSlice>::namespaced`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::wire::{slim_metadata, wire_resource};

/// The label the EndpointSlice controller puts on every slice of a Service: its name.
/// A watch of one Service's slices selects on it.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The label naming who writes a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// The EndpointSlice controller's value of [`MANAGED_BY_LABEL`]: by default, only its
/// slices speak for a Service's pods.
pub const CONTROLLER_MANAGER: &str = "endpointslice-controller.k8s.io";

/// An EndpointSlice, decoded for the index.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEndpointSlice {
    /// The metadata the merge and the watcher use (name, namespace, uid,
    /// resourceVersion, labels, creationTimestamp, deletionTimestamp, annotations); the
    /// rest stays empty.
    #[serde(default, deserialize_with = "slim_metadata")]
    pub metadata: ObjectMeta,
    /// `addressType`: `IPv4`, `IPv6` or `FQDN` (immutable once created).
    #[serde(default)]
    pub address_type: String,
    /// `endpoints`; the API server sends `null` for a slice without any.
    #[serde(default)]
    pub endpoints: Option<Vec<WireEndpoint>>,
    /// `ports`; `null` or absent means no port is declared.
    #[serde(default)]
    pub ports: Option<Vec<WireSlicePort>>,
}

impl WireEndpointSlice {
    /// Who wrote this slice (its [`MANAGED_BY_LABEL`]).
    pub fn managed_by(&self) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(MANAGED_BY_LABEL).map(String::as_str)
    }

    /// The Service this slice belongs to (its `kubernetes.io/service-name` label).
    pub fn service_name(&self) -> Option<&str> {
        self.metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// One endpoint of a slice: for a Service's own slices, one pod.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEndpoint {
    /// `addresses` (the EndpointSlice controller writes exactly one).
    #[serde(default)]
    pub addresses: Option<Vec<String>>,
    /// `conditions`; absent fields take the API's defaults (see [`WireConditions`]).
    #[serde(default)]
    pub conditions: Option<WireConditions>,
    /// `hostname`: set by the controller only when the pod's `spec.hostname` is set and
    /// its `spec.subdomain` is this Service.
    pub hostname: Option<String>,
    /// `nodeName`
    pub node_name: Option<String>,
    /// `targetRef`: the pod behind the endpoint, if any.
    pub target_ref: Option<WireTargetRef>,
}

/// `conditions` of an endpoint. Each is optional on the wire, with defaults the API
/// reference states: a missing `ready` means ready, a missing `terminating` means not
/// terminating, and a missing `serving` (older writers do not set it) defers to `ready`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct WireConditions {
    /// `ready`: serving and not terminating, unless the Service publishes not-ready
    /// addresses (`publishNotReadyAddresses`), which makes it always true.
    pub ready: Option<bool>,
    /// `serving`: the pod's Ready condition is True, whether it terminates or not.
    pub serving: Option<bool>,
    /// `terminating`: the pod has a `deletionTimestamp`.
    pub terminating: Option<bool>,
}

impl WireConditions {
    /// `ready`, defaulted: true when absent.
    pub fn ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }

    /// `serving`, defaulted: `ready` (itself defaulted) when absent.
    pub fn serving(&self) -> bool {
        self.serving.unwrap_or_else(|| self.ready())
    }

    /// `terminating`, defaulted: false when absent.
    pub fn terminating(&self) -> bool {
        self.terminating.unwrap_or(false)
    }
}

/// `targetRef`, as far as naming the pod goes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireTargetRef {
    /// `kind` (`Pod` for the controller's endpoints).
    #[serde(default)]
    pub kind: Option<String>,
    /// `namespace`; the slice's own when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `name`
    #[serde(default)]
    pub name: Option<String>,
    /// `uid`
    #[serde(default)]
    pub uid: Option<String>,
}

/// One of the slice's `ports`: the Service port's name, and the port the endpoints
/// listen on (the Service's target port, resolved per pod).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct WireSlicePort {
    /// `name`: the Service port's name (empty for a Service's single unnamed port).
    #[serde(default)]
    pub name: Option<String>,
    /// `port`; absent means "all ports", which names no port.
    #[serde(default)]
    pub port: Option<i32>,
    /// `protocol`: `TCP` when absent.
    #[serde(default)]
    pub protocol: Option<String>,
}

wire_resource!(WireEndpointSlice, group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", path: "endpointslices");

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    /// A slice as the EndpointSlice controller writes it for a dual-stack headless
    /// Service with `publishNotReadyAddresses`, with the fields the slim decoding skips.
    pub(crate) fn controller_slice() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": "shop-dist-abc12", "generateName": "shop-dist-", "namespace": "shop",
                "uid": "s-1", "resourceVersion": "77", "generation": 3,
                "creationTimestamp": "2026-12-02T02:00:00Z",
                "labels": {
                    "kubernetes.io/service-name": "shop-dist",
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    "service.kubernetes.io/headless": ""
                },
                "annotations": { "endpoints.kubernetes.io/last-change-trigger-time": "2026-12-02T02:00:00Z" },
                "ownerReferences": [{ "apiVersion": "v1", "kind": "Service", "name": "shop-dist", "uid": "svc-1",
                                      "controller": true, "blockOwnerDeletion": true }],
                "managedFields": [{ "manager": "kube-controller-manager", "operation": "Update",
                                    "apiVersion": "discovery.k8s.io/v1", "fieldsType": "FieldsV1", "fieldsV1": { "f:endpoints": {} } }]
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": ["10.0.0.7"],
                    "conditions": { "ready": true, "serving": false, "terminating": false },
                    "hostname": "web-0", "nodeName": "node-1", "zone": "zone-a",
                    "targetRef": { "kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "u-0" },
                    "hints": { "forZones": [{ "name": "zone-a" }] }
                },
                {
                    "addresses": ["10.0.0.8"],
                    "conditions": {},
                    "targetRef": { "kind": "Pod", "name": "web-1", "uid": "u-1", "resourceVersion": "12" }
                },
                { "addresses": ["192.0.2.50"] }
            ],
            "ports": [
                { "name": "dist", "port": 4370, "protocol": "TCP", "appProtocol": "erlang-dist" },
                { "name": "metrics", "port": 9100 },
                { "name": "dns", "port": 53, "protocol": "UDP" }
            ]
        })
    }

    /// The slim decoding keeps what the full `EndpointSlice` has in the fields it reads.
    #[test]
    fn keeps_what_the_full_slice_has_in_the_fields_it_reads() {
        let json = controller_slice();
        let slim: WireEndpointSlice = serde_json::from_value(json.clone()).unwrap();
        let full: EndpointSlice = serde_json::from_value(json).unwrap();
        assert_eq!(
            slim.metadata,
            ObjectMeta {
                managed_fields: None,
                owner_references: None,
                generate_name: None,
                generation: None,
                ..full.metadata.clone()
            }
        );
        assert_eq!(slim.service_name(), Some("shop-dist"));
        assert_eq!(slim.address_type, full.address_type);
        let (endpoints, full_endpoints) = (slim.endpoints.unwrap(), full.endpoints);
        assert_eq!(endpoints.len(), full_endpoints.len());
        for (slim, full) in endpoints.iter().zip(&full_endpoints) {
            assert_eq!(slim.addresses.as_ref(), Some(&full.addresses));
            assert_eq!(slim.hostname, full.hostname);
            assert_eq!(slim.node_name, full.node_name);
            let conditions = full.conditions.clone().unwrap_or_default();
            assert_eq!(
                slim.conditions.unwrap_or_default(),
                WireConditions {
                    ready: conditions.ready,
                    serving: conditions.serving,
                    terminating: conditions.terminating,
                }
            );
            match (&slim.target_ref, &full.target_ref) {
                (Some(slim), Some(full)) => {
                    assert_eq!(
                        (&slim.kind, &slim.namespace, &slim.name, &slim.uid),
                        (&full.kind, &full.namespace, &full.name, &full.uid)
                    );
                }
                (None, None) => {}
                other => panic!("targetRef decoded differently: {other:?}"),
            }
        }
        let ports: Vec<_> = full
            .ports
            .unwrap()
            .into_iter()
            .map(|p| WireSlicePort {
                name: p.name,
                port: p.port,
                protocol: p.protocol,
            })
            .collect();
        assert_eq!(slim.ports.unwrap(), ports);
    }

    #[test]
    fn conditions_take_the_api_defaults_when_absent() {
        let absent = WireConditions::default();
        assert!(absent.ready() && absent.serving() && !absent.terminating());
        // An older writer sets only `ready`: serving follows it.
        let not_ready = WireConditions {
            ready: Some(false),
            ..WireConditions::default()
        };
        assert!(!not_ready.serving());
        // publishNotReadyAddresses: ready is forced, serving tells the truth.
        let published = WireConditions {
            ready: Some(true),
            serving: Some(false),
            terminating: Some(false),
        };
        assert!(published.ready() && !published.serving());
        let draining = WireConditions {
            ready: Some(false),
            serving: Some(true),
            terminating: Some(true),
        };
        assert!(!draining.ready() && draining.serving() && draining.terminating());
    }

    /// What the API server sends for a slice without endpoints or ports: `null`s, and a
    /// slice of another address type; none of it is an error.
    #[test]
    fn empty_and_fqdn_slices_decode() {
        let empty: WireEndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "shop-dist-x", "namespace": "shop", "labels": { "kubernetes.io/service-name": "shop-dist" } },
            "addressType": "IPv6", "endpoints": null, "ports": null
        }))
        .unwrap();
        assert!(empty.endpoints.is_none() && empty.ports.is_none());
        assert_eq!(empty.address_type, "IPv6");
        let fqdn: WireEndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "external", "namespace": "shop" },
            "addressType": "FQDN",
            "endpoints": [{ "addresses": ["db.example.com"] }],
            "ports": [{ "port": 5432 }]
        }))
        .unwrap();
        assert_eq!(fqdn.address_type, "FQDN");
        assert_eq!(fqdn.service_name(), None);
        assert_eq!(
            fqdn.endpoints.unwrap()[0].addresses.as_deref(),
            Some(&["db.example.com".to_string()][..])
        );
    }

    #[test]
    fn a_wrong_type_in_a_field_it_reads_is_an_error() {
        for bad in [
            serde_json::json!({ "metadata": { "name": ["not-a-name"] } }),
            serde_json::json!({ "endpoints": [{ "conditions": { "ready": "yes" } }] }),
            serde_json::json!({ "ports": [{ "port": "dist" }] }),
        ] {
            assert!(serde_json::from_value::<WireEndpointSlice>(bad).is_err());
        }
    }

    /// The API path the watcher asks: the slices of a namespace, in their API group.
    #[test]
    fn kube_addresses_it_as_the_endpoint_slice_resource() {
        use kube::Resource;
        assert_eq!(
            WireEndpointSlice::url_path(&(), Some("shop")),
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"
        );
        assert_eq!(WireEndpointSlice::kind(&()), "EndpointSlice");
        assert_eq!(
            WireEndpointSlice::api_version(&()),
            <EndpointSlice as k8s_openapi::Resource>::API_VERSION
        );
    }

    /// Compiles only if kube-runtime's watcher accepts the type: the integration is a
    /// drop-in for `WirePod`'s.
    #[allow(dead_code)]
    fn watchable(client: kube::Client) -> impl futures::Stream {
        let api = kube::Api::<WireEndpointSlice>::namespaced(client, "shop");
        kube::runtime::watcher::watcher(
            api,
            kube::runtime::watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}=shop-dist")),
        )
    }
}

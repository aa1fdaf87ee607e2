//! Services: the checks and defaults of kube-apiserver's service strategy that a
//! headless or ClusterIP Service of our manifests meets.

use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names;
use crate::status::ApiError;
use crate::store::Stored;

impl Stored for Service {
    const PLURAL: &'static str = "services";

    fn validate(&self) -> Result<(), ApiError> {
        let name = self.metadata.name.as_deref().unwrap_or("");
        let invalid = |message: String| ApiError::invalid_of("Service", "", name, message);
        if !names::is_label_1035(name) {
            return Err(invalid(format!(
                "metadata.name: Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
            )));
        }
        let spec = self.spec.as_ref();
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
        let headless = spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None");
        if ports.is_empty() && !headless {
            return Err(invalid("spec.ports: Required value".into()));
        }
        for (i, port) in ports.iter().enumerate() {
            let port_name = port.name.as_deref().unwrap_or("");
            if ports.len() > 1 && port_name.is_empty() {
                return Err(invalid(format!("spec.ports[{i}].name: Required value")));
            }
            if !port_name.is_empty() && !names::is_label_1035(port_name) {
                return Err(invalid(format!("spec.ports[{i}].name: Invalid value: {port_name:?}")));
            }
            if !(1..=65535).contains(&port.port) {
                return Err(invalid(format!(
                    "spec.ports[{i}].port: Invalid value: {}: must be between 1 and 65535, inclusive",
                    port.port
                )));
            }
        }
        Ok(())
    }

    /// Type `ClusterIP`, a cluster IP unless headless, IPv4 single stack (a headless
    /// Service with a selector requires both families, as on a dual-stack cluster),
    /// ports with protocol TCP and `targetPort` equal to `port` unless given.
    fn default_fields(&mut self, _created: bool) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.type_.get_or_insert_with(|| "ClusterIP".into());
        spec.session_affinity.get_or_insert_with(|| "None".into());
        spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into());
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if spec.cluster_ip.as_deref().unwrap_or("").is_empty() {
            spec.cluster_ip = Some(next_cluster_ip());
        }
        spec.cluster_ips = spec.cluster_ip.clone().map(|ip| vec![ip]);
        let with_selector = spec.selector.as_ref().is_some_and(|s| !s.is_empty());
        if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
            let dual = headless && with_selector;
            spec.ip_family_policy = Some(if dual { "RequireDualStack" } else { "SingleStack" }.into());
            spec.ip_families = Some(if dual {
                vec!["IPv4".into(), "IPv6".into()]
            } else {
                vec!["IPv4".into()]
            });
        }
        spec.ip_family_policy.get_or_insert_with(|| "SingleStack".into());
        for port in spec.ports.iter_mut().flatten() {
            port.protocol.get_or_insert_with(|| "TCP".into());
            port.target_port.get_or_insert(IntOrString::Int(port.port));
        }
        self.status.get_or_insert_with(Default::default);
    }

    fn spec_changed(&self, old: &Self) -> bool {
        self.spec != old.spec
    }
}

/// Cluster IPs from 10.96.0.0/12, as kubeadm's default service range.
fn next_cluster_ip() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(10);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
}

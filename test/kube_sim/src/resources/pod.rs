//! Pods: the checks and defaults of kube-apiserver's pod strategy that our tests can meet.

use k8s_openapi::api::core::v1::Pod;

use super::names;
use crate::selector::pod_field;
use crate::status::ApiError;
use crate::store::Stored;

impl Stored for Pod {
    const PLURAL: &'static str = "pods";

    fn validate(&self) -> Result<(), ApiError> {
        validate(self)
    }

    fn default_fields(&mut self, created: bool) {
        backfill_pod_ips(self);
        if created {
            let status = self.status.get_or_insert_with(Default::default);
            status.phase.get_or_insert_with(|| "Pending".to_string());
        }
    }

    fn spec_changed(&self, old: &Self) -> bool {
        self.spec != old.spec
    }

    fn field(&self, field: &str) -> Option<String> {
        pod_field(self, field)
    }

    /// As kube-apiserver's pod strategies: the status subresource changes only status,
    /// the main resource everything but status.
    fn scoped(old: &Self, new: Self, status_only: bool) -> Self {
        if status_only {
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

    /// A pod bound to a node and not finished terminates gracefully, like a
    /// kubelet-managed pod; an unscheduled or finished pod goes at once.
    fn grace_seconds(&self, requested: Option<i64>) -> Option<i64> {
        let spec_grace = self
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let scheduled = self
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            self.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        );
        let grace = if scheduled && !finished {
            requested.unwrap_or(spec_grace).max(0)
        } else {
            0
        };
        (grace > 0).then_some(grace)
    }
}

/// The validation a real server would reject with 422 and that our tests could trip on.
fn validate(pod: &Pod) -> Result<(), ApiError> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    if !names::is_subdomain(name) {
        return Err(names::subdomain_error("Pod", "", name));
    }
    validate_pod_ips(name, pod)?;
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    if containers.is_empty() {
        return Err(ApiError::invalid(name, "spec.containers: Required value"));
    }
    for (i, c) in containers.iter().enumerate() {
        if c.name.is_empty() {
            return Err(ApiError::invalid(
                name,
                format!("spec.containers[{i}].name: Required value"),
            ));
        }
        if c.image.as_deref().unwrap_or("").is_empty() {
            return Err(ApiError::invalid(
                name,
                format!("spec.containers[{i}].image: Required value"),
            ));
        }
    }
    Ok(())
}

/// `status.podIPs` as kube-apiserver checks them: valid IPs, and more than one only as a
/// dual-stack pair (one of each family, no duplicate). `podIP`, v1's older field, must
/// be `podIPs[0]`; either one alone fills in the other, as the server's conversion does.
fn validate_pod_ips(name: &str, pod: &Pod) -> Result<(), ApiError> {
    let Some(status) = pod.status.as_ref() else {
        return Ok(());
    };
    let ips = status.pod_ips.as_deref().unwrap_or(&[]);
    if let (Some(ip), Some(first)) = (status.pod_ip.as_deref().filter(|ip| !ip.is_empty()), ips.first()) {
        if ip != first.ip {
            return Err(ApiError::bad_request(format!(
                "conversion Error: v1.PodIP({ip}) != v1.PodIPs[0]({})",
                first.ip
            )));
        }
    }
    let mut parsed = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        match ip.ip.parse::<std::net::IpAddr>() {
            Ok(addr) => parsed.push(addr),
            Err(_) => {
                return Err(ApiError::invalid(
                    name,
                    format!(
                        "status.podIPs[{i}]: Invalid value: {:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        ip.ip
                    ),
                ))
            }
        }
    }
    if parsed.len() > 1 {
        let dual_stack = parsed.len() == 2 && parsed[0].is_ipv4() != parsed[1].is_ipv4();
        if !dual_stack {
            return Err(ApiError::invalid(
                name,
                "status.podIPs: Invalid value: may specify no more than one IP for each IP family",
            ));
        }
    }
    Ok(())
}

/// Fills `podIP` from `podIPs[0]` and `podIPs` from `podIP`, as a v1 round trip does.
fn backfill_pod_ips(pod: &mut Pod) {
    let Some(status) = pod.status.as_mut() else {
        return;
    };
    let first = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|ip| ip.ip.clone());
    match (status.pod_ip.as_deref().filter(|ip| !ip.is_empty()), first) {
        (None, Some(first)) => status.pod_ip = Some(first),
        (Some(ip), None) => status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP { ip: ip.to_string() }]),
        _ => {}
    }
}

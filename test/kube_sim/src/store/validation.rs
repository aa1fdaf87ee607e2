//! The checks and defaults of kube-apiserver's pod strategy that our tests can meet.

use k8s_openapi::api::core::v1::Pod;

use crate::status::ApiError;

/// The validation a real server would reject with 422 and that our tests could trip on.
pub fn validate(pod: &Pod) -> Result<(), ApiError> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let valid_name = name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if !valid_name {
        return Err(ApiError::invalid(
            name,
            format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
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
pub fn backfill_pod_ips(pod: &mut Pod) {
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

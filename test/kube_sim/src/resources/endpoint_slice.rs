//! EndpointSlices: kube-apiserver's validation of `discovery.k8s.io/v1` slices.

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::names;
use crate::status::ApiError;
use crate::store::Stored;

/// Most endpoints a slice may hold (the API's limit; the controller stops at 100).
pub const MAX_ENDPOINTS: usize = 1000;
/// Most ports a slice may hold.
pub const MAX_PORTS: usize = 20_000;

impl Stored for EndpointSlice {
    const PLURAL: &'static str = "endpointslices";

    fn validate(&self) -> Result<(), ApiError> {
        let name = self.metadata.name.as_deref().unwrap_or("");
        if !names::is_subdomain(name) {
            return Err(names::subdomain_error("EndpointSlice", "discovery.k8s.io", name));
        }
        let invalid = |message: String| ApiError::invalid_of("EndpointSlice", "discovery.k8s.io", name, message);
        let family = self.address_type.as_str();
        if !matches!(family, "IPv4" | "IPv6" | "FQDN") {
            return Err(invalid(format!(
                "addressType: Unsupported value: {family:?}: supported values: \"FQDN\", \"IPv4\", \"IPv6\""
            )));
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(invalid(format!(
                "endpoints: Too many: {}: must have at most {MAX_ENDPOINTS} items",
                self.endpoints.len()
            )));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if endpoint.addresses.is_empty() || endpoint.addresses.len() > 100 {
                return Err(invalid(format!(
                    "endpoints[{i}].addresses: Invalid value: must have at least 1 and at most 100 addresses"
                )));
            }
            for (j, address) in endpoint.addresses.iter().enumerate() {
                let ok = match address.parse::<std::net::IpAddr>() {
                    Ok(ip) => (family == "IPv4") == ip.is_ipv4() && family != "FQDN",
                    Err(_) => family == "FQDN" && names::is_subdomain(address),
                };
                if !ok {
                    return Err(invalid(format!(
                        "endpoints[{i}].addresses[{j}]: Invalid value: {address:?}: must be a valid {family} address"
                    )));
                }
            }
        }
        if self.ports.as_ref().is_some_and(|p| p.len() > MAX_PORTS) {
            return Err(invalid(format!("ports: Too many: must have at most {MAX_PORTS} items")));
        }
        Ok(())
    }
}

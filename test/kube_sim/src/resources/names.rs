//! Name rules shared by the kinds.

use crate::status::ApiError;

/// Whether `name` is a lowercase RFC 1123 subdomain (most objects' names).
pub fn is_subdomain(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Whether `name` is an RFC 1035 label (a Service's name, a port name).
pub fn is_label_1035(name: &str) -> bool {
    name.len() <= 63
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The 422 for a name that is not a subdomain.
pub fn subdomain_error(kind: &str, group: &str, name: &str) -> ApiError {
    ApiError::invalid_of(
        kind,
        group,
        name,
        format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
    )
}

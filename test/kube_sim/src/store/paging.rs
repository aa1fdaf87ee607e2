//! Continue tokens of paged lists: the version the first page was consistent with, and
//! the key the next page starts at.

use base64::Engine;

use super::history::Key;
use crate::status::ApiError;

/// The token for a page starting at `start`, consistent with `rv`.
pub fn encode_continue(rv: u64, start: &Key) -> String {
    let token = serde_json::json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}", start.0, start.1) });
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

/// `(rv, start)` back from a token.
pub fn decode_continue(token: &str) -> Result<(u64, Key), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| invalid())?;
    let value: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    let rv = value["rv"].as_u64().ok_or_else(invalid)?;
    let (ns, name) = value["start"]
        .as_str()
        .and_then(|s| s.split_once('/'))
        .ok_or_else(invalid)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

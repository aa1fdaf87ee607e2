//! JSON merge patch (RFC 7386) and the subset of strategic merge patch that pods need.
//!
//! Strategic merge differs from a merge patch only for lists that Kubernetes merges by a
//! key (`conditions` by `type`, `containers` by `name`, ...): kubectl's default `patch`
//! type relies on that to update one condition without restating the others.

use serde_json::{Map, Value};

/// How a PATCH body is applied, chosen by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
}

impl PatchKind {
    /// The patch kind for a Content-Type header, if supported.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            _ => None,
        }
    }
}

/// Applies `patch` to `target` in place.
pub fn apply(kind: PatchKind, target: &mut Value, patch: &Value) {
    merge(kind, target, patch);
}

fn merge(kind: PatchKind, target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_fields) = target else { return };
    for (field, value) in patch_fields {
        if field.starts_with("$") {
            continue;
        }
        if value.is_null() {
            target_fields.remove(field);
            continue;
        }
        let merge_key = match kind {
            PatchKind::Strategic => list_merge_key(field),
            PatchKind::Merge => None,
        };
        match (merge_key, value, target_fields.get_mut(field)) {
            (Some(key), Value::Array(items), Some(Value::Array(existing))) => {
                merge_keyed_list(kind, existing, items, key)
            }
            (_, Value::Object(_), Some(existing)) => merge(kind, existing, value),
            _ => {
                let mut fresh = Value::Null;
                merge(kind, &mut fresh, value);
                target_fields.insert(field.clone(), fresh);
            }
        }
    }
}

/// Lists of a Pod that strategic merge patch merges element-wise, with their merge key.
fn list_merge_key(field: &str) -> Option<&'static str> {
    match field {
        "conditions" => Some("type"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "containerStatuses"
        | "initContainerStatuses"
        | "ephemeralContainerStatuses"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets" => Some("name"),
        "podIPs" | "hostIPs" => Some("ip"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

fn merge_keyed_list(kind: PatchKind, existing: &mut Vec<Value>, items: &[Value], key: &str) {
    for item in items {
        let wanted = item.get(key);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        let position = existing.iter().position(|e| wanted.is_some() && e.get(key) == wanted);
        match (position, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (Some(i), false) => merge(kind, &mut existing[i], item),
            (None, true) => {}
            (None, false) => {
                let mut fresh = Value::Null;
                merge(kind, &mut fresh, item);
                existing.push(fresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_lists_and_removes_nulls() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        apply(PatchKind::Merge, &mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_patch_merges_conditions_by_type() {
        let mut doc = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}
        ]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        apply(PatchKind::Strategic, &mut doc, &patch);
        assert_eq!(
            doc["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
    }

    #[test]
    fn strategic_patch_deletes_and_appends_by_key() {
        let mut doc = json!({"podIPs": [{"ip": "10.0.0.1"}]});
        let patch = json!({"podIPs": [{"ip": "10.0.0.1", "$patch": "delete"}, {"ip": "fd00::1"}]});
        apply(PatchKind::Strategic, &mut doc, &patch);
        assert_eq!(doc, json!({"podIPs": [{"ip": "fd00::1"}]}));
    }

    #[test]
    fn content_types_are_recognised() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchKind::Strategic)
        );
        assert_eq!(PatchKind::from_content_type("application/json-patch+json"), None);
    }
}

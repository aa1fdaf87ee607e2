//! The three patch types kube-apiserver accepts for pods: JSON patch (RFC 6902), JSON
//! merge patch (RFC 7386) and the subset of strategic merge patch that pods need.
//!
//! Strategic merge differs from a merge patch only for lists that Kubernetes merges by a
//! key (`conditions` by `type`, `containers` by `name`, ...): kubectl's default `patch`
//! type relies on that to update one condition without restating the others. JSON patch
//! is what the Python client sends whenever its body is a list of operations.

use serde_json::{Map, Value};

use crate::status::ApiError;

/// How a PATCH body is applied, chosen by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
}

impl PatchKind {
    /// The patch kind for a Content-Type header, if supported.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            _ => None,
        }
    }
}

/// Why a patch was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The body is not a patch of its kind at all (a JSON patch that is not a list of
    /// operations): `400 BadRequest` on a real server.
    Malformed(String),
    /// A JSON patch operation that does not apply to this object: a failed `test`, a
    /// path that does not exist, an unknown `op`.
    NotApplied(String),
}

impl From<PatchError> for ApiError {
    fn from(e: PatchError) -> Self {
        match e {
            PatchError::Malformed(message) => ApiError::bad_request(message),
            // kube-apiserver drops the reason and answers a generic 422 (clients that
            // use `test` as a precondition recognise exactly this).
            PatchError::NotApplied(_) => ApiError::patch_not_applied(),
        }
    }
}

/// Applies `patch` to `target` in place. A JSON patch applies whole or not at all.
pub fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    match kind {
        PatchKind::Json => {
            let operations = patch
                .as_array()
                .filter(|ops| ops.iter().all(Value::is_object))
                .ok_or_else(|| PatchError::Malformed("a JSON patch must be a list of operation objects".into()))?;
            let mut patched = target.clone();
            for operation in operations {
                json_patch_operation(&mut patched, operation)?;
            }
            *target = patched;
        }
        PatchKind::Merge | PatchKind::Strategic => merge(kind, target, patch),
    }
    Ok(())
}

/// One RFC 6902 operation.
fn json_patch_operation(doc: &mut Value, operation: &Value) -> Result<(), PatchError> {
    let member = |name: &str| {
        operation
            .get(name)
            .ok_or_else(|| PatchError::NotApplied(format!("operation {operation} has no {name:?}")))
    };
    let pointer = |name: &str| -> Result<Vec<String>, PatchError> {
        let text = member(name)?
            .as_str()
            .ok_or_else(|| PatchError::NotApplied(format!("{name:?} of {operation} is not a string")))?;
        parse_pointer(text)
    };
    let op = member("op")?.as_str().unwrap_or_default();
    match op {
        "add" => add(doc, &pointer("path")?, member("value")?.clone()),
        "remove" => remove(doc, &pointer("path")?).map(drop),
        "replace" => {
            let path = pointer("path")?;
            let value = member("value")?.clone();
            *get_mut(doc, &path)? = value;
            Ok(())
        }
        "move" => {
            let (from, path) = (pointer("from")?, pointer("path")?);
            if path.len() > from.len() && path.starts_with(&from) {
                return Err(PatchError::NotApplied("cannot move a value into itself".into()));
            }
            let value = remove(doc, &from)?;
            add(doc, &path, value)
        }
        "copy" => {
            let value = get_mut(doc, &pointer("from")?)?.clone();
            add(doc, &pointer("path")?, value)
        }
        "test" => {
            let path = pointer("path")?;
            if *get_mut(doc, &path)? != *member("value")? {
                return Err(PatchError::NotApplied(format!(
                    "testing value /{} failed",
                    path.join("/")
                )));
            }
            Ok(())
        }
        other => Err(PatchError::NotApplied(format!(
            "unexpected kind of operation: {other:?}"
        ))),
    }
}

/// The reference tokens of a JSON pointer (RFC 6901): `""` is the whole document.
fn parse_pointer(text: &str) -> Result<Vec<String>, PatchError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let rest = text
        .strip_prefix('/')
        .ok_or_else(|| PatchError::NotApplied(format!("JSON pointer {text:?} does not start with '/'")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// An array index token: digits, no leading zero.
fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    (digits && (token == "0" || !token.starts_with('0')))
        .then(|| token.parse().ok())
        .flatten()
}

fn missing(path: &[String]) -> PatchError {
    PatchError::NotApplied(format!("path /{} does not exist", path.join("/")))
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, PatchError> {
    let mut at = doc;
    for token in path {
        at = match at {
            Value::Object(fields) => fields.get_mut(token),
            Value::Array(items) => index(token).and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(at)
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), PatchError> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent)? {
        Value::Object(fields) => {
            fields.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let at = match last.as_str() {
                "-" => items.len(),
                token => index(token)
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| missing(path))?,
            };
            items.insert(at, value);
        }
        _ => return Err(missing(path)),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, PatchError> {
    let (last, parent) = path
        .split_last()
        .ok_or_else(|| PatchError::NotApplied("cannot remove the whole document".into()))?;
    match get_mut(doc, parent)? {
        Value::Object(fields) => fields.remove(last).ok_or_else(|| missing(path)),
        Value::Array(items) => match index(last) {
            Some(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(missing(path)),
        },
        _ => Err(missing(path)),
    }
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
            PatchKind::Merge | PatchKind::Json => None,
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
        apply(PatchKind::Merge, &mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]})).unwrap();
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_patch_merges_conditions_by_type() {
        let mut doc = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}
        ]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        apply(PatchKind::Strategic, &mut doc, &patch).unwrap();
        assert_eq!(
            doc["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
    }

    #[test]
    fn strategic_patch_deletes_and_appends_by_key() {
        let mut doc = json!({"podIPs": [{"ip": "10.0.0.1"}]});
        let patch = json!({"podIPs": [{"ip": "10.0.0.1", "$patch": "delete"}, {"ip": "fd00::1"}]});
        apply(PatchKind::Strategic, &mut doc, &patch).unwrap();
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
        assert_eq!(
            PatchKind::from_content_type("application/json-patch+json"),
            Some(PatchKind::Json)
        );
        assert_eq!(PatchKind::from_content_type("application/apply-patch+yaml"), None);
    }

    fn json_patch(doc: &mut Value, ops: Value) -> Result<(), PatchError> {
        apply(PatchKind::Json, doc, &ops)
    }

    #[test]
    fn json_patch_operations() {
        let mut doc = json!({"status": {"phase": "Pending", "conditions": [{"type": "A"}]}, "a/b": {"~": 1}});
        json_patch(
            &mut doc,
            json!([
                {"op": "test", "path": "/status/phase", "value": "Pending"},
                {"op": "replace", "path": "/status/phase", "value": "Running"},
                {"op": "add", "path": "/status/podIP", "value": "10.0.0.1"},
                {"op": "add", "path": "/status/conditions/-", "value": {"type": "C"}},
                {"op": "add", "path": "/status/conditions/1", "value": {"type": "B"}},
                {"op": "copy", "from": "/status/podIP", "path": "/status/hostIP"},
                {"op": "move", "from": "/a~1b/~0", "path": "/moved"},
                {"op": "remove", "path": "/status/conditions/0"}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({
                "status": {"phase": "Running", "podIP": "10.0.0.1", "hostIP": "10.0.0.1",
                           "conditions": [{"type": "B"}, {"type": "C"}]},
                "a/b": {}, "moved": 1
            })
        );
    }

    #[test]
    fn json_patch_applies_whole_or_not_at_all() {
        let original = json!({"status": {"phase": "Pending"}});
        for failing in [
            json!([{"op": "replace", "path": "/status/phase", "value": "Running"},
                   {"op": "test", "path": "/status/phase", "value": "Pending"}]),
            json!([{"op": "remove", "path": "/status/podIP"}]),
            json!([{"op": "replace", "path": "/status/podIP", "value": "x"}]),
            json!([{"op": "add", "path": "/missing/deeper", "value": 1}]),
            json!([{"op": "add", "path": "/status/phase/0", "value": 1}]),
            json!([{"op": "frobnicate", "path": "/status"}]),
            json!([{"op": "move", "from": "/status", "path": "/status/inner"}]),
        ] {
            let mut doc = original.clone();
            let err = json_patch(&mut doc, failing.clone()).unwrap_err();
            assert!(matches!(err, PatchError::NotApplied(_)), "{failing}: {err:?}");
            assert_eq!(doc, original, "{failing} left the document changed");
            assert_eq!(ApiError::from(err).code, 422);
        }
        let err = json_patch(&mut original.clone(), json!({"status": {}})).unwrap_err();
        assert!(matches!(err, PatchError::Malformed(_)));
        assert_eq!(ApiError::from(err).code, 400);
    }

    #[test]
    fn array_indices_are_strict() {
        let mut doc = json!({"l": [0, 1]});
        for bad in ["/l/01", "/l/+1", "/l/2", "/l/-"] {
            assert!(
                json_patch(&mut doc, json!([{"op": "remove", "path": bad}])).is_err(),
                "{bad}"
            );
        }
        json_patch(&mut doc, json!([{"op": "add", "path": "/l/2", "value": 2}])).unwrap();
        assert_eq!(doc, json!({"l": [0, 1, 2]}));
    }
}

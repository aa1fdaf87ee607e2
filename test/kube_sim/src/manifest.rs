//! Kubernetes manifests, checked strictly and turned into pods.
//!
//! Every document must be a kind this module knows, and every field in it must exist in
//! that kind's schema: a document is decoded into its k8s-openapi type and encoded back,
//! and anything the round trip loses (a misspelt or misplaced field) is an error naming
//! its path. A Deployment's pod template becomes `replicas` pods named as its
//! ReplicaSet would name them, for a simulated cluster to run what the manifest says.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a manifest holds: each object's kind and name, and its Deployments' pods.
#[derive(Debug, Serialize)]
pub struct Checked {
    /// `"Kind/namespace/name"` for every document, in order.
    pub objects: Vec<String>,
    /// One pod per replica of every Deployment, not yet created anywhere.
    pub pods: Vec<Pod>,
}

/// Checks every document of a (multi-document) YAML manifest.
pub fn check(yaml: &str) -> Result<Checked, String> {
    let mut checked = Checked {
        objects: Vec::new(),
        pods: Vec::new(),
    };
    for (n, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(document).map_err(|e| format!("document {}: not YAML: {e}", n + 1))?;
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or("").to_string();
        let meta = &value["metadata"];
        let name = format!(
            "{kind}/{}/{}",
            meta["namespace"].as_str().unwrap_or("default"),
            meta["name"].as_str().unwrap_or("?")
        );
        let context = |e: String| format!("document {} ({name}): {e}", n + 1);
        match kind.as_str() {
            "Deployment" => checked
                .pods
                .extend(replicas(&strict::<Deployment>(&value).map_err(context)?)),
            "Pod" => checked.pods.push(strict::<Pod>(&value).map_err(context)?),
            other => check_object(other, &value).map_err(context)?,
        }
        checked.objects.push(name);
    }
    Ok(checked)
}

/// Checks one object of `kind` strictly: every field must exist in the kind's schema.
pub fn check_object(kind: &str, value: &Value) -> Result<(), String> {
    match kind {
        "Deployment" => strict::<Deployment>(value).map(drop),
        "Pod" => strict::<Pod>(value).map(drop),
        "ServiceAccount" => strict::<ServiceAccount>(value).map(drop),
        "Role" => strict::<Role>(value).map(drop),
        "RoleBinding" => strict::<RoleBinding>(value).map(drop),
        "ClusterRole" => strict::<ClusterRole>(value).map(drop),
        "ClusterRoleBinding" => strict::<ClusterRoleBinding>(value).map(drop),
        "Secret" => strict::<Secret>(value).map(drop),
        "ConfigMap" => strict::<ConfigMap>(value).map(drop),
        "Service" => strict::<Service>(value).map(drop),
        "Namespace" => strict::<Namespace>(value).map(drop),
        other => Err(format!("kind {other:?} is not one this checker knows")),
    }
}

/// Decodes `value` as `T`, refusing any field `T` does not have.
fn strict<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match lost(value, &back, "") {
        Some(path) => Err(format!("unknown or malformed field {path}")),
        None => Ok(typed),
    }
}

/// The path of the first thing in `given` that `kept` does not have.
fn lost(given: &Value, kept: &Value, path: &str) -> Option<String> {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => given.iter().find_map(|(key, value)| {
            let path = format!("{path}.{key}");
            match kept.get(key) {
                Some(other) => lost(value, other, &path),
                // An explicit null or empty value is as good as none.
                None if value.is_null() || value == &Value::Object(Default::default()) => None,
                None => Some(path),
            }
        }),
        (Value::Array(given), Value::Array(kept)) if given.len() == kept.len() => given
            .iter()
            .zip(kept)
            .enumerate()
            .find_map(|(i, (g, k))| lost(g, k, &format!("{path}[{i}]"))),
        (given, kept) if given == kept => None,
        _ => Some(path.to_string()),
    }
}

/// The pods a Deployment's ReplicaSet would create: `<name>-<template hash>-<suffix>`,
/// labelled with `pod-template-hash`, in the Deployment's namespace, not yet scheduled.
pub fn replicas(deployment: &Deployment) -> Vec<Pod> {
    let Some(spec) = &deployment.spec else {
        return Vec::new();
    };
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let template = serde_json::to_string(&spec.template).unwrap_or_default();
    let hash = safe_encode(fnv(&template), 10);
    (0..spec.replicas.unwrap_or(1).max(0) as u64)
        .map(|i| {
            let mut metadata = spec.template.metadata.clone().unwrap_or_default();
            let mut labels: BTreeMap<String, String> = metadata.labels.take().unwrap_or_default();
            labels.insert("pod-template-hash".into(), hash.clone());
            metadata.labels = Some(labels);
            metadata.name = Some(format!("{name}-{hash}-{}", safe_encode(fnv(&(&template, i)), 5)));
            metadata.namespace = deployment.metadata.namespace.clone();
            Pod {
                metadata,
                spec: spec.template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

fn fnv(value: &impl Hash) -> u64 {
    // A fixed hasher: the same template always gets the same hash, as on a real cluster.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    value.hash(&mut hasher);
    hasher.finish()
}

/// Kubernetes' alphabet for generated names: no vowels, no look-alike characters.
fn safe_encode(mut n: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
        - name: api
          image: shop:1
          ports: [{name: dist-api, containerPort: 4370}]
";

    #[test]
    fn a_deployment_becomes_its_replicas() {
        let checked = check(&format!(
            "{DEPLOYMENT}---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: pod-dist}}\n"
        ))
        .unwrap();
        assert_eq!(
            checked.objects,
            ["Deployment/prod/shop", "ServiceAccount/default/pod-dist"]
        );
        assert_eq!(checked.pods.len(), 2);
        let names: Vec<_> = checked.pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_ne!(names[0], names[1]);
        for (pod, name) in checked.pods.iter().zip(&names) {
            let hash = &pod.metadata.labels.as_ref().unwrap()["pod-template-hash"];
            assert!(name.starts_with(&format!("shop-{hash}-")), "{name}");
            assert_eq!(pod.metadata.namespace.as_deref(), Some("prod"));
            let ports = pod.spec.as_ref().unwrap().containers[0].ports.as_ref().unwrap();
            assert_eq!(ports[0].name.as_deref(), Some("dist-api"));
        }
        // Same template, same names: a rerun of the demo sees the same pods.
        assert_eq!(check(DEPLOYMENT).unwrap().pods, checked.pods);
    }

    #[test]
    fn a_misspelt_field_is_named() {
        let typo = DEPLOYMENT.replace("containerPort", "containerport");
        let error = check(&typo).unwrap_err();
        assert!(error.contains("Deployment/prod/shop"), "{error}");
        assert!(error.contains(".spec.template.spec.containers[0].ports[0]"), "{error}");
    }

    #[test]
    fn unknown_kinds_and_wrong_types_are_refused() {
        let error = check("apiVersion: v1\nkind: Gadget\nmetadata: {name: x}\n").unwrap_err();
        assert!(error.contains("\"Gadget\""), "{error}");
        let error = check(&DEPLOYMENT.replace("replicas: 2", "replicas: two")).unwrap_err();
        assert!(error.contains("document 1"), "{error}");
    }
}

//! What the store needs to know of a kind: its checks, defaults and selectable fields.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::status::ApiError;

/// A kind the store keeps, with the parts of kube-apiserver's strategy for it that tests meet.
pub trait Stored:
    Resource + Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync + 'static
{
    /// The plural resource name in URLs and RBAC (`pods`).
    const PLURAL: &'static str;

    /// Checks the object before it is stored (the 422s of the real server).
    fn validate(&self) -> Result<(), ApiError>;

    /// Fills in what the server owns or defaults, on create (`created`) and update.
    fn default_fields(&mut self, _created: bool) {}

    /// Whether the change from `old` is a spec change (it bumps `metadata.generation`).
    fn spec_changed(&self, _old: &Self) -> bool {
        false
    }

    /// The value of a field-selector field (`None`: the field is not supported).
    fn field(&self, field: &str) -> Option<String> {
        let meta = self.metadata();
        match field {
            "metadata.name" => Some(meta.name.clone().unwrap_or_default()),
            "metadata.namespace" => Some(meta.namespace.clone().unwrap_or_default()),
            _ => None,
        }
    }

    /// What an update may change: by default everything. Pods split it: the status
    /// subresource (`status_only`) changes only status, the main resource all but status.
    fn scoped(_old: &Self, new: Self, _status_only: bool) -> Self {
        new
    }

    /// How long a delete waits (a pod bound to a node terminates gracefully); `None`: at once.
    fn grace_seconds(&self, _requested: Option<i64>) -> Option<i64> {
        None
    }
}

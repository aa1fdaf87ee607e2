//! API errors, rendered as the `Status` objects kube-apiserver sends, so clients
//! exercise their real error paths (kube-rs `Error::Api`, kubectl's messages).

use serde_json::{json, Value};

/// An API failure: an HTTP code plus the `Status` body that explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason`, a machine-readable CamelCase word.
    pub reason: &'static str,
    /// `Status.message`, the human-readable explanation.
    pub message: String,
    /// `Status.details`, when the real server sends them.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about_resource(mut self, resource: &str, group: &str, name: &str) -> Self {
        let mut details = json!({ "kind": resource });
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        self.details = Some(details);
        self
    }

    /// 400, for malformed requests.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401, for a missing or rejected bearer token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403, worded exactly like the RBAC authorizer's denial.
    pub fn forbidden(user: &str, verb: &str, namespace: Option<&str>, name: Option<&str>) -> Self {
        Self::forbidden_on(user, verb, "pods", "", namespace, name)
    }

    /// 403 for any resource of any API group.
    pub fn forbidden_on(
        user: &str,
        verb: &str,
        resource: &str,
        group: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        let qualified = qualified(resource, group);
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let subject = match name {
            Some(n) => format!("{qualified} \"{n}\""),
            None => qualified,
        };
        let err = Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
            ),
        );
        err.about_resource(resource, group, name.unwrap_or(""))
    }

    /// 404 for a named pod.
    pub fn not_found(name: &str) -> Self {
        Self::not_found_of("pods", "", name)
    }

    /// 404 for a named object of any resource.
    pub fn not_found_of(resource: &str, group: &str, name: &str) -> Self {
        let qualified = qualified(resource, group);
        Self::new(404, "NotFound", format!("{qualified} \"{name}\" not found")).about_resource(resource, group, name)
    }

    /// 404 for a path this server does not serve.
    pub fn no_route() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 405 for a verb the path does not support.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 409 on create of an existing name.
    pub fn already_exists(name: &str) -> Self {
        Self::already_exists_of("pods", "", name)
    }

    /// 409 on create of an existing name, for any resource.
    pub fn already_exists_of(resource: &str, group: &str, name: &str) -> Self {
        let qualified = qualified(resource, group);
        Self::new(409, "AlreadyExists", format!("{qualified} \"{name}\" already exists"))
            .about_resource(resource, group, name)
    }

    /// 409 on an update carrying a stale resourceVersion.
    pub fn conflict(name: &str) -> Self {
        Self::conflict_of("pods", "", name)
    }

    /// 409 on an update carrying a stale resourceVersion, for any resource.
    pub fn conflict_of(resource: &str, group: &str, name: &str) -> Self {
        let qualified = qualified(resource, group);
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .about_resource(resource, group, name)
    }

    /// 410 for a resourceVersion older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 for a patch type this server does not implement.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"))
    }

    /// 422 for a pod that fails validation.
    pub fn invalid(name: &str, message: impl Into<String>) -> Self {
        Self::invalid_of("Pod", "", name, message)
    }

    /// 422 for a request whose options fail validation (a `ListOptions` parameter the
    /// server forbids).
    pub fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: {}", message.into()),
        )
    }

    /// 422 for an object of any kind that fails validation.
    pub fn invalid_of(kind: &str, group: &str, name: &str, message: impl Into<String>) -> Self {
        let qualified = qualified(kind, group);
        let resource = format!("{}s", kind.to_lowercase());
        Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {}", message.into()),
        )
        .about_resource(&resource, group, name)
    }

    /// 422 for a JSON patch that does not apply (a failed `test`, a missing path): the
    /// generic answer kube-apiserver gives, which names neither the operation nor the cause.
    pub fn patch_not_applied() -> Self {
        let mut err = Self::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        );
        err.details = Some(json!({}));
        err
    }

    /// 503 while the server is (simulated) down.
    pub fn unavailable() -> Self {
        Self::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        )
    }

    /// 504 for a resourceVersion the server has not reached.
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let mut err = Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        );
        err.details = Some(
            json!({ "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }], "retryAfterSeconds": 1 }),
        );
        err
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `deployments.apps`, or `pods` in the core group: how the API server names a resource.
fn qualified(resource: &str, group: &str) -> String {
    match group {
        "" => resource.to_string(),
        group => format!("{resource}.{group}"),
    }
}

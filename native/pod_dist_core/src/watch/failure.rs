//! A watcher's failure in words: its [`ErrorKind`], and a message that says what
//! failed and what to fix. The fix for a denial names the verbs and the resource in
//! one sentence; the Role and RoleBinding themselves are printed by `PodDist.doctor()`,
//! their one home.

use kube::runtime::watcher;

use super::health::ErrorKind;

/// What a watch reads, for its error messages: what it is, and what to grant on a 403.
pub(super) struct Subject {
    what: String,
    grant: String,
}

/// Where a denial's message sends the reader for the manifests to apply.
const DOCTOR: &str = "PodDist.doctor() prints the Role and RoleBinding to apply";

impl Subject {
    /// The pods of `scope` (`namespace "prod"`, or `all namespaces`).
    pub(super) fn pods(scope: &str) -> Subject {
        Subject {
            what: format!("pods in {scope}"),
            grant: format!("grant get, list and watch on pods to this service account; {DOCTOR}"),
        }
    }

    /// The EndpointSlices of `service` in `namespace`.
    pub(super) fn slices(namespace: &str, service: &str) -> Subject {
        Subject {
            what: format!("endpointslices of service {service:?} in namespace {namespace:?}"),
            grant: format!("grant get, list and watch on endpointslices (API group discovery.k8s.io) to this service account (no access to pods is needed); {DOCTOR}"),
        }
    }
}

/// Whether `error` is a `410 Gone`: the watcher re-lists by itself, nothing failed.
pub(super) fn is_expired(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// The service account a denial names: the API says `User
/// "system:serviceaccount:<namespace>:<name>" cannot list resource "pods" ...`.
pub(super) fn service_account(message: &str) -> Option<(String, String)> {
    let rest = &message[message.find("system:serviceaccount:")? + "system:serviceaccount:".len()..];
    let account = rest.split(|c: char| c == '"' || c.is_whitespace()).next()?;
    let (namespace, name) = account.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (namespace.to_string(), name.to_string()))
}

/// A readable account of a watch failure that says what to fix, and its kind.
pub(super) fn describe(error: &watcher::Error, subject: &Subject) -> (ErrorKind, String) {
    let scope = &subject.what;
    let api_error = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(&**status),
        watcher::Error::WatchError(status) => Some(&**status),
        _ => None,
    };
    let mut kind = match api_error.map(|s| s.code) {
        Some(401) => ErrorKind::Unauthorized,
        Some(429) => ErrorKind::Throttled,
        Some(403) => ErrorKind::Forbidden,
        Some(code) => ErrorKind::Status(code),
        None => ErrorKind::Unreachable,
    };
    let message = match api_error {
        Some(status) if status.code == 401 => format!(
            "{scope}: 401 Unauthorized: the API rejected the token (expired or rotated service-account token, or wrong credentials)"
        ),
        Some(status) if status.code == 403 => format!(
            "{scope}: 403 Forbidden: {}. Fix: {}",
            status.message, subject.grant
        ),
        Some(status) if status.code == 429 => {
            let wait = crate::retry::retry_after(error).map_or_else(
                || "no Retry-After given".to_string(),
                |wait| format!("waiting {} s (its Retry-After, at most {} s) before the next", wait.as_secs(), crate::retry::RETRY_AFTER_CAP.as_secs()),
            );
            format!(
                "{scope}: 429 Too Many Requests: the API server's priority and fairness is turning this service account's requests away; {wait}. Fix: if it lasts, give the service account its own priority level (examples/kubernetes/flowschema.yaml)"
            )
        }
        Some(status) => format!("{scope}: {} {}", status.code, status.message),
        None => {
            let cause = root_cause(error);
            let hint = if cause.to_lowercase().contains("certificate") {
                kind = ErrorKind::Certificate;
                ". Fix: the API server's certificate is not signed by the configured CA (ca_file, or the service account's ca.crt)"
            } else {
                "; retrying with backoff"
            };
            format!("{scope}: cannot reach the API server: {cause}{hint}")
        }
    };
    (kind, message)
}

/// The innermost error of a chain: "client error (Connect)" says little, the certificate
/// or connection failure under it says what is wrong.
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, message: &str) -> watcher::Error {
        watcher::Error::InitialListFailed(kube::Error::Api(Status::failure(message, "").with_code(code).boxed()))
    }

    const DENIED: &str = r#"pods is forbidden: User "system:serviceaccount:prod:api" cannot list resource "pods" in API group "" in the namespace "prod""#;

    #[test]
    fn a_denial_names_its_service_account() {
        let denied = format!(r#"pods in namespace "prod": 403 Forbidden: {DENIED}. Fix: grant"#);
        assert_eq!(service_account(&denied), Some(("prod".into(), "api".into())));
        assert_eq!(service_account(r#"User "jane" cannot list"#), None);
        assert_eq!(service_account("system:serviceaccount:prod"), None);
    }

    #[test]
    fn a_denial_names_the_verbs_and_resource_and_leaves_the_manifests_to_the_doctor() {
        let (kind, message) = describe(&api(403, DENIED), &Subject::pods(r#"namespace "prod""#));
        assert_eq!(kind, ErrorKind::Forbidden);
        assert_eq!(
            message,
            format!(
                r#"pods in namespace "prod": 403 Forbidden: {DENIED}. Fix: grant get, list and watch on pods to this service account; PodDist.doctor() prints the Role and RoleBinding to apply"#
            )
        );
        let (_, message) = describe(&api(403, "no"), &Subject::slices("prod", "shop"));
        assert!(message.starts_with(r#"endpointslices of service "shop" in namespace "prod": 403 Forbidden: no. Fix: grant get, list and watch on endpointslices (API group discovery.k8s.io) to this service account (no access to pods is needed); PodDist.doctor()"#), "{message}");
        // No YAML here: that is the doctor's.
        assert!(!message.contains("kind: Role"));
    }

    #[test]
    fn each_status_has_its_kind() {
        let subject = Subject::pods("all namespaces");
        let kind = |error| describe(&error, &subject).0;
        assert_eq!(kind(api(401, "")), ErrorKind::Unauthorized);
        assert_eq!(kind(api(429, "")), ErrorKind::Throttled);
        assert_eq!(kind(api(500, "")), ErrorKind::Status(500));
        assert_eq!(kind(watcher::Error::NoResourceVersion), ErrorKind::Unreachable);
        let (_, message) = describe(&api(500, "etcd is down"), &subject);
        assert_eq!(message, "pods in all namespaces: 500 etcd is down");
    }

    #[test]
    fn only_a_410_is_expired() {
        let gone = watcher::Error::WatchError(Status::failure("too old", "Expired").with_code(410).boxed());
        assert!(is_expired(&gone));
        assert!(!is_expired(&api(410, "")), "an initial list's 410 is a failure");
        assert!(!is_expired(&api(403, "")));
    }
}

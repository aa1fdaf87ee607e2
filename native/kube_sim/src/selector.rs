//! Label and field selectors, parsed and matched as kube-apiserver does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector (equality- and set-based), as in `?labelSelector=`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses a selector; the empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, String> {
        let requirements = split_top_level(s)
            .into_iter()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { requirements })
    }

    /// Whether the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &String| labels.and_then(|l| l.get(k));
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v),
            // Absent labels satisfy `!=` and `notin`, as in Kubernetes.
            Requirement::NotEquals(k, v) => get(k) != Some(v),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses: `a in (x,y),b` is two requirements.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_requirement(r: &str) -> Result<Requirement, String> {
    let fail = |why: &str| Err(format!("unable to parse requirement: {why} in {r:?}"));
    if let Some(key) = r.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_checked(key.trim())?));
    }
    for (op, build) in [
        ("==", Requirement::Equals as fn(String, String) -> Requirement),
        ("!=", Requirement::NotEquals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = r.split_once(op) {
            return Ok(build(key_checked(key.trim())?, value_checked(value.trim())?));
        }
    }
    let mut words = r.splitn(2, char::is_whitespace);
    let key = key_checked(words.next().unwrap_or("").trim())?;
    let rest = words.next().unwrap_or("").trim();
    if rest.is_empty() {
        return Ok(Requirement::Exists(key));
    }
    let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return fail("found unknown operator, expected: in, notin, =, ==, !=");
    };
    let Some(inner) = set.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')')) else {
        return fail("found no parenthesised set of values");
    };
    let values = inner
        .split(',')
        .map(|v| value_checked(v.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if values.iter().all(String::is_empty) {
        return fail("for 'in', 'notin' operators, values set can't be empty");
    }
    Ok(if negated {
        Requirement::NotIn(key, values)
    } else {
        Requirement::In(key, values)
    })
}

fn is_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn key_checked(key: &str) -> Result<String, String> {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    });
    if prefix_ok && is_name_part(name) {
        Ok(key.to_string())
    } else {
        Err(format!("unable to parse requirement: invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
    }
}

fn value_checked(value: &str) -> Result<String, String> {
    if value.is_empty() || is_name_part(value) {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
    }
}

/// A parsed field selector for pods, as in `?fieldSelector=`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    /// `(field, value, equal)`: `equal` is false for `!=`.
    terms: Vec<(String, String, bool)>,
}

/// The pod fields kube-apiserver lets clients select on.
const POD_FIELDS: [&str; 10] = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

impl FieldSelector {
    /// Parses a field selector; the empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in split_unescaped(s, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = split_op(&term, "!=") {
                (f, v, false)
            } else if let Some((f, v)) = split_op(&term, "==").or_else(|| split_op(&term, "=")) {
                (f, v, true)
            } else {
                return Err(format!("invalid selector: '{term}'; can't understand '{term}'"));
            };
            let field = field.trim().to_string();
            if !POD_FIELDS.contains(&field.as_str()) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field, unescape(&value), equal));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether the selector has no term.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `pod` satisfies every term.
    pub fn matches(&self, pod: &Pod) -> bool {
        self.terms
            .iter()
            .all(|(field, value, equal)| (field_value(pod, field) == *value) == *equal)
    }
}

fn field_value(pod: &Pod, field: &str) -> String {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let value = match field {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.restartPolicy" => spec.and_then(|s| s.restart_policy.clone()),
        "spec.schedulerName" => spec.and_then(|s| s.scheduler_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "spec.hostNetwork" => Some(spec.and_then(|s| s.host_network).unwrap_or(false).to_string()),
        "status.phase" => status.and_then(|s| s.phase.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.nominatedNodeName" => status.and_then(|s| s.nominated_node_name.clone()),
        _ => None,
    };
    value.unwrap_or_default()
}

/// Splits on `sep` except where a backslash escapes it.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let (mut parts, mut current, mut escaped) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

/// Splits at the first unescaped `op`.
fn split_op(term: &str, op: &str) -> Option<(String, String)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if term[i..].starts_with(op) {
            return Some((term[..i].to_string(), term[i + op.len()..].to_string()));
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let (mut out, mut escaped) = (String::new(), false);
    for c in value.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn selects(selector: &str, pairs: &[(&str, &str)]) -> bool {
        LabelSelector::parse(selector).unwrap().matches(Some(&labels(pairs)))
    }

    #[test]
    fn equality_operators() {
        assert!(selects("app=web", &[("app", "web")]));
        assert!(selects("app==web", &[("app", "web")]));
        assert!(!selects("app=web", &[("app", "api")]));
        assert!(selects("app!=web", &[("app", "api")]));
        assert!(selects("app!=web", &[]), "an absent label satisfies !=");
        assert!(selects(
            " app = web , tier=front ",
            &[("app", "web"), ("tier", "front")]
        ));
    }

    #[test]
    fn set_operators() {
        assert!(selects("tier in (a, b)", &[("tier", "b")]));
        assert!(!selects("tier in (a,b)", &[]));
        assert!(selects("tier notin (a,b)", &[]), "an absent label satisfies notin");
        assert!(!selects("tier notin ( a , b )", &[("tier", "a")]));
        assert!(selects("canary", &[("canary", "")]));
        assert!(selects("!canary", &[("app", "x")]));
        assert!(selects(
            "app.kubernetes.io/name in (demo),!canary",
            &[("app.kubernetes.io/name", "demo")]
        ));
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert!(LabelSelector::parse("").unwrap().matches(None));
    }

    #[test]
    fn label_parse_errors() {
        assert!(LabelSelector::parse("app=we b")
            .unwrap_err()
            .contains("invalid label value"));
        assert!(LabelSelector::parse("-app=x")
            .unwrap_err()
            .contains("invalid label key"));
        assert!(LabelSelector::parse("tier in a,b").is_err());
        assert!(LabelSelector::parse("tier in ()").is_err());
        assert!(LabelSelector::parse("tier within (a)").is_err());
        assert!(LabelSelector::parse(&format!("k={}", "v".repeat(64))).is_err());
    }

    #[test]
    fn field_selectors() {
        let mut pod = crate::fixtures::ready_pod("web-1", "127.0.0.1");
        pod.metadata.namespace = Some("prod".into());
        let matches = |s: &str| FieldSelector::parse(s).unwrap().matches(&pod);
        assert!(matches("metadata.name=web-1"));
        assert!(matches("metadata.namespace==prod,status.phase=Running"));
        assert!(matches("status.phase!=Pending"));
        assert!(matches("spec.nodeName=node-1"));
        assert!(matches("spec.hostNetwork=false"));
        assert!(
            matches("status.nominatedNodeName="),
            "a missing value is the empty string"
        );
        assert!(!matches("status.podIP=127.0.0.2"));
        assert_eq!(
            FieldSelector::parse("spec.bogus=x").unwrap_err(),
            "field label not supported: spec.bogus"
        );
        assert!(FieldSelector::parse("metadata.name").is_err());
    }

    #[test]
    fn field_selector_escapes() {
        let selector = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        let mut pod = crate::fixtures::pod("x");
        pod.metadata.name = Some(r"a,b=c\d".into());
        assert!(selector.matches(&pod));
    }
}

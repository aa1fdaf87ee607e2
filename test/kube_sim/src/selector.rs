//! Label and field selectors, parsed and matched as kube-apiserver does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
    /// Sorted and deduplicated, so selectors that mean the same compare equal.
    values: Vec<String>,
}

/// A parsed label selector (equality- and set-based), as in `?labelSelector=`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses a selector such as `app=web,tier in (a,b),!canary`; the empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Parser { tokens: lex(s), pos: 0 };
        let (mut requirements, mut after_comma) = (Vec::new(), false);
        loop {
            match p.peek() {
                t if is_ident(t) || t == "!" => {}
                "" if !after_comma => break,
                t if after_comma => return Err(format!("found '{t}', expected: identifier after ','")),
                t => return Err(format!("found '{t}', expected: !, identifier, or 'end of string'")),
            }
            let requirement = p
                .requirement()
                .map_err(|e| format!("unable to parse requirement: {e}"))?;
            requirements.push(requirement);
            match p.next() {
                "" => break,
                "," => after_comma = true,
                t => return Err(format!("found '{t}', expected: ',' or 'end of string'")),
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// The selector a Service's `spec.selector` means: every label equal.
    pub fn equal(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                op: Op::Equals,
                values: vec![value.clone()],
            })
            .collect();
        LabelSelector { requirements }
    }

    /// Whether the selector has no requirement, and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` (`None` meaning no labels) satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key));
            let listed = value.is_some_and(|v| r.values.contains(v));
            match r.op {
                Op::Equals | Op::In => listed,
                // Kubernetes lets `!=` and `notin` select objects that lack the label altogether.
                Op::NotEquals | Op::NotIn => !listed,
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }
}

/// Longest first, so `!=` wins over `!`. `<` and `>` (kube's `gt`/`lt`, unsupported here) are symbols
/// so that `k>1` fails on its operator rather than on its key.
const SYMBOLS: [&str; 9] = ["==", "!=", "=", "!", "(", ")", ",", "<", ">"];

/// Tokens are slices of `s`, and `""` marks the end. `in` and `notin` are lexed as identifiers
/// because kube treats them as operators only where an operator is expected.
fn lex(mut s: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t', '\r', '\n']);
        let len = match SYMBOLS.iter().find(|sym| s.starts_with(*sym)) {
            Some(sym) => sym.len(),
            None => s.find(|c: char| "=!(),<> \t\r\n".contains(c)).unwrap_or(s.len()),
        };
        tokens.push(&s[..len]);
        if s.is_empty() {
            return tokens;
        }
        s = &s[len..];
    }
}

fn is_ident(token: &str) -> bool {
    !token.is_empty() && !SYMBOLS.contains(&token)
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &'a str {
        self.tokens[self.pos]
    }

    fn next(&mut self) -> &'a str {
        let token = self.peek();
        // The final `""` is sticky, so reading past the end keeps returning it.
        self.pos = (self.pos + 1).min(self.tokens.len() - 1);
        token
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.next() {
            t if is_ident(t) => Ok(t.to_string()),
            t => Err(format!("found '{t}', expected: identifier")),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = self.peek() == "!";
        if negated {
            self.next();
        }
        let key = check_key(self.ident()?)?;
        let (op, mut values) = if negated {
            (Op::DoesNotExist, Vec::new())
        } else if matches!(self.peek(), "" | ",") {
            (Op::Exists, Vec::new())
        } else {
            match self.next() {
                "=" | "==" => (Op::Equals, vec![self.exact_value()?]),
                "!=" => (Op::NotEquals, vec![self.exact_value()?]),
                "in" => (Op::In, self.set()?),
                "notin" => (Op::NotIn, self.set()?),
                t => return Err(format!("found '{t}', expected: in, notin, =, ==, !=")),
            }
        };
        values.sort();
        values.dedup();
        for value in &values {
            check_value(&key, value)?;
        }
        Ok(Requirement { key, op, values })
    }

    fn exact_value(&mut self) -> Result<String, String> {
        match self.peek() {
            "" | "," => Ok(String::new()),
            _ => self.ident(),
        }
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            "(" => {}
            t => return Err(format!("found '{t}' expected: '('")),
        }
        let (mut values, mut want_value) = (Vec::new(), true);
        loop {
            match self.next() {
                t if want_value && is_ident(t) => {
                    values.push(t.to_string());
                    want_value = false;
                }
                // As in kube, a value left out, as in `()`, `(a,)` or `(a,,b)`, is the empty string.
                t @ ("," | ")") => {
                    if want_value {
                        values.push(String::new());
                    }
                    if t == ")" {
                        return Ok(values);
                    }
                    want_value = true;
                }
                t if want_value => return Err(format!("found '{t}', expected: ',', ')' or identifier")),
                t => return Err(format!("found '{t}', expected: ',' or ')'")),
            }
        }
    }
}

/// Non-empty, at most `max` bytes, alphanumeric at both ends and `allowed` throughout.
fn shaped(s: &str, max: usize, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| allowed(c))
}

fn is_label_name(s: &str) -> bool {
    shaped(s, 63, |c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

fn check_key(key: String) -> Result<String, String> {
    let (prefix, name) = key.split_once('/').unwrap_or(("", &key));
    let dns_label = |l: &str| shaped(l, 253, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    let why = if name.contains('/') {
        "a qualified name is a name part with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    } else if key.contains('/') && (prefix.len() > 253 || !prefix.split('.').all(dns_label)) {
        "prefix part must be a lowercase RFC 1123 subdomain of at most 253 characters (e.g. 'example.com')"
    } else if !is_label_name(name) {
        "name part must be 1-63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric"
    } else {
        return Ok(key);
    };
    Err(format!("invalid label key \"{key}\": {why}"))
}

fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        return Ok(());
    }
    let why = "a valid label must be an empty string or 1-63 alphanumeric characters, '-', '_' or '.', \
               starting and ending with an alphanumeric";
    Err(format!("invalid label value: \"{value}\": at key: \"{key}\": {why}"))
}

/// A parsed field selector for pods, as in `?fieldSelector=`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    /// `(field, value, equal)`, sorted; `equal` is false for `!=`.
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses a selector such as `spec.nodeName=n1,status.phase!=Failed`; the empty string selects everything.
    /// Values may escape `\,`, `\=` and `\\`. Like kube, nothing is trimmed: ` spec.nodeName` is unsupported.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::parse_for(s, |field| pod_field(&Pod::default(), field).is_some())
    }

    /// Parses a selector on the fields `supported` accepts (each kind has its own).
    pub fn parse_for(s: &str, supported: impl Fn(&str) -> bool) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in split_terms(s).into_iter().filter(|t| !t.is_empty()) {
            let (field, equal, raw) =
                split_term(term).ok_or_else(|| format!("invalid selector: '{s}'; can't understand '{term}'"))?;
            terms.push((field.to_string(), unescape(raw)?, equal));
        }
        // kube-apiserver parses the whole selector before checking field names; keep its error precedence.
        if let Some((field, ..)) = terms.iter().find(|(f, ..)| !supported(f)) {
            return Err(format!("field label not supported: {field}"));
        }
        terms.sort();
        Ok(FieldSelector { terms })
    }

    /// Whether the selector has no term, and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `pod` satisfies every term.
    pub fn matches(&self, pod: &Pod) -> bool {
        self.matches_with(|field| pod_field(pod, field))
    }

    /// Whether an object whose field values `value` gives satisfies every term.
    pub fn matches_with(&self, value: impl Fn(&str) -> Option<String>) -> bool {
        self.terms
            .iter()
            .all(|(field, expected, equal)| (value(field).as_ref() == Some(expected)) == *equal)
    }
}

/// A pod's value for `field`, empty when the pod lacks it as in kube; `None` for unsupported fields.
pub fn pod_field(pod: &Pod, field: &str) -> Option<String> {
    let (spec, status) = (pod.spec.as_ref(), pod.status.as_ref());
    let value = match field {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.restartPolicy" => spec.and_then(|s| s.restart_policy.clone()),
        "spec.schedulerName" => spec.and_then(|s| s.scheduler_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        // kube reads hostNetwork as a bool, so an unset one is "false", not "".
        "spec.hostNetwork" => Some(spec.and_then(|s| s.host_network).unwrap_or(false).to_string()),
        "status.phase" => status.and_then(|s| s.phase.clone()),
        // kube selects on podIPs[0], which v1's podIP only backfills.
        "status.podIP" => status.and_then(|s| {
            let first = s.pod_ips.as_ref().and_then(|ips| ips.first()).map(|ip| ip.ip.clone());
            first.or_else(|| s.pod_ip.clone())
        }),
        "status.nominatedNodeName" => status.and_then(|s| s.nominated_node_name.clone()),
        _ => return None,
    };
    Some(value.unwrap_or_default())
}

/// Splits on commas not escaped by a backslash, keeping escapes for `unescape`.
fn split_terms(s: &str) -> Vec<&str> {
    let (mut terms, mut start, mut escaped) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Field names cannot be escaped, so like kube the first operator anywhere splits the term.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        let (op, equal) = [("!=", false), ("==", true), ("=", true)]
            .into_iter()
            .find(|(op, _)| rest.starts_with(op))?;
        Some((&term[..i], equal, &rest[op.len()..]))
    })
}

fn unescape(raw: &str) -> Result<String, String> {
    let (mut out, mut chars) = (String::with_capacity(raw.len()), raw.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                e => {
                    let sequence = e.map_or(String::new(), String::from);
                    return Err(format!("invalid field selector: invalid escape sequence: \\{sequence}"));
                }
            },
            // kube prints this rune as a number; a character is more useful.
            ',' | '=' => return Err(format!("invalid field selector: unescaped character in value: {c}")),
            _ => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Labels = &'static [(&'static str, &'static str)];

    const DEMO: Labels = &[("app.kubernetes.io/name", "demo"), ("tier", "b")];

    fn selects(selector: &str, labels: Option<Labels>) -> bool {
        let labels = labels.map(|l| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        LabelSelector::parse(selector).unwrap().matches(labels.as_ref())
    }

    #[test]
    fn label_operators_match_like_kube() {
        let cases: &[(&str, Labels, bool)] = &[
            ("app=web", &[("app", "web")], true),
            ("app==web", &[("app", "web")], true),
            ("app=web", &[("app", "api")], false),
            ("app=web", &[], false),
            ("app=", &[("app", "")], true),
            ("app=", &[], false),
            ("app!=web", &[("app", "api")], true),
            ("app!=web", &[("app", "web")], false),
            ("app!=web", &[], true),
            ("tier in (a,b)", &[("tier", "b")], true),
            ("tier in (a,b)", &[("tier", "c")], false),
            ("tier in (a,b)", &[], false),
            ("tier notin (a,b)", &[("tier", "c")], true),
            ("tier notin (a,b)", &[("tier", "a")], false),
            ("tier notin (a,b)", &[], true),
            ("tier in ()", &[("tier", "")], true),
            ("tier in (a,,b)", &[("tier", "")], true),
            ("canary", &[("canary", "")], true),
            ("canary", &[], false),
            ("!canary", &[("app", "x")], true),
            ("!canary", &[("canary", "y")], false),
            ("", DEMO, true),
            (" app.kubernetes.io/name = demo ,tier in ( a , b ),! x ", DEMO, true),
            ("tier\tin(a,b),app.kubernetes.io/name", DEMO, true),
            ("tier in (a,b),app.kubernetes.io/name=other", DEMO, false),
            ("in in (notin),notin", &[("in", "notin"), ("notin", "")], true),
        ];
        for &(selector, labels, expected) in cases {
            assert_eq!(selects(selector, Some(labels)), expected, "{selector:?}");
        }
    }

    #[test]
    fn absent_labels_satisfy_negations() {
        for selector in ["app!=web", "tier notin (a)", "!x", ""] {
            assert!(selects(selector, None), "{selector:?}");
        }
        assert!(!selects("x", None) && !selects("x=", None) && !selects("x in ()", None));
    }

    #[test]
    fn label_selectors_normalise() {
        assert!(LabelSelector::parse(" ").unwrap().is_empty());
        assert!(!LabelSelector::parse("a").unwrap().is_empty());
        let canonical = LabelSelector::parse("a,b in (x,y)").unwrap();
        assert_eq!(LabelSelector::parse("b in (y,x,x), a").unwrap(), canonical);
    }

    #[test]
    fn label_syntax_errors() {
        let requirement_errors = [
            ("tier in (a", "found '', expected: ',' or ')'"),
            ("tier in (a b)", "found 'b', expected: ',' or ')'"),
            ("tier in (=)", "found '=', expected: ',', ')' or identifier"),
            ("tier in a", "found 'a' expected: '('"),
            ("tier within (a)", "found 'within', expected: in, notin, =, ==, !="),
            ("k>1", "found '>', expected: in, notin, =, ==, !="),
            ("x=)", "found ')', expected: identifier"),
            ("! =x", "found '=', expected: identifier"),
        ];
        for (selector, error) in requirement_errors {
            let error = format!("unable to parse requirement: {error}");
            assert_eq!(LabelSelector::parse(selector).unwrap_err(), error);
        }
        let selector_errors = [
            ("!=x", "found '!=', expected: !, identifier, or 'end of string'"),
            ("a,", "found '', expected: identifier after ','"),
            ("a,,b", "found ',', expected: identifier after ','"),
            ("app=we b", "found 'b', expected: ',' or 'end of string'"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ];
        for (selector, error) in selector_errors {
            assert_eq!(LabelSelector::parse(selector).unwrap_err(), error);
        }
    }

    #[test]
    fn label_keys_and_values_are_validated() {
        let (name, long) = ("v".repeat(63), "v".repeat(64));
        let prefixed = format!("{}/{name}", "a".repeat(253));
        for valid in [&format!("k={name}"), &prefixed, "a.b-c.io/K_8.s in (,x)"] {
            assert!(LabelSelector::parse(valid).is_ok(), "{valid:?}");
        }
        let error = |s: &str| LabelSelector::parse(s).unwrap_err();
        let bad_value = r#"unable to parse requirement: invalid label value: "-web": at key: "app": a valid"#;
        assert!(error("app=-web").starts_with(bad_value));
        assert!(error(&format!("k={long}")).contains("invalid label value"));
        assert!(error(&format!("k in (a,{long})")).contains("invalid label value"));
        let bad_key = r#"unable to parse requirement: invalid label key "-app": name part"#;
        assert!(error("-app=x").starts_with(bad_key));
        let long_prefix = format!("{}/x", "a".repeat(254));
        for key in [
            "Example.com/x",
            "/x",
            "ex..com/x",
            "ex-.com/x",
            "a/b/c",
            "a/",
            "k_",
            &long_prefix,
            &long,
        ] {
            let expected = format!("invalid label key \"{key}\"");
            assert!(error(&format!("{key}=v")).contains(&expected), "{key:?}");
        }
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn field_selects(selector: &str, pod: &Pod) -> bool {
        FieldSelector::parse(selector).unwrap().matches(pod)
    }

    #[test]
    fn every_pod_field_with_every_operator() {
        let pod = pod(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "prod"},
            "spec": {"containers": [], "nodeName": "node-1", "restartPolicy": "Always", "hostNetwork": true,
                     "schedulerName": "default-scheduler", "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "nominatedNodeName": "node-2"},
        }));
        let selects = |s: &str| field_selects(s, &pod);
        for (field, value) in [
            ("metadata.name", "web-1"),
            ("metadata.namespace", "prod"),
            ("spec.nodeName", "node-1"),
            ("spec.restartPolicy", "Always"),
            ("spec.schedulerName", "default-scheduler"),
            ("spec.serviceAccountName", "default"),
            ("spec.hostNetwork", "true"),
            ("status.phase", "Running"),
            ("status.podIP", "10.0.0.7"),
            ("status.nominatedNodeName", "node-2"),
        ] {
            assert!(selects(&format!("{field}={value}")) && selects(&format!("{field}=={value}")));
            assert!(!selects(&format!("{field}=other")) && !selects(&format!("{field}==other")));
            assert!(selects(&format!("{field}!=other")) && !selects(&format!("{field}!={value}")));
        }
        assert!(selects("metadata.name=web-1,status.phase!=Pending"));
        assert!(!selects("metadata.name=web-1,status.phase=Pending"), "terms are ANDed");
    }

    #[test]
    fn missing_pod_values_are_empty() {
        let bare = Pod::default();
        let selects = |s: &str| field_selects(s, &bare);
        assert!(selects("metadata.name=,metadata.namespace=,spec.nodeName="));
        assert!(selects("status.podIP=,status.phase!=Running,spec.schedulerName="));
        assert!(selects("spec.hostNetwork=false") && !selects("spec.hostNetwork="));
        let dual_stack = pod(serde_json::json!({"status": {"podIPs": [{"ip": "fd00::7"}, {"ip": "10.0.0.7"}]}}));
        assert!(field_selects("status.podIP=fd00::7", &dual_stack));
        let everything = FieldSelector::parse("").unwrap();
        assert!(everything.is_empty() && everything.matches(&bare));
        assert!(!FieldSelector::parse("spec.nodeName=").unwrap().is_empty());
    }

    #[test]
    fn field_values_unescape() {
        let mut pod = Pod::default();
        pod.metadata.name = Some(r"a,b=c\d".into());
        assert!(field_selects(r"metadata.name=a\,b\=c\\d", &pod));
        assert!(field_selects(r"metadata.name!=a\,b,spec.nodeName=", &pod));
    }

    #[test]
    fn field_parse_errors() {
        let error = |s: &str| FieldSelector::parse(s).unwrap_err();
        for (selector, field) in [
            ("spec.bogus=x", "spec.bogus"),
            ("metadata.name=x, spec.nodeName=y", " spec.nodeName"),
        ] {
            assert_eq!(error(selector), format!("field label not supported: {field}"));
        }
        assert_eq!(error("=x"), "field label not supported: ");
        let syntax = "invalid selector: 'metadata.name=x,spec'; can't understand 'spec'";
        assert_eq!(error("metadata.name=x,spec"), syntax);
        let escapes = [
            (r"metadata.name=a\x", r"invalid escape sequence: \x"),
            (r"metadata.name=a\", r"invalid escape sequence: \"),
            (r"spec.bogus=x,metadata.name=\q", r"invalid escape sequence: \q"),
            ("metadata.name=a=b", "unescaped character in value: ="),
            ("metadata.name!==b", "unescaped character in value: ="),
        ];
        for (selector, problem) in escapes {
            assert_eq!(error(selector), format!("invalid field selector: {problem}"));
        }
    }
}

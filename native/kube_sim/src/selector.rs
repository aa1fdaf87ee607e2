//! Label and field selectors for pods, parsed and matched as kube-apiserver does.

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
                Token::Ident(_) | Token::Sym("!") => {}
                Token::End if !after_comma => break,
                t if after_comma => return Err(format!("found '{}', expected: identifier after ','", t.text())),
                t => return Err(format!("found '{}', expected: !, identifier, or 'end of string'", t.text())),
            }
            requirements.push(p.requirement().map_err(|e| format!("unable to parse requirement: {e}"))?);
            match p.next() {
                Token::End => break,
                Token::Sym(",") => after_comma = true,
                t => return Err(format!("found '{}', expected: ',' or 'end of string'", t.text())),
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
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

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Sym(&'static str),
    End,
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::Sym(s) => s,
            Token::End => "",
        }
    }
}

/// Two-character symbols come first so the longest wins. `<` and `>` (kube's `gt`/`lt`, not
/// supported here) are symbols so that `k>1` fails on the operator rather than on the key.
const SYMBOLS: [&str; 9] = ["==", "!=", "=", "!", "(", ")", ",", "<", ">"];

/// `in` and `notin` stay identifiers: as in kube, they are operators only where one is expected.
fn lex(mut s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t', '\r', '\n']);
        if s.is_empty() {
            tokens.push(Token::End);
            return tokens;
        }
        let (token, len) = match SYMBOLS.into_iter().find(|sym| s.starts_with(sym)) {
            Some(sym) => (Token::Sym(sym), sym.len()),
            None => {
                let len = s.find(|c: char| "=!(),<> \t\r\n".contains(c)).unwrap_or(s.len());
                (Token::Ident(s[..len].to_string()), len)
            }
        };
        tokens.push(token);
        s = &s[len..];
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.pos].clone();
        // `End` is last and sticky, so reading past it keeps returning `End`.
        self.pos = (self.pos + 1).min(self.tokens.len() - 1);
        token
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = *self.peek() == Token::Sym("!");
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Ident(key) => check_key(key)?,
            t => return Err(format!("found '{}', expected: identifier", t.text())),
        };
        if negated || matches!(self.peek(), Token::End | Token::Sym(",")) {
            let op = if negated { Op::DoesNotExist } else { Op::Exists };
            return Ok(Requirement { key, op, values: Vec::new() });
        }
        let op = match self.next() {
            Token::Sym("=" | "==") => Op::Equals,
            Token::Sym("!=") => Op::NotEquals,
            Token::Ident(word) if word == "in" => Op::In,
            Token::Ident(word) if word == "notin" => Op::NotIn,
            t => return Err(format!("found '{}', expected: in, notin, =, ==, !=", t.text())),
        };
        let mut values = match op {
            Op::In | Op::NotIn => self.set()?,
            _ => vec![self.exact_value()?],
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
            Token::End | Token::Sym(",") => Ok(String::new()),
            _ => match self.next() {
                Token::Ident(value) => Ok(value),
                t => Err(format!("found '{}', expected: identifier", t.text())),
            },
        }
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        let open = self.next();
        if open != Token::Sym("(") {
            return Err(format!("found '{}' expected: '('", open.text()));
        }
        let (mut values, mut want_value) = (Vec::new(), true);
        loop {
            match (self.next(), want_value) {
                (Token::Ident(value), true) => {
                    values.push(value);
                    want_value = false;
                }
                // As in kube, a value left out, as in `()`, `(a,)` or `(a,,b)`, is the empty string.
                (t @ Token::Sym("," | ")"), _) => {
                    if want_value {
                        values.push(String::new());
                    }
                    if t == Token::Sym(")") {
                        return Ok(values);
                    }
                    want_value = true;
                }
                (t, true) => return Err(format!("found '{}', expected: ',', ')' or identifier", t.text())),
                (t, false) => return Err(format!("found '{}', expected: ',' or ')'", t.text())),
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
    Err(format!("invalid label value: \"{value}\": at key: \"{key}\": a valid label must be an empty string or at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric"))
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
        let mut terms = Vec::new();
        for term in split_terms(s).into_iter().filter(|t| !t.is_empty()) {
            let (field, equal, raw) =
                split_term(term).ok_or_else(|| format!("invalid selector: '{s}'; can't understand '{term}'"))?;
            terms.push((field.to_string(), unescape(raw)?, equal));
        }
        // kube-apiserver parses the whole selector before checking field names; keep its error precedence.
        if let Some((field, ..)) = terms.iter().find(|(f, ..)| !POD_FIELDS.contains(&f.as_str())) {
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
        self.terms.iter().all(|(field, value, equal)| (field_value(pod, field) == *value) == *equal)
    }
}

fn field_value(pod: &Pod, field: &str) -> String {
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
        _ => None,
    };
    value.unwrap_or_default()
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
        let (op, equal) = [("!=", false), ("==", true), ("=", true)].into_iter().find(|(op, _)| rest.starts_with(op))?;
        Some((&term[..i], equal, &rest[op.len()..]))
    })
}

fn unescape(raw: &str) -> Result<String, String> {
    let (mut out, mut chars) = (String::with_capacity(raw.len()), raw.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                e => return Err(format!("invalid field selector: invalid escape sequence: \\{}", e.map(String::from).unwrap_or_default())),
            },
            // kube prints this rune as a number; a character is more useful.
            ',' | '=' => return Err(format!("invalid field selector: unescaped character in value: {c}")),
            _ => out.push(c),
        }
    }
    Ok(out)
}

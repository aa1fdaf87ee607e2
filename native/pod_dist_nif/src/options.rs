//! The one validator of watch options: `PodDist.Watch.start/1`, `PodDist.Strategy`'s
//! config (its watch keys) and `PodDist.Epmd` (its `POD_DIST_*` variables, as
//! options) all come here, with errors that name the key.

use std::path::PathBuf;

use pod_dist_core::connect::ConnectOptions;
use rustler::{Term, TermType};

mod keys {
    rustler::atoms! { nil, all }
}

/// Everything `start_watch` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How to reach the API.
    pub connect: ConnectOptions,
    /// Namespaces to watch, each once; empty means the credentials' own; `[None]` means all.
    pub namespaces: Vec<Option<String>>,
    /// Optional label selector.
    pub label_selector: Option<String>,
    /// Optional field selector.
    pub field_selector: Option<String>,
    /// The cluster DNS domain, if given.
    pub cluster_domain: Option<String>,
    /// The headless Service whose EndpointSlices are the source; `None`: pods.
    pub service: Option<String>,
    /// With `service`: whose slices to read (their `managed-by` label); `None`: the
    /// EndpointSlice controller's.
    pub slice_managed_by: Option<String>,
}

/// Every key a watch takes, in the order the docs list them.
pub const KEYS: [&str; 12] = [
    "namespaces",
    "service",
    "slice_managed_by",
    "label_selector",
    "field_selector",
    "api_url",
    "ca_file",
    "token",
    "token_file",
    "service_account_dir",
    "kubeconfig",
    "cluster_domain",
];

/// Decodes a keyword list of options (a `nil` value means "not set"; a key given twice:
/// the last one counts). Anything else, an improper list included, is an error naming
/// what is wrong; a token is never echoed.
pub fn decode(list: Term<'_>) -> Result<Options, String> {
    // Rustler's list decoding panics on an improper list: check it is proper first.
    if list.get_type() != TermType::List || list.list_length().is_err() {
        return Err("options must be a keyword list".into());
    }
    let entries: Vec<Term> = list.decode().map_err(|_| "options must be a keyword list")?;
    let mut options = Options::default();
    for entry in entries {
        let (key, value) = entry
            .decode::<(Term, Term)>()
            .ok()
            .and_then(|(key, value)| Some((key.atom_to_string().ok()?, value)))
            .ok_or("options must be a keyword list")?;
        set(&mut options, &key, value)?;
    }
    if options.slice_managed_by.is_some() && options.service.is_none() {
        return Err("option :slice_managed_by chooses whose EndpointSlices to read: give :service too".into());
    }
    if options.service.is_some() {
        // Slices carry no pod labels or fields: the Service's selector picks the pods.
        for (key, set) in [
            ("label_selector", options.label_selector.is_some()),
            ("field_selector", options.field_selector.is_some()),
        ] {
            if set {
                return Err(format!(
                    "option :{key} selects pods and needs the pods source; with :service, the Service's selector picks the pods"
                ));
            }
        }
        if options.namespaces.len() > 1 {
            return Err("option :service watches one namespace; give at most one in :namespaces".into());
        }
    }
    Ok(options)
}

fn set(options: &mut Options, key: &str, value: Term<'_>) -> Result<(), String> {
    if key == "namespaces" {
        options.namespaces = namespaces(value)?;
        return Ok(());
    }
    if !KEYS.contains(&key) {
        return Err(format!("unknown option :{key}"));
    }
    let text = if value.decode::<rustler::Atom>().ok() == Some(keys::nil()) {
        None
    } else {
        match value.decode::<String>() {
            Ok(text) => Some(text),
            // A token in the wrong type is still a secret: never echo it.
            Err(_) if key == "token" => return Err("option :token must be a string".into()),
            Err(_) => return Err(format!("option :{key} must be a string, got {value:?}")),
        }
    };
    let nonempty = |text: Option<String>| text.filter(|s| !s.is_empty());
    let path = |text: Option<String>| text.map(PathBuf::from);
    match key {
        "label_selector" => options.label_selector = nonempty(text),
        "field_selector" => options.field_selector = nonempty(text),
        "cluster_domain" => options.cluster_domain = nonempty(text),
        "service" => options.service = nonempty(text),
        "slice_managed_by" => options.slice_managed_by = nonempty(text),
        "api_url" => options.connect.api_url = text,
        "token" => options.connect.token = text,
        "ca_file" => options.connect.ca_file = path(text),
        "token_file" => options.connect.token_file = path(text),
        "service_account_dir" => options.connect.service_account_dir = path(text),
        _ => options.connect.kubeconfig = path(text),
    }
    Ok(())
}

fn namespaces(value: Term<'_>) -> Result<Vec<Option<String>>, String> {
    let invalid = || "option :namespaces must be a list of strings or :all".to_string();
    match value.decode::<rustler::Atom>() {
        Ok(atom) if atom == keys::all() => return Ok(vec![None]),
        Ok(atom) if atom == keys::nil() => return Ok(Vec::new()),
        _ => {}
    }
    value.list_length().map_err(|_| invalid())?;
    let list: Vec<String> = value.decode().map_err(|_| invalid())?;
    // A namespace named twice is watched once: the watch is synced when each namespace
    // it follows is listed, and a duplicate would wait for a second list that never comes.
    let mut seen = std::collections::HashSet::new();
    Ok(list
        .into_iter()
        .filter(|ns| seen.insert(ns.clone()))
        .map(Some)
        .collect())
}

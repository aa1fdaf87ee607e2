//! The one validator of watch options: `PodDist.Watch.start/1`, `PodDist.Strategy`'s
//! config (its watch keys) and `PodDist.Epmd` (its `POD_DIST_*` variables, as
//! options) all come here. A bad option raises `ArgumentError` naming the key; a token
//! is never echoed.

use std::collections::HashSet;
use std::path::PathBuf;

use pod_dist_core::connect::ConnectOptions;
use rustler::{Decoder, NifResult, NifUnitEnum, Term};

use crate::args::{argument_error, proper_list};
use crate::health::Everywhere;

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

impl Options {
    /// Whether the records carry pod labels and annotations (and pod fields to select
    /// on): the rule "slices carry no labels" lives here. The slice source's records
    /// have none (the Service's selector picks the pods); only the pods source's do.
    pub fn carries_labels(&self) -> bool {
        self.service.is_none()
    }
}

/// The key of a watch option; an atom of any other name is an unknown option.
#[derive(NifUnitEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Namespaces,
    Service,
    SliceManagedBy,
    LabelSelector,
    FieldSelector,
    ApiUrl,
    CaFile,
    Token,
    TokenFile,
    ServiceAccountDir,
    Kubeconfig,
    ClusterDomain,
}

/// A keyword list of options: a `nil` value means "not set"; of a key given twice, the
/// last one counts. Anything else, an improper list too, is an `ArgumentError`.
impl<'a> Decoder<'a> for Options {
    fn decode(term: Term<'a>) -> NifResult<Options> {
        let mut options = Options::default();
        for (key, value) in keyword_list(term)? {
            let name = key.atom_to_string()?;
            let key = key
                .decode::<Key>()
                .map_err(|_| argument_error(format!("unknown option :{name}")))?;
            set(&mut options, key, &name, value)?;
        }
        check_source(&options).map_err(argument_error)?;
        Ok(options)
    }
}

fn keyword_list<'a>(term: Term<'a>) -> NifResult<Vec<(Term<'a>, Term<'a>)>> {
    let pair = |entry: Term<'a>| entry.decode::<(Term, Term)>().ok().filter(|(key, _)| key.is_atom());
    proper_list(term)
        .and_then(|entries| entries.map(pair).collect())
        .ok_or_else(|| argument_error("options must be a keyword list"))
}

fn set(options: &mut Options, key: Key, name: &str, value: Term<'_>) -> NifResult<()> {
    let text = || string(key, name, value);
    let nonempty = |text: Option<String>| text.filter(|s| !s.is_empty());
    let path = |text: Option<String>| text.map(PathBuf::from);
    match key {
        Key::Namespaces => options.namespaces = value.decode::<NamespaceList>()?.0,
        Key::LabelSelector => options.label_selector = nonempty(text()?),
        Key::FieldSelector => options.field_selector = nonempty(text()?),
        Key::ClusterDomain => options.cluster_domain = nonempty(text()?),
        Key::Service => options.service = nonempty(text()?),
        Key::SliceManagedBy => options.slice_managed_by = nonempty(text()?),
        Key::ApiUrl => options.connect.api_url = text()?,
        Key::Token => options.connect.token = text()?,
        Key::CaFile => options.connect.ca_file = path(text()?),
        Key::TokenFile => options.connect.token_file = path(text()?),
        Key::ServiceAccountDir => options.connect.service_account_dir = path(text()?),
        Key::Kubeconfig => options.connect.kubeconfig = path(text()?),
    }
    Ok(())
}

/// A string option's value, `None` for `nil`.
fn string(key: Key, name: &str, value: Term<'_>) -> NifResult<Option<String>> {
    value.decode::<Option<String>>().map_err(|_| match key {
        // A token in the wrong type is still a secret: never echo it.
        Key::Token => argument_error("option :token must be a string"),
        _ => argument_error(format!("option :{name} must be a string, got {value:?}")),
    })
}

/// `:namespaces`: `:all` (`[None]`), `nil` (empty: the credentials' own) or a list of
/// strings, each kept once.
struct NamespaceList(Vec<Option<String>>);

impl<'a> Decoder<'a> for NamespaceList {
    fn decode(term: Term<'a>) -> NifResult<NamespaceList> {
        match term.decode::<Option<Everywhere>>() {
            Ok(Some(Everywhere::All)) => return Ok(NamespaceList(vec![None])),
            Ok(None) => return Ok(NamespaceList(Vec::new())),
            Err(_) => {}
        }
        let names: Option<Vec<String>> =
            proper_list(term).and_then(|names| names.map(|name| name.decode().ok()).collect());
        let names = names.ok_or_else(|| argument_error("option :namespaces must be a list of strings or :all"))?;
        // A namespace named twice is watched once: the watch is synced when each namespace
        // it follows is listed, and a duplicate would wait for a second list that never comes.
        let mut seen = HashSet::new();
        Ok(NamespaceList(
            names
                .into_iter()
                .filter(|ns| seen.insert(ns.clone()))
                .map(Some)
                .collect(),
        ))
    }
}

/// What the slice source allows: `:label_selector` and `:field_selector` need records
/// that carry labels (see [`Options::carries_labels`]).
fn check_source(options: &Options) -> Result<(), String> {
    if options.slice_managed_by.is_some() && options.service.is_none() {
        return Err("option :slice_managed_by chooses whose EndpointSlices to read: give :service too".into());
    }
    if options.carries_labels() {
        return Ok(());
    }
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
    Ok(())
}

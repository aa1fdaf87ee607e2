//! Decoding `start_watch` options from an Elixir map, with errors that name the key.

use std::path::PathBuf;

use kube_dist_core::connect::ConnectOptions;
use rustler::{Term, TermType};

mod keys {
    rustler::atoms! { api_url, ca_file, token, token_file, service_account_dir, kubeconfig, namespaces, label_selector, field_selector, cluster_domain, all }
}

/// Everything `start_watch` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// How to reach the API.
    pub connect: ConnectOptions,
    /// Namespaces to watch; empty means the credentials' own; `[None]` means all.
    pub namespaces: Vec<Option<String>>,
    /// Optional label selector.
    pub label_selector: Option<String>,
    /// Optional field selector.
    pub field_selector: Option<String>,
    /// The cluster DNS domain, if given.
    pub cluster_domain: Option<String>,
}

/// Decodes the options map (atom keys; absent or `nil` values mean "not set").
pub fn decode(map: Term<'_>) -> Result<Options, String> {
    if map.get_type() != TermType::Map {
        return Err("options must be a map".into());
    }
    let string = |key: rustler::Atom, name: &str| -> Result<Option<String>, String> {
        match map.map_get(key) {
            Ok(value)
                if value.get_type() == TermType::Atom && value.atom_to_string().ok().as_deref() == Some("nil") =>
            {
                Ok(None)
            }
            Ok(value) => value
                .decode::<String>()
                .map(Some)
                .map_err(|_| format!("option {name} must be a string")),
            Err(_) => Ok(None),
        }
    };
    let path = |key, name| string(key, name).map(|s| s.map(PathBuf::from));
    let namespaces = match map.map_get(keys::namespaces()) {
        Err(_) => Vec::new(),
        Ok(value) if value.decode::<rustler::Atom>().ok() == Some(keys::all()) => vec![None],
        // Rustler's list decoding panics on an improper list: check it is proper first.
        Ok(value) => value
            .list_length()
            .and_then(|_| value.decode::<Vec<String>>())
            .map_err(|_| "option namespaces must be a list of strings or :all".to_string())?
            .into_iter()
            .map(Some)
            .collect(),
    };
    Ok(Options {
        connect: ConnectOptions {
            api_url: string(keys::api_url(), "api_url")?,
            ca_file: path(keys::ca_file(), "ca_file")?,
            token: string(keys::token(), "token")?,
            token_file: path(keys::token_file(), "token_file")?,
            service_account_dir: path(keys::service_account_dir(), "service_account_dir")?,
            kubeconfig: path(keys::kubeconfig(), "kubeconfig")?,
        },
        namespaces,
        label_selector: string(keys::label_selector(), "label_selector")?.filter(|s| !s.is_empty()),
        field_selector: string(keys::field_selector(), "field_selector")?.filter(|s| !s.is_empty()),
        cluster_domain: string(keys::cluster_domain(), "cluster_domain")?.filter(|s| !s.is_empty()),
    })
}

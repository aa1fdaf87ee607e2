//! Shared watches: callers asking for the same API, with the same credentials, for the
//! same pods get the same watch, which lives until its last handle is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use once_cell::sync::Lazy;
use pod_dist_core::runtime::runtime;
use pod_dist_core::watch::{Watch, WatchSpec};
use pod_dist_core::{connect, host};

use crate::options::Options;

static WATCHES: Lazy<Mutex<HashMap<String, Weak<Watch>>>> = Lazy::new(Default::default);

/// The watch for `options`, started if no live one matches; `true` if it was started now.
pub fn watch(options: Options) -> Result<(Arc<Watch>, bool), String> {
    let resolved = runtime().block_on(connect::config(&options.connect))?;
    let namespaces = match options.namespaces.first() {
        None => vec![Some(resolved.default_namespace.clone())],
        // The slice source reads one namespace: the first named, else the credentials'.
        Some(first) if options.service.is_some() => {
            vec![Some(
                first.clone().unwrap_or_else(|| resolved.default_namespace.clone()),
            )]
        }
        Some(_) => options.namespaces.clone(),
    };
    let cluster_domain = options
        .cluster_domain
        .clone()
        .unwrap_or_else(host::detect_cluster_domain);
    // The node's own namespace, for names without one: the first listed, else (watching
    // every namespace) the one its credentials belong to: in a pod, the pod's own.
    let home = namespaces
        .first()
        .cloned()
        .flatten()
        .or_else(|| Some(resolved.default_namespace.clone()));
    let spec = WatchSpec {
        namespaces,
        label_selector: options.label_selector,
        field_selector: options.field_selector,
        service: options.service,
        slice_managed_by: options.slice_managed_by,
        cluster_domain,
        home,
    };
    // The key holds what identifies the API, the credentials and the pods: two tokens
    // are two watches (each reads with its own rights). Secrets enter it only as a
    // digest; the options print with the token redacted.
    let key = format!(
        "{:?}|{:?}|{}|{:?}",
        resolved.config.cluster_url,
        options.connect,
        connect::credentials_digest(&resolved.config),
        spec
    );
    let mut watches = WATCHES.lock().unwrap_or_else(|p| p.into_inner());
    watches.retain(|_, w| w.strong_count() > 0);
    if let Some(existing) = watches.get(&key).and_then(Weak::upgrade) {
        return Ok((existing, false));
    }
    // Fail fast on a configuration that cannot make a client at all.
    connect::client(resolved.config.clone())?;
    let (url, source) = (resolved.config.cluster_url.to_string(), resolved.source.as_str());
    let config = resolved.config;
    let watch = Arc::new(Watch::start(
        move || connect::client(config.clone()),
        &spec,
        runtime().handle(),
    ));
    watch.set_origin(url, source);
    watches.insert(key, Arc::downgrade(&watch));
    Ok((watch, true))
}

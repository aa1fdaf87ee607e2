//! Steady pod churn driven inside the simulator, so a benchmark's client process pays
//! only for its own side. Every change flips a pod's readiness and stamps the wall-clock
//! time of the change on the pod, so a client can tell how far behind the API it runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{Filter, ListVersion};
use crate::{fixtures, Shared};

/// The annotation holding a change's time, in nanoseconds since the Unix epoch.
pub const CHANGED_AT: &str = "kube-sim.dev/changed-at-ns";

/// Changes `rate` pods a second in `namespace`, cycling through them in name order,
/// for `duration`. Returns at once; the changes run on the simulator's runtime.
pub fn start(shared: Arc<Shared>, namespace: String, rate: u64, duration: Duration) {
    tokio::spawn(async move {
        let filter = Filter {
            namespace: Some(namespace.clone()),
            ..Filter::default()
        };
        let Ok(page) = shared.store.list(&filter, ListVersion::Latest, None, None) else {
            return;
        };
        let names: Vec<String> = page.items.iter().filter_map(|pod| pod.metadata.name.clone()).collect();
        if names.is_empty() || rate == 0 {
            return;
        }
        let total = rate.saturating_mul(duration.as_secs().max(1)) as usize;
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
        for n in 0..total {
            tick.tick().await;
            // The first pass through the pods makes them unready, the next ready again...
            let ready = (n / names.len()) % 2 == 1;
            let _ = shared.store.update(&namespace, &names[n % names.len()], |old| {
                let mut new = old.clone();
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                new.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(CHANGED_AT.into(), now.as_nanos().to_string());
                fixtures::set_ready(new.status.get_or_insert_with(Default::default), ready);
                Ok(new)
            });
        }
    });
}

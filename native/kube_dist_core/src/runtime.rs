//! The one tokio runtime all watches run on, started on first use.

use once_cell::sync::Lazy;
use tokio::runtime::Runtime;

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    // Two workers: watches are I/O-bound, and the BEAM owns the CPUs.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kube_dist")
        .enable_all()
        .build()
        .expect("cannot start the kube_dist tokio runtime")
});

/// The shared runtime.
pub fn runtime() -> &'static Runtime {
    &RUNTIME
}

//! The one tokio runtime all watches run on, started on first use.

use once_cell::sync::Lazy;
use tokio::runtime::Runtime;

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    // One worker: watches are I/O-bound and the BEAM owns the CPUs. It also keeps the
    // index's allocations in one glibc arena: with two workers the RSS per indexed pod
    // was about 170 bytes higher (BENCHMARKS.md).
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pod_dist")
        .enable_all()
        .build()
        .expect("cannot start the pod_dist tokio runtime")
});

/// The shared runtime.
pub fn runtime() -> &'static Runtime {
    &RUNTIME
}

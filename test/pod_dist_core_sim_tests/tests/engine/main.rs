//! pod_dist_core against the simulator, end to end through its public API, in one test
//! binary: each module is a file of tests, and one binary is linked once.

mod connect;
mod lists;
mod slice_source;
mod watch;

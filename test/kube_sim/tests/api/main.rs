//! The simulator against real clients (kube-rs, `kubectl`, the official Python client), in
//! one test binary: each module is a file of tests, and one binary is linked once.

mod client;
mod endpoint_slices;
mod kubectl;
mod python_client;

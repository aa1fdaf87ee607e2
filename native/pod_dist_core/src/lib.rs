//! PodDist's engine, free of any BEAM dependency: connect to the Kubernetes API
//! ([`connect`]), watch pods ([`watch`], decoded slim by [`wire`], paced after failures
//! by [`retry`]) into a slim in-memory index ([`index`] of [`pod`] records), on one
//! shared tokio [`runtime`]. A second source for the index, the EndpointSlices of one
//! headless Service, is decoded by [`slice_wire`] and merged into pod records by
//! [`slices`]. The NIF crate is a thin layer over this one.

pub mod connect;
pub mod host;
pub mod index;
pub mod pod;
pub mod retry;
pub mod runtime;
pub mod slice_wire;
pub mod slices;
pub mod watch;
pub mod wire;

//! The kinds kept in stores (with watches): Pod, Service and EndpointSlice.

pub mod endpoint_slice;
pub mod names;
pub mod pod;
pub mod service;

//! One parsed request, and the responses handlers build: shared by every handler.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response};
use serde_json::Value;

use crate::auth::Identity;
use crate::query;
use crate::shared::Shared;
use crate::status::ApiError;

/// A response body: whole or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// One parsed request, on its way through the handlers.
pub struct Call {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    pub identity: Identity,
    pub body: Bytes,
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean parameter, `None` when absent; see [`query::parse_bool`].
    pub fn bool_param(&self, name: &str) -> Option<bool> {
        self.query.get(name).map(|v| query::parse_bool(v))
    }

    /// A boolean parameter that is false when absent.
    pub fn flag(&self, name: &str) -> bool {
        self.bool_param(name).unwrap_or(false)
    }
}

pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized or malformed: {e}")))
}

pub fn stream_response(chunks: impl futures::Stream<Item = Bytes> + Send + Sync + 'static) -> Response<Body> {
    let body = StreamBody::new(chunks.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))));
    let mut response = Response::new(BodyExt::boxed(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn bytes_response(shared: &Shared, code: u16, content_type: &'static str, body: Bytes) -> Response<Body> {
    shared.stats.sent(body.len());
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn json_response(shared: &Shared, code: u16, body: &Value) -> Response<Body> {
    bytes_response(shared, code, "application/json", Bytes::from(body.to_string()))
}

pub fn text(shared: &Shared, body: &'static str) -> Response<Body> {
    bytes_response(shared, 200, "text/plain", Bytes::from_static(body.as_bytes()))
}

/// `429 Too Many Requests` as API Priority and Fairness answers when a request's priority
/// level is full: the delay in a `Retry-After` header, the body plain text.
pub fn too_many_requests(shared: &Shared, retry_after_seconds: u64) -> Response<Body> {
    let mut response = bytes_response(
        shared,
        429,
        "text/plain; charset=utf-8",
        Bytes::from_static(b"Too many requests, please try again later.\n"),
    );
    response
        .headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
    response
}

/// The `Status` response for an error.
pub fn error(shared: &Shared, e: &ApiError) -> Response<Body> {
    json_response(shared, e.code, &e.to_status())
}

//! The connection loop: accepts TCP (and TLS) connections and hands each request to the
//! control routes or the API.

use std::io;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, Listener};
use crate::control;
use crate::faults::Outage;
use crate::shared::Shared;

/// Accepts connections on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>, kind: Listener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            if kind == Listener::Api && shared.faults.current_outage() == Some(Outage::Offline) {
                shared.stats.request("DROPPED", "connection");
                return;
            }
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve_connection(TokioIo::new(stream), shared, kind).await;
                    }
                }
                None => serve_connection(TokioIo::new(tcp), shared, kind).await,
            }
        });
    }
}

async fn serve_connection<I>(io: I, shared: Arc<Shared>, kind: Listener)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move {
            if kind == Listener::Api && shared.faults.current_outage() == Some(Outage::Offline) {
                // An error from the service makes hyper drop the connection unanswered.
                shared.stats.request("DROPPED", req.uri().path());
                return Err(io::Error::other("simulated restart"));
            }
            if kind == Listener::Control {
                if let Some(response) = control::handle(&shared, req.method(), req.uri().path(), req.uri().query()) {
                    return Ok(response);
                }
            }
            Ok(api::handle(shared, req, kind).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

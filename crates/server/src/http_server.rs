//! The HTTP listener: axum's router served by hyper with the timeouts a
//! server facing untrusted clients needs (axum's own `serve` sets none, so
//! a client could hold a connection open forever by sending a header one
//! byte at a time).
//!
//! - `-server.http-server-idle-timeout`: a connection must send a complete
//!   request head within this long of being ready for one, which closes
//!   idle kept-alive connections and slow-header (slowloris) clients alike.
//! - `-server.http-server-read-timeout`: reading a request's body may take
//!   this long; a slower body fails its request.
//!
//! The port is bound and served from a process's first second ([`starting`]):
//! probes get answers during a long WAL replay or ring join.
//!
//! On shutdown the listener closes, in-flight requests finish, and kept-alive
//! connections are told to close, as `axum::serve` does.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::Registry;
use strata_api::startup::Startup;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The router of a process still starting: `/health` answers at once,
/// `/ready` says what start-up waits for, `/metrics` serves the metrics
/// registered so far; once `app` is set every request goes to it.
pub fn starting(startup: Arc<Startup>, registry: Registry, app: Arc<OnceLock<Router>>) -> Router {
    Router::new().fallback(move |req: Request| {
        let (startup, registry, app) = (startup.clone(), registry.clone(), app.clone());
        async move {
            if let Some(app) = app.get() {
                return match app.clone().oneshot(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
            }
            match req.uri().path() {
                "/health" => "OK".into_response(),
                "/ready" => strata_api::ready_response(&startup),
                "/metrics" => strata_api::metrics_response(&registry),
                _ => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("strata is starting: {}", startup.phase()),
                )
                    .into_response(),
            }
        }
    })
}

/// Timeouts of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpTimeouts {
    pub read: Duration,
    pub idle: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for
/// open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: HttpTimeouts,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(RequestBodyTimeoutLayer::new(timeouts.read));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.idle)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

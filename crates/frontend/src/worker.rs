//! The querier's side: workers that pull requests from every
//! query-frontend in the ring and run them with this querier's own HTTP
//! API (the router, called in-process), `parallelism` streams per
//! frontend. Frontends that join are connected within a second; a worker
//! whose frontend left the ring stops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use strata_proto::frontend::frontend_client::FrontendClient;
use strata_proto::frontend::worker_message::Message;
use strata_proto::frontend::{HttpRequest, HttpResponse, WorkerMessage};
use strata_ring::Ring;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::service::MAX_MESSAGE_BYTES;

/// How a querier's workers run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This querier's ring instance id, sent to the frontends.
    pub querier_id: String,
    /// Streams (requests at once) per frontend.
    pub parallelism: usize,
    /// gRPC address of this process's own frontend, served by
    /// [`run_local`] instead.
    pub own_frontend: Option<String>,
}

/// gRPC addresses of the healthy ACTIVE query-frontends.
fn frontends(ring: &Ring) -> Vec<String> {
    let desc = ring.desc();
    let timeout = ring.config().heartbeat_timeout.as_millis() as i64;
    strata_ring::shard::members(&desc, "query-frontend", strata_ring::now_ms(), timeout)
        .into_iter()
        .filter_map(|id| desc.instances.get(&id).map(|i| i.grpc_addr.clone()))
        .collect()
}

/// Runs workers against the ring's query-frontends until `shutdown`.
pub async fn run(
    ring: Arc<Ring>,
    app: Router,
    cfg: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut running: HashMap<String, Vec<tokio::task::JoinHandle<()>>> = HashMap::new();
    loop {
        let mut current = frontends(&ring);
        current.retain(|a| Some(a) != cfg.own_frontend.as_ref());
        running.retain(|addr, workers| {
            workers.retain(|w| !w.is_finished());
            current.contains(addr) || !workers.is_empty()
        });
        for addr in current {
            let workers = running.entry(addr.clone()).or_default();
            while workers.len() < cfg.parallelism.max(1) {
                workers.push(tokio::spawn(work(
                    ring.clone(),
                    addr.clone(),
                    app.clone(),
                    cfg.querier_id.clone(),
                    shutdown.clone(),
                )));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Workers of this process's querier for this process's own frontend:
/// they take requests from its queue and answer them in-process.
pub async fn run_local(
    frontend: Arc<crate::Frontend>,
    app: Router,
    querier_id: String,
    parallelism: usize,
    shutdown: watch::Receiver<bool>,
) {
    let queue = frontend.queue().clone();
    let workers = (0..parallelism.max(1)).map(|_| {
        let (queue, app, id, mut shutdown) = (
            queue.clone(),
            app.clone(),
            querier_id.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            queue.connect(&id);
            loop {
                let job = tokio::select! {
                    job = queue.next(&id) => job,
                    _ = shutdown.changed() => break,
                };
                if job.respond.is_closed() {
                    continue;
                }
                let waited = job.enqueued.elapsed();
                crate::metrics::QUEUE_SECONDS.observe(waited.as_secs_f64());
                let mut response = answer(&app, job.request).await;
                response.headers.push(strata_proto::frontend::Header {
                    name: crate::frontend::QUEUE_TIME_HEADER.into(),
                    value: format!("{:.6}", waited.as_secs_f64()),
                });
                let _ = job.respond.send(Ok(response));
            }
            queue.disconnect(&id);
        })
    });
    futures::future::join_all(workers).await;
}

/// One worker: connects to the frontend at `addr` and serves its requests,
/// reconnecting while the frontend is in the ring.
async fn work(
    ring: Arc<Ring>,
    addr: String,
    app: Router,
    querier_id: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = serve(&addr, &app, &querier_id) => {
                if let Err(e) = r {
                    tracing::debug!(frontend = %addr, error = %e, "query-frontend worker stream ended");
                }
            }
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() || !frontends(&ring).contains(&addr) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One stream: hello, then a request at a time, each answered.
async fn serve(addr: &str, app: &Router, querier_id: &str) -> Result<(), String> {
    // The stream lives as long as both ends do: no call timeout.
    let endpoint = strata_proto::transport::endpoint(
        addr,
        Duration::from_secs(2),
        Duration::from_secs(365 * 24 * 3600),
    )?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let mut client = FrontendClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = tokio::sync::mpsc::channel::<WorkerMessage>(1);
    tx.send(WorkerMessage {
        message: Some(Message::QuerierId(querier_id.to_string())),
    })
    .await
    .map_err(|_| "worker channel closed".to_string())?;
    let outbound =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut inbound = client
        .process(outbound)
        .await
        .map_err(|s| format!("{addr}: {}", s.message()))?
        .into_inner();
    while let Some(msg) = inbound
        .message()
        .await
        .map_err(|s| format!("{addr}: {}", s.message()))?
    {
        let response = answer(app, msg.request.unwrap_or_default()).await;
        tx.send(WorkerMessage {
            message: Some(Message::Response(response)),
        })
        .await
        .map_err(|_| "worker channel closed".to_string())?;
    }
    Ok(())
}

/// Runs `req` through this querier's HTTP API.
async fn answer(app: &Router, req: HttpRequest) -> HttpResponse {
    let mut builder = http::Request::builder()
        .method(req.method.as_str())
        .uri(req.url.as_str());
    for h in &req.headers {
        builder = builder.header(h.name.as_str(), h.value.as_str());
    }
    let request = match builder.body(Body::from(req.body)) {
        Ok(r) => r,
        Err(e) => {
            return HttpResponse {
                status: 400,
                headers: Vec::new(),
                body: format!("the query-frontend sent a malformed request: {e}").into(),
            };
        }
    };
    let response = match app.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let headers = crate::frontend::forwarded_headers(&parts.headers);
    match axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await {
        Ok(body) => HttpResponse {
            status: u32::from(parts.status.as_u16()),
            headers,
            body,
        },
        Err(e) => HttpResponse {
            status: 500,
            headers: Vec::new(),
            body: format!("the answer could not be sent back: {e}").into(),
        },
    }
}

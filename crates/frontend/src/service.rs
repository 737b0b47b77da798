//! The frontend's side of the workers' streams: a querier's worker opens
//! `Frontend.Process`, names its querier, and is sent one queued request
//! at a time; its answer goes to the waiting caller. A worker that goes
//! away with a request, or answers with a server error, has the request
//! queued again in front of its tenant's queue for another querier, up to
//! `max_retries` times.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use strata_proto::frontend::frontend_server::{Frontend as FrontendRpc, FrontendServer};
use strata_proto::frontend::worker_message::Message;
use strata_proto::frontend::{FrontendMessage, WorkerMessage};
use tonic::{Request, Response, Status, Streaming};

use crate::Frontend;
use crate::metrics::{CONNECTED_QUERIERS, QUEUE_LENGTH, QUEUE_SECONDS, RETRIES};
use crate::queue::Job;

/// Largest message either side accepts: an answer may be a large series list.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The gRPC service the queriers' workers connect to.
pub struct FrontendService {
    frontend: Arc<Frontend>,
}

impl FrontendService {
    /// The tonic server of `frontend`'s queue.
    pub fn server(frontend: Arc<Frontend>) -> FrontendServer<Self> {
        FrontendServer::new(Self { frontend })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Queues a job a querier failed again, or fails it when its retries are
/// used up.
fn retry(frontend: &Frontend, mut job: Job, querier: &str, reason: &'static str, why: String) {
    if job.attempts >= frontend.config().max_retries {
        let _ = job.respond.send(Err(format!(
            "the request failed on {} queriers, the last time: {why}",
            job.attempts + 1
        )));
        return;
    }
    RETRIES.with_label_values(&[reason]).inc();
    job.attempts += 1;
    job.failed_on.push(querier.to_string());
    frontend.queue().requeue(job);
}

#[tonic::async_trait]
impl FrontendRpc for FrontendService {
    type ProcessStream = BoxStream<FrontendMessage>;

    async fn process(
        &self,
        req: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let mut inbound = req.into_inner();
        let querier = match inbound.message().await? {
            Some(WorkerMessage {
                message: Some(Message::QuerierId(id)),
            }) if !id.is_empty() => id,
            _ => {
                return Err(Status::invalid_argument(
                    "a worker's first message names its querier",
                ));
            }
        };
        let frontend = self.frontend.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<FrontendMessage, Status>>(1);
        tokio::spawn(async move {
            let queue = frontend.queue().clone();
            queue.connect(&querier);
            CONNECTED_QUERIERS.set(queue.queriers() as i64);
            loop {
                let job = tokio::select! {
                    job = queue.next(&querier) => job,
                    _ = tx.closed() => break,
                };
                QUEUE_LENGTH.set(queue.len() as i64);
                if job.respond.is_closed() {
                    // Its caller gave up (timed out or went away).
                    continue;
                }
                if job.attempts == 0 {
                    QUEUE_SECONDS.observe(job.enqueued.elapsed().as_secs_f64());
                }
                let waited = job.enqueued.elapsed();
                let msg = FrontendMessage {
                    request: Some(job.request.clone()),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    retry(
                        &frontend,
                        job,
                        &querier,
                        "disconnected",
                        "the worker went away".into(),
                    );
                    break;
                }
                let answer =
                    tokio::time::timeout(frontend.config().timeout, inbound.message()).await;
                match answer {
                    Ok(Ok(Some(WorkerMessage {
                        message: Some(Message::Response(response)),
                    }))) => {
                        if response.status >= 500 {
                            let why = format!(
                                "querier {querier} answered {}: {}",
                                response.status,
                                String::from_utf8_lossy(&response.body)
                            );
                            if job.attempts < frontend.config().max_retries {
                                retry(&frontend, job, &querier, "server_error", why);
                                continue;
                            }
                        }
                        let mut response = response;
                        response.headers.push(strata_proto::frontend::Header {
                            name: crate::frontend::QUEUE_TIME_HEADER.into(),
                            value: format!("{:.6}", waited.as_secs_f64()),
                        });
                        let _ = job.respond.send(Ok(response));
                    }
                    Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                        retry(
                            &frontend,
                            job,
                            &querier,
                            "disconnected",
                            format!("querier {querier} went away while running it"),
                        );
                        break;
                    }
                }
            }
            queue.disconnect(&querier);
            CONNECTED_QUERIERS.set(queue.queriers() as i64);
        });
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        Ok(Response::new(Box::pin(stream)))
    }
}

//! The ingester's gRPC service: pushes from distributors and reads from
//! queriers, for metrics and logs. Each read answers the head (with cuts
//! still uploading) first, then the uploads the bucket index may not list
//! yet: a block leaves the head only after it joined the catalog, so the
//! pair never misses data.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Stream;
use strata_model::logs::{Direction, LogEntry};
use strata_model::{Labels, Sample};
use strata_proto::ingester::ingester_server::{Ingester as IngesterRpc, IngesterServer};
use strata_proto::ingester::{
    LabelValuesRequest, LabelsResponse, LogPushRequest, LogSelectRequest, LogSelectResponse,
    LogStream as PLogStream, LogStreamsRequest, LogStreamsResponse, Matchers, PushRequest,
    PushResponse, QueryRequest, QueryStreamResponse, SeriesRequest, SeriesResponse,
};
use strata_storage::BlockCatalog;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::logs::LogIngester;
use crate::{Ingester, IngesterError, PushLimits};
use strata_ingester_client::wire::{
    encode_blocks, filters_from_proto, labels_from_proto, matchers_from_proto, rejections_to_proto,
    samples_from_proto, series_to_proto, sizes_to_proto, stream_from_proto, stream_to_proto,
};
use strata_ingester_client::{MAX_MESSAGE_BYTES, ReasonName, Rejected, SERIES_PER_MESSAGE};

/// The ingesters this process serves: set once their WALs are replayed.
#[derive(Default)]
pub struct ServedIngesters {
    /// The metric ingester.
    pub metrics: OnceLock<Arc<Ingester>>,
    /// The log ingester.
    pub logs: OnceLock<Arc<LogIngester>>,
}

/// The ingester's gRPC service.
pub struct IngesterService {
    served: Arc<ServedIngesters>,
    catalog: Arc<BlockCatalog>,
    log_catalog: Arc<BlockCatalog>,
}

impl IngesterService {
    /// The tonic server for the ingesters `served` will hold once their
    /// WALs are replayed (UNAVAILABLE until then), whose uploads `catalog`
    /// and `log_catalog` record.
    pub fn server(
        served: Arc<ServedIngesters>,
        catalog: Arc<BlockCatalog>,
        log_catalog: Arc<BlockCatalog>,
    ) -> IngesterServer<Self> {
        IngesterServer::new(Self {
            served,
            catalog,
            log_catalog,
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Zstd)
    }

    fn metrics(&self) -> Result<Arc<Ingester>, Status> {
        self.served
            .metrics
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("ingester is starting (replaying its WAL)"))
    }

    fn logs(&self) -> Result<Arc<LogIngester>, Status> {
        self.served
            .logs
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("ingester is starting (replaying its log WAL)"))
    }
}

impl IngesterService {
    /// Label sets of the head's series matching any of `sets` with samples
    /// in `[start_ms, end_ms]`.
    async fn series_of(
        &self,
        tenant: &str,
        sets: &[Matchers],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<BTreeSet<Labels>, Status> {
        let alternatives = sets
            .iter()
            .map(|m| matchers_from_proto(&m.matchers))
            .collect::<Result<Vec<_>, _>>()?;
        let ingester = self.metrics()?;
        let tenant = tenant.to_string();
        tokio::task::spawn_blocking(move || {
            alternatives
                .iter()
                .flat_map(|m| ingester.series(&tenant, m, start_ms, end_ms))
                .collect()
        })
        .await
        .map_err(task_failed)
    }
}

/// Runs a read of the head off the async workers, then lists the blocks
/// the bucket index may not list yet, in this order: a block whose upload
/// finishes in between (its data leaving the head) is then in the list.
async fn read_head<T: Send + 'static>(
    catalog: &BlockCatalog,
    tenant: &str,
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<(T, Vec<bytes::Bytes>), Status> {
    let got = tokio::task::spawn_blocking(read)
        .await
        .map_err(task_failed)?;
    Ok((got, encode_blocks(&catalog.unindexed(tenant).await)))
}

fn status_of(e: IngesterError) -> Status {
    match e {
        IngesterError::ShuttingDown => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn task_failed(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("ingester task failed: {e}"))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A message of a streamed read: items, and in the first message the
/// blocks the bucket index may not list yet.
trait ReadMessage: Default + Send + 'static {
    fn set_recent(&mut self, blocks: Vec<bytes::Bytes>);
}

impl ReadMessage for QueryStreamResponse {
    fn set_recent(&mut self, blocks: Vec<bytes::Bytes>) {
        self.recent_blocks = blocks;
    }
}

impl ReadMessage for LogSelectResponse {
    fn set_recent(&mut self, blocks: Vec<bytes::Bytes>) {
        self.recent_blocks = blocks;
    }
}

/// Answers a streamed read of either signal: `read` runs as [`read_head`]
/// says, and its items go out in messages of at most
/// [`SERIES_PER_MESSAGE`] built by `message`, at least one message.
async fn streamed<I: Send + 'static, M: ReadMessage>(
    catalog: &BlockCatalog,
    tenant: &str,
    read: impl FnOnce() -> Vec<I> + Send + 'static,
    message: impl Fn(&[I]) -> M,
) -> Result<Response<BoxStream<M>>, Status> {
    let (items, recent) = read_head(catalog, tenant, read).await?;
    let mut messages: Vec<M> = items.chunks(SERIES_PER_MESSAGE).map(message).collect();
    if messages.is_empty() {
        messages.push(M::default());
    }
    messages[0].set_recent(recent);
    Ok(Response::new(Box::pin(futures::stream::iter(
        messages.into_iter().map(Ok),
    ))))
}

/// Runs a push of either signal off the async workers and answers with
/// its outcome (accepted count, rejections).
async fn pushed<R: ReasonName + Send + 'static>(
    push: impl FnOnce() -> Result<(usize, Vec<Rejected<R>>), IngesterError> + Send + 'static,
) -> Result<Response<PushResponse>, Status> {
    let (accepted, rejected) = tokio::task::spawn_blocking(push)
        .await
        .map_err(task_failed)?
        .map_err(status_of)?;
    Ok(Response::new(PushResponse {
        accepted: accepted as u64,
        rejected: rejections_to_proto(rejected),
    }))
}

#[tonic::async_trait]
impl IngesterRpc for IngesterService {
    async fn push(&self, req: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let req = req.into_inner();
        let span =
            tracing::debug_span!("grpc_push", tenant = %req.tenant, series = req.timeseries.len());
        let _e = span.enter();
        let batch: Vec<(Labels, Vec<Sample>)> = req
            .timeseries
            .into_iter()
            .map(|ts| {
                let samples = samples_from_proto(&ts.samples);
                (labels_from_proto(ts.labels), samples)
            })
            .collect();
        let limits = PushLimits {
            out_of_order_time_window: Duration::from_millis(
                req.out_of_order_time_window_ms.max(0) as u64
            ),
            max_series: req.max_series as usize,
        };
        let ingester = self.metrics()?;
        let tenant = req.tenant;
        pushed(move || {
            let o = ingester.push(&tenant, &batch, limits)?;
            Ok((o.accepted, o.rejected))
        })
        .await
    }

    type QueryStreamStream = BoxStream<QueryStreamResponse>;

    async fn query_stream(
        &self,
        req: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStreamStream>, Status> {
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
        let ingester = self.metrics()?;
        let tenant = req.tenant.clone();
        streamed(
            &self.catalog,
            &req.tenant,
            move || ingester.select(&tenant, &matchers, req.start_ms, req.end_ms),
            |chunk| QueryStreamResponse {
                series: chunk
                    .iter()
                    .map(|s| series_to_proto(&s.labels, &s.samples))
                    .collect(),
                ..Default::default()
            },
        )
        .await
    }

    async fn series(
        &self,
        req: Request<SeriesRequest>,
    ) -> Result<Response<SeriesResponse>, Status> {
        let req = req.into_inner();
        let series = self
            .series_of(&req.tenant, &req.matcher_sets, req.start_ms, req.end_ms)
            .await?;
        Ok(Response::new(SeriesResponse {
            series: series.iter().map(|l| series_to_proto(l, &[])).collect(),
            recent_blocks: encode_blocks(&self.catalog.unindexed(&req.tenant).await),
        }))
    }

    async fn label_names(
        &self,
        req: Request<SeriesRequest>,
    ) -> Result<Response<LabelsResponse>, Status> {
        let req = req.into_inner();
        let series = self
            .series_of(&req.tenant, &req.matcher_sets, req.start_ms, req.end_ms)
            .await?;
        let names: BTreeSet<&str> = series
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.as_str()))
            .collect();
        Ok(Response::new(LabelsResponse {
            values: names.into_iter().map(str::to_string).collect(),
            recent_blocks: encode_blocks(&self.catalog.unindexed(&req.tenant).await),
        }))
    }

    async fn label_values(
        &self,
        req: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelsResponse>, Status> {
        let req = req.into_inner();
        let series = self
            .series_of(&req.tenant, &req.matcher_sets, req.start_ms, req.end_ms)
            .await?;
        let values: BTreeSet<&str> = series.iter().filter_map(|l| l.get(&req.name)).collect();
        Ok(Response::new(LabelsResponse {
            values: values.into_iter().map(str::to_string).collect(),
            recent_blocks: encode_blocks(&self.catalog.unindexed(&req.tenant).await),
        }))
    }

    async fn push_logs(
        &self,
        req: Request<LogPushRequest>,
    ) -> Result<Response<PushResponse>, Status> {
        let req = req.into_inner();
        let span = tracing::debug_span!("grpc_push_logs", tenant = %req.tenant, streams = req.streams.len());
        let _e = span.enter();
        let batch: Vec<(Labels, Vec<LogEntry>)> =
            req.streams.into_iter().map(stream_from_proto).collect();
        let ingester = self.logs()?;
        let tenant = req.tenant;
        let max_streams = req.max_streams as usize;
        pushed(move || {
            let o = ingester.push(&tenant, batch, max_streams)?;
            Ok((o.accepted, o.rejected))
        })
        .await
    }

    type SelectLogsStream = BoxStream<LogSelectResponse>;

    async fn select_logs(
        &self,
        req: Request<LogSelectRequest>,
    ) -> Result<Response<Self::SelectLogsStream>, Status> {
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
        let filters = filters_from_proto(&req.line_filters)?;
        let limit = (req.limit > 0).then(|| {
            let dir = if req.backward {
                Direction::Backward
            } else {
                Direction::Forward
            };
            (req.limit as usize, dir)
        });
        let ingester = self.logs()?;
        let tenant = req.tenant.clone();
        if req.sizes_only {
            return streamed(
                &self.log_catalog,
                &req.tenant,
                move || ingester.select_sizes(&tenant, &matchers, req.start_ns, req.end_ns),
                |chunk| LogSelectResponse {
                    streams: chunk
                        .iter()
                        .map(|(labels, sizes)| sizes_to_proto(labels, sizes))
                        .collect(),
                    ..Default::default()
                },
            )
            .await;
        }
        streamed(
            &self.log_catalog,
            &req.tenant,
            move || {
                let (start, end) = (req.start_ns, req.end_ns);
                ingester.select(&tenant, &matchers, &filters, start, end, limit)
            },
            |chunk| LogSelectResponse {
                streams: chunk
                    .iter()
                    .map(|s| stream_to_proto(&s.labels, &s.entries))
                    .collect(),
                ..Default::default()
            },
        )
        .await
    }

    async fn log_streams(
        &self,
        req: Request<LogStreamsRequest>,
    ) -> Result<Response<LogStreamsResponse>, Status> {
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
        let ingester = self.logs()?;
        let tenant = req.tenant.clone();
        let (streams, recent_blocks) = read_head(&self.log_catalog, &req.tenant, move || {
            ingester.streams(&tenant, &matchers, req.start_ns, req.end_ns)
        })
        .await?;
        Ok(Response::new(LogStreamsResponse {
            streams: streams
                .iter()
                .map(|l| PLogStream {
                    labels: strata_ingester_client::wire::labels_to_proto(l),
                    entries: Vec::new(),
                })
                .collect(),
            recent_blocks,
        }))
    }
}

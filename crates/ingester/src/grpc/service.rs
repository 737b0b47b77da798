//! The ingester's gRPC service: pushes from distributors and reads from
//! queriers, one method per operation for both signals. Each read answers the head (with cuts
//! still uploading) first, then the uploads the bucket index may not list
//! yet: a block leaves the head only after it joined the catalog, so the
//! pair never misses data.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Stream;
use strata_model::logs::{Direction, LogEntry};
use strata_model::metadata::MetricMetadata;
use strata_model::{Exemplar, Labels};
use strata_proto::ingester::ingester_server::{Ingester as IngesterRpc, IngesterServer};
use strata_proto::ingester::push_request::Batch;
use strata_proto::ingester::{
    ExemplarsRequest, ExemplarsResponse, HeadStatsRequest, HeadStatsResponse, LabelValuesRequest,
    LabelsResponse, LogBatch, MetadataRequest, MetadataResponse, MetricBatch, PushRequest,
    PushResponse, SelectRequest, SelectResponse, SeriesRequest, SeriesResponse, Signal,
};
use strata_storage::BlockCatalog;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::logs::LogIngester;
use crate::{Ingester, IngesterError, MetricPush, PushLimits};
use strata_ingester_client::wire::{
    encode_blocks, exemplars_from_proto, exemplars_to_proto, filters_from_proto,
    head_stats_to_proto, matchers_from_proto, metadata_from_proto, metadata_to_proto,
    rejections_to_proto, series_to_proto, sizes_to_proto, stream_from_proto, stream_to_proto,
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
    /// Label sets of the head's series (or log streams) matching any of
    /// the request's alternatives with data in its time range, and the
    /// blocks the bucket index may not list yet (see [`read_head`]).
    async fn series_of(
        &self,
        req: &SeriesRequest,
    ) -> Result<(BTreeSet<Labels>, Vec<bytes::Bytes>), Status> {
        let alternatives = req
            .matcher_sets
            .iter()
            .map(|m| matchers_from_proto(&m.matchers))
            .collect::<Result<Vec<_>, _>>()?;
        let tenant = req.tenant.clone();
        let (start, end) = (req.start, req.end);
        match signal(req.signal)? {
            Signal::Metrics => {
                let ingester = self.metrics()?;
                read_head(&self.catalog, &req.tenant, move || {
                    alternatives
                        .iter()
                        .flat_map(|m| ingester.series(&tenant, m, start, end))
                        .collect()
                })
                .await
            }
            Signal::Logs => {
                let ingester = self.logs()?;
                read_head(&self.log_catalog, &req.tenant, move || {
                    alternatives
                        .iter()
                        .flat_map(|m| ingester.streams(&tenant, m, start, end))
                        .collect()
                })
                .await
            }
        }
    }

    async fn push_metrics(
        &self,
        tenant: String,
        batch: MetricBatch,
    ) -> Result<Response<PushResponse>, Status> {
        let span =
            tracing::debug_span!("grpc_push", tenant = %tenant, series = batch.timeseries.len());
        let _e = span.enter();
        // Read in place: one buffer of label text for the whole push.
        let series = strata_ingester_client::series_wire::series_batch(
            batch.timeseries.iter().map(|ts| ts.as_ref()),
        )
        .map_err(|e| Status::invalid_argument(format!("push of tenant {tenant:?}: {e}")))?;
        let metadata: Vec<MetricMetadata> = batch
            .metadata
            .into_iter()
            .map(metadata_from_proto)
            .collect();
        let exemplars: Vec<(Labels, Exemplar)> = batch
            .exemplars
            .into_iter()
            .flat_map(|ts| {
                let (series, exemplars) = exemplars_from_proto(ts);
                exemplars.into_iter().map(move |e| (series.clone(), e))
            })
            .collect();
        let limits = PushLimits {
            out_of_order_time_window: Duration::from_millis(
                batch.out_of_order_time_window_ms.max(0) as u64,
            ),
            max_series: batch.max_series as usize,
            max_metadata: batch.max_metadata as usize,
            max_metadata_per_metric: batch.max_metadata_per_metric as usize,
            max_exemplars: batch.max_exemplars as usize,
        };
        let ingester = self.metrics()?;
        pushed(move || {
            let push = MetricPush {
                series: &series,
                metadata: &metadata,
                exemplars: &exemplars,
            };
            let o = ingester.write(&tenant, push, limits)?;
            Ok((o.accepted, o.rejected))
        })
        .await
    }

    async fn push_logs(
        &self,
        tenant: String,
        batch: LogBatch,
    ) -> Result<Response<PushResponse>, Status> {
        let span =
            tracing::debug_span!("grpc_push_logs", tenant = %tenant, streams = batch.streams.len());
        let _e = span.enter();
        let streams: Vec<(Labels, Vec<LogEntry>)> =
            batch.streams.into_iter().map(stream_from_proto).collect();
        let ingester = self.logs()?;
        let max_streams = batch.max_streams as usize;
        pushed(move || {
            let o = ingester.push(&tenant, streams, max_streams)?;
            Ok((o.accepted, o.rejected))
        })
        .await
    }

    async fn select_logs(
        &self,
        req: SelectRequest,
    ) -> Result<Response<BoxStream<SelectResponse>>, Status> {
        let matchers = matchers_from_proto(&req.matchers)?;
        let opts = req.logs.unwrap_or_default();
        let filters = filters_from_proto(&opts.line_filters)?;
        let limit = (opts.limit > 0).then(|| {
            let dir = if opts.backward {
                Direction::Backward
            } else {
                Direction::Forward
            };
            (opts.limit as usize, dir)
        });
        let ingester = self.logs()?;
        let tenant = req.tenant.clone();
        let (start, end) = (req.start, req.end);
        if opts.sizes_only {
            return streamed(
                &self.log_catalog,
                &req.tenant,
                move || ingester.select_sizes(&tenant, &matchers, start, end),
                |chunk| SelectResponse {
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
            move || ingester.select(&tenant, &matchers, &filters, start, end, limit),
            |chunk| SelectResponse {
                streams: chunk
                    .iter()
                    .map(|s| stream_to_proto(&s.labels, &s.entries))
                    .collect(),
                ..Default::default()
            },
        )
        .await
    }
}

/// The signal a request names.
fn signal(value: i32) -> Result<Signal, Status> {
    Signal::try_from(value).map_err(|_| Status::invalid_argument(format!("unknown signal {value}")))
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

/// Answers a streamed read of either signal: `read` runs as [`read_head`]
/// says, and its items go out in messages of at most
/// [`SERIES_PER_MESSAGE`] built by `message`, at least one message.
async fn streamed<I: Send + 'static>(
    catalog: &BlockCatalog,
    tenant: &str,
    read: impl FnOnce() -> Vec<I> + Send + 'static,
    message: impl Fn(&[I]) -> SelectResponse,
) -> Result<Response<BoxStream<SelectResponse>>, Status> {
    let (items, recent) = read_head(catalog, tenant, read).await?;
    let mut messages: Vec<SelectResponse> = items.chunks(SERIES_PER_MESSAGE).map(message).collect();
    if messages.is_empty() {
        messages.push(SelectResponse::default());
    }
    messages[0].recent_blocks = recent;
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
        match req.batch {
            Some(Batch::Metrics(batch)) => self.push_metrics(req.tenant, batch).await,
            Some(Batch::Logs(batch)) => self.push_logs(req.tenant, batch).await,
            None => Err(Status::invalid_argument("push without a batch")),
        }
    }

    async fn metric_metadata(
        &self,
        req: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let req = req.into_inner();
        let ingester = self.metrics()?;
        let metadata = tokio::task::spawn_blocking(move || {
            let metric = (!req.metric.is_empty()).then_some(req.metric.as_str());
            ingester.metadata(&req.tenant, metric)
        })
        .await
        .map_err(task_failed)?;
        Ok(Response::new(MetadataResponse {
            metadata: metadata.iter().map(metadata_to_proto).collect(),
        }))
    }

    async fn head_stats(
        &self,
        req: Request<HeadStatsRequest>,
    ) -> Result<Response<HeadStatsResponse>, Status> {
        let req = req.into_inner();
        let ingester = self.metrics()?;
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let stats = tokio::task::spawn_blocking(move || ingester.head_stats(&req.tenant, limit))
            .await
            .map_err(task_failed)?;
        Ok(Response::new(head_stats_to_proto(stats)))
    }

    async fn query_exemplars(
        &self,
        req: Request<ExemplarsRequest>,
    ) -> Result<Response<ExemplarsResponse>, Status> {
        let req = req.into_inner();
        let alternatives = req
            .matcher_sets
            .iter()
            .map(|m| matchers_from_proto(&m.matchers))
            .collect::<Result<Vec<_>, _>>()?;
        let ingester = self.metrics()?;
        let found = tokio::task::spawn_blocking(move || {
            ingester.exemplars(&req.tenant, &alternatives, req.start_ms, req.end_ms)
        })
        .await
        .map_err(task_failed)?;
        Ok(Response::new(ExemplarsResponse {
            series: found
                .iter()
                .map(|(series, exemplars)| exemplars_to_proto(series, exemplars))
                .collect(),
        }))
    }

    type SelectStream = BoxStream<SelectResponse>;

    async fn select(
        &self,
        req: Request<SelectRequest>,
    ) -> Result<Response<Self::SelectStream>, Status> {
        let req = req.into_inner();
        if signal(req.signal)? == Signal::Logs {
            return self.select_logs(req).await;
        }
        let matchers = matchers_from_proto(&req.matchers)?;
        let ingester = self.metrics()?;
        let tenant = req.tenant.clone();
        let (start, end) = (req.start, req.end);
        streamed(
            &self.catalog,
            &req.tenant,
            move || ingester.select(&tenant, &matchers, start, end),
            |chunk| SelectResponse {
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
        let (series, recent_blocks) = self.series_of(req.get_ref()).await?;
        Ok(Response::new(SeriesResponse {
            series: series.iter().map(|l| series_to_proto(l, &[])).collect(),
            recent_blocks,
        }))
    }

    async fn label_names(
        &self,
        req: Request<SeriesRequest>,
    ) -> Result<Response<LabelsResponse>, Status> {
        let (series, recent_blocks) = self.series_of(req.get_ref()).await?;
        let names: BTreeSet<&str> = series
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.as_str()))
            .collect();
        Ok(Response::new(LabelsResponse {
            values: names.into_iter().map(str::to_string).collect(),
            recent_blocks,
        }))
    }

    async fn label_values(
        &self,
        req: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelsResponse>, Status> {
        let req = req.into_inner();
        let series_req = req.series.unwrap_or_default();
        let (series, recent_blocks) = self.series_of(&series_req).await?;
        let values: BTreeSet<&str> = series.iter().filter_map(|l| l.get(&req.name)).collect();
        Ok(Response::new(LabelsResponse {
            values: values.into_iter().map(str::to_string).collect(),
            recent_blocks,
        }))
    }
}

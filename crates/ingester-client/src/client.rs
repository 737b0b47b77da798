//! [`IngesterClient`]: pushes and reads against one ingester, in-process
//! or remote; [`IngesterPool`]: one client per ring instance.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_model::head_stats::HeadStats;
use strata_model::logs::{Direction, EntrySize, LineFilter, LogEntry, LogStream};
use strata_model::metadata::MetricMetadata;
use strata_model::{Exemplar, Labels, Matcher, SeriesBatch, SeriesSamples};
use strata_proto::ingester::ingester_client::IngesterClient as GrpcClient;
use strata_proto::ingester::push_request::Batch;
use strata_proto::ingester::{
    ExemplarsRequest, HeadStatsRequest, LabelValuesRequest, LogBatch, LogSelect as PLogSelect,
    LogStream as PLogStream, Matchers, MetadataRequest, MetricBatch, PushRequest, SelectRequest,
    SeriesRequest, Signal,
};
use strata_storage::BlockMeta;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A connection to an ingester whose calls carry the caller's trace context.
type Transport = InterceptedService<Channel, strata_telemetry::InjectTraceContext>;
use tonic::{Request, Status};

use crate::outcome::{LogPushOutcome, PushLimits, PushOutcome, Rejected};
use crate::rawpush::{self, EncodedSeries};
use crate::wire::{
    decode_blocks, exemplars_from_proto, exemplars_to_proto, filters_to_proto,
    head_stats_from_proto, labels_from_proto, matchers_to_proto, metadata_from_proto,
    metadata_to_proto, rejections_from_proto, samples_from_proto, sizes_from_proto,
    stream_from_proto, stream_to_proto,
};
use crate::{ClientError, LocalIngesters, MAX_MESSAGE_BYTES};

/// A pushed batch of series shared by all replicas' requests.
pub type SharedBatch = Arc<SeriesBatch>;
/// Pushed metric metadata shared by all replicas' requests, each entry
/// under the series name its family hashes as.
pub type SharedMetadata = Arc<Vec<(Labels, MetricMetadata)>>;
/// Pushes items of one kind to this process's head: what
/// `IngesterClient::push_alongside` calls in-process.
type LocalPush<T> = fn(&dyn LocalIngesters, &str, &[T], PushLimits) -> Result<(), ClientError>;
/// Pushed exemplars shared by all replicas' requests, each with its series.
pub type SharedExemplars = Arc<Vec<(Labels, Exemplar)>>;
/// A pushed batch of log streams shared by all replicas' requests.
pub type SharedLogBatch = Arc<Vec<(Labels, Vec<LogEntry>)>>;

/// What a log read selects.
#[derive(Debug, Clone)]
pub struct LogSelect<'a> {
    /// Stream matchers.
    pub matchers: &'a [Matcher],
    /// Line filters every returned entry passes.
    pub filters: &'a [LineFilter],
    /// Inclusive start, ns.
    pub start_ns: i64,
    /// Exclusive end, ns.
    pub end_ns: i64,
    /// Most entries per stream from the given end.
    pub limit: Option<(usize, Direction)>,
}

/// A metadata read (see [`IngesterClient::metadata`]).
#[derive(Debug, Clone, Copy)]
pub enum Metadata<'a> {
    /// Label sets.
    Series,
    /// Label names.
    LabelNames,
    /// Values of the named label.
    LabelValues(&'a str),
}

/// The answer to a [`Metadata`] read.
#[derive(Debug)]
pub enum MetadataAnswer {
    /// Label sets.
    Series(Vec<Labels>),
    /// Sorted distinct names or values.
    Values(Vec<String>),
}

/// How a distributor or querier reaches one ingester.
#[derive(Clone)]
pub enum IngesterClient {
    /// The ingesters of this process.
    Local(Arc<dyn LocalIngesters>),
    /// An ingester in another process.
    Remote(Arc<RemoteIngester>),
}

/// A pooled gRPC client of an ingester in another process.
pub struct RemoteIngester {
    addr: String,
    client: GrpcClient<Transport>,
    channel: Transport,
    push_timeout: Duration,
    compression: Option<CompressionEncoding>,
}

impl RemoteIngester {
    fn status(&self, s: Status) -> ClientError {
        ClientError::from_status(&self.addr, s)
    }

    /// The streams of a log `Select` answer (entry sizes only when
    /// `sizes_only`) and the blocks it lists.
    async fn select_logs(
        &self,
        tenant: &str,
        sel: &LogSelect<'_>,
        sizes_only: bool,
    ) -> Result<(Vec<PLogStream>, Vec<BlockMeta>), ClientError> {
        let (limit, backward) = match sel.limit {
            Some((n, d)) => (n as u64, d == Direction::Backward),
            None => (0, false),
        };
        let mut stream = self
            .client()
            .select(SelectRequest {
                tenant: tenant.to_string(),
                signal: Signal::Logs.into(),
                start: sel.start_ns,
                end: sel.end_ns,
                matchers: matchers_to_proto(sel.matchers),
                logs: Some(PLogSelect {
                    line_filters: filters_to_proto(sel.filters),
                    limit,
                    backward,
                    sizes_only,
                }),
            })
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        let mut streams = Vec::new();
        let mut blocks = Vec::new();
        while let Some(msg) = stream.message().await.map_err(|s| self.status(s))? {
            blocks.extend(decode_blocks(&self.addr, &msg.recent_blocks)?);
            streams.extend(msg.streams);
        }
        Ok((streams, blocks))
    }

    fn client(&self) -> GrpcClient<Transport> {
        self.client.clone()
    }

    fn push_request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(self.push_timeout);
        req
    }
}

/// The items of `batch` at `indexes` (all of it, borrowed, when they cover it).
fn subset<T: Clone>(batch: &Arc<Vec<T>>, indexes: &[u32]) -> Option<Vec<T>> {
    (indexes.len() != batch.len())
        .then(|| indexes.iter().map(|i| batch[*i as usize].clone()).collect())
}

/// Maps rejections of a sub-batch back to positions in the whole batch.
fn remap<R>(rejected: &mut [Rejected<R>], indexes: &[u32], whole: bool) {
    if !whole {
        for r in rejected {
            r.index = indexes[r.index] as usize;
        }
    }
}

impl IngesterClient {
    /// Pushes the series of `batch` at `indexes`; rejections name positions
    /// in `batch`. `encoded` caches the series' encodings for all replicas.
    pub async fn push(
        &self,
        tenant: &str,
        batch: &SharedBatch,
        encoded: &EncodedSeries,
        indexes: &[u32],
        limits: PushLimits,
    ) -> Result<PushOutcome, ClientError> {
        match self {
            Self::Local(local) => {
                let ingester = local.clone();
                let tenant = tenant.to_string();
                let batch = batch.clone();
                let sub = (indexes.len() != batch.len()).then(|| batch.select(indexes));
                let whole = sub.is_none();
                let mut outcome = tokio::task::spawn_blocking(move || match &sub {
                    Some(s) => ingester.push(&tenant, s, limits),
                    None => ingester.push(&tenant, &batch, limits),
                })
                .await
                .map_err(ClientError::task)??;
                remap(&mut outcome.rejected, indexes, whole);
                Ok(outcome)
            }
            Self::Remote(r) => {
                let body = rawpush::push_request(tenant, batch, encoded, indexes, limits);
                let mut grpc = tonic::client::Grpc::new(r.channel.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
                    .accept_compressed(CompressionEncoding::Zstd);
                if let Some(c) = r.compression {
                    grpc = grpc.send_compressed(c);
                }
                grpc.ready().await.map_err(|e| ClientError::Unavailable {
                    addr: r.addr.clone(),
                    message: e.to_string(),
                })?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                    "/strata.ingester.v1.Ingester/Push",
                );
                let resp = grpc
                    .unary(r.push_request(body), path, rawpush::RawPushCodec)
                    .await
                    .map_err(|s| r.status(s))?
                    .into_inner();
                Ok(PushOutcome {
                    accepted: resp.accepted as usize,
                    rejected: rejections_from_proto(resp.rejected, indexes),
                })
            }
        }
    }

    /// Pushes the metric metadata of `batch` at `indexes` under the
    /// metadata limits of `limits`.
    pub async fn push_metadata(
        &self,
        tenant: &str,
        batch: &SharedMetadata,
        indexes: &[u32],
        limits: PushLimits,
    ) -> Result<(), ClientError> {
        let metadata: Vec<MetricMetadata> = indexes
            .iter()
            .map(|i| batch[*i as usize].1.clone())
            .collect();
        self.push_alongside(
            tenant,
            metadata,
            limits,
            |local, tenant, items, limits| local.push_metadata(tenant, items, limits),
            |items| MetricBatch {
                metadata: items.iter().map(metadata_to_proto).collect(),
                max_metadata: limits.max_metadata as u64,
                max_metadata_per_metric: limits.max_metadata_per_metric as u64,
                ..Default::default()
            },
        )
        .await
    }

    /// Pushes the exemplars of `batch` at `indexes` under the exemplar
    /// limit of `limits`.
    pub async fn push_exemplars(
        &self,
        tenant: &str,
        batch: &SharedExemplars,
        indexes: &[u32],
        limits: PushLimits,
    ) -> Result<(), ClientError> {
        let exemplars: Vec<(Labels, Exemplar)> =
            indexes.iter().map(|i| batch[*i as usize].clone()).collect();
        self.push_alongside(
            tenant,
            exemplars,
            limits,
            |local, tenant, items, limits| local.push_exemplars(tenant, items, limits),
            |items| MetricBatch {
                exemplars: items
                    .iter()
                    .map(|(series, e)| exemplars_to_proto(series, [e]))
                    .collect(),
                max_exemplars: limits.max_exemplars as u64,
                ..Default::default()
            },
        )
        .await
    }

    /// A push of what travels alongside series (metadata, exemplars): to
    /// this process's head with `local`, or as the metric batch `remote`
    /// builds. The head reports no per-item outcome for these.
    async fn push_alongside<T: Send + Sync + 'static>(
        &self,
        tenant: &str,
        items: Vec<T>,
        limits: PushLimits,
        local: LocalPush<T>,
        remote: impl FnOnce(&[T]) -> MetricBatch,
    ) -> Result<(), ClientError> {
        match self {
            Self::Local(ingesters) => {
                let ingesters = ingesters.clone();
                let tenant = tenant.to_string();
                tokio::task::spawn_blocking(move || local(&*ingesters, &tenant, &items, limits))
                    .await
                    .map_err(ClientError::task)?
            }
            Self::Remote(r) => {
                let req = PushRequest {
                    tenant: tenant.to_string(),
                    batch: Some(Batch::Metrics(remote(&items))),
                };
                r.client()
                    .push(r.push_request(req))
                    .await
                    .map_err(|s| r.status(s))?;
                Ok(())
            }
        }
    }

    /// The ingester's head cardinality of the tenant, each list cut to `limit`.
    pub async fn head_stats(&self, tenant: &str, limit: usize) -> Result<HeadStats, ClientError> {
        match self {
            Self::Local(local) => Ok(local.head_stats(tenant, limit)),
            Self::Remote(r) => {
                let resp = r
                    .client()
                    .head_stats(HeadStatsRequest {
                        tenant: tenant.to_string(),
                        limit: limit as u64,
                    })
                    .await
                    .map_err(|s| r.status(s))?
                    .into_inner();
                Ok(head_stats_from_proto(resp))
            }
        }
    }

    /// The ingester's exemplars in `[start, end]` (ms) of the tenant's
    /// series matching any of `alternatives`.
    pub async fn exemplars(
        &self,
        tenant: &str,
        alternatives: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, ClientError> {
        match self {
            Self::Local(local) => Ok(local.exemplars(tenant, alternatives, start, end)),
            Self::Remote(r) => {
                let resp = r
                    .client()
                    .query_exemplars(ExemplarsRequest {
                        tenant: tenant.to_string(),
                        start_ms: start,
                        end_ms: end,
                        matcher_sets: alternatives
                            .iter()
                            .map(|m| Matchers {
                                matchers: matchers_to_proto(m),
                            })
                            .collect(),
                    })
                    .await
                    .map_err(|s| r.status(s))?
                    .into_inner();
                Ok(resp.series.into_iter().map(exemplars_from_proto).collect())
            }
        }
    }

    /// The ingester's metric metadata of the tenant (of `metric` only, when given).
    pub async fn metric_metadata(
        &self,
        tenant: &str,
        metric: Option<&str>,
    ) -> Result<Vec<MetricMetadata>, ClientError> {
        match self {
            Self::Local(local) => Ok(local.metric_metadata(tenant, metric)),
            Self::Remote(r) => {
                let resp = r
                    .client()
                    .metric_metadata(MetadataRequest {
                        tenant: tenant.to_string(),
                        metric: metric.unwrap_or_default().to_string(),
                    })
                    .await
                    .map_err(|s| r.status(s))?
                    .into_inner();
                Ok(resp.metadata.into_iter().map(metadata_from_proto).collect())
            }
        }
    }

    /// Pushes the log streams of `batch` at `indexes` under a stream limit.
    pub async fn push_logs(
        &self,
        tenant: &str,
        batch: &SharedLogBatch,
        indexes: &[u32],
        max_streams: usize,
    ) -> Result<LogPushOutcome, ClientError> {
        match self {
            Self::Local(local) => {
                let ingester = local.clone();
                let tenant = tenant.to_string();
                let sub = subset(batch, indexes);
                let whole = sub.is_none();
                let streams = sub.unwrap_or_else(|| batch.as_ref().clone());
                let mut outcome = tokio::task::spawn_blocking(move || {
                    ingester.push_logs(&tenant, streams, max_streams)
                })
                .await
                .map_err(ClientError::task)??;
                remap(&mut outcome.rejected, indexes, whole);
                Ok(outcome)
            }
            Self::Remote(r) => {
                let req = PushRequest {
                    tenant: tenant.to_string(),
                    batch: Some(Batch::Logs(LogBatch {
                        streams: indexes
                            .iter()
                            .map(|i| {
                                let (l, e) = &batch[*i as usize];
                                stream_to_proto(l, e)
                            })
                            .collect(),
                        max_streams: max_streams as u64,
                    })),
                };
                let resp = r
                    .client()
                    .push(r.push_request(req))
                    .await
                    .map_err(|s| r.status(s))?
                    .into_inner();
                Ok(LogPushOutcome {
                    accepted: resp.accepted as usize,
                    rejected: rejections_from_proto(resp.rejected, indexes),
                })
            }
        }
    }

    /// Samples of matching series in `[min_t, max_t]`, and the ingester's
    /// uploaded blocks the bucket index may not list yet.
    pub async fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<(Vec<SeriesSamples>, Vec<BlockMeta>), ClientError> {
        match self {
            // The querier shares this process's catalog, uploads included.
            Self::Local(local) => Ok((local.select(tenant, matchers, min_t, max_t), Vec::new())),
            Self::Remote(r) => {
                let mut stream = r
                    .client()
                    .select(SelectRequest {
                        tenant: tenant.to_string(),
                        signal: Signal::Metrics.into(),
                        start: min_t,
                        end: max_t,
                        matchers: matchers_to_proto(matchers),
                        logs: None,
                    })
                    .await
                    .map_err(|s| r.status(s))?
                    .into_inner();
                let mut series = Vec::new();
                let mut blocks = Vec::new();
                while let Some(msg) = stream.message().await.map_err(|s| r.status(s))? {
                    blocks.extend(decode_blocks(&r.addr, &msg.recent_blocks)?);
                    for ts in msg.series {
                        let samples = samples_from_proto(&ts.samples);
                        series.push(SeriesSamples {
                            labels: labels_from_proto(ts.labels),
                            samples,
                        });
                    }
                }
                Ok((series, blocks))
            }
        }
    }

    /// What a metadata read asks of one ingester: label sets, label names,
    /// or the values of one label, of the head's series matching any of
    /// `alternatives` with samples in `[min_t, max_t]`.
    pub async fn metadata(
        &self,
        tenant: &str,
        what: &Metadata<'_>,
        alternatives: &[Vec<Matcher>],
        min_t: i64,
        max_t: i64,
    ) -> Result<(MetadataAnswer, Vec<BlockMeta>), ClientError> {
        match self {
            Self::Local(local) => {
                let series: BTreeSet<Labels> = alternatives
                    .iter()
                    .flat_map(|m| local.series(tenant, m, min_t, max_t))
                    .collect();
                let answer = match what {
                    Metadata::Series => MetadataAnswer::Series(series.into_iter().collect()),
                    Metadata::LabelNames => MetadataAnswer::Values(
                        series
                            .iter()
                            .flat_map(|l| l.iter().map(|l| l.name.clone()))
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect(),
                    ),
                    Metadata::LabelValues(name) => MetadataAnswer::Values(
                        series
                            .iter()
                            .filter_map(|l| l.get(name).map(str::to_string))
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect(),
                    ),
                };
                Ok((answer, Vec::new()))
            }
            Self::Remote(r) => {
                let matcher_sets: Vec<Matchers> = alternatives
                    .iter()
                    .map(|m| Matchers {
                        matchers: matchers_to_proto(m),
                    })
                    .collect();
                let req = SeriesRequest {
                    tenant: tenant.to_string(),
                    signal: Signal::Metrics.into(),
                    start: min_t,
                    end: max_t,
                    matcher_sets,
                };
                let mut client = r.client();
                let (answer, blocks) = match what {
                    Metadata::Series => {
                        let resp = client
                            .series(req)
                            .await
                            .map_err(|s| r.status(s))?
                            .into_inner();
                        let series = resp
                            .series
                            .into_iter()
                            .map(|ts| labels_from_proto(ts.labels))
                            .collect();
                        (MetadataAnswer::Series(series), resp.recent_blocks)
                    }
                    Metadata::LabelNames => {
                        let resp = client
                            .label_names(req)
                            .await
                            .map_err(|s| r.status(s))?
                            .into_inner();
                        (MetadataAnswer::Values(resp.values), resp.recent_blocks)
                    }
                    Metadata::LabelValues(name) => {
                        let resp = client
                            .label_values(LabelValuesRequest {
                                series: Some(req),
                                name: name.to_string(),
                            })
                            .await
                            .map_err(|s| r.status(s))?
                            .into_inner();
                        (MetadataAnswer::Values(resp.values), resp.recent_blocks)
                    }
                };
                Ok((answer, decode_blocks(&r.addr, &blocks)?))
            }
        }
    }

    /// Log entries of a selection from the head, and the log blocks the
    /// bucket index may not list yet.
    pub async fn select_logs(
        &self,
        tenant: &str,
        sel: &LogSelect<'_>,
    ) -> Result<(Vec<LogStream>, Vec<BlockMeta>), ClientError> {
        match self {
            Self::Local(local) => Ok((
                local.select_logs(
                    tenant,
                    sel.matchers,
                    sel.filters,
                    sel.start_ns,
                    sel.end_ns,
                    sel.limit,
                ),
                Vec::new(),
            )),
            Self::Remote(r) => {
                let (streams, blocks) = r.select_logs(tenant, sel, false).await?;
                let streams = streams
                    .into_iter()
                    .map(|s| {
                        let (labels, entries) = stream_from_proto(s);
                        LogStream { labels, entries }
                    })
                    .collect();
                Ok((streams, blocks))
            }
        }
    }

    /// Sizes of a selection's entries in the head (its line filters and
    /// limit ignored), without lines crossing the wire, and the log blocks
    /// the bucket index may not list yet.
    pub async fn select_log_sizes(
        &self,
        tenant: &str,
        sel: &LogSelect<'_>,
    ) -> Result<(Vec<(Labels, Vec<EntrySize>)>, Vec<BlockMeta>), ClientError> {
        match self {
            Self::Local(local) => Ok((
                local.select_log_sizes(tenant, sel.matchers, sel.start_ns, sel.end_ns),
                Vec::new(),
            )),
            Self::Remote(r) => {
                let (streams, blocks) = r.select_logs(tenant, sel, true).await?;
                Ok((streams.into_iter().map(sizes_from_proto).collect(), blocks))
            }
        }
    }

    /// Label sets of matching log streams with entries in `[start_ns, end_ns)`.
    pub async fn log_streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<(Vec<Labels>, Vec<BlockMeta>), ClientError> {
        match self {
            Self::Local(local) => Ok((
                local.log_streams(tenant, matchers, start_ns, end_ns),
                Vec::new(),
            )),
            Self::Remote(r) => {
                let resp = r
                    .client()
                    .series(SeriesRequest {
                        tenant: tenant.to_string(),
                        signal: Signal::Logs.into(),
                        start: start_ns,
                        end: end_ns,
                        matcher_sets: vec![Matchers {
                            matchers: matchers_to_proto(matchers),
                        }],
                    })
                    .await
                    .map_err(|s| r.status(s))?
                    .into_inner();
                Ok((
                    resp.series
                        .into_iter()
                        .map(|s| labels_from_proto(s.labels))
                        .collect(),
                    decode_blocks(&r.addr, &resp.recent_blocks)?,
                ))
            }
        }
    }
}

/// Clients of every ingester by ring instance id, with this process's own
/// ingesters (when it runs them) called directly.
pub struct IngesterPool {
    local: Option<(String, IngesterClient)>,
    remote: Mutex<HashMap<String, (String, IngesterClient)>>,
    timeout: Duration,
    push_timeout: Duration,
    compression: Option<CompressionEncoding>,
}

impl IngesterPool {
    /// A pool; `local` is this process's instance id and ingesters, if any.
    /// Reads may take `timeout`, pushes `push_timeout`; `compression` is
    /// `""` or `"zstd"`.
    pub fn new(
        local: Option<(String, Arc<dyn LocalIngesters>)>,
        timeout: Duration,
        push_timeout: Duration,
        compression: &str,
    ) -> Result<Self, String> {
        let compression = match compression {
            "" | "none" => None,
            "zstd" => Some(CompressionEncoding::Zstd),
            other => {
                return Err(format!(
                    "unsupported gRPC compression {other:?} (use \"zstd\" or \"\")"
                ));
            }
        };
        Ok(Self {
            local: local.map(|(id, ingesters)| (id, IngesterClient::Local(ingesters))),
            remote: Mutex::new(HashMap::new()),
            timeout,
            push_timeout,
            compression,
        })
    }

    /// The client of instance `id` at gRPC address `addr`.
    pub fn client(&self, id: &str, addr: &str) -> Result<IngesterClient, ClientError> {
        if let Some((local_id, c)) = &self.local
            && local_id == id
        {
            return Ok(c.clone());
        }
        let mut pool = self.remote.lock();
        if let Some((a, c)) = pool.get(id)
            && a == addr
        {
            return Ok(c.clone());
        }
        // With the process's gRPC client TLS, when set.
        let endpoint =
            strata_proto::transport::endpoint(addr, Duration::from_secs(2), self.timeout).map_err(
                |message| ClientError::Failed {
                    addr: addr.to_string(),
                    message,
                },
            )?;
        let channel = InterceptedService::new(
            endpoint.connect_lazy(),
            strata_telemetry::InjectTraceContext,
        );
        let mut client = GrpcClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Zstd);
        if let Some(c) = self.compression {
            client = client.send_compressed(c);
        }
        let c = IngesterClient::Remote(Arc::new(RemoteIngester {
            addr: addr.to_string(),
            client,
            channel,
            push_timeout: self.push_timeout,
            compression: self.compression,
        }));
        pool.insert(id.to_string(), (addr.to_string(), c.clone()));
        Ok(c)
    }
}

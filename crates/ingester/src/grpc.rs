//! The ingester over gRPC: the service other processes call (push from
//! distributors, reads from queriers) and [`IngesterClient`], the one way
//! distributors and queriers reach an ingester: in-process when it runs in
//! the same process (no encoding), over a pooled tonic channel otherwise.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Stream;
use parking_lot::Mutex;
use promql_parser::parser::token::{T_EQL, T_EQL_REGEX, T_NEQ, T_NEQ_REGEX};
use strata_model::{Label, Labels, MatchOp, Matcher, Sample, SeriesSamples};
use strata_proto::ingester::ingester_client::IngesterClient as GrpcClient;
use strata_proto::ingester::ingester_server::{Ingester as IngesterRpc, IngesterServer};
use strata_proto::ingester::label_matcher::Type as MatcherType;
use strata_proto::ingester::{
    LabelMatcher, PushRequest, PushResponse, QueryRequest, QueryStreamResponse, Rejection,
    SeriesRequest, SeriesResponse,
};
use strata_proto::prometheus::{Label as PLabel, Sample as PSample, TimeSeries};
use strata_storage::{BlockCatalog, BlockMeta};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::{Ingester, IngesterError, PushLimits, PushOutcome, RejectReason, Rejected};

/// Largest gRPC message either side accepts (a push of a large remote-write
/// batch, or a query stream message).
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Series per query-stream message: bounded messages, streamed as they go.
const SERIES_PER_MESSAGE: usize = 512;

/// Why a call to an ingester failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The ingester could not be reached or is shutting down.
    #[error("ingester {addr} unavailable: {message}")]
    Unavailable {
        /// Its address.
        addr: String,
        /// What happened.
        message: String,
    },
    /// The ingester failed the call.
    #[error("ingester {addr} failed: {message}")]
    Failed {
        /// Its address.
        addr: String,
        /// What happened.
        message: String,
    },
}

impl ClientError {
    fn from_status(addr: &str, s: Status) -> Self {
        let message = s.message().to_string();
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                Self::Unavailable {
                    addr: addr.to_string(),
                    message,
                }
            }
            _ => Self::Failed {
                addr: addr.to_string(),
                message,
            },
        }
    }

    fn local(e: IngesterError) -> Self {
        match e {
            IngesterError::ShuttingDown => Self::Unavailable {
                addr: "local".into(),
                message: e.to_string(),
            },
            other => Self::Failed {
                addr: "local".into(),
                message: other.to_string(),
            },
        }
    }
}

/// A pushed batch shared by all replicas' requests.
pub type SharedBatch = Arc<Vec<(Labels, Vec<Sample>)>>;

/// Matchers as the wire carries them.
pub fn matchers_to_proto(matchers: &[Matcher]) -> Vec<LabelMatcher> {
    matchers
        .iter()
        .map(|m| {
            let (t, value) = match &m.op {
                MatchOp::Equal => (MatcherType::Eq, m.value.clone()),
                MatchOp::NotEqual => (MatcherType::Neq, m.value.clone()),
                MatchOp::Re(_) => (MatcherType::Re, m.value.clone()),
                MatchOp::NotRe(_) => (MatcherType::Nre, m.value.clone()),
            };
            LabelMatcher {
                r#type: t as i32,
                name: m.name.clone(),
                value,
            }
        })
        .collect()
}

/// Matchers from the wire; a bad regex or type is the caller's error.
pub fn matchers_from_proto(matchers: &[LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    matchers
        .iter()
        .map(|m| {
            let token = match MatcherType::try_from(m.r#type) {
                Ok(MatcherType::Eq) => T_EQL,
                Ok(MatcherType::Neq) => T_NEQ,
                Ok(MatcherType::Re) => T_EQL_REGEX,
                Ok(MatcherType::Nre) => T_NEQ_REGEX,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )));
                }
            };
            Matcher::new_matcher(token, m.name.clone(), m.value.clone())
                .map_err(|e| Status::invalid_argument(format!("bad matcher {}: {e}", m.name)))
        })
        .collect()
}

fn series_to_proto(labels: &Labels, samples: &[Sample]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|l| PLabel {
                name: l.name.clone(),
                value: l.value.clone(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|s| PSample {
                value: s.v,
                timestamp: s.t,
            })
            .collect(),
        ..Default::default()
    }
}

fn labels_from_proto(labels: Vec<PLabel>) -> Labels {
    Labels::new(
        labels
            .into_iter()
            .map(|l| Label::new(l.name, l.value))
            .collect(),
    )
}

fn samples_from_proto(samples: &[PSample]) -> Vec<Sample> {
    samples
        .iter()
        .map(|s| Sample {
            t: s.timestamp,
            v: s.value,
        })
        .collect()
}

fn encode_blocks(blocks: &[BlockMeta]) -> Vec<bytes::Bytes> {
    blocks
        .iter()
        .filter_map(|b| serde_json::to_vec(b).ok())
        .map(bytes::Bytes::from)
        .collect()
}

fn decode_blocks(addr: &str, blocks: &[bytes::Bytes]) -> Result<Vec<BlockMeta>, ClientError> {
    blocks
        .iter()
        .map(|b| {
            serde_json::from_slice(b).map_err(|e| ClientError::Failed {
                addr: addr.to_string(),
                message: format!("bad block meta: {e}"),
            })
        })
        .collect()
}

/// The ingester's gRPC service.
pub struct IngesterService {
    ingester: Arc<OnceLock<Arc<Ingester>>>,
    catalog: Arc<BlockCatalog>,
}

impl IngesterService {
    /// The tonic server for the ingester that `ingester` will hold once its
    /// WAL is replayed (UNAVAILABLE until then), whose uploads `catalog` records.
    pub fn server(
        ingester: Arc<OnceLock<Arc<Ingester>>>,
        catalog: Arc<BlockCatalog>,
    ) -> IngesterServer<Self> {
        IngesterServer::new(Self { ingester, catalog })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Zstd)
    }
}

impl IngesterService {
    fn ingester(&self) -> Result<Arc<Ingester>, Status> {
        self.ingester
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("ingester is starting (replaying its WAL)"))
    }
}

fn status_of(e: IngesterError) -> Status {
    match e {
        IngesterError::ShuttingDown => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

type QueryStream = Pin<Box<dyn Stream<Item = Result<QueryStreamResponse, Status>> + Send>>;

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
        let ingester = self.ingester()?;
        let tenant = req.tenant;
        let outcome = tokio::task::spawn_blocking(move || ingester.push(&tenant, &batch, limits))
            .await
            .map_err(|e| Status::internal(format!("ingest task failed: {e}")))?
            .map_err(status_of)?;
        Ok(Response::new(PushResponse {
            accepted: outcome.accepted as u64,
            rejected: outcome
                .rejected
                .into_iter()
                .map(|r| Rejection {
                    index: r.index as u32,
                    reason: r.reason.as_str().to_string(),
                    count: r.count as u64,
                    first_timestamp: r.first_timestamp,
                })
                .collect(),
        }))
    }

    type QueryStreamStream = QueryStream;

    async fn query_stream(
        &self,
        req: Request<QueryRequest>,
    ) -> Result<Response<QueryStream>, Status> {
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
        // Head first, then the uploads the index may not list: a block
        // leaves the head only after it joined the catalog, so the pair
        // never misses data (see the querier).
        let ingester = self.ingester()?;
        let tenant = req.tenant.clone();
        let series = tokio::task::spawn_blocking(move || {
            ingester.select(&tenant, &matchers, req.start_ms, req.end_ms)
        })
        .await
        .map_err(|e| Status::internal(format!("select task failed: {e}")))?;
        let recent = encode_blocks(&self.catalog.unindexed(&req.tenant).await);
        let mut messages: Vec<QueryStreamResponse> = series
            .chunks(SERIES_PER_MESSAGE)
            .map(|chunk| QueryStreamResponse {
                series: chunk
                    .iter()
                    .map(|s| series_to_proto(&s.labels, &s.samples))
                    .collect(),
                recent_blocks: Vec::new(),
            })
            .collect();
        if messages.is_empty() {
            messages.push(QueryStreamResponse::default());
        }
        messages[0].recent_blocks = recent;
        Ok(Response::new(Box::pin(futures::stream::iter(
            messages.into_iter().map(Ok),
        ))))
    }

    async fn series(
        &self,
        req: Request<SeriesRequest>,
    ) -> Result<Response<SeriesResponse>, Status> {
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
        let ingester = self.ingester()?;
        let tenant = req.tenant.clone();
        let series = tokio::task::spawn_blocking(move || {
            ingester.series(&tenant, &matchers, req.start_ms, req.end_ms)
        })
        .await
        .map_err(|e| Status::internal(format!("series task failed: {e}")))?;
        Ok(Response::new(SeriesResponse {
            series: series.iter().map(|l| series_to_proto(l, &[])).collect(),
            recent_blocks: encode_blocks(&self.catalog.unindexed(&req.tenant).await),
        }))
    }
}

/// How a distributor or querier reaches one ingester.
#[derive(Clone)]
pub enum IngesterClient {
    /// The ingester of this process, called directly.
    Local(Arc<Ingester>),
    /// An ingester in another process.
    Remote(Arc<RemoteIngester>),
}

/// A pooled gRPC client of an ingester in another process.
pub struct RemoteIngester {
    addr: String,
    client: GrpcClient<Channel>,
    push_timeout: Duration,
}

impl IngesterClient {
    /// Pushes the series of `batch` at `indexes`; rejections name positions in `batch`.
    pub async fn push(
        &self,
        tenant: &str,
        batch: &SharedBatch,
        indexes: &[u32],
        limits: PushLimits,
    ) -> Result<PushOutcome, ClientError> {
        let whole = indexes.len() == batch.len();
        match self {
            Self::Local(ingester) => {
                let ingester = ingester.clone();
                let tenant = tenant.to_string();
                let batch = batch.clone();
                let sub: Option<Vec<(Labels, Vec<Sample>)>> =
                    (!whole).then(|| indexes.iter().map(|i| batch[*i as usize].clone()).collect());
                let mut outcome = tokio::task::spawn_blocking(move || match &sub {
                    Some(s) => ingester.push(&tenant, s, limits),
                    None => ingester.push(&tenant, &batch, limits),
                })
                .await
                .map_err(|e| ClientError::Failed {
                    addr: "local".into(),
                    message: format!("ingest task failed: {e}"),
                })?
                .map_err(ClientError::local)?;
                if !whole {
                    for r in &mut outcome.rejected {
                        r.index = indexes[r.index] as usize;
                    }
                }
                Ok(outcome)
            }
            Self::Remote(r) => {
                let RemoteIngester {
                    addr,
                    client,
                    push_timeout,
                } = r.as_ref();
                let req = PushRequest {
                    tenant: tenant.to_string(),
                    timeseries: indexes
                        .iter()
                        .map(|i| {
                            let (l, s) = &batch[*i as usize];
                            series_to_proto(l, s)
                        })
                        .collect(),
                    out_of_order_time_window_ms: limits.out_of_order_time_window.as_millis() as i64,
                    max_series: limits.max_series as u64,
                };
                let mut req = Request::new(req);
                req.set_timeout(*push_timeout);
                let resp = client
                    .clone()
                    .push(req)
                    .await
                    .map_err(|s| ClientError::from_status(addr, s))?
                    .into_inner();
                Ok(PushOutcome {
                    accepted: resp.accepted as usize,
                    rejected: resp
                        .rejected
                        .into_iter()
                        .filter_map(|r| {
                            Some(Rejected {
                                index: *indexes.get(r.index as usize)? as usize,
                                reason: RejectReason::from_name(&r.reason)?,
                                count: r.count as usize,
                                first_timestamp: r.first_timestamp,
                            })
                        })
                        .collect(),
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
            Self::Local(ingester) => {
                Ok((ingester.select(tenant, matchers, min_t, max_t), Vec::new()))
            }
            Self::Remote(r) => {
                let RemoteIngester { addr, client, .. } = r.as_ref();
                let mut stream = client
                    .clone()
                    .query_stream(QueryRequest {
                        tenant: tenant.to_string(),
                        start_ms: min_t,
                        end_ms: max_t,
                        matchers: matchers_to_proto(matchers),
                    })
                    .await
                    .map_err(|s| ClientError::from_status(addr, s))?
                    .into_inner();
                let mut series = Vec::new();
                let mut blocks = Vec::new();
                while let Some(msg) = stream
                    .message()
                    .await
                    .map_err(|s| ClientError::from_status(addr, s))?
                {
                    blocks.extend(decode_blocks(addr, &msg.recent_blocks)?);
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

    /// Label sets of matching series with samples in `[min_t, max_t]`, and
    /// the uploaded blocks the bucket index may not list yet.
    pub async fn series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<(Vec<Labels>, Vec<BlockMeta>), ClientError> {
        match self {
            Self::Local(ingester) => {
                Ok((ingester.series(tenant, matchers, min_t, max_t), Vec::new()))
            }
            Self::Remote(r) => {
                let RemoteIngester { addr, client, .. } = r.as_ref();
                let resp = client
                    .clone()
                    .series(SeriesRequest {
                        tenant: tenant.to_string(),
                        start_ms: min_t,
                        end_ms: max_t,
                        matchers: matchers_to_proto(matchers),
                    })
                    .await
                    .map_err(|s| ClientError::from_status(addr, s))?
                    .into_inner();
                Ok((
                    resp.series
                        .into_iter()
                        .map(|ts| labels_from_proto(ts.labels))
                        .collect(),
                    decode_blocks(addr, &resp.recent_blocks)?,
                ))
            }
        }
    }
}

/// Clients of every ingester by ring instance id, with this process's own
/// ingester (when it runs one) called directly.
pub struct IngesterPool {
    local: Option<(String, IngesterClient)>,
    remote: Mutex<HashMap<String, (String, IngesterClient)>>,
    timeout: Duration,
    push_timeout: Duration,
    compression: Option<CompressionEncoding>,
}

impl IngesterPool {
    /// A pool; `local` is this process's instance id and ingester, if any.
    /// Reads may take `timeout`, pushes `push_timeout`; `compression` is
    /// `""` or `"zstd"`.
    pub fn new(
        local: Option<(String, Arc<Ingester>)>,
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
            local: local.map(|(id, ingester)| (id, IngesterClient::Local(ingester))),
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
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ClientError::Failed {
                addr: addr.to_string(),
                message: format!("bad address: {e}"),
            })?
            .connect_timeout(Duration::from_secs(2))
            .timeout(self.timeout)
            .tcp_nodelay(true);
        let mut client = GrpcClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Zstd);
        if let Some(c) = self.compression {
            client = client.send_compressed(c);
        }
        let c = IngesterClient::Remote(Arc::new(RemoteIngester {
            addr: addr.to_string(),
            client,
            push_timeout: self.push_timeout,
        }));
        pool.insert(id.to_string(), (addr.to_string(), c.clone()));
        Ok(c)
    }
}

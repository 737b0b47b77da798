//! How distributors and queriers reach an ingester: [`IngesterClient`],
//! in-process when the ingester runs in the same process (no encoding,
//! through [`LocalIngesters`], which the ingester implements) or over a
//! pooled tonic channel otherwise; [`IngesterPool`], one client per ring
//! instance; the wire codec both sides of the gRPC service use; and the
//! push vocabulary (outcomes, rejection reasons, limits). Callers compile
//! against this crate, not against the ingester's head and WAL.

mod client;
pub mod outcome;
mod rawpush;
pub mod series_wire;
pub mod wire;

use strata_model::head_stats::HeadStats;
use strata_model::logs::{Direction, EntrySize, LineFilter, LogEntry, LogStream};
use strata_model::metadata::MetricMetadata;
use strata_model::{Exemplar, Labels, Matcher, SeriesBatch, SeriesSamples};
use tonic::Status;

pub use client::{
    IngesterClient, IngesterPool, LogSelect, Metadata, MetadataAnswer, RemoteIngester, SharedBatch,
    SharedExemplars, SharedLogBatch, SharedMetadata,
};
pub use outcome::{
    LogPushOutcome, LogRejectReason, PushLimits, PushOutcome, ReasonName, RejectReason, Rejected,
    RejectedSeries, RejectedStream,
};
pub use rawpush::EncodedSeries;

/// Largest gRPC message either side accepts (a push of a large remote-write
/// batch, or a query stream message).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Series (or log streams) per streamed message: bounded messages.
pub const SERIES_PER_MESSAGE: usize = 512;

/// The ingesters of this process, called directly by [`IngesterClient`]:
/// the same operations as the gRPC service, without encoding. Pushes run
/// on a blocking thread (they write the WAL).
pub trait LocalIngesters: Send + Sync + 'static {
    /// Appends `series` to the metrics head (after the WAL).
    fn push(
        &self,
        tenant: &str,
        series: &SeriesBatch,
        limits: PushLimits,
    ) -> Result<PushOutcome, ClientError>;
    /// Keeps metric metadata in the metrics head (after the WAL).
    fn push_metadata(
        &self,
        tenant: &str,
        metadata: &[MetricMetadata],
        limits: PushLimits,
    ) -> Result<(), ClientError>;
    /// The tenant's metric metadata (of `metric` only, when given).
    fn metric_metadata(&self, tenant: &str, metric: Option<&str>) -> Vec<MetricMetadata>;
    /// The tenant's head cardinality, each list cut to `limit`.
    fn head_stats(&self, tenant: &str, limit: usize) -> HeadStats;
    /// Keeps exemplars (each with its series' labels) in the metrics head.
    fn push_exemplars(
        &self,
        tenant: &str,
        exemplars: &[(Labels, Exemplar)],
        limits: PushLimits,
    ) -> Result<(), ClientError>;
    /// Exemplars in `[start, end]` of series matching any of `alternatives`.
    fn exemplars(
        &self,
        tenant: &str,
        alternatives: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)>;
    /// Appends `streams` to the log head (after the log WAL).
    fn push_logs(
        &self,
        tenant: &str,
        streams: Vec<(Labels, Vec<LogEntry>)>,
        max_streams: usize,
    ) -> Result<LogPushOutcome, ClientError>;
    /// Samples of matching series in `[min_t, max_t]`.
    fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Vec<SeriesSamples>;
    /// Label sets of matching series with samples in `[min_t, max_t]`.
    fn series(&self, tenant: &str, matchers: &[Matcher], min_t: i64, max_t: i64) -> Vec<Labels>;
    /// Log entries of matching streams in `[start_ns, end_ns)` passing `filters`.
    fn select_logs(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        filters: &[LineFilter],
        start_ns: i64,
        end_ns: i64,
        limit: Option<(usize, Direction)>,
    ) -> Vec<LogStream>;
    /// Sizes of the entries of matching streams in `[start_ns, end_ns)`.
    fn select_log_sizes(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<(Labels, Vec<EntrySize>)>;
    /// Label sets of matching streams with entries in `[start_ns, end_ns)`.
    fn log_streams(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<Labels>;
}

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
    pub(crate) fn from_status(addr: &str, s: Status) -> Self {
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

    /// The in-process ingester is shutting down (or not serving yet).
    pub fn local_unavailable(message: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            addr: "local".into(),
            message: message.to_string(),
        }
    }

    /// The in-process ingester failed the call.
    pub fn local_failed(message: impl std::fmt::Display) -> Self {
        Self::Failed {
            addr: "local".into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn task(e: tokio::task::JoinError) -> Self {
        Self::Failed {
            addr: "local".into(),
            message: format!("ingester task failed: {e}"),
        }
    }
}

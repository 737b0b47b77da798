//! The ingester: makes accepted writes durable in a WAL, serves them from an
//! in-memory head, and cuts the head into Parquet blocks in the object store.
//!
//! One [`Head`] does this for both signals ([`head`] holds the write order,
//! the cut and the upload); [`MetricSignal`] and [`LogSignal`] supply what
//! differs between samples and log entries (see [`Signal`]). [`grpc`]
//! serves the heads to distributors and queriers in other processes.

mod exemplars;
pub mod grpc;
pub mod head;
pub mod logs;
mod metadata;
mod metric_signal;
mod metrics;
mod series;
mod series_labels;
pub mod shipped;
mod signal;
mod stream_entries;
pub mod walrec;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_wal::{FsyncPolicy, WalError, WalOptions};

pub use head::{Head, TenantHead};
pub use logs::{LogIngester, LogSignal};
pub use metric_signal::{Ingester, MetricPush, MetricSignal};
pub use metrics::{TenantSeriesCollector, register as register_metrics};
pub use signal::Signal;
pub use strata_ingester_client::{
    PushLimits, PushOutcome, ReasonName, RejectReason, Rejected, RejectedSeries,
};
pub use strata_model::now_ms;

/// Ingester and head settings, in Mimir's `blocks_storage.tsdb` shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TsdbConfig {
    /// Directory for the WAL.
    pub dir: String,
    /// Length of the time range each block covers.
    #[serde(with = "humantime_serde")]
    pub block_ranges_period: Duration,
    /// How often the head is checked for a range ready to cut.
    #[serde(with = "humantime_serde")]
    pub head_compaction_interval: Duration,
    /// WAL fsync policy: `always` (before every acknowledgement), `interval`, or `never`.
    pub wal_fsync: String,
    /// With `wal_fsync: interval`, the longest time between fsyncs.
    #[serde(with = "humantime_serde")]
    pub wal_fsync_interval: Duration,
    /// WAL segment size in bytes.
    pub wal_segment_size_bytes: u64,
    /// How far behind a series' newest sample a sample may arrive and still
    /// be accepted. Configured as the tenant limit `out_of_order_time_window`.
    #[serde(skip)]
    pub out_of_order_time_window: Duration,
    /// Cut the whole head into blocks on graceful shutdown.
    pub flush_blocks_on_shutdown: bool,
    /// How long metric metadata not received again is kept (Mimir's
    /// `-ingester.metadata-retain-period`).
    #[serde(with = "humantime_serde")]
    pub metadata_retain_period: Duration,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        Self {
            dir: "./data/tsdb".into(),
            block_ranges_period: Duration::from_secs(2 * 3600),
            head_compaction_interval: Duration::from_secs(60),
            wal_fsync: "always".into(),
            wal_fsync_interval: Duration::from_millis(100),
            wal_segment_size_bytes: 128 << 20,
            out_of_order_time_window: Duration::ZERO,
            flush_blocks_on_shutdown: false,
            metadata_retain_period: Duration::from_secs(600),
        }
    }
}

pub use strata_model::humantime_serde;

/// Errors of the ingester.
#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("WAL record decode failed during replay: {0}")]
    Replay(#[from] walrec::RecordError),
    #[error("invalid ingester configuration: {0}")]
    Config(String),
    #[error("background task: {0}")]
    Task(String),
    #[error("ingester is shutting down")]
    ShuttingDown,
}

/// WAL options from the configuration, checking the values.
fn wal_options(cfg: &TsdbConfig) -> Result<WalOptions, IngesterError> {
    let fsync = match cfg.wal_fsync.as_str() {
        "always" => FsyncPolicy::Always,
        "interval" => FsyncPolicy::Interval(cfg.wal_fsync_interval),
        "never" => FsyncPolicy::Never,
        other => {
            return Err(IngesterError::Config(format!(
                "-blocks-storage.tsdb.wal-fsync must be always, interval or never, not {other:?}"
            )));
        }
    };
    if cfg.block_ranges_period < Duration::from_millis(100) {
        return Err(IngesterError::Config(
            "-blocks-storage.tsdb.block-ranges-period must be at least 100ms".into(),
        ));
    }
    Ok(WalOptions {
        segment_size: cfg.wal_segment_size_bytes,
        fsync,
    })
}

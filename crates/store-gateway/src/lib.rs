//! The store-gateway: blocks in the object store are sharded over the
//! store-gateways of the ring (each block owned by `replication_factor` of
//! them, clockwise from the hash of its tenant and ULID), and each gateway
//! keeps its blocks' label files, Parquet footers and pages in a cache.
//! Queriers read a block through one of its owners ([`StoreGateways`]),
//! try the next owner when one fails, and fail the query rather than answer
//! without a block. This crate holds both sides: the reads a block answers
//! ([`BlockRead`], [`read_block`]), the querier's router, the gRPC service
//! and the gateway's ownership sync that loads blocks before it serves.

mod client;
mod metrics;
mod service;
mod sync;
mod wire;

use strata_model::logs::{Direction, EntrySize, LineFilter, LogStream};
use strata_model::{Labels, Matcher, SeriesSamples, StepWindows};
use strata_storage::{BlockMeta, BlockReader, Signal, StorageError};

pub use client::StoreGateways;
pub use metrics::register_metrics;
pub use service::StoreGatewayService;
pub use sync::{BlockSync, SyncConfig};

/// What a read asks of each block it names.
#[derive(Debug, Clone, Copy)]
pub enum BlockRead<'a> {
    /// Samples of matching series in `[min_t, max_t]` (ms, inclusive).
    Samples {
        /// Series matchers.
        matchers: &'a [Matcher],
        /// Inclusive start, ms.
        min_t: i64,
        /// Inclusive end, ms.
        max_t: i64,
        /// The only samples wanted, when steps read windows of the range.
        windows: Option<StepWindows>,
    },
    /// Label sets of matching series.
    Series {
        /// Series matchers.
        matchers: &'a [Matcher],
    },
    /// Entries of matching streams in `[start_ns, end_ns)` that pass every
    /// line filter, the oldest or newest `limit` when limited.
    LogEntries {
        /// Stream matchers.
        matchers: &'a [Matcher],
        /// Line filters.
        filters: &'a [LineFilter],
        /// Inclusive start, ns.
        start_ns: i64,
        /// Exclusive end, ns.
        end_ns: i64,
        /// Most entries and from which end.
        limit: Option<(usize, Direction)>,
    },
    /// Sizes of the entries of matching streams in `[start_ns, end_ns)`.
    LogSizes {
        /// Stream matchers.
        matchers: &'a [Matcher],
        /// Inclusive start, ns.
        start_ns: i64,
        /// Exclusive end, ns.
        end_ns: i64,
    },
    /// Label sets of matching streams.
    Streams {
        /// Stream matchers.
        matchers: &'a [Matcher],
    },
}

impl BlockRead<'_> {
    /// The signal whose blocks this read reads.
    pub fn signal(&self) -> Signal {
        match self {
            Self::Samples { .. } | Self::Series { .. } => Signal::Metrics,
            Self::LogEntries { .. } | Self::LogSizes { .. } | Self::Streams { .. } => Signal::Logs,
        }
    }

    /// An empty answer of this read's kind.
    fn empty_answer(&self) -> BlockAnswer {
        match self {
            Self::Samples { .. } => BlockAnswer::Samples(Vec::new()),
            Self::Series { .. } => BlockAnswer::Series(Vec::new()),
            Self::LogEntries { .. } => BlockAnswer::LogEntries(Vec::new()),
            Self::LogSizes { .. } => BlockAnswer::LogSizes(Vec::new()),
            Self::Streams { .. } => BlockAnswer::Streams(Vec::new()),
        }
    }
}

/// One block's answer to a [`BlockRead`], of the same kind.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockAnswer {
    /// Series with their samples in the range.
    Samples(Vec<SeriesSamples>),
    /// Label sets of series.
    Series(Vec<Labels>),
    /// Streams with their entries.
    LogEntries(Vec<LogStream>),
    /// Streams with their entries' sizes.
    LogSizes(Vec<(Labels, Vec<EntrySize>)>),
    /// Label sets of streams.
    Streams(Vec<Labels>),
}

/// Reads `read` from one block with `reader` (in this process).
pub async fn read_block(
    reader: &BlockReader,
    tenant: &str,
    meta: &BlockMeta,
    read: &BlockRead<'_>,
) -> Result<BlockAnswer, StorageError> {
    Ok(match *read {
        BlockRead::Samples {
            matchers,
            min_t,
            max_t,
            windows,
        } => BlockAnswer::Samples(
            reader
                .select_windows(tenant, meta, matchers, (min_t, max_t), windows)
                .await?,
        ),
        BlockRead::Series { matchers } => BlockAnswer::Series(
            reader
                .select_series(tenant, meta, matchers)
                .await?
                .into_iter()
                .map(|(_, l)| l)
                .collect(),
        ),
        BlockRead::LogEntries {
            matchers,
            filters,
            start_ns,
            end_ns,
            limit,
        } => BlockAnswer::LogEntries(
            reader
                .select_log_entries(tenant, meta, matchers, filters, start_ns, end_ns, limit)
                .await?,
        ),
        BlockRead::LogSizes {
            matchers,
            start_ns,
            end_ns,
        } => BlockAnswer::LogSizes(
            reader
                .select_log_sizes(tenant, meta, matchers, (start_ns, end_ns))
                .await?,
        ),
        BlockRead::Streams { matchers } => BlockAnswer::Streams(
            reader
                .select_streams(tenant, meta, matchers)
                .await?
                .into_iter()
                .map(|(_, l)| l)
                .collect(),
        ),
    })
}

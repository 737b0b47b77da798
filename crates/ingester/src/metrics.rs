//! The ingester's own Prometheus metrics (`strata_ingester_*`).

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

macro_rules! counter {
    ($name:literal, $help:literal) => {
        LazyLock::new(|| IntCounter::new($name, $help).expect("valid metric definition"))
    };
}

pub(crate) static SAMPLES_APPENDED: LazyLock<IntCounter> = counter!(
    "strata_ingester_samples_appended_total",
    "Samples appended to the head after being written to the WAL."
);
pub(crate) static SAMPLES_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_ingester_samples_rejected_total",
            "Samples the ingester refused, by reason.",
        ),
        &["reason"],
    )
    .expect("valid metric definition")
});
pub(crate) static METADATA_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_ingester_metadata_rejected_total",
            "Metric metadata entries the ingester refused, by reason.",
        ),
        &["reason"],
    )
    .expect("valid metric definition")
});
pub(crate) static EXEMPLARS_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_ingester_exemplars_rejected_total",
            "Exemplars the ingester refused, by reason.",
        ),
        &["reason"],
    )
    .expect("valid metric definition")
});
pub(crate) static WAL_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_ingester_wal_written_bytes_total",
            "Bytes appended to the write-ahead log, by WAL.",
        ),
        &["wal"],
    )
    .expect("valid metric definition")
});
pub(crate) static WAL_SIZE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "strata_ingester_wal_size_bytes",
            "Size of the WAL on disk at start-up and after the last truncation, by WAL.",
        ),
        &["wal"],
    )
    .expect("valid metric definition")
});
pub(crate) static WAL_CORRUPTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_wal_corruptions_total",
            "WAL segments found with a corrupt record before the newest one at replay (copied to <wal dir>/corrupt/), by WAL.",
        ),
        &["wal"],
    )
    .expect("valid metric definition")
});
pub(crate) static WAL_REPLAY_PROGRESS: LazyLock<prometheus::GaugeVec> = LazyLock::new(|| {
    prometheus::GaugeVec::new(
        Opts::new(
            "strata_ingester_wal_replay_progress_ratio",
            "How much of the WAL (by bytes) the last start-up replayed, from 0 to 1, by WAL.",
        ),
        &["wal"],
    )
    .expect("valid metric definition")
});
pub(crate) static WAL_REPLAY_RECORDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "strata_ingester_wal_replay_records",
            "Records the last start-up's WAL replay has read so far, by WAL.",
        ),
        &["wal"],
    )
    .expect("valid metric definition")
});
pub(crate) static HEAD_SERIES: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_ingester_head_series",
        "Series in the in-memory head.",
    )
    .expect("valid metric definition")
});
pub(crate) static BLOCKS_UPLOADED: LazyLock<IntCounter> = counter!(
    "strata_ingester_blocks_uploaded_total",
    "Blocks cut from the head and uploaded to the object store."
);
pub(crate) static BLOCK_BYTES_UPLOADED: LazyLock<IntCounter> = counter!(
    "strata_ingester_block_uploaded_bytes_total",
    "Bytes of Parquet uploaded in blocks."
);
pub(crate) static BLOCK_UPLOAD_FAILURES: LazyLock<IntCounter> = counter!(
    "strata_ingester_block_upload_failures_total",
    "Block upload attempts that failed and will be retried."
);

pub(crate) static LOG_ENTRIES_APPENDED: LazyLock<IntCounter> = counter!(
    "strata_ingester_log_entries_appended_total",
    "Log entries appended to the log head after being written to the log WAL."
);
pub(crate) static LOG_BYTES_APPENDED: LazyLock<IntCounter> = counter!(
    "strata_ingester_log_appended_bytes_total",
    "Bytes of log lines appended to the log head."
);
pub(crate) static LOG_ENTRIES_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_ingester_log_entries_rejected_total",
            "Log entries the ingester refused, by reason.",
        ),
        &["reason"],
    )
    .expect("valid metric definition")
});
pub(crate) static LOG_STREAMS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_ingester_log_streams",
        "Log streams in the in-memory log head.",
    )
    .expect("valid metric definition")
});
pub(crate) static LOG_BLOCKS_UPLOADED: LazyLock<IntCounter> = counter!(
    "strata_ingester_log_blocks_uploaded_total",
    "Log blocks cut from the log head and uploaded to the object store."
);

/// Registers the ingester's metrics with `registry`.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(SAMPLES_APPENDED.clone()))?;
    registry.register(Box::new(SAMPLES_REJECTED.clone()))?;
    registry.register(Box::new(METADATA_REJECTED.clone()))?;
    registry.register(Box::new(EXEMPLARS_REJECTED.clone()))?;
    registry.register(Box::new(WAL_BYTES.clone()))?;
    registry.register(Box::new(WAL_SIZE.clone()))?;
    registry.register(Box::new(WAL_CORRUPTIONS.clone()))?;
    registry.register(Box::new(WAL_REPLAY_PROGRESS.clone()))?;
    registry.register(Box::new(WAL_REPLAY_RECORDS.clone()))?;
    registry.register(Box::new(HEAD_SERIES.clone()))?;
    registry.register(Box::new(BLOCKS_UPLOADED.clone()))?;
    registry.register(Box::new(BLOCK_BYTES_UPLOADED.clone()))?;
    registry.register(Box::new(BLOCK_UPLOAD_FAILURES.clone()))?;
    registry.register(Box::new(LOG_ENTRIES_APPENDED.clone()))?;
    registry.register(Box::new(LOG_BYTES_APPENDED.clone()))?;
    registry.register(Box::new(LOG_ENTRIES_REJECTED.clone()))?;
    registry.register(Box::new(LOG_STREAMS.clone()))?;
    registry.register(Box::new(LOG_BLOCKS_UPLOADED.clone()))?;
    // Every known reason from the start: a rate() over a counter that
    // appears with its first increment misses that increment.
    use crate::RejectReason as R;
    for r in [
        R::OutOfOrder,
        R::OutOfBounds,
        R::DuplicateTimestamp,
        R::SeriesLimit,
    ] {
        SAMPLES_REJECTED.with_label_values(&[r.as_str()]);
    }
    use strata_ingester_client::LogRejectReason as L;
    for r in [L::TooFarBehind, L::OutOfBounds, L::StreamLimit] {
        LOG_ENTRIES_REJECTED.with_label_values(&[r.as_str()]);
    }
    use crate::metadata::MetadataReject as M;
    for r in [M::PerUserLimit, M::PerMetricLimit] {
        METADATA_REJECTED.with_label_values(&[r.as_str()]);
    }
    EXEMPLARS_REJECTED.with_label_values(&[crate::exemplars::ExemplarReject::OutOfOrder.as_str()]);
    Ok(())
}

/// Each tenant's series and log streams in this ingester's heads, counted
/// at every scrape (`strata_ingester_tenant_series`,
/// `strata_ingester_tenant_log_streams`): per-tenant usage and the share of
/// a tenant's series limit each ingester holds.
pub struct TenantSeriesCollector {
    metrics: std::sync::Arc<crate::Ingester>,
    logs: std::sync::Arc<crate::LogIngester>,
    series: IntGaugeVec,
    streams: IntGaugeVec,
    /// One scrape at a time: each resets and refills the shared gauges.
    collecting: parking_lot::Mutex<()>,
}

impl TenantSeriesCollector {
    /// The collector of the two heads' per-tenant counts.
    pub fn new(
        metrics: std::sync::Arc<crate::Ingester>,
        logs: std::sync::Arc<crate::LogIngester>,
    ) -> prometheus::Result<Self> {
        Ok(Self {
            metrics,
            logs,
            series: IntGaugeVec::new(
                Opts::new(
                    "strata_ingester_tenant_series",
                    "Series in this ingester's head, per tenant.",
                ),
                &["user"],
            )?,
            streams: IntGaugeVec::new(
                Opts::new(
                    "strata_ingester_tenant_log_streams",
                    "Log streams in this ingester's head, per tenant.",
                ),
                &["user"],
            )?,
            collecting: parking_lot::Mutex::new(()),
        })
    }
}

impl prometheus::core::Collector for TenantSeriesCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut d = self.series.desc();
        d.extend(self.streams.desc());
        d
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let _one_at_a_time = self.collecting.lock();
        // Tenants whose head emptied drop out rather than stay at 0.
        self.series.reset();
        self.streams.reset();
        for (tenant, n) in self.metrics.num_series_per_tenant() {
            self.series.with_label_values(&[&tenant]).set(n as i64);
        }
        for (tenant, n) in self.logs.num_series_per_tenant() {
            self.streams.with_label_values(&[&tenant]).set(n as i64);
        }
        let mut out = self.series.collect();
        out.extend(self.streams.collect());
        out
    }
}

//! The store-gateway's own metrics: blocks owned and loaded by each
//! gateway, and how queriers' block reads fared.

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub(crate) static OWNED_BLOCKS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "strata_storegateway_owned_blocks",
            "Blocks this store-gateway owns on the ring and has loaded, by signal.",
        ),
        &["signal"],
    )
    .expect("valid metric")
});

pub(crate) static BLOCK_LOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_storegateway_block_loads_total",
            "Blocks this store-gateway loaded (label files and footers read into its cache), by outcome.",
        ),
        &["outcome"],
    )
    .expect("valid metric")
});

pub(crate) static SYNCS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_storegateway_syncs_total",
            "Ownership syncs of this store-gateway (bucket indexes read against the ring), by outcome.",
        ),
        &["outcome"],
    )
    .expect("valid metric")
});

pub(crate) static SERVED_BLOCKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_storegateway_served_blocks_total",
            "Blocks this store-gateway read for queriers, by signal and outcome.",
        ),
        &["signal", "outcome"],
    )
    .expect("valid metric")
});

pub(crate) static QUERIER_BLOCK_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_querier_storegateway_block_reads_total",
            "Blocks this querier read through store-gateways, by outcome (ok; retried on another owner; failed with no owner left).",
        ),
        &["outcome"],
    )
    .expect("valid metric")
});

pub(crate) static QUERIER_CALL_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "strata_querier_storegateway_request_duration_seconds",
            "Time of this querier's calls to store-gateways, by outcome.",
        )
        .buckets(vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
        ]),
        &["outcome"],
    )
    .expect("valid metric")
});

/// Registers the store-gateway's and its clients' metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    for signal in ["metrics", "logs"] {
        OWNED_BLOCKS.with_label_values(&[signal]);
        for outcome in ["ok", "error"] {
            SERVED_BLOCKS.with_label_values(&[signal, outcome]);
        }
    }
    for outcome in ["ok", "error"] {
        BLOCK_LOADS.with_label_values(&[outcome]);
        SYNCS.with_label_values(&[outcome]);
        QUERIER_CALL_SECONDS.with_label_values(&[outcome]);
    }
    for outcome in ["ok", "retried", "failed"] {
        QUERIER_BLOCK_READS.with_label_values(&[outcome]);
    }
    r.register(Box::new(OWNED_BLOCKS.clone()))?;
    r.register(Box::new(BLOCK_LOADS.clone()))?;
    r.register(Box::new(SYNCS.clone()))?;
    r.register(Box::new(SERVED_BLOCKS.clone()))?;
    r.register(Box::new(QUERIER_BLOCK_READS.clone()))?;
    r.register(Box::new(QUERIER_CALL_SECONDS.clone()))
}

//! The query-frontend's own metrics.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub(crate) static QUEUE_LENGTH: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_query_frontend_queue_length",
        "Requests waiting in the query-frontend's queue, all tenants.",
    )
    .expect("valid metric")
});

pub(crate) static CONNECTED_QUERIERS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_query_frontend_connected_queriers",
        "Queriers with a worker connected to this query-frontend.",
    )
    .expect("valid metric")
});

// Not per tenant (as Mimir's): tenants x buckets would be a cardinality of
// its own; the queue length is per tenant in the logs and the 429s.
pub(crate) static QUEUE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "strata_query_frontend_queue_duration_seconds",
            "Time requests waited in the query-frontend's queue before a querier took them.",
        )
        .buckets(vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
        ]),
    )
    .expect("valid metric")
});

pub(crate) static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_query_frontend_queries_total",
            "Requests the query-frontend answered, by kind (split range query or forwarded request) and outcome.",
        ),
        &["kind", "outcome"],
    )
    .expect("valid metric")
});

pub(crate) static PARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_query_frontend_split_parts_total",
            "Parts of split range queries, by where the answer came from (cache hit or querier).",
        ),
        &["source"],
    )
    .expect("valid metric")
});

pub(crate) static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_query_frontend_retries_total",
            "Requests queued again after a querier failed them, by reason.",
        ),
        &["reason"],
    )
    .expect("valid metric")
});

pub(crate) static SHARDING_REWRITES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_query_frontend_query_sharding_rewrites_total",
            "PromQL queries considered for sharding, by outcome (sharded or not shardable).",
        ),
        &["outcome"],
    )
    .expect("valid metric")
});

pub(crate) static SHARD_QUERIES: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "strata_query_frontend_sharded_queries_total",
        "Shard queries sent to queriers for sharded queries.",
    )
    .expect("valid metric")
});

/// Registers the query-frontend's metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    for kind in ["split", "sharded", "forwarded"] {
        for outcome in ["ok", "error"] {
            REQUESTS.with_label_values(&[kind, outcome]);
        }
    }
    for source in ["cache", "querier"] {
        PARTS.with_label_values(&[source]);
    }
    for outcome in ["sharded", "not_shardable"] {
        SHARDING_REWRITES.with_label_values(&[outcome]);
    }
    for reason in ["disconnected", "server_error"] {
        RETRIES.with_label_values(&[reason]);
    }
    r.register(Box::new(QUEUE_LENGTH.clone()))?;
    r.register(Box::new(CONNECTED_QUERIERS.clone()))?;
    r.register(Box::new(QUEUE_SECONDS.clone()))?;
    r.register(Box::new(REQUESTS.clone()))?;
    r.register(Box::new(PARTS.clone()))?;
    r.register(Box::new(SHARDING_REWRITES.clone()))?;
    r.register(Box::new(SHARD_QUERIES.clone()))?;
    r.register(Box::new(RETRIES.clone()))
}

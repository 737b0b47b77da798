//! The query-frontend: the read path's front door. It takes Grafana's
//! Prometheus and Loki read requests, splits range queries by time
//! ([`split`]), answers the parts it has cached ([`cache`]), queues the rest
//! per tenant ([`queue`]) for the queriers' workers that pull them over
//! gRPC ([`service`], [`worker`]), retries a part a querier failed on
//! another querier, and merges the parts' answers. Shardable aggregations
//! may also be cut by series ([`shard`]). A querier runs the
//! requests it pulls with its own HTTP API, so every endpoint behaves as
//! it does on the querier.

pub mod cache;
mod frontend;
mod metrics;
pub mod queue;
pub mod service;
pub mod shard;
pub mod split;
pub mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use frontend::{Frontend, is_frontend_path};
pub use metrics::register_metrics;

/// The query-frontend's settings, as Mimir names them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FrontendConfig {
    /// Range queries are cut into parts of this much time (0: not split).
    #[serde(with = "strata_model::humantime_serde")]
    pub split_queries_by_interval: Duration,
    /// Moves a range query's start and end onto multiples of its step.
    pub align_queries_with_step: bool,
    /// Keeps the parts' answers for later queries of the same parts.
    pub cache_results: bool,
    /// Memory of the results cache, bytes.
    pub results_cache_bytes: usize,
    /// Local disk of the results cache, bytes (0: memory only).
    pub results_cache_disk_bytes: usize,
    /// Directory of the results cache's disk part.
    pub results_cache_dir: String,
    /// Parts ending less than this long ago are never cached: their data
    /// may still change.
    #[serde(with = "strata_model::humantime_serde")]
    pub max_cache_freshness: Duration,
    /// Times a part a querier failed is tried again (on another querier).
    pub max_retries: usize,
    /// Client requests one tenant may have in the frontend at once (queued
    /// or running; a request's parts and shard queries count as one); more
    /// get 429.
    pub max_outstanding_requests_per_tenant: usize,
    /// Queriers one tenant's requests may run on (0: all).
    pub max_queriers_per_tenant: usize,
    /// Runs shardable aggregations as one query per shard of the series,
    /// on as many queriers ([`shard`]).
    pub parallelize_shardable_queries: bool,
    /// Most shard queries one query (or one split part) becomes; a query
    /// with several sharded aggregations gets fewer shards each.
    pub query_sharding_max_sharded_queries: u32,
    /// Longest time a request may wait and run (`-querier.timeout`).
    #[serde(skip)]
    pub timeout: Duration,
    /// Whether requests name their tenant (`-auth.multitenancy-enabled`);
    /// otherwise every request is tenant `anonymous`, as on the querier.
    #[serde(skip)]
    pub multitenancy: bool,
    /// Most points the merged answers of one sharded query (or part) may
    /// hold, and the samples its outer evaluation may (`-querier.max-samples`).
    #[serde(skip)]
    pub max_samples: usize,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            split_queries_by_interval: Duration::from_secs(24 * 3600),
            align_queries_with_step: false,
            cache_results: true,
            results_cache_bytes: 256 << 20,
            results_cache_disk_bytes: 0,
            results_cache_dir: "./data/results-cache".into(),
            max_cache_freshness: Duration::from_secs(600),
            max_retries: 5,
            max_outstanding_requests_per_tenant: 100,
            max_queriers_per_tenant: 0,
            parallelize_shardable_queries: false,
            query_sharding_max_sharded_queries: 128,
            timeout: Duration::from_secs(120),
            multitenancy: false,
            max_samples: 50_000_000,
        }
    }
}

//! Configuration: one YAML file (`-config.file`) in Mimir's layout, where
//! every field also has a command-line flag named as Mimir names it.
//! Precedence: built-in defaults, then the file, then flags.
//!
//! Flags are declared once in [`FLAGS`], each bound to a YAML path; values
//! are applied to the YAML tree and the tree is deserialized, so a flag and
//! its YAML field can never disagree on type or meaning. Both `-name=value`
//! and `--name=value` spellings are accepted (Go's flag package allows both).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::Value as Yaml;
use strata_distributor::DistributorConfig;
use strata_ingester::TsdbConfig;
use strata_limits::Limits;
use strata_storage::StoreConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Comma-separated roles to run; `all` runs every role in this process.
    pub target: String,
    /// Require `X-Scope-OrgID` on every request.
    pub multitenancy_enabled: bool,
    pub auth: AuthConfig,
    pub server: ServerConfig,
    pub distributor: DistributorConfig,
    pub ingester: IngesterConfig,
    /// Limits every tenant gets unless the runtime config overrides them.
    pub limits: Limits,
    pub runtime_config: RuntimeConfigConfig,
    pub blocks_storage: BlocksStorageConfig,
    pub querier: QuerierConfig,
    pub ruler: strata_ruler::RulerConfig,
    pub compactor: strata_compactor::CompactorConfig,
    pub ring: strata_ring::RingConfig,
    pub ingester_client: IngesterClientConfig,
    pub store_gateway: StoreGatewayConfig,
    pub frontend: strata_frontend::FrontendConfig,
}

/// The store-gateway role: how blocks are sharded over gateways and the
/// cache each gateway keeps of its blocks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StoreGatewayConfig {
    pub sharding_ring: StoreGatewayRingConfig,
    /// The gateway's cache of its blocks' reads (memory, then disk).
    pub cache: strata_storage::cache::CacheConfig,
}

impl Default for StoreGatewayConfig {
    fn default() -> Self {
        Self {
            sharding_ring: StoreGatewayRingConfig::default(),
            cache: strata_storage::cache::CacheConfig {
                dir: "./data/blocks-cache".into(),
                ..strata_storage::cache::CacheConfig::default()
            },
        }
    }
}

/// How blocks are spread over the ring's store-gateways.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StoreGatewayRingConfig {
    /// Gateways owning (loading and serving) each block.
    pub replication_factor: usize,
}

impl Default for StoreGatewayRingConfig {
    fn default() -> Self {
        Self {
            replication_factor: 3,
        }
    }
}

/// How distributors and queriers call ingesters in other processes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct IngesterClientConfig {
    /// Compression of requests to ingesters: "" (none) or "zstd".
    pub grpc_compression: String,
    /// Longest time a push to one ingester may take.
    #[serde(with = "strata_ingester::humantime_serde")]
    pub remote_timeout: Duration,
    /// TLS of every gRPC connection this process opens to another role.
    #[serde(flatten)]
    pub tls: strata_proto::transport::ClientTls,
}

impl Default for IngesterClientConfig {
    fn default() -> Self {
        Self {
            grpc_compression: String::new(),
            remote_timeout: Duration::from_secs(2),
            tls: Default::default(),
        }
    }
}

/// Opt-in HTTP authentication (see strata_api::auth).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuthConfig {
    /// YAML file of accepted tokens (hashed); empty: no authentication.
    pub tokens_file: String,
    #[serde(with = "strata_ingester::humantime_serde")]
    pub tokens_reload_period: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens_file: String::new(),
            tokens_reload_period: Duration::from_secs(10),
        }
    }
}

/// Ingester settings beyond the TSDB block, as Loki names them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct IngesterConfig {
    /// Log entries of a stream are accepted up to half of this behind its newest entry.
    #[serde(with = "strata_ingester::humantime_serde")]
    pub max_chunk_age: Duration,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            max_chunk_age: Duration::from_secs(2 * 3600),
        }
    }
}

/// HTTP/gRPC listeners and logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServerConfig {
    pub http_listen_address: String,
    pub http_listen_port: u16,
    pub grpc_listen_address: String,
    pub grpc_listen_port: u16,
    #[serde(with = "strata_ingester::humantime_serde")]
    pub graceful_shutdown_timeout: Duration,
    /// Longest time to read a request's body.
    #[serde(with = "strata_ingester::humantime_serde")]
    pub http_server_read_timeout: Duration,
    /// Longest time a connection may take to send a request's headers,
    /// counted from when it is ready for one (so an idle kept-alive
    /// connection is closed after it, too).
    #[serde(with = "strata_ingester::humantime_serde")]
    pub http_server_idle_timeout: Duration,
    pub log_level: String,
    pub log_format: String,
    /// TLS of the gRPC server (between roles).
    pub grpc_tls: strata_proto::transport::ServerTls,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen_address: String::new(),
            http_listen_port: 9009,
            grpc_listen_address: String::new(),
            grpc_listen_port: 9095,
            graceful_shutdown_timeout: Duration::from_secs(30),
            http_server_read_timeout: Duration::from_secs(30),
            http_server_idle_timeout: Duration::from_secs(120),
            log_level: "info".into(),
            log_format: "logfmt".into(),
            grpc_tls: Default::default(),
        }
    }
}

/// Where per-tenant limit overrides come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RuntimeConfigConfig {
    /// YAML file with `overrides: {<tenant>: {<limit>: <value>}}`; empty for none.
    pub file: String,
    /// How often the file is re-read.
    #[serde(with = "strata_ingester::humantime_serde")]
    pub period: Duration,
}

impl Default for RuntimeConfigConfig {
    fn default() -> Self {
        Self {
            file: String::new(),
            period: Duration::from_secs(10),
        }
    }
}

/// Object storage, head/WAL and block-reading settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BlocksStorageConfig {
    /// The hot tier: where blocks are written.
    #[serde(flatten)]
    pub store: StoreConfig,
    /// The warm tier blocks older than `-blocks-storage.hot-max-age` move
    /// to; `backend: ""` (the default) keeps every block in the hot tier.
    pub warm: StoreConfig,
    /// Queriers' and rulers' cache of warm-block reads (memory, then disk).
    pub warm_cache: strata_storage::cache::CacheConfig,
    pub tsdb: TsdbConfig,
    pub bucket_store: BucketStoreConfig,
}

impl Default for BlocksStorageConfig {
    fn default() -> Self {
        Self {
            store: StoreConfig::default(),
            warm: StoreConfig {
                backend: String::new(),
                filesystem: strata_storage::store::FilesystemConfig {
                    dir: "./data/warm".into(),
                },
                ..StoreConfig::default()
            },
            warm_cache: strata_storage::cache::CacheConfig::default(),
            tsdb: TsdbConfig::default(),
            bucket_store: BucketStoreConfig::default(),
        }
    }
}

/// How queriers discover blocks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BucketStoreConfig {
    /// How often a tenant's block list is refreshed from the bucket.
    #[serde(with = "strata_ingester::humantime_serde")]
    pub sync_interval: Duration,
    /// Blocks marked for deletion longer ago than this are not read any
    /// more (shorter than the compactor's deletion delay, longer than the
    /// sync interval).
    #[serde(with = "strata_ingester::humantime_serde")]
    pub ignore_deletion_marks_delay: Duration,
}

impl Default for BucketStoreConfig {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(60),
            ignore_deletion_marks_delay: Duration::from_secs(3600),
        }
    }
}

/// PromQL engine settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QuerierConfig {
    #[serde(with = "strata_ingester::humantime_serde")]
    pub lookback_delta: Duration,
    pub max_samples: usize,
    pub max_subquery_steps: usize,
    pub max_estimated_memory_consumption_per_query: usize,
    /// Queries run at once by this process; more wait for a slot.
    pub max_concurrent: usize,
    /// Queries of one tenant running or waiting at once.
    pub max_outstanding_requests_per_tenant: usize,
    #[serde(with = "strata_ingester::humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "strata_ingester::humantime_serde")]
    pub default_evaluation_interval: Duration,
    #[serde(with = "strata_ingester::humantime_serde")]
    pub selection_split_interval: Duration,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            max_subquery_steps: 100_000,
            // Off in Mimir; on here: max-samples counts the samples a query
            // loads, this also bounds the step values its plan produces.
            max_estimated_memory_consumption_per_query: 2 << 30,
            max_concurrent: 20,
            max_outstanding_requests_per_tenant: 100,
            timeout: Duration::from_secs(120),
            default_evaluation_interval: Duration::from_secs(60),
            selection_split_interval: Duration::from_secs(6 * 3600),
        }
    }
}

/// A flag: its name (without dashes), the YAML path it sets, and help text.
pub struct Flag {
    pub name: &'static str,
    pub path: &'static str,
    pub help: &'static str,
}

macro_rules! flags {
    ($($name:literal => $path:literal : $help:literal,)*) => {
        /// Every configuration flag.
        pub const FLAGS: &[Flag] = &[$(Flag { name: $name, path: $path, help: $help },)*];
    };
}

flags! {
    "target" => "target": "Comma-separated list of roles to run; `all` runs every role in one process.",
    "auth.multitenancy-enabled" => "multitenancy_enabled": "Require the X-Scope-OrgID header; when false every request uses tenant `anonymous`.",
    "auth.tokens-file" => "auth.tokens_file": "YAML file of accepted HTTP tokens, by SHA-256, each scoped to tenants and to read, write, rules or admin (see docs/security.md); empty: no authentication.",
    "auth.tokens-reload-period" => "auth.tokens_reload_period": "How often the tokens file is re-read; a file that does not parse keeps the previous tokens.",
    "server.http-listen-address" => "server.http_listen_address": "HTTP listen address (empty: all interfaces).",
    "server.http-listen-port" => "server.http_listen_port": "HTTP listen port.",
    "server.grpc-listen-address" => "server.grpc_listen_address": "gRPC listen address, used by distributed mode.",
    "server.grpc-listen-port" => "server.grpc_listen_port": "gRPC listen port, used by distributed mode.",
    "server.graceful-shutdown-timeout" => "server.graceful_shutdown_timeout": "Time to finish in-flight requests on SIGTERM.",
    "server.grpc-tls-cert-path" => "server.grpc_tls.cert_path": "PEM certificate of the gRPC server (between roles); with the key, the server speaks TLS.",
    "server.grpc-tls-key-path" => "server.grpc_tls.key_path": "PEM private key of the gRPC server's certificate.",
    "server.grpc-tls-ca-path" => "server.grpc_tls.client_ca_path": "PEM CA that must have signed the certificate every gRPC client presents.",
    "server.grpc-tls-client-auth" => "server.grpc_tls.client_auth": "RequireAndVerifyClientCert (default with TLS on) or NoClientCert.",
    "server.http-server-read-timeout" => "server.http_server_read_timeout": "Longest time to read a request's body; a slower body fails the request (400).",
    "server.http-server-idle-timeout" => "server.http_server_idle_timeout": "Longest time a connection may take to send a request's headers, counted from when it is ready for the next request (idle kept-alive connections are closed after it).",
    "log.level" => "server.log_level": "Log level: debug, info, warn, error.",
    "log.format" => "server.log_format": "Log format: logfmt or json.",
    "distributor.max-recv-msg-size" => "distributor.max_recv_msg_size": "Largest remote-write request body (compressed or not) in bytes; larger gets 413.",
    "distributor.instance-limits.max-inflight-push-requests" => "distributor.instance_limits.max_inflight_push_requests": "Push requests (remote write, Loki push) this process handles at once (0: unlimited); more get 503 with Retry-After.",
    "distributor.instance-limits.max-inflight-push-requests-bytes" => "distributor.instance_limits.max_inflight_push_requests_bytes": "Bytes of push request bodies (by Content-Length) this process handles at once (0: unlimited); more get 503 with Retry-After.",
    "ingester.max-chunk-age" => "ingester.max_chunk_age": "Log entries are accepted up to half of this behind their stream's newest entry (Loki's unordered-writes window).",
    "validation.max-length-label-name" => "limits.max_label_name_length": "Longest label name accepted.",
    "validation.max-length-label-value" => "limits.max_label_value_length": "Longest label value accepted.",
    "validation.max-label-names-per-series" => "limits.max_label_names_per_series": "Most labels a series may have.",
    "validation.create-grace-period" => "limits.creation_grace_period": "How far in the future a sample's timestamp may be.",
    "ingester.out-of-order-time-window" => "limits.out_of_order_time_window": "How far behind a series' newest sample older samples are still accepted (0 disables).",
    "distributor.ingestion-rate-limit" => "limits.ingestion_rate": "Samples per second a tenant may push (0: unlimited); over it, requests get 429.",
    "distributor.ingestion-burst-size" => "limits.ingestion_burst_size": "Samples a tenant may push at once above its ingestion rate.",
    "ingester.max-global-series-per-user" => "limits.max_global_series_per_user": "Most active series per tenant (0: unlimited); samples of new series beyond it are rejected.",
    "ingester.max-global-exemplars-per-user" => "limits.max_global_exemplars_per_user": "Most exemplars kept per tenant, the oldest evicted first (0: exemplars are dropped).",
    "ingester.max-global-metadata-per-user" => "limits.max_global_metadata_per_user": "Most metric metadata entries (type, help, unit) kept per tenant (0: unlimited); entries beyond it are dropped and counted.",
    "ingester.max-global-metadata-per-metric" => "limits.max_global_metadata_per_metric": "Most metadata entries kept per metric family (0: unlimited).",
    "validation.max-metadata-length" => "limits.max_metadata_length": "Longest metric name, help text or unit in metric metadata; longer names and units drop the entry, longer help is truncated.",
    "querier.cardinality-analysis-enabled" => "limits.cardinality_analysis_enabled": "Serve the cardinality API (/api/v1/cardinality/label_names, label_values, active_series) to tenants; it reads every in-memory series of the tenant.",
    "distributor.otel-translation-strategy" => "limits.otel_translation_strategy": "How OTLP metric names become Prometheus names: UnderscoreEscapingWithSuffixes (Prometheus 3: unit and _total/_ratio suffixes) or UnderscoreEscapingWithoutSuffixes (Mimir's default).",
    "distributor.promote-otel-resource-attributes" => "limits.promote_otel_resource_attributes": "Comma-separated OTLP resource attributes copied as labels onto every series of their resource.",
    "distributor.otel-keep-identifying-resource-attributes" => "limits.otel_keep_identifying_resource_attributes": "Keep service.name, service.namespace and service.instance.id as labels of target_info (they always give job and instance).",
    "distributor.otel-promote-scope-metadata" => "limits.otel_promote_scope_metadata": "Label OTLP series with their instrumentation scope (otel_scope_name, otel_scope_version, otel_scope_schema_url, otel_scope_<attribute>).",
    "validation.cost-attribution-labels" => "limits.cost_attribution_labels": "Comma-separated series labels (e.g. team) by which each tenant's received samples are counted in strata_distributor_received_attributed_samples_total; empty turns it off.",
    "validation.max-cost-attribution-cardinality" => "limits.max_cost_attribution_cardinality": "Most value combinations of the cost-attribution labels counted per tenant; beyond it the tenant's samples are counted under __overflow__.",
    "validation.discover-log-levels" => "limits.discover_log_levels": "Add a detected_level structured-metadata field to every log entry (from a level label or field, the OTLP severity, a JSON or logfmt level key, or keywords in the line), as Loki does.",
    "validation.log-level-fields" => "limits.log_level_fields": "Comma-separated labels, metadata fields and JSON/logfmt keys holding a line's level, best first.",
    "validation.log-level-from-json-max-depth" => "limits.log_level_from_json_max_depth": "How many JSON objects deep a level key is looked for (0: any depth).",
    "query-frontend.max-total-query-length" => "limits.max_total_query_length": "Longest time range of one range query (0: unlimited).",
    "store.max-query-length" => "limits.max_query_length": "Longest time range of one log query (0: unlimited), Loki's max_query_length; longer gets 400.",
    "querier.max-fetched-series-per-query" => "limits.max_fetched_series_per_query": "Most series one PromQL selection or series-API request may fetch (0: unlimited); more gets 422.",
    "querier.max-concurrent-tail-requests" => "limits.max_concurrent_tail_requests": "Most live tails a tenant may hold open at once (0: unlimited); more get 429.",
    "distributor.ingestion-rate-limit-mb" => "limits.ingestion_rate_mb": "Log bytes per second a tenant may push, in MiB (0: unlimited); over it, pushes get 429.",
    "distributor.ingestion-burst-size-mb" => "limits.ingestion_burst_size_mb": "Log bytes a tenant may push at once above its rate, in MiB.",
    "distributor.max-line-size" => "limits.max_line_size": "Longest log line accepted, in bytes (0: unlimited); longer lines get 400.",
    "limits.max-structured-metadata-size" => "limits.max_structured_metadata_size": "Largest structured metadata of one log entry, names plus values in bytes (0: unlimited); larger entries get 400. Counted with the line against -distributor.ingestion-rate-limit-mb.",
    "limits.max-structured-metadata-entries-count" => "limits.max_structured_metadata_entries_count": "Most structured metadata pairs on one log entry (0: unlimited); more get 400.",
    "ingester.max-global-streams-per-user" => "limits.max_global_streams_per_user": "Most active log streams per tenant (0: unlimited); entries of new streams beyond it get 429.",
    "ingester.max-streams-per-user" => "limits.max_streams_per_user": "Most active log streams per tenant in one ingester (0: unlimited); the stricter of this and the global limit applies.",
    "validation.reject-old-samples" => "limits.reject_old_samples": "Refuse log entries older than -validation.reject-old-samples.max-age.",
    "validation.reject-old-samples.max-age" => "limits.reject_old_samples_max_age": "Oldest log entry accepted when -validation.reject-old-samples is on.",
    "validation.max-entries-limit" => "limits.max_entries_limit_per_query": "Most log entries one query may return.",
    "compactor.partial-block-deletion-delay" => "compactor.partial_block_deletion_delay": "How old an upload without meta.json (left by a crash) must be before it is deleted (0: never).",
    "compactor.block-ranges" => "compactor.block_ranges": "Comma-separated block ranges, smallest (the ingesters' block range) first, e.g. 2h,12h,24h; blocks of a finished window are merged into one.",
    "compactor.compaction-interval" => "compactor.compaction_interval": "How often the compactor applies retention to every tenant's blocks.",
    "compactor.deletion-delay" => "compactor.deletion_delay": "How long a block marked for deletion stays readable before it is deleted.",
    "compactor.cleanup-interval" => "compactor.cleanup_interval": "How often blocks marked for deletion longer than the deletion delay are deleted.",
    "compactor.blocks-retention-period" => "limits.compactor_blocks_retention_period": "How long metrics are kept (0: forever); queries never return older samples.",
    "compactor.logs-retention-period" => "limits.logs_retention_period": "How long logs are kept, apart from metrics (0: forever); queries never return older entries.",
    "runtime-config.file" => "runtime_config.file": "YAML file of per-tenant limit overrides (`overrides: {<tenant>: {<limit>: <value>}}`), re-read periodically.",
    "runtime-config.reload-period" => "runtime_config.period": "How often the runtime config file is re-read.",
    "ruler.alertmanager-url" => "ruler.alertmanager_url": "Comma-separated Alertmanager URLs alerts are sent to (`/api/v2/alerts`); empty sends none.",
    "ruler.evaluation-interval" => "ruler.evaluation_interval": "Evaluation interval of rule groups that do not set one.",
    "ruler.poll-interval" => "ruler.poll_interval": "How often rule groups are re-read from storage.",
    "ruler.resend-delay" => "ruler.resend_delay": "Minimum time before a firing alert is sent to Alertmanager again.",
    "ruler.external.url" => "ruler.external_url": "Base URL of alerts' generatorURL links.",
    "ruler.notification-queue-capacity" => "ruler.notification_queue_capacity": "Alerts queued for Alertmanager at most; the oldest are dropped beyond.",
    "ruler.max-rule-groups-per-tenant" => "limits.ruler_max_rule_groups_per_tenant": "Most rule groups a tenant may store (0: unlimited); per-tenant override ruler_max_rule_groups_per_tenant.",
    "ruler.max-rules-per-rule-group" => "limits.ruler_max_rules_per_rule_group": "Most rules one group may hold (0: unlimited); per-tenant override ruler_max_rules_per_rule_group.",
    "ruler.external-labels" => "ruler.external_labels": "Labels added to every alert sent to Alertmanager and available as $externalLabels in templates: name=value,name=value (a map in YAML).",
    "ruler.for-outage-tolerance" => "ruler.for_outage_tolerance": "Longest ruler outage after which alerts' `for` progress is still restored from ALERTS_FOR_STATE.",
    "ruler.for-grace-period" => "ruler.for_grace_period": "Least time a restored alert waits before firing; alerts with a shorter `for` are not restored.",
    "blocks-storage.backend" => "blocks_storage.backend": "Object store backend: filesystem, s3, gcs or azure.",
    "blocks-storage.filesystem.dir" => "blocks_storage.filesystem.dir": "Directory holding blocks with the filesystem backend.",
    "blocks-storage.s3.endpoint" => "blocks_storage.s3.endpoint": "S3 endpoint (host:port or URL); empty for AWS.",
    "blocks-storage.s3.bucket-name" => "blocks_storage.s3.bucket_name": "S3 bucket name.",
    "blocks-storage.s3.region" => "blocks_storage.s3.region": "S3 region.",
    "blocks-storage.s3.access-key-id" => "blocks_storage.s3.access_key_id": "S3 access key ID (default: AWS_ACCESS_KEY_ID).",
    "blocks-storage.s3.secret-access-key" => "blocks_storage.s3.secret_access_key": "S3 secret access key (default: AWS_SECRET_ACCESS_KEY).",
    "blocks-storage.s3.insecure" => "blocks_storage.s3.insecure": "Use plain HTTP to the S3 endpoint.",
    "blocks-storage.gcs.bucket-name" => "blocks_storage.gcs.bucket_name": "GCS bucket name.",
    "blocks-storage.gcs.service-account" => "blocks_storage.gcs.service_account": "GCS service account key (the JSON document); empty: Google's default credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity).",
    "blocks-storage.azure.account-name" => "blocks_storage.azure.account_name": "Azure storage account name.",
    "blocks-storage.azure.account-key" => "blocks_storage.azure.account_key": "Azure storage account key; empty: Azure's default credentials (AZURE_* variables, workload or managed identity).",
    "blocks-storage.azure.container-name" => "blocks_storage.azure.container_name": "Azure Blob container name.",
    "blocks-storage.azure.endpoint-suffix" => "blocks_storage.azure.endpoint_suffix": "Azure blob service host suffix (empty: blob.core.windows.net).",
    "blocks-storage.azure.endpoint" => "blocks_storage.azure.endpoint": "Full Azure blob endpoint URL instead of account + suffix (Azurite, private endpoints); http:// allowed.",
    "blocks-storage.warm.backend" => "blocks_storage.warm.backend": "Warm tier object store: empty (no warm tier), filesystem, s3, gcs or azure.",
    "blocks-storage.warm.filesystem.dir" => "blocks_storage.warm.filesystem.dir": "Directory of the warm tier with the filesystem backend.",
    "blocks-storage.warm.s3.endpoint" => "blocks_storage.warm.s3.endpoint": "Warm tier S3 endpoint (host:port or URL); empty for AWS.",
    "blocks-storage.warm.s3.bucket-name" => "blocks_storage.warm.s3.bucket_name": "Warm tier S3 bucket name.",
    "blocks-storage.warm.s3.region" => "blocks_storage.warm.s3.region": "Warm tier S3 region.",
    "blocks-storage.warm.s3.access-key-id" => "blocks_storage.warm.s3.access_key_id": "Warm tier S3 access key ID (default: AWS_ACCESS_KEY_ID).",
    "blocks-storage.warm.s3.secret-access-key" => "blocks_storage.warm.s3.secret_access_key": "Warm tier S3 secret access key (default: AWS_SECRET_ACCESS_KEY).",
    "blocks-storage.warm.s3.insecure" => "blocks_storage.warm.s3.insecure": "Use plain HTTP to the warm tier's S3 endpoint.",
    "blocks-storage.warm.gcs.bucket-name" => "blocks_storage.warm.gcs.bucket_name": "Warm tier GCS bucket name.",
    "blocks-storage.warm.gcs.service-account" => "blocks_storage.warm.gcs.service_account": "Warm tier GCS service account key (JSON).",
    "blocks-storage.warm.azure.account-name" => "blocks_storage.warm.azure.account_name": "Warm tier Azure storage account name.",
    "blocks-storage.warm.azure.account-key" => "blocks_storage.warm.azure.account_key": "Warm tier Azure storage account key.",
    "blocks-storage.warm.azure.container-name" => "blocks_storage.warm.azure.container_name": "Warm tier Azure Blob container name.",
    "blocks-storage.warm.azure.endpoint-suffix" => "blocks_storage.warm.azure.endpoint_suffix": "Warm tier Azure blob service host suffix.",
    "blocks-storage.warm.azure.endpoint" => "blocks_storage.warm.azure.endpoint": "Warm tier full Azure blob endpoint URL.",
    "blocks-storage.warm-cache.memory-bytes" => "blocks_storage.warm_cache.memory_bytes": "Memory for queriers' and rulers' cache of warm-block reads (Parquet footers, page indexes, pages), bytes; 0 together with the disk size disables it.",
    "blocks-storage.warm-cache.disk-bytes" => "blocks_storage.warm_cache.disk_bytes": "Local disk for the warm-block cache, bytes (0: memory only).",
    "blocks-storage.warm-cache.dir" => "blocks_storage.warm_cache.dir": "Directory of the warm-block disk cache.",
    "blocks-storage.hot-max-age" => "compactor.hot_max_age": "The compactor moves blocks whose newest sample is older than this from the hot to the warm tier (when one is configured).",
    "blocks-storage.tsdb.dir" => "blocks_storage.tsdb.dir": "Directory for the ingester's WAL.",
    "blocks-storage.tsdb.block-ranges-period" => "blocks_storage.tsdb.block_ranges_period": "Time range each block cut from the head covers.",
    "blocks-storage.tsdb.head-compaction-interval" => "blocks_storage.tsdb.head_compaction_interval": "How often the head is checked for a range ready to cut into a block.",
    "blocks-storage.tsdb.wal-fsync" => "blocks_storage.tsdb.wal_fsync": "WAL fsync policy: always (before acknowledging), interval, or never.",
    "blocks-storage.tsdb.wal-fsync-interval" => "blocks_storage.tsdb.wal_fsync_interval": "Longest time between WAL fsyncs with -blocks-storage.tsdb.wal-fsync=interval.",
    "blocks-storage.tsdb.wal-segment-size-bytes" => "blocks_storage.tsdb.wal_segment_size_bytes": "WAL segment file size.",
    "ingester.metadata-retain-period" => "blocks_storage.tsdb.metadata_retain_period": "How long ingesters keep metric metadata that is not received again (clients resend it periodically).",
    "blocks-storage.tsdb.flush-blocks-on-shutdown" => "blocks_storage.tsdb.flush_blocks_on_shutdown": "Cut the whole head into blocks and upload them on graceful shutdown.",
    "blocks-storage.bucket-store.ignore-deletion-marks-delay" => "blocks_storage.bucket_store.ignore_deletion_marks_delay": "Blocks marked for deletion longer ago than this are no longer queried (their replacement is indexed by then); keep it below -compactor.deletion-delay and above the sync interval.",
    "blocks-storage.bucket-store.sync-interval" => "blocks_storage.bucket_store.sync_interval": "How often queriers refresh a tenant's block list from the bucket, and store-gateways the blocks they own.",
    "query-frontend.split-queries-by-interval" => "frontend.split_queries_by_interval": "Range queries are cut into parts of this much time (aligned to the epoch), run in parallel and cached part by part (0: not cut).",
    "query-frontend.align-queries-with-step" => "frontend.align_queries_with_step": "Move range queries' start and end onto multiples of their step (better cache use; answers shift to the step grid).",
    "query-frontend.cache-results" => "frontend.cache_results": "Cache the parts of range queries that end before the freshness window.",
    "query-frontend.results-cache.memory-bytes" => "frontend.results_cache_bytes": "Memory of the query-frontend's results cache, bytes.",
    "query-frontend.results-cache.disk-bytes" => "frontend.results_cache_disk_bytes": "Local disk for the query-frontend's results cache, bytes: answers memory evicts are kept there (0: memory only).",
    "query-frontend.results-cache.dir" => "frontend.results_cache_dir": "Directory of the query-frontend's results cache on disk.",
    "query-frontend.max-cache-freshness" => "frontend.max_cache_freshness": "Parts of range queries that end less than this long ago are never cached (their data may still arrive).",
    "query-frontend.max-retries-per-request" => "frontend.max_retries": "Times a request a querier failed (5xx or went away) is queued again for another querier.",
    "query-frontend.max-outstanding-requests-per-tenant" => "frontend.max_outstanding_requests_per_tenant": "Client requests one tenant may have in a query-frontend at once, queued or running (a split or sharded query counts once); more get 429.",
    "query-frontend.max-queriers-per-tenant" => "frontend.max_queriers_per_tenant": "Queriers one tenant's requests may run on, chosen by shuffle sharding (0: all).",
    "query-frontend.parallelize-shardable-queries" => "frontend.parallelize_shardable_queries": "Run aggregations whose partial results combine exactly (sum, count, min, max, group, avg, topk, bottomk over series-by-series expressions, in PromQL and in LogQL metric range queries) as one query per shard of the series or streams, on several queriers.",
    "query-frontend.query-sharding-total-shards" => "limits.query_sharding_total_shards": "Shards a tenant's shardable queries are cut into when query sharding is on (2 to 128; 0 or 1: not sharded; per tenant in the runtime configuration).",
    "query-frontend.query-sharding-max-sharded-queries" => "frontend.query_sharding_max_sharded_queries": "Most shard queries one query (or split part) becomes; queries with several sharded aggregations get fewer shards each.",
    "store-gateway.sharding-ring.replication-factor" => "store_gateway.sharding_ring.replication_factor": "Store-gateways owning each block: they load it before serving and queriers ask the next owner when one fails.",
    "store-gateway.cache.memory-bytes" => "store_gateway.cache.memory_bytes": "Memory for a store-gateway's cache of its blocks (label files whole, Parquet footers, page indexes, pages), bytes; 0 together with the disk size disables it.",
    "store-gateway.cache.disk-bytes" => "store_gateway.cache.disk_bytes": "Local disk for the store-gateway's block cache, bytes (0: memory only).",
    "store-gateway.cache.dir" => "store_gateway.cache.dir": "Directory of the store-gateway's disk cache.",
    "ring.instance-id" => "ring.instance_id": "This process's id in the ring (default: the host name).",
    "ring.instance-addr" => "ring.instance_addr": "Host (or host:port) other processes reach this one's gRPC server at (default: the gRPC listen address, or 127.0.0.1).",
    "ring.instance-availability-zone" => "ring.instance_availability_zone": "Availability zone of this process; replicas of a series go to distinct zones when zones are set.",
    "ingester.ring.replication-factor" => "ring.replication_factor": "Copies of each series written to ingesters; a write needs a quorum (RF/2+1) of them.",
    "ingester.ring.num-tokens" => "ring.num_tokens": "Tokens each ingester owns on the ring.",
    "ingester.ring.tokens-file-path" => "ring.tokens_file_path": "File keeping an ingester's tokens across restarts.",
    "ring.heartbeat-period" => "ring.heartbeat_period": "How often each process heartbeats into the ring.",
    "ring.heartbeat-timeout" => "ring.heartbeat_timeout": "An instance whose last heartbeat is older is unhealthy: skipped by writes and reads.",
    "ring.auto-forget-unhealthy-period" => "ring.auto_forget_unhealthy_period": "Instances unhealthy this long are removed from the ring (0: never).",
    "ring.raft.peers" => "ring.raft.peers": "Comma-separated places to find the ring's Raft group: gRPC host:port, or dns+host:port for every address a name resolves to (a headless Service). A process whose address is listed is a voter; the first entry starts the group when none exists; empty runs a one-voter ring in this process.",
    "ring.raft.voter" => "ring.raft.voter": "Make this process a Raft voter even when its address is not in -ring.raft.peers: it joins the group through them (as a learner, then a voter once caught up).",
    "ring.raft.dir" => "ring.raft.dir": "Directory of a voter's Raft log, vote and snapshots.",
    "ring.raft.heartbeat-interval" => "ring.raft.heartbeat_interval": "Raft leader heartbeat interval; a new leader is elected after 4-8 missed heartbeats.",
    "ingester.client.grpc-compression" => "ingester_client.grpc_compression": "Compression of requests to ingesters in other processes: empty (none) or zstd.",
    "distributor.remote-timeout" => "ingester_client.remote_timeout": "Longest time a push to one ingester may take.",
    "ingester.client.tls-enabled" => "ingester_client.tls_enabled": "Use TLS for every gRPC connection to another role (ingesters, ring, Raft peers).",
    "ingester.client.tls-cert-path" => "ingester_client.tls_cert_path": "PEM client certificate presented to other roles' gRPC servers.",
    "ingester.client.tls-key-path" => "ingester_client.tls_key_path": "PEM private key of the client certificate.",
    "ingester.client.tls-ca-path" => "ingester_client.tls_ca_path": "PEM CA that signed the other roles' server certificates.",
    "ingester.client.tls-server-name" => "ingester_client.tls_server_name": "Name the servers' certificates must carry (default: the host dialed).",
    "querier.lookback-delta" => "querier.lookback_delta": "How far back an instant selector looks for the latest sample.",
    "querier.max-samples" => "querier.max_samples": "Most samples a single query may load into memory.",
    "querier.max-subquery-steps" => "querier.max_subquery_steps": "Most steps a subquery's inner expression may be evaluated at (its range plus the query's, over its step); more is refused before evaluation starts.",
    "querier.max-estimated-memory-consumption-per-query" => "querier.max_estimated_memory_consumption_per_query": "Size of each query's memory pool, bytes: the samples it loads and the rows its DataFusion plans produce are charged to it, and a query past it fails with an error (0: unlimited).",
    "querier.timeout" => "querier.timeout": "Longest time a query (PromQL or LogQL) may run, and wait for a query slot.",
    "querier.max-concurrent" => "querier.max_concurrent": "Queries (PromQL, LogQL, series and label APIs) this process runs at once; more wait for a slot up to -querier.timeout, then get 503.",
    "querier.max-outstanding-requests-per-tenant" => "querier.max_outstanding_requests_per_tenant": "Queries of one tenant running or waiting at once in this process (0: unlimited); more get 429.",
    "querier.default-evaluation-interval" => "querier.default_evaluation_interval": "Step of subqueries written without one (`x[1h:]`), as Prometheus's global evaluation_interval.",
    "querier.selection-split-interval" => "querier.selection_split_interval": "A selector whose query steps and windows span longer is read and evaluated one interval at a time, so a long range holds (and counts against -querier.max-samples) one interval's samples (0: never split).",
}

/// Errors loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Yaml {
        path: String,
        source: serde_yaml::Error,
    },
    #[error("config file {path}: unknown field {field}")]
    UnknownField { path: String, field: String },
    #[error("invalid value {value:?} for -{flag}: {reason}")]
    Flag {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// What the command line asked for.
pub enum Command {
    Run(Box<Config>),
    /// `-verify-config`: the configuration loaded without an error.
    Verified(Box<Config>),
    Help(String),
    Version,
}

/// Rewrites Go-style single-dash long flags (`-server.http-listen-port=1`)
/// into clap's double-dash form.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2 {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

fn lookup<'a>(tree: &'a Yaml, path: &str) -> Option<&'a Yaml> {
    path.split('.').try_fold(tree, |node, key| node.get(key))
}

fn lookup_mut<'a>(tree: &'a mut Yaml, path: &str) -> Option<&'a mut Yaml> {
    path.split('.')
        .try_fold(tree, |node, key| node.get_mut(key))
}

fn scalar_text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Every flag's value in `cfg`, as Prometheus's `/api/v1/status/flags`
/// lists them: name without dashes, value as text (lists comma-joined,
/// label maps as `name=value` pairs).
pub fn flag_values(cfg: &Config) -> std::collections::BTreeMap<String, String> {
    let tree = serde_yaml::to_value(cfg).unwrap_or(Yaml::Null);
    FLAGS
        .iter()
        .filter_map(|f| {
            let node = f
                .path
                .split('.')
                .try_fold(&tree, |node, key| node.get(key))?;
            let text = match node {
                Yaml::Sequence(items) => {
                    items.iter().map(scalar_text).collect::<Vec<_>>().join(",")
                }
                Yaml::Mapping(m) => m
                    .iter()
                    .map(|(k, v)| format!("{}={}", scalar_text(k), scalar_text(v)))
                    .collect::<Vec<_>>()
                    .join(","),
                other => scalar_text(other),
            };
            Some((f.name.to_string(), text))
        })
        .collect()
}

/// Copies `src` into `dst`, failing on keys `dst` does not have.
fn merge(dst: &mut Yaml, src: Yaml, prefix: &str, file: &str) -> Result<(), ConfigError> {
    match (dst, src) {
        // An empty map in the defaults is a free-form map field (labels): take it whole.
        (Yaml::Mapping(d), Yaml::Mapping(s)) if d.is_empty() => {
            *d = s;
            Ok(())
        }
        (Yaml::Mapping(d), Yaml::Mapping(s)) => {
            for (k, v) in s {
                let key = scalar_text(&k);
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match d.get_mut(&k) {
                    Some(slot) => merge(slot, v, &path, file)?,
                    None => {
                        return Err(ConfigError::UnknownField {
                            path: file.to_string(),
                            field: path,
                        });
                    }
                }
            }
            Ok(())
        }
        (d, s) => {
            *d = s;
            Ok(())
        }
    }
}

fn build_cli(defaults: &Yaml) -> clap::Command {
    let mut cmd = clap::Command::new("strata")
        .about("Strata: horizontally scalable storage for Prometheus metrics and Loki logs, queried with PromQL and LogQL.\n\nFlags take one or two dashes: -server.http-listen-port=9009 or --server.http-listen-port=9009.")
        .disable_version_flag(true)
        .arg(
            clap::Arg::new("config.file")
                .long("config.file")
                .value_name("PATH")
                .help("YAML configuration file; flags override its values."),
        )
        .arg(
            clap::Arg::new("version")
                .long("version")
                .action(clap::ArgAction::SetTrue)
                .help("Print the version and exit."),
        )
        .arg(
            clap::Arg::new("verify-config")
                .long("verify-config")
                .action(clap::ArgAction::SetTrue)
                .help("Load and check the configuration (file and flags), print the result and exit (Loki's flag)."),
        );
    for f in FLAGS {
        let default = lookup(defaults, f.path)
            .map(scalar_text)
            .unwrap_or_default();
        let is_bool = matches!(lookup(defaults, f.path), Some(Yaml::Bool(_)));
        let mut arg = clap::Arg::new(f.name)
            .long(f.name)
            .value_name(if is_bool { "BOOL" } else { "VALUE" })
            .help(format!("{} [default: {:?}]", f.help, default));
        if is_bool {
            arg = arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Parses the command line (argv including the program name) into a config.
pub fn load(args: Vec<String>) -> Result<Command, ConfigError> {
    let defaults = serde_yaml::to_value(Config::default()).map_err(|e| ConfigError::Yaml {
        path: "<defaults>".into(),
        source: e,
    })?;
    let mut cli = build_cli(&defaults);
    let matches = match cli.clone().try_get_matches_from(normalize_args(args)) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            return Ok(Command::Help(cli.render_help().to_string()));
        }
        Err(e) => return Err(ConfigError::Usage(e.to_string())),
    };
    if matches.get_flag("version") {
        return Ok(Command::Version);
    }
    let mut tree = defaults.clone();
    if let Some(path) = matches.get_one::<String>("config.file") {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            source: e,
        })?;
        let file: Yaml = serde_yaml::from_str(&text).map_err(|e| ConfigError::Yaml {
            path: path.clone(),
            source: e,
        })?;
        if !file.is_null() {
            merge(&mut tree, file, "", path)?;
        }
    }
    for f in FLAGS {
        let Some(raw) = matches.get_one::<String>(f.name) else {
            continue;
        };
        let flag_err = |reason: String| ConfigError::Flag {
            flag: f.name.to_string(),
            value: raw.clone(),
            reason,
        };
        let slot = lookup_mut(&mut tree, f.path)
            .ok_or_else(|| flag_err(format!("no configuration field {}", f.path)))?;
        *slot = match slot {
            Yaml::Bool(_) => Yaml::Bool(
                raw.parse::<bool>()
                    .map_err(|_| flag_err("expected true or false".into()))?,
            ),
            Yaml::Number(_) => serde_yaml::from_str::<Yaml>(raw)
                .ok()
                .filter(Yaml::is_number)
                .ok_or_else(|| flag_err("expected a number".into()))?,
            _ => Yaml::String(raw.clone()),
        };
        // Check each flag on its own so the error names the flag.
        serde_yaml::from_value::<Config>(tree.clone()).map_err(|e| flag_err(e.to_string()))?;
    }
    let cfg: Config = serde_yaml::from_value(tree).map_err(|e| ConfigError::Yaml {
        path: matches
            .get_one::<String>("config.file")
            .cloned()
            .unwrap_or_else(|| "<flags>".into()),
        source: e,
    })?;
    if matches.get_flag("verify-config") {
        return Ok(Command::Verified(Box::new(cfg)));
    }
    Ok(Command::Run(Box::new(cfg)))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: "all".into(),
            multitenancy_enabled: false,
            auth: AuthConfig::default(),
            server: ServerConfig::default(),
            distributor: DistributorConfig::default(),
            ingester: IngesterConfig::default(),
            limits: Limits::default(),
            runtime_config: RuntimeConfigConfig::default(),
            blocks_storage: BlocksStorageConfig::default(),
            querier: QuerierConfig::default(),
            ruler: strata_ruler::RulerConfig::default(),
            compactor: strata_compactor::CompactorConfig::default(),
            ring: strata_ring::RingConfig::default(),
            ingester_client: IngesterClientConfig::default(),
            store_gateway: StoreGatewayConfig::default(),
            frontend: strata_frontend::FrontendConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("strata")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    }

    fn run(a: &[&str]) -> Config {
        match load(args(a)).unwrap() {
            Command::Run(c) => *c,
            _ => panic!("expected a config"),
        }
    }

    fn leaf_paths(v: &Yaml, prefix: String, out: &mut Vec<String>) {
        match v {
            // An empty map is a field of its own (a label map), not a section.
            Yaml::Mapping(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = scalar_text(k);
                    let p = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    leaf_paths(v, p, out);
                }
            }
            _ => out.push(prefix),
        }
    }

    #[test]
    fn every_config_field_has_a_flag() {
        let tree = serde_yaml::to_value(Config::default()).unwrap();
        let mut paths = Vec::new();
        leaf_paths(&tree, String::new(), &mut paths);
        // Structured settings that, as in Loki, are set in YAML only.
        const YAML_ONLY: &[&str] = &["limits.otlp_config."];
        for p in &paths {
            assert!(
                FLAGS.iter().any(|f| f.path == p) || YAML_ONLY.iter().any(|y| p.starts_with(y)),
                "config field {p} has no flag"
            );
        }
        for f in FLAGS {
            assert!(
                paths.iter().any(|p| p == f.path),
                "flag -{} points nowhere",
                f.name
            );
        }
    }

    #[test]
    fn label_maps_from_flags_and_yaml() {
        let c = run(&["-ruler.external-labels=cluster=eu, env=prod"]);
        assert_eq!(
            c.ruler.external_labels.get("cluster").map(String::as_str),
            Some("eu")
        );
        assert_eq!(
            c.ruler.external_labels.get("env").map(String::as_str),
            Some("prod")
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "ruler:\n  external_labels:\n    cluster: us\n").unwrap();
        let c = run(&[&format!("-config.file={}", f.display())]);
        assert_eq!(
            c.ruler.external_labels.get("cluster").map(String::as_str),
            Some("us")
        );
        assert!(load(args(&["-ruler.external-labels=nonsense"])).is_err());
    }

    #[test]
    fn defaults_and_both_dash_styles() {
        let c = run(&[]);
        assert_eq!(c.server.http_listen_port, 9009);
        assert_eq!(c.server.grpc_listen_port, 9095);
        assert_eq!(c.target, "all");
        let c = run(&[
            "-server.http-listen-port=1234",
            "--auth.multitenancy-enabled",
        ]);
        assert_eq!(c.server.http_listen_port, 1234);
        assert!(c.multitenancy_enabled);
        let c = run(&["-blocks-storage.tsdb.block-ranges-period", "10s"]);
        assert_eq!(
            c.blocks_storage.tsdb.block_ranges_period,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "server:\n  http_listen_port: 7000\nblocks_storage:\n  backend: s3\n  s3:\n    bucket_name: b\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = run(&["-config.file", p]);
        assert_eq!(c.server.http_listen_port, 7000);
        assert_eq!(c.blocks_storage.store.backend, "s3");
        let c = run(&["-config.file", p, "-server.http-listen-port=7001"]);
        assert_eq!(c.server.http_listen_port, 7001);
    }

    #[test]
    fn errors_name_the_culprit() {
        let e = load(args(&["-server.http-listen-port=abc"]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("server.http-listen-port"), "{e}");
        let e = load(args(&["-querier.timeout=soon"]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("querier.timeout"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "server:\n  http_port: 1\n").unwrap();
        let e = load(args(&["-config.file", path.to_str().unwrap()]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("server.http_port"), "{e}");
        assert!(
            matches!(load(args(&["-help"])).unwrap(), Command::Help(h) if h.contains("server.http-listen-port"))
        );
    }
}

//! Per-tenant limits. Every tenant starts from the defaults of the `limits:`
//! configuration block (and its flags); the runtime configuration file
//! (`-runtime-config.file`, Mimir's layout `overrides: {<tenant>: {<limit>: <value>}}`)
//! overrides single limits per tenant. The file is re-read every
//! `-runtime-config.reload-period`, so limits change without a restart; a
//! file that does not parse keeps the previous overrides and is reported in
//! the log and in `strata_runtime_config_last_reload_successful`.
//!
//! Also here: the per-tenant ingestion rate limiter the distributor applies.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus::{IntCounter, IntGauge, Registry};
use serde::{Deserialize, Serialize};
use serde_yaml::Value as Yaml;
use strata_model::humantime_serde;

/// The limits of one tenant, named as Mimir's `limits` block.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest label name accepted.
    pub max_label_name_length: usize,
    /// Longest label value accepted.
    pub max_label_value_length: usize,
    /// Most labels one series may have.
    pub max_label_names_per_series: usize,
    /// How far in the future a sample's timestamp may be.
    #[serde(with = "humantime_serde")]
    pub creation_grace_period: Duration,
    /// Samples per second the tenant may push (0: unlimited); over it,
    /// whole requests get 429 and Prometheus retries them later.
    pub ingestion_rate: f64,
    /// Samples the tenant may push at once above the rate.
    pub ingestion_burst_size: usize,
    /// Most active series in the tenant's head (0: unlimited); samples of
    /// new series beyond it are rejected (400, so they are not retried forever).
    pub max_global_series_per_user: usize,
    /// Most exemplars the tenant's ingesters keep (the oldest are evicted;
    /// 0 keeps none).
    pub max_global_exemplars_per_user: usize,
    /// Most metric metadata entries the tenant's ingesters keep (0:
    /// unlimited); entries beyond it are dropped and counted.
    pub max_global_metadata_per_user: usize,
    /// Most metadata entries of one metric family (0: unlimited).
    pub max_global_metadata_per_metric: usize,
    /// Longest metric family name, help text or unit in metadata: longer
    /// names and units drop the entry, longer help is cut to this length.
    pub max_metadata_length: usize,
    /// How far behind a series' newest sample older samples are still
    /// accepted (0 disables). The default also sets how long the head keeps
    /// data before cutting a block; a tenant's larger window cannot reach
    /// into ranges already cut.
    #[serde(with = "humantime_serde")]
    pub out_of_order_time_window: Duration,
    /// Longest time range (end - start) of one range query (0: unlimited).
    #[serde(with = "humantime_serde")]
    pub max_total_query_length: Duration,
    /// Shards a query-frontend cuts this tenant's shardable queries into
    /// when query sharding is on (0 or 1: not sharded), Mimir's
    /// `query_sharding_total_shards`.
    pub query_sharding_total_shards: u32,
    /// Longest time range of one log query (0: unlimited), Loki's
    /// `max_query_length`: log queries read lines, not samples.
    #[serde(with = "humantime_serde")]
    pub max_query_length: Duration,
    /// Most series one selection of a PromQL query, or one series-API
    /// request, may fetch (0: unlimited), Mimir's `max_fetched_series_per_query`.
    pub max_fetched_series_per_query: usize,
    /// Most live tails (`/loki/api/v1/tail`) a tenant may hold open at once
    /// (0: unlimited), Loki's `max_concurrent_tail_requests`.
    pub max_concurrent_tail_requests: usize,
    /// Log bytes per second the tenant may push, in MiB (0: unlimited), as Loki's `ingestion_rate_mb`.
    pub ingestion_rate_mb: f64,
    /// Log bytes the tenant may push at once above the rate, in MiB.
    pub ingestion_burst_size_mb: f64,
    /// Longest log line accepted, in bytes (0: unlimited).
    pub max_line_size: usize,
    /// Largest structured metadata of one log entry, names plus values in
    /// bytes (0: unlimited), as Loki's `max_structured_metadata_size`.
    pub max_structured_metadata_size: usize,
    /// Most structured metadata pairs on one log entry (0: unlimited), as
    /// Loki's `max_structured_metadata_entries_count`.
    pub max_structured_metadata_entries_count: usize,
    /// Most active log streams of the tenant across the cluster (0: unlimited).
    pub max_global_streams_per_user: usize,
    /// Most active log streams of the tenant in one ingester (0: unlimited),
    /// Loki's local limit; the stricter of the two applies.
    pub max_streams_per_user: usize,
    /// Refuse log entries older than `reject_old_samples_max_age`.
    pub reject_old_samples: bool,
    /// How old a log entry may be when `reject_old_samples` is on.
    #[serde(with = "humantime_serde")]
    pub reject_old_samples_max_age: Duration,
    /// Most log entries one query may return.
    pub max_entries_limit_per_query: usize,
    /// How long the tenant's metrics are kept (0: forever). Queries never
    /// return older samples; the compactor deletes blocks past it.
    #[serde(with = "humantime_serde")]
    pub compactor_blocks_retention_period: Duration,
    /// How long the tenant's logs are kept (0: forever), apart from metrics.
    #[serde(with = "humantime_serde")]
    pub logs_retention_period: Duration,
    /// Most rule groups (PromQL and LogQL) the tenant may store (0: unlimited).
    pub ruler_max_rule_groups_per_tenant: usize,
    /// Most rules one of the tenant's groups may hold (0: unlimited).
    pub ruler_max_rules_per_rule_group: usize,
    /// Serve the cardinality API (`/api/v1/cardinality/*`) to the tenant
    /// (off by default, as in Mimir: it reads every in-memory series).
    pub cardinality_analysis_enabled: bool,
    /// How OTLP metric names become Prometheus names.
    pub otel_translation_strategy: OtelTranslationStrategy,
    /// OTLP resource attributes copied onto every series of the resource
    /// (a list, or Mimir's comma-separated string).
    #[serde(deserialize_with = "list_or_csv")]
    pub promote_otel_resource_attributes: Vec<String>,
    /// Keep `service.name`, `service.namespace` and `service.instance.id`
    /// as labels of `target_info` (they are always `job` and `instance`).
    pub otel_keep_identifying_resource_attributes: bool,
    /// Label OTLP series with their instrumentation scope (`otel_scope_*`).
    pub otel_promote_scope_metadata: bool,
    /// Which OTLP log attributes become stream labels, structured metadata
    /// or nothing (Loki's `otlp_config`).
    pub otlp_config: OtlpConfig,
    /// Series labels by which received samples are counted per tenant
    /// (`strata_distributor_received_attributed_samples_total`), e.g.
    /// `team`: who costs what. A list or a comma-separated string; empty
    /// turns attribution off.
    #[serde(deserialize_with = "list_or_csv")]
    pub cost_attribution_labels: Vec<String>,
    /// Most distinct value combinations of `cost_attribution_labels`
    /// counted per tenant; beyond it every sample of the tenant is counted
    /// under `__overflow__` until the labels change or the process restarts.
    pub max_cost_attribution_cardinality: usize,
    /// Add a `detected_level` structured-metadata field to every log entry
    /// (Loki's `discover_log_levels`, on by default as in Loki).
    pub discover_log_levels: bool,
    /// Stream labels, metadata fields and JSON/logfmt keys holding a
    /// line's level, best first.
    #[serde(deserialize_with = "list_or_csv")]
    pub log_level_fields: Vec<String>,
    /// How many JSON objects deep a level field is looked for (0: any depth).
    pub log_level_from_json_max_depth: usize,
}

/// Loki's `otlp_config`: what becomes of each OTLP log attribute. Rules are
/// tried in order against the attribute's own (dotted) name; the first
/// that matches decides, and an attribute no rule matches is structured
/// metadata. Resource attributes start with the default index-label rule
/// (`service.name`, `k8s.pod.name`, ...) unless `ignore_defaults` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, try_from = "RawOtlpConfig")]
pub struct OtlpConfig {
    pub resource_attributes: OtlpResourceAttributes,
    /// Rules for scope attributes (`index_label` is not allowed).
    pub scope_attributes: Vec<OtlpAttributeRule>,
    /// Rules for log record attributes.
    pub log_attributes: Vec<OtlpAttributeRule>,
    /// Make `severity_text` a stream label instead of structured metadata.
    pub severity_text_as_label: bool,
}

/// `OtlpConfig` as written, before the checks Loki makes.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawOtlpConfig {
    resource_attributes: OtlpResourceAttributes,
    scope_attributes: Vec<OtlpAttributeRule>,
    log_attributes: Vec<OtlpAttributeRule>,
    severity_text_as_label: bool,
}

impl TryFrom<RawOtlpConfig> for OtlpConfig {
    type Error = String;
    fn try_from(raw: RawOtlpConfig) -> Result<Self, String> {
        if raw
            .scope_attributes
            .iter()
            .any(|r| r.action == OtlpAction::IndexLabel)
        {
            return Err("otlp_config: scope_attributes cannot be index_label".into());
        }
        Ok(Self {
            resource_attributes: raw.resource_attributes,
            scope_attributes: raw.scope_attributes,
            log_attributes: raw.log_attributes,
            severity_text_as_label: raw.severity_text_as_label,
        })
    }
}

/// Rules for resource attributes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpResourceAttributes {
    /// Leave out the default index-label rule.
    pub ignore_defaults: bool,
    pub attributes_config: Vec<OtlpAttributeRule>,
}

/// One rule: an action for the attributes named in `attributes` or whose
/// whole name matches `regex` (exactly one of the two).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, try_from = "RawOtlpRule", into = "RawOtlpRule")]
pub struct OtlpAttributeRule {
    pub action: OtlpAction,
    pub attributes: Vec<String>,
    pub regex: Option<AnchoredRegex>,
}

/// What a rule does with the attributes it matches.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OtlpAction {
    /// A stream label (resource and log attributes only).
    IndexLabel,
    /// Structured metadata on every entry (the default).
    #[default]
    StructuredMetadata,
    /// Not stored.
    Drop,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlpRule {
    #[serde(default)]
    action: OtlpAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

impl TryFrom<RawOtlpRule> for OtlpAttributeRule {
    type Error = String;
    fn try_from(raw: RawOtlpRule) -> Result<Self, String> {
        if raw.attributes.is_empty() == raw.regex.is_none() {
            return Err(
                "an otlp_config rule names either attributes or a regex, exactly one of them"
                    .into(),
            );
        }
        let regex = raw.regex.map(AnchoredRegex::new).transpose()?;
        Ok(Self {
            action: raw.action,
            attributes: raw.attributes,
            regex,
        })
    }
}

impl From<OtlpAttributeRule> for RawOtlpRule {
    fn from(rule: OtlpAttributeRule) -> Self {
        Self {
            action: rule.action,
            attributes: rule.attributes,
            regex: rule.regex.map(|r| r.source),
        }
    }
}

impl OtlpAttributeRule {
    /// True when the rule covers the attribute `key`.
    pub fn matches(&self, key: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.regex.is_match(key))
            || self.attributes.iter().any(|a| a == key)
    }
}

/// A regular expression that must match a whole name, compiled when the
/// configuration is read (a bad one fails the load, not a push).
#[derive(Debug, Clone)]
pub struct AnchoredRegex {
    source: String,
    regex: regex::Regex,
}

impl AnchoredRegex {
    /// Compiles `source` anchored at both ends.
    pub fn new(source: String) -> Result<Self, String> {
        let regex = regex::Regex::new(&format!("^(?:{source})$"))
            .map_err(|e| format!("invalid regex {source:?}: {e}"))?;
        Ok(Self { source, regex })
    }
}

impl AnchoredRegex {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl PartialEq for AnchoredRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Prometheus's OTLP `translation_strategy` values that keep names within
/// the classic character set, the one Strata validates names with.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum OtelTranslationStrategy {
    /// Words joined by `_`, unit and type suffixes added (Prometheus 3's default).
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// Invalid characters become `_`, nothing added (Mimir's default).
    UnderscoreEscapingWithoutSuffixes,
}

/// A list given as a YAML sequence or as one comma-separated string.
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    let items = match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(l) => l,
        ListOrCsv::Csv(s) => s.split(',').map(str::to_string).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_label_names_per_series: 30,
            creation_grace_period: Duration::from_secs(600),
            // Ten times Mimir's defaults (10,000/s, 200,000 burst, 150,000
            // series): one large Prometheus fits, a runaway does not.
            ingestion_rate: 100_000.0,
            ingestion_burst_size: 1_000_000,
            max_global_series_per_user: 1_500_000,
            // Mimir leaves both unlimited; metadata does not count against
            // the sample rate, so a bound keeps one tenant from filling
            // ingester memory with it.
            // Mimir keeps none by default; senders only send exemplars
            // when told to, so keep a bounded ring of them.
            max_global_exemplars_per_user: 100_000,
            max_global_metadata_per_user: 150_000,
            max_global_metadata_per_metric: 10,
            max_metadata_length: 1024,
            out_of_order_time_window: Duration::ZERO,
            max_total_query_length: Duration::ZERO,
            query_sharding_total_shards: 16,
            max_query_length: Duration::from_secs(721 * 3600),
            max_fetched_series_per_query: 500_000,
            max_concurrent_tail_requests: 10,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            max_line_size: 256 * 1024,
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries_count: 128,
            max_global_streams_per_user: 5000,
            max_streams_per_user: 0,
            reject_old_samples: true,
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            max_entries_limit_per_query: 5000,
            compactor_blocks_retention_period: Duration::ZERO,
            logs_retention_period: Duration::ZERO,
            ruler_max_rule_groups_per_tenant: 70,
            ruler_max_rules_per_rule_group: 20,
            cardinality_analysis_enabled: false,
            otel_translation_strategy: OtelTranslationStrategy::default(),
            promote_otel_resource_attributes: Vec::new(),
            cost_attribution_labels: Vec::new(),
            max_cost_attribution_cardinality: 10_000,
            discover_log_levels: true,
            log_level_fields: [
                "level",
                "LEVEL",
                "Level",
                "Severity",
                "severity",
                "SEVERITY",
                "lvl",
                "LVL",
                "Lvl",
                "severity_text",
                "Severity_Text",
                "SEVERITY_TEXT",
            ]
            .map(String::from)
            .to_vec(),
            log_level_from_json_max_depth: 2,
            otel_keep_identifying_resource_attributes: false,
            otel_promote_scope_metadata: false,
            otlp_config: OtlpConfig::default(),
        }
    }
}

impl Limits {
    /// The stream limit one ingester enforces: the stricter non-zero of the
    /// local and global limits (0: unlimited).
    pub fn effective_max_streams(&self) -> usize {
        match (self.max_streams_per_user, self.max_global_streams_per_user) {
            (0, g) => g,
            (l, 0) => l,
            (l, g) => l.min(g),
        }
    }

    /// The oldest timestamp (ms) a query may return under `retention`
    /// (0: forever), given the current time.
    pub fn retention_floor_ms(retention: Duration, now_ms: i64) -> i64 {
        if retention.is_zero() {
            i64::MIN
        } else {
            now_ms.saturating_sub(retention.as_millis() as i64)
        }
    }
}

/// Errors reading the runtime configuration.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("reading runtime config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("runtime config: {0}")]
    Parse(String),
    #[error("runtime config: limits of tenant {tenant:?}: {message}")]
    Tenant { tenant: String, message: String },
}

/// The runtime configuration file's layout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeConfig {
    #[serde(default)]
    overrides: HashMap<String, Yaml>,
}

static RELOAD_OK: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_runtime_config_last_reload_successful",
        "1 if the last read of the runtime configuration file succeeded.",
    )
    .expect("valid metric")
});
static RELOADS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "strata_runtime_config_reloads_total",
        "Runtime configuration files read and applied.",
    )
    .expect("valid metric")
});

/// False when the last read of the runtime configuration file failed (the
/// previous overrides stay in force); true before any read.
pub fn last_reload_successful() -> bool {
    RELOADS.get() == 0 || RELOAD_OK.get() == 1
}

/// Registers this crate's metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(RELOAD_OK.clone()))?;
    r.register(Box::new(RELOADS.clone()))?;
    Ok(())
}

/// The defaults plus per-tenant overrides; cheap to query on every request.
#[derive(Debug)]
pub struct Overrides {
    defaults: Arc<Limits>,
    tenants: RwLock<HashMap<String, Arc<Limits>>>,
}

impl Overrides {
    /// Every tenant gets `defaults` until overrides are loaded.
    pub fn new(defaults: Limits) -> Self {
        Self {
            defaults: Arc::new(defaults),
            tenants: RwLock::new(HashMap::new()),
        }
    }

    /// The limits in effect for `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> Arc<Limits> {
        self.tenants
            .read()
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// Replaces all overrides with those of a runtime configuration
    /// document; each tenant's entry is applied on top of the defaults.
    /// On error nothing changes. Returns the number of tenants overridden.
    pub fn apply_runtime_config(&self, yaml: &str) -> Result<usize, LimitsError> {
        let cfg: RuntimeConfig = if yaml.trim().is_empty() {
            RuntimeConfig::default()
        } else {
            serde_yaml::from_str(yaml).map_err(|e| LimitsError::Parse(e.to_string()))?
        };
        let base =
            serde_yaml::to_value(&*self.defaults).map_err(|e| LimitsError::Parse(e.to_string()))?;
        let mut tenants = HashMap::with_capacity(cfg.overrides.len());
        for (tenant, over) in cfg.overrides {
            let mut merged = base.clone();
            match (&mut merged, over) {
                (Yaml::Mapping(m), Yaml::Mapping(o)) => {
                    for (k, v) in o {
                        m.insert(k, v);
                    }
                }
                (_, Yaml::Null) => {}
                (_, other) => {
                    return Err(LimitsError::Tenant {
                        tenant,
                        message: format!("expected a mapping of limits, got {other:?}"),
                    });
                }
            }
            let limits: Limits =
                serde_yaml::from_value(merged).map_err(|e| LimitsError::Tenant {
                    tenant: tenant.clone(),
                    message: e.to_string(),
                })?;
            tenants.insert(tenant, Arc::new(limits));
        }
        let n = tenants.len();
        *self.tenants.write() = tenants;
        Ok(n)
    }

    /// Reads `path` now (an error here is fatal for start-up), then again
    /// every `period` in the background, applying it when its content changed.
    pub fn watch_file(
        self: &Arc<Self>,
        path: PathBuf,
        period: Duration,
    ) -> Result<tokio::task::JoinHandle<()>, LimitsError> {
        let text = std::fs::read_to_string(&path).map_err(|source| LimitsError::Read {
            path: path.clone(),
            source,
        })?;
        let n = self.apply_runtime_config(&text)?;
        RELOAD_OK.set(1);
        RELOADS.inc();
        tracing::info!(path = %path.display(), tenants = n, "runtime config loaded");
        let this = self.clone();
        Ok(tokio::spawn(async move {
            let mut last = text;
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let text = match tokio::fs::read_to_string(&path).await {
                    Ok(t) => t,
                    Err(e) => {
                        RELOAD_OK.set(0);
                        tracing::error!(path = %path.display(), error = %e, "reading runtime config failed; keeping the previous limits");
                        continue;
                    }
                };
                if text == last {
                    RELOAD_OK.set(1);
                    continue;
                }
                match this.apply_runtime_config(&text) {
                    Ok(n) => {
                        RELOAD_OK.set(1);
                        RELOADS.inc();
                        tracing::info!(path = %path.display(), tenants = n, "runtime config reloaded");
                        last = text;
                    }
                    Err(e) => {
                        RELOAD_OK.set(0);
                        tracing::error!(path = %path.display(), error = %e, "runtime config rejected; keeping the previous limits");
                    }
                }
            }
        }))
    }
}

/// Per-tenant token buckets for `ingestion_rate` / `ingestion_burst_size`.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// Takes `n` samples from the tenant's bucket; false (and nothing taken)
    /// when the bucket does not hold that many. A rate of 0 is unlimited.
    pub fn allow(&self, tenant: &str, n: usize, rate: f64, burst: usize) -> bool {
        if rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(tenant) {
            buckets.insert(
                tenant.to_string(),
                Bucket {
                    tokens: burst as f64,
                    last: now,
                },
            );
        }
        let Some(b) = buckets.get_mut(tenant) else {
            return true;
        };
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst as f64);
        b.last = now;
        if b.tokens >= n as f64 {
            b.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stricter_stream_limit_applies() {
        let mut l = Limits::default();
        assert_eq!(l.effective_max_streams(), 5000);
        l.max_streams_per_user = 100;
        assert_eq!(l.effective_max_streams(), 100);
        l.max_global_streams_per_user = 0;
        assert_eq!(l.effective_max_streams(), 100);
        l.max_streams_per_user = 0;
        assert_eq!(l.effective_max_streams(), 0);
    }

    #[test]
    fn tenant_overrides_apply_on_top_of_defaults() {
        let o = Overrides::new(Limits::default());
        let n = o
            .apply_runtime_config(
                "overrides:\n  team-a:\n    max_label_names_per_series: 5\n    max_total_query_length: 1h\n  team-b: {}\n",
            )
            .unwrap();
        assert_eq!(n, 2);
        let a = o.for_tenant("team-a");
        assert_eq!(a.max_label_names_per_series, 5);
        assert_eq!(a.max_total_query_length, Duration::from_secs(3600));
        assert_eq!(
            a.max_label_value_length,
            Limits::default().max_label_value_length
        );
        assert_eq!(*o.for_tenant("team-b"), Limits::default());
        assert_eq!(*o.for_tenant("other"), Limits::default());
    }

    #[test]
    fn otlp_settings_as_mimir_and_loki_write_them() {
        let o = Overrides::new(Limits::default());
        o.apply_runtime_config(
            r#"
overrides:
  a:
    otel_translation_strategy: UnderscoreEscapingWithoutSuffixes
    promote_otel_resource_attributes: " k8s.cluster.name, host.name ,"
    otlp_config:
      resource_attributes:
        ignore_defaults: true
        attributes_config:
          - action: index_label
            regex: "k8s\\..*"
      log_attributes:
        - action: drop
          attributes: [password]
  b:
    promote_otel_resource_attributes: [x.y]
"#,
        )
        .unwrap();
        let a = o.for_tenant("a");
        assert_eq!(
            a.otel_translation_strategy,
            OtelTranslationStrategy::UnderscoreEscapingWithoutSuffixes
        );
        assert_eq!(
            a.promote_otel_resource_attributes,
            ["k8s.cluster.name", "host.name"]
        );
        let rule = &a.otlp_config.resource_attributes.attributes_config[0];
        assert_eq!(rule.action, OtlpAction::IndexLabel);
        assert!(rule.matches("k8s.pod.name") && !rule.matches("xk8s.pod") && !rule.matches("host"));
        assert!(a.otlp_config.log_attributes[0].matches("password"));
        assert_eq!(o.for_tenant("b").promote_otel_resource_attributes, ["x.y"]);
        for bad in [
            "otel_translation_strategy: NoTranslation",
            "otlp_config: {log_attributes: [{action: drop}]}",
            "otlp_config: {log_attributes: [{action: drop, attributes: [a], regex: b}]}",
            "otlp_config: {log_attributes: [{action: drop, regex: \"(\"}]}",
            "otlp_config: {scope_attributes: [{action: index_label, attributes: [a]}]}",
        ] {
            let err = o
                .apply_runtime_config(&format!("overrides:\n  c:\n    {bad}\n"))
                .unwrap_err();
            assert!(err.to_string().contains("\"c\""), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bad_document_changes_nothing() {
        let o = Overrides::new(Limits::default());
        o.apply_runtime_config("overrides:\n  a:\n    ingestion_rate: 10\n")
            .unwrap();
        let e = o
            .apply_runtime_config("overrides:\n  a:\n    no_such_limit: 1\n")
            .unwrap_err();
        assert!(e.to_string().contains("no_such_limit"), "{e}");
        assert_eq!(o.for_tenant("a").ingestion_rate, 10.0);
        assert!(o.apply_runtime_config("overrides: [1, 2]").is_err());
        assert_eq!(o.for_tenant("a").ingestion_rate, 10.0);
        // An empty file removes every override.
        o.apply_runtime_config("").unwrap();
        assert_eq!(
            o.for_tenant("a").ingestion_rate,
            Limits::default().ingestion_rate
        );
    }

    #[test]
    fn rate_limiter_allows_the_burst_then_refuses() {
        let r = RateLimiter::default();
        assert!(r.allow("t", 100, 0.0, 0), "rate 0 is unlimited");
        assert!(r.allow("t", 600, 1.0, 1000));
        assert!(r.allow("t", 400, 1.0, 1000));
        assert!(!r.allow("t", 10, 1.0, 1000), "bucket is empty");
        assert!(
            r.allow("u", 1000, 1.0, 1000),
            "tenants have their own buckets"
        );
        assert!(
            !r.allow("v", 1001, 1.0, 1000),
            "more than the burst never fits"
        );
    }
}

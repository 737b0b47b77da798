//! The distributor: decodes Prometheus remote-write requests (and, in
//! [`logs`], Loki pushes), validates every
//! series against the tenant's limits, and hands the valid ones to the
//! ingester. Invalid series are dropped with a reason while the rest of the
//! batch is kept, as Mimir does; the caller turns the outcome into a 400 that
//! names what was rejected (Prometheus does not retry 4xx) or a 5xx for our
//! own faults (Prometheus retries those).

mod cost_attribution;
mod decoded;
mod exemplars;
mod level;
pub mod logs;
mod metadata;
pub mod otlp;
mod replicate;
mod rw2;

pub use decoded::DecodedWrite;
pub use rw2::decode_remote_write_v2;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use strata_ingester_client::{EncodedSeries, IngesterPool, PushLimits};
use strata_limits::{Overrides, RateLimiter};
use strata_model::{Exemplar, Label, Labels, METRIC_NAME, Sample, SeriesBatchBuilder};
use strata_ring::Ring;

pub use strata_limits::Limits;

/// Distributor settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DistributorConfig {
    /// Largest accepted request body, compressed or decompressed, in bytes.
    pub max_recv_msg_size: usize,
    /// Limits of this process, whatever the tenant (Mimir's instance limits).
    pub instance_limits: InstanceLimits,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self {
            max_recv_msg_size: 100 << 20,
            instance_limits: InstanceLimits::default(),
        }
    }
}

/// What one distributor process accepts at once (0: no limit).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct InstanceLimits {
    /// Push requests being handled at once.
    pub max_inflight_push_requests: usize,
    /// Bytes (request bodies) of the push requests being handled at once.
    pub max_inflight_push_requests_bytes: usize,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        Self {
            // Mimir's default request count; bytes bounded too (Mimir: 0),
            // to ten of the largest bodies a push may have.
            max_inflight_push_requests: 2000,
            max_inflight_push_requests_bytes: 1 << 30,
        }
    }
}

/// Why a whole request failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("request body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// A body whose translation would grow far beyond its size (413).
    #[error("{0}")]
    Expands(String),
    #[error("request body is not valid snappy: {0}")]
    Snappy(String),
    #[error("request body is not a valid remote-write protobuf: {0}")]
    Protobuf(String),
    #[error("{0}")]
    Decode(String),
    /// A body this server cannot read (415, so the sender can fall back).
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("storage error: {0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "the request has been rejected because the tenant exceeded the ingestion rate limit, set to {rate} items/s with a maximum allowed burst of {burst}; the request holds {samples} samples. Retry later, or ask for a higher ingestion_rate / ingestion_burst_size"
    )]
    RateLimited {
        rate: f64,
        burst: usize,
        samples: usize,
    },
    #[error(
        "Ingestion rate limit exceeded for user (limit: {rate_mb} MB/s, burst {burst_mb} MB) while attempting to ingest {bytes} bytes of log lines; reduce log volume or ask for a higher ingestion_rate_mb / ingestion_burst_size_mb"
    )]
    LogRateLimited {
        rate_mb: f64,
        burst_mb: f64,
        bytes: usize,
    },
}

impl PushError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } | Self::Expands(_) => 413,
            Self::Snappy(_) | Self::Protobuf(_) | Self::Decode(_) => 400,
            Self::UnsupportedMediaType(_) => 415,
            Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
            Self::RateLimited { .. } | Self::LogRateLimited { .. } => 429,
        }
    }
}

/// A series dropped by validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Reason code, as in Mimir's `cortex_discarded_samples_total{reason}`.
    pub reason: &'static str,
    /// Human-readable message naming the series.
    pub message: String,
    pub samples: usize,
}

/// Result of a push that reached storage.
#[derive(Debug, Default, Clone)]
pub struct PushResult {
    pub accepted_samples: usize,
    /// Exemplars validated and written to the ingesters (out-of-order ones
    /// among them are dropped there).
    pub exemplars_written: usize,
    pub rejections: Vec<Rejection>,
}

impl PushResult {
    /// The response text for a partially rejected batch: counts per reason
    /// and the first few messages.
    pub fn rejection_summary(&self) -> Option<String> {
        if self.rejections.is_empty() {
            return None;
        }
        let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.rejections {
            *by_reason.entry(r.reason).or_default() += r.samples;
        }
        let total: usize = by_reason.values().sum();
        let counts: Vec<String> = by_reason.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut msg = format!(
            "accepted {} samples, rejected {} samples ({}); ",
            self.accepted_samples,
            total,
            counts.join(", ")
        );
        let shown: Vec<&str> = self
            .rejections
            .iter()
            .take(5)
            .map(|r| r.message.as_str())
            .collect();
        msg.push_str(&shown.join("; "));
        if self.rejections.len() > 5 {
            msg.push_str(&format!("; and {} more series", self.rejections.len() - 5));
        }
        Some(msg)
    }
}

static RECEIVED_SAMPLES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_distributor_received_samples_total",
            "Samples received in remote-write requests, per tenant.",
        ),
        &["user"],
    )
    .expect("valid metric definition")
});
static DISCARDED_SAMPLES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_discarded_samples_total",
            "Samples rejected before or at ingestion, per reason and tenant.",
        ),
        &["reason", "user"],
    )
    .expect("valid metric definition")
});

/// Registers the distributor's metrics with `registry`.
pub fn register_metrics(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(RECEIVED_SAMPLES.clone()))?;
    registry.register(Box::new(cost_attribution::COST_ATTRIBUTION.clone()))?;
    registry.register(Box::new(DISCARDED_SAMPLES.clone()))?;
    registry.register(Box::new(exemplars::DISCARDED_EXEMPLARS.clone()))?;
    registry.register(Box::new(metadata::RECEIVED_METADATA.clone()))?;
    registry.register(Box::new(metadata::DISCARDED_METADATA.clone()))?;
    registry.register(Box::new(logs::RECEIVED_LOG_BYTES.clone()))?;
    registry.register(Box::new(logs::DISCARDED_LOG_BYTES.clone()))?;
    Ok(())
}

/// The remote-write protobuf messages this server reads.
const REMOTE_WRITE_V1: &str = "prometheus.WriteRequest";
const REMOTE_WRITE_V2: &str = "io.prometheus.write.v2.Request";

/// The remote-write version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteWriteVersion {
    V1,
    V2,
}

/// Checks a remote-write request's `Content-Type` and `Content-Encoding`
/// as Prometheus's receiver does: `application/x-protobuf` (the default
/// when absent) carrying `proto=prometheus.WriteRequest` (1.0, the default
/// when no `proto` is given) or `proto=io.prometheus.write.v2.Request`
/// (2.0), snappy-compressed. Anything else is 415, so a sender can fall
/// back instead of having its data dropped.
pub fn check_remote_write_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<RemoteWriteVersion, PushError> {
    let content_type = content_type.map_or("application/x-protobuf", str::trim);
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or("").trim();
    if media != "application/x-protobuf" {
        return Err(PushError::UnsupportedMediaType(format!(
            "expected application/x-protobuf as the first (media) part, got {content_type} content-type"
        )));
    }
    let mut proto = REMOTE_WRITE_V1;
    for param in parts {
        let Some((key, value)) = param.split_once('=') else {
            return Err(PushError::UnsupportedMediaType(format!(
                "as per https://www.rfc-editor.org/rfc/rfc9110#parameter expected parameters to be key-values, got {param} in {content_type} content-type"
            )));
        };
        if key.trim() == "proto" {
            proto = value.trim();
            break;
        }
    }
    let version = match proto {
        REMOTE_WRITE_V1 => RemoteWriteVersion::V1,
        REMOTE_WRITE_V2 => RemoteWriteVersion::V2,
        other => {
            return Err(PushError::UnsupportedMediaType(format!(
                "{other} protobuf message is not accepted by this server; accepted [{REMOTE_WRITE_V1}, {REMOTE_WRITE_V2}]"
            )));
        }
    };
    match content_encoding.map(str::trim) {
        None | Some("") | Some("snappy") => Ok(version),
        Some(other) => Err(PushError::UnsupportedMediaType(format!(
            "{other} encoding (compression) is not accepted by this server; only snappy is acceptable"
        ))),
    }
}

/// Decompresses (snappy block format) and decodes a remote-write 1.0 body.
pub fn decode_remote_write(body: &[u8], max_size: usize) -> Result<DecodedWrite, PushError> {
    if body.len() > max_size {
        return Err(PushError::TooLarge {
            size: body.len(),
            limit: max_size,
        });
    }
    let raw = decompress_snappy(body, max_size)?;
    DecodedWrite::decode_v1(&raw)
}

/// Decompresses a snappy block-format body, refusing (413) one that would
/// decompress beyond `max_size` before allocating it.
pub(crate) fn decompress_snappy(body: &[u8], max_size: usize) -> Result<Vec<u8>, PushError> {
    let len = snap::raw::decompress_len(body).map_err(|e| PushError::Snappy(e.to_string()))?;
    if len > max_size {
        return Err(PushError::TooLarge {
            size: len,
            limit: max_size,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| PushError::Snappy(e.to_string()))
}

/// Decompresses a gzip body, refusing (413) one that decompresses beyond
/// `max_size` without holding more than that in memory.
pub(crate) fn decompress_gzip(body: &[u8], max_size: usize) -> Result<Vec<u8>, PushError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(max_size as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| PushError::Decode(format!("request body is not valid gzip: {e}")))?;
    if out.len() > max_size {
        return Err(PushError::TooLarge {
            size: out.len(),
            limit: max_size,
        });
    }
    Ok(out)
}

/// True for a valid legacy Prometheus metric name `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// True for a valid label name `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn series_text(labels: &[(&str, &str)]) -> String {
    pairs_text(labels.iter().copied())
}

/// `{name="value", ...}` with values cut at 200 characters, for messages.
fn pairs_text<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::from("{");
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let value: String = value.chars().take(200).collect();
        s.push_str(&format!("{name}={value:?}"));
    }
    s.push('}');
    s
}

/// Validates one series' labels; on failure, (reason, message).
pub fn validate_labels(
    labels: &[(&str, &str)],
    limits: &Limits,
) -> Result<(), (&'static str, String)> {
    let series = || series_text(labels);
    let name = labels
        .iter()
        .find(|l| l.0 == METRIC_NAME)
        .map(|l| l.1)
        .unwrap_or("");
    if name.is_empty() {
        return Err((
            "missing_metric_name",
            format!("series {} has no metric name", series()),
        ));
    }
    if !is_valid_metric_name(name) {
        return Err((
            "metric_name_invalid",
            format!("invalid metric name {name:?} in series {}", series()),
        ));
    }
    if labels.len() > limits.max_label_names_per_series {
        return Err((
            "max_label_names_per_series",
            format!(
                "series {} has {} labels, more than the limit of {}",
                series(),
                labels.len(),
                limits.max_label_names_per_series
            ),
        ));
    }
    for (i, &(name, value)) in labels.iter().enumerate() {
        if !is_valid_label_name(name) {
            return Err((
                "label_invalid",
                format!("invalid label name {:?} in series {}", name, series()),
            ));
        }
        if name.len() > limits.max_label_name_length {
            return Err((
                "label_name_too_long",
                format!(
                    "label name {:?} is longer than {} bytes in series {}",
                    name,
                    limits.max_label_name_length,
                    series()
                ),
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err((
                "label_value_too_long",
                format!(
                    "value of label {:?} is {} bytes, longer than {}, in series {}",
                    name,
                    value.len(),
                    limits.max_label_value_length,
                    series()
                ),
            ));
        }
        if i > 0 {
            let prev = labels[i - 1].0;
            if prev == name {
                return Err((
                    "duplicate_label_names",
                    format!("duplicate label name {:?} in series {}", name, series()),
                ));
            }
            if prev > name {
                return Err((
                    "labels_not_sorted",
                    format!(
                        "labels are not sorted by name ({:?} before {:?}) in series {}",
                        prev,
                        name,
                        series()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The write path: validation, then replication to the series' ingesters.
pub struct Distributor {
    overrides: Arc<Overrides>,
    rate_limiter: RateLimiter,
    log_rate_limiter: RateLimiter,
    ring: Arc<Ring>,
    ingesters: Arc<IngesterPool>,
    /// Old data written here makes this process's query-frontend cache
    /// forget the tenant's answers.
    write_generations: Option<Arc<strata_model::freshness::WriteGenerations>>,
}

impl Distributor {
    /// A distributor writing metrics and logs to the ring's ingesters
    /// (reached through `ingesters`) under each tenant's limits.
    pub fn new(overrides: Arc<Overrides>, ring: Arc<Ring>, ingesters: Arc<IngesterPool>) -> Self {
        Self {
            overrides,
            rate_limiter: RateLimiter::default(),
            log_rate_limiter: RateLimiter::default(),
            ring,
            ingesters,
            write_generations: None,
        }
    }

    /// Records the age of what is written in `generations` (shared with
    /// this process's query-frontend).
    pub fn with_write_generations(
        mut self,
        generations: Arc<strata_model::freshness::WriteGenerations>,
    ) -> Self {
        self.write_generations = Some(generations);
        self
    }

    /// Tells the query-frontend of this process that `tenant` was
    /// written data as old as `oldest_ms`.
    pub(crate) fn record_write(&self, tenant: &str, oldest_ms: i64) {
        if let Some(g) = &self.write_generations {
            g.record(tenant, oldest_ms);
        }
    }

    /// Validates and stores a decoded request for `tenant`.
    pub async fn push(&self, tenant: &str, req: DecodedWrite) -> Result<PushResult, PushError> {
        let limits = self.overrides.for_tenant(tenant);
        let total = req.total_samples();
        if !self.rate_limiter.allow(
            tenant,
            total,
            limits.ingestion_rate,
            limits.ingestion_burst_size,
        ) {
            DISCARDED_SAMPLES
                .with_label_values(&["rate_limited", tenant])
                .inc_by(total as u64);
            return Err(PushError::RateLimited {
                rate: limits.ingestion_rate,
                burst: limits.ingestion_burst_size,
                samples: total,
            });
        }
        let now = strata_model::now_ms();
        let max_t = now + limits.creation_grace_period.as_millis() as i64;
        let mut result = PushResult::default();
        // The accepted series share the request's strings: no label is
        // copied between decoding and the ingester's head.
        let mut batch = SeriesBatchBuilder::new(req.strings.clone());
        batch.reserve(req.series.len(), req.labels.len(), req.samples.len());
        let keep_exemplars = limits.max_global_exemplars_per_user > 0;
        let mut exemplar_batch: Vec<(Labels, Exemplar)> = Vec::new();
        let mut attributed = cost_attribution::RequestCounts::new(&limits);
        // Scratch: one series' labels as text, and its kept samples.
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let mut samples: Vec<Sample> = Vec::new();
        for ts in &req.series {
            let spans = req.label_spans(ts);
            pairs.clear();
            pairs.extend(spans.iter().map(|l| (req.str(l.name), req.str(l.value))));
            let written = req.samples_of(ts);
            let exemplars = req.exemplars_of(ts);
            if ts.histograms > 0 {
                self.reject(
                    &mut result,
                    tenant,
                    "native_histogram_unsupported",
                    format!(
                        "series {} carries native histogram samples, which Strata does not store yet",
                        series_text(&pairs)
                    ),
                    ts.histograms as usize,
                );
            }
            if written.is_empty() && exemplars.is_empty() {
                continue;
            }
            if let Err((reason, message)) = validate_labels(&pairs, &limits) {
                self.reject(&mut result, tenant, reason, message, written.len());
                continue;
            }
            samples.clear();
            samples.extend(written.iter().filter(|s| s.t <= max_t));
            let too_new = written.len() - samples.len();
            if too_new > 0 {
                self.reject(
                    &mut result,
                    tenant,
                    "too_far_in_future",
                    format!(
                        "{too_new} samples of series {} are more than {} in the future",
                        series_text(&pairs),
                        humantime::format_duration(limits.creation_grace_period)
                    ),
                    too_new,
                );
            }
            if !samples.is_sorted_by_key(|s| s.t) {
                samples.sort_by_key(|s| s.t);
            }
            if let Some(a) = attributed.as_mut() {
                a.add(&pairs, written.len());
            }
            // A label set keeps no empty values.
            let kept = spans.iter().copied().filter(|l| !l.value.is_empty());
            if keep_exemplars && !exemplars.is_empty() {
                let labels = Labels::from_sorted(
                    kept.clone()
                        .map(|l| Label::new(req.str(l.name), req.str(l.value)))
                        .collect(),
                );
                for e in exemplars {
                    match exemplars::validate(e.clone()) {
                        Ok(e) => exemplar_batch.push((labels.clone(), e)),
                        Err(reason) => exemplars::DISCARDED_EXEMPLARS
                            .with_label_values(&[reason, tenant])
                            .inc(),
                    }
                }
            }
            if !samples.is_empty() {
                batch.push(kept, samples.iter().copied());
            }
        }
        drop(pairs);
        RECEIVED_SAMPLES
            .with_label_values(&[tenant])
            .inc_by(total as u64);
        if let Some(a) = attributed {
            cost_attribution::COST_ATTRIBUTION.record(tenant, a, &limits);
        }
        let DecodedWrite { metadata, .. } = req;
        if !metadata.is_empty() {
            self.push_metadata(tenant, metadata, &limits).await?;
        }
        result.exemplars_written = self.push_exemplars(tenant, exemplar_batch, &limits).await?;
        let batch = batch.build();
        if batch.is_empty() {
            return Ok(result);
        }
        let push_limits = PushLimits {
            out_of_order_time_window: limits.out_of_order_time_window,
            max_series: self.ingester_share(limits.max_global_series_per_user),
            ..Default::default()
        };
        let total = batch.total_samples();
        // Each series' samples are sorted: its first is its oldest.
        let oldest = batch
            .iter()
            .filter_map(|s| s.samples().first().map(|s| s.t))
            .min()
            .unwrap_or(i64::MAX);
        let owned_tenant = tenant.to_string();
        let encoded = Arc::new(EncodedSeries::default());
        let batch = Arc::new(batch);
        let rejected = self
            .replicate(tenant, batch.clone(), move |client, batch, indexes| {
                let tenant = owned_tenant.clone();
                let encoded = encoded.clone();
                async move {
                    client
                        .push(&tenant, &batch, &encoded, &indexes, push_limits)
                        .await
                        .map(|o| o.rejected)
                }
            })
            .await;
        // Whatever the outcome: a failed push may have reached some
        // replicas, and an extra bump only costs cache hits.
        self.record_write(tenant, oldest);
        let rejected = rejected?;
        let rejected_samples: usize = rejected.iter().map(|r| r.count).sum();
        result.accepted_samples = total.saturating_sub(rejected_samples);
        for r in rejected {
            let labels = batch.get(r.index);
            self.reject(
                &mut result,
                tenant,
                r.reason.as_str(),
                format!(
                    "{} samples of series {} rejected as {} (first at timestamp {})",
                    r.count,
                    pairs_text(labels.labels()),
                    r.reason.as_str(),
                    r.first_timestamp
                ),
                r.count,
            );
        }
        Ok(result)
    }

    fn reject(
        &self,
        result: &mut PushResult,
        tenant: &str,
        reason: &'static str,
        message: String,
        samples: usize,
    ) {
        DISCARDED_SAMPLES
            .with_label_values(&[reason, tenant])
            .inc_by(samples as u64);
        result.rejections.push(Rejection {
            reason,
            message,
            samples,
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn remote_write_content_types_as_prometheus() {
        let ok = |ct: Option<&str>, enc: Option<&str>| check_remote_write_headers(ct, enc);
        assert!(ok(None, None).is_ok());
        assert!(ok(Some("application/x-protobuf"), Some("snappy")).is_ok());
        assert!(
            ok(
                Some("application/x-protobuf;proto=prometheus.WriteRequest"),
                Some("snappy")
            )
            .is_ok()
        );
        assert_eq!(
            ok(
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                Some("snappy"),
            )
            .ok(),
            Some(RemoteWriteVersion::V2)
        );
        assert_eq!(ok(None, None).ok(), Some(RemoteWriteVersion::V1));
        let v3 = ok(
            Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
            Some("snappy"),
        )
        .unwrap_err();
        assert_eq!(v3.status(), 415);
        assert!(
            v3.to_string()
                .contains("io.prometheus.write.v3.Request protobuf message is not accepted"),
            "{v3}"
        );
        assert_eq!(
            ok(Some("application/json"), None).unwrap_err().status(),
            415
        );
        assert_eq!(
            ok(Some("application/x-protobuf;proto"), None)
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(ok(None, Some("gzip")).unwrap_err().status(), 415);
    }

    use super::*;

    fn pl<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        pairs.to_vec()
    }

    #[test]
    fn label_validation_cases() {
        let lim = Limits::default();
        assert!(validate_labels(&pl(&[("__name__", "up"), ("job", "x")]), &lim).is_ok());
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("job", "x")], "missing_metric_name"),
            (&[("__name__", "")], "missing_metric_name"),
            (&[("__name__", "1up")], "metric_name_invalid"),
            (&[("__name__", "up"), ("bad-name", "x")], "label_invalid"),
            (
                &[("__name__", "up"), ("a", "1"), ("a", "2")],
                "duplicate_label_names",
            ),
            (
                &[("__name__", "up"), ("b", "1"), ("a", "2")],
                "labels_not_sorted",
            ),
        ];
        for (labels, want) in cases {
            let err = validate_labels(&pl(labels), &lim).unwrap_err();
            assert_eq!(err.0, *want, "{labels:?}: {}", err.1);
        }
        let long = "v".repeat(3000);
        let err = validate_labels(&pl(&[("__name__", "up"), ("a", &long)]), &lim).unwrap_err();
        assert_eq!(err.0, "label_value_too_long");
        assert!(err.1.contains("up"), "message names the series: {}", err.1);
    }

    #[test]
    fn decode_errors_map_to_statuses() {
        assert_eq!(
            decode_remote_write(b"not snappy at all", 1000)
                .unwrap_err()
                .status(),
            400
        );
        let garbage = snap::raw::Encoder::new()
            .compress_vec(&[0xff, 0xff, 0xff])
            .unwrap();
        assert_eq!(
            decode_remote_write(&garbage, 1000).unwrap_err().status(),
            400
        );
        let big = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 5000])
            .unwrap();
        assert_eq!(decode_remote_write(&big, 1000).unwrap_err().status(), 413);
    }
}

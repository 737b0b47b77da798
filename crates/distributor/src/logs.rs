//! The log write path: decodes Loki push requests (snappy protobuf, JSON,
//! either optionally gzip-compressed), validates every stream against the
//! tenant's limits as Loki does, and hands the valid ones to the log
//! ingester. Invalid streams are dropped with a reason while the rest are
//! kept; the caller answers 400 naming what was dropped.

use std::sync::{Arc, LazyLock};

use prometheus::{IntCounterVec, Opts};
use prost::Message;
use serde::Deserialize;
use strata_ingester_client::LogPushOutcome;
use strata_model::logs::LogEntry;
use strata_model::{Label, Labels};
use strata_proto::loki::PushRequest;

use crate::{Distributor, PushError, Rejection, is_valid_label_name};

/// One pushed stream before validation: its label text and entries.
#[derive(Debug, Clone, PartialEq)]
pub struct RawStream {
    pub labels: String,
    pub entries: Vec<LogEntry>,
}

pub(crate) static RECEIVED_LOG_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_distributor_received_log_bytes_total",
            "Bytes of log lines received in push requests, per tenant.",
        ),
        &["user"],
    )
    .expect("valid metric definition")
});
pub(crate) static DISCARDED_LOG_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_discarded_log_bytes_total",
            "Bytes of log lines rejected before or at ingestion, per reason and tenant.",
        ),
        &["reason", "user"],
    )
    .expect("valid metric definition")
});

/// Body encodings a push may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFormat {
    /// `application/x-protobuf` (the default): snappy-compressed protobuf.
    Protobuf,
    /// `application/json`.
    Json,
}

impl PushFormat {
    /// The format a `Content-Type` names (protobuf unless it says JSON).
    pub fn from_content_type(ct: &str) -> Self {
        if ct.to_ascii_lowercase().contains("json") {
            Self::Json
        } else {
            Self::Protobuf
        }
    }
}

/// Decodes a push body; `gzip` when `Content-Encoding: gzip`.
pub fn decode_loki_push(
    body: &[u8],
    format: PushFormat,
    gzip: bool,
    max_size: usize,
) -> Result<Vec<RawStream>, PushError> {
    if body.len() > max_size {
        return Err(PushError::TooLarge {
            size: body.len(),
            limit: max_size,
        });
    }
    let unzipped;
    let body = if gzip {
        unzipped = crate::decompress_gzip(body, max_size)?;
        unzipped.as_slice()
    } else {
        body
    };
    match format {
        PushFormat::Json => decode_json(body),
        PushFormat::Protobuf => {
            let raw = crate::decompress_snappy(body, max_size)?;
            let req = PushRequest::decode(raw.as_slice()).map_err(|e| {
                PushError::Decode(format!(
                    "request body is not a valid Loki push protobuf: {e}"
                ))
            })?;
            Ok(req
                .streams
                .into_iter()
                .map(|s| RawStream {
                    labels: s.labels,
                    entries: s
                        .entries
                        .into_iter()
                        .map(|e| {
                            let ts = e
                                .timestamp
                                .map(|t| {
                                    t.seconds
                                        .saturating_mul(1_000_000_000)
                                        .saturating_add(i64::from(t.nanos))
                                })
                                .unwrap_or(0);
                            LogEntry {
                                ts,
                                line: e.line,
                                metadata: Labels::new(
                                    e.structured_metadata
                                        .into_iter()
                                        .map(|p| Label::new(p.name, p.value))
                                        .collect(),
                                ),
                            }
                        })
                        .collect(),
                })
                .collect())
        }
    }
}

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

/// Loki's JSON stream: `stream` + `values` (v1), or `labels` + `entries` (legacy).
#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    entries: Vec<LegacyEntry>,
}

#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(alias = "timestamp")]
    ts: String,
    line: String,
}

fn decode_json(body: &[u8]) -> Result<Vec<RawStream>, PushError> {
    let push: JsonPush = serde_json::from_slice(body).map_err(|e| {
        PushError::Decode(format!("request body is not a valid Loki push JSON: {e}"))
    })?;
    let mut out = Vec::with_capacity(push.streams.len());
    for (i, s) in push.streams.into_iter().enumerate() {
        let labels = match (&s.stream, &s.labels) {
            (Some(map), _) => {
                let inner: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
            (None, Some(l)) => l.clone(),
            (None, None) => String::new(),
        };
        let mut entries = Vec::with_capacity(s.values.len() + s.entries.len());
        for v in s.values {
            entries.push(json_value_entry(i, &v)?);
        }
        for e in s.entries {
            let ts = chrono::DateTime::parse_from_rfc3339(&e.ts)
                .ok()
                .and_then(|d| d.timestamp_nanos_opt())
                .ok_or_else(|| {
                    PushError::Decode(format!("stream {i}: timestamp {:?} is not RFC 3339", e.ts))
                })?;
            entries.push(LogEntry {
                ts,
                line: e.line,
                metadata: Labels::default(),
            });
        }
        out.push(RawStream { labels, entries });
    }
    Ok(out)
}

fn json_value_entry(stream: usize, v: &[serde_json::Value]) -> Result<LogEntry, PushError> {
    let bad = |why: &str| PushError::Decode(format!("stream {stream}: {why}"));
    let ts = match v.first() {
        Some(serde_json::Value::String(s)) => s
            .parse::<i64>()
            .map_err(|_| bad(&format!("timestamp {s:?} is not integer nanoseconds")))?,
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| bad("timestamp is not integer nanoseconds"))?,
        _ => return Err(bad("each value must be [\"<unix ns>\", \"<line>\"]")),
    };
    let line = match v.get(1) {
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => return Err(bad("each value must be [\"<unix ns>\", \"<line>\"]")),
    };
    let metadata = match v.get(2) {
        None | Some(serde_json::Value::Null) => Labels::default(),
        Some(serde_json::Value::Object(m)) => Labels::new(
            m.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok(Label::new(k.clone(), s.clone())),
                    _ => Err(bad("structured metadata values must be strings")),
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(bad("structured metadata must be a JSON object")),
    };
    if v.len() > 3 {
        return Err(bad("a value has at most 3 elements"));
    }
    Ok(LogEntry { ts, line, metadata })
}

/// Outcome of a log push.
#[derive(Debug, Default, Clone)]
pub struct LogPushResult {
    pub accepted_entries: usize,
    pub rejections: Vec<Rejection>,
}

impl LogPushResult {
    /// HTTP status when something was dropped: 429 for per-tenant stream
    /// limits (a retry may succeed once streams go idle), 400 otherwise.
    pub fn rejection_status(&self) -> u16 {
        if self.rejections.iter().any(|r| r.reason == "stream_limit") {
            429
        } else {
            400
        }
    }

    /// Response text when something was dropped: counts and the first messages.
    pub fn rejection_summary(&self) -> Option<String> {
        crate::PushResult {
            accepted_samples: self.accepted_entries,
            rejections: self.rejections.clone(),
            ..Default::default()
        }
        .rejection_summary()
        .map(|s| s.replace(" samples", " entries"))
    }
}

impl Distributor {
    /// Validates and stores pushed log streams for `tenant`.
    pub async fn push_logs(
        &self,
        tenant: &str,
        streams: Vec<RawStream>,
        now_ns: i64,
    ) -> Result<LogPushResult, PushError> {
        let limits = self.overrides.for_tenant(tenant);
        // Structured metadata costs what lines cost (Loki's entry size).
        let total_bytes: usize = streams
            .iter()
            .flat_map(|s| s.entries.iter().map(LogEntry::total_size))
            .sum();
        RECEIVED_LOG_BYTES
            .with_label_values(&[tenant])
            .inc_by(total_bytes as u64);
        let mut result = LogPushResult::default();
        let reject = |result: &mut LogPushResult,
                      reason: &'static str,
                      message: String,
                      n: usize,
                      bytes: usize| {
            DISCARDED_LOG_BYTES
                .with_label_values(&[reason, tenant])
                .inc_by(bytes as u64);
            result.rejections.push(Rejection {
                reason,
                message,
                samples: n,
            });
        };
        let oldest = if limits.reject_old_samples {
            now_ns.saturating_sub(limits.reject_old_samples_max_age.as_nanos() as i64)
        } else {
            i64::MIN
        };
        let newest = now_ns.saturating_add(limits.creation_grace_period.as_nanos() as i64);
        let mut valid: Vec<(Labels, Vec<LogEntry>)> = Vec::with_capacity(streams.len());
        let mut texts: Vec<String> = Vec::with_capacity(streams.len());
        for s in streams {
            let bytes: usize = s.entries.iter().map(LogEntry::total_size).sum();
            let n = s.entries.len();
            let labels = match validate_stream_labels(&s.labels, &limits) {
                Ok(l) => l,
                Err((reason, msg)) => {
                    reject(&mut result, reason, msg, n, bytes);
                    continue;
                }
            };
            let mut keep = Vec::with_capacity(n);
            for e in s.entries {
                let problem = if limits.max_line_size > 0 && e.line.len() > limits.max_line_size {
                    Some((
                        "line_too_long",
                        format!(
                            "max entry size '{}' bytes exceeded for stream '{}' while adding an entry with length '{}' bytes",
                            limits.max_line_size,
                            s.labels,
                            e.line.len()
                        ),
                    ))
                } else if let Some(problem) = check_structured_metadata(&e, &s.labels, &limits) {
                    Some(problem)
                } else if e.ts < oldest {
                    Some((
                        "greater_than_max_sample_age",
                        format!(
                            "entry for stream '{}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                            s.labels,
                            fmt_ns(e.ts),
                            fmt_ns(oldest)
                        ),
                    ))
                } else if e.ts > newest {
                    Some((
                        "too_far_in_future",
                        format!(
                            "entry for stream '{}' has timestamp too new: {}",
                            s.labels,
                            fmt_ns(e.ts)
                        ),
                    ))
                } else {
                    None
                };
                match problem {
                    Some((reason, msg)) => reject(&mut result, reason, msg, 1, e.total_size()),
                    None => keep.push(e),
                }
            }
            if !keep.is_empty() {
                texts.push(s.labels);
                valid.push((labels, keep));
            }
        }
        if valid.is_empty() {
            return Ok(result);
        }
        // As Loki: the rate limit counts what passed validation.
        let valid_bytes: usize = valid
            .iter()
            .flat_map(|(_, entries)| entries.iter().map(LogEntry::total_size))
            .sum();
        let rate = limits.ingestion_rate_mb * 1024.0 * 1024.0;
        let burst = (limits.ingestion_burst_size_mb * 1024.0 * 1024.0) as usize;
        if !self
            .log_rate_limiter
            .allow(tenant, valid_bytes, rate, burst)
        {
            DISCARDED_LOG_BYTES
                .with_label_values(&["rate_limited", tenant])
                .inc_by(valid_bytes as u64);
            return Err(PushError::LogRateLimited {
                rate_mb: limits.ingestion_rate_mb,
                burst_mb: limits.ingestion_burst_size_mb,
                bytes: valid_bytes,
            });
        }
        // After the rate limit: as in Loki, the added field costs nothing.
        if limits.discover_log_levels {
            for (labels, entries) in valid.iter_mut() {
                for e in entries.iter_mut() {
                    if let Some(level) = crate::level::detect(
                        labels,
                        &e.metadata,
                        &e.line,
                        &limits.log_level_fields,
                        limits.log_level_from_json_max_depth,
                    ) {
                        // Inserted in place: the metadata is already sorted.
                        let at = e
                            .metadata
                            .iter()
                            .position(|l| l.name.as_str() > crate::level::LEVEL_FIELD)
                            .unwrap_or(e.metadata.len());
                        let mut metadata = Vec::with_capacity(e.metadata.len() + 1);
                        metadata.extend(e.metadata.iter().take(at).cloned());
                        metadata.push(Label::new(crate::level::LEVEL_FIELD, level));
                        metadata.extend(e.metadata.iter().skip(at).cloned());
                        e.metadata = Labels::from_sorted(metadata);
                    }
                }
            }
        }
        let max_streams = match (
            self.ingester_share(limits.max_global_streams_per_user),
            limits.max_streams_per_user,
        ) {
            (0, local) => local,
            (global, 0) => global,
            (global, local) => global.min(local),
        };
        let total: usize = valid.iter().map(|(_, e)| e.len()).sum();
        let oldest_ns = valid
            .iter()
            .flat_map(|(_, e)| e.iter().map(|e| e.ts))
            .min()
            .unwrap_or(i64::MAX);
        let owned_tenant = tenant.to_string();
        let rejected = self
            .replicate(tenant, Arc::new(valid), move |client, batch, indexes| {
                let tenant = owned_tenant.clone();
                async move {
                    client
                        .push_logs(&tenant, &batch, &indexes, max_streams)
                        .await
                        .map(|o| o.rejected)
                }
            })
            .await;
        // Whatever the outcome: some replicas may have the entries.
        self.record_write(tenant, oldest_ns.div_euclid(1_000_000));
        let rejected = rejected?;
        let outcome = LogPushOutcome {
            accepted: total - rejected.iter().map(|r| r.count).sum::<usize>().min(total),
            rejected,
        };
        result.accepted_entries = outcome.accepted;
        for r in outcome.rejected {
            let labels = texts.get(r.index).map(String::as_str).unwrap_or("");
            let msg = match r.reason {
                strata_ingester_client::LogRejectReason::StreamLimit => format!(
                    "Maximum active stream limit exceeded ({} streams) when adding stream '{labels}'; reduce the number of streams or ask for a higher max_global_streams_per_user",
                    max_streams
                ),
                strata_ingester_client::LogRejectReason::TooFarBehind => format!(
                    "entry too far behind: entry with timestamp {} for stream '{labels}' is older than the stream's newest entry minus the out-of-order window",
                    fmt_ns(r.first_timestamp)
                ),
                strata_ingester_client::LogRejectReason::OutOfBounds => format!(
                    "entry out of bounds: entry with timestamp {} for stream '{labels}' belongs to a time range already written to a block",
                    fmt_ns(r.first_timestamp)
                ),
            };
            reject(&mut result, r.reason.as_str(), msg, r.count, 0);
        }
        Ok(result)
    }
}

fn fmt_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    .unwrap_or_else(|| ns.to_string())
}

/// Loki's structured metadata checks: size and count limits, and names that
/// a query can address.
fn check_structured_metadata(
    e: &LogEntry,
    stream: &str,
    limits: &strata_limits::Limits,
) -> Option<(&'static str, String)> {
    let (size, count) = (e.metadata_size(), e.metadata.len());
    if limits.max_structured_metadata_size > 0 && size > limits.max_structured_metadata_size {
        return Some((
            "structured_metadata_too_large",
            format!(
                "stream '{stream}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.",
                limits.max_structured_metadata_size
            ),
        ));
    }
    if limits.max_structured_metadata_entries_count > 0
        && count > limits.max_structured_metadata_entries_count
    {
        return Some((
            "structured_metadata_too_many",
            format!(
                "stream '{stream}' has too many structured metadata labels: '{count}', limit: '{}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.",
                limits.max_structured_metadata_entries_count
            ),
        ));
    }
    if e.metadata.iter().any(|l| l.name.is_empty()) {
        return Some((
            "invalid_structured_metadata",
            format!("stream '{stream}' has a structured metadata entry with an empty name"),
        ));
    }
    None
}

/// Parses and checks a stream's labels against the tenant's limits.
fn validate_stream_labels(
    text: &str,
    limits: &strata_limits::Limits,
) -> Result<Labels, (&'static str, String)> {
    if text.trim().is_empty() || text.trim() == "{}" {
        return Err((
            "missing_labels",
            "error at least one label pair is required per stream".into(),
        ));
    }
    let labels = strata_model::syntax::parse_stream_labels(text).map_err(|e| {
        (
            "invalid_labels",
            format!("error parsing labels '{text}' with error: {e}"),
        )
    })?;
    if labels.len() > limits.max_label_names_per_series {
        return Err((
            "max_label_names_per_series",
            format!(
                "entry for stream '{text}' has {} label names; limit {}",
                labels.len(),
                limits.max_label_names_per_series
            ),
        ));
    }
    for l in &labels {
        if !is_valid_label_name(&l.name) {
            return Err((
                "invalid_label",
                format!("invalid label name {:?} in stream '{text}'", l.name),
            ));
        }
        if l.name.len() > limits.max_label_name_length {
            return Err((
                "label_name_too_long",
                format!("stream '{text}' has label name too long: '{}'", l.name),
            ));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err((
                "label_value_too_long",
                format!("stream '{text}' has label value too long: '{}'", l.value),
            ));
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::loki::{EntryAdapter, LabelPairAdapter, StreamAdapter, Timestamp};

    #[test]
    fn decodes_protobuf_json_legacy_and_gzip() {
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{app="api"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 5,
                    }),
                    line: "hello".into(),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                }],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        let got = decode_loki_push(&body, PushFormat::Protobuf, false, 1 << 20).unwrap();
        assert_eq!(got[0].labels, r#"{app="api"}"#);
        assert_eq!(got[0].entries[0].ts, 1_700_000_000_000_000_005);
        assert_eq!(got[0].entries[0].metadata.get("trace_id"), Some("abc"));

        let json = br#"{"streams":[{"stream":{"app":"api","env":"p\"q"},"values":[["1700000000000000005","hi"],["1700000000000000006","there",{"user":"u1"}]]}]}"#;
        let got = decode_loki_push(json, PushFormat::Json, false, 1 << 20).unwrap();
        assert_eq!(
            strata_model::syntax::parse_stream_labels(&got[0].labels).unwrap(),
            Labels::from_pairs([("app", "api"), ("env", "p\"q")])
        );
        assert_eq!(got[0].entries[1].metadata.get("user"), Some("u1"));

        let legacy = br#"{"streams":[{"labels":"{app=\"x\"}","entries":[{"ts":"2023-11-14T22:13:20.5Z","line":"l"}]}]}"#;
        let got = decode_loki_push(legacy, PushFormat::Json, false, 1 << 20).unwrap();
        assert_eq!(got[0].entries[0].ts, 1_700_000_000_500_000_000);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, json).unwrap();
        let zipped = gz.finish().unwrap();
        assert_eq!(
            decode_loki_push(&zipped, PushFormat::Json, true, 1 << 20)
                .unwrap()
                .len(),
            1
        );

        for (body, fmt, gzip, status) in [
            (&b"{"[..], PushFormat::Json, false, 400),
            (
                &br#"{"streams":[{"stream":{"a":"b"},"values":[["x","l"]]}]}"#[..],
                PushFormat::Json,
                false,
                400,
            ),
            (&b"\xff\xff"[..], PushFormat::Protobuf, false, 400),
            (&b"nope"[..], PushFormat::Json, true, 400),
        ] {
            let e = decode_loki_push(body, fmt, gzip, 1 << 20).unwrap_err();
            assert_eq!(e.status(), status, "{e}");
        }
        assert_eq!(
            decode_loki_push(json, PushFormat::Json, false, 10)
                .unwrap_err()
                .status(),
            413
        );
    }

    #[test]
    fn stream_label_validation() {
        let l = strata_limits::Limits::default();
        assert!(validate_stream_labels(r#"{app="api"}"#, &l).is_ok());
        assert_eq!(
            validate_stream_labels("{}", &l).unwrap_err().0,
            "missing_labels"
        );
        assert_eq!(
            validate_stream_labels("{app=api}", &l).unwrap_err().0,
            "invalid_labels"
        );
        let long = format!("{{app=\"{}\"}}", "x".repeat(3000));
        assert_eq!(
            validate_stream_labels(&long, &l).unwrap_err().0,
            "label_value_too_long"
        );
    }
}

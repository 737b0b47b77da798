//! What Grafana's Logs Drilldown app asks of Loki beyond queries:
//! `detected_labels` (the stream labels worth grouping by, with their
//! cardinality) and `drilldown-limits` (the tenant's limits and which
//! optional features exist, so the app leaves out what is missing, such as
//! patterns).

use std::collections::{BTreeMap, BTreeSet};

use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use strata_limits::{OtlpAction, OtlpAttributeRule};

use crate::loki::{LokiError, LokiRequest, bounded, range_params, selector};
use crate::prometheus_duration;

/// Labels kept whatever their values, as Loki keeps them.
const ALWAYS_DETECTED: &[&str] = &["cluster", "namespace", "instance", "pod"];

/// `GET|POST /loki/api/v1/detected_labels`: the labels of the streams that
/// match `query` (all streams when it is empty) in the range, with the
/// number of distinct values of each; labels whose every value is a number
/// or a UUID are left out (they are identifiers, not groupings), except
/// 0/1 flags. `{}` when there are none, as Loki answers.
pub(crate) async fn detected_labels(r: LokiRequest) -> Result<Response, LokiError> {
    let (start, end) = range_params(&r.p)?;
    let query = r.p.get("query").filter(|q| !q.trim().is_empty());
    let matchers = selector(query)?;
    let streams = bounded(
        &r,
        r.state
            .log_querier
            .streams(&r.tenant, &matchers, start, end),
    )
    .await?;
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for stream in &streams {
        for l in stream.iter() {
            values.entry(&l.name).or_default().insert(&l.value);
        }
    }
    let detected: Vec<Json> = values
        .iter()
        .filter(|(name, values)| worth_grouping_by(name, values))
        .map(|(name, values)| json!({"label": name, "cardinality": values.len()}))
        .collect();
    if detected.is_empty() {
        return Ok(axum::Json(json!({})).into_response());
    }
    Ok(axum::Json(json!({ "detectedLabels": detected })).into_response())
}

fn worth_grouping_by(name: &str, values: &BTreeSet<&str>) -> bool {
    if ALWAYS_DETECTED.contains(&name) {
        return true;
    }
    if values.is_empty() {
        return false;
    }
    if values.len() <= 2 && values.iter().all(|v| matches!(*v, "0" | "1")) {
        return true;
    }
    !values
        .iter()
        .all(|v| v.parse::<f64>().is_ok() || is_uuid(v))
}

/// A UUID in the forms Go's `uuid.Parse` reads: hyphenated, 32 hex
/// digits, in braces or as a `urn:uuid:`.
fn is_uuid(v: &str) -> bool {
    let v = v.strip_prefix("urn:uuid:").unwrap_or(v);
    let v = v
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(v);
    let b = v.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit),
        36 => b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        }),
        _ => false,
    }
}

/// `GET /loki/api/v1/drilldown-limits`: the tenant's limits the app reads,
/// in Loki's names and formats (durations as `30d1h`, `0s` for none), and
/// the features Strata does not have marked off (no pattern ingester, no
/// level or service-name discovery at ingestion, no aggregated metrics).
pub(crate) async fn limits(r: LokiRequest) -> Response {
    let limits = r.state.log_querier.limits(&r.tenant);
    let duration = |d: std::time::Duration| {
        let text = prometheus_duration(d);
        if text.is_empty() {
            "0s".to_string()
        } else {
            text
        }
    };
    let rules = |rules: &[OtlpAttributeRule]| -> Vec<Json> {
        rules
            .iter()
            .map(|rule| {
                json!({
                    "Action": match rule.action {
                        OtlpAction::IndexLabel => "index_label",
                        OtlpAction::StructuredMetadata => "structured_metadata",
                        OtlpAction::Drop => "drop",
                    },
                    "Attributes": rule.attributes,
                    "Regex": rule.regex.as_ref().map(|r| r.source()).unwrap_or(""),
                })
            })
            .collect()
    };
    let otlp = &limits.otlp_config;
    axum::Json(json!({
        "limits": {
            "discover_log_levels": false,
            "discover_service_name": [],
            "log_level_fields": [],
            "max_entries_limit_per_query": limits.max_entries_limit_per_query,
            "max_line_size_truncate": false,
            "max_query_bytes_read": "0B",
            "max_query_length": duration(limits.max_query_length),
            "max_query_lookback": "0s",
            "max_query_range": "0s",
            "metric_aggregation_enabled": false,
            "otlp_config": {
                "ResourceAttributes": {
                    "IgnoreDefaults": otlp.resource_attributes.ignore_defaults,
                    "AttributesConfig": rules(&otlp.resource_attributes.attributes_config),
                },
                "ScopeAttributes": rules(&otlp.scope_attributes),
                "LogAttributes": rules(&otlp.log_attributes),
                "SeverityTextAsLabel": otlp.severity_text_as_label,
            },
            "pattern_persistence_enabled": false,
            "query_timeout": duration(r.state.log_querier.timeout()),
            "retention_period": duration(limits.logs_retention_period),
            "volume_enabled": true,
        },
        "pattern_ingester_enabled": false,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_not_groupings() {
        let set = |v: &[&'static str]| v.iter().copied().collect::<BTreeSet<&str>>();
        assert!(worth_grouping_by("app", &set(&["api", "web"])));
        assert!(worth_grouping_by("app", &set(&["api"])));
        assert!(!worth_grouping_by("code", &set(&["200", "500", "1.5"])));
        assert!(!worth_grouping_by(
            "trace",
            &set(&[
                "5b8efff7-9803-8103-d269-b633813fc60c",
                "{5b8efff798038103d269b633813fc60c}"
            ])
        ));
        assert!(worth_grouping_by("flag", &set(&["0", "1"])));
        assert!(!worth_grouping_by("n", &set(&["0", "1", "2"])));
        assert!(worth_grouping_by("pod", &set(&["1", "2"])));
        assert!(!worth_grouping_by("empty", &set(&[])));
        assert!(!is_uuid("5b8efff7-9803-8103-d269-b633813fc60"));
        assert!(is_uuid("urn:uuid:5b8efff7-9803-8103-d269-b633813fc60c"));
    }
}

//! What Grafana's Logs Drilldown app asks of Loki beyond queries:
//! `detected_labels` (the stream labels worth grouping by, with their
//! cardinality), `detected_fields` and `detected_field/<name>/values` (the
//! fields of the newest lines: structured metadata and what JSON or logfmt
//! parsing finds, with their types) and `drilldown-limits` (the tenant's
//! limits and which optional features exist, so the app leaves out what is
//! missing, such as patterns).

use std::collections::{BTreeMap, BTreeSet};

use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use strata_limits::{OtlpAction, OtlpAttributeRule};

use axum::extract::Path;
use strata_logql::pipeline::{LineFormat, line_fields};
use strata_logql::{Expr, QueryParams, QueryResult};
use strata_model::logs::Direction;

use crate::loki::{
    LokiError, LokiRequest, bad_request, bounded, query_error, range_params, selector,
};
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

/// A field seen in the sampled lines.
#[derive(Default)]
struct Field {
    /// The type of its value in the newest line that had it.
    kind: &'static str,
    values: BTreeSet<String>,
    /// `json`/`logfmt`, in the order first seen; none for structured metadata.
    parsers: Vec<&'static str>,
    json_path: Vec<String>,
}

/// A positive integer parameter, `default` when absent.
fn positive(r: &LokiRequest, names: &[&str], default: usize) -> Result<usize, LokiError> {
    let Some((name, raw)) = names.iter().find_map(|n| r.p.get(n).map(|v| (*n, v))) else {
        return Ok(default);
    };
    raw.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
        bad_request(format!(
            "invalid {name} parameter {raw:?}: must be a positive integer"
        ))
    })
}

/// The fields of the newest `line_limit` lines `query` returns (a log
/// query; its own pipeline runs first), at most `limit` of them.
async fn sample_fields(r: &LokiRequest) -> Result<(BTreeMap<String, Field>, usize), LokiError> {
    let query = r.query()?;
    if !matches!(strata_logql::parse(&query), Ok(Expr::Log(_))) {
        return Err(bad_request(format!(
            "{query:?} is not a log query: detected fields need log lines"
        )));
    }
    let (start, end) = range_params(&r.p)?;
    if end < start {
        return Err(bad_request(
            "end timestamp must not be before or equal to start time",
        ));
    }
    let line_limit = positive(r, &["line_limit"], 100)?;
    let limit = positive(r, &["limit", "field_limit"], 1000)?;
    let params = QueryParams {
        start_ns: start,
        end_ns: end,
        step_ns: 0,
        limit: line_limit,
        direction: Direction::Backward,
        instant: false,
        max_series: 500,
    };
    let (result, _) = r
        .state
        .log_querier
        .query(&r.tenant, &query, &params)
        .await
        .map_err(query_error)?;
    let QueryResult::Streams(streams) = result else {
        return Ok((BTreeMap::new(), limit));
    };
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    let note = |fields: &mut BTreeMap<String, Field>,
                name: &str,
                value: &str,
                parser: Option<&'static str>,
                json_path: &[String]| {
        if !fields.contains_key(name) && fields.len() >= limit {
            return;
        }
        let f = fields.entry(name.to_string()).or_default();
        f.kind = value_type(value);
        f.values.insert(value.to_string());
        if let Some(p) = parser
            && !f.parsers.contains(&p)
        {
            f.parsers.push(p);
        }
        if f.json_path.is_empty() {
            f.json_path = json_path.to_vec();
        }
    };
    // Oldest first, so the newest line decides a field's type.
    let mut entries: Vec<&strata_model::logs::LogEntry> =
        streams.iter().flat_map(|s| s.entries.iter()).collect();
    entries.sort_by_key(|e| e.ts);
    for e in entries {
        for l in e.metadata.iter() {
            note(&mut fields, &l.name, &l.value, None, &[]);
        }
        if let Some((format, parsed)) = line_fields(&e.line) {
            let parser = match format {
                LineFormat::Json => "json",
                LineFormat::Logfmt => "logfmt",
            };
            for f in parsed {
                if matches!(f.name.as_str(), "__error__" | "__error_details__") {
                    continue;
                }
                note(&mut fields, &f.name, &f.value, Some(parser), &f.json_path);
            }
        }
    }
    Ok((fields, limit))
}

/// The type Loki reports for a value: int, float, boolean, duration,
/// bytes (a number with a size unit) or string, tried in that order.
fn value_type(v: &str) -> &'static str {
    if v.parse::<i64>().is_ok() {
        "int"
    } else if v.parse::<f64>().is_ok() {
        "float"
    } else if matches!(
        v,
        "t" | "T" | "TRUE" | "true" | "True" | "f" | "F" | "FALSE" | "false" | "False"
    ) {
        "boolean"
    } else if is_go_duration(v) {
        "duration"
    } else if is_bytes(v) {
        "bytes"
    } else {
        "string"
    }
}

/// Go's `time.ParseDuration` syntax: `[-+]` then number-unit pairs
/// (`1h30m`, `1.5s`, `250ms`).
fn is_go_duration(v: &str) -> bool {
    let v = v.strip_prefix(['-', '+']).unwrap_or(v);
    if v.is_empty() {
        return false;
    }
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(*u))
            .max_by_key(|u| u.len())
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// A size with a unit, as go-humanize's `ParseBytes` reads one (`10KB`,
/// `1.5 MiB`, `512b`).
fn is_bytes(v: &str) -> bool {
    let digits = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(v.len());
    if digits == 0 || v[..digits].replace(',', "").parse::<f64>().is_err() {
        return false;
    }
    let unit = v[digits..].trim().to_ascii_lowercase();
    matches!(
        unit.as_str(),
        "b" | "kb"
            | "kib"
            | "k"
            | "ki"
            | "mb"
            | "mib"
            | "m"
            | "mi"
            | "gb"
            | "gib"
            | "g"
            | "gi"
            | "tb"
            | "tib"
            | "t"
            | "ti"
            | "pb"
            | "pib"
            | "p"
            | "pi"
            | "eb"
            | "eib"
            | "e"
            | "ei"
    )
}

/// `GET|POST /loki/api/v1/detected_fields`: the fields of the newest
/// `line_limit` (100) lines of `query`, each with its type, number of
/// distinct values, the parsers that found it (`null` for structured
/// metadata) and its JSON path; `{}` when there are none.
pub(crate) async fn detected_fields(r: LokiRequest) -> Result<Response, LokiError> {
    let (fields, limit) = sample_fields(&r).await?;
    if fields.is_empty() {
        return Ok(axum::Json(json!({})).into_response());
    }
    let fields: Vec<Json> = fields
        .into_iter()
        .map(|(name, f)| {
            let mut field = serde_json::Map::new();
            field.insert("label".into(), json!(name));
            field.insert("type".into(), json!(f.kind));
            field.insert("cardinality".into(), json!(f.values.len()));
            field.insert(
                "parsers".into(),
                if f.parsers.is_empty() {
                    Json::Null
                } else {
                    json!(f.parsers)
                },
            );
            if !f.json_path.is_empty() {
                field.insert("jsonPath".into(), json!(f.json_path));
            }
            Json::Object(field)
        })
        .collect();
    Ok(axum::Json(json!({"fields": fields, "limit": limit})).into_response())
}

/// `GET|POST /loki/api/v1/detected_field/<name>/values`: the distinct
/// values of one field in the same sample; `{}` when it has none.
pub(crate) async fn detected_field_values(
    Path(name): Path<String>,
    r: LokiRequest,
) -> Result<Response, LokiError> {
    let (mut fields, limit) = sample_fields(&r).await?;
    let Some(field) = fields.remove(&name) else {
        return Ok(axum::Json(json!({})).into_response());
    };
    let values: Vec<String> = field.values.into_iter().take(limit).collect();
    Ok(axum::Json(json!({"values": values, "limit": limit})).into_response())
}

/// `GET /loki/api/v1/drilldown-limits`: the tenant's limits the app reads,
/// in Loki's names and formats (durations as `30d1h`, `0s` for none), and
/// which optional features exist: patterns (clustered when asked, see
/// `patterns.rs`), but no level or service-name discovery at ingestion and
/// no aggregated metrics.
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
            "discover_log_levels": limits.discover_log_levels,
            "discover_service_name": [],
            "log_level_fields": limits.log_level_fields,
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
        "pattern_ingester_enabled": true,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_types_as_loki_detects_them() {
        for (v, want) in [
            ("200", "int"),
            ("-3", "int"),
            ("1.5", "float"),
            ("true", "boolean"),
            ("F", "boolean"),
            ("1h30m", "duration"),
            ("250ms", "duration"),
            ("1.5s", "duration"),
            ("10KB", "bytes"),
            ("1.5 MiB", "bytes"),
            ("GET", "string"),
            ("ms", "string"),
            ("1x", "string"),
            ("", "string"),
        ] {
            assert_eq!(value_type(v), want, "{v:?}");
        }
    }

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

//! `GET|POST /loki/api/v1/patterns`: the log patterns of a stream selector
//! over a range, as Loki's pattern API answers them (Logs Drilldown's
//! Patterns tab): `{"status":"success","data":[{"pattern","level","samples"}]}`
//! with samples as `[unix seconds, occurrences in the step]`.
//!
//! Loki clusters lines at ingestion and keeps three hours; Strata clusters
//! the newest lines of the requested range within the last three hours
//! when asked (at most [`MAX_LINES`] of them per source and in all), so one
//! request's work is bounded.

use axum::response::{IntoResponse, Response};
use serde_json::json;
use strata_logql::{Expr, Selection};
use strata_model::logs::Direction;
use strata_patterns::{PatternSet, level_of};

use crate::loki::{LokiError, LokiRequest, bad_request, bounded, range_params, step_param};

/// Most lines one request clusters: the newest in the range.
pub(crate) const MAX_LINES: usize = 100_000;

/// Patterns cover the most recent three hours, as Loki's pattern ingester
/// keeps them (`retain_for`): what a request reads stays bounded.
const WINDOW_NS: i64 = 3 * 3_600 * 1_000_000_000;

/// The structured-metadata field whose value is a line's level.
const LEVEL_FIELD: &str = "detected_level";

pub(crate) async fn patterns(r: LokiRequest) -> Result<Response, LokiError> {
    let query = r.query()?;
    let matchers = match strata_logql::parse(&query) {
        Ok(Expr::Log(l)) if l.pipeline.is_empty() => l.matchers,
        Ok(_) => return Err(bad_request("only label matchers are supported")),
        Err(e) => return Err(bad_request(e.to_string())),
    };
    let (start, end) = range_params(&r.p)?;
    let step = step_param(&r.p, start, end)?;
    let start = start.max(crate::loki::now_ns().saturating_sub(WINDOW_NS));
    if start >= end {
        return Ok(axum::Json(json!({"status": "success", "data": []})).into_response());
    }
    let selection = Selection {
        matchers,
        line_filters: Vec::new(),
        start_ns: start,
        end_ns: end,
        limit: Some((MAX_LINES, Direction::Backward)),
    };
    let streams = bounded(&r, r.state.log_querier.select(&r.tenant, &selection)).await?;
    let series = tokio::task::spawn_blocking(move || {
        // Each source kept its newest lines; keep the newest overall.
        let mut times: Vec<i64> = streams
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| e.ts))
            .collect();
        let cutoff = if times.len() > MAX_LINES {
            let at = times.len() - MAX_LINES;
            *times.select_nth_unstable(at).1
        } else {
            i64::MIN
        };
        drop(times);
        let mut set = PatternSet::new();
        for (i, stream) in streams.iter().enumerate() {
            for e in stream.entries.iter().filter(|e| e.ts >= cutoff) {
                let level = level_of(e.metadata.get(LEVEL_FIELD));
                set.add(i, level, e.ts.div_euclid(1_000_000), &e.line);
            }
        }
        set.series(
            start.div_euclid(1_000_000),
            end.div_euclid(1_000_000).saturating_add(1),
            step.div_euclid(1_000_000),
        )
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "pattern detection failed");
        crate::loki::internal_error("pattern detection failed")
    })?;
    let data: Vec<serde_json::Value> = series
        .into_iter()
        .map(|s| {
            json!({
                "pattern": s.pattern,
                "level": s.level,
                "samples": s.samples.iter().map(|(t, n)| json!([t, n])).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}

//! Range queries cut by time and put back together. A range query is
//! evaluated at each step independently of the others, so the steps of one
//! split interval (24 h by default, aligned to the epoch) form a query of
//! their own on the same grid, and the parts' series concatenate into the
//! whole answer exactly. Queries whose value at a step depends on the
//! query's own start or end (`@ start()`, `@ end()`, or any `@`) are not
//! split.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;
use serde_json::value::RawValue;

/// Which API a range query came through: its time unit and formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Prometheus: milliseconds, Unix seconds on the wire.
    Prometheus,
    /// Loki: nanoseconds.
    Loki,
}

impl Api {
    /// Units (ms or ns) per millisecond.
    pub fn per_ms(self) -> i64 {
        match self {
            Api::Prometheus => 1,
            Api::Loki => 1_000_000,
        }
    }

    /// A time of this API's unit as its wire parameter.
    pub fn format_time(self, t: i64) -> String {
        match self {
            Api::Prometheus => unix_secs(t),
            // RFC 3339 with nanoseconds: exact, whatever the magnitude (an
            // integer of 10 digits or fewer would be read as seconds).
            Api::Loki => {
                let secs = t.div_euclid(1_000_000_000);
                let nanos = t.rem_euclid(1_000_000_000) as u32;
                match chrono::DateTime::from_timestamp(secs, nanos) {
                    Some(d) => d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    None => t.to_string(),
                }
            }
        }
    }
}

fn unix_secs(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// Most parts one query is cut into; a finer split is not done.
pub const MAX_PARTS: usize = 1_000;

/// The parts of the steps `start, start + step, ... <= end`: one per split
/// interval that holds a step, each `(first step, last step)`. `None` when
/// the query should run whole (a single part, or too many).
pub fn parts(start: i64, end: i64, step: i64, interval: i64) -> Option<Vec<(i64, i64)>> {
    if step <= 0 || interval <= 0 || end < start {
        return None;
    }
    // In i128: no sum or difference of two i64 overflows it.
    let (start, end, step, interval) = (
        i128::from(start),
        i128::from(end),
        i128::from(step),
        i128::from(interval),
    );
    let last_step = start + (end - start) / step * step;
    let mut out = Vec::new();
    // One part per iteration: from a step to the last step of its window.
    let mut from = start;
    while from <= last_step {
        let window_end = (from.div_euclid(interval) + 1) * interval - 1;
        let to = if window_end >= last_step {
            last_step
        } else {
            from + (window_end - from) / step * step
        };
        out.push((i64::try_from(from).ok()?, i64::try_from(to).ok()?));
        if out.len() > MAX_PARTS {
            return None;
        }
        from = to + step;
    }
    (out.len() > 1).then_some(out)
}

/// Whether a PromQL query may be split: it parses and has no `@`.
pub fn promql_splittable(query: &str) -> bool {
    !query.contains('@') && promql_parser::parser::parse(query).is_ok()
}

/// Whether a LogQL query may be split: a metric query (log queries return
/// streams limited from one end, which parts would each cut) without `@`.
pub fn logql_splittable(query: &str) -> bool {
    !query.contains('@')
        && matches!(
            strata_logql::parse(query),
            Ok(strata_logql::Expr::Metric(_))
        )
}

/// A part's answer read in place: each series' labels and its points as
/// the querier wrote them (a range answer has a few numbers per point, and
/// a `Value` per point cost more than the query; see docs/benchmarks.md).
#[derive(Deserialize)]
pub(crate) struct PartAnswer<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    data: Option<PartData<'a>>,
    #[serde(default)]
    warnings: Vec<Json>,
    #[serde(default)]
    infos: Vec<Json>,
}

#[derive(Deserialize)]
struct PartData<'a> {
    #[serde(rename = "resultType", borrow)]
    result_type: Cow<'a, str>,
    #[serde(borrow, default)]
    result: Vec<PartSeries<'a>>,
    #[serde(default)]
    stats: Option<Json>,
}

#[derive(Deserialize)]
struct PartSeries<'a> {
    #[serde(borrow)]
    metric: &'a RawValue,
    #[serde(borrow, default)]
    values: Option<&'a RawValue>,
    #[serde(borrow, default)]
    histograms: Option<&'a RawValue>,
}

impl<'a> PartAnswer<'a> {
    /// Reads a querier's answer; `None` when it is not JSON in the shape of
    /// an answer.
    pub(crate) fn parse(body: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    /// Whether `body` is a successful answer (`Some(true)`), another
    /// answer (`Some(false)`) or no answer at all (`None`). Strata's
    /// queriers write the status first, so their successes are known
    /// without reading the rest.
    pub(crate) fn succeeded(body: &[u8]) -> Option<bool> {
        if body.starts_with(br#"{"status":"success","#) {
            return Some(true);
        }
        PartAnswer::parse(body).map(|a| a.is_success())
    }

    pub(crate) fn is_success(&self) -> bool {
        self.status == "success"
    }

    /// What the querier read for this part (`data.stats`).
    pub(crate) fn stats(&self) -> Option<&Json> {
        self.data.as_ref()?.stats.as_ref()
    }
}

/// One series of the merged answer: its labels as written and its parts'
/// point lists.
struct MergedSeries<'a> {
    metric: &'a RawValue,
    values: Vec<&'a RawValue>,
    histograms: Vec<&'a RawValue>,
}

/// Why parts could not be merged.
#[derive(Debug, thiserror::Error)]
#[error("cannot merge the split query's answers: {0}")]
pub struct MergeError(String);

/// Merges the successful answers of a range query's parts, in time order,
/// into one answer's JSON: each series' values (and native histograms)
/// concatenated, the series sorted by labels, warnings and infos kept once,
/// `stats` as `data.stats` when given.
pub(crate) fn merge(parts: &[PartAnswer<'_>], stats: Option<Json>) -> Result<Vec<u8>, MergeError> {
    type Key<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;
    let mut series: BTreeMap<Key<'_>, MergedSeries<'_>> = BTreeMap::new();
    let mut warnings: Vec<&Json> = Vec::new();
    let mut infos: Vec<&Json> = Vec::new();
    let mut bytes = 0;
    for part in parts {
        let data = part
            .data
            .as_ref()
            .ok_or_else(|| MergeError("an answer without data".into()))?;
        if data.result_type != "matrix" {
            return Err(MergeError(format!(
                "result type {:?}, not matrix",
                data.result_type
            )));
        }
        for s in &data.result {
            let labels: Key<'_> = serde_json::from_str(s.metric.get())
                .map_err(|e| MergeError(format!("a series' labels: {e}")))?;
            let entry = series.entry(labels).or_insert_with(|| MergedSeries {
                metric: s.metric,
                values: Vec::new(),
                histograms: Vec::new(),
            });
            for (list, into) in [
                (s.values, &mut entry.values),
                (s.histograms, &mut entry.histograms),
            ] {
                if let Some(list) = list {
                    bytes += list.get().len();
                    into.push(list);
                }
            }
        }
        for (from, into) in [(&part.warnings, &mut warnings), (&part.infos, &mut infos)] {
            for w in from {
                if !into.contains(&w) {
                    into.push(w);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(bytes + 64 * series.len() + 256);
    out.extend_from_slice(br#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, s) in series.values().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"metric":"#);
        out.extend_from_slice(s.metric.get().as_bytes());
        for (field, lists) in [("values", &s.values), ("histograms", &s.histograms)] {
            let mut first = true;
            for list in lists.iter() {
                let inner = list.get().trim();
                let inner = inner
                    .strip_prefix('[')
                    .and_then(|l| l.strip_suffix(']'))
                    .ok_or_else(|| MergeError(format!("{field} is not a list")))?
                    .trim();
                if inner.is_empty() {
                    continue;
                }
                if first {
                    out.extend_from_slice(format!(r#","{field}":["#).as_bytes());
                    first = false;
                } else {
                    out.push(b',');
                }
                out.extend_from_slice(inner.as_bytes());
            }
            if !first {
                out.push(b']');
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    let json_err = |e: serde_json::Error| MergeError(e.to_string());
    if let Some(s) = stats {
        out.extend_from_slice(br#","stats":"#);
        serde_json::to_writer(&mut out, &s).map_err(json_err)?;
    }
    out.push(b'}');
    for (field, list) in [("warnings", &warnings), ("infos", &infos)] {
        if !list.is_empty() {
            out.extend_from_slice(format!(r#","{field}":"#).as_bytes());
            serde_json::to_writer(&mut out, list).map_err(json_err)?;
        }
    }
    out.push(b'}');
    Ok(out)
}

/// A split LogQL query's `data.stats`: what the queriers read for its
/// parts (`fetched`, summed; zeros when every part came from the cache),
/// its per-second rates recomputed from the totals, the time its requests
/// waited in the queue, its parts (`splits`), shard queries (`shards`) and
/// Loki's results-cache counters (`cache.result`).
pub(crate) fn loki_stats(
    fetched: Option<Json>,
    queue_secs: f64,
    (parts, cached, stored): (usize, usize, usize),
    shard_queries: usize,
) -> Json {
    let mut s = fetched
        .filter(Json::is_object)
        .unwrap_or_else(|| serde_json::json!({"summary": {}}));
    if !s["summary"].is_object() {
        s["summary"] = serde_json::json!({});
    }
    let summary = &mut s["summary"];
    for key in [
        "bytesProcessedPerSecond",
        "linesProcessedPerSecond",
        "totalBytesProcessed",
        "totalLinesProcessed",
        "execTime",
        "subqueries",
        "totalEntriesReturned",
    ] {
        if summary.get(key).is_none() {
            summary[key] = Json::from(0);
        }
    }
    let exec = summary["execTime"].as_f64().unwrap_or(0.0);
    for (rate, total) in [
        ("bytesProcessedPerSecond", "totalBytesProcessed"),
        ("linesProcessedPerSecond", "totalLinesProcessed"),
    ] {
        let t = summary[total].as_f64().unwrap_or(0.0);
        summary[rate] = Json::from(if exec > 0.0 { (t / exec) as u64 } else { 0 });
    }
    summary["queueTime"] = Json::from(queue_secs);
    summary["splits"] = Json::from(parts);
    summary["shards"] = Json::from(shard_queries);
    if !s["cache"].is_object() {
        s["cache"] = serde_json::json!({});
    }
    s["cache"]["result"] = serde_json::json!({
        "entriesFound": cached,
        "entriesRequested": parts,
        "entriesStored": stored,
        "requests": parts,
    });
    s
}

/// A split PromQL query's `data.stats` (asked for with `stats`):
/// Prometheus's `timings` and `samples` summed over the parts the queriers
/// answered, the time its requests waited in the queue
/// (`timings.execQueueTime`), and the results cache's part counts.
pub(crate) fn prometheus_stats(
    fetched: Option<Json>,
    queue_secs: f64,
    (parts, cached): (usize, usize),
) -> Json {
    let mut s = fetched.filter(Json::is_object).unwrap_or_else(|| {
        serde_json::json!({
            "timings": {"evalTotalTime": 0, "resultSortTime": 0, "queryPreparationTime": 0,
                        "innerEvalTime": 0, "execQueueTime": 0, "execTotalTime": 0},
            "samples": {"totalQueryableSamples": 0, "peakSamples": 0},
            "series": {"fetched": 0},
        })
    });
    if !s["timings"].is_object() {
        s["timings"] = serde_json::json!({});
    }
    s["timings"]["execQueueTime"] = Json::from(queue_secs);
    if parts > 0 {
        s["resultsCache"] = serde_json::json!({"partsFound": cached, "partsRequested": parts});
    }
    s
}

/// Sums two statistics objects field by field (numbers add, objects
/// recurse, anything else keeps the first).
pub(crate) fn sum_stats(a: Json, b: Json) -> Json {
    match (a, b) {
        (Json::Object(mut a), Json::Object(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(old) => sum_stats(old, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Json::Object(a)
        }
        (Json::Number(a), Json::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => Json::from(x.saturating_add(y)),
            _ => {
                serde_json::Number::from_f64(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0))
                    .map_or(Json::Null, Json::Number)
            }
        },
        (a, _) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    /// Steps stay on the query's grid; each part holds one interval's
    /// steps; no step is lost or doubled.
    #[test]
    fn parts_cover_every_step_once() {
        let (start, end, step) = (H / 2 + 7, 5 * H + 3, 60_000 + 13);
        let parts = parts(start, end, step, 2 * H).expect("split");
        let mut steps = Vec::new();
        for (from, to) in &parts {
            assert_eq!((from - start) % step, 0);
            assert_eq!(from.div_euclid(2 * H), to.div_euclid(2 * H), "one window");
            let mut t = *from;
            while t <= *to {
                steps.push(t);
                t += step;
            }
        }
        let expected: Vec<i64> = (0..)
            .map(|k| start + k * step)
            .take_while(|t| *t <= end)
            .collect();
        assert_eq!(steps, expected);
        assert_eq!(parts.len(), 3);
    }

    #[test]
    fn small_huge_and_bad_ranges_run_whole() {
        assert_eq!(parts(0, H, 60_000, 24 * H), None);
        assert_eq!(parts(0, 10_000 * H, H, 1), None, "too many parts");
        assert_eq!(parts(5, 1, 1, 10), None);
        assert_eq!(parts(0, 10, 0, 10), None);
        // The whole i64 range: no overflow, three steps in three windows.
        assert_eq!(
            parts(i64::MIN, i64::MAX, i64::MAX, 1 << 62),
            Some(vec![
                (i64::MIN, i64::MIN),
                (-1, -1),
                (i64::MAX - 1, i64::MAX - 1)
            ])
        );
        // A step far larger than the interval: one part per step, found
        // without walking the empty windows between them.
        assert_eq!(
            parts(0, 4_000_000_000_000, 1_000_000_000_000, 1).map(|p| p.len()),
            Some(5)
        );
        // Negative times split on the same epoch-aligned windows.
        let p = parts(-H, H, 60_000, H).expect("split");
        assert_eq!(p.first(), Some(&(-H, -60_000)));
        assert_eq!(p.last(), Some(&(H, H)));
    }

    #[test]
    fn only_queries_without_at_split() {
        assert!(promql_splittable("sum(rate(x[5m]))"));
        assert!(!promql_splittable("x @ start()"));
        assert!(!promql_splittable("sum(("));
        assert!(logql_splittable(r#"sum(count_over_time({app="a"}[1m]))"#));
        assert!(!logql_splittable(r#"{app="a"} |= "x""#));
    }

    #[test]
    fn answers_merge_by_series_in_time_order() {
        let part = |values: Json, extra: Json| {
            serde_json::to_vec(&serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"job": "b"}, "values": values.clone()},
                {"metric": {"job": "a", "c": "x"}, "values": values},
                {"metric": {"job": "c"}, "values": []},
            ], "stats": extra}, "warnings": ["w"]}))
            .expect("JSON")
        };
        let bodies = [
            part(serde_json::json!([[1, "1"]]), serde_json::json!({"bytes": 1})),
            // Whitespace as another writer may leave it.
            b" { \"status\" : \"success\", \"data\": {\"resultType\": \"matrix\", \"result\": [ {\"metric\": {\"job\": \"b\"}, \"values\": [ [2, \"2\"] ] }, {\"metric\": {\"c\": \"x\", \"job\": \"a\"}, \"values\": [[2, \"2\"], [3, \"3\"]], \"histograms\": [[3, {\"count\": \"1\"}]]}]}, \"warnings\": [\"w\", \"v\"], \"infos\": [\"i\"] } ".to_vec(),
        ];
        let parts: Vec<PartAnswer<'_>> = bodies
            .iter()
            .map(|b| PartAnswer::parse(b).expect("an answer"))
            .collect();
        assert!(parts.iter().all(PartAnswer::is_success));
        assert_eq!(parts[0].stats(), Some(&serde_json::json!({"bytes": 1})));
        let merged = merge(&parts, Some(serde_json::json!({"bytes": 4}))).expect("merge");
        let merged: Json = serde_json::from_slice(&merged).expect("merged JSON");
        assert_eq!(
            merged,
            serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"c": "x", "job": "a"}, "values": [[1, "1"], [2, "2"], [3, "3"]],
                 "histograms": [[3, {"count": "1"}]]},
                {"metric": {"job": "b"}, "values": [[1, "1"], [2, "2"]]},
                {"metric": {"job": "c"}},
            ], "stats": {"bytes": 4}}, "warnings": ["w", "v"], "infos": ["i"]})
        );
        let vector = br#"{"status": "success", "data": {"resultType": "vector", "result": []}}"#;
        let vector = PartAnswer::parse(vector).expect("an answer");
        assert!(merge(&[vector], None).is_err());
        let error = br#"{"status": "error", "errorType": "bad_data", "error": "x"}"#;
        assert!(!PartAnswer::parse(error).expect("an answer").is_success());
        assert!(PartAnswer::parse(b"not json").is_none());
        assert_eq!(
            PartAnswer::succeeded(br#"{"status":"success","data":{}}"#),
            Some(true)
        );
        // Written by another writer (spaces): read, a success all the same.
        assert_eq!(PartAnswer::succeeded(&bodies[1]), Some(true));
        assert_eq!(PartAnswer::succeeded(error), Some(false));
        assert_eq!(PartAnswer::succeeded(b"not json"), None);
    }

    #[test]
    fn statistics_of_split_queries() {
        let part = serde_json::json!({"summary": {"totalBytesProcessed": 100, "totalLinesProcessed": 10,
            "execTime": 0.5, "bytesProcessedPerSecond": 200, "queueTime": 0, "splits": 0}});
        let both = sum_stats(part.clone(), part);
        let s = loki_stats(Some(both), 0.25, (3, 1, 2), 0);
        let sum = &s["summary"];
        assert_eq!(sum["totalBytesProcessed"], 200);
        // Rates from the totals, not the sum of the parts' rates.
        assert_eq!(sum["bytesProcessedPerSecond"], 200);
        assert_eq!(sum["linesProcessedPerSecond"], 20);
        assert_eq!(sum["queueTime"], 0.25);
        assert_eq!(sum["splits"], 3);
        assert_eq!(s["cache"]["result"]["entriesFound"], 1);
        assert_eq!(s["cache"]["result"]["entriesStored"], 2);
        // Every part cached: zeros read, the cache hits counted.
        let s = loki_stats(None, 0.0, (2, 2, 0), 0);
        assert_eq!(s["summary"]["totalLinesProcessed"], 0);
        assert_eq!(s["cache"]["result"]["entriesFound"], 2);
        let p = prometheus_stats(None, 0.5, (4, 3));
        assert_eq!(p["timings"]["execQueueTime"], 0.5);
        assert_eq!(p["samples"]["totalQueryableSamples"], 0);
        assert_eq!(p["resultsCache"]["partsRequested"], 4);
    }

    #[test]
    fn loki_times_are_exact() {
        assert_eq!(Api::Loki.format_time(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(
            strata_model::api_time::loki_time_ns(&Api::Loki.format_time(1_700_000_000_123_456_789)),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(Api::Prometheus.format_time(-1), "-0.001");
        assert_eq!(
            strata_model::api_time::prometheus_time_ms(&Api::Prometheus.format_time(-1)),
            Some(-1)
        );
    }
}

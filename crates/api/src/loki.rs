//! Loki's HTTP API, with Loki's JSON shapes, for Grafana's Loki data source
//! and Loki push clients: `/loki/api/v1/push` (and the legacy
//! `/api/prom/push`), `query`, `query_range`, `labels`, `label/<name>/values`,
//! `series`, `index/stats`, `index/volume` and the `tail` WebSocket. Errors are plain text with the
//! status Loki uses (400 for bad queries, 429 over limits).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use strata_distributor::logs::{PushFormat, decode_loki_push};
use strata_logql::{Expr, QueryParams, QueryResult, QueryStats};
use strata_model::Matcher;
use strata_model::logs::{Direction, LogStream};
use strata_querier::logs::LogQueryError;

use crate::params::Params;
use crate::render::{point, write_labels, write_list, write_sample, write_series, write_str};
use crate::{Shared, status, tenant};

const NS_PER_SEC: i64 = 1_000_000_000;
/// Loki's default look-back when `start` is not given.
const DEFAULT_SINCE_NS: i64 = 3600 * NS_PER_SEC;
const DEFAULT_LIMIT: usize = 100;

/// An error answered as plain text with its status, as Loki does.
pub(crate) struct LokiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

fn text_error(status: StatusCode, msg: impl Into<String>) -> LokiError {
    LokiError {
        status,
        message: msg.into(),
    }
}

pub(crate) fn bad_request(msg: impl Into<String>) -> LokiError {
    text_error(StatusCode::BAD_REQUEST, msg)
}

pub(crate) fn internal_error(msg: impl Into<String>) -> LokiError {
    text_error(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

pub(crate) fn now_ns() -> i64 {
    strata_model::now_ms().saturating_mul(1_000_000)
}

fn time_param(p: &Params, key: &str, default: i64) -> Result<i64, LokiError> {
    match p.get(key) {
        None => Ok(default),
        Some(s) => strata_model::api_time::loki_time_ns(s).ok_or_else(|| {
            bad_request(format!(
                "invalid {key} parameter: cannot parse {s:?} as a timestamp"
            ))
        }),
    }
}

/// A duration parameter: a Go duration (`30s`) or float seconds.
fn duration_param(p: &Params, key: &str) -> Result<Option<i64>, LokiError> {
    let Some(s) = p.get(key) else {
        return Ok(None);
    };
    // Less than a nanosecond is zero (a step of 1e-10 would divide by it).
    if let Ok(f) = s.parse::<f64>() {
        let ns = (f * 1e9).floor();
        if ns >= 1.0 && ns < i64::MAX as f64 {
            return Ok(Some(ns as i64));
        }
    } else if let Some(d) = strata_logql::parser::parse_duration(s)
        && !d.is_zero()
    {
        // parse_duration stops at i64::MAX ns.
        return Ok(Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)));
    }
    Err(bad_request(format!(
        "invalid {key} parameter: cannot parse {s:?} as a positive duration"
    )))
}

/// A Loki API request: the tenant and the query-string plus form parameters.
pub(crate) struct LokiRequest {
    pub(crate) state: Shared,
    pub(crate) tenant: String,
    pub(crate) p: Params,
}

impl FromRequest<Shared> for LokiRequest {
    type Rejection = LokiError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, LokiError> {
        let (tenant, p) = crate::tenant_and_params(req, state)
            .await
            .map_err(|(code, msg)| text_error(code, msg))?;
        Ok(Self {
            state: state.clone(),
            tenant,
            p,
        })
    }
}

impl LokiRequest {
    pub(crate) fn query(&self) -> Result<String, LokiError> {
        self.p
            .get("query")
            .map(str::to_string)
            .ok_or_else(|| bad_request("query parameter is required"))
    }
}

/// `start`/`end` with Loki's defaults (`end` = now, `start` = end - `since` or 1h).
pub(crate) fn range_params(p: &Params) -> Result<(i64, i64), LokiError> {
    let end = time_param(p, "end", now_ns())?;
    let since = duration_param(p, "since")?.unwrap_or(DEFAULT_SINCE_NS);
    let start = time_param(p, "start", end.saturating_sub(since))?;
    if end < start {
        return Err(bad_request(
            "invalid time range: the query's end must be after its start",
        ));
    }
    Ok((start, end))
}

fn common_params(p: &Params) -> Result<(usize, Direction), LokiError> {
    let limit = match p.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => s.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            bad_request(format!(
                "invalid limit parameter {s:?}: must be a positive integer"
            ))
        })?,
    };
    let direction = match p.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Direction::Backward,
        Some("forward") => Direction::Forward,
        Some(other) => {
            return Err(bad_request(format!(
                "invalid direction {other:?}: must be forward or backward"
            )));
        }
    };
    Ok((limit, direction))
}

pub(crate) fn query_error(e: LogQueryError) -> LokiError {
    match &e {
        LogQueryError::Parse(_) | LogQueryError::BadRequest(_) => bad_request(e.to_string()),
        LogQueryError::Limit(_) => bad_request(e.to_string()),
        LogQueryError::Timeout(_) => text_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        LogQueryError::Internal(_) => {
            tracing::error!(error = %e, "log query failed");
            text_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// `POST /loki/api/v1/push`: 204 when everything was stored.
pub(crate) async fn push(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let tenant = match tenant(&state, &headers) {
        Ok(t) => t,
        Err((c, m)) => return text_error(c, m).into_response(),
    };
    let header_str = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let format = PushFormat::from_content_type(&header_str(header::CONTENT_TYPE));
    let gzip = header_str(header::CONTENT_ENCODING).contains("gzip");
    let streams = match decode_loki_push(&body, format, gzip, state.max_recv_msg_size) {
        Ok(s) => s,
        Err(e) => return text_error(status(e.status()), e.to_string()).into_response(),
    };
    match state
        .distributor
        .push_logs(&tenant, streams, now_ns())
        .await
    {
        Ok(r) => match r.rejection_summary() {
            None => StatusCode::NO_CONTENT.into_response(),
            Some(msg) => text_error(status(r.rejection_status()), msg).into_response(),
        },
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(tenant, error = %e, "log push failed");
            }
            text_error(status(e.status()), e.to_string()).into_response()
        }
    }
}

/// `step` (default `(end - start) / 250`, at least 1 s), refusing more than
/// 11,000 points per series as Loki does.
pub(crate) fn step_param(p: &Params, start: i64, end: i64) -> Result<i64, LokiError> {
    // The range may span all of i64: i128 cannot overflow here.
    let range = i128::from(end) - i128::from(start);
    let default_step = i64::try_from((range / 250 / i128::from(NS_PER_SEC)).max(1))
        .unwrap_or(i64::MAX / NS_PER_SEC)
        * NS_PER_SEC;
    let step = duration_param(p, "step")?.unwrap_or(default_step);
    if range / i128::from(step) > 11_000 {
        return Err(bad_request(
            "exceeded maximum resolution of 11,000 points per time series. Try increasing the value of the step parameter",
        ));
    }
    Ok(step)
}

/// `GET|POST /loki/api/v1/query_range`.
pub(crate) async fn query_range(r: LokiRequest) -> Result<Response, LokiError> {
    let query = r.query()?;
    let (start, end) = range_params(&r.p)?;
    let (limit, direction) = common_params(&r.p)?;
    let step = step_param(&r.p, start, end)?;
    let interval = duration_param(&r.p, "interval")?;
    let params = QueryParams {
        start_ns: start,
        end_ns: end,
        step_ns: step,
        limit,
        direction,
        instant: false,
        max_series: strata_logql::eval::MAX_QUERY_SERIES,
    };
    run_query(&r, &query, &params, interval).await
}

/// `GET|POST /loki/api/v1/query`: an instant metric query.
pub(crate) async fn query(r: LokiRequest) -> Result<Response, LokiError> {
    let query = r.query()?;
    let t = time_param(&r.p, "time", now_ns())?;
    let (limit, direction) = common_params(&r.p)?;
    if let Ok(Expr::Log(_)) = strata_logql::parse(&query) {
        return Err(bad_request(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        ));
    }
    let params = QueryParams {
        start_ns: t,
        end_ns: t,
        step_ns: 0,
        limit,
        direction,
        instant: true,
        max_series: strata_logql::eval::MAX_QUERY_SERIES,
    };
    run_query(&r, &query, &params, None).await
}

async fn run_query(
    r: &LokiRequest,
    query: &str,
    params: &QueryParams,
    interval: Option<i64>,
) -> Result<Response, LokiError> {
    let started = Instant::now();
    let outcome = r.state.log_querier.query(&r.tenant, query, params).await;
    // Loki's "query stats"-like line; in the request's span (trace id).
    let wall_time_seconds = started.elapsed().as_secs_f64();
    match &outcome {
        Ok((_, stats)) => tracing::info!(
            tenant = r.tenant,
            query,
            wall_time_seconds,
            total_bytes = stats.bytes,
            total_lines = stats.entries,
            status = "success",
            "query stats"
        ),
        Err(e) => tracing::info!(
            tenant = r.tenant,
            query,
            wall_time_seconds,
            status = "failed",
            error = %e,
            "query stats"
        ),
    }
    let (mut result, stats) = outcome.map_err(query_error)?;
    if let (Some(iv), QueryResult::Streams(streams)) = (interval, &mut result) {
        for s in streams.iter_mut() {
            thin_to_interval(s, iv, params.direction);
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        render_result(&result, &stats, started.elapsed().as_secs_f64()),
    )
        .into_response())
}

/// Keeps entries at least `interval` apart, reading in the query's direction.
fn thin_to_interval(s: &mut LogStream, interval: i64, dir: Direction) {
    let mut last: Option<i64> = None;
    s.entries.retain(|e| {
        let keep = match last {
            None => true,
            Some(l) => match dir {
                Direction::Forward => e.ts - l >= interval,
                Direction::Backward => l - e.ts >= interval,
            },
        };
        if keep {
            last = Some(e.ts);
        }
        keep
    });
}

fn render_result(r: &QueryResult, stats: &QueryStats, secs: f64) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    let (kind, returned) = match r {
        QueryResult::Streams(s) => ("streams", s.iter().map(|x| x.entries.len()).sum()),
        QueryResult::Matrix(m) => ("matrix", m.len()),
        QueryResult::Vector(_, v) => ("vector", v.len()),
        QueryResult::Scalar(..) => ("scalar", 1),
    };
    b.extend_from_slice(br#"{"status":"success","data":{"resultType":""#);
    b.extend_from_slice(kind.as_bytes());
    b.extend_from_slice(br#"","result":"#);
    let ms = |ns: i64| ns.div_euclid(1_000_000);
    match r {
        QueryResult::Streams(streams) => write_streams(&mut b, streams),
        QueryResult::Matrix(series) => write_list(&mut b, series, |b, s| {
            write_series(b, &s.labels, s.points.iter().map(|&(t, v)| (ms(t), v)))
        }),
        QueryResult::Vector(t, v) => {
            write_list(&mut b, v, |b, (l, x)| write_sample(b, l, ms(*t), *x))
        }
        QueryResult::Scalar(t, v) => point(&mut b, ms(*t), *v),
    }
    let per_sec = |n: usize| {
        if secs > 0.0 {
            (n as f64 / secs) as u64
        } else {
            0
        }
    };
    let summary = json!({
        "bytesProcessedPerSecond": per_sec(stats.bytes),
        "linesProcessedPerSecond": per_sec(stats.entries),
        "totalBytesProcessed": stats.bytes,
        "totalLinesProcessed": stats.entries,
        "execTime": secs,
        "queueTime": 0,
        "subqueries": 0,
        "totalEntriesReturned": returned,
        "splits": 0,
        "shards": 0,
    });
    b.extend_from_slice(br#","stats":{"summary":"#);
    b.extend_from_slice(summary.to_string().as_bytes());
    b.extend_from_slice(b"}}}");
    b
}

/// `{"status":"success","data":...}`.
fn success(data: impl serde::Serialize) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// `[{"stream":{...},"values":[["<ns>","line"],...]},...]`.
fn write_streams(b: &mut Vec<u8>, streams: &[LogStream]) {
    write_list(b, streams, |b, s| {
        b.extend_from_slice(br#"{"stream":"#);
        write_labels(b, &s.labels);
        b.extend_from_slice(br#","values":"#);
        write_list(b, &s.entries, |b, e| {
            b.extend_from_slice(b"[\"");
            b.extend_from_slice(e.ts.to_string().as_bytes());
            b.extend_from_slice(b"\",");
            write_str(b, &e.line);
            b.push(b']');
        });
        b.push(b'}');
    });
}

/// Longest `delay_for` Loki accepts, in seconds.
const MAX_TAIL_DELAY_SECS: i64 = 5;
/// How often a tail looks for new entries.
const TAIL_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /loki/api/v1/tail` (WebSocket): entries matching a log query as they
/// arrive, from `start` (default one hour ago), `delay_for` seconds behind
/// real time (0-5), at most `limit` entries per message. Each message is
/// `{"streams":[...],"dropped_entries":null}`, as Loki sends.
pub(crate) async fn tail(ws: WebSocketUpgrade, r: LokiRequest) -> Result<Response, LokiError> {
    let query = r.query()?;
    match strata_logql::parse(&query) {
        Ok(Expr::Log(_)) => {}
        Ok(Expr::Metric(_)) => {
            return Err(bad_request("tail needs a log query, not a metric query"));
        }
        Err(e) => return Err(bad_request(e.to_string())),
    }
    let (limit, _) = common_params(&r.p)?;
    let delay: i64 = match r.p.get("delay_for") {
        None => 0,
        Some(s) => s
            .parse()
            .ok()
            .filter(|d| (0..=MAX_TAIL_DELAY_SECS).contains(d))
            .ok_or_else(|| {
                bad_request(format!(
                    "delay_for must be a whole number of seconds from 0 to {MAX_TAIL_DELAY_SECS}, not {s:?}"
                ))
            })?,
    };
    let start = time_param(&r.p, "start", now_ns().saturating_sub(DEFAULT_SINCE_NS))?;
    let max_tails = r
        .state
        .log_querier
        .limits(&r.tenant)
        .max_concurrent_tail_requests;
    let slot = r
        .state
        .admission
        .tail_slot(&r.tenant, max_tails)
        .map_err(|e| text_error(StatusCode::TOO_MANY_REQUESTS, e))?;
    Ok(ws.on_upgrade(move |socket| async move {
        // The slot is held for as long as the tail runs.
        let _slot = slot;
        if let Err(e) = tail_loop(socket, &r, &query, start, delay * NS_PER_SEC, limit).await {
            tracing::debug!(tenant = r.tenant, error = %e, "tail ended");
        }
    }))
}

async fn tail_loop(
    mut socket: WebSocket,
    r: &LokiRequest,
    query: &str,
    start: i64,
    delay_ns: i64,
    limit: usize,
) -> Result<(), String> {
    let max_entries = r
        .state
        .log_querier
        .limits(&r.tenant)
        .max_entries_limit_per_query;
    let mut from = start;
    // Entries already sent whose timestamp is `from`: the next poll starts
    // there (inclusive) so entries sharing that nanosecond are not missed.
    let mut sent_at_from: std::collections::HashSet<(strata_model::Labels, String)> =
        std::collections::HashSet::new();
    loop {
        let end = now_ns() - delay_ns;
        let mut full = false;
        if end > from {
            let params = QueryParams {
                start_ns: from,
                end_ns: end,
                step_ns: 0,
                limit: (limit + sent_at_from.len()).min(max_entries.max(limit)),
                direction: Direction::Forward,
                instant: false,
                max_series: strata_logql::eval::MAX_QUERY_SERIES,
            };
            let result = r.state.log_querier.query(&r.tenant, query, &params).await;
            let streams = match result {
                Ok((QueryResult::Streams(s), _)) => s,
                Ok(_) => Vec::new(),
                Err(e) => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1011,
                            reason: e.to_string().chars().take(120).collect::<String>().into(),
                        })))
                        .await;
                    return Err(e.to_string());
                }
            };
            let mut fresh: Vec<LogStream> = Vec::new();
            let mut newest = from;
            let mut count = 0;
            for mut s in streams {
                s.entries.retain(|e| {
                    !(e.ts == from && sent_at_from.contains(&(s.labels.clone(), e.line.clone())))
                });
                count += s.entries.len();
                if let Some(last) = s.entries.last() {
                    newest = newest.max(last.ts);
                }
                if !s.entries.is_empty() {
                    fresh.push(s);
                }
            }
            full = count >= limit;
            if !fresh.is_empty() {
                if newest > from {
                    sent_at_from.clear();
                    from = newest;
                }
                for s in &fresh {
                    for e in s.entries.iter().filter(|e| e.ts == from) {
                        sent_at_from.insert((s.labels.clone(), e.line.clone()));
                    }
                }
                let mut b = Vec::new();
                b.extend_from_slice(br#"{"streams":"#);
                write_streams(&mut b, &fresh);
                b.extend_from_slice(br#","dropped_entries":null}"#);
                let text = String::from_utf8(b).map_err(|e| e.to_string())?;
                socket
                    .send(Message::Text(text.into()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(TAIL_POLL) => {}
            msg = socket.recv() => match msg {
                None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Matchers of a `query` / `match[]` stream selector; empty when absent.
pub(crate) fn selector(s: Option<&str>) -> Result<Vec<Matcher>, LokiError> {
    let Some(s) = s else {
        return Ok(Vec::new());
    };
    match strata_logql::parse(s) {
        Ok(Expr::Log(l)) => Ok(l.matchers),
        Ok(Expr::Metric(_)) => Err(bad_request(format!(
            "{s:?} is not a stream selector like {{app=\"api\"}}"
        ))),
        Err(e) => Err(bad_request(e.to_string())),
    }
}

fn storage_error(e: strata_storage::StorageError) -> LokiError {
    tracing::error!(error = %e, "log metadata query failed");
    text_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Runs a metadata read within the query timeout (`-querier.timeout`), as
/// log queries are: a request may name many selectors or a long range.
pub(crate) async fn bounded<T>(
    r: &LokiRequest,
    read: impl std::future::Future<Output = Result<T, strata_storage::StorageError>>,
) -> Result<T, LokiError> {
    let timeout = r.state.log_querier.timeout();
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result.map_err(storage_error),
        Err(_) => Err(text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("query timed out after {timeout:?} (-querier.timeout)"),
        )),
    }
}

/// `GET /loki/api/v1/labels`.
pub(crate) async fn labels(r: LokiRequest) -> Result<Response, LokiError> {
    let (start, end) = range_params(&r.p)?;
    let m = selector(r.p.get("query"))?;
    let names = bounded(
        &r,
        r.state.log_querier.label_names(&r.tenant, &m, start, end),
    )
    .await?;
    Ok(success(names))
}

/// `GET /loki/api/v1/label/<name>/values`.
pub(crate) async fn label_values(
    Path(name): Path<String>,
    r: LokiRequest,
) -> Result<Response, LokiError> {
    let (start, end) = range_params(&r.p)?;
    let m = selector(r.p.get("query"))?;
    let values = bounded(
        &r,
        r.state
            .log_querier
            .label_values(&r.tenant, &name, &m, start, end),
    )
    .await?;
    Ok(success(values))
}

/// `GET|POST /loki/api/v1/series`: streams matching any `match[]`.
pub(crate) async fn series(r: LokiRequest) -> Result<Response, LokiError> {
    let (start, end) = range_params(&r.p)?;
    let mut selectors = r.p.all("match[]");
    selectors.extend(r.p.all("match"));
    if selectors.is_empty() {
        return Err(bad_request(
            "at least one match[] stream selector is required",
        ));
    }
    let matchers = selectors
        .into_iter()
        .map(|s| selector(Some(s)))
        .collect::<Result<Vec<_>, _>>()?;
    let read = async {
        let mut all = std::collections::BTreeSet::new();
        for m in &matchers {
            all.extend(
                r.state
                    .log_querier
                    .streams(&r.tenant, m, start, end)
                    .await?,
            );
        }
        Ok(all)
    };
    let all = bounded(&r, read).await?;
    let data: Vec<serde_json::Value> = all.iter().map(crate::render::labels).collect();
    Ok(success(data))
}

/// `GET /loki/api/v1/index/stats`.
pub(crate) async fn index_stats(r: LokiRequest) -> Result<Response, LokiError> {
    let (start, end) = range_params(&r.p)?;
    let m = selector(Some(&r.query()?))?;
    let s = bounded(
        &r,
        r.state.log_querier.index_stats(&r.tenant, &m, start, end),
    )
    .await?;
    Ok(axum::Json(
        json!({"streams": s.streams, "chunks": s.chunks, "entries": s.entries, "bytes": s.bytes}),
    )
    .into_response())
}

fn target_labels(p: &Params) -> Vec<String> {
    p.get("targetLabels")
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /loki/api/v1/index/volume`: bytes per label group as a vector.
pub(crate) async fn volume(r: LokiRequest) -> Result<Response, LokiError> {
    let (start, end) = range_params(&r.p)?;
    let m = selector(Some(&r.query()?))?;
    let (limit, _) = common_params(&r.p)?;
    let groups = bounded(
        &r,
        r.state
            .log_querier
            .volume(&r.tenant, &m, &target_labels(&r.p), start, end, limit),
    )
    .await?;
    let mut b = Vec::new();
    b.extend_from_slice(br#"{"status":"success","data":{"resultType":"vector","result":"#);
    let t = end.div_euclid(1_000_000);
    write_list(&mut b, &groups, |b, (l, bytes)| {
        write_sample(b, l, t, *bytes as f64)
    });
    b.extend_from_slice(b"}}");
    Ok(([(header::CONTENT_TYPE, "application/json")], b).into_response())
}

/// `GET /loki/api/v1/index/volume_range`: bytes per label group per step as
/// a matrix (what Grafana's log volume panel asks for).
pub(crate) async fn volume_range(r: LokiRequest) -> Result<Response, LokiError> {
    let (start, end) = range_params(&r.p)?;
    let m = selector(Some(&r.query()?))?;
    let (limit, _) = common_params(&r.p)?;
    let step = step_param(&r.p, start, end)?;
    let groups = bounded(
        &r,
        r.state.log_querier.volume_range(
            &r.tenant,
            &m,
            &target_labels(&r.p),
            start,
            end,
            step,
            limit,
        ),
    )
    .await?;
    let mut b = Vec::new();
    b.extend_from_slice(br#"{"status":"success","data":{"resultType":"matrix","result":"#);
    write_list(&mut b, &groups, |b, (l, pts)| {
        write_series(
            b,
            l,
            pts.iter()
                .map(|&(t, v)| (t.div_euclid(1_000_000), v as f64)),
        )
    });
    b.extend_from_slice(b"}}");
    Ok(([(header::CONTENT_TYPE, "application/json")], b).into_response())
}

/// `GET|POST /loki/api/v1/format_query`: the LogQL query as Loki prints it
/// (the format button of Grafana's Loki query editor):
/// `{"status":"success","data":"..."}`, or 400 with
/// `{"status":"invalid-query","error":"..."}`.
pub(crate) async fn format_query(r: LokiRequest) -> Response {
    let invalid = |error: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"status": "invalid-query", "error": error})),
        )
            .into_response()
    };
    let query = r.p.get("query").unwrap_or("");
    if query.len() > crate::MAX_FORMAT_QUERY_BYTES {
        return invalid(format!(
            "parse error : input size too long ({} > {})",
            query.len(),
            crate::MAX_FORMAT_QUERY_BYTES
        ));
    }
    match strata_logql::format::format_query(query) {
        Ok(text) => {
            axum::Json(serde_json::json!({"status": "success", "data": text})).into_response()
        }
        Err(e) => invalid(e.to_string()),
    }
}

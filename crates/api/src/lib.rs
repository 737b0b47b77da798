//! Strata's HTTP API: Prometheus remote-write ingestion and the Prometheus
//! query API (same paths under `/prometheus`), with Prometheus's JSON shapes
//! and error format so Grafana's Prometheus data source works unchanged; the
//! Loki push and query API ([`loki`]) for log shippers and Grafana's Loki
//! data source; plus
//! `/ready`, `/health` and `/metrics`.

pub mod admission;
pub mod auth;
mod cardinality;
mod drilldown;
mod loki;
mod otlp;
mod params;
mod patterns;
mod render;
mod rules;
pub mod startup;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, Registry, TextEncoder};
use serde_json::json;
use strata_distributor::{
    Distributor, PushResult, RemoteWriteVersion, check_remote_write_headers, decode_remote_write,
    decode_remote_write_v2,
};
use strata_promql::EngineError;
use strata_querier::Querier;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use params::Params;

/// Tenant used when multi-tenancy is disabled (Mimir's default).
pub const NO_AUTH_TENANT: &str = "anonymous";

static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "strata_request_duration_seconds",
            "Time to serve HTTP requests, by method, route and status code.",
        )
        // Round bounds: the SLO rules of deploy/mixin count requests faster
        // than 1 s (writes) and 2.5 s (reads) by these buckets.
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 120.0,
        ]),
        &["method", "route", "status_code"],
    )
    .expect("valid metric definition")
});

static REQUEST_PANICS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "strata_http_request_panics_total",
        "HTTP requests that hit a fault (a panic) in Strata and were answered 500 alone, the process going on.",
    )
    .expect("valid metric definition")
});

/// Registers the API's metrics with `registry`.
pub fn register_metrics(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(REQUEST_SECONDS.clone()))?;
    registry.register(Box::new(REQUEST_PANICS.clone()))?;
    admission::register_metrics(registry)?;
    auth::register_metrics(registry)
}

/// The answer to a request whose handler panicked: a safety net (every
/// known way to cause one is refused earlier with a 4xx), so the fault
/// costs this request a 500 and never the process or other requests.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    REQUEST_PANICS.inc();
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown fault");
    tracing::error!(panic = what, "request handler panicked; answered 500");
    let body = json!({"status": "error", "errorType": "internal", "error": format!("internal error: {what}")});
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub distributor: Arc<Distributor>,
    pub querier: Arc<Querier>,
    pub log_querier: Arc<strata_querier::logs::LogQuerier>,
    pub registry: Registry,
    pub multitenancy_enabled: bool,
    pub max_recv_msg_size: usize,
    /// Ready once start-up (ring join, WAL replay) finished; not on shutdown.
    pub ready: Arc<startup::Startup>,
    /// The ruler, when this process runs one.
    pub ruler: Option<Arc<strata_ruler::Ruler>>,
    /// HTTP addresses of the ring's live rulers: a process without a ruler
    /// passes the ruler's APIs to one of them.
    pub rulers: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    /// Process-wide push and query admission limits.
    pub admission: Arc<admission::Admission>,
    /// Configuration, flags and start time for the status endpoints.
    pub status: Arc<StatusInfo>,
}

type Shared = Arc<AppState>;

/// Builds the router with every route.
pub fn router(state: Shared) -> Router {
    let limit = state.max_recv_msg_size;
    let admission = state.admission.clone();
    let limit_queries =
        || middleware::from_fn_with_state(admission.clone(), admission::limit_queries);
    let prom_queries = Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/parse_query", get(parse_query).post(parse_query))
        .route(
            "/api/v1/cardinality/label_names",
            get(cardinality::label_names).post(cardinality::label_names),
        )
        .route(
            "/api/v1/cardinality/label_values",
            get(cardinality::label_values).post(cardinality::label_values),
        )
        .route(
            "/api/v1/cardinality/active_series",
            get(cardinality::active_series).post(cardinality::active_series),
        )
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route_layer(limit_queries());
    let prom = Router::new()
        .merge(prom_queries)
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route("/api/v1/status/config", get(status_config))
        .route("/api/v1/status/runtimeinfo", get(status_runtimeinfo))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/rules", get(rules::rules_status))
        .route("/api/v1/alerts", get(rules::alerts_status))
        .nest(
            "/config/v1/rules",
            rules::config_routes(strata_ruler::RuleLang::PromQL),
        );
    let pushes = Router::new()
        .route("/api/v1/push", post(push))
        .route("/api/v1/write", post(push))
        .route("/loki/api/v1/push", post(loki::push))
        .route("/api/prom/push", post(loki::push))
        .route("/otlp/v1/metrics", post(otlp::metrics))
        .route("/api/v1/otlp/v1/metrics", post(otlp::metrics))
        .route("/otlp/v1/logs", post(otlp::logs))
        .route_layer(middleware::from_fn_with_state(
            admission.clone(),
            admission::limit_pushes,
        ));
    let loki_queries = Router::new()
        .route("/loki/api/v1/query", get(loki::query).post(loki::query))
        .route(
            "/loki/api/v1/query_range",
            get(loki::query_range).post(loki::query_range),
        )
        .route("/loki/api/v1/labels", get(loki::labels).post(loki::labels))
        .route("/loki/api/v1/label/{name}/values", get(loki::label_values))
        .route("/loki/api/v1/series", get(loki::series).post(loki::series))
        .route(
            "/loki/api/v1/index/stats",
            get(loki::index_stats).post(loki::index_stats),
        )
        .route(
            "/loki/api/v1/detected_labels",
            get(drilldown::detected_labels).post(drilldown::detected_labels),
        )
        .route(
            "/loki/api/v1/detected_fields",
            get(drilldown::detected_fields).post(drilldown::detected_fields),
        )
        .route(
            "/loki/api/v1/detected_field/{name}/values",
            get(drilldown::detected_field_values).post(drilldown::detected_field_values),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(loki::volume).post(loki::volume),
        )
        .route(
            "/loki/api/v1/index/volume_range",
            get(loki::volume_range).post(loki::volume_range),
        )
        .route_layer(limit_queries());
    Router::new()
        .merge(pushes)
        .merge(loki_queries)
        // The same rules API manages LogQL groups under Loki's paths: Grafana's
        // alerting proxies a Loki data source's ruler calls to the legacy one.
        .nest(
            "/loki/api/v1/rules",
            rules::config_routes(strata_ruler::RuleLang::LogQL),
        )
        .nest(
            "/api/prom/rules",
            rules::config_routes(strata_ruler::RuleLang::LogQL),
        )
        .route("/loki/api/v1/tail", get(loki::tail))
        // Outside the push limiter: Grafana detects Loki's version with it,
        // and saturated pushes must not make a data source look broken.
        .route("/loki/api/v1/status/buildinfo", get(loki_buildinfo))
        .route("/loki/api/v1/drilldown-limits", get(drilldown::limits))
        .route(
            "/loki/api/v1/format_query",
            get(loki::format_query).post(loki::format_query),
        )
        .route(
            "/loki/api/v1/patterns",
            get(patterns::patterns).post(patterns::patterns),
        )
        .merge(prom.clone())
        .nest("/prometheus", prom)
        // At the root only, as Mimir serves it: Grafana takes a data source
        // whose `<url>/api/v1/status/flags` answers for Thanos, and the
        // Prometheus data source's URL is `<host>/prometheus`.
        .route("/api/v1/status/flags", get(status_flags))
        .route("/ready", get(ready))
        .route("/health", get(|| async { "OK" }))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rules::to_ruler,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(observe))
        // One byte over the limit so the distributor reports 413 itself.
        .layer(DefaultBodyLimit::max(limit.saturating_add(1)))
        .with_state(state)
}

/// Records a tracing span and the duration histogram for every request.
async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().to_string();
    // Scrapes and probes are no requests worth a trace of their own.
    let span = if matches!(route.as_str(), "/metrics" | "/health" | "/ready") {
        tracing::Span::none()
    } else {
        let span = tracing::info_span!(
            "http_request",
            %method,
            %route,
            trace_id = tracing::field::Empty
        );
        if let Some(id) = strata_telemetry::continue_trace(&span, req.headers()) {
            span.record("trace_id", id);
        }
        span
    };
    let start = Instant::now();
    let resp = next.run(req).instrument(span).await;
    REQUEST_SECONDS
        .with_label_values(&[&method, &route, resp.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// Tenant ID from `X-Scope-OrgID`, validated as Mimir does.
fn tenant(state: &AppState, headers: &HeaderMap) -> Result<String, (StatusCode, String)> {
    let header = headers.get("X-Scope-OrgID").map(|v| v.to_str().ok());
    strata_model::request_tenant(header, state.multitenancy_enabled).map_err(|(code, msg)| {
        (
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            msg,
        )
    })
}

pub use strata_model::validate_tenant;

async fn push(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let tenant = match tenant(&state, &headers) {
        Ok(t) => t,
        Err((code, msg)) => return (code, msg).into_response(),
    };
    let header = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let version = match check_remote_write_headers(
        header(header::CONTENT_TYPE),
        header(header::CONTENT_ENCODING),
    ) {
        Ok(v) => v,
        Err(e) => return (status(e.status()), e.to_string()).into_response(),
    };
    let decoded = match version {
        RemoteWriteVersion::V1 => decode_remote_write(&body, state.max_recv_msg_size),
        RemoteWriteVersion::V2 => decode_remote_write_v2(&body, state.max_recv_msg_size),
    };
    let req = match decoded {
        Ok(r) => r,
        Err(e) => {
            let response = (status(e.status()), e.to_string()).into_response();
            return written(version, &PushResult::default(), response);
        }
    };
    match state.distributor.push(&tenant, req).await {
        Ok(result) => {
            let response = match result.rejection_summary() {
                None => StatusCode::OK.into_response(),
                Some(msg) => (StatusCode::BAD_REQUEST, msg).into_response(),
            };
            written(version, &result, response)
        }
        Err(e) => {
            tracing::error!(tenant, error = %e, "push failed");
            let response = (status(e.status()), e.to_string()).into_response();
            written(version, &PushResult::default(), response)
        }
    }
}

/// A 2.0 response with the counts remote-write 2.0 asks receivers to
/// report (`X-Prometheus-Remote-Write-*-Written`): the sender's statistics
/// and its view of a partial write. Native histograms are not stored yet,
/// so none are written.
fn written(version: RemoteWriteVersion, result: &PushResult, mut response: Response) -> Response {
    if version == RemoteWriteVersion::V2 {
        let h = response.headers_mut();
        h.insert(
            "X-Prometheus-Remote-Write-Samples-Written",
            result.accepted_samples.into(),
        );
        h.insert("X-Prometheus-Remote-Write-Histograms-Written", 0.into());
        h.insert(
            "X-Prometheus-Remote-Write-Exemplars-Written",
            result.exemplars_written.into(),
        );
    }
    response
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn api_error(e: EngineError) -> Response {
    let body = json!({"status": "error", "errorType": e.error_type(), "error": e.to_string()});
    (status(e.http_status()), axum::Json(body)).into_response()
}

fn bad_data(msg: String) -> Response {
    api_error(EngineError::BadData(msg))
}

/// A query result with Prometheus's `warnings` and `infos` (left out when empty).
/// A query's answer; with its statistics when the request has Prometheus's
/// `stats` parameter.
fn query_success(out: &strata_promql::QueryOutput, p: &Params, started: Instant) -> Response {
    let stats = p.get("stats").map(|_| started.elapsed());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        render::query_response(out, stats),
    )
        .into_response()
}

fn success(data: serde_json::Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// A Prometheus-API request: its tenant and parameters (query string and
/// form body merged), or Prometheus's error answer refusing it.
pub(crate) struct PromRequest {
    pub(crate) state: Shared,
    pub(crate) tenant: String,
    pub(crate) p: Params,
}

impl FromRequest<Shared> for PromRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, Response> {
        let (tenant, p) = tenant_and_params(req, state).await.map_err(|(code, msg)| {
            let body = json!({"status": "error", "errorType": "bad_data", "error": msg});
            (code, axum::Json(body)).into_response()
        })?;
        Ok(Self {
            state: state.clone(),
            tenant,
            p,
        })
    }
}

/// A request's tenant and parameters (query string and urlencoded form
/// merged), or the status and message refusing it; the Prometheus and Loki
/// extractors answer those in their own shapes.
pub(crate) async fn tenant_and_params(
    req: Request,
    state: &Shared,
) -> Result<(String, Params), (StatusCode, String)> {
    let tenant = tenant(state, req.headers())?;
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let query = req.uri().query().map(str::to_string);
    let body = Bytes::from_request(req, state)
        .await
        .map_err(|e| (e.status(), e.body_text()))?;
    Ok((
        tenant,
        Params::parse(query.as_deref(), if is_form { Some(&body) } else { None }),
    ))
}

async fn query(r: PromRequest) -> Response {
    let (state, tenant, p) = (&r.state, r.tenant.as_str(), &r.p);
    let Some(expr) = p.get("query") else {
        return bad_data("invalid parameter \"query\": query is empty".into());
    };
    let t = match p.time("time", strata_model::now_ms()) {
        Ok(t) => t,
        Err(e) => return bad_data(e),
    };
    let started = Instant::now();
    let result = state.querier.instant_query(tenant, expr, t).await;
    log_query_stats(tenant, "instant", expr, started, &result);
    match result {
        Ok(out) => query_success(&out, p, started),
        Err(e) => api_error(e),
    }
}

/// Mimir's "query stats" line, one per PromQL query; inside the request's
/// span, so it carries the trace id when the request is traced.
fn log_query_stats(
    tenant: &str,
    kind: &str,
    expr: &str,
    started: Instant,
    result: &Result<strata_promql::QueryOutput, EngineError>,
) {
    let wall = started.elapsed().as_secs_f64();
    match result {
        Ok(out) => {
            let series = match &out.value {
                strata_promql::Value::Vector(v) => v.len(),
                strata_promql::Value::Matrix(m) => m.len(),
                _ => 1,
            };
            tracing::info!(
                tenant,
                kind,
                query = expr,
                wall_time_seconds = wall,
                fetched_series_count = out.stats.series_fetched,
                fetched_samples_count = out.stats.samples_fetched,
                peak_samples = out.stats.peak_samples,
                result_series = series,
                status = "success",
                "query stats"
            );
        }
        Err(e) => tracing::info!(
            tenant,
            kind,
            query = expr,
            wall_time_seconds = wall,
            status = "failed",
            error = %e,
            "query stats"
        ),
    }
}

async fn query_range(r: PromRequest) -> Response {
    let (state, tenant, p) = (&r.state, r.tenant.as_str(), &r.p);
    let Some(expr) = p.get("query") else {
        return bad_data("invalid parameter \"query\": query is empty".into());
    };
    let (start, end, step) = match (p.required_time("start"), p.required_time("end"), p.step()) {
        (Ok(s), Ok(e), Ok(st)) => (s, e, st),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad_data(e),
    };
    let started = Instant::now();
    let result = state
        .querier
        .range_query(tenant, expr, start, end, step)
        .await;
    log_query_stats(tenant, "range", expr, started, &result);
    match result {
        Ok(out) => query_success(&out, p, started),
        Err(e) => api_error(e),
    }
}

/// A parsed series-metadata request: tenant, `match[]` alternatives, `start`/`end`.
struct MetadataRequest {
    tenant: String,
    matchers: Vec<Vec<strata_model::Matcher>>,
    start: i64,
    end: i64,
}

/// Parses tenant, `match[]` and the time range (defaulting to all time).
fn metadata_request(
    r: &PromRequest,
    require_match: bool,
) -> Result<MetadataRequest, Box<Response>> {
    let p = &r.p;
    let selectors = p.all("match[]");
    if require_match && selectors.is_empty() {
        return Err(Box::new(bad_data("no match[] parameter provided".into())));
    }
    let mut matchers = Vec::new();
    for m in selectors {
        matchers.extend(strata_promql::parse_selector(m).map_err(|e| Box::new(api_error(e)))?);
    }
    let start = p
        .time("start", i64::MIN)
        .map_err(|e| Box::new(bad_data(e)))?;
    let end = p.time("end", i64::MAX).map_err(|e| Box::new(bad_data(e)))?;
    Ok(MetadataRequest {
        tenant: r.tenant.clone(),
        matchers,
        start,
        end,
    })
}

async fn series(req: PromRequest) -> Response {
    let state = &req.state;
    let r = match metadata_request(&req, true) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match state
        .querier
        .series(&r.tenant, &r.matchers, r.start, r.end)
        .await
    {
        Ok(series) => success(serde_json::Value::Array(
            series.iter().map(render::labels).collect(),
        )),
        Err(e) => api_error(e),
    }
}

async fn labels(req: PromRequest) -> Response {
    let state = &req.state;
    let r = match metadata_request(&req, false) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match state
        .querier
        .label_names(&r.tenant, &r.matchers, r.start, r.end)
        .await
    {
        Ok(names) => success(json!(names)),
        Err(e) => api_error(e),
    }
}

async fn label_values(Path(name): Path<String>, req: PromRequest) -> Response {
    if !strata_distributor::is_valid_label_name(&name) {
        return bad_data(format!("invalid label name: {name:?}"));
    }
    let state = &req.state;
    let r = match metadata_request(&req, false) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match state
        .querier
        .label_values(&r.tenant, &name, &r.matchers, r.start, r.end)
        .await
    {
        Ok(values) => success(json!(values)),
        Err(e) => api_error(e),
    }
}

/// `/api/v1/status/buildinfo` in Mimir's shape. Grafana tells Mimir from
/// Prometheus by this application name and the `features` object, and only
/// then offers to create and edit rules through the ruler API
/// (`ruler_config_api`: this process serves `/config/v1/rules`, itself or
/// through a ruler of the ring).
async fn buildinfo(State(state): State<Shared>) -> Response {
    let flag = |on: bool| if on { "true" } else { "false" };
    success(json!({
        "application": "Grafana Mimir",
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "goVersion": "",
        "features": {
            "ruler_config_api": flag(state.ruler.is_some() || !(state.rulers)().is_empty()),
            "alertmanager_config_api": "false",
            "query_sharding": flag(state.status.query_sharding),
        },
        "strata": { "version": env!("CARGO_PKG_VERSION") },
    }))
}

/// `/api/v1/targets`: Strata scrapes nothing, so no targets, in
/// Prometheus's shape (whatever `state` asks for, both lists are empty, as
/// a Prometheus without targets answers).
async fn targets() -> Response {
    success(json!({
        "activeTargets": [],
        "droppedTargets": [],
        "droppedTargetCounts": {},
    }))
}

/// `/api/v1/status/tsdb`: the tenant's head cardinality in Prometheus's
/// shape (`limit` entries per list, 10 by default). In a cluster the
/// counts are over the ingesters, replicas counted once (see
/// `HeadStats::merge`).
async fn tsdb_status(r: PromRequest) -> Response {
    let (state, tenant, p) = (&r.state, r.tenant.as_str(), &r.p);
    let limit = match p.get("limit").filter(|s| !s.is_empty()) {
        None => 10,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return bad_data("limit must be a positive number".into()),
        },
    };
    let stats = match state.querier.head_stats(tenant, limit).await {
        Ok(s) => s,
        Err(e) => return api_error(e),
    };
    let list = |l: &[(String, u64)]| -> serde_json::Value {
        l.iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect()
    };
    success(json!({
        "headStats": {
            "numSeries": stats.num_series,
            "numLabelPairs": stats.num_label_pairs,
            "chunkCount": stats.chunk_count,
            "minTime": stats.min_time,
            "maxTime": stats.max_time,
        },
        "seriesCountByMetricName": list(&stats.series_by_metric),
        "labelValueCountByLabelName": list(&stats.values_by_label),
        "memoryInBytesByLabelName": list(&stats.bytes_by_label),
        "seriesCountByLabelValuePair": list(&stats.series_by_pair),
    }))
}

/// `/loki/api/v1/status/buildinfo` in Loki's shape (no status envelope).
async fn loki_buildinfo() -> Response {
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
    .into_response()
}

/// Longest query `format_query` formats or `parse_query` parses: the
/// printer indents each line by its depth (up to `MAX_QUERY_DEPTH`) and the
/// tree spells out every node, so the output may be hundreds of times the
/// input; queries people format are far shorter.
pub(crate) const MAX_FORMAT_QUERY_BYTES: usize = 16 << 10;

/// The parsed `query` parameter of a format or parse request.
fn query_to_format(r: &PromRequest) -> Result<promql_parser::parser::Expr, Box<Response>> {
    let Some(expr) = r.p.get("query") else {
        return Err(Box::new(bad_data(
            "invalid parameter \"query\": query is empty".into(),
        )));
    };
    if expr.len() > MAX_FORMAT_QUERY_BYTES {
        return Err(Box::new(bad_data(format!(
            "invalid parameter \"query\": {} bytes is more than the {MAX_FORMAT_QUERY_BYTES} bytes a query to format or parse may have",
            expr.len()
        ))));
    }
    strata_promql::parse(expr).map_err(|e| Box::new(api_error(e)))
}

/// `/api/v1/format_query`: the query as Prometheus prints it (the format
/// button of Grafana's and Prometheus's query editors).
async fn format_query(r: PromRequest) -> Response {
    match query_to_format(&r) {
        Ok(parsed) => success(json!(parsed.prettify())),
        Err(r) => *r,
    }
}

/// `/api/v1/parse_query`: the query's syntax tree in Prometheus's JSON
/// (node `type`s, matchers, durations in milliseconds, numbers as
/// strings), as the Prometheus UI's tree view reads it.
async fn parse_query(r: PromRequest) -> Response {
    match query_to_format(&r) {
        Ok(parsed) => match render::syntax_tree(&parsed) {
            Ok(tree) => success(tree),
            Err(e) => {
                let body = json!({"status": "error", "errorType": "internal", "error": format!("printing the syntax tree: {e}")});
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
            }
        },
        Err(r) => *r,
    }
}

/// What the status endpoints report about this process.
pub struct StatusInfo {
    /// The effective configuration, secrets masked.
    pub config_yaml: String,
    /// Every flag's effective value.
    pub flags: BTreeMap<String, String>,
    pub started: SystemTime,
    /// The default metrics retention (zero: forever).
    pub storage_retention: Duration,
    /// Whether query-frontends run shardable queries sharded
    /// (`-query-frontend.parallelize-shardable-queries`): buildinfo's
    /// `query_sharding`, from the configuration every role of a cluster shares.
    pub query_sharding: bool,
}

/// `/api/v1/status/config`: the effective configuration (secrets masked)
/// as YAML, in Prometheus's shape.
async fn status_config(State(state): State<Shared>) -> Response {
    success(json!({ "yaml": state.status.config_yaml }))
}

/// `/api/v1/status/flags`: every flag with its effective value.
async fn status_flags(State(state): State<Shared>) -> Response {
    success(json!(state.status.flags))
}

/// `/api/v1/status/runtimeinfo` in Prometheus's shape; the Go runtime's
/// fields hold the Tokio runtime's equivalents (tasks for goroutines,
/// worker threads for GOMAXPROCS).
async fn status_runtimeinfo(State(state): State<Shared>) -> Response {
    let rfc3339 = |t: SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    let runtime = tokio::runtime::Handle::current().metrics();
    let started = state.status.started;
    success(json!({
        "startTime": rfc3339(started),
        "CWD": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "hostname": hostname(),
        "serverTime": rfc3339(SystemTime::now()),
        "reloadConfigSuccess": strata_limits::last_reload_successful(),
        "lastConfigTime": chrono::DateTime::<chrono::Utc>::from(started).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "corruptionCount": 0,
        "goroutineCount": runtime.num_alive_tasks(),
        "GOMAXPROCS": runtime.num_workers(),
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": prometheus_duration(state.status.storage_retention),
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

pub(crate) use strata_model::prometheus_duration;

/// Most series selectors (each `or` alternative counted) one exemplar
/// query may have; queries people write have a handful.
const MAX_EXEMPLAR_SELECTORS: usize = 256;

/// `/api/v1/query_exemplars`: the exemplars in `[start, end]` of the
/// series every selector of `query` selects, in Prometheus's shape (per
/// series its labels and its exemplars, timestamps in seconds).
async fn query_exemplars(r: PromRequest) -> Response {
    let (state, tenant, p) = (&r.state, r.tenant.as_str(), &r.p);
    let (start, end) = match (
        p.time("start", strata_promql::MIN_TIME_MS),
        p.time("end", strata_promql::MAX_TIME_MS),
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return bad_data(e),
    };
    if end < start {
        return bad_data("end timestamp must not be before start time".into());
    }
    let Some(query) = p.get("query") else {
        return bad_data("invalid parameter \"query\": query is empty".into());
    };
    let selectors = match strata_promql::query_selectors(query) {
        Ok(s) => s,
        Err(e) => return api_error(e),
    };
    // Each exemplar's series is matched against every alternative: bound them.
    if selectors.len() > MAX_EXEMPLAR_SELECTORS {
        return bad_data(format!(
            "invalid parameter \"query\": {} series selectors (alternatives included) are more than the {MAX_EXEMPLAR_SELECTORS} an exemplar query may have",
            selectors.len()
        ));
    }
    if selectors.is_empty() {
        return success(json!([]));
    }
    match state
        .querier
        .exemplars(tenant, &selectors, start, end)
        .await
    {
        Ok(found) => success(
            found
                .iter()
                .map(|(series, exemplars)| {
                    json!({
                        "seriesLabels": render::labels(series),
                        "exemplars": exemplars
                            .iter()
                            .map(|e| json!({
                                "labels": render::labels(&e.labels),
                                "value": render::float(e.value),
                                "timestamp": e.t as f64 / 1000.0,
                            }))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
        Err(e) => api_error(e),
    }
}

/// `/api/v1/metadata`: per metric family its distinct type, help and unit,
/// as Prometheus answers it: `metric` one family, `limit` most families
/// (negative: all, the default), `limit_per_metric` most entries of each
/// (not positive: all).
async fn metadata(r: PromRequest) -> Response {
    let (state, tenant, p) = (&r.state, r.tenant.as_str(), &r.p);
    let number = |name: &str| -> Result<i64, String> {
        match p.get(name).filter(|s| !s.is_empty()) {
            None => Ok(-1),
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| format!("{name} must be a number")),
        }
    };
    let (limit, per_metric) = match (number("limit"), number("limit_per_metric")) {
        (Ok(l), Ok(m)) => (l, m),
        (Err(e), _) | (_, Err(e)) => return bad_data(e),
    };
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let families = match state.querier.metric_metadata(tenant, metric).await {
        Ok(f) => f,
        Err(e) => return api_error(e),
    };
    let per_metric = usize::try_from(per_metric)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let out: serde_json::Map<String, serde_json::Value> = families
        .into_iter()
        .take(limit)
        .map(|(name, entries)| {
            let list: Vec<serde_json::Value> = entries
                .iter()
                .take(per_metric)
                .map(|m| json!({"type": m.kind.as_str(), "help": m.help, "unit": m.unit}))
                .collect();
            (name, json!(list))
        })
        .collect();
    success(serde_json::Value::Object(out))
}

async fn ready(State(state): State<Shared>) -> Response {
    ready_response(&state.ready)
}

/// `/ready`: 200 once the process serves, else 503 saying what it waits for.
pub fn ready_response(startup: &startup::Startup) -> Response {
    if startup.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", startup.phase()),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Shared>) -> Response {
    metrics_response(&state.registry)
}

/// `/metrics`: every metric of `registry` in Prometheus's text format.
pub fn metrics_response(registry: &Registry) -> Response {
    let mut buf = Vec::new();
    let enc = TextEncoder::new();
    if let Err(e) = enc.encode(&registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, enc.format_type().to_string())], buf).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_prometheus_writes_them() {
        let d = |s: u64| prometheus_duration(Duration::from_secs(s));
        assert_eq!(d(15 * 86_400), "15d");
        assert_eq!(d(14 * 86_400), "2w");
        assert_eq!(d(90 * 86_400), "90d");
        assert_eq!(d(721 * 3_600), "30d1h");
        assert_eq!(d(365 * 86_400), "1y");
        assert_eq!(d(90), "1m30s");
        assert_eq!(prometheus_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(d(0), "");
    }

    #[tokio::test]
    async fn a_panicking_handler_costs_its_request_a_500_not_the_process() {
        use tower::ServiceExt;
        async fn boom() -> &'static str {
            panic!("index out of bounds")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "ok" }))
            .layer(CatchPanicLayer::custom(panic_response));
        let before = REQUEST_PANICS.get();
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("\"errorType\":\"internal\"") && text.contains("index out of bounds"),
            "{text}"
        );
        assert_eq!(REQUEST_PANICS.get(), before + 1);
        // The next request is served.
        let resp = app
            .oneshot(
                Request::builder()
                    .uri("/fine")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[test]
    fn tenant_rules() {
        assert!(validate_tenant("team-a_1.prod").is_ok());
        assert!(validate_tenant("").is_err());
        assert!(validate_tenant("..").is_err());
        assert!(validate_tenant("a/b").is_err());
        assert!(validate_tenant("a|b").is_err());
        assert!(validate_tenant(&"x".repeat(151)).is_err());
    }
}

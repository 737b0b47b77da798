//! [`Frontend`]: answers read requests by queueing them for the queriers,
//! range queries cut into parts (cached when old enough) and merged.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value as Json;
use strata_proto::frontend::{Header, HttpRequest, HttpResponse};
use tokio::sync::{Semaphore, oneshot};
use tracing::Instrument;

use crate::FrontendConfig;
use crate::cache::{PartKey, ResultsCache};
use crate::metrics::{PARTS, QUEUE_LENGTH, REQUESTS, SHARD_QUERIES};
use crate::queue::{Job, RequestQueue};
use crate::shard::{self, ShardError, ShardPlan};
use crate::split::{self, Api};
use strata_logql::shard::ShardPlan as LogqlShardPlan;

/// The time a request waited in the queue (seconds), added to its answer
/// by the service for [`Frontend::run`], which takes it off again.
pub(crate) const QUEUE_TIME_HEADER: &str = "x-strata-queue-seconds";

/// What answering one query took, for its statistics: parts, parts from
/// the cache, shard queries, and the time its requests waited in the queue.
#[derive(Default)]
struct Tally {
    parts: std::sync::atomic::AtomicUsize,
    cached: std::sync::atomic::AtomicUsize,
    stored: std::sync::atomic::AtomicUsize,
    shard_queries: std::sync::atomic::AtomicUsize,
    queue_micros: std::sync::atomic::AtomicU64,
}

impl Tally {
    fn add(counter: &std::sync::atomic::AtomicUsize) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn get(counter: &std::sync::atomic::AtomicUsize) -> usize {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn queue_secs(&self) -> f64 {
        self.queue_micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
    }
}

/// A query cut into shard queries: PromQL's plan or LogQL's.
enum Sharded {
    PromQL(ShardPlan),
    LogQL(LogqlShardPlan),
}

/// What the shard queries of one query (or part) answered together.
struct ShardAnswers {
    series: Vec<Vec<strata_promql::MatrixSeries>>,
    /// Their statistics, summed.
    stats: Option<Json>,
    warnings: Vec<String>,
    infos: Vec<String>,
}

/// One client query's run: how many of its requests may be queued at once
/// (its parts and shard queries together), and its tally.
struct QueryRun {
    permits: Semaphore,
    tally: Tally,
}

impl QueryRun {
    fn new() -> Self {
        Self {
            permits: Semaphore::new(MAX_QUERY_PARALLELISM),
            tally: Tally::default(),
        }
    }
}

/// Largest request body the frontend reads (a POSTed query).
const MAX_BODY_BYTES: usize = 10 << 20;
/// Parts of one query queued at once (Mimir's max query parallelism).
const MAX_QUERY_PARALLELISM: usize = 14;
/// Most steps of a range query (Prometheus's and Loki's limit): a longer
/// query goes to a querier whole, to be refused as it would be unsplit.
const MAX_POINTS: i64 = 11_000;

/// Request headers not passed on: the connection's own, and the length of
/// a body that may be replaced.
const HOP_BY_HOP: [&str; 9] = strata_model::HOP_BY_HOP_HEADERS;

/// Whether the query-frontend answers `path`: the Prometheus and Loki read
/// APIs, not writes, rules (the ruler's) or Loki's live tail.
pub fn is_frontend_path(path: &str) -> bool {
    let p = path.strip_prefix("/prometheus").unwrap_or(path);
    if let Some(rest) = p.strip_prefix("/api/v1/") {
        return !matches!(rest, "push" | "write" | "rules" | "alerts")
            && !rest.starts_with("otlp/")
            && !rest.starts_with("rules/");
    }
    if let Some(rest) = path.strip_prefix("/loki/api/v1/") {
        return !matches!(rest, "push" | "tail") && !rest.starts_with("rules");
    }
    false
}

/// The query-frontend of this process.
pub struct Frontend {
    cfg: FrontendConfig,
    queue: Arc<RequestQueue>,
    cache: Option<ResultsCache>,
    /// Tenants' query length limits, checked before a query is cut (a
    /// part is shorter than the query).
    overrides: Arc<strata_limits::Overrides>,
    /// Old data written through this process's distributor.
    write_generations: Option<Arc<strata_model::freshness::WriteGenerations>>,
    /// Evaluates what lies above sharded aggregations.
    engine: strata_promql::Engine,
    /// Client requests each tenant has in this frontend (queued or running).
    outstanding: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
}

/// One admitted client request of a tenant; its place is freed when it is
/// dropped (answered, or its caller went away).
struct Admitted<'a> {
    frontend: &'a Frontend,
    tenant: String,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut m = self.frontend.outstanding.lock();
        if let Some(n) = m.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.tenant);
            }
        }
    }
}

/// A failure to answer, as the HTTP answer it becomes.
type Refusal = Response;

/// An error of the frontend's own, shaped as the API at `path` shapes its
/// errors: Prometheus's JSON envelope, Loki's plain text.
fn refuse(path: &str, status: StatusCode, message: impl Into<String>) -> Refusal {
    let message = message.into();
    if path.starts_with("/loki/") {
        return (status, message).into_response();
    }
    let error_type = match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "bad_data",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::UNAUTHORIZED => "unauthorized",
        _ => "internal",
    };
    (
        status,
        axum::Json(
            serde_json::json!({"status": "error", "errorType": error_type, "error": message}),
        ),
    )
        .into_response()
}

/// Adds the notes (warnings or infos) `into` does not have yet, in order.
fn keep_once(into: &mut Vec<String>, notes: Vec<String>) {
    for n in notes {
        if !into.contains(&n) {
            into.push(n);
        }
    }
}

/// A JSON answer written here.
fn json_answer(body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![Header {
            name: "content-type".into(),
            value: "application/json".into(),
        }],
        body: body.into(),
    }
}

/// A step in ns as Loki reads it: float seconds, exact to the nanosecond.
fn loki_step_secs(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    if nanos == 0 {
        return secs.to_string();
    }
    let frac = format!("{nanos:09}");
    format!("{secs}.{}", frac.trim_end_matches('0'))
}

/// A PromQL evaluation error in Prometheus's envelope, as a querier
/// answers it.
fn engine_refusal(e: &strata_promql::EngineError) -> Refusal {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(
            serde_json::json!({"status": "error", "errorType": e.error_type(), "error": e.to_string()}),
        ),
    )
        .into_response()
}

impl Frontend {
    /// A frontend with its queue and (when enabled) results cache, under
    /// the tenants' limits in `overrides`; `write_generations` when this
    /// process's distributor records old writes. Fails when the results
    /// cache's directory cannot be used.
    pub async fn new(
        cfg: FrontendConfig,
        overrides: Arc<strata_limits::Overrides>,
        write_generations: Option<Arc<strata_model::freshness::WriteGenerations>>,
    ) -> Result<Arc<Self>, String> {
        let queue = Arc::new(RequestQueue::new(cfg.max_queriers_per_tenant));
        let cache = if cfg.cache_results {
            Some(
                ResultsCache::new(
                    cfg.results_cache_bytes,
                    cfg.results_cache_disk_bytes,
                    &cfg.results_cache_dir,
                )
                .await?,
            )
        } else {
            None
        };
        let engine = strata_promql::Engine::new(strata_promql::EngineOptions {
            timeout: cfg.timeout,
            max_samples: cfg.max_samples,
            ..Default::default()
        });
        Ok(Arc::new(Self {
            cfg,
            queue,
            cache,
            overrides,
            write_generations,
            engine,
            outstanding: Default::default(),
        }))
    }

    /// Admits a client request of `tenant`, or `None` when the tenant has
    /// `max_outstanding_requests_per_tenant` in this frontend already. A
    /// request's parts and shard queries are not counted on their own: they
    /// are at most 14 at a time per request, and refusing one halfway would
    /// waste the parts already answered.
    fn admit(&self, tenant: &str) -> Option<Admitted<'_>> {
        let max = self.cfg.max_outstanding_requests_per_tenant;
        let mut m = self.outstanding.lock();
        let n = m.entry(tenant.to_string()).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Admitted {
            frontend: self,
            tenant: tenant.to_string(),
        })
    }

    /// The queue the queriers' workers pull from.
    pub fn queue(&self) -> &Arc<RequestQueue> {
        &self.queue
    }

    /// The frontend's settings.
    pub fn config(&self) -> &FrontendConfig {
        &self.cfg
    }

    /// axum middleware: the paths the frontend answers go to it, the rest
    /// to `next`.
    pub async fn intercept(State(f): State<Arc<Frontend>>, req: Request, next: Next) -> Response {
        if !is_frontend_path(req.uri().path()) {
            return next.run(req).await;
        }
        let started = Instant::now();
        let span = tracing::info_span!(
            "query_frontend",
            path = %req.uri().path(),
            trace_id = tracing::field::Empty
        );
        if let Some(id) = strata_telemetry::continue_trace(&span, req.headers()) {
            span.record("trace_id", id);
        }
        f.handle(req, started).instrument(span).await
    }

    async fn handle(&self, req: Request, started: Instant) -> Response {
        let path = req.uri().path().to_string();
        let tenant = match self.tenant(req.headers()) {
            Ok(t) => t,
            Err((status, message)) => return refuse(&path, status, message),
        };
        let Some(_admitted) = self.admit(&tenant) else {
            return refuse(
                &path,
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many outstanding requests for tenant {tenant:?} (limit {}, -query-frontend.max-outstanding-requests-per-tenant)",
                    self.cfg.max_outstanding_requests_per_tenant
                ),
            );
        };
        let (parts, body) = req.into_parts();
        // A declared length past the limit is refused before any of the body
        // is read, so the client gets its answer rather than a reset.
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return refuse(
                &path,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return refuse(
                    &path,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {MAX_BODY_BYTES} bytes"),
                );
            }
        };
        let url = parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_string());
        let request = HttpRequest {
            method: parts.method.as_str().to_string(),
            url,
            headers: forwarded_headers(&parts.headers),
            body: body.to_vec().into(),
        };
        if self.cfg.parallelize_shardable_queries
            && path.ends_with("/api/v1/query")
            && !path.starts_with("/loki/")
            && let Some(params) = request_params(&parts.uri, &parts.headers, &body)
            && let Some((query, time)) = instant_query(&params)
            && let Some(plan) = self.shard_plan(&tenant, &query)
        {
            let run = QueryRun::new();
            let range = (time, time, 1000);
            let answer = match self
                .run_sharded(
                    &tenant,
                    &path,
                    &plan,
                    &params,
                    range,
                    true,
                    &request.headers,
                    &run,
                )
                .await
            {
                Ok(r) => to_response(r),
                Err(r) => r,
            };
            let outcome = if answer.status().is_success() {
                "ok"
            } else {
                "error"
            };
            REQUESTS.with_label_values(&["sharded", outcome]).inc();
            tracing::info!(
                tenant,
                path,
                shard_queries = plan.queries().len(),
                status = answer.status().as_u16(),
                duration_ms = started.elapsed().as_millis() as u64,
                "query-frontend sharded query"
            );
            return answer;
        }
        let api = if path.ends_with("/loki/api/v1/query_range") {
            Some(Api::Loki)
        } else if path.ends_with("/api/v1/query_range") {
            Some(Api::Prometheus)
        } else {
            None
        };
        if let Some(api) = api
            && let Some(range) =
                RangeQuery::parse(api, &parts.uri, &parts.headers, &body, &self.cfg)
            && self.within_limits(&tenant, &range)
        {
            let plan = match range.api {
                Api::Prometheus => range
                    .query
                    .as_deref()
                    .and_then(|q| self.shard_plan(&tenant, q))
                    .map(Sharded::PromQL),
                Api::Loki => range
                    .query
                    .as_deref()
                    .and_then(|q| self.logql_shard_plan(&tenant, q))
                    .map(Sharded::LogQL),
            };
            let query = range.query.clone().unwrap_or_default();
            let run = QueryRun::new();
            let answer = self
                .run_split(&tenant, &path, &request, range, plan.as_ref(), &run)
                .await;
            let outcome = if answer.status().is_success() {
                "ok"
            } else {
                "error"
            };
            REQUESTS.with_label_values(&["split", outcome]).inc();
            let t = &run.tally;
            tracing::info!(
                tenant,
                path,
                query,
                parts = Tally::get(&t.parts),
                cached_parts = Tally::get(&t.cached),
                shard_queries = Tally::get(&t.shard_queries),
                queue_time_seconds = t.queue_secs(),
                status = answer.status().as_u16(),
                duration_ms = started.elapsed().as_millis() as u64,
                "query stats"
            );
            return answer;
        }
        let answer = match self.run(&tenant, request, None).await {
            Ok(r) => to_response(r),
            Err(r) => r,
        };
        let outcome = if answer.status().is_success() {
            "ok"
        } else {
            "error"
        };
        REQUESTS.with_label_values(&["forwarded", outcome]).inc();
        answer
    }

    /// The request's tenant, resolved and validated as the querier does
    /// (the queue, its bound and the metrics are per tenant).
    fn tenant(&self, headers: &http::HeaderMap) -> Result<String, (StatusCode, String)> {
        let header = headers.get("X-Scope-OrgID").map(|v| v.to_str().ok());
        strata_model::request_tenant(header, self.cfg.multitenancy).map_err(|(code, msg)| {
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                msg,
            )
        })
    }

    /// Whether the whole query is within the tenant's length limits and
    /// the most steps: a query past them goes to a querier whole and is
    /// refused there as it would be unsplit.
    fn within_limits(&self, tenant: &str, q: &RangeQuery) -> bool {
        let limits = self.overrides.for_tenant(tenant);
        let length = i128::from(q.end) - i128::from(q.start);
        let mut bounds = vec![limits.max_total_query_length];
        if q.api == Api::Loki {
            bounds.push(limits.max_query_length);
        }
        let too_long = bounds
            .iter()
            .any(|b| !b.is_zero() && length > b.as_millis() as i128 * i128::from(q.api.per_ms()));
        !too_long && length / i128::from(q.step) < i128::from(MAX_POINTS)
    }

    /// Queues `request` for a querier and waits for its answer.
    async fn run(
        &self,
        tenant: &str,
        mut request: HttpRequest,
        tally: Option<&Tally>,
    ) -> Result<HttpResponse, Refusal> {
        let path = request.url.split('?').next().unwrap_or("").to_string();
        // The querier continues this request's trace, not the caller's.
        let trace = strata_telemetry::trace_headers();
        if !trace.is_empty() {
            request.headers.retain(|h| {
                !h.name.eq_ignore_ascii_case("traceparent")
                    && !h.name.eq_ignore_ascii_case("tracestate")
            });
            request.headers.extend(
                trace
                    .into_iter()
                    .map(|(name, value)| Header { name, value }),
            );
        }
        let refuse = |status, message: String| refuse(&path, status, message);
        let (tx, rx) = oneshot::channel();
        let job = Job {
            tenant: tenant.to_string(),
            request,
            enqueued: Instant::now(),
            respond: tx,
            failed_on: Vec::new(),
            attempts: 0,
        };
        self.queue.enqueue(job);
        QUEUE_LENGTH.set(self.queue.len() as i64);
        match tokio::time::timeout(self.cfg.timeout, rx).await {
            Ok(Ok(Ok(mut answer))) => {
                if let Some(i) = answer
                    .headers
                    .iter()
                    .position(|h| h.name == QUEUE_TIME_HEADER)
                {
                    let waited = answer.headers.remove(i).value.parse::<f64>().unwrap_or(0.0);
                    if let Some(t) = tally {
                        t.queue_micros
                            .fetch_add((waited * 1e6) as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Ok(answer)
            }
            Ok(Ok(Err(why))) => Err(refuse(StatusCode::BAD_GATEWAY, why)),
            Ok(Err(_)) => Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the query-frontend lost the request".into(),
            )),
            Err(_) => Err(refuse(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "no querier answered within {:?} ({} connected)",
                    self.cfg.timeout,
                    self.queue.queriers()
                ),
            )),
        }
    }

    /// The shard plan of a tenant's PromQL query, when sharding is on (and
    /// the tenant has shards) and the query has a shardable aggregation.
    fn shard_plan(&self, tenant: &str, query: &str) -> Option<ShardPlan> {
        self.plan_shards(tenant, query, ShardPlan::new)
    }

    /// The shard plan of a tenant's LogQL metric query, as
    /// [`Self::shard_plan`] for PromQL.
    fn logql_shard_plan(&self, tenant: &str, query: &str) -> Option<LogqlShardPlan> {
        self.plan_shards(tenant, query, LogqlShardPlan::new)
    }

    /// `plan(query, shards, max_queries)` with the tenant's shards, when
    /// sharding is on; counted.
    fn plan_shards<P>(
        &self,
        tenant: &str,
        query: &str,
        plan: impl FnOnce(&str, u32, u32) -> Option<P>,
    ) -> Option<P> {
        if !self.cfg.parallelize_shardable_queries {
            return None;
        }
        let planned = plan(
            query,
            self.overrides
                .for_tenant(tenant)
                .query_sharding_total_shards,
            self.cfg.query_sharding_max_sharded_queries,
        );
        let outcome = if planned.is_some() {
            "sharded"
        } else {
            "not_shardable"
        };
        crate::metrics::SHARDING_REWRITES
            .with_label_values(&[outcome])
            .inc();
        planned
    }

    /// A PromQL query (or one part of a split one) over `start..=end` every
    /// `step` ms, or at `start` when `instant`, run as `plan`'s shard
    /// queries (at most `permits` at a time) and evaluated over their
    /// merged answers; answers as a querier would.
    #[allow(clippy::too_many_arguments)]
    async fn run_sharded(
        &self,
        tenant: &str,
        path: &str,
        plan: &ShardPlan,
        params: &[(String, String)],
        (start, end, step): (i64, i64, i64),
        instant: bool,
        headers: &[Header],
        run: &QueryRun,
    ) -> Result<HttpResponse, Refusal> {
        let queries = plan.queries().iter().map(|q| q.query.as_str());
        let shards = self
            .fan_out(
                tenant,
                path,
                Api::Prometheus,
                queries,
                params,
                (start, end, step),
                instant,
                headers,
                run,
            )
            .await?;
        let mut out = plan
            .evaluate(&self.engine, shards.series, (start, end, step), instant)
            .await
            .map_err(|e| match e {
                ShardError::Engine(e) => engine_refusal(&e),
                other => refuse(path, StatusCode::BAD_GATEWAY, other.to_string()),
            })?;
        keep_once(&mut out.warnings, shards.warnings);
        keep_once(&mut out.infos, shards.infos);
        // A range part always carries its shards' statistics (the split
        // query sums them); an instant query only when its client asked,
        // with the time its shard queries waited in the queue.
        let stats = match (instant, param(params, "stats")) {
            (false, _) => shards.stats,
            (true, Some(_)) => Some(split::prometheus_stats(
                shards.stats,
                run.tally.queue_secs(),
                (0, 0),
            )),
            (true, None) => None,
        };
        let stats = stats.map(|s| s.to_string().into_bytes());
        let body = strata_promql::json::query_response_with_stats(&out, stats.as_deref());
        Ok(json_answer(body))
    }

    /// One part of a LogQL metric range query (ns) run as `plan`'s shard
    /// queries and merged; answers as a querier would, with the shards'
    /// statistics summed.
    #[allow(clippy::too_many_arguments)]
    async fn run_logql_sharded(
        &self,
        tenant: &str,
        path: &str,
        plan: &LogqlShardPlan,
        params: &[(String, String)],
        range: (i64, i64, i64),
        headers: &[Header],
        run: &QueryRun,
    ) -> Result<HttpResponse, Refusal> {
        let queries = plan.queries().iter().map(|q| q.query.as_str());
        let shards = self
            .fan_out(
                tenant,
                path,
                Api::Loki,
                queries,
                params,
                range,
                false,
                headers,
                run,
            )
            .await?;
        let answers = shards
            .series
            .into_iter()
            .map(|shard| {
                shard
                    .into_iter()
                    .map(|s| strata_logql::Series {
                        labels: s.labels,
                        points: s.points,
                    })
                    .collect()
            })
            .collect();
        let merged = plan
            .merge(answers, strata_logql::eval::MAX_QUERY_SERIES)
            .map_err(|e| refuse(path, StatusCode::BAD_REQUEST, e.to_string()))?;
        use strata_promql::json::{write_list, write_series};
        let mut body = Vec::with_capacity(256);
        body.extend_from_slice(br#"{"status":"success","data":{"resultType":"matrix","result":"#);
        write_list(&mut body, &merged, |b, s| {
            write_series(b, &s.labels, s.points.iter().copied())
        });
        if let Some(stats) = shards.stats {
            body.extend_from_slice(br#","stats":"#);
            body.extend_from_slice(stats.to_string().as_bytes());
        }
        body.extend_from_slice(b"}}");
        Ok(json_answer(body))
    }

    /// Runs `queries` as range queries over `start..=end` every `step` (the
    /// API's unit; one step at `start` when `instant`), at most `permits`
    /// at a time, and gathers their series, summed statistics and notes.
    #[allow(clippy::too_many_arguments)]
    async fn fan_out(
        &self,
        tenant: &str,
        path: &str,
        api: Api,
        queries: impl Iterator<Item = &str>,
        params: &[(String, String)],
        (start, end, step): (i64, i64, i64),
        instant: bool,
        headers: &[Header],
        run: &QueryRun,
    ) -> Result<ShardAnswers, Refusal> {
        let range_path = if instant {
            format!("{path}_range")
        } else {
            path.to_string()
        };
        let mut base: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "query" | "start" | "end" | "step" | "time"))
            .cloned()
            .collect();
        match api {
            Api::Prometheus => {
                base.push(("step".into(), Api::Prometheus.format_time(step)));
                if param(&base, "stats").is_none() {
                    base.push(("stats".into(), "all".into()));
                }
            }
            Api::Loki => base.push(("step".into(), loki_step_secs(step))),
        }
        let headers: Vec<Header> = headers
            .iter()
            .filter(|h| !h.name.eq_ignore_ascii_case("content-type"))
            .cloned()
            .collect();
        let requests: Vec<HttpRequest> = queries
            .map(|query| {
                let mut params = base.clone();
                params.push(("query".into(), query.to_string()));
                HttpRequest {
                    method: "GET".into(),
                    url: part_url(&range_path, &params, api, (start, end)),
                    headers: headers.clone(),
                    body: Bytes::new(),
                }
            })
            .collect();
        let count = requests.len();
        let calls = requests
            .into_iter()
            .map(|request| self.run_shard_query(tenant, path, request, run));
        let answers = futures::stream::iter(calls).buffered(MAX_QUERY_PARALLELISM);
        tokio::pin!(answers);
        let mut out = ShardAnswers {
            series: Vec::with_capacity(count),
            stats: None,
            warnings: Vec::new(),
            infos: Vec::new(),
        };
        let mut points = 0usize;
        // The first failed shard answers for the query.
        while let Some(a) = answers.next().await {
            let answer = a?;
            // Bounded as one querier bounds one query.
            points += answer.series.iter().map(|s| s.points.len()).sum::<usize>();
            if points > self.cfg.max_samples {
                let e = strata_promql::EngineError::TooManySamples;
                return Err(match api {
                    Api::Prometheus => engine_refusal(&e),
                    Api::Loki => refuse(path, StatusCode::BAD_REQUEST, e.to_string()),
                });
            }
            out.series.push(answer.series);
            if let Some(s) = answer.stats {
                out.stats = Some(match out.stats {
                    Some(total) => split::sum_stats(total, s),
                    None => s,
                });
            }
            keep_once(&mut out.warnings, answer.warnings);
            keep_once(&mut out.infos, answer.infos);
        }
        Ok(out)
    }

    /// One shard query, when `permits` allow, as its series.
    async fn run_shard_query(
        &self,
        tenant: &str,
        path: &str,
        request: HttpRequest,
        run: &QueryRun,
    ) -> Result<shard::ShardAnswer, Refusal> {
        let _permit = run
            .permits
            .acquire()
            .await
            .map_err(|_| refuse(path, StatusCode::INTERNAL_SERVER_ERROR, "query withdrawn"))?;
        SHARD_QUERIES.inc();
        Tally::add(&run.tally.shard_queries);
        let answer = self.run(tenant, request, Some(&run.tally)).await?;
        let json = success_json(path, answer)?.0;
        shard::parse_matrix(&json).map_err(|e| refuse(path, StatusCode::BAD_GATEWAY, e.to_string()))
    }

    /// A range query in parts: cached parts from the cache, the others
    /// from queriers (a few at a time, or by shards per `plan`), merged.
    async fn run_split(
        &self,
        tenant: &str,
        path: &str,
        original: &HttpRequest,
        q: RangeQuery,
        plan: Option<&Sharded>,
        run: &QueryRun,
    ) -> Response {
        let fresh_from = strata_model::now_ms()
            .saturating_sub(self.cfg.max_cache_freshness.as_millis() as i64)
            .saturating_mul(q.api.per_ms());
        let generation = self
            .write_generations
            .as_ref()
            .map_or(0, |g| g.generation(tenant));
        let headers: Vec<Header> = original
            .headers
            .iter()
            .filter(|h| !h.name.eq_ignore_ascii_case("content-type"))
            .cloned()
            .collect();
        let answers = futures::stream::iter(q.parts.iter().copied().map(|range| {
            let key = PartKey {
                tenant,
                path,
                params: &q.params,
                range,
                generation,
            };
            let headers = headers.clone();
            let api = q.api;
            let params = &q.params;
            let step = q.step;
            async move {
                Tally::add(&run.tally.parts);
                let cacheable = range.1 < fresh_from && !q.reads_ahead;
                if cacheable
                    && let Some(cache) = &self.cache
                    && let Some(hit) = cache.get(&key).await
                    && split::PartAnswer::succeeded(&hit) == Some(true)
                {
                    PARTS.with_label_values(&["cache"]).inc();
                    Tally::add(&run.tally.cached);
                    return Ok((hit, true));
                }
                PARTS.with_label_values(&["querier"]).inc();
                let answer = match plan {
                    Some(Sharded::PromQL(plan)) => {
                        let range = (range.0, range.1, step);
                        self.run_sharded(tenant, path, plan, params, range, false, &headers, run)
                            .await?
                    }
                    Some(Sharded::LogQL(plan)) => {
                        let range = (range.0, range.1, step);
                        self.run_logql_sharded(tenant, path, plan, params, range, &headers, run)
                            .await?
                    }
                    None => {
                        // A part carries statistics when the query asked
                        // for them (Loki's answers always do).
                        let request = HttpRequest {
                            method: "GET".into(),
                            url: part_url(path, params, api, range),
                            headers,
                            body: Bytes::new(),
                        };
                        self.run(tenant, request, Some(&run.tally)).await?
                    }
                };
                let body = success_body(path, answer)?;
                if cacheable && let Some(cache) = &self.cache {
                    cache.put(&key, body.clone());
                    Tally::add(&run.tally.stored);
                }
                Ok((body, false))
            }
        }))
        .buffered(MAX_QUERY_PARALLELISM);
        tokio::pin!(answers);
        let mut bodies = Vec::with_capacity(q.parts.len());
        // The first failed part answers for the query; dropping the stream
        // withdraws the parts not answered yet.
        while let Some(a) = answers.next().await {
            match a {
                Ok(part) => bodies.push(part),
                Err(refusal) => return refusal,
            }
        }
        // One part of a PromQL query without statistics is the answer as
        // the querier wrote it: reading it again would cost as much as
        // writing it did (a range answer is mostly its points).
        if let [(body, _)] = bodies.as_slice()
            && q.api == Api::Prometheus
            && param(&q.params, "stats").is_none()
        {
            return (
                [(http::header::CONTENT_TYPE, "application/json")],
                body.clone(),
            )
                .into_response();
        }
        let mut parts = Vec::with_capacity(bodies.len());
        // What the queriers read for the parts they answered (cached parts
        // read nothing now).
        let mut fetched: Option<Json> = None;
        for (body, from_cache) in &bodies {
            let Some(part) = split::PartAnswer::parse(body) else {
                return refuse(
                    path,
                    StatusCode::BAD_GATEWAY,
                    "a querier's answer is not a query answer",
                );
            };
            if let Some(s) = part.stats().filter(|_| !from_cache) {
                fetched = Some(match fetched {
                    Some(total) => split::sum_stats(total, s.clone()),
                    None => s.clone(),
                });
            }
            parts.push(part);
        }
        let t = &run.tally;
        let stats = match q.api {
            Api::Loki => Some(split::loki_stats(
                fetched,
                t.queue_secs(),
                (
                    Tally::get(&t.parts),
                    Tally::get(&t.cached),
                    Tally::get(&t.stored),
                ),
                Tally::get(&t.shard_queries),
            )),
            Api::Prometheus if param(&q.params, "stats").is_some() => {
                Some(split::prometheus_stats(
                    fetched,
                    t.queue_secs(),
                    (Tally::get(&t.parts), Tally::get(&t.cached)),
                ))
            }
            Api::Prometheus => None,
        };
        match split::merge(&parts, stats) {
            Ok(merged) => {
                ([(http::header::CONTENT_TYPE, "application/json")], merged).into_response()
            }
            Err(e) => refuse(path, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// A range query the frontend cuts: its API, its parameters but start and
/// end (sorted), and its parts.
struct RangeQuery {
    api: Api,
    /// The query's text.
    query: Option<String>,
    params: Vec<(String, String)>,
    parts: Vec<(i64, i64)>,
    /// Whether the query reads data after its steps (a negative offset):
    /// no part of it is old enough to cache.
    reads_ahead: bool,
    /// The whole query's start, end and step.
    start: i64,
    end: i64,
    step: i64,
}

impl RangeQuery {
    /// The range query of a request, when it is one the frontend cuts;
    /// `None` sends the request on whole (a querier then answers any
    /// error in it).
    fn parse(
        api: Api,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &Bytes,
        cfg: &FrontendConfig,
    ) -> Option<Self> {
        let pairs = request_params(uri, headers, body)?;
        let get = |key: &str| param(&pairs, key);
        let query = get("query")?.to_string();
        let query = query.as_str();
        let compact: String = query.chars().filter(|c| !c.is_whitespace()).collect();
        let reads_ahead = compact.contains("offset-");
        let (start, end, step) = match api {
            Api::Prometheus => {
                if !split::promql_splittable(query) {
                    return None;
                }
                (
                    strata_model::api_time::prometheus_time_ms(get("start")?)?,
                    strata_model::api_time::prometheus_time_ms(get("end")?)?,
                    strata_promql::parse_duration_param(get("step")?).ok()?,
                )
            }
            Api::Loki => {
                if !split::logql_splittable(query) {
                    return None;
                }
                (
                    strata_model::api_time::loki_time_ns(get("start")?)?,
                    strata_model::api_time::loki_time_ns(get("end")?)?,
                    loki_step_ns(get("step")?)?,
                )
            }
        };
        if step <= 0 || end < start {
            return None;
        }
        let (start, end) = if cfg.align_queries_with_step {
            (
                start.div_euclid(step).checked_mul(step)?,
                end.div_euclid(step).checked_mul(step)?,
            )
        } else {
            (start, end)
        };
        let interval = i64::try_from(cfg.split_queries_by_interval.as_millis())
            .ok()?
            .checked_mul(api.per_ms())?;
        let parts = match split::parts(start, end, step, interval) {
            Some(parts) => parts,
            // One part (not split, or too many): still cached and aligned.
            None => {
                let last = i128::from(start)
                    + (i128::from(end) - i128::from(start)) / i128::from(step) * i128::from(step);
                vec![(start, i64::try_from(last).ok()?)]
            }
        };
        let mut params: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(k, _)| k != "start" && k != "end")
            .collect();
        // The first value of a repeated key is the one a querier reads.
        let mut seen = std::collections::HashSet::new();
        params.retain(|(k, _)| seen.insert(k.clone()));
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Some(Self {
            api,
            query: Some(query.to_string()),
            params,
            parts,
            reads_ahead,
            start,
            end,
            step,
        })
    }
}

/// A request's parameters: its URL's query string and a form body; `None`
/// for any other body.
fn request_params(
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &Bytes,
) -> Option<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        pairs.extend(url::form_urlencoded::parse(body).into_owned());
    } else if !body.is_empty() {
        return None;
    }
    Some(pairs)
}

/// The first non-empty value of `key`, the one a querier reads.
fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// An instant query's text and time (ms; now when not given).
fn instant_query(pairs: &[(String, String)]) -> Option<(String, i64)> {
    let query = param(pairs, "query")?;
    let time = match param(pairs, "time") {
        Some(t) => strata_model::api_time::prometheus_time_ms(t)?,
        None => strata_model::now_ms(),
    };
    Some((query.to_string(), time))
}

/// Loki's step: a duration (`30s`) or float seconds, in ns.
fn loki_step_ns(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        let ns = (f * 1e9).floor();
        return (ns >= 1.0 && ns < i64::MAX as f64).then_some(ns as i64);
    }
    let d = strata_logql::parser::parse_duration(s)?;
    i64::try_from(d.as_nanos()).ok().filter(|ns| *ns > 0)
}

/// The URL of one part: the query's parameters with the part's range.
fn part_url(path: &str, params: &[(String, String)], api: Api, (start, end): (i64, i64)) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    q.append_pair("start", &api.format_time(start));
    q.append_pair("end", &api.format_time(end));
    format!("{path}?{}", q.finish())
}

/// `headers` on the wire, without the connection's own.
pub(crate) fn forwarded_headers(headers: &http::HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            Some(Header {
                name: name.as_str().to_string(),
                value: value.to_str().ok()?.to_string(),
            })
        })
        .collect()
}

/// A querier's successful answer's body, checked to be one; any other
/// answer is the query's.
#[allow(clippy::result_large_err)]
fn success_body(path: &str, answer: HttpResponse) -> Result<Bytes, Refusal> {
    if answer.status != 200 {
        return Err(to_response(answer));
    }
    match split::PartAnswer::succeeded(&answer.body) {
        Some(true) => Ok(answer.body),
        Some(false) => Err(to_response(answer)),
        None => Err(refuse(
            path,
            StatusCode::BAD_GATEWAY,
            "a querier's answer is not a query answer",
        )),
    }
}

/// A querier's successful answer as JSON (and the answer itself); any
/// other answer is the query's (a Refusal, the response the caller
/// returns at once, as every fallible step of a part returns it).
#[allow(clippy::result_large_err)]
fn success_json(path: &str, answer: HttpResponse) -> Result<(Json, HttpResponse), Refusal> {
    if answer.status != 200 {
        return Err(to_response(answer));
    }
    let json: Json = serde_json::from_slice(&answer.body).map_err(|e| {
        refuse(
            path,
            StatusCode::BAD_GATEWAY,
            format!("a querier's answer is not JSON: {e}"),
        )
    })?;
    if json.get("status").and_then(Json::as_str) != Some("success") {
        return Err(to_response(answer));
    }
    Ok((json, answer))
}

/// A querier's answer as this process's answer.
fn to_response(answer: HttpResponse) -> Response {
    let status = u16::try_from(answer.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    for h in answer.headers {
        if HOP_BY_HOP.contains(&h.name.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(&h.value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenant's client requests are bounded, each counted once until it
    /// is dropped; other tenants are not affected.
    #[tokio::test]
    async fn client_requests_are_admitted_per_tenant() {
        let cfg = FrontendConfig {
            max_outstanding_requests_per_tenant: 2,
            cache_results: false,
            ..Default::default()
        };
        let overrides = Arc::new(strata_limits::Overrides::new(Default::default()));
        let f = Frontend::new(cfg, overrides, None).await.unwrap();
        let a1 = f.admit("a").expect("first");
        let _a2 = f.admit("a").expect("second");
        assert!(f.admit("a").is_none(), "a third at once");
        let _b = f.admit("b").expect("another tenant");
        drop(a1);
        assert!(f.admit("a").is_some(), "a place freed");
    }

    /// Sharding is per tenant: a tenant's runtime override of its shards
    /// (0: none) wins over the default.
    #[tokio::test]
    async fn shards_are_a_tenant_limit() {
        let cfg = FrontendConfig {
            parallelize_shardable_queries: true,
            cache_results: false,
            ..Default::default()
        };
        let overrides = Arc::new(strata_limits::Overrides::new(Default::default()));
        overrides
            .apply_runtime_config("overrides:\n  small:\n    query_sharding_total_shards: 2\n  none:\n    query_sharding_total_shards: 0\n")
            .unwrap();
        let f = Frontend::new(cfg, overrides, None).await.unwrap();
        let shards = |tenant: &str| f.shard_plan(tenant, "sum(x)").map(|p| p.queries().len());
        assert_eq!(shards("anyone"), Some(16));
        assert_eq!(shards("small"), Some(2));
        assert_eq!(shards("none"), None);
    }

    #[test]
    fn read_paths_only() {
        for p in [
            "/api/v1/query_range",
            "/prometheus/api/v1/query",
            "/prometheus/api/v1/label/job/values",
            "/loki/api/v1/query_range",
            "/loki/api/v1/index/volume",
            "/api/v1/status/buildinfo",
        ] {
            assert!(is_frontend_path(p), "{p}");
        }
        for p in [
            "/api/v1/push",
            "/prometheus/api/v1/rules",
            "/prometheus/api/v1/alerts",
            "/api/v1/otlp/v1/metrics",
            "/loki/api/v1/push",
            "/loki/api/v1/tail",
            "/loki/api/v1/rules/ns",
            "/metrics",
            "/ring",
        ] {
            assert!(!is_frontend_path(p), "{p}");
        }
    }

    fn range(url: &str, cfg: &FrontendConfig) -> Option<RangeQuery> {
        let uri: http::Uri = url.parse().expect("uri");
        let api = if url.starts_with("/loki") {
            Api::Loki
        } else {
            Api::Prometheus
        };
        RangeQuery::parse(api, &uri, &http::HeaderMap::new(), &Bytes::new(), cfg)
    }

    #[test]
    fn range_queries_are_cut_and_aligned() {
        let cfg = FrontendConfig {
            split_queries_by_interval: std::time::Duration::from_secs(3600),
            align_queries_with_step: true,
            ..FrontendConfig::default()
        };
        let q = range(
            "/api/v1/query_range?query=up&start=10&end=7300&step=60",
            &cfg,
        )
        .expect("a range query");
        assert_eq!(
            q.parts,
            vec![
                (0, 3_540_000),
                (3_600_000, 7_140_000),
                (7_200_000, 7_260_000)
            ]
        );
        assert_eq!(
            q.params,
            vec![("query".into(), "up".into()), ("step".into(), "60".into())]
        );
        assert_eq!(
            part_url(
                "/api/v1/query_range",
                &q.params,
                Api::Prometheus,
                q.parts[0]
            ),
            "/api/v1/query_range?query=up&step=60&start=0.000&end=3540.000"
        );
        let loki = range(
            "/loki/api/v1/query_range?query=sum(count_over_time(%7Ba%3D%22b%22%7D%5B1m%5D))&start=0&end=7200&step=60s",
            &cfg,
        )
        .expect("a LogQL metric query");
        assert_eq!(loki.parts.len(), 3);
        // The whole i64 range in ms: no overflow (and too many points to cut).
        let huge = range(
            "/api/v1/query_range?query=m&start=-5e15&end=5e15&step=1000",
            &cfg,
        )
        .expect("parsed");
        assert_eq!(huge.parts.len(), 1);
        // Aligning a start at the far end of i64 would wrap: sent on whole.
        assert!(
            range(
                "/loki/api/v1/query_range?query=sum(count_over_time(%7Ba%3D%22b%22%7D%5B1m%5D))&start=-9223372036854775807&end=0&step=1000000",
                &cfg
            )
            .is_none()
        );
        // Not cut: instant-like or odd requests go on whole.
        assert!(
            range(
                "/api/v1/query_range?query=up%40start()&start=0&end=7200&step=60",
                &cfg
            )
            .is_none()
        );
        assert!(range("/api/v1/query_range?query=up&start=0&end=7200", &cfg).is_none());
        assert!(range("/api/v1/query_range?query=up&start=x&end=7200&step=1", &cfg).is_none());
        assert!(
            range(
                "/loki/api/v1/query_range?query=%7Ba%3D%22b%22%7D&start=0&end=7200&step=60s",
                &cfg
            )
            .is_none()
        );
    }
}

//! The ruler's HTTP API: Mimir's rules configuration API
//! (`/prometheus/config/v1/rules[/{namespace}[/{group}]]`, YAML in and out,
//! as `mimirtool rules` and Grafana's rule editor use it) and Prometheus's
//! `/api/v1/rules` and `/api/v1/alerts` status endpoints; the same
//! configuration API under `/loki/api/v1/rules` manages LogQL rule groups.

use std::collections::BTreeMap;

use axum::body::Bytes;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::{FromRequestParts, Path, RawQuery};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use strata_ruler::{RuleGroup, RuleLang, Ruler, RulerError};

use crate::{Shared, tenant};

fn ruler_error(e: RulerError) -> Response {
    let code = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, e.to_string()).into_response()
}

/// The request's tenant, this process's ruler, and the rule language of the
/// API it came through (set by [`config_routes`]); refuses the request (bad
/// tenant, or no ruler running) before the handler runs.
pub(crate) struct TenantRuler(String, Arc<Ruler>, RuleLang);

impl FromRequestParts<Shared> for TenantRuler {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let t = tenant(state, &parts.headers).map_err(|(c, m)| (c, m).into_response())?;
        let r = state
            .ruler
            .clone()
            .ok_or_else(|| (StatusCode::NOT_FOUND, "the ruler is not running").into_response())?;
        let lang = parts
            .extensions
            .get::<RuleLang>()
            .copied()
            .unwrap_or(RuleLang::PromQL);
        Ok(TenantRuler(t, r, lang))
    }
}

/// The rules configuration API for groups in `lang`: nested under Mimir's
/// `/config/v1/rules` for PromQL and Loki's `/loki/api/v1/rules` for LogQL.
pub(crate) fn config_routes(lang: RuleLang) -> Router<Shared> {
    Router::new()
        .route("/", get(list_all))
        .route(
            "/{namespace}",
            get(list_namespace).post(set_group).delete(delete_namespace),
        )
        .route("/{namespace}/{group}", get(get_group).delete(delete_group))
        .layer(Extension(lang))
}

fn yaml<T: serde::Serialize>(v: &T) -> Response {
    match serde_yaml::to_string(v) {
        Ok(s) => ([(header::CONTENT_TYPE, "application/yaml")], s).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "success", "data": null, "errorType": "", "error": ""})),
    )
        .into_response()
}

pub(crate) async fn list_all(TenantRuler(t, r, lang): TenantRuler) -> Response {
    match r.list_groups(&t, lang, None).await {
        Ok(g) if g.is_empty() => (StatusCode::NOT_FOUND, "no rule groups found").into_response(),
        Ok(g) => yaml(&g),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn list_namespace(
    TenantRuler(t, r, lang): TenantRuler,
    Path(namespace): Path<String>,
) -> Response {
    match r.list_groups(&t, lang, Some(&namespace)).await {
        Ok(g) if g.is_empty() => (StatusCode::NOT_FOUND, "no rule groups found").into_response(),
        Ok(g) => yaml(&g),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn get_group(
    TenantRuler(t, r, lang): TenantRuler,
    Path((namespace, group)): Path<(String, String)>,
) -> Response {
    match r.get_group(&t, lang, &namespace, &group).await {
        Ok(g) => yaml::<RuleGroup>(&g),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn set_group(
    TenantRuler(t, r, lang): TenantRuler,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "rule group is not UTF-8").into_response();
    };
    match r.set_group(&t, lang, &namespace, text).await {
        Ok(()) => accepted(),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn delete_group(
    TenantRuler(t, r, lang): TenantRuler,
    Path((namespace, group)): Path<(String, String)>,
) -> Response {
    match r.delete_group(&t, lang, &namespace, &group).await {
        Ok(()) => accepted(),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn delete_namespace(
    TenantRuler(t, r, lang): TenantRuler,
    Path(namespace): Path<String>,
) -> Response {
    match r.delete_namespace(&t, lang, &namespace).await {
        Ok(()) => accepted(),
        Err(e) => ruler_error(e),
    }
}

/// Prometheus `/api/v1/rules` (`?type=alert|record`): every ruler's groups,
/// or only this ruler's with `local=true` (how rulers ask each other).
pub(crate) async fn rules_status(
    TenantRuler(t, r, _): TenantRuler,
    RawQuery(q): RawQuery,
) -> Response {
    let params: BTreeMap<String, String> = q
        .as_deref()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let kind = params.get("type").map(String::as_str);
    let mut data = r.rules_status(&t, kind);
    if params.get("local").map(String::as_str) != Some("true") {
        let path = match kind {
            Some(k) => format!("/prometheus/api/v1/rules?local=true&type={k}"),
            None => "/prometheus/api/v1/rules?local=true".to_string(),
        };
        data = r.with_peers(&t, &path, "groups", data).await;
    }
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// Prometheus `/api/v1/alerts`: every ruler's alerts, or only this
/// ruler's with `local=true`.
pub(crate) async fn alerts_status(
    TenantRuler(t, r, _): TenantRuler,
    RawQuery(q): RawQuery,
) -> Response {
    let mut data = r.alerts_status(&t);
    if !q.as_deref().unwrap_or("").contains("local=true") {
        data = r
            .with_peers(&t, "/prometheus/api/v1/alerts?local=true", "alerts", data)
            .await;
    }
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// Whether `path` is one of the ruler's APIs (configuration and status).
fn is_ruler_path(path: &str) -> bool {
    let path = path.strip_prefix("/prometheus").unwrap_or(path);
    path == "/api/v1/rules"
        || path == "/api/v1/alerts"
        || path.starts_with("/config/v1/rules")
        || path.starts_with("/loki/api/v1/rules")
        || path.starts_with("/api/prom/rules")
}

/// Marks a request [`to_ruler`] passed on.
const PROXIED: &str = "x-strata-ruler-proxied";

/// Request headers a proxied call does not pass on: the connection's own.
const HOP_BY_HOP: [&str; 9] = strata_model::HOP_BY_HOP_HEADERS;

/// axum middleware: in a process without a ruler (a query-frontend or
/// querier Grafana points at), the ruler's APIs are passed to a ruler of
/// the ring, so Grafana's rule editor and `mimirtool` work through the
/// address Grafana queries, as Mimir's gateway routes them. Rule groups
/// live in object storage and every ruler serves all of them (status
/// answers gather the other rulers'), so any live ruler answers.
pub(crate) async fn to_ruler(
    axum::extract::State(state): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.ruler.is_some() || !is_ruler_path(req.uri().path()) {
        return next.run(req).await;
    }
    // Passed on once only: a ring entry pointing at a process without a
    // ruler must not bounce requests between such processes.
    if req.headers().contains_key(PROXIED) {
        return (
            StatusCode::BAD_GATEWAY,
            "the ruler this request was passed to runs no ruler",
        )
            .into_response();
    }
    let rulers = (state.rulers)();
    // Spread over the rulers; a request picks one by the clock.
    let Some(addr) = rulers
        .get(strata_model::now_ms().unsigned_abs() as usize % rulers.len().max(1))
        .cloned()
    else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, state.max_recv_msg_size).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{addr}{path}");
    let mut call = RULER_CLIENT.request(parts.method.clone(), &url).body(body);
    for (name, value) in &parts.headers {
        let name_str = name.as_str();
        let skip = HOP_BY_HOP.contains(&name_str)
            || name_str.starts_with("proxy-")
            || name_str == "traceparent"
            || name_str == "tracestate";
        if !skip {
            call = call.header(name, value);
        }
    }
    // The ruler continues this process's span (which continues the caller's).
    for (name, value) in strata_telemetry::trace_headers() {
        call = call.header(name, value);
    }
    call = call.header(PROXIED, "1");
    let answer = match call.send().await {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("the ruler at {addr} did not answer: {e}"),
            )
                .into_response();
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    match answer.bytes().await {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            if let Some(ct) = content_type {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            r
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the ruler at {addr} broke off its answer: {e}"),
        )
            .into_response(),
    }
}

/// The client of [`to_ruler`]: one connection pool for the process.
static RULER_CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruler_paths_under_every_prefix() {
        for p in [
            "/prometheus/config/v1/rules",
            "/config/v1/rules/ns/group",
            "/prometheus/api/v1/rules",
            "/api/v1/alerts",
            "/loki/api/v1/rules/ns",
            "/api/prom/rules",
        ] {
            assert!(is_ruler_path(p), "{p}");
        }
        for p in [
            "/prometheus/api/v1/query",
            "/api/v1/rulesx",
            "/loki/api/v1/query",
        ] {
            assert!(!is_ruler_path(p), "{p}");
        }
    }
}

//! The ruler's HTTP API: Mimir's rules configuration API
//! (`/prometheus/config/v1/rules[/{namespace}[/{group}]]`, YAML in and out,
//! as `mimirtool rules` and Grafana's rule editor use it) and Prometheus's
//! `/api/v1/rules` and `/api/v1/alerts` status endpoints.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use strata_ruler::{RuleGroup, Ruler, RulerError};

use crate::{Shared, tenant};

fn ruler_error(e: RulerError) -> Response {
    let code = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, e.to_string()).into_response()
}

/// The tenant and the ruler, or the error response.
fn ctx(
    state: &Shared,
    headers: &HeaderMap,
) -> Result<(String, std::sync::Arc<Ruler>), Box<Response>> {
    let t = tenant(state, headers).map_err(|(c, m)| Box::new((c, m).into_response()))?;
    let r = state.ruler.clone().ok_or_else(|| {
        Box::new((StatusCode::NOT_FOUND, "the ruler is not running").into_response())
    })?;
    Ok((t, r))
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

pub(crate) async fn list_all(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let (t, r) = match ctx(&state, &headers) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match r.list_groups(&t, None).await {
        Ok(g) if g.is_empty() => (StatusCode::NOT_FOUND, "no rule groups found").into_response(),
        Ok(g) => yaml(&g),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn list_namespace(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(namespace): Path<String>,
) -> Response {
    let (t, r) = match ctx(&state, &headers) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match r.list_groups(&t, Some(&namespace)).await {
        Ok(g) if g.is_empty() => (StatusCode::NOT_FOUND, "no rule groups found").into_response(),
        Ok(g) => yaml(&g),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn get_group(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((namespace, group)): Path<(String, String)>,
) -> Response {
    let (t, r) = match ctx(&state, &headers) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match r.get_group(&t, &namespace, &group).await {
        Ok(g) => yaml::<RuleGroup>(&g),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn set_group(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Response {
    let (t, r) = match ctx(&state, &headers) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "rule group is not UTF-8").into_response();
    };
    match r.set_group(&t, &namespace, text).await {
        Ok(()) => accepted(),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn delete_group(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((namespace, group)): Path<(String, String)>,
) -> Response {
    let (t, r) = match ctx(&state, &headers) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match r.delete_group(&t, &namespace, &group).await {
        Ok(()) => accepted(),
        Err(e) => ruler_error(e),
    }
}

pub(crate) async fn delete_namespace(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(namespace): Path<String>,
) -> Response {
    let (t, r) = match ctx(&state, &headers) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match r.delete_namespace(&t, &namespace).await {
        Ok(()) => accepted(),
        Err(e) => ruler_error(e),
    }
}

/// Prometheus `/api/v1/rules` (`?type=alert|record`).
pub(crate) async fn rules_status(
    State(state): State<Shared>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (t, r) = match ctx(&state, &headers) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
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
    axum::Json(json!({"status": "success", "data": r.rules_status(&t, kind)})).into_response()
}

/// Prometheus `/api/v1/alerts`.
pub(crate) async fn alerts_status(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let (t, r) = match ctx(&state, &headers) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    axum::Json(json!({"status": "success", "data": r.alerts_status(&t)})).into_response()
}

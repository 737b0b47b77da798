//! `/ring`: the ring status page (HTML for people, JSON with
//! `Accept: application/json` or `?format=json`) and its "forget" form;
//! `/ring/raft`: the Raft group's voters and learners (JSON), and the
//! removal of a voter (`POST remove=<gRPC address>`) before its process is
//! retired for good.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use strata_ring::{Ring, RingCommand, page};
use tracing::Instrument;

#[derive(Deserialize)]
struct Format {
    format: Option<String>,
}

#[derive(Deserialize)]
struct ForgetForm {
    forget: String,
}

#[derive(Deserialize)]
struct RemoveVoterForm {
    remove: String,
}

/// Routes of the ring page.
pub fn router(ring: Arc<Ring>) -> Router {
    Router::new()
        .route("/ring", get(show).post(forget))
        .route("/ring/raft", get(raft_status).post(remove_voter))
        .with_state(ring)
}

async fn show(
    State(ring): State<Arc<Ring>>,
    Query(q): Query<Format>,
    headers: HeaderMap,
) -> Response {
    let span = tracing::debug_span!("ring_page");
    let timeout = ring.config().heartbeat_timeout.as_millis() as i64;
    let mut rows = page::rows(&ring.desc(), strata_ring::now_ms(), timeout);
    count_gateway_blocks(&mut rows).instrument(span).await;
    let leader = ring.voter().and_then(|v| v.status().leader_addr);
    let wants_json = q.format.as_deref() == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        axum::Json(serde_json::json!({
            "leader": leader,
            "instances": rows,
        }))
        .into_response()
    } else {
        Html(page::html(&rows, leader.as_deref())).into_response()
    }
}

/// Fills in the blocks each healthy store-gateway owns, asked of its
/// `/store-gateway/tenants` page (all at once, a second at most: a gateway
/// that does not answer in time shows none).
async fn count_gateway_blocks(rows: &mut [page::InstanceRow]) {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(1))
            .build()
            .unwrap_or_default()
    });
    let urls: Vec<Option<String>> = rows
        .iter()
        .map(|r| {
            let gateway = r.health == "healthy"
                && r.roles.iter().any(|x| x == "store-gateway" || x == "all")
                && !r.http_address.is_empty();
            gateway.then(|| format!("http://{}/store-gateway/tenants", r.http_address))
        })
        .collect();
    async fn owned_blocks(client: &reqwest::Client, url: Option<String>) -> Option<u64> {
        let page: serde_json::Value = client.get(url?).send().await.ok()?.json().await.ok()?;
        let tenants = page["tenants"].as_array()?;
        Some(
            tenants
                .iter()
                .map(|t| {
                    t["metric_blocks"].as_u64().unwrap_or(0) + t["log_blocks"].as_u64().unwrap_or(0)
                })
                .sum(),
        )
    }
    use futures::StreamExt;
    // At most 16 gateways asked at once.
    let client: &reqwest::Client = &CLIENT;
    let counts: Vec<Option<u64>> = futures::stream::iter(urls)
        .map(|url| owned_blocks(client, url))
        .buffered(16)
        .collect()
        .await;
    for (row, count) in rows.iter_mut().zip(counts) {
        row.owned_blocks = count;
    }
}

async fn forget(State(ring): State<Arc<Ring>>, Form(f): Form<ForgetForm>) -> Response {
    match ring
        .update(RingCommand::Forget {
            id: f.forget.clone(),
        })
        .await
    {
        Ok(()) => {
            tracing::info!(instance = %f.forget, "instance forgotten from the ring");
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/ring")]).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn raft_status(State(ring): State<Arc<Ring>>) -> Response {
    let status = ring
        .group_status()
        .instrument(tracing::debug_span!("ring_raft_status"))
        .await;
    match status {
        Ok(status) => axum::Json(status).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn remove_voter(State(ring): State<Arc<Ring>>, Form(f): Form<RemoveVoterForm>) -> Response {
    let removed = ring
        .remove_voter(&f.remove)
        .instrument(tracing::info_span!("ring_remove_voter", voter = %f.remove))
        .await;
    match removed {
        Ok(()) => {
            tracing::info!(voter = %f.remove, "voter removed from the ring's Raft group");
            (
                StatusCode::OK,
                format!("removed {} from the Raft group\n", f.remove),
            )
                .into_response()
        }
        Err(e @ strata_ring::RingError::NotAMember(_)) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e @ strata_ring::RingError::Config(_)) => {
            (StatusCode::CONFLICT, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

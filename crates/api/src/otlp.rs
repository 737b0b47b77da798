//! The OTLP/HTTP push endpoints (metrics and logs): answers in OTLP's own shapes, encoded as
//! the request was (an empty `Export*ServiceResponse` on success, a
//! `google.rpc.Status` naming the problem otherwise), with Mimir's status
//! codes: 400 for what cannot be stored (nothing else of the request is
//! lost), 413 too large, 415 unknown encodings, 429 over limits.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_distributor::PushError;
use strata_distributor::otlp::{
    check_otlp_headers, decode_otlp_logs, decode_otlp_metrics, decompress_otlp,
};
use strata_otlp::{Encoding, Status, empty_export_response, encode};

use crate::loki::now_ns;
use crate::{Shared, status, tenant};

/// Why a push is refused: the encoding to answer in, status and message.
type Refusal = (Encoding, u16, String);

/// The checked encoding, tenant and uncompressed body of an OTLP push.
fn read_request<'a>(
    state: &Shared,
    headers: &HeaderMap,
    body: &'a Bytes,
) -> Result<(Encoding, String, Cow<'a, [u8]>), Refusal> {
    let header = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    // Errors before the encoding is known are answered in protobuf, the
    // OTLP default.
    let (encoding, compression) = check_otlp_headers(
        header(header::CONTENT_TYPE),
        header(header::CONTENT_ENCODING),
    )
    .map_err(|e| (Encoding::Protobuf, e.status(), e.to_string()))?;
    let tenant = tenant(state, headers).map_err(|(code, msg)| (encoding, code.as_u16(), msg))?;
    let raw = decompress_otlp(body, compression, state.max_recv_msg_size)
        .map_err(|e| (encoding, e.status(), e.to_string()))?;
    Ok((encoding, tenant, raw))
}

/// `POST /otlp/v1/metrics` (Mimir) and `/api/v1/otlp/v1/metrics` (Prometheus).
pub(crate) async fn metrics(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (encoding, tenant, raw) = match read_request(&state, &headers, &body) {
        Ok(r) => r,
        Err((encoding, code, msg)) => return error(encoding, code, msg),
    };
    let req = match decode_otlp_metrics(&raw, encoding) {
        Ok(r) => r,
        Err(e) => return error(encoding, e.status(), e.to_string()),
    };
    let outcome = state
        .distributor
        .push_otlp_metrics(&tenant, req, raw.len())
        .await
        .map(|r| r.rejection_summary().map(|msg| (400, msg)));
    respond(encoding, &tenant, outcome)
}

/// `POST /otlp/v1/logs` (Loki).
pub(crate) async fn logs(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (encoding, tenant, raw) = match read_request(&state, &headers, &body) {
        Ok(r) => r,
        Err((encoding, code, msg)) => return error(encoding, code, msg),
    };
    let req = match decode_otlp_logs(&raw, encoding) {
        Ok(r) => r,
        Err(e) => return error(encoding, e.status(), e.to_string()),
    };
    let outcome = state
        .distributor
        .push_otlp_logs(&tenant, req, now_ns())
        .await
        .map(|r| r.rejection_summary().map(|msg| (r.rejection_status(), msg)));
    respond(encoding, &tenant, outcome)
}

/// The answer to a push that was decoded: success, the rejections of a
/// partly stored request, or the error that stopped it.
fn respond(
    encoding: Encoding,
    tenant: &str,
    outcome: Result<Option<(u16, String)>, PushError>,
) -> Response {
    match outcome {
        Ok(None) => answer(encoding, StatusCode::OK, empty_export_response(encoding)),
        Ok(Some((code, msg))) => error(encoding, code, msg),
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(tenant, error = %e, "OTLP push failed");
            }
            error(encoding, e.status(), e.to_string())
        }
    }
}

fn error(encoding: Encoding, http_status: u16, message: String) -> Response {
    let body = encode(&Status::for_http(http_status, message), encoding);
    answer(encoding, status(http_status), body)
}

fn answer(encoding: Encoding, code: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (code, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

//! Which requests get in, before their bodies are decoded or their queries
//! planned: the process-wide limits that keep one busy client from taking
//! a node down.
//!
//! - Pushes (remote write, Loki push): at most
//!   `-distributor.instance-limits.max-inflight-push-requests` requests and
//!   `...-max-inflight-push-requests-bytes` bytes (by `Content-Length`) in
//!   flight, as Mimir's distributor instance limits; past either, `503`
//!   with a `Retry-After`, so senders back off and retry (Prometheus 2.x
//!   drops a batch answered `429` unless `retry_on_http_429` is set).
//! - Queries (PromQL and LogQL, the series and label APIs): at most
//!   `-querier.max-concurrent` run at once; the others wait, up to the
//!   query timeout (then `503`). A tenant may have at most
//!   `-querier.max-outstanding-requests-per-tenant` queries running or
//!   waiting; past it, `429` (Mimir's query-frontend limit).
//! - Live tails: at most `max_concurrent_tail_requests` per tenant (Loki's
//!   limit), `429` past it.
//!
//! Every refusal is counted in `strata_rejected_requests_total{reason}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde_json::json;
use tokio::sync::Semaphore;

static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_rejected_requests_total",
            "Requests refused by a process-wide or per-tenant admission limit, by the limit.",
        ),
        &["reason"],
    )
    .expect("valid metric definition")
});

static INFLIGHT_PUSHES: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_distributor_inflight_push_requests",
        "Push requests (remote write, Loki push) being handled.",
    )
    .expect("valid metric definition")
});

static INFLIGHT_QUERIES: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new(
        "strata_querier_inflight_queries",
        "Queries running now (at most -querier.max-concurrent).",
    )
    .expect("valid metric definition")
});

/// Registers the admission metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(REJECTED.clone()))?;
    for reason in [
        "max_inflight_push_requests",
        "max_inflight_push_requests_bytes",
        "query_queue_timeout",
    ] {
        REJECTED.with_label_values(&[reason]);
    }
    r.register(Box::new(INFLIGHT_PUSHES.clone()))?;
    r.register(Box::new(INFLIGHT_QUERIES.clone()))
}

/// The admission limits of one process (0: no limit).
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    pub max_inflight_push_requests: usize,
    pub max_inflight_push_requests_bytes: usize,
    pub max_concurrent_queries: usize,
    pub max_outstanding_requests_per_tenant: usize,
    /// How long a query may wait for a slot: the query timeout.
    pub query_queue_timeout: Duration,
}

/// The counters behind [`AdmissionConfig`].
pub struct Admission {
    cfg: AdmissionConfig,
    push_requests: AtomicUsize,
    push_bytes: AtomicUsize,
    query_slots: Option<Semaphore>,
    outstanding: Mutex<HashMap<String, usize>>,
    tails: Mutex<HashMap<String, usize>>,
}

impl Admission {
    /// Counters for `cfg`.
    pub fn new(cfg: AdmissionConfig) -> Arc<Self> {
        Arc::new(Self {
            query_slots: (cfg.max_concurrent_queries > 0)
                .then(|| Semaphore::new(cfg.max_concurrent_queries)),
            cfg,
            push_requests: AtomicUsize::new(0),
            push_bytes: AtomicUsize::new(0),
            outstanding: Mutex::new(HashMap::new()),
            tails: Mutex::new(HashMap::new()),
        })
    }

    /// A live tail slot for `tenant`, or the refusal.
    pub(crate) fn tail_slot(
        self: &Arc<Self>,
        tenant: &str,
        limit: usize,
    ) -> Result<TenantSlot, String> {
        TenantSlot::take(self.clone(), Counter::Tails, tenant, limit).ok_or_else(|| {
            REJECTED
                .with_label_values(&["max_concurrent_tail_requests"])
                .inc();
            format!(
                "max concurrent tail requests limit exceeded, count > limit ({} > {limit}); close other live tails or ask for a higher max_concurrent_tail_requests",
                limit + 1
            )
        })
    }
}

/// Which per-tenant counter a [`TenantSlot`] holds.
#[derive(Clone, Copy)]
enum Counter {
    Outstanding,
    Tails,
}

/// One unit of a per-tenant counter, given back when dropped.
pub(crate) struct TenantSlot {
    admission: Arc<Admission>,
    counter: Counter,
    tenant: String,
}

impl TenantSlot {
    fn take(
        admission: Arc<Admission>,
        counter: Counter,
        tenant: &str,
        limit: usize,
    ) -> Option<Self> {
        {
            let mut counts = admission.map(counter).lock();
            let n = counts.entry(tenant.to_string()).or_default();
            if limit > 0 && *n >= limit {
                return None;
            }
            *n += 1;
        }
        Some(Self {
            admission,
            counter,
            tenant: tenant.to_string(),
        })
    }
}

impl Admission {
    fn map(&self, counter: Counter) -> &Mutex<HashMap<String, usize>> {
        match counter {
            Counter::Outstanding => &self.outstanding,
            Counter::Tails => &self.tails,
        }
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut counts = self.admission.map(self.counter).lock();
        if let Some(n) = counts.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

/// A push's share of the in-flight counters, given back when dropped.
struct PushSlot<'a> {
    admission: &'a Admission,
    bytes: usize,
}

impl Drop for PushSlot<'_> {
    fn drop(&mut self) {
        self.admission.push_requests.fetch_sub(1, Ordering::AcqRel);
        self.admission
            .push_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
        INFLIGHT_PUSHES.dec();
    }
}

/// Middleware of the push routes.
pub(crate) async fn limit_pushes(
    State(admission): State<Arc<Admission>>,
    req: Request,
    next: Next,
) -> Response {
    // A body without Content-Length is still bounded by the body size limit.
    let bytes = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let cfg = &admission.cfg;
    let requests = admission.push_requests.fetch_add(1, Ordering::AcqRel) + 1;
    let total_bytes = admission.push_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
    INFLIGHT_PUSHES.inc();
    let slot = PushSlot {
        admission: &admission,
        bytes,
    };
    let refused = if cfg.max_inflight_push_requests > 0 && requests > cfg.max_inflight_push_requests
    {
        Some((
            "max_inflight_push_requests",
            format!(
                "the write request has been rejected because the distributor exceeded the allowed number of inflight push requests ({}); retry later (-distributor.instance-limits.max-inflight-push-requests)",
                cfg.max_inflight_push_requests
            ),
        ))
    } else if cfg.max_inflight_push_requests_bytes > 0
        && total_bytes > cfg.max_inflight_push_requests_bytes
    {
        Some((
            "max_inflight_push_requests_bytes",
            format!(
                "the write request has been rejected because the distributor exceeded the allowed size of inflight push requests ({} bytes); retry later (-distributor.instance-limits.max-inflight-push-requests-bytes)",
                cfg.max_inflight_push_requests_bytes
            ),
        ))
    } else {
        None
    };
    if let Some((reason, message)) = refused {
        drop(slot);
        REJECTED.with_label_values(&[reason]).inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            message,
        )
            .into_response();
    }
    let resp = next.run(req).await;
    drop(slot);
    resp
}

/// Middleware of the query routes.
pub(crate) async fn limit_queries(
    State(admission): State<Arc<Admission>>,
    req: Request,
    next: Next,
) -> Response {
    let loki = req.uri().path().starts_with("/loki/");
    let tenant = req
        .headers()
        .get("X-Scope-OrgID")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(crate::NO_AUTH_TENANT)
        .to_string();
    let cfg = admission.cfg.clone();
    let Some(_outstanding) = TenantSlot::take(
        admission.clone(),
        Counter::Outstanding,
        &tenant,
        cfg.max_outstanding_requests_per_tenant,
    ) else {
        REJECTED
            .with_label_values(&["max_outstanding_requests_per_tenant"])
            .inc();
        return query_error(
            loki,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "too many outstanding requests: the tenant has {} queries running or queued (-querier.max-outstanding-requests-per-tenant)",
                cfg.max_outstanding_requests_per_tenant
            ),
        );
    };
    let _permit = match &admission.query_slots {
        None => None,
        Some(slots) => match tokio::time::timeout(cfg.query_queue_timeout, slots.acquire()).await {
            Ok(Ok(permit)) => Some(permit),
            Ok(Err(_)) | Err(_) => {
                REJECTED.with_label_values(&["query_queue_timeout"]).inc();
                return query_error(
                    loki,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    format!(
                        "query timed out in the queue: all {} query slots stayed busy (-querier.max-concurrent)",
                        cfg.max_concurrent_queries
                    ),
                );
            }
        },
    };
    INFLIGHT_QUERIES.inc();
    let resp = next.run(req).await;
    INFLIGHT_QUERIES.dec();
    resp
}

/// An error in the shape of the API that was called: Prometheus's JSON, or
/// Loki's plain text.
fn query_error(loki: bool, status: StatusCode, error_type: &str, message: String) -> Response {
    if loki {
        return (status, message).into_response();
    }
    let body = json!({"status": "error", "errorType": error_type, "error": message});
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(outstanding: usize) -> Arc<Admission> {
        Admission::new(AdmissionConfig {
            max_inflight_push_requests: 0,
            max_inflight_push_requests_bytes: 0,
            max_concurrent_queries: 1,
            max_outstanding_requests_per_tenant: outstanding,
            query_queue_timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn tenant_slots_count_per_tenant_and_come_back() {
        let a = admission(2);
        let one = TenantSlot::take(a.clone(), Counter::Outstanding, "t", 2).expect("first");
        let two = TenantSlot::take(a.clone(), Counter::Outstanding, "t", 2).expect("second");
        assert!(TenantSlot::take(a.clone(), Counter::Outstanding, "t", 2).is_none());
        // Another tenant has its own count.
        assert!(TenantSlot::take(a.clone(), Counter::Outstanding, "u", 2).is_some());
        drop(one);
        assert!(TenantSlot::take(a.clone(), Counter::Outstanding, "t", 2).is_some());
        drop(two);
        assert!(a.outstanding.lock().is_empty(), "counts are given back");
        assert!(a.tail_slot("t", 1).is_ok());
        let held = a.tail_slot("t", 1).expect("a slot");
        let refused = a.tail_slot("t", 1).err().expect("over the limit");
        assert!(
            refused.contains("max concurrent tail requests"),
            "{refused}"
        );
        drop(held);
    }
}

//! Mimir's cardinality API over the tenant's in-memory series (the
//! ingesters' heads, each series once however many replicas hold it):
//! `label_names` (distinct values per label name), `label_values` (series
//! per value of the named labels) and `active_series` (the label sets of
//! series with samples in the last 20 minutes, Mimir's active-series idle
//! timeout). Off unless the tenant's `cardinality_analysis_enabled` is set,
//! as in Mimir; errors are plain text with status 400, as Mimir's querier
//! answers them.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use strata_model::Labels;

use crate::params::Params;
use crate::{PromRequest, Shared};

/// Mimir's active-series idle timeout: a series is active while it has a
/// sample this recent.
const ACTIVE_WINDOW_MS: i64 = 20 * 60 * 1000;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 500;
/// Most label names one `label_values` request may name (Mimir's default).
const MAX_LABEL_NAMES: usize = 100;

type Refusal = (StatusCode, String);

fn refused((code, message): Refusal) -> Response {
    (code, message).into_response()
}

fn bad(message: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, message.into())
}

/// Refuses the request of a tenant whose cardinality analysis is off.
fn check_enabled(r: &PromRequest) -> Result<(), Refusal> {
    if r.state
        .querier
        .limits(&r.tenant)
        .cardinality_analysis_enabled
    {
        Ok(())
    } else {
        Err(bad(format!(
            "cardinality analysis is disabled for the tenant: {}",
            r.tenant
        )))
    }
}

fn single<'a>(p: &'a Params, name: &str) -> Result<Option<&'a str>, Refusal> {
    let all = p.all(name);
    if all.len() > 1 {
        return Err(bad(format!("multiple '{name}' params are not allowed")));
    }
    Ok(all.into_iter().next())
}

fn limit(p: &Params) -> Result<usize, Refusal> {
    let Some(raw) = single(p, "limit")? else {
        return Ok(DEFAULT_LIMIT);
    };
    let n: i64 = raw
        .parse()
        .map_err(|_| bad(format!("strconv.Atoi: parsing {raw:?}: invalid syntax")))?;
    if n < 0 {
        return Err(bad("'limit' param cannot be less than '0'"));
    }
    if n > MAX_LIMIT as i64 {
        return Err(bad(format!(
            "'limit' param cannot be greater than '{MAX_LIMIT}'"
        )));
    }
    Ok(n as usize)
}

/// Whether to count active series (samples in the last 20 minutes) rather
/// than every in-memory series.
fn count_active(p: &Params) -> Result<bool, Refusal> {
    match p.all("count_method").first().copied() {
        None | Some("inmemory") => Ok(false),
        Some("active") => Ok(true),
        Some(other) => Err(bad(format!(
            "invalid 'count_method' param '{other}'. valid options are: [active,inmemory]"
        ))),
    }
}

/// The in-memory series matching `selector` (all when absent); only the
/// active ones when `active`.
async fn counted_series(
    state: &Shared,
    tenant: &str,
    selector: Option<&str>,
    active: bool,
) -> Result<BTreeSet<Labels>, Refusal> {
    let alternatives = match selector {
        Some(s) => strata_promql::parse_selector(s)
            .map_err(|e| bad(format!("failed to parse selector: {e}")))?,
        None => vec![Vec::new()],
    };
    let (min_t, max_t) = if active {
        (strata_model::now_ms() - ACTIVE_WINDOW_MS, i64::MAX)
    } else {
        (i64::MIN, i64::MAX)
    };
    state
        .querier
        .head_series(tenant, &alternatives, min_t, max_t)
        .await
        .map_err(|e| {
            let code =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, e.to_string())
        })
}

/// `GET|POST /api/v1/cardinality/label_names`.
pub(crate) async fn label_names(r: PromRequest) -> Response {
    if let Err(refusal) = check_enabled(&r) {
        return refused(refusal);
    }
    let (state, tenant, p) = (&r.state, r.tenant.as_str(), &r.p);
    let answer = async {
        let limit = limit(p)?;
        let selector = single(p, "selector")?;
        let series = counted_series(state, tenant, selector, count_active(p)?).await?;
        let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for labels in &series {
            for l in labels.iter() {
                values.entry(&l.name).or_default().insert(&l.value);
            }
        }
        let total: usize = values.values().map(BTreeSet::len).sum();
        let mut names: Vec<(&str, usize)> = values.iter().map(|(n, v)| (*n, v.len())).collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let cardinality: Vec<Json> = names
            .iter()
            .take(limit)
            .map(|(name, count)| json!({"label_name": name, "label_values_count": count}))
            .collect();
        Ok::<_, Refusal>(json!({
            "label_values_count_total": total,
            "label_names_count": names.len(),
            "cardinality": cardinality,
        }))
    };
    match answer.await {
        Ok(body) => axum::Json(body).into_response(),
        Err(r) => refused(r),
    }
}

/// One label's answer in `label_values`.
struct LabelCardinality<'a> {
    series_count: usize,
    name: &'a str,
    /// The values with the most series, with their counts.
    values: Vec<(usize, &'a str)>,
    distinct: usize,
}

/// `GET|POST /api/v1/cardinality/label_values`.
pub(crate) async fn label_values(r: PromRequest) -> Response {
    if let Err(refusal) = check_enabled(&r) {
        return refused(refusal);
    }
    let (state, tenant, p) = (&r.state, r.tenant.as_str(), &r.p);
    let answer = async {
        let mut names: Vec<&str> = p.all("label_names[]");
        if names.is_empty() {
            return Err(bad("'label_names[]' param is required"));
        }
        if names.len() > MAX_LABEL_NAMES {
            return Err(bad(format!(
                "label values cardinality request label names limit (limit: {MAX_LABEL_NAMES} actual: {}) exceeded",
                names.len()
            )));
        }
        if let Some(bad_name) = names
            .iter()
            .find(|n| !strata_distributor::is_valid_label_name(n))
        {
            return Err(bad(format!("invalid 'label_names' param '{bad_name}'")));
        }
        names.sort_unstable();
        names.dedup();
        let limit = limit(p)?;
        let selector = single(p, "selector")?;
        let active = count_active(p)?;
        let series = counted_series(state, tenant, selector, active).await?;
        // The tenant's total, whatever the selector, as Mimir reports it.
        let total = match selector {
            Some(_) => counted_series(state, tenant, None, active).await?.len(),
            None => series.len(),
        };
        let mut labels: Vec<LabelCardinality> = Vec::new();
        for name in &names {
            let mut per_value: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &series {
                if let Some(v) = s.get(name) {
                    *per_value.entry(v).or_default() += 1;
                }
            }
            let series_count: usize = per_value.values().sum();
            let distinct = per_value.len();
            let mut values: Vec<(usize, &str)> =
                per_value.into_iter().map(|(v, n)| (n, v)).collect();
            values.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            values.truncate(limit);
            labels.push(LabelCardinality {
                series_count,
                name,
                values,
                distinct,
            });
        }
        labels.sort_by(|a, b| b.series_count.cmp(&a.series_count).then(a.name.cmp(b.name)));
        let labels: Vec<Json> = labels
            .into_iter()
            .map(|l| {
                json!({
                    "label_name": l.name,
                    "label_values_count": l.distinct,
                    "series_count": l.series_count,
                    "cardinality": l.values
                        .into_iter()
                        .map(|(n, v)| json!({"label_value": v, "series_count": n}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({"series_count_total": total, "labels": labels}))
    };
    match answer.await {
        Ok(body) => axum::Json(body).into_response(),
        Err(r) => refused(r),
    }
}

/// `GET|POST /api/v1/cardinality/active_series`: `selector` required.
pub(crate) async fn active_series(r: PromRequest) -> Response {
    if let Err(refusal) = check_enabled(&r) {
        return refused(refusal);
    }
    let (state, tenant, p) = (&r.state, r.tenant.as_str(), &r.p);
    let selector = match single(p, "selector") {
        Ok(Some(s)) => s,
        Ok(None) => return refused(bad("missing 'selector' parameter")),
        Err(r) => return refused(r),
    };
    match counted_series(state, tenant, Some(selector), true).await {
        Ok(series) => {
            let data: Vec<Json> = series.iter().map(crate::render::labels).collect();
            axum::Json(json!({ "data": data })).into_response()
        }
        Err(r) => refused(r),
    }
}

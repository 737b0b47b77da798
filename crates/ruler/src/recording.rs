//! Rule queries (PromQL and LogQL) and recording rules: results written
//! back through the distributor (same validation and limits as remote
//! write), with staleness markers for series that stop.

use std::collections::{BTreeMap, HashSet};

use strata_model::{Labels, METRIC_NAME, stale_nan};
use strata_promql::Value;
use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use crate::rules::{self, RuleLang};
use crate::{GroupState, RuleState, Ruler};

impl Ruler {
    pub(crate) async fn query(
        &self,
        tenant: &str,
        lang: RuleLang,
        expr: &str,
        t: i64,
    ) -> Result<Vec<(Labels, f64)>, String> {
        if lang == RuleLang::LogQL {
            let t_ns = t.saturating_mul(1_000_000);
            let params = strata_logql::QueryParams {
                start_ns: t_ns,
                end_ns: t_ns,
                step_ns: 0,
                limit: 1,
                direction: strata_model::logs::Direction::Backward,
                instant: true,
                max_series: 0,
            };
            let (result, _) = self
                .log_querier
                .query(tenant, expr, &params)
                .await
                .map_err(|e| e.to_string())?;
            return match result {
                strata_logql::QueryResult::Vector(_, v) => Ok(v),
                strata_logql::QueryResult::Scalar(_, v) => Ok(vec![(Labels::default(), v)]),
                _ => Err("a LogQL rule must return a vector or a scalar".into()),
            };
        }
        let out = self
            .querier
            .instant_query(tenant, expr, t)
            .await
            .map_err(|e| e.to_string())?;
        Ok(match out.value {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
            Value::Scalar { v, .. } => vec![(Labels::default(), v)],
            other => {
                return Err(format!(
                    "rule result must be a vector or scalar, got {}",
                    other.result_type()
                ));
            }
        })
    }

    pub(crate) async fn write(
        &self,
        tenant: &str,
        series: Vec<(Vec<(String, String)>, f64)>,
        t: i64,
    ) -> Result<(), String> {
        if series.is_empty() {
            return Ok(());
        }
        let req = WriteRequest {
            timeseries: series
                .into_iter()
                .map(|(labels, v)| TimeSeries {
                    labels: labels
                        .into_iter()
                        .map(|(name, value)| Label { name, value })
                        .collect(),
                    samples: vec![Sample {
                        value: v,
                        timestamp: t,
                    }],
                    ..Default::default()
                })
                .collect(),
            metadata: vec![],
        };
        let write = strata_distributor::DecodedWrite::from_request(req)
            .map_err(|e| format!("writing rule results: {e}"))?;
        let r = self
            .distributor
            .push(tenant, write)
            .await
            .map_err(|e| format!("writing rule results: {e}"))?;
        match r.rejection_summary() {
            Some(s) => Err(format!("writing rule results: {s}")),
            None => Ok(()),
        }
    }

    pub(crate) async fn evaluate_rule(
        &self,
        g: &GroupState,
        rule: &rules::CompiledRule,
        state: &RuleState,
        t: i64,
    ) -> Result<(), String> {
        let result = self
            .query(&g.tenant, g.group.lang, &rule.source.expr, t)
            .await?;
        let limit = g.group.source.limit;
        if limit > 0 && result.len() > limit {
            return Err(format!(
                "exceeded limit of {limit} with {} series",
                result.len()
            ));
        }
        if rule.is_alert() {
            return self.evaluate_alert(g, rule, state, t, result).await;
        }
        let record = rule.name();
        let mut out: Vec<(Vec<(String, String)>, f64)> = Vec::with_capacity(result.len());
        for (labels, v) in result {
            let mut l: BTreeMap<String, String> = labels
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            for (k, v) in &rule.source.labels {
                l.insert(k.clone(), v.clone());
            }
            l.insert(METRIC_NAME.to_string(), record.to_string());
            out.push((l.into_iter().collect(), v));
        }
        self.write_with_staleness(&g.tenant, state, out, t).await
    }

    /// Writes `series` and a staleness marker for each series written last
    /// time but not now.
    pub(crate) async fn write_with_staleness(
        &self,
        tenant: &str,
        state: &RuleState,
        mut series: Vec<(Vec<(String, String)>, f64)>,
        t: i64,
    ) -> Result<(), String> {
        let now: HashSet<Vec<(String, String)>> = series.iter().map(|(l, _)| l.clone()).collect();
        let gone: Vec<_> = state
            .written
            .lock()
            .iter()
            .filter(|l| !now.contains(*l))
            .cloned()
            .collect();
        series.extend(gone.into_iter().map(|l| (l, stale_nan())));
        self.write(tenant, series, t).await?;
        *state.written.lock() = now;
        Ok(())
    }
}

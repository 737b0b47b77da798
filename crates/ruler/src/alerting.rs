//! Alerting rules: Prometheus's pending/firing/resolved state with `for`
//! and `keep_firing_for`, `ALERTS` and `ALERTS_FOR_STATE`, templated labels
//! and annotations, notifications to Alertmanager, and the alert state
//! restored after a restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use strata_model::{Labels, METRIC_NAME};

use crate::rules;
use crate::{Alert, AlertState, GroupState, RuleState, Ruler, notifier, rfc3339, template};

impl Ruler {
    pub(crate) async fn evaluate_alert(
        &self,
        g: &GroupState,
        rule: &rules::CompiledRule,
        state: &RuleState,
        t: i64,
        result: Vec<(Labels, f64)>,
    ) -> Result<(), String> {
        let name = rule.name().to_string();
        let for_ms = rule.for_.as_millis() as i64;
        let keep_ms = rule.keep_firing_for.as_millis() as i64;
        let restore = if state.restored.swap(true, Ordering::AcqRel) {
            HashMap::new()
        } else {
            self.restore_for_state(&g.tenant, &name, for_ms, t).await
        };
        let mut seen: HashSet<Vec<(String, String)>> = HashSet::new();
        let mut to_send = Vec::new();
        {
            let mut alerts = state.alerts.lock();
            for (labels, value) in result {
                let base: BTreeMap<String, String> = labels
                    .iter()
                    .filter(|l| l.name != METRIC_NAME)
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                let ctx = template::Context {
                    labels: &base,
                    external_labels: &self.external_labels,
                    value,
                };
                let expand = |s: &str| {
                    template::expand(s, &ctx)
                        .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
                };
                let mut l = base.clone();
                for (k, v) in &rule.source.labels {
                    l.insert(k.clone(), expand(v));
                }
                l.insert("alertname".into(), name.clone());
                let annotations: BTreeMap<String, String> = rule
                    .source
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), expand(v)))
                    .collect();
                let key: Vec<(String, String)> = l.clone().into_iter().collect();
                seen.insert(key.clone());
                let active_at = restore.get(&key).copied().unwrap_or(t);
                let a = alerts.entry(key).or_insert_with(|| Alert {
                    labels: l.clone(),
                    annotations: annotations.clone(),
                    state: AlertState::Pending,
                    value,
                    active_at,
                    fired_at: None,
                    resolved_at: None,
                    last_sent: None,
                    keep_firing_since: None,
                });
                if a.state == AlertState::Inactive {
                    // Came back after resolving: a new alert instance.
                    *a = Alert {
                        state: AlertState::Pending,
                        active_at: t,
                        fired_at: None,
                        resolved_at: None,
                        last_sent: None,
                        ..a.clone()
                    };
                }
                a.value = value;
                a.annotations = annotations;
                a.keep_firing_since = None;
                if a.state == AlertState::Pending && t - a.active_at >= for_ms {
                    a.state = AlertState::Firing;
                    a.fired_at = Some(t);
                }
            }
            // Resolved alerts are kept 15m to resend their resolution, as Prometheus.
            alerts.retain(|k, a| {
                if seen.contains(k) {
                    return true;
                }
                match a.state {
                    AlertState::Pending => false,
                    AlertState::Firing => {
                        let since = *a.keep_firing_since.get_or_insert(t);
                        if keep_ms > 0 && t - since < keep_ms {
                            return true;
                        }
                        a.state = AlertState::Inactive;
                        a.resolved_at = Some(t);
                        true
                    }
                    AlertState::Inactive => a.resolved_at.is_some_and(|r| t - r < 15 * 60_000),
                }
            });
            let resend = self.cfg.resend_delay.as_millis() as i64;
            let interval = g.group.interval.as_millis() as i64;
            let valid_until = t + 4 * resend.max(interval);
            for a in alerts.values_mut() {
                let send = match a.state {
                    AlertState::Pending => false,
                    AlertState::Firing => a.last_sent.is_none_or(|s| t - s >= resend),
                    AlertState::Inactive => a
                        .resolved_at
                        .is_some_and(|r| a.last_sent.is_none_or(|s| s <= r || t - s >= resend)),
                };
                if send {
                    a.last_sent = Some(t);
                    let mut labels = a.labels.clone();
                    for (k, v) in &self.external_labels {
                        labels.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    to_send.push(notifier::AmAlert {
                        labels,
                        annotations: a.annotations.clone(),
                        starts_at: rfc3339(a.active_at),
                        ends_at: rfc3339(a.resolved_at.unwrap_or(valid_until)),
                        generator_url: format!(
                            "{}/graph?g0.expr={}&g0.tab=1",
                            self.cfg.external_url.trim_end_matches('/'),
                            url::form_urlencoded::byte_serialize(rule.source.expr.as_bytes())
                                .collect::<String>()
                        ),
                    });
                }
            }
        }
        self.notifier.send(to_send);
        // ALERTS and ALERTS_FOR_STATE for pending and firing alerts.
        let mut series = Vec::new();
        for a in state.alerts.lock().values() {
            if a.state == AlertState::Inactive {
                continue;
            }
            let mut l = a.labels.clone();
            l.insert(METRIC_NAME.into(), "ALERTS".into());
            l.insert(
                "alertstate".into(),
                if a.state == AlertState::Firing {
                    "firing"
                } else {
                    "pending"
                }
                .into(),
            );
            series.push((l.into_iter().collect(), 1.0));
            let mut l = a.labels.clone();
            l.insert(METRIC_NAME.into(), "ALERTS_FOR_STATE".into());
            series.push((l.into_iter().collect(), (a.active_at / 1000) as f64));
        }
        self.write_with_staleness(&g.tenant, state, series, t).await
    }

    /// Active-since times of the rule's alerts from their last
    /// `ALERTS_FOR_STATE` samples within the outage tolerance, adjusted as
    /// Prometheus does: time pending before the outage counts, the outage
    /// does not, and an alert waits at least the grace period before firing
    /// (one that was already firing fires again at once).
    pub(crate) async fn restore_for_state(
        &self,
        tenant: &str,
        alertname: &str,
        for_ms: i64,
        now: i64,
    ) -> HashMap<Vec<(String, String)>, i64> {
        let grace = self.cfg.for_grace_period.as_millis() as i64;
        if for_ms == 0 || for_ms < grace {
            return HashMap::new();
        }
        let matchers = [
            strata_model::Matcher::new(
                strata_model::MatchOp::Equal,
                METRIC_NAME,
                "ALERTS_FOR_STATE",
            ),
            strata_model::Matcher::new(strata_model::MatchOp::Equal, "alertname", alertname),
        ];
        let tolerance = self.cfg.for_outage_tolerance.as_millis() as i64;
        let series = match self
            .querier
            .select(tenant, &matchers, now - tolerance, now)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(tenant, alertname, error = %e, "could not read ALERTS_FOR_STATE; alerts start pending");
                return HashMap::new();
            }
        };
        let mut out = HashMap::new();
        for s in series {
            let Some(last) = s
                .samples
                .iter()
                .rev()
                .find(|x| !strata_model::is_stale_nan(x.v))
            else {
                continue;
            };
            let down_at = last.t;
            let mut active_at = (last.v * 1000.0) as i64;
            let remaining = for_ms - (down_at - active_at);
            if remaining <= 0 {
                // Was firing: fires again at the next evaluation.
            } else if remaining < grace {
                active_at = now + grace - for_ms;
            } else {
                active_at += now - down_at;
            }
            let key: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            out.insert(key, active_at);
        }
        if !out.is_empty() {
            tracing::info!(
                tenant,
                alertname,
                alerts = out.len(),
                "alert state restored from ALERTS_FOR_STATE"
            );
        }
        out
    }
}

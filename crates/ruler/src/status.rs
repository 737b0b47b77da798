//! The JSON of Prometheus's `/api/v1/rules` and `/api/v1/alerts`, merged
//! across the rulers that share the groups.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::rules;
use crate::{Alert, AlertState, GroupState, RuleState, Ruler, rfc3339};

fn alert_json(a: &Alert) -> Json {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state,
        "activeAt": rfc3339(a.active_at),
        "value": strata_model::format_float(a.value),
    })
}

fn rule_json(r: &rules::CompiledRule, st: &RuleState) -> Json {
    let status = st.status.lock();
    let mut j = json!({
        "name": r.name(),
        "query": r.source.expr,
        "labels": r.source.labels,
        "health": status.health,
        "evaluationTime": status.evaluation_seconds,
        "lastEvaluation": status.last_evaluation.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
    });
    if let Some(e) = &status.last_error {
        j["lastError"] = json!(e);
    }
    if r.is_alert() {
        let alerts: Vec<Json> = st
            .alerts
            .lock()
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .map(alert_json)
            .collect();
        let state = if alerts.iter().any(|a| a["state"] == "firing") {
            "firing"
        } else if alerts.is_empty() {
            "inactive"
        } else {
            "pending"
        };
        j["type"] = json!("alerting");
        j["duration"] = json!(r.for_.as_secs_f64());
        j["keepFiringFor"] = json!(r.keep_firing_for.as_secs_f64());
        j["annotations"] = json!(r.source.annotations);
        j["alerts"] = json!(alerts);
        j["state"] = json!(state);
    } else {
        j["type"] = json!("recording");
    }
    j
}

impl Ruler {
    /// Prometheus's `/api/v1/rules` data for `tenant`.
    pub fn rules_status(&self, tenant: &str, kind: Option<&str>) -> Json {
        let groups = self.groups.read();
        let mut mine: Vec<&Arc<GroupState>> =
            groups.values().filter(|g| g.tenant == tenant).collect();
        mine.sort_by(|a, b| {
            (&a.group.namespace, &a.group.source.name)
                .cmp(&(&b.group.namespace, &b.group.source.name))
        });
        let out: Vec<Json> = mine
            .into_iter()
            .map(|g| {
                let rules: Vec<Json> = g
                    .group
                    .rules
                    .iter()
                    .zip(&g.rules)
                    .filter(|(r, _)| match kind {
                        Some("alert") => r.is_alert(),
                        Some("record") => !r.is_alert(),
                        _ => true,
                    })
                    .map(|(r, st)| rule_json(r, st))
                    .collect();
                let last = *g.last_evaluation.lock();
                json!({
                    "name": g.group.source.name,
                    "file": g.group.namespace,
                    "rules": rules,
                    "interval": g.group.interval.as_secs_f64(),
                    "limit": g.group.source.limit,
                    "evaluationTime": last.map(|l| l.1).unwrap_or(0.0),
                    "lastEvaluation": last.map(|l| rfc3339(l.0)).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                })
            })
            .collect();
        json!({ "groups": out })
    }

    /// Prometheus's `/api/v1/alerts` data for `tenant`.
    /// Merges `field` (`groups` or `alerts`) of the other rulers' local
    /// answers at `path` into `local`, so any ruler answers for the
    /// cluster, as Mimir's rulers do. A ruler that does not answer is
    /// left out with a warning: the groups it owns show up again once
    /// others take them over.
    pub async fn with_peers(
        &self,
        tenant: &str,
        path_and_query: &str,
        field: &str,
        mut local: Json,
    ) -> Json {
        let Some(shard) = &self.shard else {
            return local;
        };
        let peers = shard.peer_http_addrs();
        let calls = peers.iter().map(|addr| {
            let url = format!("http://{addr}{path_and_query}");
            let req = self
                .peer_client
                .get(url)
                .header("X-Scope-OrgID", tenant)
                .timeout(Duration::from_secs(10));
            async move {
                let r = req.send().await.map_err(|e| e.to_string())?;
                r.json::<Json>().await.map_err(|e| e.to_string())
            }
        });
        let answers = futures::future::join_all(calls).await;
        let Some(items) = local[field].as_array_mut() else {
            return local;
        };
        for (addr, a) in peers.iter().zip(answers) {
            match a {
                Ok(j) => items.extend(j["data"][field].as_array().cloned().unwrap_or_default()),
                Err(e) => tracing::warn!(peer = %addr, error = %e, "a ruler did not answer"),
            }
        }
        if field == "groups" {
            items.sort_by(|a, b| {
                (a["file"].as_str(), a["name"].as_str())
                    .cmp(&(b["file"].as_str(), b["name"].as_str()))
            });
        }
        local
    }

    pub fn alerts_status(&self, tenant: &str) -> Json {
        let groups = self.groups.read();
        let mut alerts = Vec::new();
        for g in groups.values().filter(|g| g.tenant == tenant) {
            for st in &g.rules {
                for a in st.alerts.lock().values() {
                    if a.state != AlertState::Inactive {
                        alerts.push(alert_json(a));
                    }
                }
            }
        }
        json!({ "alerts": alerts })
    }
}

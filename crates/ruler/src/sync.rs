//! Ring sync: which tenants have rules, which groups this ruler owns when
//! several rulers share them, and loading those groups.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use object_store::path::Path as StorePath;
use parking_lot::Mutex;
use strata_model::now_ms;
use strata_ring::shard::Shard;

use crate::rules::{self, CompiledGroup, RuleLang};
use crate::{GroupKey, GroupState, RuleState, RuleStatus, Ruler, RulerError};

impl Ruler {
    /// Tenants with stored rules.
    pub(crate) async fn tenants(&self) -> Result<Vec<String>, RulerError> {
        let listed = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| RulerError::Store(e.to_string()))?;
        let mut out = Vec::new();
        for p in listed.common_prefixes {
            let Some(tenant) = strata_storage::block::tenant_of_listing(&p) else {
                continue;
            };
            for lang in [RuleLang::PromQL, RuleLang::LogQL] {
                let rules = StorePath::from(format!("{tenant}/{}", lang.dir()));
                let has = self
                    .store
                    .list_with_delimiter(Some(&rules))
                    .await
                    .map(|l| !l.common_prefixes.is_empty() || !l.objects.is_empty())
                    .unwrap_or(false);
                if has {
                    out.push(tenant);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Whether this ruler evaluates the group `key` among `members`.
    pub(crate) fn owns(&self, members: &[String], key: &GroupKey) -> bool {
        match &self.shard {
            Some(s) => s.owns(
                members,
                &format!("{}/{}/{}/{}", key.0, key.1.dir(), key.2, key.3),
            ),
            None => true,
        }
    }

    /// Re-reads every tenant's groups and keeps those this ruler owns;
    /// unchanged groups keep their state.
    pub async fn sync(&self) -> Result<(), RulerError> {
        let members = self.shard.as_ref().map(Shard::members).unwrap_or_default();
        let mut loaded: HashMap<GroupKey, CompiledGroup> = HashMap::new();
        for tenant in self.tenants().await? {
            for lang in [RuleLang::PromQL, RuleLang::LogQL] {
                for (ns, groups) in self.list_groups(&tenant, lang, None).await? {
                    for g in groups {
                        match rules::compile(lang, &ns, g, self.cfg.evaluation_interval, None) {
                            Ok(c) => {
                                loaded.insert(
                                    (tenant.clone(), lang, ns.clone(), c.source.name.clone()),
                                    c,
                                );
                            }
                            Err(e) => {
                                tracing::error!(tenant, namespace = ns, error = %e, "stored rule group is invalid; skipped")
                            }
                        }
                    }
                }
            }
        }
        loaded.retain(|k, _| self.owns(&members, k));
        *self.shard_members.lock() = members;
        let mut groups = self.groups.write();
        groups.retain(|k, v| loaded.get(k).is_some_and(|c| c.source == v.group.source));
        for (key, c) in loaded {
            if groups.contains_key(&key) {
                continue;
            }
            let interval = c.interval.as_millis() as i64;
            let next = (now_ms() / interval + 1) * interval;
            let state = GroupState {
                tenant: key.0.clone(),
                rules: c
                    .rules
                    .iter()
                    .map(|_| RuleState {
                        status: Mutex::new(RuleStatus {
                            health: "unknown",
                            ..Default::default()
                        }),
                        alerts: Mutex::new(HashMap::new()),
                        written: Mutex::new(HashSet::new()),
                        restored: AtomicBool::new(false),
                    })
                    .collect(),
                group: c,
                next_eval: Mutex::new(next),
                running: AtomicBool::new(false),
                last_evaluation: Mutex::new(None),
            };
            groups.insert(key, Arc::new(state));
        }
        Ok(())
    }
}

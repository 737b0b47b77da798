//! Rule groups in the object store, one YAML object per group under
//! `<tenant>/<rules|log rules dir>/<hex namespace>/<hex group>`, read and
//! written by Mimir's rules API.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;

use crate::rules::{self, RuleGroup, RuleLang};
use crate::{Ruler, RulerError};

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Ruler {
    pub(crate) fn group_path(
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
        group: &str,
    ) -> StorePath {
        StorePath::from(format!(
            "{tenant}/{}/{}/{}",
            lang.dir(),
            hex(namespace),
            hex(group)
        ))
    }

    /// Every stored group of `tenant` in `lang` (of one namespace, if given), by namespace.
    pub async fn list_groups(
        &self,
        tenant: &str,
        lang: RuleLang,
        namespace: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<RuleGroup>>, RulerError> {
        let prefix = match namespace {
            Some(ns) => StorePath::from(format!("{tenant}/{}/{}", lang.dir(), hex(ns))),
            None => StorePath::from(format!("{tenant}/{}", lang.dir())),
        };
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| RulerError::Store(e.to_string()))?;
        let mut out: BTreeMap<String, Vec<RuleGroup>> = BTreeMap::new();
        for o in objects {
            let parts: Vec<_> = o.location.parts().collect();
            let n = parts.len();
            if n < 4 {
                continue;
            }
            let Some(ns) = unhex(parts[n - 2].as_ref()) else {
                continue;
            };
            let bytes = self
                .store
                .get(&o.location)
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?
                .bytes()
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?;
            match serde_yaml::from_slice::<RuleGroup>(&bytes) {
                Ok(g) => out.entry(ns).or_default().push(g),
                Err(e) => {
                    tracing::error!(tenant, path = %o.location, error = %e, "stored rule group does not parse; skipped")
                }
            }
        }
        for groups in out.values_mut() {
            groups.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(out)
    }

    /// One stored group.
    pub async fn get_group(
        &self,
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
        group: &str,
    ) -> Result<RuleGroup, RulerError> {
        let path = Self::group_path(tenant, lang, namespace, group);
        let bytes = match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(RulerError::NotFound("group does not exist".into()));
            }
            Err(e) => return Err(RulerError::Store(e.to_string())),
        };
        serde_yaml::from_slice(&bytes).map_err(|e| RulerError::Store(e.to_string()))
    }

    /// Validates and stores a group (creating or replacing it), then loads it.
    pub async fn set_group(
        self: &Arc<Self>,
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
        yaml: &str,
    ) -> Result<(), RulerError> {
        let compiled = rules::parse_group(lang, namespace, yaml, self.cfg.evaluation_interval)?;
        if lang == RuleLang::PromQL {
            // Refused now rather than failing at every evaluation.
            let opts = self.querier.engine().options();
            for rule in &compiled.rules {
                strata_promql::check_instant_subqueries(
                    &rule.source.expr,
                    opts.max_subquery_steps,
                    opts.default_subquery_step,
                )
                .map_err(|e| RulerError::Invalid(format!("rule {:?}: {e}", rule.name())))?;
            }
        }
        let limits = self.overrides.for_tenant(tenant);
        let max_rules = limits.ruler_max_rules_per_rule_group;
        if max_rules > 0 && compiled.rules.len() > max_rules {
            return Err(RulerError::Limit(format!(
                "per-user rules per rule group limit (limit: {max_rules} actual: {}) exceeded",
                compiled.rules.len()
            )));
        }
        // Object names are enough to count groups (of both languages); their YAML is not read.
        let target = Self::group_path(tenant, lang, namespace, &compiled.source.name);
        let mut stored = Vec::new();
        for l in [RuleLang::PromQL, RuleLang::LogQL] {
            let listed: Vec<_> = self
                .store
                .list(Some(&StorePath::from(format!("{tenant}/{}", l.dir()))))
                .try_collect()
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?;
            stored.extend(listed);
        }
        let count = stored.len();
        let replaces = stored.iter().any(|o| o.location == target);
        let max_groups = limits.ruler_max_rule_groups_per_tenant;
        if max_groups > 0 && !replaces && count >= max_groups {
            return Err(RulerError::Limit(format!(
                "per-user rule groups limit (limit: {max_groups} actual: {}) exceeded",
                count + 1
            )));
        }
        let body = serde_yaml::to_string(&compiled.source)
            .map_err(|e| RulerError::Store(e.to_string()))?;
        self.store
            .put(&target, bytes::Bytes::from(body).into())
            .await
            .map_err(|e| RulerError::Store(e.to_string()))?;
        self.sync().await
    }

    /// Deletes one group.
    pub async fn delete_group(
        self: &Arc<Self>,
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
        group: &str,
    ) -> Result<(), RulerError> {
        self.get_group(tenant, lang, namespace, group).await?;
        self.store
            .delete(&Self::group_path(tenant, lang, namespace, group))
            .await
            .map_err(|e| RulerError::Store(e.to_string()))?;
        self.sync().await
    }

    /// Deletes every group of a namespace.
    pub async fn delete_namespace(
        self: &Arc<Self>,
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
    ) -> Result<(), RulerError> {
        let groups = self.list_groups(tenant, lang, Some(namespace)).await?;
        let Some(gs) = groups.get(namespace) else {
            return Err(RulerError::NotFound("namespace does not exist".into()));
        };
        for g in gs {
            self.store
                .delete(&Self::group_path(tenant, lang, namespace, &g.name))
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?;
        }
        self.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn object_names_round_trip() {
        for s in ["ns", "team a/ü", ""] {
            assert_eq!(unhex(&hex(s)).as_deref(), Some(s));
        }
        assert_eq!(unhex("zz"), None);
    }
}

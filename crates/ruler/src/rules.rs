//! Rule groups in Prometheus's rule-file YAML, and their validation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RulerError;

/// A rule group as written in a rule file (`groups: [...]` entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_offset: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: usize,
    pub rules: Vec<Rule>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One recording (`record`) or alerting (`alert`) rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    pub expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The query language of a rule group: PromQL groups come through Mimir's
/// rules API, LogQL groups through Loki's; each is stored under its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleLang {
    PromQL,
    LogQL,
}

impl RuleLang {
    /// Object-store directory of the tenant's groups in this language.
    pub fn dir(self) -> &'static str {
        match self {
            RuleLang::PromQL => "rules",
            RuleLang::LogQL => "loki-rules",
        }
    }

    /// Checks that `expr` is a query rules can evaluate.
    fn check(self, expr: &str) -> Result<(), String> {
        match self {
            // The query API's own checks (nesting depth, durations and times
            // in range), so a saved rule can always be evaluated safely.
            RuleLang::PromQL => strata_promql::parse(expr)
                .map(|_| ())
                .map_err(|e| e.to_string().replace("invalid parameter \"query\": ", "")),
            RuleLang::LogQL => match strata_logql::parse(expr) {
                Ok(strata_logql::Expr::Metric(_)) => Ok(()),
                Ok(strata_logql::Expr::Log(_)) => Err(
                    "rules need a LogQL metric query (e.g. count_over_time({...}[5m])), not a log query"
                        .into(),
                ),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

/// A validated group, durations parsed.
#[derive(Debug, Clone)]
pub struct CompiledGroup {
    pub lang: RuleLang,
    pub namespace: String,
    pub source: RuleGroup,
    pub interval: Duration,
    pub query_offset: Duration,
    pub rules: Vec<CompiledRule>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub source: Rule,
    pub for_: Duration,
    pub keep_firing_for: Duration,
}

impl CompiledRule {
    /// The recorded metric or the alert name.
    pub fn name(&self) -> &str {
        self.source
            .record
            .as_deref()
            .or(self.source.alert.as_deref())
            .unwrap_or("")
    }

    pub fn is_alert(&self) -> bool {
        self.source.alert.is_some()
    }
}

fn duration(
    field: &str,
    v: &Option<String>,
    default: Duration,
    at: &str,
) -> Result<Duration, RulerError> {
    match v {
        None => Ok(default),
        Some(s) if s == "0" => Ok(Duration::ZERO),
        Some(s) => strata_promql::parse_duration(s)
            .map_err(|e| RulerError::Invalid(format!("{at}: invalid {field} {s:?}: {e}"))),
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The 1-based line of the `n`-th (0-based) rule in `yaml`, found by the
/// `- record:`/`- alert:`/`- expr:` list items under `rules:`.
fn rule_line(yaml: &str, n: usize) -> Option<usize> {
    let mut seen = 0;
    let mut in_rules = false;
    for (i, line) in yaml.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("rules:") {
            in_rules = true;
            continue;
        }
        if in_rules
            && (t.starts_with("- record:") || t.starts_with("- alert:") || t.starts_with("- expr:"))
        {
            if seen == n {
                return Some(i + 1);
            }
            seen += 1;
        }
    }
    None
}

/// Parses and validates one rule group (the body of a rules-API POST).
pub fn parse_group(
    lang: RuleLang,
    namespace: &str,
    yaml: &str,
    default_interval: Duration,
) -> Result<CompiledGroup, RulerError> {
    let group: RuleGroup = serde_yaml::from_str(yaml)
        .map_err(|e| RulerError::Invalid(format!("invalid rule group YAML: {e}")))?;
    compile(lang, namespace, group, default_interval, Some(yaml))
}

/// Validates a parsed group.
pub fn compile(
    lang: RuleLang,
    namespace: &str,
    group: RuleGroup,
    default_interval: Duration,
    yaml: Option<&str>,
) -> Result<CompiledGroup, RulerError> {
    if group.name.trim().is_empty() {
        return Err(RulerError::Invalid(
            "rule group name must not be empty".into(),
        ));
    }
    if group.rules.is_empty() {
        return Err(RulerError::Invalid(format!(
            "rule group {:?} has no rules",
            group.name
        )));
    }
    let gat = format!("group {:?}", group.name);
    let interval = duration("interval", &group.interval, default_interval, &gat)?;
    if interval.is_zero() {
        return Err(RulerError::Invalid(format!(
            "{gat}: interval must be positive"
        )));
    }
    let query_offset = duration("query_offset", &group.query_offset, Duration::ZERO, &gat)?;
    let mut rules = Vec::with_capacity(group.rules.len());
    for (i, r) in group.rules.iter().enumerate() {
        let line = yaml
            .and_then(|y| rule_line(y, i))
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        let at = format!("{gat}, rule {}{line}", i + 1);
        match (&r.record, &r.alert) {
            (Some(_), Some(_)) => {
                return Err(RulerError::Invalid(format!(
                    "{at}: only one of 'record' and 'alert' may be set"
                )));
            }
            (None, None) => {
                return Err(RulerError::Invalid(format!(
                    "{at}: one of 'record' or 'alert' must be set"
                )));
            }
            (Some(rec), None) => {
                if !valid_metric_name(rec) {
                    return Err(RulerError::Invalid(format!(
                        "{at}: invalid recording rule name {rec:?}"
                    )));
                }
                if r.for_.is_some() || r.keep_firing_for.is_some() || !r.annotations.is_empty() {
                    return Err(RulerError::Invalid(format!(
                        "{at}: recording rule {rec:?} may not have 'for', 'keep_firing_for' or annotations"
                    )));
                }
            }
            (None, Some(a)) => {
                if a.trim().is_empty() {
                    return Err(RulerError::Invalid(format!("{at}: empty alert name")));
                }
            }
        }
        let name = r.record.as_deref().or(r.alert.as_deref()).unwrap_or("");
        let at = format!("{at} ({name})");
        if let Err(e) = lang.check(&r.expr) {
            return Err(RulerError::Invalid(format!(
                "{at}: could not parse expression {:?}: {e}",
                r.expr
            )));
        }
        for l in r.labels.keys().chain(r.annotations.keys()) {
            if !valid_label_name(l) {
                return Err(RulerError::Invalid(format!(
                    "{at}: invalid label name {l:?}"
                )));
            }
        }
        for (k, v) in r.labels.iter().chain(r.annotations.iter()) {
            crate::template::check(v)
                .map_err(|e| RulerError::Invalid(format!("{at}: template of {k:?}: {e}")))?;
        }
        rules.push(CompiledRule {
            source: r.clone(),
            for_: duration("for", &r.for_, Duration::ZERO, &at)?,
            keep_firing_for: duration("keep_firing_for", &r.keep_firing_for, Duration::ZERO, &at)?,
        });
    }
    Ok(CompiledGroup {
        lang,
        namespace: namespace.to_string(),
        source: group,
        interval,
        query_offset,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: api\ninterval: 30s\nrules:\n  - record: job:requests:rate5m\n    expr: sum by (job) (rate(requests_total[5m]))\n  - alert: HighErrors\n    expr: job:requests:rate5m > 10\n    for: 2m\n    labels:\n      severity: page\n    annotations:\n      summary: \"{{ $labels.job }} at {{ $value }}\"\n";

    #[test]
    fn parses_a_prometheus_rule_group() {
        let g = parse_group(RuleLang::PromQL, "ns", GOOD, Duration::from_secs(60)).unwrap();
        assert_eq!(g.interval, Duration::from_secs(30));
        assert_eq!(g.rules.len(), 2);
        assert!(!g.rules[0].is_alert());
        assert_eq!(g.rules[1].for_, Duration::from_secs(120));
        assert_eq!(g.rules[1].name(), "HighErrors");
    }

    #[test]
    fn errors_name_the_rule_and_line() {
        let bad = GOOD.replace("job:requests:rate5m > 10", "job:requests:rate5m >");
        let e = parse_group(RuleLang::PromQL, "ns", &bad, Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rule 2 (line 6) (HighErrors)"), "{e}");
        assert!(e.contains("could not parse expression"), "{e}");
        let e = parse_group(
            RuleLang::PromQL,
            "ns",
            "name: x\nrules: []\n",
            Duration::from_secs(60),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("has no rules"), "{e}");
        let e = parse_group(
            RuleLang::PromQL,
            "ns",
            "name: x\nrules:\n  - expr: up\n",
            Duration::from_secs(60),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("one of 'record' or 'alert'"), "{e}");
        let e = parse_group(
            RuleLang::PromQL,
            "ns",
            "name: x\nbogus: 1\nrules: []\n",
            Duration::from_secs(60),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn logql_groups_need_metric_queries() {
        let ok = "name: logs\ninterval: 15m\nrules:\n  - record: endpoint:latency_ms:p95\n    expr: quantile_over_time(0.95, {app=\"api\"} | regexp \"took (?P<ms>[0-9]+)ms\" | unwrap ms [15m]) by (endpoint)\n";
        let g = parse_group(RuleLang::LogQL, "ns", ok, Duration::from_secs(60)).unwrap();
        assert_eq!(g.lang, RuleLang::LogQL);
        let log_query =
            "name: logs\nrules:\n  - alert: Errors\n    expr: '{app=\"api\"} |= \"error\"'\n";
        let e = parse_group(RuleLang::LogQL, "ns", log_query, Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rule 1 (line 3) (Errors)") && e.contains("metric query"),
            "{e}"
        );
        let bad = "name: logs\nrules:\n  - record: x\n    expr: 'count_over_time({app=\"api\"} | jsn [5m])'\n";
        let e = parse_group(RuleLang::LogQL, "ns", bad, Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(e.contains("parse error at line 1, col"), "{e}");
        // A LogQL expression is not PromQL.
        assert!(parse_group(RuleLang::PromQL, "ns", ok, Duration::from_secs(60)).is_err());
    }
}

//! Cost attribution: each tenant's received samples counted by the values
//! of labels the operator names per tenant (`cost_attribution_labels`, e.g.
//! `team`), as Mimir's `cortex_distributor_received_attributed_samples_total`.
//! The label names differ per tenant, so the counters are exported by a
//! collector of their own rather than a fixed-label vector; the value
//! combinations kept per tenant are bounded, beyond which the tenant's
//! samples are counted under `__overflow__`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use strata_limits::Limits;

const METRIC: &str = "strata_distributor_received_attributed_samples_total";
/// The value of an attribution label a series does not carry.
const MISSING: &str = "__missing__";
/// Every attribution label's value once a tenant exceeds its cardinality.
const OVERFLOW: &str = "__overflow__";
/// Appends `value` to a key of several values, length first, so that any
/// text (separators included) round-trips through [`split_key`].
fn push_value(key: &mut String, value: &str) {
    use std::fmt::Write;
    let _ = write!(key, "{}:", value.len());
    key.push_str(value);
}

/// The values of a key built by [`push_value`].
fn split_key(mut key: &str) -> Vec<&str> {
    let mut values = Vec::new();
    while let Some((len, rest)) = key.split_once(':') {
        let Some(value) = len.parse::<usize>().ok().and_then(|n| rest.get(..n)) else {
            break;
        };
        values.push(value);
        key = &rest[value.len()..];
    }
    values
}

/// One tenant's counters.
#[derive(Default)]
struct TenantCounts {
    /// The label names the counts are for (a change starts over).
    labels: Vec<String>,
    /// Samples per combination of values (keys of [`push_value`]).
    counts: HashMap<String, u64>,
    overflowed: u64,
    is_overflowing: bool,
}

/// Every tenant's attributed sample counts.
#[derive(Default, Clone)]
pub struct CostAttribution {
    tenants: Arc<Mutex<HashMap<String, TenantCounts>>>,
}

pub(crate) static COST_ATTRIBUTION: LazyLock<CostAttribution> =
    LazyLock::new(CostAttribution::default);

/// Samples of one request counted per value combination before they are
/// added to the tenant's counters under one lock.
pub(crate) struct RequestCounts<'a> {
    labels: Vec<&'a str>,
    counts: HashMap<String, u64>,
    key: String,
}

impl<'a> RequestCounts<'a> {
    /// `None` when the tenant has no attribution labels (nothing to do).
    pub(crate) fn new(limits: &'a Limits) -> Option<Self> {
        // Only names that can be label names of the exported metric: valid,
        // not `user` (the tenant's), each once.
        let mut labels: Vec<&str> = Vec::new();
        for name in &limits.cost_attribution_labels {
            let valid = crate::is_valid_label_name(name)
                && name != "user"
                && !name.starts_with("__")
                && !labels.contains(&name.as_str());
            if valid {
                labels.push(name);
            }
        }
        (!labels.is_empty()).then(|| RequestCounts {
            labels,
            counts: HashMap::new(),
            key: String::new(),
        })
    }

    /// Counts `samples` of the series with (sorted) `series` labels.
    pub(crate) fn add(&mut self, series: &[(&str, &str)], samples: usize) {
        if samples == 0 {
            return;
        }
        self.key.clear();
        for name in &self.labels {
            let value = series
                .binary_search_by(|l| l.0.cmp(name))
                .ok()
                .map(|at| series[at].1)
                .filter(|v| !v.is_empty())
                .unwrap_or(MISSING);
            push_value(&mut self.key, value);
        }
        match self.counts.get_mut(self.key.as_str()) {
            Some(n) => *n += samples as u64,
            None => {
                self.counts.insert(self.key.clone(), samples as u64);
            }
        }
    }
}

impl CostAttribution {
    /// Adds one request's counts to `tenant`'s.
    pub(crate) fn record(&self, tenant: &str, request: RequestCounts<'_>, limits: &Limits) {
        if request.counts.is_empty() {
            return;
        }
        let mut tenants = self.tenants.lock();
        let counts = match tenants.get_mut(tenant) {
            Some(c) => c,
            None => tenants.entry(tenant.to_string()).or_default(),
        };
        if counts
            .labels
            .iter()
            .map(String::as_str)
            .ne(request.labels.iter().copied())
        {
            *counts = TenantCounts {
                labels: request.labels.iter().map(|l| l.to_string()).collect(),
                ..Default::default()
            };
        }
        let bound = match limits.max_cost_attribution_cardinality {
            0 => usize::MAX,
            n => n,
        };
        for (key, n) in request.counts {
            if counts.is_overflowing {
                counts.overflowed += n;
            } else if let Some(c) = counts.counts.get_mut(&key) {
                *c += n;
            } else if counts.counts.len() < bound {
                counts.counts.insert(key, n);
            } else {
                // Past the bound the per-value counters would grow without
                // limit: from here on, one counter for the whole tenant.
                counts.is_overflowing = true;
                counts.overflowed = counts.counts.drain().map(|(_, c)| c).sum::<u64>() + n;
            }
        }
    }

    /// The counters as one metric family (label names differ per tenant).
    fn family(&self) -> MetricFamily {
        let tenants = self.tenants.lock();
        let mut metrics = Vec::new();
        for (tenant, counts) in tenants.iter() {
            let mut emit = |values: Vec<&str>, n: u64| {
                let mut pairs = Vec::with_capacity(counts.labels.len() + 1);
                let mut user = LabelPair::default();
                user.set_name("user".into());
                user.set_value(tenant.clone());
                pairs.push(user);
                for (name, value) in counts.labels.iter().zip(values) {
                    let mut p = LabelPair::default();
                    p.set_name(name.clone());
                    p.set_value(value.to_string());
                    pairs.push(p);
                }
                let mut counter = Counter::default();
                counter.set_value(n as f64);
                let mut m = Metric::default();
                m.set_label(pairs);
                m.set_counter(counter);
                metrics.push(m);
            };
            if counts.is_overflowing {
                emit(vec![OVERFLOW; counts.labels.len()], counts.overflowed);
            } else {
                for (key, n) in &counts.counts {
                    emit(split_key(key), *n);
                }
            }
        }
        let mut family = MetricFamily::default();
        family.set_name(METRIC.into());
        family.set_help(
            "Samples received per tenant and per value of the tenant's cost-attribution labels."
                .into(),
        );
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        family
    }
}

impl Collector for CostAttribution {
    fn desc(&self) -> Vec<&Desc> {
        // The label names are the tenants' own, so there is no fixed
        // descriptor; the registry accepts one collector without one.
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let family = self.family();
        if family.get_metric().is_empty() {
            Vec::new()
        } else {
            vec![family]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        pairs.to_vec()
    }

    fn counts(ca: &CostAttribution) -> Vec<(Vec<(String, String)>, f64)> {
        let mut out: Vec<_> = ca
            .family()
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()
                        .iter()
                        .map(|l| (l.name().to_string(), l.value().to_string()))
                        .collect::<Vec<_>>(),
                    m.get_counter().get_value(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn pair(n: &str, v: &str) -> (String, String) {
        (n.into(), v.into())
    }

    #[test]
    fn samples_are_counted_by_the_tenants_labels_missing_values_named() {
        let ca = CostAttribution::default();
        let limits = Limits {
            cost_attribution_labels: vec!["team".into(), "env".into()],
            ..Default::default()
        };
        let mut req = RequestCounts::new(&limits).expect("labels set");
        req.add(
            &labels(&[("__name__", "a"), ("env", "prod"), ("team", "kafka")]),
            3,
        );
        req.add(
            &labels(&[("__name__", "b"), ("env", "prod"), ("team", "kafka")]),
            2,
        );
        req.add(&labels(&[("__name__", "c"), ("team", "spark")]), 1);
        ca.record("t1", req, &limits);
        assert_eq!(
            counts(&ca),
            vec![
                (
                    vec![
                        pair("user", "t1"),
                        pair("team", "kafka"),
                        pair("env", "prod")
                    ],
                    5.0
                ),
                (
                    vec![
                        pair("user", "t1"),
                        pair("team", "spark"),
                        pair("env", MISSING)
                    ],
                    1.0
                ),
            ]
        );
        assert!(RequestCounts::new(&Limits::default()).is_none());
        // Names that cannot be exported are left out.
        let odd = Limits {
            cost_attribution_labels: vec!["user".into(), "team-name".into(), "__x".into()],
            ..Default::default()
        };
        assert!(RequestCounts::new(&odd).is_none());
    }

    #[test]
    fn keys_round_trip_any_text() {
        let values = ["", "a:b", "12:x", "\u{ff}", "kafka"];
        let mut key = String::new();
        for v in values {
            push_value(&mut key, v);
        }
        assert_eq!(split_key(&key), values);
    }

    #[test]
    fn past_the_cardinality_bound_the_tenant_counts_under_overflow() {
        let ca = CostAttribution::default();
        let limits = Limits {
            cost_attribution_labels: vec!["team".into()],
            max_cost_attribution_cardinality: 2,
            ..Default::default()
        };
        for team in ["a", "b", "c", "d"] {
            let mut req = RequestCounts::new(&limits).expect("labels set");
            req.add(&labels(&[("team", team)]), 10);
            ca.record("t", req, &limits);
        }
        assert_eq!(
            counts(&ca),
            vec![(vec![pair("user", "t"), pair("team", OVERFLOW)], 40.0)]
        );
        // New labels start over.
        let relabelled = Limits {
            cost_attribution_labels: vec!["env".into()],
            ..limits
        };
        let mut req = RequestCounts::new(&relabelled).expect("labels set");
        req.add(&labels(&[("env", "dev")]), 1);
        ca.record("t", req, &relabelled);
        assert_eq!(
            counts(&ca),
            vec![(vec![pair("user", "t"), pair("env", "dev")], 1.0)]
        );
    }
}

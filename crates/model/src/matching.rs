//! Vector matching for binary operators between two vectors, shared by
//! PromQL and LogQL: which series of the two sides pair up (`on` /
//! `ignoring`, `group_left` / `group_right`), the labels of each result,
//! the errors Prometheus 3 reports for ambiguous matches, and the set
//! operators `and`, `or`, `unless`. Both languages evaluate it over series
//! x steps: values are one `Option<f64>` per step of the query.

use std::collections::{HashMap, HashSet};

use crate::Labels;
use crate::stats::BinaryFn;

/// One series' value at each step of the query.
pub type StepValues = Vec<Option<f64>>;

/// The `on`/`ignoring` and `group_left`/`group_right` modifiers of a
/// binary operator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VectorMatching {
    /// `on` (`true`) or `ignoring` (`false`) and its label names; `None`
    /// matches on every label but the metric name.
    pub on: Option<(bool, Vec<String>)>,
    pub card: Cardinality,
}

/// Which side may have several series per match group.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Cardinality {
    #[default]
    OneToOne,
    /// `group_left (labels)`: the left side is the "many" side; the listed
    /// labels are copied from the right side into each result.
    ManyToOne(Vec<String>),
    /// `group_right (labels)`: the mirror image.
    OneToMany(Vec<String>),
}

/// A match error: the query fails with it, as Prometheus's does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatchError {
    #[error(
        "found duplicate series for the match group {sig} on the {side} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side"
    )]
    DuplicateOnOneSide { sig: Labels, side: &'static str },
    #[error(
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right); match group {sig}"
    )]
    ImplicitManyToOne { sig: Labels },
    #[error(
        "multiple matches for labels: grouping labels must ensure unique matches; match group {sig}"
    )]
    NotUnique { sig: Labels },
}

impl VectorMatching {
    /// The match group of a series: its `on` labels, or its labels without
    /// the ignored ones and without the metric name.
    pub fn signature(&self, labels: &Labels) -> Labels {
        match &self.on {
            Some((true, names)) => labels.filter_names(names, true),
            Some((false, names)) => labels.filter_names(names, false).without_metric_name(),
            None => labels.without_metric_name(),
        }
    }

    /// Whether the right side is the "many" side (`group_right`).
    pub fn one_to_many(&self) -> bool {
        matches!(self.card, Cardinality::OneToMany(_))
    }

    /// The series pairs that can match, grouped by signature, and the
    /// labels of their results. `many` is the "many" side (the left side
    /// unless `group_right`), `one` the other.
    pub fn pair(&self, many: &[&Labels], one: &[&Labels]) -> Pairing {
        let mut one_by_sig: HashMap<Labels, Vec<usize>> = HashMap::new();
        for (i, labels) in one.iter().enumerate() {
            one_by_sig
                .entry(self.signature(labels))
                .or_default()
                .push(i);
        }
        // Match groups: the "many" series of each signature that has "one"
        // series, in order of their first "many" series.
        let mut groups: Vec<MatchGroup> = Vec::new();
        let mut group_of: HashMap<Labels, usize> = HashMap::new();
        for (mi, labels) in many.iter().enumerate() {
            let sig = self.signature(labels);
            let Some(candidates) = one_by_sig.get(&sig) else {
                continue;
            };
            let g = *group_of.entry(sig.clone()).or_insert_with(|| {
                groups.push(MatchGroup::new(sig, candidates.clone()));
                groups.len() - 1
            });
            groups[g].many.push(mi);
        }
        // Signatures with several "one" series but no "many" series: two of
        // them present at a step where the other side has any series is
        // still Prometheus's many-to-many error.
        for labels in one {
            let sig = self.signature(labels);
            if let Some(candidates) = one_by_sig.get(&sig)
                && candidates.len() > 1
                && !group_of.contains_key(&sig)
            {
                group_of.insert(sig.clone(), groups.len());
                groups.push(MatchGroup::new(sig, candidates.clone()));
            }
        }
        // The result series of every pair that can match: the "many"
        // side's labels (only the matched ones for one-to-one), plus the
        // `group_x` labels copied from the "one" side.
        let mut outputs: Vec<(Labels, usize)> = Vec::new();
        let mut output_of: HashMap<Labels, usize> = HashMap::new();
        for group in &mut groups {
            for &mi in &group.many {
                for &oi in &group.one {
                    let labels = self.result_labels(many[mi], one[oi]);
                    let id = *output_of.entry(labels.clone()).or_insert_with(|| {
                        outputs.push((labels, mi));
                        outputs.len() - 1
                    });
                    group.outputs.push(id);
                }
            }
            // Two "many" series that give the same result with one "one"
            // series: an error at any step where both are kept.
            let n = group.one.len();
            group.may_collide = (0..n).any(|o| {
                let mut seen = HashSet::new();
                (0..group.many.len()).any(|m| !seen.insert(group.outputs[m * n + o]))
            });
        }
        Pairing { groups, outputs }
    }

    fn result_labels(&self, many: &Labels, one: &Labels) -> Labels {
        match (&self.card, &self.on) {
            (Cardinality::OneToOne, Some((on, names))) => many.filter_names(names, *on),
            (Cardinality::OneToOne, None) => many.clone(),
            (Cardinality::ManyToOne(include) | Cardinality::OneToMany(include), _) => {
                let mut labels = many.clone();
                for name in include {
                    labels.set(name, one.get(name).unwrap_or(""));
                }
                labels
            }
        }
    }
}

/// What [`VectorMatching::pair`] found.
#[derive(Debug)]
pub struct Pairing {
    pub groups: Vec<MatchGroup>,
    /// Result series: labels, and the "many" series that first produced them.
    pub outputs: Vec<(Labels, usize)>,
}

/// The series of both sides of a binary operator that share one matching
/// signature, and the result series of each (many, one) pair.
#[derive(Debug)]
pub struct MatchGroup {
    /// The signature, for error messages.
    pub sig: Labels,
    /// Indexes into the "many" side (the left side of one-to-one).
    pub many: Vec<usize>,
    /// Indexes into the "one" side.
    pub one: Vec<usize>,
    /// Result series of `(many[m], one[o])` at `m * one.len() + o`.
    pub outputs: Vec<usize>,
    /// Whether two "many" series paired with one "one" series give the
    /// same result series.
    pub may_collide: bool,
}

/// How a binary operator combines matched values.
#[derive(Clone)]
pub struct MatchedOp {
    /// `(lhs, rhs) -> (value, keep)`: `keep` is a comparison's outcome.
    pub f: BinaryFn,
    pub comparison: bool,
    pub return_bool: bool,
    /// The "many" side is the right one (`group_right`).
    pub one_to_many: bool,
    pub one_to_one: bool,
}

impl MatchedOp {
    pub fn new(f: BinaryFn, comparison: bool, return_bool: bool, m: &VectorMatching) -> Self {
        MatchedOp {
            f,
            comparison,
            return_bool,
            one_to_many: m.one_to_many(),
            one_to_one: matches!(m.card, Cardinality::OneToOne),
        }
    }
}

impl MatchGroup {
    fn new(sig: Labels, one: Vec<usize>) -> Self {
        MatchGroup {
            sig,
            many: Vec::new(),
            one,
            outputs: Vec::new(),
            may_collide: false,
        }
    }

    /// Combines the group's values step by step, calling
    /// `emit(result series, step, value)`. `many_present[step]` says whether
    /// the "many" side has any series at that step: Prometheus matches
    /// nothing, and reports nothing, at a step where a side is empty.
    pub fn combine(
        &self,
        op: &MatchedOp,
        many: &[StepValues],
        one: &[StepValues],
        many_present: &[bool],
        emit: &mut dyn FnMut(usize, usize, f64),
    ) -> Result<(), MatchError> {
        for (step, present) in many_present.iter().enumerate() {
            if !present {
                continue;
            }
            let at = |side: &[StepValues], i: usize| side[i].get(step).copied().flatten();
            let mut one_present = self
                .one
                .iter()
                .enumerate()
                .filter_map(|(o, &i)| at(one, i).map(|v| (o, v)));
            let Some((o, ov)) = one_present.next() else {
                continue;
            };
            if one_present.next().is_some() {
                return Err(MatchError::DuplicateOnOneSide {
                    sig: self.sig.clone(),
                    side: if op.one_to_many { "left" } else { "right" },
                });
            }
            let many_present = self
                .many
                .iter()
                .enumerate()
                .filter_map(|(m, &i)| at(many, i).map(|v| (m, v)));
            let mut emitted = HashSet::new();
            // Prometheus 3 reports an implicit many-to-one match even when a
            // comparison would filter all but one pair out (operators.test).
            for (k, (m, mv)) in many_present.enumerate() {
                if op.one_to_one && k > 0 {
                    return Err(MatchError::ImplicitManyToOne {
                        sig: self.sig.clone(),
                    });
                }
                let (lv, rv) = if op.one_to_many { (ov, mv) } else { (mv, ov) };
                let (val, keep) = (op.f)(lv, rv);
                let val = match (op.comparison, op.return_bool, keep) {
                    (true, true, _) => f64::from(u8::from(keep)),
                    (true, false, false) => continue,
                    _ => val,
                };
                let out = self.outputs[m * self.one.len() + o];
                if self.may_collide && !emitted.insert(out) {
                    return Err(MatchError::NotUnique {
                        sig: self.sig.clone(),
                    });
                }
                emit(out, step, val);
            }
        }
        Ok(())
    }
}

/// Per step, whether any of the series has a value.
pub fn presence(side: &[StepValues], nsteps: usize) -> Vec<bool> {
    let mut present = vec![false; nsteps];
    for values in side {
        for (p, v) in present.iter_mut().zip(values) {
            *p |= v.is_some();
        }
    }
    present
}

/// A set operator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SetOp {
    And,
    Or,
    Unless,
}

impl SetOp {
    pub fn from_symbol(op: &str) -> Option<Self> {
        Some(match op {
            "and" => SetOp::And,
            "or" => SetOp::Or,
            "unless" => SetOp::Unless,
            _ => return None,
        })
    }
}

/// Which values of each result series a set operator keeps. The result
/// series are the left side's for `and`/`unless`, the left side's then the
/// right side's for `or`; each keeps its values at the steps where the
/// other side has (`and`) or lacks (`unless`, `or`'s right side) a series
/// of the same signature.
pub struct SetFilter {
    /// Per signature of the other side, the steps at which it has a value.
    masks: Vec<Vec<bool>>,
    /// Per result series: keep everything (`None`), or the steps at which
    /// the other side's presence (`mask`, absent when the other side lacks
    /// the signature) equals `want`.
    rules: Vec<Option<(Option<usize>, bool)>>,
}

impl SetFilter {
    pub fn new(
        op: SetOp,
        m: &VectorMatching,
        lhs: &[(&Labels, &StepValues)],
        rhs: &[(&Labels, &StepValues)],
        nsteps: usize,
    ) -> Self {
        let mut masks: Vec<Vec<bool>> = Vec::new();
        let mut presence = |side: &[(&Labels, &StepValues)]| {
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for (labels, values) in side {
                let mask = *index.entry(m.signature(labels)).or_insert_with(|| {
                    masks.push(vec![false; nsteps]);
                    masks.len() - 1
                });
                for (p, v) in masks[mask].iter_mut().zip(values.iter()) {
                    *p |= v.is_some();
                }
            }
            index
        };
        let mut rules = Vec::with_capacity(lhs.len() + rhs.len());
        match op {
            SetOp::And | SetOp::Unless => {
                let rp = presence(rhs);
                let want = op == SetOp::And;
                rules.extend(
                    lhs.iter()
                        .map(|(l, _)| Some((rp.get(&m.signature(l)).copied(), want))),
                );
            }
            SetOp::Or => {
                let lp = presence(lhs);
                rules.extend(lhs.iter().map(|_| None));
                rules.extend(
                    rhs.iter()
                        .map(|(l, _)| Some((lp.get(&m.signature(l)).copied(), false))),
                );
            }
        }
        SetFilter { masks, rules }
    }

    /// Whether result series `i` keeps its value at `step`.
    pub fn keeps(&self, i: usize, step: usize) -> bool {
        match self.rules[i] {
            None => true,
            Some((mask, want)) => mask.is_some_and(|m| self.masks[m][step]) == want,
        }
    }

    /// Number of result series.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn collect(
        group: &MatchGroup,
        op: &MatchedOp,
        many: &[StepValues],
        one: &[StepValues],
        present: &[bool],
    ) -> Result<Vec<(usize, usize, f64)>, MatchError> {
        let mut out = Vec::new();
        group.combine(op, many, one, present, &mut |o, s, v| out.push((o, s, v)))?;
        Ok(out)
    }

    #[test]
    fn group_left_copies_the_listed_labels_and_pairs_every_many_series() {
        let m = VectorMatching {
            on: Some((true, vec!["app".into()])),
            card: Cardinality::ManyToOne(vec!["team".into()]),
        };
        let a = labels(&[("app", "api"), ("path", "/a")]);
        let b = labels(&[("app", "api"), ("path", "/b")]);
        let c = labels(&[("app", "db"), ("path", "/c")]);
        let one = labels(&[("app", "api"), ("team", "core")]);
        let p = m.pair(&[&a, &b, &c], &[&one]);
        assert_eq!(p.groups.len(), 1, "db has no partner");
        assert_eq!(p.groups[0].many, vec![0, 1]);
        let names: Vec<String> = p.outputs.iter().map(|(l, _)| l.to_string()).collect();
        assert_eq!(
            names,
            vec![
                r#"{app="api", path="/a", team="core"}"#,
                r#"{app="api", path="/b", team="core"}"#
            ]
        );
        let op = MatchedOp::new(|l, r| (l / r, true), false, false, &m);
        let got = collect(
            &p.groups[0],
            &op,
            &[vec![Some(3.0)], vec![Some(1.0)], vec![Some(9.0)]],
            &[vec![Some(4.0)]],
            &[true],
        )
        .expect("group_left allows many");
        assert_eq!(got, vec![(0, 0, 0.75), (1, 0, 0.25)]);
    }

    #[test]
    fn ambiguous_matches_fail_as_prometheus_reports_them() {
        let m = VectorMatching::default();
        let x = labels(&[("a", "1")]);
        let named = labels(&[("__name__", "up"), ("a", "1")]);
        // Two left series share the signature {a="1"} once the name is dropped.
        let p = m.pair(&[&x, &named], &[&x]);
        let op = MatchedOp::new(|l, r| (l + r, true), false, false, &m);
        let err = collect(
            &p.groups[0],
            &op,
            &[vec![Some(1.0)], vec![Some(2.0)]],
            &[vec![Some(1.0)]],
            &[true],
        )
        .expect_err("implicit many-to-one");
        assert!(matches!(err, MatchError::ImplicitManyToOne { .. }), "{err}");
        // Two right series in one group, present at the same step.
        let p = m.pair(&[&x], &[&x, &named]);
        let err = collect(
            &p.groups[0],
            &op,
            &[vec![Some(1.0)]],
            &[vec![Some(1.0)], vec![Some(2.0)]],
            &[true],
        )
        .expect_err("duplicate on the one side");
        assert!(err.to_string().contains("on the right hand-side"), "{err}");
        // At a step where the left side is empty nothing matches or fails.
        let got = collect(
            &p.groups[0],
            &op,
            &[vec![None]],
            &[vec![Some(1.0)], vec![Some(2.0)]],
            &[false],
        )
        .expect("no left series");
        assert!(got.is_empty());
    }

    #[test]
    fn grouping_labels_must_make_results_unique() {
        // Both left series become {x="1", y="2"} once y is copied from the right.
        let m = VectorMatching {
            on: Some((true, vec!["x".into()])),
            card: Cardinality::ManyToOne(vec!["y".into()]),
        };
        let a = labels(&[("x", "1"), ("y", "1")]);
        let b = labels(&[("x", "1"), ("y", "3")]);
        let one = labels(&[("x", "1"), ("y", "2")]);
        let p = m.pair(&[&a, &b], &[&one]);
        assert!(p.groups[0].may_collide);
        let op = MatchedOp::new(|l, r| (l * r, true), false, false, &m);
        let one_values = [vec![Some(2.0), Some(2.0)]];
        let err = collect(
            &p.groups[0],
            &op,
            &[vec![Some(1.0), Some(1.0)], vec![None, Some(3.0)]],
            &one_values,
            &[true, true],
        )
        .expect_err("both present at step 1");
        assert!(matches!(err, MatchError::NotUnique { .. }), "{err}");
        let got = collect(
            &p.groups[0],
            &op,
            &[vec![Some(1.0), Some(1.0)], vec![None, None]],
            &one_values,
            &[true, true],
        )
        .expect("one at a time is unique");
        assert_eq!(got, vec![(0, 0, 2.0), (0, 1, 2.0)]);
    }

    #[test]
    fn comparisons_filter_or_return_bool_and_keep_the_left_value() {
        let m = VectorMatching {
            on: None,
            card: Cardinality::OneToMany(vec![]),
        };
        let x = labels(&[("a", "1")]);
        let p = m.pair(&[&x], &[&x]);
        let gt = |l: f64, r: f64| (l, l > r);
        // group_right: the right side is "many"; the value kept is the left one.
        let filtered = collect(
            &p.groups[0],
            &MatchedOp::new(gt, true, false, &m),
            &[vec![Some(1.0), Some(9.0)]],
            &[vec![Some(5.0), Some(5.0)]],
            &[true, true],
        )
        .expect("matches");
        assert_eq!(filtered, vec![(0, 0, 5.0)]);
        let bools = collect(
            &p.groups[0],
            &MatchedOp::new(gt, true, true, &m),
            &[vec![Some(1.0), Some(9.0)]],
            &[vec![Some(5.0), Some(5.0)]],
            &[true, true],
        )
        .expect("matches");
        assert_eq!(bools, vec![(0, 0, 1.0), (0, 1, 0.0)]);
    }

    #[test]
    fn set_operators_keep_values_by_the_other_sides_presence() {
        let m = VectorMatching {
            on: Some((true, vec!["a".into()])),
            card: Cardinality::OneToOne,
        };
        let l1 = labels(&[("a", "1"), ("b", "x")]);
        let l2 = labels(&[("a", "2")]);
        let r1 = labels(&[("a", "1"), ("b", "y")]);
        let r3 = labels(&[("a", "3")]);
        let lv = vec![Some(1.0), Some(1.0)];
        let rv = vec![None, Some(1.0)];
        let lhs = [(&l1, &lv), (&l2, &lv)];
        let rhs = [(&r1, &rv), (&r3, &rv)];
        let and = SetFilter::new(SetOp::And, &m, &lhs, &rhs, 2);
        assert_eq!(
            (and.keeps(0, 0), and.keeps(0, 1), and.keeps(1, 1)),
            (false, true, false)
        );
        let unless = SetFilter::new(SetOp::Unless, &m, &lhs, &rhs, 2);
        assert_eq!(
            (unless.keeps(0, 0), unless.keeps(0, 1), unless.keeps(1, 1)),
            (true, false, true)
        );
        let or = SetFilter::new(SetOp::Or, &m, &lhs, &rhs, 2);
        assert_eq!(or.len(), 4);
        // The right side's a="1" is shadowed where the left has a="1"; a="3" never.
        assert_eq!(
            (or.keeps(0, 0), or.keeps(2, 1), or.keeps(3, 1)),
            (true, false, true)
        );
    }
}

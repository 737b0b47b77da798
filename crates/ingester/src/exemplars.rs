//! A tenant's exemplars in the head: the newest ones across all its series,
//! the oldest evicted first once the tenant's limit is reached (Prometheus's
//! circular exemplar storage, sized per tenant as Mimir's
//! `max_global_exemplars_per_user`). Within a series exemplars only move
//! forward in time: an exemplar older than the series' newest is refused as
//! out of order, and one equal to the newest is a resend and dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use strata_model::{Exemplar, Labels, Matcher, matches_all};

/// Why an exemplar was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemplarReject {
    OutOfOrder,
}

impl ExemplarReject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfOrder => "exemplar_out_of_order",
        }
    }
}

/// What [`ExemplarIndex::admit`] says of one exemplar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Keep,
    /// Already held (a resend).
    Duplicate,
    Refuse(ExemplarReject),
}

/// Per series: its newest exemplar and how many the ring holds.
struct SeriesState {
    newest: Exemplar,
    held: usize,
}

/// See the module documentation.
#[derive(Default)]
pub struct ExemplarIndex {
    ring: VecDeque<(Arc<Labels>, Exemplar)>,
    series: HashMap<Arc<Labels>, SeriesState>,
}

impl ExemplarIndex {
    /// Whether `e` of `series` would be kept, given the exemplars of the
    /// same push admitted before it (`pending`: series, newest time).
    pub fn admit(
        &self,
        series: &Labels,
        e: &Exemplar,
        pending: &HashMap<&Labels, &Exemplar>,
    ) -> Admission {
        let newest = match pending.get(series) {
            Some(p) => Some(*p),
            None => self.series.get(series).map(|s| &s.newest),
        };
        match newest {
            Some(n) if e.t < n.t => Admission::Refuse(ExemplarReject::OutOfOrder),
            Some(n)
                if e.t == n.t && e.value.to_bits() == n.value.to_bits() && e.labels == n.labels =>
            {
                Admission::Duplicate
            }
            // Another exemplar at the newest time: Prometheus refuses it as
            // out of order too.
            Some(n) if e.t == n.t => Admission::Refuse(ExemplarReject::OutOfOrder),
            _ => Admission::Keep,
        }
    }

    /// Adds an admitted exemplar, then evicts the oldest beyond `max`
    /// (0: no bound, as during a WAL replay).
    pub fn insert(&mut self, series: &Labels, e: Exemplar, max: usize) {
        let key = match self.series.get_key_value(series) {
            Some((k, _)) => k.clone(),
            None => Arc::new(series.clone()),
        };
        let state = self.series.entry(key.clone()).or_insert(SeriesState {
            newest: e.clone(),
            held: 0,
        });
        if e.t >= state.newest.t {
            state.newest = e.clone();
        }
        state.held += 1;
        self.ring.push_back((key, e));
        if max > 0 {
            while self.ring.len() > max {
                self.evict_oldest();
            }
        }
    }

    fn evict_oldest(&mut self) {
        let Some((series, _)) = self.ring.pop_front() else {
            return;
        };
        if let Some(state) = self.series.get_mut(&series) {
            state.held -= 1;
            if state.held == 0 {
                self.series.remove(&series);
            }
        }
    }

    /// Exemplars in `[start, end]` of the series matching any of
    /// `alternatives`, per series in time order.
    pub fn select(
        &self,
        alternatives: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let mut matched: HashMap<&Labels, bool> = HashMap::new();
        let mut out: HashMap<&Labels, Vec<Exemplar>> = HashMap::new();
        for (series, e) in &self.ring {
            if e.t < start || e.t > end {
                continue;
            }
            let series = series.as_ref();
            let hit = *matched
                .entry(series)
                .or_insert_with(|| alternatives.iter().any(|m| matches_all(m, series)));
            if hit {
                out.entry(series).or_default().push(e.clone());
            }
        }
        out.into_iter()
            .map(|(series, mut exemplars)| {
                exemplars.sort_by_key(|e| e.t);
                (series.clone(), exemplars)
            })
            .collect()
    }

    /// Every exemplar held, oldest first.
    pub fn all(&self) -> impl ExactSizeIterator<Item = (&Labels, &Exemplar)> {
        self.ring.iter().map(|(s, e)| (s.as_ref(), e))
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, v: f64, t: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: v,
            t,
        }
    }

    #[test]
    fn exemplars_move_forward_per_series_and_the_oldest_go_first() {
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        let mut idx = ExemplarIndex::default();
        let none = HashMap::new();
        assert_eq!(idx.admit(&a, &ex("1", 1.0, 10), &none), Admission::Keep);
        idx.insert(&a, ex("1", 1.0, 10), 3);
        assert_eq!(
            idx.admit(&a, &ex("1", 1.0, 10), &none),
            Admission::Duplicate
        );
        assert_eq!(
            idx.admit(&a, &ex("2", 2.0, 10), &none),
            Admission::Refuse(ExemplarReject::OutOfOrder)
        );
        assert_eq!(
            idx.admit(&a, &ex("0", 1.0, 5), &none),
            Admission::Refuse(ExemplarReject::OutOfOrder)
        );
        let later = ex("3", 1.0, 20);
        let pending = HashMap::from([(&a, &later)]);
        assert_eq!(
            idx.admit(&a, &ex("2", 1.0, 15), &pending),
            Admission::Refuse(ExemplarReject::OutOfOrder),
            "ordered against the same push's earlier exemplars"
        );
        idx.insert(&a, ex("3", 1.0, 20), 3);
        idx.insert(&b, ex("4", 1.0, 5), 3);
        idx.insert(&b, ex("5", 1.0, 30), 3);
        assert_eq!(idx.len(), 3, "the oldest inserted went");
        let all = [vec![Matcher::new(
            strata_model::MatchOp::NotEqual,
            "__name__",
            "",
        )]];
        let mut got = idx.select(&all, 0, 100);
        got.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(got[0].1, vec![ex("3", 1.0, 20)]);
        assert_eq!(got[1].1, vec![ex("4", 1.0, 5), ex("5", 1.0, 30)]);
        assert!(idx.select(&all, 21, 29).is_empty());
        // Once a series' exemplars are all evicted it starts afresh.
        idx.insert(&b, ex("6", 1.0, 40), 1);
        assert_eq!(idx.admit(&a, &ex("7", 1.0, 1), &none), Admission::Keep);
    }
}

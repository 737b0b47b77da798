//! A tenant's metric metadata in the head: per metric family the distinct
//! entries (type, help, unit) received and when each was last received.
//! Clients resend metadata periodically (Prometheus every minute), so an
//! entry not refreshed within the retain period is dropped, as Mimir's
//! ingesters do (`-ingester.metadata-retain-period`). The entries are in the
//! WAL (refreshes included), so they survive a restart.

use std::collections::HashMap;

use strata_model::metadata::MetricMetadata;

/// Why a metadata entry was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataReject {
    PerUserLimit,
    PerMetricLimit,
}

impl MetadataReject {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerUserLimit => "per_user_metadata_limit",
            Self::PerMetricLimit => "per_metric_metadata_limit",
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub struct MetadataIndex {
    by_family: HashMap<String, Vec<(MetricMetadata, i64)>>,
    entries: usize,
    /// When [`Self::purge_every`] last purged (ms).
    purged_at: i64,
}

impl MetadataIndex {
    /// Which of `batch` may be kept under the limits (0: unlimited):
    /// entries already held are refreshes and always are; new ones count
    /// against the limits together with the batch's earlier new ones.
    pub fn admit(
        &self,
        batch: &[MetricMetadata],
        max_per_user: usize,
        max_per_metric: usize,
    ) -> Vec<Result<(), MetadataReject>> {
        let mut added_total = 0usize;
        let mut added_per_family: HashMap<&str, Vec<&MetricMetadata>> = HashMap::new();
        batch
            .iter()
            .map(|m| {
                let held = self.by_family.get(&m.metric_family);
                if held.is_some_and(|v| v.iter().any(|(x, _)| x == m)) {
                    return Ok(());
                }
                let added = added_per_family.entry(&m.metric_family).or_default();
                if added.contains(&m) {
                    return Ok(());
                }
                let in_family = held.map_or(0, Vec::len) + added.len();
                if max_per_metric > 0 && in_family >= max_per_metric {
                    return Err(MetadataReject::PerMetricLimit);
                }
                if max_per_user > 0 && self.entries + added_total >= max_per_user {
                    return Err(MetadataReject::PerUserLimit);
                }
                added.push(m);
                added_total += 1;
                Ok(())
            })
            .collect()
    }

    /// Records `m` as received at `seen` (ms).
    pub fn upsert(&mut self, m: MetricMetadata, seen: i64) {
        let family = self.by_family.entry(m.metric_family.clone()).or_default();
        match family.iter_mut().find(|(x, _)| *x == m) {
            Some((_, at)) => *at = (*at).max(seen),
            None => {
                family.push((m, seen));
                self.entries += 1;
            }
        }
    }

    /// Drops entries last received before `cutoff` (ms).
    pub fn purge(&mut self, cutoff: i64) {
        let mut entries = 0;
        self.by_family.retain(|_, family| {
            family.retain(|(_, seen)| *seen >= cutoff);
            entries += family.len();
            !family.is_empty()
        });
        self.entries = entries;
    }

    /// Purges entries received before `cutoff` when the last purge is more
    /// than `period` ms older than it: stale entries cost one pass per period.
    pub fn purge_every(&mut self, cutoff: i64, period: i64) {
        if cutoff.saturating_sub(self.purged_at) > period {
            self.purge(cutoff);
            self.purged_at = cutoff;
        }
    }

    /// Entries received at or after `cutoff`, with when they were received.
    pub fn fresh(&self, cutoff: i64) -> Vec<(&MetricMetadata, i64)> {
        self.by_family
            .values()
            .flatten()
            .filter(|(_, seen)| *seen >= cutoff)
            .map(|(m, seen)| (m, *seen))
            .collect()
    }

    /// Entries of `metric` (every family when `None`) received at or after `cutoff`.
    pub fn select(&self, metric: Option<&str>, cutoff: i64) -> Vec<MetricMetadata> {
        let families: Box<dyn Iterator<Item = &Vec<(MetricMetadata, i64)>>> = match metric {
            Some(name) => Box::new(self.by_family.get(name).into_iter()),
            None => Box::new(self.by_family.values()),
        };
        families
            .flatten()
            .filter(|(_, seen)| *seen >= cutoff)
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

#[cfg(test)]
mod tests {
    use strata_model::metadata::MetricType;

    use super::*;

    fn meta(family: &str, help: &str) -> MetricMetadata {
        MetricMetadata {
            metric_family: family.into(),
            kind: MetricType::Counter,
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn limits_count_new_entries_and_never_refuse_a_refresh() {
        let mut idx = MetadataIndex::default();
        idx.upsert(meta("a", "x"), 10);
        let batch = [
            meta("a", "x"), // refresh
            meta("a", "y"), // second of a
            meta("a", "z"), // third of a: over per metric
            meta("b", "x"), // third in all
            meta("b", "x"), // repeated in the batch: counted once
            meta("c", "x"), // fourth in all: over per user
        ];
        assert_eq!(
            idx.admit(&batch, 3, 2),
            vec![
                Ok(()),
                Ok(()),
                Err(MetadataReject::PerMetricLimit),
                Ok(()),
                Ok(()),
                Err(MetadataReject::PerUserLimit)
            ]
        );
        assert!(idx.admit(&batch, 0, 0).iter().all(Result::is_ok));
    }

    #[test]
    fn refreshes_move_the_time_and_purge_drops_stale_entries() {
        let mut idx = MetadataIndex::default();
        idx.upsert(meta("a", "x"), 10);
        idx.upsert(meta("a", "x"), 30);
        idx.upsert(meta("a", "x"), 20);
        idx.upsert(meta("b", "x"), 15);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.select(Some("a"), 25), vec![meta("a", "x")]);
        assert!(idx.select(Some("b"), 25).is_empty());
        assert_eq!(idx.select(None, 0).len(), 2);
        assert_eq!(idx.fresh(25), vec![(&meta("a", "x"), 30)]);
        idx.purge(25);
        assert_eq!(idx.len(), 1);
        assert!(idx.select(Some("b"), 0).is_empty());
    }
}

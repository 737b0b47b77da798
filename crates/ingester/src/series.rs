//! The metric head of one tenant: series with compressed chunks, an index
//! from label hashes to series, and postings (label name -> value -> series
//! refs) that resolve label matchers without scanning every series.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;
use strata_model::{BatchSeries, LabelSet, Labels, Matcher, Sample, matches_all, merge_samples};

use crate::series_labels::SeriesLabels;
use strata_storage::chunk::XorChunk;

/// Samples per head chunk before a new one is started (as Prometheus).
const HEAD_CHUNK_SAMPLES: usize = 120;

/// One series' samples: in-order chunks plus a sorted out-of-order buffer.
#[derive(Default)]
pub struct SeriesData {
    /// Boxed slice, not a vector: 8 bytes less per series, and a series
    /// starts a chunk only every 120 samples.
    chunks: Box<[XorChunk]>,
    last: Option<Sample>,
    /// Out-of-order samples, time-ordered; boxed (8 bytes, not a vector's
    /// 24) as most series have none.
    #[allow(clippy::box_collection)]
    ooo: Option<Box<Vec<Sample>>>,
}

impl SeriesData {
    /// Last in-order sample.
    pub fn last(&self) -> Option<Sample> {
        self.last
    }

    /// Value stored in the out-of-order buffer at `t`, if any.
    pub fn ooo_at(&self, t: i64) -> Option<f64> {
        let ooo = self.ooo();
        ooo.binary_search_by_key(&t, |s| s.t).ok().map(|i| ooo[i].v)
    }

    fn ooo(&self) -> &[Sample] {
        self.ooo.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Value stored at `t`, in the out-of-order buffer or the in-order
    /// chunks (decoded: out-of-order writes are rare).
    pub fn value_at(&self, t: i64) -> Option<f64> {
        if let Some(v) = self.ooo_at(t) {
            return Some(v);
        }
        let mut found = Vec::new();
        for c in &self.chunks {
            c.samples_in(t, t, &mut found);
            if let Some(s) = found.first() {
                return Some(s.v);
            }
        }
        None
    }

    /// Appends a sample newer than [`Self::last`].
    pub fn append(&mut self, s: Sample) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < HEAD_CHUNK_SAMPLES => c.append(s.t, s.v),
            _ => {
                // A full chunk takes no more appends: drop its spare capacity.
                if let Some(full) = self.chunks.last_mut() {
                    full.shrink_to_fit();
                }
                let mut c = XorChunk::new();
                c.append(s.t, s.v);
                let mut chunks = std::mem::take(&mut self.chunks).into_vec();
                chunks.reserve_exact(1);
                chunks.push(c);
                self.chunks = chunks.into_boxed_slice();
            }
        }
        self.last = Some(s);
    }

    /// Inserts an out-of-order sample (replacing one at the same timestamp).
    pub fn insert_ooo(&mut self, s: Sample) {
        let ooo = self.ooo.get_or_insert_default();
        match ooo.binary_search_by_key(&s.t, |x| x.t) {
            Ok(i) => ooo[i] = s,
            Err(i) => ooo.insert(i, s),
        }
    }

    /// Appends samples in `[min_t, max_t]`, time-ordered and de-duplicated, to `out`.
    pub fn samples_in(&self, min_t: i64, max_t: i64, out: &mut Vec<Sample>) {
        for c in &self.chunks {
            c.samples_in(min_t, max_t, out);
        }
        let ooo = self.ooo();
        if !ooo.is_empty() {
            let lo = ooo.partition_point(|s| s.t < min_t);
            let hi = ooo.partition_point(|s| s.t <= max_t);
            merge_samples(out, &ooo[lo..hi]);
        }
    }

    /// Removes and returns every sample before `boundary`; the rest is re-encoded.
    pub fn take_before(&mut self, boundary: i64) -> Vec<Sample> {
        let mut all = Vec::new();
        self.samples_in(i64::MIN, i64::MAX, &mut all);
        let split = all.partition_point(|s| s.t < boundary);
        let kept = all.split_off(split);
        self.chunks = Box::default();
        self.ooo = None;
        let last = self.last;
        self.last = None;
        for s in &kept {
            self.append(*s);
        }
        // Keep the last in-order sample for duplicate/order checks even when
        // it moved to a block: later samples must still be newer.
        if self.last.is_none() {
            self.last = last.filter(|l| l.t >= boundary);
        }
        all
    }

    /// Oldest timestamp held, if any.
    pub fn min_t(&self) -> Option<i64> {
        let c = self.chunks.first().map(|c| c.min_t());
        let o = self.ooo().first().map(|s| s.t);
        match (c, o) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Compressed chunks held (the out-of-order buffer not counted).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// True when no samples are held.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.ooo().is_empty()
    }
}

/// A series in the head.
pub struct MemSeries {
    pub r#ref: u64,
    pub labels: SeriesLabels,
    pub data: Mutex<SeriesData>,
}

/// Hasher for keys that already are good hashes (label-set hashes): the
/// write path looks up every incoming series here, so no second hashing.
#[derive(Default)]
pub(crate) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByHash = HashMap<u64, SameHash, BuildHasherDefault<PassThroughHasher>>;

/// The series of one label-set hash: one but for a collision. 16 bytes,
/// as the index holds one per series.
enum SameHash {
    One(Arc<MemSeries>),
    Collided(Box<[Arc<MemSeries>]>),
}

impl SameHash {
    fn as_slice(&self) -> &[Arc<MemSeries>] {
        match self {
            SameHash::One(s) => std::slice::from_ref(s),
            SameHash::Collided(all) => all,
        }
    }

    fn push(&mut self, s: Arc<MemSeries>) {
        let mut all = self.as_slice().to_vec();
        all.push(s);
        *self = SameHash::Collided(all.into_boxed_slice());
    }
}

/// Refs of the series holding one label pair. Many pairs belong to one
/// series only (instance, pod, id labels): that ref is kept inline. Refs
/// are handed out in increasing order, so the refs of a pair many series
/// share are dense: past a few hundred, a compressed set holds them in a
/// bit or two bytes each instead of eight (below that its fixed cost is
/// more than the plain list's).
/// Boxed forms keep it at 16 bytes: a head holds one per label pair.
#[allow(clippy::box_collection)]
enum Refs {
    One(u64),
    Few(Box<Vec<u64>>),
    Many(Box<roaring::RoaringTreemap>),
}

/// Refs a pair holds as a plain list before it turns into a compressed set.
const FEW_REFS: usize = 256;

impl Refs {
    fn push(&mut self, r: u64) {
        match self {
            Refs::One(first) => *self = Refs::Few(Box::new(vec![*first, r])),
            Refs::Few(refs) if refs.len() < FEW_REFS => refs.push(r),
            Refs::Few(refs) => {
                let mut set: roaring::RoaringTreemap = refs.iter().copied().collect();
                set.insert(r);
                *self = Refs::Many(Box::new(set));
            }
            Refs::Many(set) => {
                set.insert(r);
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            Refs::One(_) => 1,
            Refs::Few(refs) => refs.len() as u64,
            Refs::Many(set) => set.len(),
        }
    }

    /// The refs, in increasing order (no allocation: regex matchers walk
    /// every matching pair's refs).
    fn iter(&self) -> RefsIter<'_> {
        match self {
            Refs::One(r) => RefsIter::One(Some(*r)),
            Refs::Few(refs) => RefsIter::Few(refs.iter()),
            Refs::Many(set) => RefsIter::Many(set.iter()),
        }
    }
}

/// Lives on the stack for one walk: its size does not matter, no box does.
#[allow(clippy::large_enum_variant)]
enum RefsIter<'a> {
    One(Option<u64>),
    Few(std::slice::Iter<'a, u64>),
    Many(roaring::treemap::Iter<'a>),
}

impl Iterator for RefsIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        match self {
            RefsIter::One(r) => r.take(),
            RefsIter::Few(it) => it.next().copied(),
            RefsIter::Many(it) => it.next(),
        }
    }
}

/// Series index of one tenant.
#[derive(Default)]
pub struct HeadIndex {
    /// Label-set hash -> series (a Vec for the rare hash collision).
    by_hash: ByHash,
    pub series: HashMap<u64, Arc<MemSeries>, rustc_hash::FxBuildHasher>,
    postings: HashMap<String, HashMap<Box<str>, Refs>>,
    /// The tenant's metric metadata.
    pub metadata: crate::metadata::MetadataIndex,
    /// The tenant's exemplars.
    pub exemplars: crate::exemplars::ExemplarIndex,
}

impl HeadIndex {
    /// The series with exactly these labels.
    pub fn get(&self, labels: &Labels, hash: u64) -> Option<&Arc<MemSeries>> {
        self.by_hash
            .get(&hash)?
            .as_slice()
            .iter()
            .find(|s| s.labels.eq_labels(labels))
    }

    /// The series with exactly the labels of a pushed series.
    pub fn get_pushed(&self, pushed: &BatchSeries<'_>) -> Option<&Arc<MemSeries>> {
        self.by_hash
            .get(&pushed.hash64())?
            .as_slice()
            .iter()
            .find(|s| s.labels.eq_pushed(pushed))
    }

    /// Adds a series; refs must be added in increasing order.
    pub fn insert(&mut self, s: Arc<MemSeries>) {
        let r = s.r#ref;
        match self.by_hash.entry(s.labels.label_hash()) {
            std::collections::hash_map::Entry::Occupied(mut same) => same.get_mut().push(s.clone()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(SameHash::One(s.clone()));
            }
        }
        for (name, value) in s.labels.pairs() {
            // Keys are copied only for a name or pair seen first.
            if !self.postings.contains_key(name) {
                self.postings.insert(name.to_string(), HashMap::new());
            }
            let Some(values) = self.postings.get_mut(name) else {
                continue;
            };
            match values.get_mut(value) {
                Some(refs) => refs.push(r),
                None => {
                    values.insert(value.into(), Refs::One(r));
                }
            }
        }
        self.series.insert(r, s);
    }

    /// Drops series that hold no samples (after a block cut) and rebuilds postings.
    pub fn remove_empty(&mut self) -> usize {
        let before = self.series.len();
        self.series.retain(|_, s| !s.data.lock().is_empty());
        let removed = before - self.series.len();
        if removed > 0 {
            let mut all: Vec<Arc<MemSeries>> = self.series.values().cloned().collect();
            all.sort_by_key(|s| s.r#ref);
            // Metadata and exemplars outlive the series a cut empties.
            let kept = HeadIndex {
                metadata: std::mem::take(&mut self.metadata),
                exemplars: std::mem::take(&mut self.exemplars),
                ..HeadIndex::default()
            };
            *self = kept;
            for s in all {
                self.insert(s);
            }
        }
        removed
    }

    /// The index's cardinality, each list cut to its `limit` largest.
    pub fn stats(&self, limit: usize) -> strata_model::head_stats::HeadStats {
        let mut out = strata_model::head_stats::HeadStats {
            num_series: self.series.len() as u64,
            ..Default::default()
        };
        for s in self.series.values() {
            let d = s.data.lock();
            out.chunk_count += d.chunk_count() as u64;
            if let Some(t) = d.min_t() {
                out.min_time = out.min_time.min(t);
            }
            if let Some(last) = d.last() {
                out.max_time = out.max_time.max(last.t);
            }
        }
        // Pairs can number millions: rank them borrowed, format the top.
        let mut pairs: Vec<(&str, &str, u64)> = Vec::new();
        for (name, values) in &self.postings {
            out.num_label_pairs += values.len() as u64;
            out.values_by_label
                .push((name.clone(), values.len() as u64));
            let bytes: usize = values.keys().map(|v| v.len()).sum();
            out.bytes_by_label.push((name.clone(), bytes as u64));
            for (value, refs) in values {
                if name == strata_model::METRIC_NAME {
                    out.series_by_metric.push((value.to_string(), refs.len()));
                }
                pairs.push((name, value, refs.len()));
            }
        }
        pairs.sort_unstable_by(|a, b| b.2.cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1))));
        out.series_by_pair = pairs
            .into_iter()
            .take(limit)
            .map(|(n, v, c)| (format!("{n}={v}"), c))
            .collect();
        out.truncate(limit);
        out
    }

    /// Refs of series matching all matchers, sorted.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<u64> {
        let mut candidates: Option<Vec<u64>> = None;
        // A shard matcher has no postings: the final check below tests it.
        for m in matchers
            .iter()
            .filter(|m| !m.is_match("") && !strata_model::shard::is_shard_matcher(m))
        {
            let Some(values) = self.postings.get(&m.name) else {
                return Vec::new();
            };
            let mut set: Vec<u64> = match &m.op {
                strata_model::MatchOp::Equal => values
                    .get(m.value.as_str())
                    .map(|refs| refs.iter().collect())
                    .unwrap_or_default(),
                _ => {
                    let mut v: Vec<u64> = values
                        .iter()
                        .filter(|(val, _)| m.is_match(val))
                        .flat_map(|(_, refs)| refs.iter())
                        .collect();
                    v.sort_unstable();
                    v
                }
            };
            candidates = Some(match candidates {
                None => set,
                Some(c) => {
                    set.retain(|r| c.binary_search(r).is_ok());
                    set
                }
            });
        }
        let mut refs = candidates.unwrap_or_else(|| {
            let mut all: Vec<u64> = self.series.keys().copied().collect();
            all.sort_unstable();
            all
        });
        refs.retain(|r| {
            self.series
                .get(r)
                .is_some_and(|s| matches_all(matchers, &s.labels))
        });
        refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::MatchOp;

    fn mk(r: u64, pairs: &[(&str, &str)]) -> Arc<MemSeries> {
        Arc::new(MemSeries {
            r#ref: r,
            labels: SeriesLabels::from_labels(&Labels::from_pairs(pairs.iter().copied())),
            data: Mutex::new(SeriesData::default()),
        })
    }

    #[test]
    fn per_series_index_entries_stay_small() {
        // The head holds one of each per series or label pair: a size
        // change here is a memory-per-series change (docs/benchmarks.md).
        assert_eq!(std::mem::size_of::<Refs>(), 16);
        assert_eq!(std::mem::size_of::<SameHash>(), 16);
        assert!(std::mem::size_of::<MemSeries>() <= 80);
    }

    #[test]
    fn refs_stay_ordered_through_each_form() {
        let mut refs = Refs::One(3);
        let mut want = vec![3u64];
        for r in (10..2_000).step_by(3) {
            refs.push(r);
            want.push(r);
            assert_eq!(refs.len(), want.len() as u64);
            if want.len() == 2 || want.len() == FEW_REFS + 1 || want.len() == 600 {
                assert_eq!(refs.iter().collect::<Vec<_>>(), want, "{} refs", want.len());
            }
        }
        assert!(matches!(refs, Refs::Many(_)));
        assert_eq!(refs.iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn postings_resolve_all_matcher_kinds() {
        let mut idx = HeadIndex::default();
        idx.insert(mk(1, &[("__name__", "up"), ("job", "a")]));
        idx.insert(mk(2, &[("__name__", "up"), ("job", "b")]));
        idx.insert(mk(3, &[("__name__", "up")]));
        idx.insert(mk(4, &[("__name__", "down"), ("job", "a")]));
        let eq = |n: &str, v: &str| Matcher::new(MatchOp::Equal, n, v);
        assert_eq!(idx.matching(&[eq("__name__", "up")]), vec![1, 2, 3]);
        assert_eq!(
            idx.matching(&[eq("__name__", "up"), eq("job", "a")]),
            vec![1]
        );
        assert_eq!(
            idx.matching(&[eq("__name__", "up"), eq("job", "")]),
            vec![3]
        );
        let ne = Matcher::new(MatchOp::NotEqual, "job", "a");
        assert_eq!(idx.matching(&[eq("__name__", "up"), ne]), vec![2, 3]);
        let re = Matcher::new_matcher(
            promql_parser::parser::token::T_EQL_REGEX,
            "job".into(),
            "a|b".into(),
        )
        .unwrap();
        assert_eq!(idx.matching(&[re]), vec![1, 2, 4]);
        assert!(idx.matching(&[eq("nope", "x")]).is_empty());
    }

    #[test]
    fn values_are_found_in_order_and_out_of_order() {
        let mut d = SeriesData::default();
        d.append(Sample { t: 10, v: 1.5 });
        d.append(Sample { t: 20, v: 2.5 });
        assert_eq!(d.value_at(10), Some(1.5));
        assert_eq!(d.value_at(20), Some(2.5));
        assert_eq!(d.value_at(15), None);
    }

    #[test]
    fn query_shards_split_the_matching_series() {
        let mut idx = HeadIndex::default();
        for r in 0..40 {
            idx.insert(mk(r, &[("__name__", "up"), ("pod", &format!("p{r}"))]));
        }
        idx.insert(mk(99, &[("__name__", "down")]));
        let up = Matcher::new(MatchOp::Equal, "__name__", "up");
        let mut seen = Vec::new();
        for i in 0..3 {
            let shard = strata_model::shard::QueryShard::new(i, 3).unwrap();
            let refs = idx.matching(&[up.clone(), shard.matcher()]);
            assert!(!refs.is_empty() && refs.len() < 40, "shard {i}: {refs:?}");
            // A shard alone selects its share of every series.
            assert!(idx.matching(&[shard.matcher()]).len() >= refs.len());
            seen.extend(refs);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..40).collect::<Vec<u64>>());
    }

    #[test]
    fn ooo_merge_and_take_before() {
        let mut d = SeriesData::default();
        for t in [10, 20, 30, 40] {
            d.append(Sample { t, v: t as f64 });
        }
        d.insert_ooo(Sample { t: 15, v: 15.0 });
        let mut all = Vec::new();
        d.samples_in(0, 100, &mut all);
        assert_eq!(
            all.iter().map(|s| s.t).collect::<Vec<_>>(),
            vec![10, 15, 20, 30, 40]
        );
        let cut = d.take_before(25);
        assert_eq!(
            cut.iter().map(|s| s.t).collect::<Vec<_>>(),
            vec![10, 15, 20]
        );
        let mut rest = Vec::new();
        d.samples_in(0, 100, &mut rest);
        assert_eq!(rest.iter().map(|s| s.t).collect::<Vec<_>>(), vec![30, 40]);
        assert_eq!(d.last().map(|s| s.t), Some(40));
    }
}

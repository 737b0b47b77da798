//! A batch of series and their samples as one write carries them through
//! the distributor, the ingester client and the ingester head: every label
//! string of the batch lives in one shared string and series name their
//! labels by position in it. A remote-write request decodes into this form
//! with a handful of allocations per request instead of two per label, and
//! the ingester builds an owned [`Labels`] only for a series it has not seen.

use std::ops::Range;
use std::sync::Arc;

use crate::{Label, Labels, Sample, hash_label_pairs};

/// A string of a batch: a byte range of its shared string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StrSpan {
    start: u32,
    end: u32,
}

impl StrSpan {
    /// The span of `range` (callers keep it on character boundaries).
    pub fn new(range: Range<usize>) -> Result<Self, BatchTooLarge> {
        let start = u32::try_from(range.start).map_err(|_| BatchTooLarge)?;
        let end = u32::try_from(range.end).map_err(|_| BatchTooLarge)?;
        Ok(Self { start, end })
    }

    /// True for the empty string.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// The byte range of the batch's string this span names.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A label of a batch: its name and value in the shared string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelSpan {
    pub name: StrSpan,
    pub value: StrSpan,
}

/// The batch's strings passed 4 GiB (offsets are 32-bit).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a write batch's label strings exceed 4 GiB")]
pub struct BatchTooLarge;

#[derive(Debug, Clone)]
struct SeriesSpan {
    labels: Range<u32>,
    samples: Range<u32>,
    hash: u64,
}

/// Series with their samples; see the module doc.
#[derive(Debug, Clone, Default)]
pub struct SeriesBatch {
    strings: Arc<str>,
    labels: Vec<LabelSpan>,
    series: Vec<SeriesSpan>,
    samples: Vec<Sample>,
}

impl SeriesBatch {
    /// A batch of owned series (labels as [`Labels`] keeps them: sorted,
    /// unique, no empty values); their strings are copied once.
    pub fn from_owned(series: &[(Labels, Vec<Sample>)]) -> Self {
        let len: usize = series
            .iter()
            .flat_map(|(l, _)| l.iter())
            .map(|l| l.name.len() + l.value.len())
            .sum();
        let mut strings = String::with_capacity(len);
        let mut labels = Vec::with_capacity(series.iter().map(|(l, _)| l.len()).sum());
        let mut spans = Vec::with_capacity(series.len());
        let mut samples = Vec::with_capacity(series.iter().map(|(_, s)| s.len()).sum());
        let push = |s: &str, strings: &mut String| {
            let start = strings.len();
            strings.push_str(s);
            // An owned batch past 4 GiB cannot exist in a request; clamp
            // rather than fail (the spans stay in bounds).
            StrSpan::new(start..strings.len()).unwrap_or_default()
        };
        for (l, s) in series {
            let first = labels.len() as u32;
            for label in l {
                let name = push(&label.name, &mut strings);
                let value = push(&label.value, &mut strings);
                labels.push(LabelSpan { name, value });
            }
            let first_sample = samples.len() as u32;
            samples.extend_from_slice(s);
            spans.push(SeriesSpan {
                labels: first..labels.len() as u32,
                samples: first_sample..samples.len() as u32,
                hash: l.hash64(),
            });
        }
        Self {
            strings: strings.into(),
            labels,
            series: spans,
            samples,
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Samples over all series.
    pub fn total_samples(&self) -> usize {
        self.samples.len()
    }

    /// Series `i` (panics past [`SeriesBatch::len`], as slice indexing).
    pub fn get(&self, i: usize) -> BatchSeries<'_> {
        BatchSeries {
            batch: self,
            span: &self.series[i],
        }
    }

    /// The series in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = BatchSeries<'_>> {
        self.series
            .iter()
            .map(move |span| BatchSeries { batch: self, span })
    }

    /// The series at `indexes`, in that order, sharing this batch's strings.
    pub fn select(&self, indexes: &[u32]) -> SeriesBatch {
        let mut out = SeriesBatchBuilder::new(self.strings.clone());
        for &i in indexes {
            let s = &self.series[i as usize];
            let samples = &self.samples[s.samples.start as usize..s.samples.end as usize];
            out.push_hashed(
                self.labels[s.labels.start as usize..s.labels.end as usize]
                    .iter()
                    .copied(),
                samples.iter().copied(),
                s.hash,
            );
        }
        out.build()
    }

    fn str(&self, s: StrSpan) -> &str {
        self.strings.get(s.range()).unwrap_or("")
    }
}

/// One series of a [`SeriesBatch`].
#[derive(Clone, Copy)]
pub struct BatchSeries<'a> {
    batch: &'a SeriesBatch,
    span: &'a SeriesSpan,
}

impl<'a> BatchSeries<'a> {
    /// The labels as (name, value) pairs, sorted by name.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone + 'a {
        let batch = self.batch;
        batch.labels[self.span.labels.start as usize..self.span.labels.end as usize]
            .iter()
            .map(move |l| (batch.str(l.name), batch.str(l.value)))
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> &'a [Sample] {
        &self.batch.samples[self.span.samples.start as usize..self.span.samples.end as usize]
    }

    /// The label set's hash, equal to [`Labels::hash64`] of the same labels.
    pub fn hash64(&self) -> u64 {
        self.span.hash
    }

    /// The labels as an owned set.
    pub fn to_labels(&self) -> Labels {
        Labels::from_sorted(self.labels().map(|(n, v)| Label::new(n, v)).collect())
    }
}

/// Builds a [`SeriesBatch`] over strings already laid out (a decoded
/// request's label text).
pub struct SeriesBatchBuilder {
    batch: SeriesBatch,
}

impl SeriesBatchBuilder {
    /// A builder whose spans index `strings`.
    pub fn new(strings: Arc<str>) -> Self {
        Self {
            batch: SeriesBatch {
                strings,
                ..Default::default()
            },
        }
    }

    /// Reserves room for `series` more series holding `labels` labels and
    /// `samples` samples.
    pub fn reserve(&mut self, series: usize, labels: usize, samples: usize) {
        self.batch.series.reserve(series);
        self.batch.labels.reserve(labels);
        self.batch.samples.reserve(samples);
    }

    /// The text of a span of the strings.
    pub fn str(&self, s: StrSpan) -> &str {
        self.batch.str(s)
    }

    /// Adds a series. Its labels must be sorted by name, unique, with
    /// non-empty values (a label set's rules; validation is the caller's),
    /// its samples oldest first.
    pub fn push(
        &mut self,
        labels: impl Iterator<Item = LabelSpan> + Clone,
        samples: impl Iterator<Item = Sample>,
    ) {
        let strings = &self.batch.strings;
        let text = |s: StrSpan| strings.get(s.range()).unwrap_or("");
        let hash = hash_label_pairs(labels.clone().map(|l| (text(l.name), text(l.value))));
        self.push_hashed(labels, samples, hash);
    }

    fn push_hashed(
        &mut self,
        labels: impl Iterator<Item = LabelSpan>,
        samples: impl Iterator<Item = Sample>,
        hash: u64,
    ) {
        let b = &mut self.batch;
        let first_label = b.labels.len() as u32;
        b.labels.extend(labels);
        let first_sample = b.samples.len() as u32;
        b.samples.extend(samples);
        b.series.push(SeriesSpan {
            labels: first_label..b.labels.len() as u32,
            samples: first_sample..b.samples.len() as u32,
            hash,
        });
    }

    /// The batch.
    pub fn build(self) -> SeriesBatch {
        self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned() -> Vec<(Labels, Vec<Sample>)> {
        vec![
            (
                Labels::from_pairs([("__name__", "up"), ("job", "a")]),
                vec![Sample { t: 1, v: 1.0 }, Sample { t: 2, v: 2.0 }],
            ),
            (
                Labels::from_pairs([("__name__", "up"), ("job", "b"), ("zone", "é")]),
                vec![Sample { t: 3, v: 3.0 }],
            ),
        ]
    }

    #[test]
    fn owned_series_round_trip_with_their_hashes() {
        let owned = owned();
        let batch = SeriesBatch::from_owned(&owned);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.total_samples(), 3);
        for (s, (labels, samples)) in batch.iter().zip(&owned) {
            assert_eq!(s.to_labels(), *labels);
            assert_eq!(s.hash64(), labels.hash64());
            assert_eq!(s.samples(), samples.as_slice());
        }
        assert_ne!(batch.get(0).to_labels(), owned[1].0);
    }

    #[test]
    fn selected_series_share_strings_and_keep_hashes() {
        let owned = owned();
        let batch = SeriesBatch::from_owned(&owned);
        let picked = batch.select(&[1, 0, 1]);
        assert_eq!(picked.len(), 3);
        assert!(Arc::ptr_eq(&picked.strings, &batch.strings));
        assert_eq!(picked.get(0).to_labels(), owned[1].0);
        assert_eq!(picked.get(1).samples(), owned[0].1.as_slice());
        assert_eq!(picked.get(2).hash64(), owned[1].0.hash64());
        assert!(batch.select(&[]).is_empty());
    }

    #[test]
    fn built_series_hash_as_label_sets() {
        let text: Arc<str> = "__name__upjobx".into();
        let span = |r: Range<usize>| StrSpan::new(r).unwrap();
        let mut b = SeriesBatchBuilder::new(text);
        let labels = [
            LabelSpan {
                name: span(0..8),
                value: span(8..10),
            },
            LabelSpan {
                name: span(10..13),
                value: span(13..14),
            },
        ];
        b.push(
            labels.iter().copied(),
            [Sample { t: 5, v: 0.5 }].into_iter(),
        );
        let batch = b.build();
        let want = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        assert_eq!(batch.get(0).hash64(), want.hash64());
        assert_eq!(batch.get(0).to_labels(), want);
    }
}

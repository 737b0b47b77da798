//! A write request as the write path takes it, whatever it came as
//! (remote-write 1.0 or 2.0, an OTLP translation, a recording rule's
//! results): every label string of the request in one string, each series'
//! labels and samples as ranges of shared vectors. Remote-write bodies are
//! read straight into this form with prost's wire primitives, so decoding
//! allocates a few buffers per request instead of a `String` per label name
//! and value of every series (the write path's largest cost in profiles);
//! 2.0's symbol table is copied once and its references become spans.
//! Exemplars, native histograms and metadata, rare beside samples, are
//! decoded with prost as owned messages.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use prost::Message;
use prost::encoding::{DecodeContext, decode_key};
use strata_model::{LabelSpan, METRIC_NAME, Sample, StrSpan};
use strata_proto::prometheus::{self as v1, MetricMetadata, WriteRequest};
use strata_proto::prometheus_v2::{self as v2, metadata::MetricType};

use strata_ingester_client::series_wire::{
    LabelText, WireError, label, length_delimited, sample, skip,
};

use crate::PushError;

impl From<WireError> for PushError {
    fn from(e: WireError) -> Self {
        PushError::Protobuf(e.to_string())
    }
}

impl From<prost::DecodeError> for PushError {
    fn from(e: prost::DecodeError) -> Self {
        PushError::Protobuf(e.to_string())
    }
}

/// One series of a [`DecodedWrite`]: ranges of its shared vectors.
#[derive(Debug, Clone, Default)]
pub(crate) struct DecodedSeries {
    pub labels: Range<u32>,
    pub samples: Range<u32>,
    pub exemplars: Range<u32>,
    /// Native histogram samples (refused, counted for the message).
    pub histograms: u32,
}

/// A decoded write request; see the module doc.
#[derive(Debug, Default)]
pub struct DecodedWrite {
    pub(crate) strings: Arc<str>,
    pub(crate) labels: Vec<LabelSpan>,
    pub(crate) series: Vec<DecodedSeries>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) exemplars: Vec<v1::Exemplar>,
    pub(crate) metadata: Vec<MetricMetadata>,
}

impl DecodedWrite {
    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Float samples and histogram samples over all series.
    pub fn total_samples(&self) -> usize {
        self.samples.len()
            + self
                .series
                .iter()
                .map(|s| s.histograms as usize)
                .sum::<usize>()
    }

    /// Series `i`'s labels as written (panics past [`Self::series_count`]).
    pub fn series_labels(&self, i: usize) -> impl Iterator<Item = (&str, &str)> {
        self.label_spans(&self.series[i])
            .iter()
            .map(|l| (self.str(l.name), self.str(l.value)))
    }

    /// Series `i`'s samples as written.
    pub fn series_samples(&self, i: usize) -> &[Sample] {
        self.samples_of(&self.series[i])
    }

    /// Series `i`'s exemplars.
    pub fn series_exemplars(&self, i: usize) -> &[v1::Exemplar] {
        self.exemplars_of(&self.series[i])
    }

    /// Series `i`'s native histogram samples.
    pub fn series_histograms(&self, i: usize) -> usize {
        self.series[i].histograms as usize
    }

    /// The request's metric metadata.
    pub fn metadata(&self) -> &[MetricMetadata] {
        &self.metadata
    }

    /// The text of a span.
    pub(crate) fn str(&self, s: StrSpan) -> &str {
        self.strings.get(s.range()).unwrap_or("")
    }

    /// A series' labels as written, in order.
    pub(crate) fn label_spans(&self, s: &DecodedSeries) -> &[LabelSpan] {
        &self.labels[s.labels.start as usize..s.labels.end as usize]
    }

    /// A series' samples as written.
    pub(crate) fn samples_of(&self, s: &DecodedSeries) -> &[Sample] {
        &self.samples[s.samples.start as usize..s.samples.end as usize]
    }

    /// A series' exemplars.
    pub(crate) fn exemplars_of(&self, s: &DecodedSeries) -> &[v1::Exemplar] {
        &self.exemplars[s.exemplars.start as usize..s.exemplars.end as usize]
    }

    /// The form of an owned request (OTLP translations, recording rules);
    /// refused (413) past 4 GiB of label text, which 32-bit spans cannot
    /// name.
    pub fn from_request(req: WriteRequest) -> Result<Self, PushError> {
        let text: usize = req
            .timeseries
            .iter()
            .flat_map(|ts| &ts.labels)
            .map(|l| l.name.len() + l.value.len())
            .sum();
        if text > u32::MAX as usize {
            return Err(PushError::TooLarge {
                size: text,
                limit: u32::MAX as usize,
            });
        }
        let mut out = Builder::with_capacity(text);
        for ts in req.timeseries {
            let first_label = out.labels.len();
            for l in &ts.labels {
                let name = out.text.push(l.name.as_bytes());
                let value = out.text.push(l.value.as_bytes());
                out.labels.push(LabelSpan { name, value });
            }
            let first_sample = out.samples.len();
            out.samples.extend(ts.samples.iter().map(|s| Sample {
                t: s.timestamp,
                v: s.value,
            }));
            let first_exemplar = out.exemplars.len();
            out.exemplars.extend(ts.exemplars);
            out.finish_series(
                first_label,
                first_sample,
                first_exemplar,
                ts.histograms.len(),
            );
        }
        out.metadata = req.metadata;
        let text = std::mem::take(&mut out.text).finish()?;
        Ok(out.build(text))
    }

    /// Decodes an uncompressed remote-write 1.0 `WriteRequest`.
    pub(crate) fn decode_v1(mut buf: &[u8]) -> Result<Self, PushError> {
        fits_spans(buf)?;
        let mut out = Builder::with_capacity(buf.len());
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                1 => out.v1_series(length_delimited(wire_type, &mut buf)?)?,
                3 => out.metadata.push(MetricMetadata::decode(length_delimited(
                    wire_type, &mut buf,
                )?)?),
                _ => skip(wire_type, tag, &mut buf)?,
            }
        }
        let text = std::mem::take(&mut out.text).finish()?;
        Ok(out.build(text))
    }

    /// Decodes an uncompressed remote-write 2.0 `Request`: a reference
    /// outside the symbol table or an odd number of label references makes
    /// the whole body malformed (400). Per-series metadata becomes the
    /// request's metric metadata, once per family as 1.0 senders name it.
    pub(crate) fn decode_v2(mut buf: &[u8]) -> Result<Self, PushError> {
        fits_spans(buf)?;
        let mut out = Builder::with_capacity(buf.len());
        let mut symbols: Vec<StrSpan> = Vec::new();
        let mut series: Vec<&[u8]> = Vec::new();
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                4 => {
                    let span = out.text.push(length_delimited(wire_type, &mut buf)?);
                    symbols.push(span);
                }
                5 => series.push(length_delimited(wire_type, &mut buf)?),
                _ => skip(wire_type, tag, &mut buf)?,
            }
        }
        if symbols.first().is_some_and(|s| !s.is_empty()) {
            return Err(PushError::Decode(
                "remote-write 2.0: symbols[0] must be the empty string".into(),
            ));
        }
        // Series only reference the symbols: the text is complete.
        let text = std::mem::take(&mut out.text).finish()?;
        let mut v2 = V2 {
            text: &text,
            symbols,
            refs: Vec::new(),
            seen_metadata: HashSet::new(),
        };
        for ts in series {
            out.v2_series(ts, &mut v2)?;
        }
        drop(v2);
        Ok(out.build(text))
    }
}

/// Spans are 32-bit: a body past 4 GiB (only with a limit configured
/// that high) is refused whole rather than read with wrong labels.
fn fits_spans(body: &[u8]) -> Result<(), PushError> {
    let limit = u32::MAX as usize;
    if body.len() > limit {
        return Err(PushError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    Ok(())
}

/// What decoding 2.0 series needs besides the output: the symbols, laid
/// out before any series is read.
struct V2<'t> {
    text: &'t str,
    symbols: Vec<StrSpan>,
    /// Scratch: one series' (or exemplar's) label references.
    refs: Vec<u32>,
    /// Metadata already kept: (type, family, help ref, unit ref).
    seen_metadata: HashSet<(i32, &'t str, u32, u32)>,
}

impl<'t> V2<'t> {
    fn text(&self, s: StrSpan) -> &'t str {
        self.text.get(s.range()).unwrap_or("")
    }

    fn symbol(&self, r: u32, what: &str) -> Result<StrSpan, PushError> {
        self.symbols.get(r as usize).copied().ok_or_else(|| {
            PushError::Decode(format!(
                "remote-write 2.0: {what} reference {r} is outside the symbol table of {} entries",
                self.symbols.len()
            ))
        })
    }
}

struct Builder {
    text: LabelText,
    labels: Vec<LabelSpan>,
    series: Vec<DecodedSeries>,
    samples: Vec<Sample>,
    exemplars: Vec<v1::Exemplar>,
    metadata: Vec<MetricMetadata>,
}

impl Builder {
    fn with_capacity(body: usize) -> Self {
        Self {
            text: LabelText::with_capacity(body),
            labels: Vec::new(),
            series: Vec::new(),
            samples: Vec::new(),
            exemplars: Vec::new(),
            metadata: Vec::new(),
        }
    }

    fn finish_series(
        &mut self,
        first_label: usize,
        first_sample: usize,
        first_exemplar: usize,
        histograms: usize,
    ) {
        self.series.push(DecodedSeries {
            labels: first_label as u32..self.labels.len() as u32,
            samples: first_sample as u32..self.samples.len() as u32,
            exemplars: first_exemplar as u32..self.exemplars.len() as u32,
            histograms: histograms.min(u32::MAX as usize) as u32,
        });
    }

    /// A 1.0 `TimeSeries`: labels and samples read in place.
    fn v1_series(&mut self, mut buf: &[u8]) -> Result<(), PushError> {
        let (first_label, first_sample, first_exemplar) =
            (self.labels.len(), self.samples.len(), self.exemplars.len());
        let mut histograms = 0usize;
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                1 => {
                    let label = label(length_delimited(wire_type, &mut buf)?, &mut self.text)?;
                    self.labels.push(label);
                }
                2 => {
                    let s = sample(length_delimited(wire_type, &mut buf)?)?;
                    self.samples.push(s);
                }
                3 => self.exemplars.push(v1::Exemplar::decode(length_delimited(
                    wire_type, &mut buf,
                )?)?),
                4 => {
                    v1::Histogram::decode(length_delimited(wire_type, &mut buf)?)?;
                    histograms += 1;
                }
                _ => skip(wire_type, tag, &mut buf)?,
            }
        }
        self.finish_series(first_label, first_sample, first_exemplar, histograms);
        Ok(())
    }

    /// A 2.0 `TimeSeries`: label references become spans of the symbols.
    fn v2_series<'t>(&mut self, mut buf: &[u8], v2: &mut V2<'t>) -> Result<(), PushError> {
        let (first_label, first_sample, first_exemplar) =
            (self.labels.len(), self.samples.len(), self.exemplars.len());
        let mut histograms = 0usize;
        let mut metadata: Option<v2::Metadata> = None;
        v2.refs.clear();
        let mut exemplars: Vec<v2::Exemplar> = Vec::new();
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            let ctx = DecodeContext::default();
            match tag {
                1 => {
                    prost::encoding::uint32::merge_repeated(wire_type, &mut v2.refs, &mut buf, ctx)?
                }
                2 => {
                    let s = sample(length_delimited(wire_type, &mut buf)?)?;
                    self.samples.push(s);
                }
                3 => {
                    v2::Histogram::decode(length_delimited(wire_type, &mut buf)?)?;
                    histograms += 1;
                }
                4 => exemplars.push(v2::Exemplar::decode(length_delimited(
                    wire_type, &mut buf,
                )?)?),
                // A message field seen twice merges, as prost decodes it.
                5 => metadata
                    .get_or_insert_default()
                    .merge(length_delimited(wire_type, &mut buf)?)?,
                // created_timestamp: not stored, but read as the int64 it
                // is, so a body that sends it with another wire type is
                // refused as prost refuses it (found by fuzzing).
                6 => {
                    let mut created = 0i64;
                    prost::encoding::int64::merge(wire_type, &mut created, &mut buf, ctx)?;
                }
                _ => skip(wire_type, tag, &mut buf)?,
            }
        }
        if !v2.refs.len().is_multiple_of(2) {
            return Err(PushError::Decode(format!(
                "remote-write 2.0: a series has {} label references, not name-value pairs",
                v2.refs.len()
            )));
        }
        let mut name_ref = 0;
        for pair in v2.refs.chunks_exact(2) {
            let name = v2.symbol(pair[0], "label name")?;
            let value = v2.symbol(pair[1], "label value")?;
            if v2.text(name) == METRIC_NAME {
                name_ref = pair[1];
            }
            self.labels.push(LabelSpan { name, value });
        }
        for e in exemplars {
            if !e.labels_refs.len().is_multiple_of(2) {
                return Err(PushError::Decode(
                    "remote-write 2.0: an exemplar's label references are not name-value pairs"
                        .into(),
                ));
            }
            let mut labels = Vec::with_capacity(e.labels_refs.len() / 2);
            for pair in e.labels_refs.chunks_exact(2) {
                labels.push(v1::Label {
                    name: v2
                        .text(v2.symbol(pair[0], "exemplar label name")?)
                        .to_string(),
                    value: v2
                        .text(v2.symbol(pair[1], "exemplar label value")?)
                        .to_string(),
                });
            }
            self.exemplars.push(v1::Exemplar {
                labels,
                value: e.value,
                timestamp: e.timestamp,
            });
        }
        if let Some(m) = metadata
            && (m.r#type != 0 || m.help_ref != 0 || m.unit_ref != 0)
        {
            let help = v2.symbol(m.help_ref, "help")?;
            let unit = v2.symbol(m.unit_ref, "unit")?;
            // In range: the label references were resolved above.
            let family = family_name(v2.text(v2.symbol(name_ref, "label value")?), m.r#type);
            if v2
                .seen_metadata
                .insert((m.r#type, family, m.help_ref, m.unit_ref))
            {
                self.metadata.push(MetricMetadata {
                    // The enums share their numbers.
                    r#type: m.r#type,
                    metric_family_name: family.to_string(),
                    help: v2.text(help).to_string(),
                    unit: v2.text(unit).to_string(),
                });
            }
        }
        self.finish_series(first_label, first_sample, first_exemplar, histograms);
        Ok(())
    }

    fn build(self, text: String) -> DecodedWrite {
        DecodedWrite {
            strings: text.into(),
            labels: self.labels,
            series: self.series,
            samples: self.samples,
            exemplars: self.exemplars,
            metadata: self.metadata,
        }
    }
}

/// The metric family of a series name as 1.0 senders name it: a classic
/// histogram's or summary's series carry `_bucket`, `_sum`, `_count`
/// (and `_created`) after the family's name.
fn family_name(name: &str, kind: i32) -> &str {
    let has_parts = matches!(
        MetricType::try_from(kind),
        Ok(MetricType::Histogram | MetricType::Gaugehistogram | MetricType::Summary)
    );
    if has_parts {
        for suffix in ["_bucket", "_sum", "_count", "_created"] {
            if let Some(family) = name.strip_suffix(suffix) {
                return family;
            }
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use prost::encoding::{WireType, encode_key, encode_varint};

    use super::*;

    fn field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// Labels, samples (bit for bit), exemplars, histograms and metadata
    /// of both decodings, or both refuse.
    fn same_as_prost(raw: &[u8]) {
        let ours = DecodedWrite::decode_v1(raw);
        let prost = WriteRequest::decode(raw);
        let (ours, prost) = match (ours, prost) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(_), Err(_)) => return,
            (a, b) => panic!(
                "disagree on {raw:?}: ours {:?}, prost {:?}",
                a.err(),
                b.err()
            ),
        };
        assert_eq!(ours.series_count(), prost.timeseries.len());
        for (i, ts) in prost.timeseries.iter().enumerate() {
            let want: Vec<(&str, &str)> = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            assert_eq!(ours.series_labels(i).collect::<Vec<_>>(), want);
            let bits = |s: &[(i64, u64)]| s.to_vec();
            let ours_samples: Vec<(i64, u64)> = ours
                .series_samples(i)
                .iter()
                .map(|s| (s.t, s.v.to_bits()))
                .collect();
            let want_samples: Vec<(i64, u64)> = ts
                .samples
                .iter()
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect();
            assert_eq!(bits(&ours_samples), want_samples);
            assert_eq!(ours.series_exemplars(i), ts.exemplars.as_slice());
            assert_eq!(ours.series_histograms(i), ts.histograms.len());
        }
        assert_eq!(ours.metadata(), prost.metadata.as_slice());
    }

    #[test]
    fn remote_write_1_reads_as_prost_reads_it() {
        let req = WriteRequest {
            timeseries: vec![
                v1::TimeSeries {
                    labels: vec![
                        v1::Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        v1::Label {
                            name: "zone".into(),
                            value: "é".into(),
                        },
                        v1::Label {
                            name: "empty".into(),
                            value: String::new(),
                        },
                    ],
                    samples: [0.0, -0.0, f64::NAN, f64::INFINITY, 1.5]
                        .iter()
                        .enumerate()
                        .map(|(i, v)| v1::Sample {
                            value: *v,
                            timestamp: i as i64 - 2,
                        })
                        .collect(),
                    exemplars: vec![v1::Exemplar {
                        labels: vec![v1::Label {
                            name: "trace_id".into(),
                            value: "ab".into(),
                        }],
                        value: 1.0,
                        timestamp: 5,
                    }],
                    histograms: vec![v1::Histogram::default(); 2],
                },
                v1::TimeSeries::default(),
            ],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        };
        let raw = req.encode_to_vec();
        same_as_prost(&raw);
        // Every prefix: truncations are refused by both.
        for n in 0..raw.len() {
            same_as_prost(&raw[..n]);
        }
        // Every single byte changed to a few values that break framing.
        for i in 0..raw.len() {
            for b in [0x00, 0x02, 0x07, 0x0a, 0x80, 0xff] {
                let mut m = raw.clone();
                m[i] = b;
                same_as_prost(&m);
            }
        }
    }

    #[test]
    fn repeated_unknown_and_mistyped_fields_as_prost() {
        // A label whose name comes twice (the last wins), with an unknown
        // varint field and an unknown group between.
        let mut label = Vec::new();
        field(1, b"first", &mut label);
        encode_key(9, WireType::Varint, &mut label);
        encode_varint(300, &mut label);
        encode_key(10, WireType::StartGroup, &mut label);
        encode_key(10, WireType::EndGroup, &mut label);
        field(1, b"job", &mut label);
        field(2, b"x", &mut label);
        let mut sample = Vec::new();
        // Timestamp first, then the value; negative varint timestamp.
        encode_key(2, WireType::Varint, &mut sample);
        encode_varint(-5i64 as u64, &mut sample);
        encode_key(1, WireType::SixtyFourBit, &mut sample);
        sample.extend_from_slice(&2.5f64.to_le_bytes());
        let mut series = Vec::new();
        field(2, &sample, &mut series);
        field(1, &label, &mut series);
        field(2, &sample, &mut series);
        let mut body = Vec::new();
        encode_key(2, WireType::Varint, &mut body); // reserved field
        encode_varint(1, &mut body);
        field(1, &series, &mut body);
        same_as_prost(&body);
        let got = DecodedWrite::decode_v1(&body).expect("valid");
        assert_eq!(got.series_labels(0).collect::<Vec<_>>(), [("job", "x")]);
        assert_eq!(got.series_samples(0), [Sample { t: -5, v: 2.5 }; 2]);

        // A name sent three times, the first two the halves of one
        // character: each invalid alone, valid together; the last kept.
        let mut split = Vec::new();
        field(1, b"\xc3", &mut split);
        field(1, b"\xa9", &mut split);
        field(1, b"job", &mut split);
        let mut series = Vec::new();
        field(1, &split, &mut series);
        let mut body = Vec::new();
        field(1, &series, &mut body);
        assert!(DecodedWrite::decode_v1(&body).is_err());
        same_as_prost(&body);

        // A name that is not UTF-8; a value sent as a varint; a sample
        // value as a 32-bit field: refused by both.
        let mut bad_utf8 = Vec::new();
        field(1, b"\xff\xfe", &mut bad_utf8);
        let mut as_varint = Vec::new();
        encode_key(2, WireType::Varint, &mut as_varint);
        encode_varint(1, &mut as_varint);
        let mut fixed32 = Vec::new();
        encode_key(1, WireType::ThirtyTwoBit, &mut fixed32);
        fixed32.extend_from_slice(&[0; 4]);
        for (tag, inner) in [(1, bad_utf8), (1, as_varint), (2, fixed32)] {
            let mut series = Vec::new();
            field(tag, &inner, &mut series);
            let mut body = Vec::new();
            field(1, &series, &mut body);
            assert!(DecodedWrite::decode_v1(&body).is_err());
            same_as_prost(&body);
        }
    }

    #[test]
    fn owned_requests_keep_their_series() {
        let req = WriteRequest {
            timeseries: vec![v1::TimeSeries {
                labels: vec![v1::Label {
                    name: "__name__".into(),
                    value: "m".into(),
                }],
                samples: vec![v1::Sample {
                    value: 1.0,
                    timestamp: 2,
                }],
                exemplars: vec![],
                histograms: vec![v1::Histogram::default()],
            }],
            metadata: vec![],
        };
        let w = DecodedWrite::from_request(req.clone()).expect("small");
        assert_eq!(w.series_labels(0).collect::<Vec<_>>(), [("__name__", "m")]);
        assert_eq!(w.series_samples(0), [Sample { t: 2, v: 1.0 }]);
        assert_eq!(w.total_samples(), 2, "a histogram sample counts");
        let raw = DecodedWrite::decode_v1(&req.encode_to_vec()).expect("valid");
        assert_eq!(raw.total_samples(), w.total_samples());
    }
}

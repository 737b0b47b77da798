//! Reading `prometheus.TimeSeries` messages in place, with prost's wire
//! primitives: the pieces the distributor's remote-write decoder and the
//! ingester's push service share. Label text is collected into one buffer
//! and checked as UTF-8 once ([`LabelText`]); a series becomes spans of it.

use prost::encoding::{DecodeContext, WireType, check_wire_type, decode_key, decode_varint};
use strata_model::{LabelSpan, Sample, SeriesBatch, SeriesBatchBuilder, StrSpan};

/// What went wrong reading a message (the caller names the request).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

impl WireError {
    fn new(what: &str) -> Self {
        WireError(format!("failed to decode Protobuf message: {what}"))
    }
}

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> Self {
        WireError(e.to_string())
    }
}

/// The bytes of a length-delimited field, checked to be one.
pub fn length_delimited<'a>(
    wire_type: WireType,
    buf: &mut &'a [u8],
) -> Result<&'a [u8], WireError> {
    check_wire_type(WireType::LengthDelimited, wire_type)?;
    let len = decode_varint(buf)?;
    if len > buf.len() as u64 {
        return Err(WireError::new("buffer underflow"));
    }
    let (field, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(field)
}

/// Skips a field this reader does not keep.
pub fn skip(wire_type: WireType, tag: u32, buf: &mut &[u8]) -> Result<(), WireError> {
    Ok(prost::encoding::skip_field(
        wire_type,
        tag,
        buf,
        DecodeContext::default(),
    )?)
}

/// One `Sample` message (remote-write 1.0 and 2.0 share its fields).
pub fn sample(mut buf: &[u8]) -> Result<Sample, WireError> {
    let mut s = Sample { t: 0, v: 0.0 };
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let ctx = DecodeContext::default();
        match tag {
            1 => prost::encoding::double::merge(wire_type, &mut s.v, &mut buf, ctx)?,
            2 => prost::encoding::int64::merge(wire_type, &mut s.t, &mut buf, ctx)?,
            _ => skip(wire_type, tag, &mut buf)?,
        }
    }
    Ok(s)
}

/// Label text of one request: strings appended as read, checked as UTF-8
/// once over all of them.
#[derive(Default)]
pub struct LabelText {
    bytes: Vec<u8>,
    /// Every string read (kept or replaced by a later occurrence of its
    /// field): each must start and end on a character boundary.
    read: Vec<StrSpan>,
}

impl LabelText {
    /// Room for `n` bytes of text.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(n),
            read: Vec::new(),
        }
    }

    /// Appends a string as read from the wire.
    pub fn push(&mut self, s: &[u8]) -> StrSpan {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(s);
        // Bodies are bounded far below 4 GiB (the servers' size limits).
        let span = StrSpan::new(start..self.bytes.len()).unwrap_or_default();
        self.read.push(span);
        span
    }

    /// The text, checked as prost checks each string: all of it is UTF-8
    /// and every string read starts and ends on a character boundary (two
    /// invalid halves could make a valid whole). One pass, not one call
    /// per string.
    pub fn finish(self) -> Result<String, WireError> {
        let invalid = || WireError::new("invalid string value: data is not UTF-8 encoded");
        let text = String::from_utf8(self.bytes).map_err(|_| invalid())?;
        let on_boundaries = self.read.iter().all(|s| {
            let r = s.range();
            text.is_char_boundary(r.start) && text.is_char_boundary(r.end)
        });
        if on_boundaries {
            Ok(text)
        } else {
            Err(invalid())
        }
    }
}

/// One `Label` message: a later occurrence of a field replaces an earlier
/// one, as prost decodes it.
pub fn label(mut buf: &[u8], text: &mut LabelText) -> Result<LabelSpan, WireError> {
    let (mut name, mut value) = (StrSpan::default(), StrSpan::default());
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match tag {
            1 => name = text.push(length_delimited(wire_type, &mut buf)?),
            2 => value = text.push(length_delimited(wire_type, &mut buf)?),
            _ => skip(wire_type, tag, &mut buf)?,
        }
    }
    Ok(LabelSpan { name, value })
}

/// Pushed `TimeSeries` messages (labels and samples; other fields are not
/// sent on pushes) as a batch. Labels are made a label set as
/// [`strata_model::Labels::new`] makes one: empty values dropped, sorted by
/// name when they are not.
pub fn series_batch<'a>(
    messages: impl Iterator<Item = &'a [u8]> + Clone,
) -> Result<SeriesBatch, WireError> {
    let size: usize = messages.clone().map(<[u8]>::len).sum();
    if size > u32::MAX as usize {
        // Spans are 32-bit (pushes are bounded far below by the gRPC limit).
        return Err(WireError::new("a push's series exceed 4 GiB"));
    }
    let mut text = LabelText::with_capacity(size);
    let mut labels: Vec<LabelSpan> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut series: Vec<(usize, usize, usize, usize)> = Vec::new();
    for mut buf in messages {
        let (first_label, first_sample) = (labels.len(), samples.len());
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf)?;
            match tag {
                1 => labels.push(label(length_delimited(wire_type, &mut buf)?, &mut text)?),
                2 => samples.push(sample(length_delimited(wire_type, &mut buf)?)?),
                _ => skip(wire_type, tag, &mut buf)?,
            }
        }
        series.push((first_label, labels.len(), first_sample, samples.len()));
    }
    let text: std::sync::Arc<str> = text.finish()?.into();
    let mut batch = SeriesBatchBuilder::new(text.clone());
    batch.reserve(series.len(), labels.len(), samples.len());
    let name = |l: &LabelSpan| text.get(l.name.range()).unwrap_or("");
    for (l0, l1, s0, s1) in series {
        let set = &mut labels[l0..l1];
        if !set.is_sorted_by(|a, b| name(a) <= name(b)) {
            set.sort_by(|a, b| name(a).cmp(name(b)));
        }
        let kept = set.iter().copied().filter(|l| !l.value.is_empty());
        batch.push(kept, samples[s0..s1].iter().copied());
    }
    Ok(batch.build())
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use strata_model::Labels;
    use strata_proto::prometheus::{Label, Sample as PSample, TimeSeries};

    use super::*;

    #[test]
    fn pushed_series_read_as_label_sets() {
        let ts = |pairs: &[(&str, &str)], t: i64| TimeSeries {
            labels: pairs
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![PSample {
                value: t as f64,
                timestamp: t,
            }],
            ..Default::default()
        };
        let sent = [
            ts(&[("__name__", "up"), ("job", "é")], 1),
            // Unsorted, with an empty value: made a label set.
            ts(&[("zone", "a"), ("__name__", "up"), ("empty", "")], 2),
        ];
        let bytes: Vec<Vec<u8>> = sent.iter().map(|t| t.encode_to_vec()).collect();
        let batch = series_batch(bytes.iter().map(Vec::as_slice)).expect("valid");
        assert_eq!(batch.len(), 2);
        let want = [
            Labels::from_pairs([("__name__", "up"), ("job", "é")]),
            Labels::from_pairs([("__name__", "up"), ("zone", "a")]),
        ];
        for (i, want) in want.iter().enumerate() {
            assert_eq!(batch.get(i).to_labels(), *want);
            assert_eq!(batch.get(i).hash64(), want.hash64());
            assert_eq!(batch.get(i).samples()[0].t, i as i64 + 1);
        }
        // Not UTF-8, or cut short: refused.
        let mut bad = sent[0].clone();
        bad.labels[1].value = "x".into();
        let mut raw = bad.encode_to_vec();
        let at = raw.iter().rposition(|b| *b == b'x').expect("the value");
        raw[at] = 0xff;
        assert!(series_batch([raw.as_slice()].into_iter()).is_err());
        assert!(series_batch([&bytes[0][..bytes[0].len() - 1]].into_iter()).is_err());
    }
}

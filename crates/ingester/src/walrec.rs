//! Encoding of the ingester's WAL records.
//!
//! Two record kinds, as in Prometheus TSDB: a *series* record introduces
//! series references (`ref -> tenant, labels`) the first time a series is
//! written after a WAL segment rotation; a *samples* record carries
//! `(ref, timestamp, value)` triples grouped by ref. Refs are unique per
//! ingester across tenants, so sample records need no tenant.
//!
//! An *exemplars* record carries a tenant's exemplars, each with its
//! series' labels (exemplars are few; refs would save little).
//! A *metadata* record carries a tenant's metric metadata (type, help,
//! unit per metric family) with the time each entry was last received.
//!
//! The log WAL has one self-contained record kind: a tenant's pushed streams
//! with their labels and entries (log lines dwarf their labels, so refs
//! would save little).

use strata_model::logs::LogEntry;
use strata_model::metadata::{MetricMetadata, MetricType};
use strata_model::{Exemplar, Label, LabelSet, Labels, Sample};

const KIND_SERIES: u8 = 1;
const KIND_SAMPLES: u8 = 2;
const KIND_LOG_ENTRIES: u8 = 3;
const KIND_METADATA: u8 = 4;
const KIND_EXEMPLARS: u8 = 5;

/// A decoded WAL record.
#[derive(Debug, PartialEq)]
pub enum Record {
    Series {
        tenant: String,
        series: Vec<(u64, Labels)>,
    },
    Samples(Vec<(u64, Vec<Sample>)>),
    LogEntries {
        tenant: String,
        streams: Vec<(Labels, Vec<LogEntry>)>,
    },
    /// Exemplars with their series' labels.
    Exemplars {
        tenant: String,
        exemplars: Vec<(Labels, Exemplar)>,
    },
    /// Metric metadata and when each entry was last received (ms).
    Metadata {
        tenant: String,
        entries: Vec<(MetricMetadata, i64)>,
    },
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Encodes a series record.
pub fn encode_series<'a, L: LabelSet + 'a>(
    buf: &mut Vec<u8>,
    tenant: &str,
    series: impl ExactSizeIterator<Item = (u64, &'a L)>,
) {
    buf.push(KIND_SERIES);
    put_str(buf, tenant);
    put_uvarint(buf, series.len() as u64);
    for (r, labels) in series {
        put_uvarint(buf, r);
        put_labels(buf, labels);
    }
}

/// Encodes a samples record; each entry's samples are time-ordered.
pub fn encode_samples<'a>(
    buf: &mut Vec<u8>,
    entries: impl ExactSizeIterator<Item = (u64, &'a [Sample])>,
) {
    buf.push(KIND_SAMPLES);
    put_uvarint(buf, entries.len() as u64);
    for (r, samples) in entries {
        put_uvarint(buf, r);
        put_uvarint(buf, samples.len() as u64);
        let mut prev = 0i64;
        for s in samples {
            put_varint(buf, s.t.wrapping_sub(prev));
            prev = s.t;
            buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
        }
    }
}

fn put_labels(buf: &mut Vec<u8>, labels: &(impl LabelSet + ?Sized)) {
    put_uvarint(buf, labels.label_count() as u64);
    for (name, value) in labels.label_pairs() {
        put_str(buf, name);
        put_str(buf, value);
    }
}

/// Encodes a log-entries record; entries are time-ordered per stream.
pub fn encode_log_entries<'a>(
    buf: &mut Vec<u8>,
    tenant: &str,
    streams: impl ExactSizeIterator<Item = (&'a Labels, &'a [LogEntry])>,
) {
    buf.push(KIND_LOG_ENTRIES);
    put_str(buf, tenant);
    put_uvarint(buf, streams.len() as u64);
    for (labels, entries) in streams {
        put_labels(buf, labels);
        put_uvarint(buf, entries.len() as u64);
        let mut prev = 0i64;
        for e in entries {
            put_varint(buf, e.ts.wrapping_sub(prev));
            prev = e.ts;
            put_str(buf, &e.line);
            put_labels(buf, &e.metadata);
        }
    }
}

/// Encodes an exemplars record.
pub fn encode_exemplars<'a>(
    buf: &mut Vec<u8>,
    tenant: &str,
    exemplars: impl ExactSizeIterator<Item = (&'a Labels, &'a Exemplar)>,
) {
    buf.push(KIND_EXEMPLARS);
    put_str(buf, tenant);
    put_uvarint(buf, exemplars.len() as u64);
    for (series, e) in exemplars {
        put_labels(buf, series);
        put_labels(buf, &e.labels);
        buf.extend_from_slice(&e.value.to_bits().to_le_bytes());
        put_varint(buf, e.t);
    }
}

/// Encodes a metadata record: entries and when each was last received (ms).
pub fn encode_metadata<'a>(
    buf: &mut Vec<u8>,
    tenant: &str,
    entries: impl ExactSizeIterator<Item = (&'a MetricMetadata, i64)>,
) {
    buf.push(KIND_METADATA);
    put_str(buf, tenant);
    put_uvarint(buf, entries.len() as u64);
    for (m, seen) in entries {
        put_str(buf, &m.metric_family);
        put_uvarint(buf, m.kind.to_proto() as u64);
        put_str(buf, &m.help);
        put_str(buf, &m.unit);
        put_varint(buf, seen);
    }
}

/// A record that does not decode: the WAL checksum passed, so this means a
/// bug or a foreign file, and replay reports it.
#[derive(Debug, thiserror::Error)]
#[error("malformed WAL record: {0}")]
pub struct RecordError(&'static str);

struct Cursor<'a> {
    b: &'a [u8],
}

impl Cursor<'_> {
    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .b
                .split_first()
                .ok_or(RecordError("truncated varint"))?;
            self.b = rest;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError("varint too long"))
    }

    fn varint(&mut self) -> Result<i64, RecordError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], RecordError> {
        if self.b.len() < n {
            return Err(RecordError("truncated field"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let n = self.uvarint()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| RecordError("string is not UTF-8"))
    }

    fn labels(&mut self) -> Result<Labels, RecordError> {
        let nl = self.count()?;
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            let name = self.string()?;
            let value = self.string()?;
            labels.push(Label { name, value });
        }
        Ok(Labels::from_sorted(labels))
    }

    fn count(&mut self) -> Result<usize, RecordError> {
        let n = self.uvarint()? as usize;
        // Every element takes at least one byte: bound allocations by input size.
        if n > self.b.len() {
            return Err(RecordError("count exceeds record size"));
        }
        Ok(n)
    }
}

/// Decodes one record.
pub fn decode(payload: &[u8]) -> Result<Record, RecordError> {
    let (&kind, rest) = payload.split_first().ok_or(RecordError("empty"))?;
    let mut c = Cursor { b: rest };
    match kind {
        KIND_SERIES => {
            let tenant = c.string()?;
            let n = c.count()?;
            let mut series = Vec::with_capacity(n);
            for _ in 0..n {
                let r = c.uvarint()?;
                series.push((r, c.labels()?));
            }
            Ok(Record::Series { tenant, series })
        }
        KIND_SAMPLES => {
            let n = c.count()?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let r = c.uvarint()?;
                let ns = c.count()?;
                let mut samples = Vec::with_capacity(ns);
                let mut t = 0i64;
                for _ in 0..ns {
                    t = t.wrapping_add(c.varint()?);
                    let b = c.bytes(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    samples.push(Sample {
                        t,
                        v: f64::from_bits(u64::from_le_bytes(a)),
                    });
                }
                out.push((r, samples));
            }
            Ok(Record::Samples(out))
        }
        KIND_LOG_ENTRIES => {
            let tenant = c.string()?;
            let n = c.count()?;
            let mut streams = Vec::with_capacity(n);
            for _ in 0..n {
                let labels = c.labels()?;
                let ne = c.count()?;
                let mut entries = Vec::with_capacity(ne);
                let mut ts = 0i64;
                for _ in 0..ne {
                    ts = ts.wrapping_add(c.varint()?);
                    let line = c.string()?;
                    let metadata = c.labels()?;
                    entries.push(LogEntry { ts, line, metadata });
                }
                streams.push((labels, entries));
            }
            Ok(Record::LogEntries { tenant, streams })
        }
        KIND_EXEMPLARS => {
            let tenant = c.string()?;
            let n = c.count()?;
            let mut exemplars = Vec::with_capacity(n);
            for _ in 0..n {
                let series = c.labels()?;
                let labels = c.labels()?;
                let b = c.bytes(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let value = f64::from_bits(u64::from_le_bytes(a));
                let t = c.varint()?;
                exemplars.push((series, Exemplar { labels, value, t }));
            }
            Ok(Record::Exemplars { tenant, exemplars })
        }
        KIND_METADATA => {
            let tenant = c.string()?;
            let n = c.count()?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let metric_family = c.string()?;
                let kind = MetricType::from_proto(c.uvarint()?.min(i32::MAX as u64) as i32);
                let help = c.string()?;
                let unit = c.string()?;
                let seen = c.varint()?;
                let m = MetricMetadata {
                    metric_family,
                    kind,
                    help,
                    unit,
                };
                entries.push((m, seen));
            }
            Ok(Record::Metadata { tenant, entries })
        }
        _ => Err(RecordError("unknown record kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemplars_roundtrip() {
        let series = Labels::from_pairs([("__name__", "req_total"), ("job", "api")]);
        let e = Exemplar {
            labels: Labels::from_pairs([("trace_id", "4bf92f3577b34da6")]),
            value: 0.25,
            t: 1_700_000_000_123,
        };
        let mut buf = Vec::new();
        encode_exemplars(&mut buf, "t1", [(&series, &e)].into_iter());
        assert_eq!(
            decode(&buf).unwrap(),
            Record::Exemplars {
                tenant: "t1".into(),
                exemplars: vec![(series, e)]
            }
        );
        assert!(decode(&buf[..buf.len() - 3]).is_err(), "truncated");
    }

    #[test]
    fn metadata_roundtrips() {
        let m = MetricMetadata {
            metric_family: "http_requests_total".into(),
            kind: MetricType::Counter,
            help: "Requests, by code. \u{2713}".into(),
            unit: "requests".into(),
        };
        let gauge = MetricMetadata {
            kind: MetricType::Gauge,
            ..Default::default()
        };
        let mut buf = Vec::new();
        encode_metadata(
            &mut buf,
            "t1",
            [(&m, 1_700_000_000_000), (&gauge, -3)].into_iter(),
        );
        assert_eq!(
            decode(&buf).unwrap(),
            Record::Metadata {
                tenant: "t1".into(),
                entries: vec![(m, 1_700_000_000_000), (gauge, -3)]
            }
        );
        assert!(decode(&buf[..buf.len() - 1]).is_err(), "truncated");
    }

    #[test]
    fn series_and_samples_roundtrip() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let mut buf = Vec::new();
        encode_series(&mut buf, "t1", [(7u64, &l)].into_iter());
        assert_eq!(
            decode(&buf).unwrap(),
            Record::Series {
                tenant: "t1".into(),
                series: vec![(7, l)]
            }
        );
        let s = vec![
            Sample { t: -5, v: 1.5 },
            Sample {
                t: 1_700_000_000_000,
                v: f64::INFINITY,
            },
        ];
        buf.clear();
        encode_samples(&mut buf, [(7u64, s.as_slice())].into_iter());
        assert_eq!(decode(&buf).unwrap(), Record::Samples(vec![(7, s)]));
    }

    #[test]
    fn log_entries_roundtrip() {
        let l = Labels::from_pairs([("app", "api")]);
        let entries = vec![
            LogEntry {
                ts: 1_700_000_000_000_000_001,
                line: "GET /x took 12ms".into(),
                metadata: Labels::from_pairs([("trace_id", "abc")]),
            },
            LogEntry {
                ts: 1_700_000_000_000_000_001,
                line: String::new(),
                metadata: Labels::default(),
            },
        ];
        let mut buf = Vec::new();
        encode_log_entries(&mut buf, "t", [(&l, entries.as_slice())].into_iter());
        assert_eq!(
            decode(&buf).unwrap(),
            Record::LogEntries {
                tenant: "t".into(),
                streams: vec![(l, entries)]
            }
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9]).is_err());
        assert!(decode(&[KIND_SAMPLES, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[KIND_SERIES, 3, b'a']).is_err());
    }
}

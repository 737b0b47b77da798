//! Remote-write 2.0 (`io.prometheus.write.v2.Request`): the symbol table
//! resolved into the form the write path takes ([`DecodedWrite`]), so both
//! versions are validated, limited and replicated by one path. Per-series
//! metadata becomes the request's metric metadata (family names as 1.0
//! senders give them); native histograms stay attached to their series,
//! which the write path refuses with a 400 naming them while the rest is
//! stored.

use crate::decoded::DecodedWrite;
use crate::{PushError, decompress_snappy};

/// Decompresses and decodes a 2.0 body.
pub fn decode_remote_write_v2(body: &[u8], max_size: usize) -> Result<DecodedWrite, PushError> {
    if body.len() > max_size {
        return Err(PushError::TooLarge {
            size: body.len(),
            limit: max_size,
        });
    }
    let raw = decompress_snappy(body, max_size)?;
    DecodedWrite::decode_v2(&raw)
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    use strata_proto::prometheus_v2::metadata::MetricType;
    use strata_proto::prometheus_v2::{
        self as v2, Exemplar, Histogram as V2Histogram, Metadata, Request, Sample as V2Sample,
    };

    use super::*;

    fn to_v1(req: Request) -> Result<DecodedWrite, PushError> {
        DecodedWrite::decode_v2(&req.encode_to_vec())
    }

    /// Each series' labels as (name, value) pairs.
    fn names(w: &DecodedWrite) -> Vec<Vec<(&str, &str)>> {
        w.series
            .iter()
            .map(|s| {
                w.label_spans(s)
                    .iter()
                    .map(|l| (w.str(l.name), w.str(l.value)))
                    .collect()
            })
            .collect()
    }

    fn series(refs: &[u32], samples: &[(i64, f64)], metadata: Option<Metadata>) -> v2::TimeSeries {
        v2::TimeSeries {
            labels_refs: refs.to_vec(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| V2Sample { value, timestamp })
                .collect(),
            metadata,
            ..Default::default()
        }
    }

    fn symbols() -> Vec<String> {
        [
            "",
            "__name__",
            "req_total",
            "job",
            "api",
            "Requests.",
            "lat_seconds_bucket",
            "le",
            "0.5",
            "seconds",
            "lat_seconds_count",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn symbols_resolve_to_labels_and_metadata_to_families() {
        let counter = Metadata {
            r#type: MetricType::Counter as i32,
            help_ref: 5,
            unit_ref: 0,
        };
        let histogram = Metadata {
            r#type: MetricType::Histogram as i32,
            help_ref: 0,
            unit_ref: 9,
        };
        let mut hist_count = series(&[1, 10, 3, 4], &[(1, 7.0)], Some(histogram));
        hist_count.histograms = vec![V2Histogram::default()];
        hist_count.exemplars = vec![Exemplar::default(); 2];
        let req = Request {
            symbols: symbols(),
            timeseries: vec![
                series(&[1, 2, 3, 4], &[(1, 1.0), (2, 2.0)], Some(counter)),
                // Symbols reused by a second series of the same family.
                series(&[1, 2, 3, 2], &[(1, 3.0)], Some(counter)),
                series(&[1, 6, 3, 4, 7, 8], &[(1, 5.0)], Some(histogram)),
                hist_count,
            ],
        };
        let v1 = to_v1(req).expect("valid");
        assert_eq!(v1.exemplars_of(&v1.series[3]).len(), 2);
        let names = names(&v1);
        assert_eq!(names[0], vec![("__name__", "req_total"), ("job", "api")]);
        assert_eq!(
            names[1],
            vec![("__name__", "req_total"), ("job", "req_total")]
        );
        assert_eq!(
            names[2],
            vec![
                ("__name__", "lat_seconds_bucket"),
                ("job", "api"),
                ("le", "0.5")
            ]
        );
        assert_eq!(v1.samples_of(&v1.series[0]).len(), 2);
        assert_eq!(v1.series[3].histograms, 1, "kept for the 400");
        let meta: Vec<(&str, i32, &str, &str)> = v1
            .metadata
            .iter()
            .map(|m| {
                (
                    m.metric_family_name.as_str(),
                    m.r#type,
                    m.help.as_str(),
                    m.unit.as_str(),
                )
            })
            .collect();
        assert_eq!(
            meta,
            vec![
                ("req_total", 1, "Requests.", ""),
                ("lat_seconds", 3, "", "seconds")
            ],
            "one entry per family; histogram parts under the family name"
        );
    }

    #[test]
    fn malformed_references_are_refused() {
        let bad = |ts: v2::TimeSeries, symbols: Vec<String>| {
            to_v1(Request {
                symbols,
                timeseries: vec![ts],
            })
            .expect_err("malformed")
            .to_string()
        };
        assert!(bad(series(&[1, 99], &[], None), symbols()).contains("outside the symbol table"));
        assert!(bad(series(&[1, 2, 3], &[], None), symbols()).contains("not name-value pairs"));
        let help = Metadata {
            r#type: 1,
            help_ref: 1000,
            unit_ref: 0,
        };
        assert!(bad(series(&[1, 2], &[], Some(help)), symbols()).contains("help reference"));
        let mut first = symbols();
        first[0] = "x".into();
        assert!(bad(series(&[1, 2], &[], None), first).contains("symbols[0]"));
        // A 1.0 body read as 2.0: the reserved fields are skipped, nothing is left.
        let v1 = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "x".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![],
        };
        let as_v2 = DecodedWrite::decode_v2(&v1.encode_to_vec()).expect("decodes");
        assert!(as_v2.series.is_empty() && as_v2.labels.is_empty());
    }

    /// A series' created_timestamp (field 6, int64) is read as prost reads
    /// it: as a varint it is accepted, with another wire type refused.
    #[test]
    fn created_timestamps_must_be_varints() {
        let with_field_6 = |field: &[u8]| {
            let mut ts = series(&[1, 2], &[(1, 1.0)], None).encode_to_vec();
            ts.extend_from_slice(field);
            let mut body = Vec::new();
            for s in symbols() {
                prost::encoding::string::encode(4, &s, &mut body);
            }
            prost::encoding::bytes::encode(5, &ts, &mut body);
            body
        };
        let ok = with_field_6(&[0x30, 0x05]);
        assert!(Request::decode(ok.as_slice()).is_ok());
        assert_eq!(
            DecodedWrite::decode_v2(&ok).expect("varint").series.len(),
            1
        );
        let bad = with_field_6(&[0x32, 0x02, 0x01, 0x02]);
        assert!(Request::decode(bad.as_slice()).is_err());
        assert!(DecodedWrite::decode_v2(&bad).is_err());
    }
}

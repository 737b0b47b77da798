//! Remote-write 2.0 (`io.prometheus.write.v2.Request`): the symbol table
//! resolved into the 1.0 request the write path takes, so both versions are
//! validated, limited and replicated by one path. Per-series metadata
//! becomes the request's metric metadata (family names as 1.0 senders give
//! them); native histograms stay attached to their series, which the write
//! path refuses with a 400 naming them while the rest is stored.

use std::collections::HashSet;

use prost::Message;
use strata_model::METRIC_NAME;
use strata_proto::prometheus::{
    Exemplar, Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
};
use strata_proto::prometheus_v2::{Request, metadata::MetricType};

use crate::{PushError, decompress_snappy};

/// Decompresses and decodes a 2.0 body into the equivalent 1.0 request.
pub fn decode_remote_write_v2(body: &[u8], max_size: usize) -> Result<WriteRequest, PushError> {
    if body.len() > max_size {
        return Err(PushError::TooLarge {
            size: body.len(),
            limit: max_size,
        });
    }
    let raw = decompress_snappy(body, max_size)?;
    let req = Request::decode(raw.as_slice()).map_err(|e| PushError::Protobuf(e.to_string()))?;
    to_v1(req)
}

/// The 1.0 form of a 2.0 request; a reference outside the symbol table or
/// an odd number of label references makes the whole body malformed (400).
pub(crate) fn to_v1(req: Request) -> Result<WriteRequest, PushError> {
    let symbols = req.symbols;
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(PushError::Decode(
            "remote-write 2.0: symbols[0] must be the empty string".into(),
        ));
    }
    let symbol = |r: u32, what: &str| -> Result<&String, PushError> {
        symbols.get(r as usize).ok_or_else(|| {
            PushError::Decode(format!(
                "remote-write 2.0: {what} reference {r} is outside the symbol table of {} entries",
                symbols.len()
            ))
        })
    };
    let mut timeseries = Vec::with_capacity(req.timeseries.len());
    let mut metadata: Vec<MetricMetadata> = Vec::new();
    // Every series of a family carries the same metadata: keep it once,
    // keyed by text borrowed from the symbol table (no allocation).
    let mut seen_metadata: HashSet<(i32, &str, u32, u32)> = HashSet::new();
    for ts in req.timeseries {
        if ts.labels_refs.len() % 2 != 0 {
            return Err(PushError::Decode(format!(
                "remote-write 2.0: a series has {} label references, not name-value pairs",
                ts.labels_refs.len()
            )));
        }
        let mut labels = Vec::with_capacity(ts.labels_refs.len() / 2);
        for pair in ts.labels_refs.chunks_exact(2) {
            labels.push(Label {
                name: symbol(pair[0], "label name")?.clone(),
                value: symbol(pair[1], "label value")?.clone(),
            });
        }
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in &ts.exemplars {
            if e.labels_refs.len() % 2 != 0 {
                return Err(PushError::Decode(
                    "remote-write 2.0: an exemplar's label references are not name-value pairs"
                        .into(),
                ));
            }
            let mut labels = Vec::with_capacity(e.labels_refs.len() / 2);
            for pair in e.labels_refs.chunks_exact(2) {
                labels.push(Label {
                    name: symbol(pair[0], "exemplar label name")?.clone(),
                    value: symbol(pair[1], "exemplar label value")?.clone(),
                });
            }
            exemplars.push(Exemplar {
                labels,
                value: e.value,
                timestamp: e.timestamp,
            });
        }
        if let Some(m) = ts.metadata
            && (m.r#type != 0 || m.help_ref != 0 || m.unit_ref != 0)
        {
            let help = symbol(m.help_ref, "help")?;
            let unit = symbol(m.unit_ref, "unit")?;
            let name_ref = ts
                .labels_refs
                .chunks_exact(2)
                .find(|pair| symbols[pair[0] as usize] == METRIC_NAME)
                .map_or(0, |pair| pair[1]);
            // In range: the label references were resolved above.
            let family = family_name(&symbols[name_ref as usize], m.r#type);
            if seen_metadata.insert((m.r#type, family, m.help_ref, m.unit_ref)) {
                metadata.push(MetricMetadata {
                    // The enums share their numbers.
                    r#type: m.r#type,
                    metric_family_name: family.to_string(),
                    help: help.clone(),
                    unit: unit.clone(),
                });
            }
        }
        timeseries.push(TimeSeries {
            labels,
            samples: ts
                .samples
                .iter()
                .map(|s| Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            exemplars,
            histograms: vec![Histogram::default(); ts.histograms.len()],
        });
    }
    Ok(WriteRequest {
        timeseries,
        metadata,
    })
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
    use strata_proto::prometheus_v2::{
        self as v2, Exemplar, Histogram as V2Histogram, Metadata, Sample as V2Sample,
    };

    use super::*;

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
        assert_eq!(v1.timeseries[3].exemplars.len(), 2);
        let names: Vec<Vec<(&str, &str)>> = v1
            .timeseries
            .iter()
            .map(|ts| {
                ts.labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str()))
                    .collect()
            })
            .collect();
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
        assert_eq!(v1.timeseries[0].samples.len(), 2);
        assert_eq!(v1.timeseries[3].histograms.len(), 1, "kept for the 400");
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
        let as_v2 = Request::decode(v1.encode_to_vec().as_slice()).expect("decodes");
        assert!(as_v2.timeseries.is_empty() && as_v2.symbols.is_empty());
    }
}

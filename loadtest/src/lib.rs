//! What the load generators share: command-line helpers and the request
//! builders (remote-write 1.0 and 2.0, OTLP metrics).

use std::collections::HashMap;

use clap::{Arg, ArgMatches};
use prost::Message;
use strata_proto::prometheus::{TimeSeries, WriteRequest};
use strata_proto::prometheus_v2 as v2;

/// A `--name` option with a default and help text.
pub fn arg(name: &'static str, default: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).default_value(default).help(help)
}

/// Parses option `name`, naming it in the error.
pub fn parse<T: std::str::FromStr>(m: &ArgMatches, name: &str) -> Result<T, String> {
    let raw = m.get_one::<String>(name).map(String::as_str).unwrap_or("");
    raw.parse()
        .map_err(|_| format!("invalid value {raw:?} for --{name}"))
}

/// A remote-write 1.0 POST of `series` to `url` (snappy protobuf, the
/// headers Prometheus sends), ready to send.
pub fn remote_write(
    client: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    series: Vec<TimeSeries>,
) -> Result<reqwest::RequestBuilder, snap::Error> {
    let req = WriteRequest {
        timeseries: series,
        metadata: vec![],
    };
    post(client, url, tenant, &req.encode_to_vec(), "1.0")
}

/// One sample (`t`, `value`) for each label set: the series of one request.
pub fn one_sample_series(
    labels: &[Vec<strata_proto::prometheus::Label>],
    t: i64,
    value: f64,
) -> Vec<TimeSeries> {
    labels
        .iter()
        .map(|l| TimeSeries {
            labels: l.clone(),
            samples: vec![strata_proto::prometheus::Sample {
                value,
                timestamp: t,
            }],
            ..Default::default()
        })
        .collect()
}

/// A series' labels as the bytes of its `TimeSeries` label fields: what
/// a sender keeps per series, so [`remote_write_encoded`] writes only the
/// samples of each request (as Prometheus's sender reuses its buffers).
pub fn encoded_labels(labels: &[strata_proto::prometheus::Label]) -> Vec<u8> {
    let ts = TimeSeries {
        labels: labels.to_vec(),
        ..Default::default()
    };
    ts.encode_to_vec()
}

/// A remote-write 1.0 POST of one sample (`t`, `value`) for each series of
/// `series` (their [`encoded_labels`]), the same bytes [`remote_write`]
/// sends for those series, built without an allocation per series.
pub fn remote_write_encoded(
    client: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    series: &[Vec<u8>],
    t: i64,
    value: f64,
) -> Result<reqwest::RequestBuilder, snap::Error> {
    post(
        client,
        url,
        tenant,
        &one_sample_each(series, t, value),
        "1.0",
    )
}

/// The uncompressed `WriteRequest` of [`remote_write_encoded`].
fn one_sample_each(series: &[Vec<u8>], t: i64, value: f64) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
    let sample = strata_proto::prometheus::Sample {
        value,
        timestamp: t,
    };
    let sample_len = sample.encoded_len();
    let sample_field = 1 + encoded_len_varint(sample_len as u64) + sample_len;
    let mut raw = Vec::with_capacity(series.iter().map(|l| l.len() + sample_field + 6).sum());
    for labels in series {
        let len = labels.len() + sample_field;
        encode_key(1, WireType::LengthDelimited, &mut raw);
        encode_varint(len as u64, &mut raw);
        raw.extend_from_slice(labels);
        encode_key(2, WireType::LengthDelimited, &mut raw);
        encode_varint(sample_len as u64, &mut raw);
        sample.encode_raw(&mut raw);
    }
    raw
}

/// The same series as a remote-write 2.0 POST: every string once in the
/// symbol table, series as references into it (as Prometheus 3 sends).
pub fn remote_write_v2(
    client: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    series: &[TimeSeries],
) -> Result<reqwest::RequestBuilder, snap::Error> {
    let mut symbols: Vec<&str> = vec![""];
    let mut index: HashMap<&str, u32> = HashMap::from([("", 0)]);
    let mut timeseries: Vec<v2::TimeSeries> = Vec::with_capacity(series.len());
    for ts in series {
        let mut labels_refs = Vec::with_capacity(ts.labels.len() * 2);
        for l in &ts.labels {
            for s in [l.name.as_str(), l.value.as_str()] {
                let r = *index.entry(s).or_insert_with(|| {
                    symbols.push(s);
                    (symbols.len() - 1) as u32
                });
                labels_refs.push(r);
            }
        }
        timeseries.push(v2::TimeSeries {
            labels_refs,
            samples: ts
                .samples
                .iter()
                .map(|s| v2::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            ..Default::default()
        });
    }
    let req = v2::Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries,
    };
    post(client, url, tenant, &req.encode_to_vec(), "2.0")
}

/// The same series as an OTLP/HTTP metrics POST (protobuf, gzip at its
/// fastest level, as the OpenTelemetry Collector's `otlphttp` exporter
/// sends): one gauge per metric name, one data point per series, the other
/// labels as attributes. The resource has no `service.*` attributes, so
/// the series and their labels stay exactly those of the 1.0 run.
pub fn otlp_metrics(
    client: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    series: &[TimeSeries],
) -> Result<reqwest::RequestBuilder, std::io::Error> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    let mut metrics: Vec<Metric> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for ts in series {
        let name = ts
            .labels
            .iter()
            .find(|l| l.name == "__name__")
            .map_or("", |l| l.value.as_str());
        let i = *by_name.entry(name).or_insert_with(|| {
            metrics.push(Metric {
                name: name.to_string(),
                data: Some(metric::Data::Gauge(Gauge::default())),
                ..Default::default()
            });
            metrics.len() - 1
        });
        let attributes = ts
            .labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| KeyValue {
                key: l.name.clone(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(l.value.clone())),
                }),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        if let Some(metric::Data::Gauge(g)) = &mut metrics[i].data {
            for s in &ts.samples {
                g.data_points.push(NumberDataPoint {
                    attributes: attributes.clone(),
                    time_unix_nano: (s.timestamp as u64).saturating_mul(1_000_000),
                    value: Some(number_data_point::Value::AsDouble(s.value)),
                    ..Default::default()
                });
            }
        }
    }
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &req.encode_to_vec())?;
    let mut rb = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "gzip")
        .body(gz.finish()?);
    if let Some(t) = tenant {
        rb = rb.header("X-Scope-OrgID", t);
    }
    Ok(rb)
}

fn post(
    client: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    raw: &[u8],
    version: &str,
) -> Result<reqwest::RequestBuilder, snap::Error> {
    let body = snap::raw::Encoder::new().compress_vec(raw)?;
    let (content_type, version_header) = match version {
        "2.0" => (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "2.0.0",
        ),
        _ => ("application/x-protobuf", "0.1.0"),
    };
    let mut rb = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", content_type)
        .header("X-Prometheus-Remote-Write-Version", version_header)
        .body(body);
    if let Some(t) = tenant {
        rb = rb.header("X-Scope-OrgID", t);
    }
    Ok(rb)
}

#[cfg(test)]
mod tests {
    use strata_proto::prometheus::Label;

    use super::*;

    #[test]
    fn encoded_requests_are_prosts_bytes() {
        let labels: Vec<Vec<Label>> = (0..3)
            .map(|i| {
                vec![
                    Label {
                        name: "__name__".into(),
                        value: format!("m{i}"),
                    },
                    Label {
                        name: "job".into(),
                        value: "x".repeat(i * 100),
                    },
                ]
            })
            .collect();
        let encoded: Vec<Vec<u8>> = labels.iter().map(|l| encoded_labels(l)).collect();
        for (t, value) in [(1_700_000_000_000, 1.5), (0, 0.0), (-1, f64::MAX)] {
            let want = WriteRequest {
                timeseries: one_sample_series(&labels, t, value),
                metadata: vec![],
            };
            assert_eq!(one_sample_each(&encoded, t, value), want.encode_to_vec());
        }
    }
}

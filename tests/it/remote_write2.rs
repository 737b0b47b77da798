//! Remote-write 2.0 (`io.prometheus.write.v2.Request`) over real HTTP: the
//! requests are built with prost from `proto/io/prometheus/write/v2`, whose
//! package and field numbers are the spec's (checked against Prometheus's
//! `prompb/io/prometheus/write/v2/types.proto`). A 1.0 and a 2.0 client
//! writing the same series and metadata get identical answers.

use prost::Message;
use serde_json::Value as Json;
use strata_proto::prometheus::{Label, MetricMetadata, Sample, TimeSeries};
use strata_proto::prometheus_v2::{self as v2, metadata::MetricType};

use crate::common::{Strata, encode_with_metadata, now_ms, secs};

const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// Posts a 2.0 body for `tenant`: status, the three `*-Written` headers, text.
async fn push_v2(s: &Strata, req: &v2::Request, tenant: &str) -> (u16, [Option<u64>; 3], String) {
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy");
    let r = s
        .client
        .post(s.url("/api/v1/push"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", V2_CONTENT_TYPE)
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .header("X-Scope-OrgID", tenant)
        .body(body)
        .send()
        .await
        .expect("push");
    let header = |name: &str| {
        r.headers()
            .get(format!("X-Prometheus-Remote-Write-{name}-Written"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    let written = [header("Samples"), header("Histograms"), header("Exemplars")];
    (
        r.status().as_u16(),
        written,
        r.text().await.unwrap_or_default(),
    )
}

/// A test series: label pairs, samples, and metadata (type, help, unit).
type TestSeries<'a> = (
    Vec<(&'a str, &'a str)>,
    Vec<(i64, f64)>,
    Option<(MetricType, &'a str, &'a str)>,
);

/// A 2.0 request of `series` (label pairs, samples), one symbol per distinct
/// string, each series carrying `metadata` (type, help, unit) when given.
fn v2_request(series: &[TestSeries]) -> v2::Request {
    let mut symbols: Vec<String> = vec![String::new()];
    let mut intern = |s: &str| -> u32 {
        match symbols.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                symbols.push(s.to_string());
                (symbols.len() - 1) as u32
            }
        }
    };
    let timeseries = series
        .iter()
        .map(|(labels, samples, meta)| v2::TimeSeries {
            labels_refs: labels
                .iter()
                .flat_map(|(n, v)| [intern(n), intern(v)])
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| v2::Sample { value, timestamp })
                .collect(),
            metadata: meta.map(|(kind, help, unit)| v2::Metadata {
                r#type: kind as i32,
                help_ref: intern(help),
                unit_ref: intern(unit),
            }),
            created_timestamp: samples.first().map_or(0, |s| s.0 - 60_000),
            ..Default::default()
        })
        .collect();
    v2::Request {
        symbols,
        timeseries,
    }
}

async fn get(s: &Strata, path: &str, params: &[(&str, String)], tenant: &str) -> Json {
    let (status, j) = s.get_json(path, params, Some(tenant)).await;
    assert_eq!(status, 200, "{path} {params:?}: {j}");
    j["data"].clone()
}

#[tokio::test]
async fn remote_write_2_stores_what_remote_write_1_stores() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-auth.multitenancy-enabled=true"]).await;
    let t0 = now_ms() - 60_000;
    let series: Vec<TestSeries> = (0..3)
        .map(|k| {
            let code = ["200", "404", "500"][k];
            (
                vec![
                    ("__name__", "http_requests_total"),
                    ("code", code),
                    ("job", "api"),
                ],
                (0..10)
                    .map(|i| (t0 + i * 5_000, (i * (k as i64 + 1)) as f64))
                    .collect(),
                Some((MetricType::Counter, "Requests by code.", "")),
            )
        })
        .chain([(
            vec![
                ("__name__", "latency_seconds_bucket"),
                ("job", "api"),
                ("le", "+Inf"),
            ],
            vec![(t0, 4.0), (t0 + 5_000, 9.0)],
            Some((MetricType::Histogram, "Latency.", "seconds")),
        )])
        .collect();
    let mut req = v2_request(&series);
    // An exemplar on the first series, its labels in the symbol table too.
    req.symbols
        .extend(["trace_id".to_string(), "4bf92f35".to_string()]);
    let n = req.symbols.len() as u32;
    req.timeseries[0].exemplars = vec![v2::Exemplar {
        labels_refs: vec![n - 2, n - 1],
        value: 0.5,
        timestamp: t0 + 5_000,
    }];
    // Label names, values and help text are each sent once.
    assert_eq!(
        req.symbols.iter().filter(|s| *s == "job").count(),
        1,
        "symbols are shared"
    );
    let (status, written, text) = push_v2(&s, &req, "v2").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(written, [Some(32), Some(0), Some(1)]);

    // The same series and metadata from a 1.0 client, for another tenant.
    let v1_series: Vec<TimeSeries> = series
        .iter()
        .map(|(labels, samples, _)| TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        })
        .collect();
    let v1_metadata = vec![
        MetricMetadata {
            r#type: 1,
            metric_family_name: "http_requests_total".into(),
            help: "Requests by code.".into(),
            unit: String::new(),
        },
        MetricMetadata {
            r#type: 3,
            metric_family_name: "latency_seconds".into(),
            help: "Latency.".into(),
            unit: "seconds".into(),
        },
    ];
    let (status, text) = s
        .push_raw(encode_with_metadata(v1_series, v1_metadata), Some("v1"))
        .await;
    assert_eq!(status, 200, "{text}");

    let end = t0 + 50_000;
    for q in [
        "http_requests_total[1m]",
        "latency_seconds_bucket[1m]",
        "sum by (code) (rate(http_requests_total[30s]))",
        "http_requests_total{code=\"500\"} * 2",
    ] {
        let params = [("query", q.to_string()), ("time", secs(end))];
        let a = get(&s, "/api/v1/query", &params, "v2").await;
        let b = get(&s, "/api/v1/query", &params, "v1").await;
        assert_eq!(a, b, "{q}");
        assert!(!a["result"].as_array().expect("result").is_empty(), "{q}");
    }
    let raw = get(
        &s,
        "/api/v1/query",
        &[
            ("query", "http_requests_total{code=\"404\"}[1m]".into()),
            ("time", secs(end)),
        ],
        "v2",
    )
    .await;
    let values: Vec<f64> = raw["result"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| p[1].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(values, (0..10).map(|i| (i * 2) as f64).collect::<Vec<_>>());
    let exemplars = get(
        &s,
        "/api/v1/query_exemplars",
        &[("query", "http_requests_total".into())],
        "v2",
    )
    .await;
    assert_eq!(
        exemplars,
        serde_json::json!([{
            "seriesLabels": {"__name__": "http_requests_total", "code": "200", "job": "api"},
            "exemplars": [{"labels": {"trace_id": "4bf92f35"}, "value": "0.5", "timestamp": (t0 + 5_000) as f64 / 1000.0}],
        }])
    );
    let meta_v2 = get(&s, "/api/v1/metadata", &[], "v2").await;
    assert_eq!(meta_v2, get(&s, "/api/v1/metadata", &[], "v1").await);
    assert_eq!(
        meta_v2["latency_seconds"],
        serde_json::json!([{"type": "histogram", "help": "Latency.", "unit": "seconds"}])
    );
}

#[tokio::test]
async fn remote_write_2_partial_and_malformed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-auth.multitenancy-enabled=true"]).await;
    let t = now_ms() - 10_000;
    // A native histogram series beside a float one: 400 naming it, the
    // float series stored and counted in the header.
    let mut req = v2_request(&[
        (
            vec![("__name__", "floats"), ("k", "a")],
            vec![(t, 1.0)],
            None,
        ),
        (vec![("__name__", "natives"), ("k", "b")], vec![], None),
    ]);
    req.timeseries[1].histograms = vec![v2::Histogram { timestamp: t }];
    req.timeseries[0].exemplars = vec![v2::Exemplar {
        labels_refs: vec![],
        value: 1.0,
        timestamp: t,
    }];
    let (status, written, text) = push_v2(&s, &req, "p").await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("natives") && text.contains("native histogram"),
        "{text}"
    );
    assert_eq!(written, [Some(1), Some(0), Some(0)]);
    let got = get(
        &s,
        "/api/v1/query",
        &[("query", "floats".into()), ("time", secs(t))],
        "p",
    )
    .await;
    assert_eq!(got["result"][0]["value"][1], "1", "{got}");

    // Malformed bodies: 400 with the reason, nothing stored.
    let mut out_of_range = v2_request(&[(vec![("__name__", "bad")], vec![(t, 1.0)], None)]);
    out_of_range.timeseries[0].labels_refs[1] = 999;
    let mut odd = v2_request(&[(vec![("__name__", "bad")], vec![(t, 1.0)], None)]);
    odd.timeseries[0].labels_refs.push(0);
    let mut first_symbol = v2_request(&[(vec![("__name__", "bad")], vec![(t, 1.0)], None)]);
    first_symbol.symbols[0] = "bad".into();
    for (req, want) in [
        (out_of_range, "outside the symbol table"),
        (odd, "not name-value pairs"),
        (first_symbol, "symbols[0]"),
    ] {
        let (status, written, text) = push_v2(&s, &req, "p").await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(want), "{text}");
        assert_eq!(written[0], Some(0));
    }
    let got = get(
        &s,
        "/api/v1/query",
        &[("query", "bad".into()), ("time", secs(t))],
        "p",
    )
    .await;
    assert_eq!(got["result"].as_array().map(Vec::len), Some(0), "{got}");
    // Not snappy: 400.
    let r = s
        .client
        .post(s.url("/api/v1/push"))
        .header("Content-Type", V2_CONTENT_TYPE)
        .header("X-Scope-OrgID", "p")
        .body(vec![0xff; 64])
        .send()
        .await
        .expect("push");
    assert_eq!(r.status().as_u16(), 400);
}

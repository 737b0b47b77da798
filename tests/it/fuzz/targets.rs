//! The fuzz targets: seeds, dictionaries and what each input is run through.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use strata_model::logs::{Direction, LogEntry, LogStream, line_matches};
use strata_model::{Labels, Matcher, Sample, SeriesSamples, matches_all};
use strata_promql::{Engine, EngineError, EngineOptions, Queryable};
use strata_proto::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

use super::{Outcome, Target};
use crate::common::{encode, series};

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

/// A remote-write body (compressed first when marked `RAW:`) through
/// `decode`, then every series validated, as the distributor does; whether
/// the decoder accepted it.
fn decode_and_validate(
    input: &[u8],
    decode: fn(
        &[u8],
        usize,
    ) -> Result<strata_distributor::DecodedWrite, strata_distributor::PushError>,
) -> Option<strata_distributor::DecodedWrite> {
    let body = match input.strip_prefix(b"RAW:") {
        Some(raw) => snap::raw::Encoder::new()
            .compress_vec(raw)
            .unwrap_or_default(),
        None => input.to_vec(),
    };
    let req = decode(&body, 1 << 20).ok()?;
    let limits = strata_limits::Limits::default();
    for i in 0..req.series_count() {
        let labels: Vec<(&str, &str)> = req.series_labels(i).collect();
        let _ = strata_distributor::validate_labels(&labels, &limits);
    }
    Some(req)
}

/// The uncompressed body of a fuzz input, as the decoder sees it.
fn raw_body(input: &[u8]) -> Option<Vec<u8>> {
    match input.strip_prefix(b"RAW:") {
        Some(raw) => Some(raw.to_vec()),
        // The decoders' size limit, as decode_and_validate passes it.
        None => snap::raw::decompress_len(input)
            .is_ok_and(|n| n <= 1 << 20)
            .then(|| snap::raw::Decoder::new().decompress_vec(input).ok())
            .flatten(),
    }
}

/// The in-place 1.0 decoder reads exactly what prost reads: both refuse
/// a body, or both accept it with the same series, samples (bit for bit),
/// exemplars, histograms and metadata.
fn same_as_prost_v1(input: &[u8], got: Option<&strata_distributor::DecodedWrite>) {
    let want = raw_body(input)
        .and_then(|raw| strata_proto::prometheus::WriteRequest::decode(raw.as_slice()).ok());
    let (Some(got), Some(want)) = (got, &want) else {
        assert_eq!(
            got.is_some(),
            want.is_some(),
            "decoders disagree on acceptance"
        );
        return;
    };
    assert_eq!(got.series_count(), want.timeseries.len());
    for (i, ts) in want.timeseries.iter().enumerate() {
        let labels: Vec<(&str, &str)> = got.series_labels(i).collect();
        let want_labels: Vec<(&str, &str)> = ts
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(labels, want_labels);
        let samples: Vec<(i64, u64)> = got
            .series_samples(i)
            .iter()
            .map(|s| (s.t, s.v.to_bits()))
            .collect();
        let want_samples: Vec<(i64, u64)> = ts
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        assert_eq!(samples, want_samples);
        assert_eq!(got.series_exemplars(i).len(), ts.exemplars.len());
        assert_eq!(got.series_histograms(i), ts.histograms.len());
    }
    assert_eq!(got.metadata(), want.metadata.as_slice());
}

/// Remote-write bodies: decoded, then every series validated, as the
/// distributor does. Half the inputs are compressed after mutation, so the
/// mutations reach the protobuf decoder rather than only snappy's.
pub fn remote_write() -> Target {
    let now = 1_700_000_000_000;
    let bodies = [
        vec![series(&[("__name__", "up"), ("job", "a")], &[(now, 1.0)])],
        vec![
            series(
                &[("__name__", "m"), ("a", "1"), ("b", "2")],
                &[(now, 1.0), (now + 15_000, 2.0)],
            ),
            series(&[("__name__", "n")], &[(now, f64::NAN)]),
        ],
        vec![series(&[("job", "no name")], &[(i64::MIN, 0.0)])],
    ];
    let mut seeds = Vec::new();
    for b in bodies {
        seeds.push(encode(b.clone()));
        let raw = strata_proto::prometheus::WriteRequest {
            timeseries: b,
            metadata: vec![],
        }
        .encode_to_vec();
        // Marked uncompressed: the run compresses it first.
        seeds.push([b"RAW:".as_slice(), &raw].concat());
    }
    Target {
        name: "remote_write",
        seeds,
        dictionary: vec!["RAW:", "__name__", "\u{0}", "\u{ff}"],
        max_len: 1 << 16,
        run: |input| {
            Box::pin(async move {
                let got = decode_and_validate(&input, strata_distributor::decode_remote_write);
                same_as_prost_v1(&input, got.as_ref());
                got.is_some()
            })
        },
    }
}

/// Remote-write 2.0 bodies: symbol references resolved, then every series
/// validated; mutations of the references, counts and symbol table.
pub fn remote_write_v2() -> Target {
    use strata_proto::prometheus_v2 as v2;
    let symbols = ["", "__name__", "up", "job", "a", "help", "seconds"].map(String::from);
    let requests = [
        v2::Request {
            symbols: symbols.to_vec(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: 1_700_000_000_000,
                }],
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![3, 4],
                    value: 1.0,
                    timestamp: 1,
                }],
                metadata: Some(v2::Metadata {
                    r#type: 3,
                    help_ref: 5,
                    unit_ref: 6,
                }),
                created_timestamp: 1,
                ..Default::default()
            }],
        },
        v2::Request {
            symbols: symbols.to_vec(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                histograms: vec![v2::Histogram { timestamp: 1 }],
                ..Default::default()
            }],
        },
    ];
    let seeds = requests
        .iter()
        .map(|r| [b"RAW:".as_slice(), &r.encode_to_vec()].concat())
        .collect();
    Target {
        name: "remote_write_v2",
        seeds,
        dictionary: vec!["RAW:", "__name__", "\u{0}", "\u{ff}"],
        max_len: 1 << 16,
        run: |input| {
            Box::pin(async move {
                let got = decode_and_validate(&input, strata_distributor::decode_remote_write_v2);
                // What prost cannot read is refused; what is accepted,
                // prost reads too with the same series.
                let want =
                    raw_body(&input).and_then(|raw| v2::Request::decode(raw.as_slice()).ok());
                if let Some(got) = &got {
                    let want = want.expect("accepted a body prost refuses");
                    assert_eq!(got.series_count(), want.timeseries.len());
                    for (i, ts) in want.timeseries.iter().enumerate() {
                        let labels: Vec<&str> =
                            got.series_labels(i).flat_map(|(n, v)| [n, v]).collect();
                        let want_labels: Vec<&str> = ts
                            .labels_refs
                            .iter()
                            .map(|r| want.symbols[*r as usize].as_str())
                            .collect();
                        assert_eq!(labels, want_labels);
                        assert_eq!(got.series_samples(i).len(), ts.samples.len());
                    }
                }
                got.is_some()
            })
        },
    }
}

/// Loki push bodies in every format the push endpoint reads.
pub fn loki_push() -> Target {
    let json = br#"{"streams":[{"stream":{"app":"api","env":"prod"},"values":[["1700000000000000000","GET /a 200"],["1700000000000000001","x",{"trace_id":"abc"}]]}]}"#.to_vec();
    let legacy = br#"{"streams":[{"labels":"{app=\"api\"}","entries":[{"ts":"2023-11-14T22:13:20Z","line":"hello"}]}]}"#.to_vec();
    let proto = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{app="api", level="info"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5,
                }),
                line: "line one".into(),
                structured_metadata: vec![LabelPairAdapter {
                    name: "user".into(),
                    value: "u1".into(),
                }],
            }],
            hash: 0,
        }],
    }
    .encode_to_vec();
    let seeds = vec![
        [b"J".as_slice(), &json].concat(),
        [b"J".as_slice(), &legacy].concat(),
        [b"P".as_slice(), &proto].concat(),
        [b"G".as_slice(), &json].concat(),
    ];
    Target {
        name: "loki_push",
        seeds,
        dictionary: vec![
            "\"streams\"",
            "\"values\"",
            "{",
            "}",
            "[",
            "]",
            "\\u0000",
            "\"",
            "null",
            "1e400",
        ],
        max_len: 1 << 16,
        run: |input| {
            Box::pin(async move {
                use strata_distributor::logs::{PushFormat, decode_loki_push};
                let (mode, body) = input
                    .split_first()
                    .map(|(m, b)| (*m, b.to_vec()))
                    .unwrap_or((b'J', vec![]));
                let (format, body, gzip) = match mode {
                    b'P' => (
                        PushFormat::Protobuf,
                        snap::raw::Encoder::new()
                            .compress_vec(&body)
                            .unwrap_or_default(),
                        false,
                    ),
                    b'G' => {
                        use std::io::Write;
                        let mut gz =
                            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        let _ = gz.write_all(&body);
                        (PushFormat::Json, gz.finish().unwrap_or_default(), true)
                    }
                    _ => (PushFormat::Json, body, false),
                };
                decode_loki_push(&body, format, gzip, 1 << 20).is_ok()
            })
        },
    }
}

/// OTLP metrics and logs bodies (protobuf and JSON): decoded and
/// translated with every translation option on, as the distributor does.
/// The first byte picks the message and encoding: `M`/`J` metrics in
/// protobuf/JSON, `L`/`K` logs in protobuf/JSON.
pub fn otlp() -> Target {
    use strata_otlp::{Encoding, ExportLogsServiceRequest, ExportMetricsServiceRequest, decode};
    let metrics_json = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}},{"key":"service.namespace","value":{"stringValue":"ns"}},{"key":"host.name","value":{"stringValue":"h"}},{"key":"k8s.cluster.name","value":{"stringValue":"c"}}]},
      "scopeMetrics":[{"scope":{"name":"lib","version":"1","attributes":[{"key":"a.b","value":{"intValue":"3"}}]},"metrics":[
        {"name":"requests","unit":"{request}","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"timeUnixNano":"1700000000000000000","asInt":"5","attributes":[{"key":"route","value":{"stringValue":"/a"}},{"key":"r.oute","value":{"stringValue":"/b"}}],"exemplars":[{"timeUnixNano":"1700000000000000000","asDouble":1,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}},
        {"name":"mem.util","unit":"1","gauge":{"dataPoints":[{"timeUnixNano":"1700000000000000000","asDouble":0.5,"flags":1}]}},
        {"name":"latency","unit":"ms","histogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1700000000000000000","count":"3","sum":7.5,"bucketCounts":["1","1","1"],"explicitBounds":[1,10],"exemplars":[{"asInt":"5","filteredAttributes":[{"key":"user","value":{"kvlistValue":{"values":[{"key":"id","value":{"bytesValue":"AQI="}}]}}}]}]}]}},
        {"name":"rpc","unit":"s","summary":{"dataPoints":[{"timeUnixNano":"1700000000000000000","count":"2","sum":1,"quantileValues":[{"quantile":0.5,"value":0.4}]}]}},
        {"name":"delta","sum":{"aggregationTemporality":1,"dataPoints":[{"asInt":"1"}]}},
        {"name":"exp","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"count":"1","scale":3}]}}
      ]}]}]}"#.to_vec();
    let logs_json = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}},{"key":"k8s.pod.name","value":{"stringValue":"p"}},{"key":"m","value":{"kvlistValue":{"values":[{"key":"x.y","value":{"arrayValue":{"values":[{"intValue":"1"},{"doubleValue":1e300}]}}}]}}}]},
      "scopeLogs":[{"scope":{"name":"s","attributes":[{"key":"k","value":{"boolValue":true}}]},"logRecords":[{"timeUnixNano":"1700000000000000000","observedTimeUnixNano":"1700000000000000001","severityNumber":9,"severityText":"INFO","body":{"stringValue":"hello"},"attributes":[{"key":"user.id","value":{"intValue":"7"}}],"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","flags":1}]}]}]}"#.to_vec();
    let metrics: ExportMetricsServiceRequest =
        decode(&metrics_json, Encoding::Json, "metrics").expect("valid metrics seed");
    let logs: ExportLogsServiceRequest =
        decode(&logs_json, Encoding::Json, "logs").expect("valid logs seed");
    let seeds = vec![
        [b"J".as_slice(), &metrics_json].concat(),
        [b"M".as_slice(), &metrics.encode_to_vec()].concat(),
        [b"K".as_slice(), &logs_json].concat(),
        [b"L".as_slice(), &logs.encode_to_vec()].concat(),
    ];
    Target {
        name: "otlp",
        seeds,
        dictionary: vec![
            "\"stringValue\"",
            "\"kvlistValue\"",
            "\"arrayValue\"",
            "\"bytesValue\"",
            "\"timeUnixNano\"",
            "\"explicitBounds\"",
            "\"bucketCounts\"",
            "service.name",
            "{",
            "}",
            "[",
            "]",
            "\"",
            "null",
        ],
        max_len: 1 << 16,
        run: |input| {
            Box::pin(async move {
                use strata_otlp::logs::translate_logs;
                use strata_otlp::metrics::{MetricsTranslation, translate_metrics};
                let Some((mode, body)) = input.split_first() else {
                    return false;
                };
                let encoding = match mode {
                    b'M' | b'L' => Encoding::Protobuf,
                    _ => Encoding::Json,
                };
                if matches!(mode, b'L' | b'K') {
                    let Ok(req) = decode::<ExportLogsServiceRequest>(body, encoding, "logs") else {
                        return false;
                    };
                    let config = strata_limits::OtlpConfig {
                        severity_text_as_label: true,
                        ..Default::default()
                    };
                    translate_logs(req, &config, 0).is_ok()
                } else {
                    let Ok(req) = decode::<ExportMetricsServiceRequest>(body, encoding, "metrics")
                    else {
                        return false;
                    };
                    let settings = MetricsTranslation {
                        promote_resource_attributes: vec!["k8s.cluster.name".into(), "m".into()],
                        keep_identifying_resource_attributes: true,
                        promote_scope_metadata: true,
                        ..Default::default()
                    };
                    translate_metrics(req, &settings, body.len()).is_ok()
                }
            })
        },
    }
}

/// A small data set of series, read by the PromQL engine.
struct MemSeries(Vec<SeriesSamples>);

#[async_trait]
impl Queryable for MemSeries {
    async fn select(
        &self,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<SeriesSamples>, EngineError> {
        Ok(self
            .0
            .iter()
            .filter(|s| matches_all(matchers, &s.labels))
            .map(|s| SeriesSamples {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .filter(|x| x.t >= min_t && x.t <= max_t)
                    .copied()
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }
}

const T0: i64 = 1_700_000_000_000;

static PROMQL: LazyLock<(Engine, Arc<MemSeries>)> = LazyLock::new(|| {
    let mut data = Vec::new();
    for (name, kind) in [
        ("http_requests_total", 0),
        ("up", 1),
        ("temp", 2),
        ("req_bucket", 3),
    ] {
        for i in 0..4 {
            let mut labels = vec![
                ("__name__", name.to_string()),
                ("job", format!("j{}", i % 2)),
                ("instance", format!("i{i}")),
            ];
            if kind == 3 {
                labels.push(("le", ["0.1", "1", "10", "+Inf"][i].to_string()));
            }
            let samples = (0..240)
                .map(|k| Sample {
                    t: T0 + k * 15_000,
                    v: match kind {
                        0 | 3 => (k * (i as i64 + 1)) as f64,
                        1 => (k % 2) as f64,
                        _ => (k as f64).sin() * 10.0,
                    },
                })
                .collect();
            data.push(SeriesSamples {
                labels: Labels::from_pairs(labels.iter().map(|(n, v)| (*n, v.as_str()))),
                samples,
            });
        }
    }
    let engine = Engine::new(EngineOptions {
        timeout: Duration::from_secs(10),
        max_samples: 1_000_000,
        max_memory_bytes: 256 << 20,
        ..EngineOptions::default()
    });
    (engine, Arc::new(MemSeries(data)))
});

/// PromQL expressions from Prometheus's own test files, plus a few.
fn promql_seeds() -> Vec<Vec<u8>> {
    let dir = std::env::var("STRATA_PROMQL_TESTDATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/promql-testdata")
        });
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|f| {
            f.lines()
                .filter_map(|l| {
                    let l = l.trim();
                    let rest = l.strip_prefix("eval ")?;
                    // `eval [instant|range] at ... <expr>`: the expression follows the time spec.
                    let at = rest.find(" at ")?;
                    let after = &rest[at + 4..];
                    let expr = after.split_once(' ')?.1;
                    Some(expr.trim().as_bytes().to_vec())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for q in [
        "sum by (job) (rate(http_requests_total[5m])) / on(job) group_left count by (job)(up) > bool 0.5",
        "histogram_quantile(0.9, sum by (le) (rate(req_bucket[5m])))",
        "max_over_time(rate(http_requests_total[1m])[10m:30s] offset 1m)",
        "label_replace(up, \"x\", \"$1\", \"job\", \"(.*)\") or vector(1)",
        "topk(2, temp) unless on(instance) up == 0",
    ] {
        seeds.push(q.as_bytes().to_vec());
    }
    seeds.sort();
    seeds.dedup();
    seeds
}

/// PromQL: parsed, planned and executed as an instant and a range query.
pub fn promql() -> Target {
    Target {
        name: "promql",
        seeds: promql_seeds(),
        dictionary: vec![
            "(",
            ")",
            "[5m]",
            "[1m:10s]",
            "[100y:1ms]",
            "offset 1m",
            "@ 1700000000",
            "@ start()",
            " + ",
            " or ",
            " and ",
            " unless ",
            " / on(job) group_left ",
            "sum by (job) (",
            "rate(",
            "count_values(\"x\", ",
            "-",
            "{job=~\".+\"}",
            "bool",
            "topk(2, ",
            "quantile(0.5, ",
            "absent(",
            "scalar(",
            "vector(",
            "timestamp(",
            "#",
        ],
        max_len: 1 << 14,
        run: |input| {
            Box::pin(async move {
                let q = text(&input);
                let (engine, data) = &*PROMQL;
                let t = T0 + 30 * 60_000;
                let instant = engine.instant(data.clone(), &q, t).await;
                let range = engine.range(data.clone(), &q, T0, t, 60_000).await;
                instant.is_ok() || range.is_ok()
            }) as Outcome
        },
    }
}

/// A small data set of log streams, read by the LogQL evaluator.
struct MemLogs(Vec<LogStream>);

impl strata_logql::LogSource for MemLogs {
    async fn select(
        &self,
        sel: strata_logql::Selection,
    ) -> Result<Vec<LogStream>, strata_logql::EvalError> {
        Ok(self
            .0
            .iter()
            .filter(|s| matches_all(&sel.matchers, &s.labels))
            .map(|s| LogStream {
                labels: s.labels.clone(),
                entries: s
                    .entries
                    .iter()
                    .filter(|e| {
                        e.ts >= sel.start_ns
                            && e.ts < sel.end_ns
                            && line_matches(&sel.line_filters, &e.line)
                    })
                    .cloned()
                    .collect(),
            })
            .filter(|s| !s.entries.is_empty())
            .collect())
    }
}

static LOGS: LazyLock<Arc<MemLogs>> = LazyLock::new(|| {
    let t0 = T0 * 1_000_000;
    let streams = ["api", "db"]
        .iter()
        .map(|app| LogStream {
            labels: Labels::from_pairs([("app", *app), ("env", "prod")]),
            entries: (0..200)
                .map(|k| LogEntry {
                    ts: t0 + k * 5_000_000_000,
                    line: match k % 3 {
                        0 => format!(
                            r#"{{"level":"info","status":{},"path":"/u/{k}","took":"{}ms"}}"#,
                            200 + k % 5,
                            k
                        ),
                        1 => format!(
                            "level=warn msg=\"slow query\" duration={k}ms user=u{}",
                            k % 7
                        ),
                        _ => format!("10.0.0.{} - - GET /api/{k} 500 {}", k % 255, k * 10),
                    },
                    metadata: Labels::from_pairs([("trace_id", "abc")]),
                })
                .collect(),
        })
        .collect();
    Arc::new(MemLogs(streams))
});

/// LogQL: parsed and executed as a log query, an instant and a range
/// metric query.
pub fn logql() -> Target {
    let seeds = [
        r#"{app="api"} |= "GET" | json | status >= 400 | line_format "{{.path}} {{ .took | upper }}""#,
        r#"{app=~"api|db", env!="dev"} | logfmt | duration > 10ms | label_format who="{{.user}}""#,
        r#"sum by (app) (rate({env="prod"} |~ "5.." [5m]))"#,
        r#"quantile_over_time(0.99, {app="api"} | json | unwrap took [10m]) by (app)"#,
        r#"topk(2, sum by (level) (count_over_time({app="db"} | logfmt [1m]))) > 1"#,
        r#"{app="api"} | pattern "<ip> - - <method> <path> <status> <size>" | status = 500"#,
        r#"count_over_time({app="api"} | regexp "(?P<n>[0-9]+)" [5m]) / on() group_left sum(bytes_over_time({app="db"}[5m]))"#,
        r#"{app="api"} | json | __error__="" | drop env | keep app, status | decolorize"#,
        r#"absent_over_time({app="nope"}[1m]) or vector(0)"#,
        r#"{app="api"} | line_format "{{ alignLeft 10 .app }}{{ regexReplaceAll \"a\" __line__ \"b\" }}""#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    Target {
        name: "logql",
        seeds,
        dictionary: vec![
            "(",
            ")",
            "[5m]",
            "[1000000000000y]",
            " offset 1h",
            " | json",
            " | logfmt",
            " |= \"a\"",
            " != \"b\"",
            " |~ \"(a+)+\"",
            " | unwrap took",
            " + ",
            " or ",
            " and ",
            " by (app)",
            "{{",
            "}}",
            "{{ alignLeft 1000000 .app }}",
            " | replace \"a\" \"aaaa\"",
            "sum(",
            "rate(",
            "`",
            "\\",
            "-",
        ],
        max_len: 1 << 14,
        run: |input| {
            Box::pin(async move {
                let q = text(&input);
                let Ok(expr) = strata_logql::parse(&q) else {
                    return false;
                };
                let t0 = T0 * 1_000_000;
                let end = t0 + 1000 * 1_000_000_000;
                let base = strata_logql::QueryParams {
                    start_ns: t0,
                    end_ns: end,
                    step_ns: 60_000_000_000,
                    limit: 100,
                    direction: Direction::Backward,
                    instant: false,
                    max_series: 500,
                };
                let source = LOGS.clone();
                let range = strata_logql::evaluate(source.as_ref(), &expr, &base).await;
                let instant = strata_logql::QueryParams {
                    start_ns: end,
                    instant: true,
                    ..base
                };
                let instant = strata_logql::evaluate(source.as_ref(), &expr, &instant).await;
                range.is_ok() || instant.is_ok()
            })
        },
    }
}

/// WAL segment files, mutated on disk and replayed, each record decoded as
/// the ingesters decode them.
pub fn wal_replay() -> Target {
    use strata_ingester::walrec;
    let labels = Labels::from_pairs([("__name__", "m"), ("job", "a")]);
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut buf = Vec::new();
    walrec::encode_series(&mut buf, "tenant", [(1u64, &labels)].into_iter());
    records.push(std::mem::take(&mut buf));
    let samples = [
        Sample { t: T0, v: 1.0 },
        Sample {
            t: T0 + 15_000,
            v: 2.0,
        },
    ];
    walrec::encode_samples(&mut buf, [(1u64, samples.as_slice())].into_iter());
    records.push(std::mem::take(&mut buf));
    let entries = [LogEntry {
        ts: T0 * 1_000_000,
        line: "hello".into(),
        metadata: Labels::from_pairs([("k", "v")]),
    }];
    walrec::encode_log_entries(
        &mut buf,
        "tenant",
        [(&labels, entries.as_slice())].into_iter(),
    );
    records.push(std::mem::take(&mut buf));
    let metadata = strata_model::metadata::MetricMetadata {
        metric_family: "m".into(),
        kind: strata_model::metadata::MetricType::Counter,
        help: "help".into(),
        unit: "seconds".into(),
    };
    walrec::encode_metadata(&mut buf, "tenant", [(&metadata, T0)].into_iter());
    records.push(std::mem::take(&mut buf));
    let exemplar = strata_model::Exemplar {
        labels: Labels::from_pairs([("trace_id", "abc")]),
        value: 1.5,
        t: T0,
    };
    walrec::encode_exemplars(&mut buf, "tenant", [(&labels, &exemplar)].into_iter());
    records.push(std::mem::take(&mut buf));
    // A segment as the WAL frames it: [len][crc32c][payload]...
    let mut segment = Vec::new();
    for r in &records {
        segment.extend_from_slice(&(r.len() as u32).to_le_bytes());
        segment.extend_from_slice(&crc32c::crc32c(r).to_le_bytes());
        segment.extend_from_slice(r);
    }
    // Seeds: a whole segment, and the raw records (run with a valid frame
    // around them, so mutations reach the record decoder).
    let mut seeds = vec![[b"S".as_slice(), &segment].concat()];
    seeds.extend(records.iter().map(|r| [b"R".as_slice(), r].concat()));
    Target {
        name: "wal_replay",
        seeds,
        dictionary: vec![
            "\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{7f}",
            "\u{0}\u{0}\u{0}\u{0}",
        ],
        max_len: 1 << 16,
        run: |input| {
            Box::pin(async move {
                let (mode, body) = input
                    .split_first()
                    .map(|(m, b)| (*m, b.to_vec()))
                    .unwrap_or((b'S', vec![]));
                let segment = if mode == b'R' {
                    [
                        (body.len() as u32).to_le_bytes().as_slice(),
                        &crc32c::crc32c(&body).to_le_bytes(),
                        &body,
                    ]
                    .concat()
                } else {
                    body
                };
                let Ok(dir) = tempfile::tempdir() else {
                    return false;
                };
                // Split across two segment files: damage in the older one is
                // handled differently from the newest one's torn tail.
                let cut = segment.len() / 2;
                let _ = std::fs::write(dir.path().join("00000001"), &segment[..cut]);
                let _ = std::fs::write(dir.path().join("00000002"), &segment[cut..]);
                let mut decoded = 0usize;
                let opened = strata_wal::Wal::open(
                    dir.path(),
                    strata_wal::WalOptions::default(),
                    |payload| {
                        decoded += usize::from(walrec::decode(payload).is_ok());
                    },
                );
                if let Ok((mut wal, _)) = opened {
                    // Still appendable after any repair.
                    let _ = wal.append(b"after");
                }
                if mode == b'R' {
                    let _ = walrec::decode(&segment[8.min(segment.len())..]);
                }
                decoded > 0
            })
        },
    }
}

/// Rule groups as the rules API receives them, PromQL and LogQL.
pub fn rule_groups() -> Target {
    let seeds = [
        "Pname: g\ninterval: 30s\nrules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n    labels:\n      team: a\n  - alert: Down\n    expr: up == 0\n    for: 5m\n    keep_firing_for: 1m\n    labels:\n      severity: page\n    annotations:\n      summary: \"{{ $labels.job }} down: {{ $value | humanize }}\"\n",
        "Lname: logs\nrules:\n  - record: app:errors:rate\n    expr: sum by (app) (rate({env=\"prod\"} |= \"error\" [5m]))\n  - alert: Errors\n    expr: sum(count_over_time({app=\"api\"} | json | status >= 500 [1m])) > 10\n    annotations:\n      description: \"{{ printf \\\"%.2f\\\" $value }} errors\"\n",
        "Pname: q\nquery_offset: 1m\nlimit: 10\nrules:\n  - record: r\n    expr: max_over_time(up[10m:1m])\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    Target {
        name: "rule_groups",
        seeds,
        dictionary: vec![
            "\n  ",
            "- ",
            ": ",
            "{{",
            "}}",
            "[",
            "]",
            "&a",
            "*a",
            "!!binary",
            "|\n",
            "'",
            "((((",
            "%.999999999f",
        ],
        max_len: 1 << 15,
        run: |input| {
            Box::pin(async move {
                let (lang, yaml) = match input.split_first() {
                    Some((b'L', rest)) => (strata_ruler::RuleLang::LogQL, text(rest)),
                    Some((_, rest)) => (strata_ruler::RuleLang::PromQL, text(rest)),
                    None => return false,
                };
                strata_ruler::rules::parse_group(lang, "ns", &yaml, Duration::from_secs(60)).is_ok()
            })
        },
    }
}

/// The runtime configuration file of per-tenant overrides.
pub fn runtime_config() -> Target {
    let seeds = [
        "overrides:\n  team-a:\n    ingestion_rate: 50000\n    ingestion_burst_size: 500000\n    max_global_series_per_user: 2000000\n    out_of_order_time_window: 10m\n    max_query_length: 100h\n",
        "overrides:\n  'a*b':\n    max_line_size: 65536\n    reject_old_samples_max_age: 3d\n    compactor_blocks_retention_period: 90d\n",
        "overrides: {}\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    Target {
        name: "runtime_config",
        seeds,
        dictionary: vec![
            "\n    ",
            ": ",
            "1e400",
            "-1",
            "999999999999y",
            "&a",
            "*a",
            "[",
            "{",
        ],
        max_len: 1 << 14,
        run: |input| {
            Box::pin(async move {
                let overrides = strata_limits::Overrides::new(strata_limits::Limits::default());
                if overrides.apply_runtime_config(&text(&input)).is_err() {
                    return false;
                }
                let _ = overrides.for_tenant("team-a");
                true
            })
        },
    }
}

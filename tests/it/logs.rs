//! Logs end to end: real Loki push clients (python-logging-loki sends JSON,
//! winston-loki sends snappy protobuf) plus raw protobuf, JSON and gzip
//! pushes; LogQL queries over the head, over Parquet log blocks, and after a
//! kill -9 restart; Loki's metadata endpoints; validation and limits.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use prost::Message;
use serde_json::{Value as Json, json};
use strata_proto::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

use crate::common::{Strata, now_ms};

const S: i64 = 1_000_000_000;

/// `(ts ns, line)` pairs of one pushed stream.
type Entries = Vec<(i64, String)>;

fn proto_body(streams: &[(&str, Entries)]) -> Vec<u8> {
    let req = PushRequest {
        streams: streams
            .iter()
            .map(|(labels, entries)| StreamAdapter {
                labels: labels.to_string(),
                entries: entries
                    .iter()
                    .map(|(ts, line)| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: ts.div_euclid(S),
                            nanos: ts.rem_euclid(S) as i32,
                        }),
                        line: line.clone(),
                        structured_metadata: Vec::<LabelPairAdapter>::new(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

async fn push(
    s: &Strata,
    body: Vec<u8>,
    content_type: &str,
    gzip: bool,
    tenant: Option<&str>,
) -> (u16, String) {
    let mut req = s
        .client
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", content_type)
        .body(body);
    if gzip {
        req = req.header("Content-Encoding", "gzip");
    }
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let r = req.send().await.expect("push");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Pushes a Loki JSON body; every line must be stored (204).
async fn push_json_ok(s: &Strata, body: serde_json::Value, tenant: Option<&str>) {
    let (status, text) = push(
        s,
        body.to_string().into_bytes(),
        "application/json",
        false,
        tenant,
    )
    .await;
    assert_eq!(status, 204, "{text}");
}

/// `(stream labels, ts, line)` in the order the API returned them.
/// Waits until the ingester has uploaded a log block (at most 30 s).
async fn wait_for_log_block(s: &Strata) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s
        .self_metric("strata_ingester_log_blocks_uploaded_total")
        .await
        < 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no log block cut: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn query_lines(
    s: &Strata,
    q: &str,
    start: i64,
    end: i64,
    direction: &str,
    limit: usize,
) -> Vec<(Json, i64, String)> {
    let (status, j) = s
        .get_json(
            "/loki/api/v1/query_range",
            &[
                ("query", q.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("direction", direction.to_string()),
                ("limit", limit.to_string()),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{q}: {j}");
    assert_eq!(j["data"]["resultType"], "streams", "{j}");
    assert!(j["data"]["stats"]["summary"]["totalLinesProcessed"].is_number());
    let mut out = Vec::new();
    for st in j["data"]["result"].as_array().expect("result") {
        for v in st["values"].as_array().expect("values") {
            let ts: i64 = v[0].as_str().expect("ts string").parse().expect("ns");
            out.push((
                st["stream"].clone(),
                ts,
                v[1].as_str().expect("line").to_string(),
            ));
        }
    }
    // Streams come one after another; the overall order is by time.
    if direction == "forward" {
        out.sort_by_key(|x| x.1);
    } else {
        out.sort_by_key(|x| std::cmp::Reverse(x.1));
    }
    out
}

async fn instant(s: &Strata, q: &str, t: i64) -> Vec<(Json, f64)> {
    let (status, j) = s
        .get_json(
            "/loki/api/v1/query",
            &[("query", q.to_string()), ("time", t.to_string())],
            None,
        )
        .await;
    assert_eq!(status, 200, "{q}: {j}");
    assert_eq!(j["data"]["resultType"], "vector", "{j}");
    let mut out: Vec<(Json, f64)> = j["data"]["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| {
            (
                x["metric"].clone(),
                x["value"][1]
                    .as_str()
                    .expect("value")
                    .parse()
                    .expect("float"),
            )
        })
        .collect();
    out.sort_by_key(|x| x.0.to_string());
    out
}

fn python_push(url: &str, n: usize) {
    let script = format!(
        r#"
import logging, logging_loki
handler = logging_loki.LokiHandler(url="{url}/loki/api/v1/push", tags={{"app": "py"}}, version="1")
log = logging.getLogger("strata-test")
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range({n}):
    log.info("py line %d", i)
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python-logging-loki: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node_push(url: &str, n: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients");
    let out = Command::new("node")
        .arg(dir.join("winston_push.js"))
        .arg(url)
        .arg(n.to_string())
        .current_dir(&dir)
        .output()
        .expect("run node (test.sh installs tests/clients)");
    assert!(
        out.status.success(),
        "winston-loki: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn api_lines(base: i64) -> Vec<(&'static str, Entries)> {
    let users: Vec<(i64, String)> = (1..=10)
        .map(|i| (base + i * S, format!("GET /users took {}ms", i * 10)))
        .collect();
    let orders: Vec<(i64, String)> = [5, 7, 300]
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            (
                base + (i as i64 * 3 + 2) * S + 500,
                format!("POST /orders took {ms}ms"),
            )
        })
        .collect();
    vec![
        (r#"{app="api", endpoint="/users"}"#, users),
        (r#"{app="api", endpoint="/orders"}"#, orders),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_clients_logql_blocks_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Strata::start(
        dir.path(),
        &[
            "-blocks-storage.tsdb.block-ranges-period=2s",
            "-blocks-storage.tsdb.head-compaction-interval=300ms",
            "-ingester.max-chunk-age=2s",
        ],
    )
    .await;
    let base = (now_ms() / 1000 - 120) * S;

    // Raw protobuf + snappy: the quantile data.
    let (st, body) = push(
        &s,
        proto_body(&api_lines(base)),
        "application/x-protobuf",
        false,
        None,
    )
    .await;
    assert_eq!(st, 204, "{body}");
    // JSON with structured metadata, and gzip-compressed JSON.
    let web = json!({"streams": [{"stream": {"app": "web"}, "values": [
        [(base + 20 * S).to_string(), "level=info msg=\"page served\" status=200"],
        [(base + 21 * S).to_string(), "level=error msg=\"upstream failed\" status=502", {"trace_id": "t-1"}],
    ]}]});
    let (st, body) = push(
        &s,
        web.to_string().into_bytes(),
        "application/json",
        false,
        None,
    )
    .await;
    assert_eq!(st, 204, "{body}");
    let zipped = {
        let gz_body = json!({"streams": [{"stream": {"app": "web"}, "values": [
            [(base + 22 * S).to_string(), "level=info msg=\"zipped\" status=204"],
        ]}]});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(gz_body.to_string().as_bytes()).expect("gzip");
        gz.finish().expect("gzip")
    };
    let (st, body) = push(&s, zipped, "application/json", true, None).await;
    assert_eq!(st, 204, "{body}");
    // Real clients.
    python_push(&s.url(""), 5);
    node_push(&s.url(""), 6);

    let end = (now_ms() + 60_000) * 1_000_000;
    let start = base;

    // Log queries, both directions, with a limit.
    let newest = query_lines(&s, r#"{app="api"}"#, start, end, "backward", 3).await;
    let lines: Vec<&str> = newest.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(
        lines,
        vec![
            "GET /users took 100ms",
            "GET /users took 90ms",
            "POST /orders took 300ms"
        ]
    );
    let all_api = query_lines(&s, r#"{app="api"}"#, start, end, "forward", 100).await;
    assert_eq!(all_api.len(), 13);
    assert_eq!(all_api[0].2, "GET /users took 10ms");
    assert!(all_api.windows(2).all(|w| w[0].1 <= w[1].1));
    let errors = query_lines(
        &s,
        r#"{app="web"} | logfmt | status >= 500"#,
        start,
        end,
        "forward",
        100,
    )
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0["msg"], "upstream failed");
    assert_eq!(
        errors[0].0["trace_id"], "t-1",
        "structured metadata is a label"
    );
    let formatted = query_lines(
        &s,
        r#"{app="web"} |= "zipped" | logfmt | line_format "{{.status}} {{.msg | ToUpper}}""#,
        start,
        end,
        "forward",
        100,
    )
    .await;
    assert_eq!(
        formatted.iter().map(|x| x.2.as_str()).collect::<Vec<_>>(),
        vec!["204 ZIPPED"]
    );
    let py = query_lines(&s, r#"{app="py"}"#, start, end, "forward", 100).await;
    assert_eq!(
        py.iter().map(|x| x.2.as_str()).collect::<Vec<_>>(),
        (0..5).map(|i| format!("py line {i}")).collect::<Vec<_>>()
    );
    assert_eq!(py[0].0["severity"], "info");
    let node = query_lines(&s, r#"{app="node"}"#, start, end, "forward", 100).await;
    let mut node_lines: Vec<&str> = node.iter().map(|x| x.2.as_str()).collect();
    node_lines.sort();
    let mut want: Vec<String> = (0..6)
        .map(|i| format!("node line {i} took {}ms", 10 * (i + 1)))
        .collect();
    want.sort();
    assert_eq!(node_lines, want);

    // The issue's regex-extraction percentile, against hand-computed values:
    // /users 10..100 -> rank 8.55 -> 95.5; /orders 5,7,300 -> rank 1.9 -> 270.7.
    let p95 = r#"quantile_over_time(0.95, {app="api"} | regexp "took (?P<ms>[0-9]+)ms" | unwrap ms [15m]) by (endpoint)"#;
    let t = base + 60 * S;
    let check_p95 = |v: Vec<(Json, f64)>| {
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].0, json!({"endpoint": "/orders"}));
        assert!((v[0].1 - 270.7).abs() < 1e-9, "{v:?}");
        assert_eq!(v[1].0, json!({"endpoint": "/users"}));
        assert!((v[1].1 - 95.5).abs() < 1e-9, "{v:?}");
    };
    check_p95(instant(&s, p95, t).await);
    let counts = instant(
        &s,
        r#"sum by (level) (count_over_time({app="node"}[1h]))"#,
        end,
    )
    .await;
    assert_eq!(
        counts,
        vec![
            (json!({"level": "error"}), 3.0),
            (json!({"level": "info"}), 3.0)
        ]
    );
    let rate = instant(
        &s,
        r#"sum(rate({app="api", endpoint="/users"} |= "GET" [10s]))"#,
        base + 10 * S,
    )
    .await;
    assert_eq!(rate, vec![(json!({}), 1.0)]);

    // Range metric query: counts per 5s step, left-open windows.
    let (st, j) = s
        .get_json(
            "/loki/api/v1/query_range",
            &[
                (
                    "query",
                    r#"count_over_time({app="api", endpoint="/users"}[5s])"#.to_string(),
                ),
                ("start", (base + 5 * S).to_string()),
                ("end", (base + 15 * S).to_string()),
                ("step", "5s".to_string()),
            ],
            None,
        )
        .await;
    assert_eq!(st, 200, "{j}");
    assert_eq!(j["data"]["resultType"], "matrix");
    let vals: Vec<&str> = j["data"]["result"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| p[1].as_str().expect("v"))
        .collect();
    // (0s,5s] and (5s,10s] hold 5 lines each; (10s,15s] none, so no point.
    assert_eq!(vals, vec!["5", "5"]);

    // Metadata endpoints Grafana calls.
    let range = [("start", start.to_string()), ("end", end.to_string())];
    let (_, j) = s.get_json("/loki/api/v1/labels", &range, None).await;
    for l in ["app", "endpoint", "logger", "severity", "client", "level"] {
        assert!(
            j["data"].as_array().expect("labels").contains(&json!(l)),
            "{l}: {j}"
        );
    }
    let (_, j) = s
        .get_json("/loki/api/v1/label/app/values", &range, None)
        .await;
    assert_eq!(j["data"], json!(["api", "node", "py", "web"]));
    let mut p = range.to_vec();
    p.push(("query", r#"{app="api"}"#.to_string()));
    let (_, j) = s
        .get_json("/loki/api/v1/label/endpoint/values", &p, None)
        .await;
    assert_eq!(j["data"], json!(["/orders", "/users"]));
    let mut p = range.to_vec();
    p.push(("match[]", r#"{app="api"}"#.to_string()));
    let (_, j) = s.get_json("/loki/api/v1/series", &p, None).await;
    assert_eq!(
        j["data"],
        json!([{"app": "api", "endpoint": "/orders"}, {"app": "api", "endpoint": "/users"}])
    );
    let mut stats_params = range.to_vec();
    stats_params.push(("query", r#"{app="api"}"#.to_string()));
    let (_, stats) = s
        .get_json("/loki/api/v1/index/stats", &stats_params, None)
        .await;
    let api_bytes: usize = all_api.iter().map(|x| x.2.len()).sum();
    assert_eq!(stats["streams"], 2);
    assert_eq!(stats["entries"], 13);
    assert_eq!(stats["bytes"], api_bytes);
    let mut volume_params = range.to_vec();
    volume_params.push(("query", r#"{app=~"api|web"}"#.to_string()));
    let (_, vol) = s
        .get_json("/loki/api/v1/index/volume", &volume_params, None)
        .await;
    assert_eq!(vol["data"]["result"][0]["metric"], json!({"app": "api"}));
    assert_eq!(vol["data"]["result"][0]["value"][1], api_bytes.to_string());
    let mut p = range.to_vec();
    p.push(("query", r#"{app=~"api|web"}"#.to_string()));
    p.push(("step", "5s".to_string()));
    let (_, vr) = s
        .get_json("/loki/api/v1/index/volume_range", &p, None)
        .await;
    assert_eq!(vr["data"]["resultType"], "matrix", "{vr}");
    let api = &vr["data"]["result"][0];
    assert_eq!(api["metric"], json!({"app": "api"}));
    let points = api["values"].as_array().expect("points");
    let total: u64 = points
        .iter()
        .map(|p| p[1].as_str().expect("v").parse::<u64>().expect("bytes"))
        .sum();
    assert_eq!(total as usize, api_bytes);
    // Lines at base+1s..base+5s fall in the first step, (base, base+5s].
    let first_t = (points[0][0].as_f64().expect("t") * 1000.0).round() as i64;
    assert_eq!(first_t * 1_000_000, base + 5 * S);

    // Everything older than the cut moves to Parquet log blocks; the answers stay the same.
    let snapshot = query_lines(&s, r#"{app=~".+"}"#, start, end, "forward", 1000).await;
    assert_eq!(snapshot.len(), 13 + 3 + 5 + 6);
    wait_for_log_block(&s).await;
    let blocks = std::fs::read_dir(dir.path().join("blocks/anonymous/logs"))
        .expect("log blocks dir")
        .count();
    assert!(blocks >= 1);
    assert_eq!(
        query_lines(&s, r#"{app=~".+"}"#, start, end, "forward", 1000).await,
        snapshot
    );
    assert_eq!(
        query_lines(&s, r#"{app="api"}"#, start, end, "backward", 3).await,
        newest
    );
    check_p95(instant(&s, p95, t).await);
    // Statistics and volumes read entry sizes from blocks and head, an
    // entry present in both counted once.
    let (_, after) = s
        .get_json("/loki/api/v1/index/stats", &stats_params, None)
        .await;
    assert_eq!(
        (&after["streams"], &after["entries"], &after["bytes"]),
        (&stats["streams"], &stats["entries"], &stats["bytes"]),
        "{after}"
    );
    assert!(after["chunks"].as_u64().expect("chunks") >= 1, "{after}");
    let (_, after) = s
        .get_json("/loki/api/v1/index/volume", &volume_params, None)
        .await;
    assert_eq!(after["data"]["result"], vol["data"]["result"]);

    // kill -9: the WAL and the blocks hold every acknowledged entry.
    s.restart().await;
    assert_eq!(
        query_lines(&s, r#"{app=~".+"}"#, start, end, "forward", 1000).await,
        snapshot
    );
    check_p95(instant(&s, p95, t).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_push_validation_limits_and_query_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Strata::start(
        dir.path(),
        &[
            "-distributor.max-line-size=100",
            "-distributor.max-recv-msg-size=100000",
            "-distributor.ingestion-rate-limit-mb=0.02",
            "-distributor.ingestion-burst-size-mb=0.04",
            "-ingester.max-global-streams-per-user=3",
            "-validation.max-entries-limit=50",
        ],
    )
    .await;
    let now = now_ms() * 1_000_000;
    let ok = (now - 10 * S, "fine".to_string());

    let cases: Vec<(&str, Entries, &str)> = vec![
        ("{app=api}", vec![ok.clone()], "error parsing labels"),
        (
            "{}",
            vec![ok.clone()],
            "at least one label pair is required",
        ),
        (
            r#"{app="a", app="b"}"#,
            vec![ok.clone()],
            "duplicate label name",
        ),
        (
            r#"{app="a"}"#,
            vec![(now, "x".repeat(101))],
            "max entry size '100' bytes exceeded",
        ),
        (
            r#"{app="a"}"#,
            vec![(now - 8 * 24 * 3600 * S, "old".into())],
            "timestamp too old",
        ),
        (
            r#"{app="a"}"#,
            vec![(now + 3600 * S, "future".into())],
            "timestamp too new",
        ),
    ];
    for (labels, entries, want) in cases {
        let body = proto_body(&[(labels, entries), (r#"{app="kept"}"#, vec![ok.clone()])]);
        let (st, msg) = push(&s, body, "application/x-protobuf", false, None).await;
        assert_eq!(st, 400, "{labels}: {msg}");
        assert!(msg.contains(want), "{labels}: want {want:?} in {msg}");
    }
    // The valid stream of each partially rejected push was kept (once: identical entries are retries).
    let (_, j) = s
        .get_json(
            "/loki/api/v1/query_range",
            &[
                ("query", r#"{app="kept"}"#.to_string()),
                ("start", (now - 60 * S).to_string()),
                ("end", (now + S).to_string()),
                ("limit", "10".into()),
            ],
            None,
        )
        .await;
    assert_eq!(
        j["data"]["result"][0]["values"].as_array().map(Vec::len),
        Some(1),
        "{j}"
    );

    for (body, ct, gzip) in [
        (b"{not json".to_vec(), "application/json", false),
        (
            br#"{"streams":[{"stream":{"a":"b"},"values":[["soon","x"]]}]}"#.to_vec(),
            "application/json",
            false,
        ),
        (b"\x00\x01garbage".to_vec(), "application/x-protobuf", false),
        (b"not gzip".to_vec(), "application/json", true),
    ] {
        let (st, msg) = push(&s, body, ct, gzip, None).await;
        assert_eq!(st, 400, "{msg}");
    }
    let (st, _) = push(&s, vec![b'x'; 120_000], "application/json", false, None).await;
    assert_eq!(st, 413);

    // Stream limit: a 4th active stream is refused with 429 (kept + 2 more fit).
    for (i, want) in [(1, 204), (2, 204), (3, 429)] {
        let body = proto_body(&[(&format!("{{app=\"s{i}\"}}"), vec![ok.clone()])]);
        let (st, msg) = push(&s, body, "application/x-protobuf", false, None).await;
        assert_eq!(st, want, "stream {i}: {msg}");
        if want == 429 {
            assert!(
                msg.contains("Maximum active stream limit exceeded"),
                "{msg}"
            );
        }
    }
    // Rate limit: 50 KB at once is over the 40 KB burst.
    let big: Vec<(i64, String)> = (0..600)
        .map(|i| (now - S + i, format!("{i:0>90}")))
        .collect();
    let (st, msg) = push(
        &s,
        proto_body(&[(r#"{app="kept"}"#, big)]),
        "application/x-protobuf",
        false,
        None,
    )
    .await;
    assert_eq!(st, 429, "{msg}");
    assert!(msg.contains("Ingestion rate limit exceeded"), "{msg}");

    // Query errors are 400s that say what is wrong.
    for (q, want) in [
        (r#"{app="kept"} | jsonn"#, "parse error at line 1, col 16"),
        (r#"sum_over_time({app="kept"}[5m])"#, "unwrap"),
        (r#"{app=~".*"}"#, "empty string"),
    ] {
        let (st, j) = s
            .get_json(
                "/loki/api/v1/query_range",
                &[("query", q.to_string())],
                None,
            )
            .await;
        assert_eq!(st, 400, "{q}: {j}");
        assert!(
            j.as_str().is_some_and(|m| m.contains(want)),
            "{q}: want {want:?} in {j}"
        );
    }
    let (st, j) = s
        .get_json(
            "/loki/api/v1/query_range",
            &[
                ("query", r#"{app="kept"}"#.to_string()),
                ("limit", "51".into()),
            ],
            None,
        )
        .await;
    assert_eq!(st, 400, "{j}");
    let (st, j) = s
        .get_json(
            "/loki/api/v1/query",
            &[("query", r#"{app="kept"}"#.to_string())],
            None,
        )
        .await;
    assert_eq!(st, 400, "{j}");
    assert!(
        j.as_str().is_some_and(|m| m.contains("instant query")),
        "{j}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_over_websocket() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().expect("tempdir");
    let s = Strata::start(dir.path(), &[]).await;
    let now = now_ms() * 1_000_000;
    let lines = |from: i64, n: i64, tag: &str| -> Entries {
        (0..n)
            .map(|i| (now + (from + i) * 1_000_000, format!("{tag} line {i}")))
            .collect()
    };
    // Pushed before the tail starts, after its `start`: sent first.
    let (st, _) = push(
        &s,
        proto_body(&[(r#"{app="tail"}"#, lines(0, 2, "early"))]),
        "application/x-protobuf",
        false,
        None,
    )
    .await;
    assert_eq!(st, 204);

    // A metric query is refused before the upgrade.
    let refused = s
        .client
        .get(s.url("/loki/api/v1/tail"))
        .query(&[("query", r#"rate({app="tail"}[1m])"#)])
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 400);

    let url = reqwest::Url::parse_with_params(
        &format!("ws://127.0.0.1:{}/loki/api/v1/tail", s.port),
        &[
            ("query", r#"{app="tail"} != "skip""#.to_string()),
            ("start", (now - 60 * S).to_string()),
        ],
    )
    .expect("tail URL");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket upgrade");
    let mut received: Vec<String> = Vec::new();
    let mut next_batch = async |received: &mut Vec<String>, want: usize| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while received.len() < want {
            let msg = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("tail message in time")
                .expect("socket open")
                .expect("frame");
            let Message::Text(text) = msg else { continue };
            let j: Json = serde_json::from_str(&text).expect("tail JSON");
            assert!(j["dropped_entries"].is_null(), "{j}");
            for st in j["streams"].as_array().expect("streams") {
                // Structured metadata shows with the labels, as in Loki:
                // here the level discovered at ingestion (no keyword).
                assert_eq!(
                    st["stream"],
                    json!({"app": "tail", "detected_level": "unknown"})
                );
                for v in st["values"].as_array().expect("values") {
                    received.push(v[1].as_str().expect("line").to_string());
                }
            }
        }
    };
    next_batch(&mut received, 2).await;
    assert_eq!(received, vec!["early line 0", "early line 1"]);
    // New entries arrive as they are pushed, filtered, once each, in order.
    let mut later = lines(10, 3, "late");
    later.push((now + 20 * 1_000_000, "skip me".into()));
    let (st, _) = push(
        &s,
        proto_body(&[(r#"{app="tail"}"#, later)]),
        "application/x-protobuf",
        false,
        None,
    )
    .await;
    assert_eq!(st, 204);
    next_batch(&mut received, 5).await;
    assert_eq!(
        received,
        vec![
            "early line 0",
            "early line 1",
            "late line 0",
            "late line 1",
            "late line 2"
        ]
    );
    // Nothing is sent twice: a quiet second later, no new message.
    let extra = tokio::time::timeout(Duration::from_millis(2500), ws.next()).await;
    assert!(extra.is_err(), "unexpected message: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_stats_count_distinct_lines_at_one_time_and_repeats_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Strata::start(dir.path(), &[]).await;
    let now = now_ms() * 1_000_000;
    // Two different lines of the same length at one time, and a third line.
    let entries: Entries = vec![
        (now, "GET /a".to_string()),
        (now, "GET /b".to_string()),
        (now + 1_000_000, "x".to_string()),
    ];
    for _ in 0..2 {
        // Pushed twice, as a client retry would: the repeat counts once.
        let (st, body) = push(
            &s,
            proto_body(&[(r#"{app="twins"}"#, entries.clone())]),
            "application/x-protobuf",
            false,
            None,
        )
        .await;
        assert_eq!(st, 204, "{body}");
    }
    let params = [
        ("query", r#"{app="twins"}"#.to_string()),
        ("start", (now - 60 * S).to_string()),
        ("end", (now + 60 * S).to_string()),
    ];
    let (_, stats) = s.get_json("/loki/api/v1/index/stats", &params, None).await;
    assert_eq!(stats["streams"], 1, "{stats}");
    assert_eq!(stats["entries"], 3, "{stats}");
    assert_eq!(stats["bytes"], 13, "{stats}");
    let (_, vol) = s.get_json("/loki/api/v1/index/volume", &params, None).await;
    assert_eq!(vol["data"]["result"][0]["value"][1], "13", "{vol}");
}

/// What Grafana's Logs Drilldown app reads besides queries:
/// `detected_labels` (stream labels worth grouping by, identifiers left
/// out, in Loki's shape) and `drilldown-limits` (Loki's names and formats;
/// patterns marked missing, so the app does not ask for them).
#[tokio::test]
async fn drilldown_detected_labels_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-auth.multitenancy-enabled=true"]).await;
    let now = crate::common::now_ms() * 1_000_000;
    let mut streams = Vec::new();
    for (i, (service, pod, code, flag)) in [
        ("api", "api-1", "200", "0"),
        ("api", "api-2", "500", "1"),
        ("web", "web-1", "200", "1"),
    ]
    .into_iter()
    .enumerate()
    {
        streams.push((
            format!(
                r#"{{service_name="{service}", pod="{pod}", code="{code}", canary="{flag}", request_id="5b8efff7-9803-8103-d269-b633813fc6{i:02}"}}"#
            ),
            vec![(now - 1_000_000_000, format!("line {i}"))],
        ));
    }
    let streams: Vec<(&str, Entries)> = streams
        .iter()
        .map(|(l, e)| (l.as_str(), e.clone()))
        .collect();
    let (status, text) = push(
        &s,
        proto_body(&streams),
        "application/x-protobuf",
        false,
        Some("t1"),
    )
    .await;
    assert_eq!(status, 204, "{text}");

    let detected = |query: &'static str, tenant: &'static str| {
        let s = &s;
        async move {
            let (status, j) = s
                .get_json(
                    "/loki/api/v1/detected_labels",
                    &[
                        ("query", query.to_string()),
                        ("start", (now - 3_600_000_000_000).to_string()),
                        ("end", (now + 60_000_000_000).to_string()),
                    ],
                    Some(tenant),
                )
                .await;
            assert_eq!(status, 200, "{j}");
            j
        }
    };
    // As the service list asks: no query. code (numbers) and request_id
    // (UUIDs) are identifiers; canary (0/1) is a flag and kept.
    assert_eq!(
        detected("", "t1").await,
        serde_json::json!({"detectedLabels": [
            {"label": "canary", "cardinality": 2},
            {"label": "pod", "cardinality": 3},
            {"label": "service_name", "cardinality": 2},
        ]})
    );
    // As a service page asks.
    assert_eq!(
        detected(r#"{service_name="api"}"#, "t1").await,
        serde_json::json!({"detectedLabels": [
            {"label": "canary", "cardinality": 2},
            {"label": "pod", "cardinality": 2},
            {"label": "service_name", "cardinality": 1},
        ]})
    );
    assert_eq!(detected("", "t2").await, serde_json::json!({}));
    let (status, _) = s
        .get_json(
            "/loki/api/v1/detected_labels",
            &[("query", "sum(".into())],
            Some("t1"),
        )
        .await;
    assert_eq!(status, 400);

    // detected_fields: structured metadata (no parser) and what JSON or
    // logfmt finds in the newest lines, typed by the newest value.
    let body = serde_json::json!({"streams": [{
        "stream": {"service_name": "checkout"},
        "values": [
            [(now - 2_000_000_000).to_string(),
             r#"{"level":"info","status":200,"latency":"1.5s","user":{"id":"u1"},"tags":["a"]}"#,
             {"trace_id": "abc"}],
            [(now - 1_000_000_000).to_string(),
             r#"level=error status=500 latency=250ms size=10KB msg="boom here""#],
        ],
    }]});
    push_json_ok(&s, body, Some("t1")).await;
    let range = [
        ("start", (now - 3_600_000_000_000).to_string()),
        ("end", (now + 60_000_000_000).to_string()),
    ];
    let want = serde_json::json!({"fields": [
        {"label": "detected_level", "type": "string", "cardinality": 2, "parsers": null},
        {"label": "latency", "type": "duration", "cardinality": 2, "parsers": ["json", "logfmt"], "jsonPath": ["latency"]},
        {"label": "level", "type": "string", "cardinality": 2, "parsers": ["json", "logfmt"], "jsonPath": ["level"]},
        {"label": "msg", "type": "string", "cardinality": 1, "parsers": ["logfmt"]},
        {"label": "size", "type": "bytes", "cardinality": 1, "parsers": ["logfmt"]},
        {"label": "status", "type": "int", "cardinality": 2, "parsers": ["json", "logfmt"], "jsonPath": ["status"]},
        {"label": "trace_id", "type": "string", "cardinality": 1, "parsers": null},
        {"label": "user_id", "type": "string", "cardinality": 1, "parsers": ["json"], "jsonPath": ["user", "id"]},
    ], "limit": 1000});
    for query in [
        r#"{service_name="checkout"}"#,
        r#"{service_name="checkout"} | json | logfmt | drop __error__, __error_details__"#,
    ] {
        let mut params = range.to_vec();
        params.push(("query", query.to_string()));
        let (status, got) = s
            .get_json("/loki/api/v1/detected_fields", &params, Some("t1"))
            .await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got, want, "{query}");
    }
    let mut params = range.to_vec();
    params.push(("query", r#"{service_name="checkout"}"#.to_string()));
    let (status, got) = s
        .get_json(
            "/loki/api/v1/detected_field/status/values",
            &params,
            Some("t1"),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got,
        serde_json::json!({"values": ["200", "500"], "limit": 1000})
    );
    let (_, none) = s
        .get_json(
            "/loki/api/v1/detected_field/nothing/values",
            &params,
            Some("t1"),
        )
        .await;
    assert_eq!(none, serde_json::json!({}));
    params.push(("limit", "2".to_string()));
    let (_, limited) = s
        .get_json("/loki/api/v1/detected_fields", &params, Some("t1"))
        .await;
    assert_eq!(
        limited["fields"].as_array().map(Vec::len),
        Some(2),
        "{limited}"
    );
    for bad in [
        vec![(
            "query",
            r#"count_over_time({service_name="checkout"}[5m])"#.to_string(),
        )],
        vec![
            ("query", r#"{service_name="checkout"}"#.to_string()),
            ("line_limit", "0".to_string()),
        ],
        // More lines than a query may return (max_entries_limit_per_query).
        vec![
            ("query", r#"{service_name="checkout"}"#.to_string()),
            ("line_limit", "1000000".to_string()),
        ],
        vec![
            ("query", r#"{service_name="checkout"}"#.to_string()),
            ("limit", "-1".to_string()),
        ],
    ] {
        let (status, body) = s
            .get_json("/loki/api/v1/detected_fields", &bad, Some("t1"))
            .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }

    let (status, limits) = s
        .get_json("/loki/api/v1/drilldown-limits", &[], Some("t1"))
        .await;
    assert_eq!(status, 200, "{limits}");
    assert_eq!(limits["pattern_ingester_enabled"], true);
    assert_eq!(limits["version"], env!("CARGO_PKG_VERSION"));
    let l = &limits["limits"];
    assert_eq!(l["max_entries_limit_per_query"], 5000);
    assert_eq!(l["max_query_length"], "30d1h");
    assert_eq!(l["retention_period"], "0s");
    assert_eq!(l["volume_enabled"], true);
    assert_eq!(
        l["otlp_config"]["ResourceAttributes"]["IgnoreDefaults"],
        false
    );
}

/// `/loki/api/v1/patterns` as Logs Drilldown's Patterns tab calls it (ISO
/// start and end, a Grafana step, the bare stream selector), and the
/// pattern filter it applies next (`|> "<pattern>"`) finding the lines.
#[tokio::test]
async fn log_patterns_as_logs_drilldown_asks_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-auth.multitenancy-enabled=true"]).await;
    let now = crate::common::now_ms() * 1_000_000;
    let second = 1_000_000_000i64;
    let mut plain = Vec::new();
    let mut logfmt = Vec::new();
    for i in 0..60i64 {
        let ts = (now - (120 - i) * second).to_string();
        plain.push(serde_json::json!([
            ts,
            format!("GET /api/items/{i} 200 in {}ms", 3 * i)
        ]));
        if i < 40 {
            logfmt.push(serde_json::json!([
                ts,
                format!(r#"level=error msg="payment failed" order={} code=E{}"#, 1000 + i, i % 7),
                {"detected_level": "error"}
            ]));
        }
        if i < 10 {
            plain.push(serde_json::json!([
                ts,
                format!("cache warmed with {i} entries quickly")
            ]));
        }
    }
    let body = serde_json::json!({"streams": [
        {"stream": {"service_name": "checkout", "pod": "a"}, "values": plain},
        {"stream": {"service_name": "checkout", "pod": "b"}, "values": logfmt},
    ]});
    push_json_ok(&s, body, Some("t1")).await;

    let iso = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let (start, end) = (now - 3_600 * second, now + 60 * second);
    let ask = |query: &str, step: &str| {
        vec![
            ("end", iso(end)),
            ("query", query.to_string()),
            ("start", iso(start)),
            ("step", step.to_string()),
        ]
    };
    let (status, got) = s
        .get_json(
            "/loki/api/v1/patterns",
            &ask(r#"{service_name="checkout"}"#, "5s"),
            Some("t1"),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"], "success");
    let data = got["data"].as_array().expect("data");
    let found: Vec<(String, String, i64)> = data
        .iter()
        .map(|p| {
            let samples = p["samples"].as_array().expect("samples");
            for sample in samples {
                let t = sample[0].as_i64().expect("integer seconds");
                assert!(sample[1].is_u64(), "integer count: {sample}");
                // A 5s step is a 10s one (the buckets' size), epoch-aligned.
                assert_eq!(t % 10, 0, "{sample}");
                assert!(t >= start / second - 10 && t <= end / second, "{sample}");
            }
            let total = samples.iter().filter_map(|x| x[1].as_i64()).sum();
            (
                p["pattern"].as_str().unwrap_or_default().to_string(),
                p["level"].as_str().unwrap_or_default().to_string(),
                total,
            )
        })
        .collect();
    // The rare pattern (10 lines) is left out, the rest most frequent first.
    assert_eq!(
        found,
        [
            ("GET <_> 200 in <_>".to_string(), "unknown".to_string(), 60),
            (
                r#"level=error msg="payment failed" order=<_> code=<_>"#.to_string(),
                "error".to_string(),
                40
            ),
        ]
    );

    // Drilldown's next request: the lines of a pattern.
    let (status, lines) = s
        .get_json(
            "/loki/api/v1/query_range",
            &[
                (
                    "query",
                    r#"{service_name="checkout"} |> "GET <_> 200 in <_>""#.to_string(),
                ),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("limit", "1000".to_string()),
            ],
            Some("t1"),
        )
        .await;
    assert_eq!(status, 200, "{lines}");
    let n: usize = lines["data"]["result"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(n, 60);

    // Patterns cover the last three hours, as Loki's: an older range is empty.
    let old = [
        ("end", iso(now - 4 * 3_600 * second)),
        ("query", r#"{service_name="checkout"}"#.to_string()),
        ("start", iso(now - 5 * 3_600 * second)),
    ];
    let (status, none) = s.get_json("/loki/api/v1/patterns", &old, Some("t1")).await;
    assert_eq!(
        (status, &none["data"]),
        (200, &serde_json::json!([])),
        "{none}"
    );
    // Another tenant sees nothing; refusals say why.
    let (_, other) = s
        .get_json(
            "/loki/api/v1/patterns",
            &ask(r#"{service_name="checkout"}"#, "5s"),
            Some("t2"),
        )
        .await;
    assert_eq!(other["data"], serde_json::json!([]));
    for (params, why) in [
        (
            ask(r#"{service_name="checkout"} |= "GET""#, "5s"),
            "only label matchers are supported",
        ),
        (ask(r#"{service_name="checkout"}"#, "0"), "step"),
        (ask(r#"{service_name="checkout"}"#, "0.1s"), "11,000 points"),
        (ask("{", "5s"), ""),
    ] {
        let (status, body) = s
            .get_json("/loki/api/v1/patterns", &params, Some("t1"))
            .await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(body.to_string().contains(why), "{params:?}: {body}");
    }
}

/// Levels are discovered at ingestion as Loki does (`detected_level`
/// structured metadata), so Logs Drilldown's level breakdown query groups
/// by them; a level the client sent is kept.
#[tokio::test]
async fn log_levels_are_discovered_at_ingestion_for_drilldowns_level_query() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &[]).await;
    let now = crate::common::now_ms() * 1_000_000;
    let ts = |i: i64| (now - (60 - i) * 1_000_000_000).to_string();
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "lv"}, "values": [
            [ts(1), r#"{"level":"ERR","msg":"payment failed"}"#],
            [ts(2), "level=Warning msg=\"disk almost full\""],
            [ts(3), "[ERROR] could not load info"],
            [ts(4), "2024-01-01 DEBUG: cache miss"],
            [ts(5), "plain line"],
            [ts(6), "client says", {"detected_level": "fatal"}],
        ]},
        {"stream": {"app": "lv", "level": "debug"}, "values": [[ts(7), "anything ERROR"]]},
    ]});
    push_json_ok(&s, body, None).await;
    let (status, got) = s
        .get_json(
            "/loki/api/v1/query",
            &[
                ("query", r#"sum by (detected_level) (count_over_time({app="lv"} | drop __error__ [5m]))"#.to_string()),
                ("time", (now + 1_000_000_000).to_string()),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{got}");
    let mut levels: Vec<(String, String)> = got["data"]["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|r| {
            (
                r["metric"]["detected_level"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["value"][1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    levels.sort();
    assert_eq!(
        levels,
        [
            ("debug", "2"),
            ("error", "1"),
            ("fatal", "1"),
            ("info", "1"),
            ("unknown", "1"),
            ("warn", "1"),
        ]
        .map(|(l, n)| (l.to_string(), n.to_string()))
    );
}

/// `/loki/api/v1/format_query` as Grafana's Loki query editor calls it:
/// queries come back in Loki's printed form, long ones over lines, and
/// each formatted query answers exactly as the query it came from.
#[tokio::test]
async fn format_query_prints_as_loki_and_keeps_the_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &[]).await;
    let now = crate::common::now_ms() * 1_000_000;
    let values: Vec<serde_json::Value> = (0..20i64)
        .map(|i| {
            serde_json::json!([
                (now - (30 - i) * 1_000_000_000).to_string(),
                format!(
                    "level={} msg=\"GET /api/{i}\" took={}ms size={}KB",
                    ["info", "error"][i as usize % 2],
                    i * 10,
                    i
                )
            ])
        })
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"app": "fmt", "env": "prod"}, "values": values}]});
    push_json_ok(&s, body, None).await;
    let format = |q: &str| {
        let q = q.to_string();
        let s = &s;
        async move {
            s.get_json("/loki/api/v1/format_query", &[("query", q)], None)
                .await
        }
    };
    let (status, got) = format(r#"{app="fmt",env=   "prod"}|="GET"|logfmt|took>=50ms"#).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got,
        serde_json::json!({"status": "success", "data": r#"{app="fmt", env="prod"} |= "GET" | logfmt | took>=50ms"#})
    );
    let (_, long) = format(r#"sum by (level) (count_over_time({app="fmt", env="prod"} |= "GET" | logfmt | size > 5KB | took >= 20ms [5m]))"#).await;
    assert_eq!(
        long["data"],
        // Only the aggregation is longer than 100 bytes: its argument fits.
        "sum by (level)(\n  count_over_time({app=\"fmt\", env=\"prod\"} |= \"GET\" | logfmt | size>5.0kB | took>=20ms[5m])\n)"
    );
    for query in [
        r#"{app="fmt"} |> "level=<_> msg=<_>" | logfmt | level="error" or took>150ms"#,
        r#"{app="fmt"} != "api/3" | logfmt | line_format "{{.level}}: {{.msg}}""#,
        r#"sum by (level) (count_over_time({app="fmt", env="prod"} |= "GET" | logfmt | size > 5KB | took >= 20ms [5m]))"#,
        r#"sum(rate({app="fmt"}[1m])) / on() count(count_over_time({app="fmt"}[1m])) > bool 0"#,
    ] {
        let (status, formatted) = format(query).await;
        assert_eq!(status, 200, "{query}: {formatted}");
        let formatted = formatted["data"].as_str().expect("text").to_string();
        let run = |q: String| {
            let s = &s;
            async move {
                let (status, j) = s
                    .get_json(
                        "/loki/api/v1/query_range",
                        &[
                            ("query", q),
                            ("start", (now - 60_000_000_000).to_string()),
                            ("end", now.to_string()),
                            ("step", "10".to_string()),
                        ],
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{j}");
                j["data"]["result"].clone()
            }
        };
        let (a, b) = (run(query.to_string()).await, run(formatted.clone()).await);
        assert_eq!(a, b, "{query}\nformatted as\n{formatted}");
        assert!(a.as_array().is_some_and(|r| !r.is_empty()), "{query}: {a}");
    }
    let (status, bad) = format(r#"{app="fmt""#).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["status"], "invalid-query");
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.contains("parse error")),
        "{bad}"
    );
    let (status, huge) = format(&format!(r#"{{app="{}"}}"#, "x".repeat(20_000))).await;
    assert_eq!(status, 400, "{huge}");
}

/// Lines that stress how log blocks split lines into templates and
/// variables (the stand-in bytes themselves, timestamps at the calendar's
/// edges, hundreds of numbers, a 200 kB line of digits, non-ASCII text)
/// come back byte for byte from a Parquet log block, through every kind of
/// line filter, and the process stays up.
#[tokio::test]
async fn awkward_lines_come_back_exact_from_log_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Strata::start(
        dir.path(),
        &[
            "-blocks-storage.tsdb.block-ranges-period=2s",
            "-blocks-storage.tsdb.head-compaction-interval=300ms",
            "-ingester.max-chunk-age=2s",
        ],
    )
    .await;
    let base = (now_ms() / 1000 - 120) * S;
    let numbers: Vec<String> = (0..400).map(|i| format!("n{i}")).collect();
    let lines: Vec<String> = vec![
        "holds \u{11} and \u{12} and 42".to_string(),
        "\u{12}\u{e000}2026-12-07T08:00:01Z".to_string(),
        "at 1970-01-01T00:00:00Z and 2200-12-31T23:59:59.999999999Z error".to_string(),
        "9999-12-31T23:59:59Z 2026-02-30T08:00:01Z 2026-12-07 08:00:01,5".to_string(),
        format!("{} error", numbers.join(" ")),
        "9".repeat(200_000),
        "ünïcödé 5 ✓ error7 x9y".to_string(),
        String::new(),
    ];
    let values: Vec<Json> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!([(base + i as i64 * S).to_string(), l]))
        .collect();
    let body = json!({"streams": [{"stream": {"app": "odd"}, "values": values}]});
    let (st, body) = push(
        &s,
        body.to_string().into_bytes(),
        "application/json",
        false,
        None,
    )
    .await;
    assert_eq!(st, 204, "{body}");
    wait_for_log_block(&s).await;
    let end = (now_ms() + 60_000) * 1_000_000;
    type Keeps = fn(&str) -> bool;
    let cases: [(&str, Keeps); 6] = [
        ("", |_| true),
        (r#" |= "error""#, |l| l.contains("error")),
        (r#" != "error""#, |l| !l.contains("error")),
        (r#" |= "T23:59""#, |l| l.contains("T23:59")),
        (r#" |~ "n39[0-9] e""#, |l| l.contains("n399 e")),
        (r#" |= "99999999""#, |l| l.contains("99999999")),
    ];
    for (filter, keeps) in cases {
        let q = format!(r#"{{app="odd"}}{filter}"#);
        let got: Vec<String> = query_lines(&s, &q, base, end, "forward", 100)
            .await
            .into_iter()
            .map(|x| x.2)
            .collect();
        let want: Vec<String> = lines.iter().filter(|l| keeps(l)).cloned().collect();
        assert_eq!(got, want, "{q}");
    }
}

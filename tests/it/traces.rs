//! Strata's own traces: a distributed cluster exports its spans over OTLP
//! (configured only by the standard OTEL_* variables) to a receiver made of
//! a few lines of Python and the OpenTelemetry project's proto classes. One
//! remote-write and one query, each sent with a W3C `traceparent`, must each
//! be one trace through the processes they touch, with every ingester span a
//! child of a distributor or querier span, and the trace id in the logs; a
//! query through the query-frontend is one trace through frontend, querier
//! and ingesters.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::cluster::Cluster;
use crate::common::{Strata, encode, free_port, now_ms, series};

struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spans the receiver wrote so far, one JSON object each.
fn spans(path: &std::path::Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_and_a_query_are_each_one_trace_across_the_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let out = tmp.path().join("spans.jsonl");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients/otlp_trace_receiver.py");
    let _receiver = Receiver(
        Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 with opentelemetry-proto (the README test command installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the OTLP receiver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cluster = Cluster::in_dir(tmp.path())
        .with_env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{port}"),
        )
        .with_env("OTEL_BSP_SCHEDULE_DELAY", "200")
        // Short blocks, cut and synced at once: a query of an older range
        // reads blocks through the store-gateways.
        .with_args(
            "-blocks-storage.tsdb.block-ranges-period=5m -blocks-storage.tsdb.head-compaction-interval=200ms \
             -blocks-storage.bucket-store.sync-interval=1s",
        );
    cluster.run("start");
    let client = reqwest::Client::new();

    // Samples of three hours ago, pushed first (a head accepts them only
    // before newer ones), end up in blocks once the traced sample at now
    // moves the heads past them; the store-gateways serve those blocks.
    let old = (now_ms() - 3 * 3_600_000) / 60_000 * 60_000;
    let pts: Vec<(i64, f64)> = (0..30).map(|i| (old + i * 60_000, 2.0)).collect();
    let r = client
        .post(cluster.url("distributor-1", "/api/v1/push"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(encode(vec![series(&[("__name__", "traced_old")], &pts)]))
        .send()
        .await
        .expect("push old samples");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );

    let write_trace = "5e1f0c0ffee00000000000000000a001";
    let write_parent = "00f067aa0ba902b7";
    let now = now_ms();
    let r = client
        .post(cluster.url("distributor-1", "/api/v1/push"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("traceparent", format!("00-{write_trace}-{write_parent}-01"))
        .body(encode(vec![series(
            &[("__name__", "traced"), ("job", "t")],
            &[(now, 1.0)],
        )]))
        .send()
        .await
        .expect("push");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );

    let query_trace = "5e1f0c0ffee00000000000000000a002";
    let r = client
        .get(cluster.url("querier", "/prometheus/api/v1/query"))
        .query(&[("query", "traced")])
        .header(
            "traceparent",
            format!("00-{query_trace}-00f067aa0ba902b8-01"),
        )
        .send()
        .await
        .expect("query");
    let answer: Json = r.json().await.expect("JSON");
    assert_eq!(
        answer["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );

    // Through the query-frontend: the querier continues the frontend's
    // span (not the caller's), so the trace shows the queue hop.
    let frontend_trace = "5e1f0c0ffee00000000000000000a003";
    let frontend_parent = "00f067aa0ba902b9";
    let r = client
        .get(cluster.url("query-frontend", "/prometheus/api/v1/query_range"))
        .query(&[
            ("query", "sum(traced)".to_string()),
            ("start", ((now - 60_000) / 1000).to_string()),
            ("end", (now / 1000 + 1).to_string()),
            ("step", "15".to_string()),
        ])
        .header(
            "traceparent",
            format!("00-{frontend_trace}-{frontend_parent}-01"),
        )
        .send()
        .await
        .expect("query through the frontend");
    let answer: Json = r.json().await.expect("JSON");
    assert_eq!(answer["status"], "success", "{answer}");

    // A LogQL query: its statistics line carries its trace id too.
    let logql_trace = "5e1f0c0ffee00000000000000000a005";
    let r = client
        .get(cluster.url("querier", "/loki/api/v1/query_range"))
        .query(&[
            ("query", "count_over_time({job=\"t\"}[1m])".to_string()),
            ("start", ((now - 60_000) / 1000).to_string()),
            ("end", (now / 1000 + 1).to_string()),
        ])
        .header(
            "traceparent",
            format!("00-{logql_trace}-00f067aa0ba902bb-01"),
        )
        .send()
        .await
        .expect("LogQL query");
    let answer: Json = r.json().await.expect("JSON");
    assert_eq!(answer["status"], "success", "{answer}");

    let owned = async |gateway: &str| -> f64 {
        let url = cluster.url(gateway, "/metrics");
        Strata::metric_at(&client, &url, "strata_storegateway_owned_blocks").await
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while owned("store-gateway-1").await + owned("store-gateway-2").await == 0.0 {
        assert!(
            Instant::now() < deadline,
            "no block reached a store-gateway"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let store_trace = "5e1f0c0ffee00000000000000000a004";
    let r = client
        .get(cluster.url("querier", "/prometheus/api/v1/query_range"))
        .query(&[
            ("query", "traced_old".to_string()),
            ("start", (old / 1000).to_string()),
            ("end", ((old + 29 * 60_000) / 1000).to_string()),
            ("step", "60".to_string()),
        ])
        .header(
            "traceparent",
            format!("00-{store_trace}-00f067aa0ba902ba-01"),
        )
        .send()
        .await
        .expect("query of blocks");
    let answer: Json = r.json().await.expect("JSON");
    assert_eq!(answer["status"], "success", "{answer}");

    // Wait for both traces to reach the receiver: the write through the
    // distributor into the three ingesters (RF 3), the query through the
    // querier into the ingesters.
    let of = |spans: &[Json], trace: &str| -> Vec<Json> {
        spans
            .iter()
            .filter(|s| s["trace_id"] == trace)
            .cloned()
            .collect()
    };
    let instances = |spans: &[Json]| -> BTreeSet<String> {
        spans
            .iter()
            .filter_map(|s| s["instance"].as_str().map(String::from))
            .collect()
    };
    // Each process exports on its own schedule: a gateway's request span
    // may arrive before the querier span it continues.
    let gateway_parents_arrived = |spans: &[Json]| -> bool {
        let querier: BTreeSet<&str> = spans
            .iter()
            .filter(|s| s["instance"] == "querier")
            .filter_map(|s| s["span_id"].as_str())
            .collect();
        spans
            .iter()
            .filter(|s| {
                s["instance"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("store-gateway"))
                    && s["name"] == "grpc_request"
            })
            .all(|s| querier.contains(s["parent_span_id"].as_str().unwrap_or_default()))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (write, query, through, store) = loop {
        let all = spans(&out);
        let (w, q, f, g) = (
            of(&all, write_trace),
            of(&all, query_trace),
            of(&all, frontend_trace),
            of(&all, store_trace),
        );
        let (wi, qi, fi, gi) = (instances(&w), instances(&q), instances(&f), instances(&g));
        let ingesters =
            |i: &BTreeSet<String>| i.iter().filter(|x| x.starts_with("ingester")).count();
        if wi.contains("distributor-1")
            && ingesters(&wi) == 3
            && qi.contains("querier")
            && ingesters(&qi) >= 2
            && fi.contains("query-frontend")
            && fi.contains("querier")
            && ingesters(&fi) >= 2
            && gi.iter().any(|i| i.starts_with("store-gateway"))
            && gateway_parents_arrived(&g)
        {
            break (w, q, f, g);
        }
        assert!(
            Instant::now() < deadline,
            "write trace in {wi:?}, query trace in {qi:?}, frontend query trace in {fi:?}, \
             block query trace in {gi:?} (gateway spans' querier parents received: {}); \
             {} spans received",
            gateway_parents_arrived(&g),
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    for (trace, spans, entry, entry_parent) in [
        (write_trace, &write, "distributor-1", Some(write_parent)),
        (query_trace, &query, "querier", None),
    ] {
        assert!(
            spans.iter().all(|s| s["service"] == "strata"),
            "service.name defaults to strata: {spans:?}"
        );
        // The entry span continues the caller's span.
        let http = spans
            .iter()
            .find(|s| s["instance"] == entry && s["name"] == "http_request")
            .unwrap_or_else(|| panic!("{trace}: no http_request span of {entry}: {spans:?}"));
        if let Some(parent) = entry_parent {
            assert_eq!(http["parent_span_id"], parent, "{http}");
        }
        // Every ingester span is a child of a span of the entry process.
        let entry_ids: BTreeSet<&str> = spans
            .iter()
            .filter(|s| s["instance"] == entry)
            .filter_map(|s| s["span_id"].as_str())
            .collect();
        for s in spans.iter().filter(|s| {
            s["instance"]
                .as_str()
                .is_some_and(|i| i.starts_with("ingester"))
        }) {
            if s["name"] == "grpc_request" {
                let parent = s["parent_span_id"].as_str().unwrap_or_default();
                assert!(
                    entry_ids.contains(parent),
                    "{trace}: {s} has a parent outside {entry}"
                );
            }
        }
        assert!(
            spans
                .iter()
                .any(|s| s["name"] == "grpc_request" && s["target"] == "ingester"),
            "{trace}: {spans:?}"
        );
    }

    // The frontend's span continues the caller's; the querier's request
    // span is a child of a frontend span.
    let frontend_span = through
        .iter()
        .find(|s| s["instance"] == "query-frontend" && s["name"] == "query_frontend")
        .unwrap_or_else(|| panic!("no query_frontend span: {through:?}"));
    assert_eq!(
        frontend_span["parent_span_id"], frontend_parent,
        "{frontend_span}"
    );
    let frontend_ids: BTreeSet<&str> = through
        .iter()
        .filter(|s| s["instance"] == "query-frontend")
        .filter_map(|s| s["span_id"].as_str())
        .collect();
    let querier_http = through
        .iter()
        .find(|s| s["instance"] == "querier" && s["name"] == "http_request")
        .unwrap_or_else(|| panic!("no querier http_request span: {through:?}"));
    assert!(
        frontend_ids.contains(querier_http["parent_span_id"].as_str().unwrap_or_default()),
        "the querier's span is no child of the frontend's: {querier_http}"
    );

    // The block query's gateway spans are children of the querier's.
    let querier_ids: BTreeSet<&str> = store
        .iter()
        .filter(|s| s["instance"] == "querier")
        .filter_map(|s| s["span_id"].as_str())
        .collect();
    let gateway_requests: Vec<&Json> = store
        .iter()
        .filter(|s| {
            s["instance"]
                .as_str()
                .is_some_and(|i| i.starts_with("store-gateway"))
                && s["name"] == "grpc_request"
        })
        .collect();
    assert!(!gateway_requests.is_empty(), "{store:?}");
    for s in gateway_requests {
        assert!(
            querier_ids.contains(s["parent_span_id"].as_str().unwrap_or_default()),
            "a store-gateway span with a parent outside the querier: {s}"
        );
    }

    // The trace ids reach the logs: the query-stats lines of the querier
    // (PromQL and LogQL) and of the query-frontend.
    for (process, trace) in [
        ("querier", query_trace),
        ("querier", logql_trace),
        ("query-frontend", frontend_trace),
    ] {
        let log = cluster.log(process);
        assert!(
            log.lines()
                .any(|l| l.contains("query stats") && l.contains(trace)),
            "no query stats line with {trace} in the {process} log:\n{log}"
        );
    }
    cluster.run("stop");
}

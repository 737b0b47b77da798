//! OTLP metrics and logs over real HTTP: the OpenTelemetry Python SDK's own OTLP/HTTP
//! exporter (protobuf, gzip) sends a counter, an up-down counter, a
//! histogram with an exemplar and a gauge; the series are queried back by
//! the names and labels Prometheus 3's translation rules give (written out
//! here from the rules, not from Strata's output). OTLP/JSON bodies, what
//! Strata cannot store (delta temporality, exponential histograms), bad
//! bodies and limits get OTLP's `google.rpc.Status` answers with Mimir's
//! status codes, and nothing already accepted is lost.

use std::path::Path;
use std::process::Command;

use prost::Message;
use serde_json::Value as Json;
use strata_otlp::Status;

use crate::common::{Strata, now_ms, secs};

/// One instant query's vector as (labels, value) for `tenant`, now.
async fn vector(s: &Strata, q: &str, tenant: &str) -> Vec<(Json, f64)> {
    vector_at(s, q, tenant, now_ms()).await
}

async fn vector_at(s: &Strata, q: &str, tenant: &str, t_ms: i64) -> Vec<(Json, f64)> {
    let (status, j) = s
        .get_json(
            "/api/v1/query",
            &[("query", q.to_string()), ("time", secs(t_ms))],
            Some(tenant),
        )
        .await;
    assert_eq!(status, 200, "{q}: {j}");
    j["data"]["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|r| {
            let v: f64 = r["value"][1]
                .as_str()
                .expect("value")
                .parse()
                .expect("float");
            (r["metric"].clone(), v)
        })
        .collect()
}

async fn value(s: &Strata, q: &str, tenant: &str) -> f64 {
    let v = vector(s, q, tenant).await;
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v[0].1
}

/// Posts an OTLP body; returns the status, the Content-Type and the body.
async fn post(
    s: &Strata,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
    tenant: &str,
) -> (u16, String, Vec<u8>) {
    let mut req = s
        .client
        .post(s.url(path))
        .header("Content-Type", content_type)
        .header("X-Scope-OrgID", tenant)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("Content-Encoding", e);
    }
    let r = req.send().await.expect("OTLP post");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, r.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn opentelemetry_sdk_metrics_are_queried_by_prometheus_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-auth.multitenancy-enabled=true"]).await;
    let trace_id = run_sdk_script("otlp_metrics.py", &s.url("/otlp/v1/metrics"), "team-a");
    assert_eq!(trace_id.len(), 32, "the client prints its span's trace id");

    let t = "team-a";
    let id = r#"job="shop/checkout",instance="pod-7""#;
    assert_eq!(
        value(
            &s,
            &format!(r#"http_server_requests_total{{{id},http_route="/cart"}}"#),
            t
        )
        .await,
        5.0
    );
    assert_eq!(value(&s, &format!("queue_depth{{{id}}}"), t).await, 3.0);
    assert_eq!(
        value(
            &s,
            &format!(r#"memory_utilization_ratio{{{id},pool="heap"}}"#),
            t
        )
        .await,
        0.25
    );
    let h = "http_server_duration_milliseconds";
    for (le, count) in [
        ("0", 0.0),
        ("5", 1.0),
        ("50", 2.0),
        ("500", 2.0),
        ("750", 3.0),
        ("+Inf", 3.0),
    ] {
        assert_eq!(
            value(
                &s,
                &format!(r#"{h}_bucket{{{id},http_route="/cart",le="{le}"}}"#),
                t
            )
            .await,
            count,
            "bucket le={le}"
        );
    }
    assert_eq!(value(&s, &format!("{h}_count{{{id}}}"), t).await, 3.0);
    assert_eq!(value(&s, &format!("{h}_sum{{{id}}}"), t).await, 743.0);
    assert_eq!(
        value(
            &s,
            &format!(r#"histogram_quantile(0.5, {h}_bucket{{{id}}})"#),
            t
        )
        .await,
        37.5,
        "the median of 3, 40, 700, interpolated in the (25, 50] bucket"
    );

    // The resource's other attributes are on target_info, the SDK's own
    // telemetry.sdk.* among them.
    let info = vector(&s, &format!("target_info{{{id}}}"), t).await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].0["deployment_environment"], "test");
    assert_eq!(info[0].0["telemetry_sdk_language"], "python");
    assert!(info[0].0.get("service_name").is_none(), "{info:?}");

    // Metadata: type, description as help, unit spelled out.
    let (status, meta) = s.get_json("/api/v1/metadata", &[], Some(t)).await;
    assert_eq!(status, 200);
    let entry = |name: &str| meta["data"][name][0].clone();
    assert_eq!(entry("http_server_requests_total")["type"], "counter");
    assert_eq!(
        entry("http_server_requests_total")["help"],
        "Requests served."
    );
    assert_eq!(entry(h)["type"], "histogram");
    assert_eq!(entry(h)["unit"], "milliseconds");
    assert_eq!(entry("queue_depth")["type"], "gauge");
    assert_eq!(entry("memory_utilization_ratio")["type"], "gauge");
    assert_eq!(entry("target_info")["help"], "Target metadata");

    // The histogram sample recorded in the span carries its trace id, on
    // the bucket its value falls in.
    let now = now_ms();
    let (status, ex) = s
        .get_json(
            "/api/v1/query_exemplars",
            &[
                ("query", format!("{h}_bucket")),
                ("start", secs(now - 600_000)),
                ("end", secs(now + 60_000)),
            ],
            Some(t),
        )
        .await;
    assert_eq!(status, 200, "{ex}");
    let series = ex["data"].as_array().expect("exemplar series");
    assert_eq!(series.len(), 1, "{ex}");
    assert_eq!(series[0]["seriesLabels"]["le"], "750");
    let e = &series[0]["exemplars"][0];
    assert_eq!(e["labels"]["trace_id"], trace_id.as_str());
    assert_eq!(e["value"], "700");

    // Tenants stay apart.
    assert!(
        vector(&s, "http_server_requests_total", "team-b")
            .await
            .is_empty()
    );
}

/// An OTLP/JSON request (the encoding of the OTLP specification: hex ids,
/// 64-bit integers as strings) holding a cumulative counter, a delta
/// counter and an exponential histogram (only the first when not `refused`).
fn json_request(t_ns: i64, refused: bool) -> String {
    let refused = if refused {
        format!(
            r#",
            {{"name":"payments","sum":{{"aggregationTemporality":1,"isMonotonic":true,
              "dataPoints":[{{"timeUnixNano":"{t_ns}","asInt":"1"}},{{"timeUnixNano":"{t_ns}","asInt":"2"}}]}}}},
            {{"name":"latency","unit":"s","exponentialHistogram":{{"aggregationTemporality":2,
              "dataPoints":[{{"timeUnixNano":"{t_ns}","count":"1","scale":0}}]}}}}"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[
            {{"key":"service.name","value":{{"stringValue":"billing"}}}}]}},
          "scopeMetrics":[{{"scope":{{"name":"billing.lib"}},"metrics":[
            {{"name":"invoices.sent","unit":"{{invoice}}","sum":{{"aggregationTemporality":2,"isMonotonic":true,
              "dataPoints":[{{"timeUnixNano":"{t_ns}","asInt":"42","attributes":[{{"key":"region","value":{{"stringValue":"eu"}}}}]}}]}}}}{refused}
          ]}}]}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_json_bad_bodies_and_limits_get_status_answers() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = "overrides:\n  slow:\n    ingestion_rate: 1\n    ingestion_burst_size: 1\n  mimir-names:\n    otel_translation_strategy: UnderscoreEscapingWithoutSuffixes\n    promote_otel_resource_attributes: service.name\n";
    let s = Strata::start_with_overrides(
        dir.path(),
        overrides,
        &["-distributor.max-recv-msg-size=1048576"],
    )
    .await;
    let t = "tenant-1";
    let t_ns = now_ms() * 1_000_000;
    let json = "application/json";

    // The cumulative counter is stored; the delta counter and the
    // exponential histogram are refused by name (400), as a JSON Status.
    let (status, ct, body) = post(
        &s,
        "/api/v1/otlp/v1/metrics",
        json,
        None,
        json_request(t_ns, true).into_bytes(),
        t,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(ct, json);
    let answer: Json = serde_json::from_slice(&body).expect("a JSON google.rpc.Status");
    assert_eq!(answer["code"], 3, "INVALID_ARGUMENT: {answer}");
    let msg = answer["message"].as_str().unwrap();
    assert!(
        msg.contains("accepted 1 samples, rejected 3 samples"),
        "{msg}"
    );
    assert!(msg.contains("\"payments\" has delta temporality"), "{msg}");
    assert!(msg.contains("exponential histogram \"latency\""), "{msg}");
    assert_eq!(
        value(&s, r#"invoices_sent_total{job="billing",region="eu"}"#, t).await,
        42.0
    );

    // The tenant's own translation settings: Mimir's names, a promoted attribute.
    let (status, _, body) = post(
        &s,
        "/otlp/v1/metrics",
        json,
        None,
        json_request(t_ns, true).into_bytes(),
        "mimir-names",
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        value(
            &s,
            r#"invoices_sent{job="billing",service_name="billing"}"#,
            "mimir-names"
        )
        .await,
        42.0
    );

    // A fully accepted request: 200 with an empty ExportMetricsServiceResponse.
    let good = json_request(t_ns + 1_000_000_000, false);
    let (status, ct, body) = post(
        &s,
        "/otlp/v1/metrics",
        json,
        None,
        good.clone().into_bytes(),
        t,
    )
    .await;
    assert_eq!(
        (status, ct.as_str()),
        (200, json),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        serde_json::from_slice::<Json>(&body).unwrap(),
        serde_json::json!({})
    );

    // Bad bodies: a protobuf Status unless the request said JSON.
    let proto = "application/x-protobuf";
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16)> = vec![
        (proto, None, vec![0xff, 0xff, 0xff, 0xff], 400),
        (json, None, b"{\"resourceMetrics\": 7}".to_vec(), 400),
        (proto, Some("gzip"), b"not gzip".to_vec(), 400),
        (proto, Some("br"), Vec::new(), 415),
        ("text/plain", None, b"up 1".to_vec(), 415),
        // One byte over -distributor.max-recv-msg-size.
        (proto, None, vec![0; (1 << 20) + 1], 413),
    ];
    for (ct, enc, body, want) in cases {
        let (status, answer_ct, answer) = post(&s, "/otlp/v1/metrics", ct, enc, body, t).await;
        assert_eq!(
            status,
            want,
            "{ct} {enc:?}: {}",
            String::from_utf8_lossy(&answer)
        );
        let status_msg = if answer_ct == json {
            let j: Json = serde_json::from_slice(&answer).unwrap();
            j["message"].as_str().unwrap().to_string()
        } else {
            assert_eq!(answer_ct, proto);
            Status::decode(answer.as_slice())
                .expect("a protobuf google.rpc.Status")
                .message
        };
        assert!(!status_msg.is_empty(), "{ct} {enc:?}: an empty message");
    }

    // A small body that would expand into far more series labels than its
    // size (long attributes on 2,000 buckets): 413, nothing stored.
    let attributes: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"key":"a{i}","value":{{"stringValue":"{}"}}}}"#,
                "v".repeat(1000)
            )
        })
        .collect();
    let bounds: Vec<String> = (0..2000).map(|b| b.to_string()).collect();
    let counts: Vec<&str> = vec![r#""0""#; 2001];
    let bomb = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"bomb","histogram":{{"aggregationTemporality":2,
          "dataPoints":[{{"timeUnixNano":"{t_ns}","count":"0","attributes":[{}],"explicitBounds":[{}],"bucketCounts":[{}]}}]}}}}]}}]}}]}}"#,
        attributes.join(","),
        bounds.join(","),
        counts.join(",")
    );
    let (status, _, body) = post(&s, "/otlp/v1/metrics", json, None, bomb.into_bytes(), t).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let answer: Json = serde_json::from_slice(&body).unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("expands to more than"),
        "{answer}"
    );
    assert!(vector(&s, "bomb_count", t).await.is_empty());

    // Over the tenant's ingestion rate (1/s, burst 1): 429, RESOURCE_EXHAUSTED.
    let mut limited = None;
    for _ in 0..3 {
        let (status, _, body) = post(
            &s,
            "/otlp/v1/metrics",
            json,
            None,
            good.clone().into_bytes(),
            "slow",
        )
        .await;
        if status != 200 {
            limited = Some((status, body));
            break;
        }
    }
    let (status, body) = limited.expect("the second push within a second is limited");
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let answer: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["code"], 8);

    // Nothing accepted was lost to the refused requests.
    let both = vector_at(
        &s,
        r#"count_over_time(invoices_sent_total{job="billing"}[10m])"#,
        t,
        now_ms() + 5000,
    )
    .await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].1, 2.0);
}

fn run_sdk_script(script: &str, endpoint: &str, tenant: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients")
        .join(script);
    let out = Command::new("python3")
        .arg(&script)
        .arg(endpoint)
        .arg(tenant)
        .output()
        .expect("run python3 (test.sh installs the OpenTelemetry SDK into .venv)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", script.display());
    assert!(
        !stderr.contains("Failed to export"),
        "the exporter reported a failed export: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The lines a LogQL log query returns for `tenant` over the last 10 minutes.
async fn lines(s: &Strata, q: &str, tenant: &str) -> Vec<String> {
    let now_ns = now_ms() * 1_000_000;
    let (status, j) = s
        .get_json(
            "/loki/api/v1/query_range",
            &[
                ("query", q.to_string()),
                ("start", (now_ns - 600_000_000_000).to_string()),
                ("end", (now_ns + 60_000_000_000).to_string()),
                ("direction", "forward".to_string()),
            ],
            Some(tenant),
        )
        .await;
    assert_eq!(status, 200, "{q}: {j}");
    let mut out: Vec<(String, String)> = Vec::new();
    for stream in j["data"]["result"].as_array().expect("streams") {
        for v in stream["values"].as_array().expect("values") {
            out.push((
                v[0].as_str().expect("ts").to_string(),
                v[1].as_str().expect("line").to_string(),
            ));
        }
    }
    out.sort();
    out.into_iter().map(|(_, line)| line).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn opentelemetry_sdk_logs_are_queried_with_loki_labels() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-auth.multitenancy-enabled=true"]).await;
    let t = "team-a";
    let trace_id = run_sdk_script("otlp_logs.py", &s.url("/otlp/v1/logs"), t);
    assert_eq!(trace_id.len(), 32);

    // service.name and k8s.pod.name are stream labels (Loki's defaults);
    // host.name is structured metadata, as are the record's severity,
    // trace id, attributes and scope.
    assert_eq!(
        lines(&s, r#"{service_name="checkout", k8s_pod_name="pod-7"}"#, t).await,
        vec!["payment failed for order 42", "payment retried"]
    );
    assert!(lines(&s, r#"{host_name="node-a"}"#, t).await.is_empty());
    assert_eq!(
        lines(
            &s,
            &format!(r#"{{service_name="checkout"}} | trace_id="{trace_id}""#),
            t
        )
        .await,
        vec!["payment failed for order 42"]
    );
    assert_eq!(
        lines(
            &s,
            r#"{service_name="checkout"} | severity_text="WARN" | severity_number="13" | order_id="42" | host_name="node-a" | scope_name="shop.payments""#,
            t
        )
        .await,
        vec!["payment failed for order 42"]
    );
    assert!(
        lines(&s, r#"{service_name="checkout"}"#, "team-b")
            .await
            .is_empty()
    );

    // OTLP/JSON by hand: a map body is the line as JSON; no service.name
    // gives service_name from the other labels.
    let now_ns = now_ms() * 1_000_000;
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"k8s.container.name","value":{{"stringValue":"web"}}}}]}},
          "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{now_ns}","severityText":"ERROR",
            "body":{{"kvlistValue":{{"values":[{{"key":"msg","value":{{"stringValue":"boom"}}}},{{"key":"code","value":{{"intValue":"500"}}}}]}}}}}}]}}]}}]}}"#
    );
    let (status, ct, answer) = post(
        &s,
        "/otlp/v1/logs",
        "application/json",
        None,
        body.into_bytes(),
        t,
    )
    .await;
    assert_eq!(
        (status, ct.as_str()),
        (200, "application/json"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        lines(&s, r#"{service_name="web", k8s_container_name="web"}"#, t).await,
        vec![r#"{"code":500,"msg":"boom"}"#]
    );

    // A key that gives no label name refuses the request (400, as Loki).
    let bad = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"...","value":{"stringValue":"x"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#;
    let (status, _, answer) = post(
        &s,
        "/otlp/v1/logs",
        "application/json",
        None,
        bad.as_bytes().to_vec(),
        t,
    )
    .await;
    assert_eq!(status, 400);
    let answer: Json = serde_json::from_slice(&answer).unwrap();
    assert!(
        answer["message"].as_str().unwrap().contains("\"...\""),
        "{answer}"
    );
    let (status, _, _) = post(&s, "/otlp/v1/logs", "text/plain", None, b"x".to_vec(), t).await;
    assert_eq!(status, 415);
}

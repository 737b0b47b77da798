//! Remote-write in, Prometheus API out: exact values, validation errors with
//! their status codes, tenant isolation, and API error shapes.

use serde_json::json;

use crate::common::{Strata, encode, now_ms, secs, series};

#[tokio::test]
async fn pushed_samples_come_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &[]).await;
    let t0 = now_ms() - 60_000;
    let samples: Vec<(i64, f64)> = (0..30).map(|i| (t0 + i * 1000, i as f64 * 1.5)).collect();
    let (status, body) = s
        .push(
            vec![series(
                &[("__name__", "test_metric"), ("job", "a")],
                &samples,
            )],
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let got = s.raw_samples("test_metric", "5m", t0 + 29_000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, json!({"__name__": "test_metric", "job": "a"}));
    assert_eq!(got[0].1, samples);

    // Instant query: latest sample within lookback, timestamp = eval time.
    let d = s.query("test_metric{job=\"a\"}", t0 + 10_500).await;
    assert_eq!(d["resultType"], "vector");
    // Compared as numbers: a whole-second time is written without a
    // fraction (as Prometheus does), which JSON equality would tell apart.
    assert_eq!(
        d["result"][0]["value"][0].as_f64(),
        Some((t0 + 10_500) as f64 / 1000.0)
    );
    assert_eq!(d["result"][0]["value"][1], "15");

    // Range query returns one point per step.
    let (status, r) = s
        .get_json(
            "/prometheus/api/v1/query_range",
            &[
                ("query", "test_metric * 2".into()),
                ("start", secs(t0)),
                ("end", secs(t0 + 4000)),
                ("step", "2".into()),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let values = &r["data"]["result"][0]["values"];
    assert_eq!(values.as_array().unwrap().len(), 3);
    assert_eq!(values[2][1], "12");
    assert_eq!(r["data"]["result"][0]["metric"], json!({"job": "a"}));
    assert!(
        r.get("warnings").is_none() && r.get("infos").is_none(),
        "{r}"
    );

    // Annotations, as Prometheus returns them: `rate` over a name that is not
    // a counter's is an info; `sort` in a range query a warning.
    let (status, r) = s
        .get_json(
            "/api/v1/query",
            &[
                ("query", "rate(test_metric[1m])".into()),
                ("time", secs(t0 + 29_000)),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["infos"],
        json!([
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"test_metric\""
        ]),
        "{r}"
    );
    let (status, r) = s
        .get_json(
            "/api/v1/query_range",
            &[
                ("query", "sort(test_metric)".into()),
                ("start", secs(t0)),
                ("end", secs(t0 + 4000)),
                ("step", "2".into()),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["warnings"],
        json!([
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels"
        ]),
        "{r}"
    );

    // Metadata endpoints.
    let (_, l) = s.get_json("/api/v1/labels", &[], None).await;
    assert_eq!(l["data"], json!(["__name__", "job"]));
    let (_, v) = s.get_json("/api/v1/label/job/values", &[], None).await;
    assert_eq!(v["data"], json!(["a"]));
    let (_, v) = s
        .get_json("/api/v1/series", &[("match[]", "{job=\"a\"}".into())], None)
        .await;
    assert_eq!(v["data"], json!([{"__name__": "test_metric", "job": "a"}]));
    // Mimir's shape, which is how Grafana decides that the ruler API can
    // edit rules (its alerting feature discovery).
    for prefix in ["", "/prometheus"] {
        let (status, b) = s
            .get_json(&format!("{prefix}/api/v1/status/buildinfo"), &[], None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(b["status"], "success");
        assert_eq!(b["data"]["application"], "Grafana Mimir", "{b}");
        assert_eq!(b["data"]["features"]["ruler_config_api"], "true", "{b}");
        assert_eq!(b["data"]["features"]["alertmanager_config_api"], "false");
        // Query sharding is off by default.
        assert_eq!(b["data"]["features"]["query_sharding"], "false", "{b}");
    }
    let (_, m) = s.get_json("/api/v1/metadata", &[], None).await;
    assert_eq!(m, json!({"status": "success", "data": {}}));
    assert!(
        s.self_metric("strata_ingester_samples_appended_total")
            .await
            >= 30.0
    );
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_keeps_accepted_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-distributor.max-recv-msg-size=20000"]).await;
    let t = now_ms() - 10_000;
    let good = series(&[("__name__", "kept"), ("job", "a")], &[(t, 1.0)]);
    assert_eq!(s.push(vec![good.clone()], None).await.0, 200);

    // Whole-request failures.
    let (st, msg) = s.push_raw(b"definitely not snappy".to_vec(), None).await;
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("snappy"), "{msg}");
    let not_proto = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
    let (st, msg) = s.push_raw(not_proto, None).await;
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("protobuf"), "{msg}");
    let big = series(
        &[("__name__", "big"), ("a", &"x".repeat(30_000))],
        &[(t, 1.0)],
    );
    let (st, msg) = s.push_raw(encode(vec![big]), None).await;
    assert_eq!(st, 413, "{msg}");
    let huge_raw = vec![0u8; 30_000];
    let (st, _) = s.push_raw(huge_raw, None).await;
    assert_eq!(st, 413);

    // Bodies the in-place decoder must refuse as prost does: a label value
    // that is not UTF-8, a name sent as the two halves of one character
    // (each invalid alone, valid together), a sample value of the wrong
    // wire type, a message cut short. Each is 400 and stores nothing.
    fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(tag << 3 | 2);
        out.push(bytes.len() as u8); // short fields: one-byte lengths
        out.extend_from_slice(bytes);
    }
    let body = |labels: &[&[(u8, &[u8])]], sample: &[u8]| {
        let mut ts = Vec::new();
        for label in labels {
            let mut l = Vec::new();
            for (tag, text) in *label {
                field(*tag, text, &mut l);
            }
            field(1, &l, &mut ts);
        }
        field(2, sample, &mut ts);
        let mut req = Vec::new();
        field(1, &ts, &mut req);
        req
    };
    let name: &[(u8, &[u8])] = &[(1, b"__name__"), (2, b"hostile")];
    let mut sample = vec![0x09];
    sample.extend_from_slice(&1.0f64.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "value not UTF-8",
            body(&[name, &[(1, b"a"), (2, b"\xff\xfe")]], &sample),
        ),
        (
            "split character",
            body(
                &[name, &[(1, b"\xc3"), (1, b"\xa9"), (1, b"b"), (2, b"x")]],
                &sample,
            ),
        ),
        ("value as fixed32", body(&[name], &[0x0d, 0, 0, 0, 0])),
        ("cut short", {
            let mut b = body(&[name], &sample);
            b.truncate(b.len() - 3);
            b
        }),
    ];
    for (what, raw) in cases {
        let compressed = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let (st, msg) = s.push_raw(compressed, None).await;
        assert_eq!(st, 400, "{what}: {msg}");
        assert!(msg.contains("protobuf"), "{what}: {msg}");
    }
    let d = s.query("hostile", t).await;
    assert_eq!(
        d["result"],
        json!([]),
        "nothing of the refused bodies stored"
    );

    // Per-series failures in a batch with one valid series.
    let long_value = "v".repeat(3000);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("__name__", "bad"), ("bad-label", "x")],
            "invalid label name",
        ),
        (
            vec![("__name__", "bad"), ("a", "1"), ("a", "2")],
            "duplicate label name",
        ),
        (
            vec![("__name__", "bad"), ("b", "1"), ("a", "2")],
            "not sorted",
        ),
        (vec![("job", "nameless")], "no metric name"),
        (vec![("__name__", "")], "no metric name"),
        (
            vec![("__name__", "bad"), ("long", long_value.as_str())],
            "longer than",
        ),
    ];
    for (i, (labels, want)) in cases.iter().enumerate() {
        let ok_name = format!("ok_{i}");
        let batch = vec![
            series(&[("__name__", ok_name.as_str())], &[(t, i as f64)]),
            series(labels, &[(t, 9.0)]),
        ];
        let (st, msg) = s.push(batch, None).await;
        assert_eq!(st, 400, "case {labels:?}: {msg}");
        assert!(msg.contains(want), "case {labels:?}: {msg}");
        assert!(msg.contains("accepted 1 samples"), "{msg}");
        // The valid series of the batch is stored.
        let d = s.query(&ok_name, t).await;
        assert_eq!(d["result"][0]["value"][1], json!(i.to_string()), "{d}");
    }
    // Out-of-order and duplicate-timestamp samples are refused, data intact.
    let (st, msg) = s
        .push(
            vec![series(
                &[("__name__", "kept"), ("job", "a")],
                &[(t - 5000, 2.0)],
            )],
            None,
        )
        .await;
    assert_eq!(st, 400);
    assert!(msg.contains("out-of-order"), "{msg}");
    let (st, msg) = s
        .push(
            vec![series(&[("__name__", "kept"), ("job", "a")], &[(t, 3.0)])],
            None,
        )
        .await;
    assert_eq!(st, 400);
    assert!(msg.contains("duplicate"), "{msg}");
    let got = s.raw_samples("kept", "1m", t).await;
    assert_eq!(got[0].1, vec![(t, 1.0)]);
    // Nothing named "bad" got in.
    let d = s.query("{__name__=~\"bad|big\"}", t).await;
    assert_eq!(d["result"], json!([]));
    assert!(s.self_metric("strata_discarded_samples_total").await >= 6.0);
}

/// Inside the out-of-order window, a sample at a timestamp the series
/// already holds (in order or out of order) with another value is refused,
/// as Prometheus refuses it; the stored value stays.
#[tokio::test]
async fn out_of_order_duplicates_of_in_order_samples_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-ingester.out-of-order-time-window=10m"]).await;
    let t = now_ms() - 60_000;
    let labels = [("__name__", "ooo_dup"), ("job", "a")];
    let (st, msg) = s
        .push(vec![series(&labels, &[(t - 20_000, 1.0), (t, 2.0)])], None)
        .await;
    assert_eq!(st, 200, "{msg}");
    // Out of order, new timestamp: accepted.
    let (st, msg) = s
        .push(vec![series(&labels, &[(t - 10_000, 5.0)])], None)
        .await;
    assert_eq!(st, 200, "{msg}");
    // Out of order onto an in-order sample, another value: refused.
    let (st, msg) = s
        .push(vec![series(&labels, &[(t - 20_000, 9.0)])], None)
        .await;
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("duplicate"), "{msg}");
    // The same value again is no conflict.
    let (st, msg) = s
        .push(vec![series(&labels, &[(t - 20_000, 1.0)])], None)
        .await;
    assert_eq!(st, 200, "{msg}");
    let d = s.query("ooo_dup", t - 20_000).await;
    assert_eq!(d["result"][0]["value"][1], json!("1"), "{d}");
}

#[tokio::test]
async fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-auth.multitenancy-enabled=true"]).await;
    let t = now_ms() - 1000;
    let (st, _) = s
        .push(vec![series(&[("__name__", "m")], &[(t, 1.0)])], None)
        .await;
    assert_eq!(st, 401, "a write without tenant is refused");
    assert_eq!(
        s.push(
            vec![series(&[("__name__", "m")], &[(t, 1.0)])],
            Some("team-a")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.push(
            vec![series(&[("__name__", "m")], &[(t, 2.0)])],
            Some("team-b")
        )
        .await
        .0,
        200
    );
    for (tenant, want) in [("team-a", "1"), ("team-b", "2")] {
        let (st, j) = s
            .get_json(
                "/api/v1/query",
                &[("query", "m".into()), ("time", secs(t))],
                Some(tenant),
            )
            .await;
        assert_eq!(st, 200);
        let r = j["data"]["result"].as_array().unwrap();
        assert_eq!(r.len(), 1, "{j}");
        assert_eq!(r[0]["value"][1], want);
    }
    let (st, _) = s
        .get_json("/api/v1/query", &[("query", "m".into())], Some("../etc"))
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn query_errors_use_prometheus_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &[]).await;
    let (st, j) = s
        .get_json("/api/v1/query", &[("query", "sum(".into())], None)
        .await;
    assert_eq!(st, 400);
    assert_eq!(j["status"], "error");
    assert_eq!(j["errorType"], "bad_data");
    let (st, j) = s
        .get_json("/api/v1/query", &[("query", "limitk(1, up)".into())], None)
        .await;
    assert_eq!(st, 422, "{j}");
    assert_eq!(j["errorType"], "execution");
    assert!(
        j["error"].as_str().unwrap().contains("not supported"),
        "{j}"
    );
    let (st, _) = s
        .get_json(
            "/api/v1/query",
            &[("query", "up".into()), ("time", "yesterday".into())],
            None,
        )
        .await;
    assert_eq!(st, 400);
    let (st, j) = s
        .get_json(
            "/api/v1/query_range",
            &[
                ("query", "up".into()),
                ("start", "10".into()),
                ("end", "0".into()),
                ("step", "1".into()),
            ],
            None,
        )
        .await;
    assert_eq!(st, 400, "{j}");
    let (st, _) = s.get_json("/api/v1/series", &[], None).await;
    assert_eq!(st, 400);
    // Scalars and strings.
    let d = s.query("1 + 2 * 3", 1_000_000).await;
    assert_eq!(d, json!({"resultType": "scalar", "result": [1000, "7"]}));
    let d = s.query("\"hello\"", 1_000_000).await;
    assert_eq!(
        d,
        json!({"resultType": "string", "result": [1000, "hello"]})
    );
}

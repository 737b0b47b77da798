//! Grafana as it really calls Loki: the Loki data source's health check and
//! the requests Grafana Logs Drilldown sends, replayed with their exact
//! query strings and parameters as the app builds them (taken from
//! grafana/logs-drilldown's templates, src/services/variables.ts,
//! expressions.ts, fields.ts, labels.ts, the service selection and service
//! scenes, and grafana-loki-datasource's healthcheck.go), including the
//! runs of spaces its empty template variables leave, backtick values,
//! postfix `sum(...) by (x)`, `by ()` range aggregations and pattern
//! filters. Each must be answered successfully, and those over the pushed
//! data with the data.

use serde_json::Value as Json;

use crate::common::{Strata, now_ms};

async fn call(s: &Strata, path: &str, params: &[(&str, String)]) -> Json {
    let r = s
        .client
        .get(s.url(path))
        .query(params)
        .header("X-Query-Tags", "Source=grafana-lokiexplore-app")
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .send()
        .await
        .expect("request");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{path} {params:?}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
}

/// The number of series, streams or points an answer's `data.result` holds.
fn results(j: &Json) -> usize {
    j["data"]["result"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_and_logs_drilldown_requests_are_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Strata::start(dir.path(), &[]).await;
    let now = now_ms();
    // Half an hour of checkout logs in two namespaces: logfmt errors and
    // warnings, JSON info lines with a nested user id.
    let mut streams = Vec::new();
    for (ns, offset) in [("shop", 0), ("edge", 1)] {
        let values: Vec<Json> = (0..120)
            .map(|i| {
                let t = (now - 1_800_000 + i * 15_000 + offset) * 1_000_000;
                let line = match i % 3 {
                    0 => format!(
                        r#"level=error method=GET status=500 duration={}ms latency=0.{} msg="GET /cart/{i} 500 timeout""#,
                        30 + i % 7,
                        1 + i % 8
                    ),
                    1 => format!(
                        r#"level=warn method=POST status=429 duration={}ms latency=0.{} msg="POST /pay/{i} 429""#,
                        10 + i % 5,
                        2 + i % 6
                    ),
                    _ => format!(
                        r#"{{"level":"info","method":"GET","status":200,"user":{{"id":"u{}"}},"latency":0.{}}}"#,
                        i % 9,
                        1 + i % 4
                    ),
                };
                serde_json::json!([t.to_string(), line])
            })
            .collect();
        streams.push(serde_json::json!({
            "stream": {"service_name": "checkout", "namespace": ns},
            "values": values,
        }));
    }
    let r = s
        .client
        .post(s.url("/loki/api/v1/push"))
        .json(&serde_json::json!({ "streams": streams }))
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());

    let (start_ns, end_ns) = ((now - 3_600_000) * 1_000_000, (now + 60_000) * 1_000_000);
    let iso = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    let (start_iso, end_iso) = (iso(now - 3_600_000), iso(now + 60_000));

    // The data source's "Save & test": an instant query at 4 s.
    let health = call(
        &s,
        "/loki/api/v1/query",
        &[
            ("direction", "backward".into()),
            ("query", "vector(1)+vector(1)".into()),
            ("time", "4000000000".into()),
        ],
    )
    .await;
    assert_eq!(health["data"]["resultType"], "vector", "{health}");
    assert_eq!(health["data"]["result"][0]["value"][1], "2", "{health}");

    // Bootstrap and service selection.
    let limits = call(&s, "/loki/api/v1/drilldown-limits", &[]).await;
    assert!(limits["limits"].is_object(), "{limits}");
    let iso_range = |query: &str| {
        vec![
            ("end", end_iso.clone()),
            ("query", query.to_string()),
            ("start", start_iso.clone()),
        ]
    };
    let labels = call(&s, "/loki/api/v1/detected_labels", &iso_range("")).await;
    assert!(labels.to_string().contains("namespace"), "{labels}");
    let mut volume_params = iso_range("{service_name=~`.+`}");
    volume_params.insert(1, ("limit", "5000".into()));
    let volume = call(&s, "/loki/api/v1/index/volume", &volume_params).await;
    assert!(volume.to_string().contains("checkout"), "{volume}");
    let search = iso_range("{service_name=~`(?i).*check.*`}");
    assert!(
        call(&s, "/loki/api/v1/index/volume", &search)
            .await
            .to_string()
            .contains("checkout")
    );

    // Range queries as the data source plugin sends them.
    let range = |query: &str, limit: usize| {
        vec![
            ("direction", "backward".to_string()),
            ("end", end_ns.to_string()),
            ("limit", limit.to_string()),
            ("query", query.to_string()),
            ("start", start_ns.to_string()),
            ("step", "60000ms".to_string()),
        ]
    };
    let parsers = "| json  | logfmt | drop __error__, __error_details__";
    // (query, limit, whether the pushed data must show in the answer)
    let queries: Vec<(String, usize, bool)> = vec![
        // Service selection: the per-service chart and logs panel.
        (r#"sum by (detected_level) (count_over_time({ service_name="checkout" } [1m]))"#.into(), 1000, true),
        ("{service_name=`checkout` }".into(), 100, true),
        ("{service_name=`checkout` } | detected_level=`error` or detected_level=`warn` ".into(), 100, true),
        ("{service_name=`checkout` } | json | logfmt | drop __error__, __error_details__".into(), 100, true),
        // Aggregated metrics (none here; the query must still run).
        ("sum by (detected_level) (sum_over_time({__aggregated_metric__=`checkout` } | logfmt | unwrap count [10s]))".into(), 1000, false),
        // The service view's logs panel and log volume.
        (format!(r#"{{service_name="checkout"}}     {parsers}  "#), 1000, true),
        (r#"sum(count_over_time({service_name="checkout"}       [1m])) by (detected_level)"#.into(), 1000, true),
        (r#"sum(count_over_time({service_name="checkout"}  | detected_level != ""       [1m])) by (detected_level)"#.into(), 1000, true),
        (r#"sum(count_over_time({service_name="checkout"} | json  | logfmt | drop __error__, __error_details__ | method="GET"  [1m])) by (detected_level)"#.into(), 1000, true),
        // Filters applied: level, line filter, parsers, a field.
        (format!(r#"{{service_name="checkout"}} | detected_level="error"   |~ "(?i)timeout" {parsers} | method="GET" "#), 1000, true),
        // Labels breakdown.
        (r#"sum(count_over_time({service_name="checkout" ,namespace != ""}        [1m])) by (namespace)"#.into(), 1000, true),
        // Fields breakdown: logfmt, a JSON path, mixed parsers, numbers.
        (r#"sum by (method) (count_over_time({service_name="checkout"}      | logfmt | method!=""  [1m]))"#.into(), 1000, true),
        (r#"sum by (user_id) (count_over_time({service_name="checkout"}      | json user_id="[\"user\"][\"id\"]"  | drop __error__, __error_details__ | user_id!=""  [1m]))"#.into(), 1000, true),
        (r#"sum by (status) (count_over_time({service_name="checkout"}      | json   | logfmt | drop __error__, __error_details__  | status!=""  [1m]))"#.into(), 1000, true),
        (r#"avg_over_time({service_name="checkout"}      | logfmt | duration!=""  | unwrap duration(duration) | __error__="" [1m]) by ()"#.into(), 1000, true),
        (r#"avg_over_time({service_name="checkout"}      | logfmt | latency!=""  | unwrap latency | __error__="" [1m]) by ()"#.into(), 1000, true),
        // Patterns: the sample panel, a pattern's fields, applied filters.
        (format!(r#"{{service_name="checkout"}}   |> "level=error method=GET status=500 <_>"  {parsers}  "#), 1000, true),
        ("{service_name=\"checkout\"} |> `level=error method=GET status=500 <_>` | pattern `<_> msg=\"GET <field_1> 500 <_>` | keep field_1 | line_format \"\"".into(), 1000, true),
        (r#"{service_name="checkout"} !> "level=warn <_>""#.into(), 1000, true),
        (r#"{service_name="checkout"} |> "level=error <_>" or "level=warn <_>""#.into(), 1000, true),
        // JSON drill-in.
        (r#"{service_name="checkout"} | json user_id="[\"user\"][\"id\"]"| json | logfmt | drop __error__, __error_details__  | line_format "{{.user_id}}""#.into(), 1000, true),
        // The errors-analysis extension.
        (r#"sum by (method) (count_over_time({service_name="checkout"} | logfmt | keep method [1h]))"#.into(), 1000, true),
    ];
    for (q, limit, has_data) in &queries {
        let answer = call(&s, "/loki/api/v1/query_range", &range(q, *limit)).await;
        assert_eq!(answer["status"], "success", "{q}: {answer}");
        if *has_data {
            assert!(results(&answer) > 0, "{q}: no data: {answer}");
        }
    }
    // The level toggle keeps only errors and warnings.
    let levels = call(
        &s,
        "/loki/api/v1/query_range",
        &range(
            "{service_name=`checkout` } | detected_level=`error` or detected_level=`warn` ",
            1000,
        ),
    )
    .await;
    let lines: Vec<&str> = levels["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().into_iter().flatten())
        .filter_map(|v| v[1].as_str())
        .collect();
    assert_eq!(lines.len(), 160, "two thirds of 240 lines");
    assert!(lines.iter().all(|l| !l.starts_with('{')), "{lines:?}");

    // The log count: an instant query over `[$__auto]` = the range.
    let count = call(
        &s,
        "/loki/api/v1/query",
        &[
            ("direction", "backward".into()),
            ("limit", "1000".into()),
            (
                "query",
                format!(
                    r#"sum(count_over_time({{service_name="checkout"}}     {parsers}  [3600s]))"#
                ),
            ),
            ("time", end_ns.to_string()),
        ],
    )
    .await;
    assert_eq!(count["data"]["result"][0]["value"][1], "240", "{count}");

    // Combobox and breakdown resources.
    let ns_range = |query: &str| {
        vec![
            ("start", start_ns.to_string()),
            ("end", end_ns.to_string()),
            ("query", query.to_string()),
        ]
    };
    let names = call(
        &s,
        "/loki/api/v1/labels",
        &ns_range(r#"{service_name="checkout"}"#),
    )
    .await;
    assert!(names.to_string().contains("namespace"), "{names}");
    let values = call(
        &s,
        "/loki/api/v1/label/service_name/values",
        &ns_range("")[..2],
    )
    .await;
    assert!(values.to_string().contains("checkout"), "{values}");
    let selected = iso_range(r#"{service_name="checkout"}"#);
    assert!(
        call(&s, "/loki/api/v1/detected_labels", &selected)
            .await
            .to_string()
            .contains("namespace")
    );
    let fields_query = format!(r#"{{service_name="checkout"}}     {parsers} "#);
    let fields = call(
        &s,
        "/loki/api/v1/detected_fields",
        &iso_range(&fields_query),
    )
    .await;
    for f in ["method", "status", "duration", "latency"] {
        assert!(
            fields.to_string().contains(&format!("\"{f}\"")),
            "{f}: {fields}"
        );
    }
    let mut with_limit = ns_range(&fields_query);
    with_limit.insert(2, ("limit", "1000".into()));
    let fields = call(&s, "/loki/api/v1/detected_fields", &with_limit).await;
    assert!(fields.to_string().contains("\"method\""), "{fields}");
    let methods = call(&s, "/loki/api/v1/detected_field/method/values", &with_limit).await;
    let methods = methods.to_string();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let mut patterns_params = iso_range(r#"{service_name="checkout"}"#);
    patterns_params.push(("step", "1m".into()));
    let patterns = call(&s, "/loki/api/v1/patterns", &patterns_params).await;
    assert_eq!(patterns["status"], "success", "{patterns}");
    assert!(patterns["data"].is_array(), "{patterns}");
}

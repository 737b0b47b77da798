//! Differential test against a real Prometheus: it scrapes itself and Strata,
//! remote-writes to Strata, and the same PromQL queries must give the same
//! series and values from both.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::common::{Strata, free_port, now_ms, secs, wait_ready};

/// A Prometheus process on a loopback port with its own data directory.
pub(crate) struct Prometheus {
    pub port: u16,
    child: Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> String {
    std::env::var("STRATA_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into())
}

async fn start_prometheus(dir: &std::path::Path, strata_port: u16) -> Prometheus {
    let port = free_port();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
  - job_name: strata
    static_configs: [{{targets: ["127.0.0.1:{strata_port}"]}}]
remote_write:
  - url: http://127.0.0.1:{strata_port}/api/v1/push
    queue_config:
      batch_send_deadline: 500ms
      max_samples_per_send: 2000
    metadata_config:
      send: false
"#
    );
    spawn_prometheus(dir, port, &config, &[]).await
}

/// Starts Prometheus with `config` on `port`; returns once it is ready.
pub(crate) async fn spawn_prometheus(
    dir: &std::path::Path,
    port: u16,
    config: &str,
    extra_args: &[&str],
) -> Prometheus {
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, config).expect("write prometheus config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
    let child = Command::new(prometheus_binary())
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prom-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the `prometheus` binary (Debian package prometheus) must be installed; the README test command installs it");
    let prom = Prometheus { port, child };
    wait_ready(&format!("http://127.0.0.1:{port}/-/ready"), 60, || {
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    })
    .await;
    prom
}

async fn prom_query(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> Json {
    let r = client
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .await
        .expect("query request");
    let status = r.status();
    let j: Json = r.json().await.expect("json");
    assert!(status.is_success(), "{base}{path} {params:?}: {j}");
    j["data"].clone()
}

/// result -> label set (as sorted JSON text) -> points (ts ms, value).
pub(crate) fn normalize(data: &Json) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out = BTreeMap::new();
    let parse_point = |p: &Json| -> (i64, f64) {
        let t = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
        let v = match p[1].as_str().expect("value") {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().expect("float"),
        };
        (t, v)
    };
    match data["resultType"].as_str() {
        Some("scalar") => {
            out.insert("scalar".into(), vec![parse_point(&data["result"])]);
        }
        _ => {
            for s in data["result"].as_array().expect("result array") {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(s["metric"].clone()).expect("labels");
                let pts = if let Some(v) = s.get("value") {
                    vec![parse_point(v)]
                } else {
                    s["values"]
                        .as_array()
                        .expect("values")
                        .iter()
                        .map(parse_point)
                        .collect()
                };
                out.insert(serde_json::to_string(&labels).expect("json"), pts);
            }
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    ((a - b) / a.abs().max(b.abs())).abs() <= 1e-9
}

/// Returns a description of the first difference, if any.
pub(crate) fn diff(
    q: &str,
    want: &BTreeMap<String, Vec<(i64, f64)>>,
    got: &BTreeMap<String, Vec<(i64, f64)>>,
) -> Option<String> {
    let wk: Vec<&String> = want.keys().collect();
    let gk: Vec<&String> = got.keys().collect();
    if wk != gk {
        return Some(format!(
            "{q}: series differ\n prometheus: {wk:?}\n strata:     {gk:?}"
        ));
    }
    for (k, w) in want {
        let g = &got[k];
        if w.len() != g.len() || w.iter().zip(g).any(|(a, b)| a.0 != b.0 || !close(a.1, b.1)) {
            return Some(format!("{q}: {k}\n prometheus: {w:?}\n strata:     {g:?}"));
        }
    }
    None
}

#[tokio::test]
async fn same_answers_as_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    // Through the query-frontend of `all` with query sharding on: every
    // shardable aggregation below is answered from three shards.
    let strata = Strata::start(
        dir.path(),
        &[
            "-querier.default-evaluation-interval=1s",
            "-query-frontend.parallelize-shardable-queries=true",
            "-query-frontend.query-sharding-total-shards=3",
        ],
    )
    .await;
    let prom = start_prometheus(dir.path(), strata.port).await;
    let prom_base = format!("http://127.0.0.1:{}", prom.port);
    let client = reqwest::Client::new();

    // Let Prometheus collect ~50s of data and forward it. Every range window
    // below starts after the counters it reads were created: Prometheus 2
    // extrapolates a counter that starts inside the window to its zero
    // point, Prometheus 3 (and Strata) by at most half a scrape interval.
    tokio::time::sleep(Duration::from_secs(50)).await;

    // Choose an evaluation time whose millisecond phase differs from every
    // scrape's, so Prometheus 2's closed range windows and Prometheus 3's
    // left-open ones (which Strata implements) select the same samples; and
    // not on a whole second, where subqueries with second steps evaluate
    // (phase 0 is treated as one more scrape phase).
    let up = prom_query(
        &client,
        &prom_base,
        "/api/v1/query",
        &[("query", "timestamp(up)".into())],
    )
    .await;
    let phases: Vec<i64> = up["result"]
        .as_array()
        .expect("up series")
        .iter()
        .map(|s| {
            (s["value"][1].as_str().unwrap().parse::<f64>().unwrap() * 1000.0).round() as i64 % 1000
        })
        .collect();
    assert_eq!(phases.len(), 2, "both targets scraped: {up}");
    let base = now_ms() - 8000;
    let t = (0..1000)
        .map(|k| base - base % 1000 + k)
        .find(|t| {
            phases
                .iter()
                .chain(std::iter::once(&0))
                .all(|p| ((t % 1000) - p).abs() > 100 && ((t % 1000) - p).abs() < 900)
        })
        .expect("a phase away from every scrape");

    // Wait until Strata has received samples past `t` from both targets.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = strata.query("min(timestamp(up))", now_ms()).await;
        let newest = d["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        if newest * 1000.0 > (t + 2000) as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "remote write did not reach Strata: {d}\n{}",
            strata.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let at = secs(t - 5000);
    let instant_queries: Vec<String> = vec![
        "up".into(),
        "up{job=\"prometheus\"}".into(),
        "up{job!=\"prometheus\"}".into(),
        "up{job=~\"prom.*\"}".into(),
        "up{job!~\"prom.*\"}".into(),
        "rate(prometheus_http_requests_total[20s])".into(),
        "irate(prometheus_http_requests_total[20s])".into(),
        "increase(prometheus_tsdb_head_samples_appended_total[20s])".into(),
        "delta(process_resident_memory_bytes[20s])".into(),
        "idelta(process_resident_memory_bytes[20s])".into(),
        "sum(rate(prometheus_http_requests_total[20s]))".into(),
        "sum by (handler) (rate(prometheus_http_requests_total[20s]))".into(),
        "avg without (instance) (process_resident_memory_bytes)".into(),
        "max(process_cpu_seconds_total)".into(),
        "min by (job) (process_open_fds)".into(),
        "count(up)".into(),
        "count by (job) (scrape_duration_seconds)".into(),
        "topk(1, process_resident_memory_bytes)".into(),
        "bottomk(1, process_resident_memory_bytes)".into(),
        "quantile(0.9, prometheus_http_requests_total)".into(),
        "stddev(process_open_fds)".into(),
        "stdvar(scrape_samples_scraped)".into(),
        "group by (job) (up)".into(),
        "avg_over_time(process_resident_memory_bytes[20s])".into(),
        "min_over_time(scrape_duration_seconds[20s])".into(),
        "max_over_time(scrape_duration_seconds[20s])".into(),
        "sum_over_time(up[20s])".into(),
        "count_over_time(up[20s])".into(),
        "last_over_time(process_open_fds[20s])".into(),
        "quantile_over_time(0.5, scrape_duration_seconds[20s])".into(),
        "stddev_over_time(process_resident_memory_bytes[20s])".into(),
        "stdvar_over_time(process_resident_memory_bytes[20s])".into(),
        "present_over_time(up[20s])".into(),
        "process_resident_memory_bytes offset 10s".into(),
        format!("up @ {at}"),
        format!("rate(process_cpu_seconds_total[20s] @ {at})"),
        "rate(process_cpu_seconds_total[20s] offset 5s)".into(),
        "process_resident_memory_bytes / 1024 / 1024".into(),
        "process_resident_memory_bytes > 1000".into(),
        "up == bool 1".into(),
        "2 * process_open_fds - 1".into(),
        "process_resident_memory_bytes / on(instance, job) process_virtual_memory_bytes".into(),
        "prometheus_http_requests_total - prometheus_http_requests_total offset 5s".into(),
        "scrape_duration_seconds < bool ignoring(instance) scrape_duration_seconds".into(),
        "up and on(job) process_open_fds > 0".into(),
        "max_over_time(rate(prometheus_http_requests_total[10s])[30s:5s])".into(),
        "avg_over_time(process_resident_memory_bytes[30s:])".into(),
        "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[20s])))".into(),
        "histogram_quantile(0.5, rate(prometheus_tsdb_compaction_chunk_samples_bucket[1m]))".into(),
        "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")".into(),
        "label_join(up, \"both\", \"-\", \"job\", \"instance\")".into(),
        "count_values(\"value\", up)".into(),
        "count_values by (job) (\"fds\", process_open_fds)".into(),
        "hour(timestamp(up))".into(),
        "day_of_week()".into(),
        "days_in_month(vector(time()))".into(),
        "deriv(process_resident_memory_bytes[20s])".into(),
        "predict_linear(process_resident_memory_bytes[20s], 60)".into(),
        "changes(process_open_fds[30s])".into(),
        "resets(prometheus_http_requests_total[30s])".into(),
        "absent(nonexistent_metric{job=\"x\"})".into(),
        "clamp(process_open_fds, 1, 10)".into(),
        "sort_desc(process_resident_memory_bytes)".into(),
        "up[20s]".into(),
        "prometheus_http_requests_total{handler=\"/metrics\"}[50s]".into(),
    ];
    let mut failures = Vec::new();
    for q in &instant_queries {
        let params = [("query", q.clone()), ("time", secs(t))];
        let want = prom_query(&client, &prom_base, "/api/v1/query", &params).await;
        let got = prom_query(&client, &strata.url(""), "/api/v1/query", &params).await;
        if let Some(d) = diff(q, &normalize(&want), &normalize(&got)) {
            failures.push(d);
        }
        assert!(
            !normalize(&want).is_empty() || q.contains('>'),
            "{q} selects something in Prometheus"
        );
    }
    let range_queries = [
        "rate(prometheus_http_requests_total[10s])",
        "sum by (job) (rate(process_cpu_seconds_total[10s]))",
        "max_over_time(scrape_duration_seconds[5s])",
        "up",
        "process_open_fds offset 3s",
        "max_over_time(rate(prometheus_http_requests_total[10s])[20s:3s])",
        "histogram_quantile(0.99, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[10s])))",
    ];
    for q in range_queries {
        let params = [
            ("query", q.to_string()),
            ("start", secs(t - 16_000)),
            ("end", secs(t)),
            ("step", "2".to_string()),
        ];
        let want = prom_query(&client, &prom_base, "/api/v1/query_range", &params).await;
        let got = prom_query(&client, &strata.url(""), "/api/v1/query_range", &params).await;
        if let Some(d) = diff(q, &normalize(&want), &normalize(&got)) {
            failures.push(d);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries differ:\n{}",
        failures.len(),
        instant_queries.len() + range_queries.len(),
        failures.join("\n")
    );
    // The aggregations were sharded (sum, avg, max, min, count, topk,
    // bottomk, group, the histogram_quantile's sum, instant and range).
    let sharded = strata
        .self_metric("strata_query_frontend_query_sharding_rewrites_total{outcome=\"sharded\"}")
        .await;
    assert!(sharded >= 14.0, "{sharded} queries sharded");
}

/// `/api/v1/format_query` prints queries exactly as a real Prometheus does
/// (Grafana's "format query" button), refuses what does not parse with
/// Prometheus's error shape, and bounds the query it formats.
#[tokio::test]
async fn format_query_prints_as_prometheus_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Strata::start(dir.path(), &[]).await;
    let prom = spawn_prometheus(
        dir.path(),
        free_port(),
        "global:\n  scrape_interval: 1h\n",
        &[],
    )
    .await;
    let client = reqwest::Client::new();
    let format = |base: String, query: String| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("{base}/api/v1/format_query"))
                .form(&[("query", query.as_str())])
                .send()
                .await
                .expect("format_query");
            let status = r.status().as_u16();
            (status, r.json::<Json>().await.expect("json"))
        }
    };
    let strata = format!("http://127.0.0.1:{}", s.port);
    let reference = format!("http://127.0.0.1:{}", prom.port);
    for q in [
        "sum by(job)(rate(x[5m]))",
        r#"sum(rate(http_requests_total{job="api-server",handler="/api/comments"}[5m])) by (job) / sum(rate(http_requests_total{job="api-server"}[5m])) by (job)"#,
        r#"histogram_quantile(0.99, sum without (instance, pod) (rate(request_duration_seconds_bucket{namespace=~"kafka|spark", le!=""}[10m] offset 1h)))"#,
        "max_over_time(deriv(node_load1[5m])[1h:30s]) > bool 0.5",
        r#"up * on (instance) group_left (version) build_info{version=~"3\\..*"}"#,
        "-(a - b) / (c + d) ^ 2 % 3",
        r#"count_values("v", up) or vector(1) unless absent(x)"#,
        r#"label_replace(rate(a[1m] @ 1700000000), "dst", "$1", "src", "(.*)")"#,
        "topk(5, sum by (pod, namespace, container, node, cluster, team, service, version, zone) (container_memory_working_set_bytes))",
    ] {
        let (ps, pj) = format(reference.clone(), q.to_string()).await;
        let (ss, sj) = format(strata.clone(), q.to_string()).await;
        assert_eq!(ps, 200, "{q}: {pj}");
        assert_eq!(ss, 200, "{q}: {sj}");
        assert_eq!(sj["data"], pj["data"], "{q}");
    }
    // Not PromQL: 400 bad_data, as Prometheus answers.
    let (ps, pj) = format(reference.clone(), "sum(".into()).await;
    let (ss, sj) = format(strata.clone(), "sum(".into()).await;
    assert_eq!((ss, ps), (400, 400), "{sj} {pj}");
    assert_eq!(sj["errorType"], pj["errorType"]);
    // Bounded: the printer indents by depth, so long queries are refused
    // before anything is printed.
    let (ss, sj) = format(strata.clone(), format!("{}up", "-".repeat(17_000))).await;
    assert_eq!(ss, 400, "{sj}");
    assert!(sj["error"].as_str().unwrap_or("").contains("bytes"), "{sj}");
    // Nesting deeper than the parser's bound is refused before parsing.
    let deep = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let (ss, sj) = format(strata.clone(), deep).await;
    assert_eq!(ss, 400, "{sj}");
    // Also under the /prometheus prefix and as GET.
    let r: Json = client
        .get(format!("{strata}/prometheus/api/v1/format_query"))
        .query(&[("query", "sum(up)by(job)")])
        .send()
        .await
        .expect("GET format_query")
        .json()
        .await
        .expect("json");
    assert_eq!(r["data"], "sum by (job) (up)");
}

/// Metric metadata as a real Prometheus sends it over remote write: the
/// same answers from `/api/v1/metadata` as Prometheus gives for its own
/// targets, Prometheus's `limit`/`limit_per_metric` semantics and errors,
/// and the metadata still there after `kill -9` and a restart (with the
/// sender stopped, so nothing could resend it).
#[tokio::test]
async fn metric_metadata_matches_prometheus_and_survives_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut strata = Strata::start(dir.path(), &[]).await;
    let port = free_port();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
remote_write:
  - url: http://127.0.0.1:{strata_port}/api/v1/push
    queue_config:
      batch_send_deadline: 500ms
    metadata_config:
      send: true
      send_interval: 1s
"#,
        strata_port = strata.port
    );
    let prom = spawn_prometheus(dir.path(), port, &config, &[]).await;
    let prom_base = format!("http://127.0.0.1:{}", prom.port);
    let client = reqwest::Client::new();

    // Both sides as {family: sorted entries}.
    let as_sets = |data: &Json| -> BTreeMap<String, Vec<String>> {
        data.as_object()
            .expect("metadata object")
            .iter()
            .map(|(name, entries)| {
                let mut list: Vec<String> = entries
                    .as_array()
                    .expect("entries")
                    .iter()
                    .map(|e| e.to_string())
                    .collect();
                list.sort();
                (name.clone(), list)
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (want, got) = loop {
        let want = as_sets(&prom_query(&client, &prom_base, "/api/v1/metadata", &[]).await);
        let (status, got) = strata.get_json("/api/v1/metadata", &[], None).await;
        assert_eq!(status, 200, "{got}");
        let got = as_sets(&got["data"]);
        if want.len() > 20 && want == got {
            break (want, got);
        }
        assert!(
            Instant::now() < deadline,
            "metadata never matched: Prometheus has {} families, Strata {}; differing: {:?}",
            want.len(),
            got.len(),
            want.iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .map(|(k, _)| k)
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let requests = &got["prometheus_http_requests_total"];
    assert_eq!(requests.len(), 1);
    assert!(requests[0].contains(r#""type":"counter""#), "{requests:?}");
    assert!(
        got["prometheus_http_request_duration_seconds"][0].contains(r#""type":"histogram""#),
        "histograms under their family name"
    );

    // Parameters, side by side where the answer cannot drift (Prometheus
    // keeps discovering families of its own, so "all of them" is compared
    // with Strata's own unlimited answer instead).
    let strata_families = |data: &Json| data.as_object().expect("object").len();
    for (params, families) in [
        (vec![("limit", "2")], Some(2)),
        (vec![("limit", "0")], Some(0)),
        (vec![("metric", "prometheus_http_requests_total")], Some(1)),
        (vec![("metric", "no_such_metric")], Some(0)),
        (vec![("limit", "-1")], None),
        (vec![("limit_per_metric", "1")], None),
    ] {
        let params: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let (status, s) = strata.get_json("/api/v1/metadata", &params, None).await;
        assert_eq!(status, 200, "{params:?}: {s}");
        let n = strata_families(&s["data"]);
        match families {
            Some(want_n) => {
                let p = prom_query(&client, &prom_base, "/api/v1/metadata", &params).await;
                assert_eq!(n, strata_families(&p), "{params:?}");
                assert_eq!(n, want_n, "{params:?}");
            }
            None => {
                let (_, all) = strata.get_json("/api/v1/metadata", &[], None).await;
                assert_eq!(n, strata_families(&all["data"]), "{params:?}");
                assert!(n >= want.len(), "{params:?}");
            }
        }
        if params[0].0 == "limit_per_metric" {
            assert!(
                s["data"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(|v| v.as_array().unwrap().len() == 1)
            );
        }
    }
    let params = [("limit", "x".to_string())];
    let p = client
        .get(format!("{prom_base}/api/v1/metadata"))
        .query(&params)
        .send()
        .await
        .expect("prometheus");
    let p_status = p.status().as_u16();
    let p_body: Json = p.json().await.expect("json");
    let (status, s) = strata.get_json("/api/v1/metadata", &params, None).await;
    assert_eq!((status, &s["error"]), (p_status, &p_body["error"]));
    assert_eq!(status, 400);
    // Debian's Prometheus 2.42 predates `limit_per_metric` and ignores it;
    // Mimir and Prometheus 3 refuse a malformed one as Strata does.
    let params = [("limit_per_metric", "x".to_string())];
    let (status, s) = strata.get_json("/api/v1/metadata", &params, None).await;
    assert_eq!(status, 400, "{s}");
    assert_eq!(s["error"], "limit_per_metric must be a number");

    // Durable: the sender stops, Strata dies without a shutdown, and the
    // metadata it acknowledged is back after the WAL replay.
    drop(prom);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, before) = strata.get_json("/api/v1/metadata", &[], None).await;
    let before = as_sets(&before["data"]);
    assert!(before.len() >= got.len());
    strata.kill9();
    strata.restart().await;
    let (status, after) = strata.get_json("/api/v1/metadata", &[], None).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(as_sets(&after["data"]), before);
}

/// A series' labels (JSON text) and its exemplars (labels, value, seconds).
type SeriesExemplars = (String, Vec<(String, String, f64)>);

/// An OpenMetrics target whose counter carries a new exemplar (a trace id)
/// at every scrape; returns its port.
async fn exemplar_target() -> u16 {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let at = now_ms() as f64 / 1000.0;
                let body = format!(
                    "# TYPE checkout_requests counter\n# HELP checkout_requests Checkouts.\n\
                     checkout_requests_total{{path=\"/pay\"}} {n} # {{trace_id=\"{n:016x}\"}} {n}.5 {at:.3}\n\
                     # EOF\n"
                );
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// Exemplars as a real Prometheus scrapes them (OpenMetrics) and forwards
/// them over remote write: `/api/v1/query_exemplars` answers as Prometheus's
/// own exemplar storage does, and the exemplars survive `kill -9`.
#[tokio::test]
async fn exemplars_match_prometheus_and_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut strata = Strata::start(dir.path(), &[]).await;
    let target = exemplar_target().await;
    let port = free_port();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: shop
    static_configs: [{{targets: ["127.0.0.1:{target}"]}}]
remote_write:
  - url: http://127.0.0.1:{strata_port}/api/v1/push
    send_exemplars: true
    queue_config:
      batch_send_deadline: 200ms
    metadata_config:
      send: false
"#,
        strata_port = strata.port
    );
    let started = now_ms();
    let prom = spawn_prometheus(
        dir.path(),
        port,
        &config,
        &["--enable-feature=exemplar-storage"],
    )
    .await;
    let prom_base = format!("http://127.0.0.1:{}", prom.port);
    let client = reqwest::Client::new();
    // Until Prometheus holds a few exemplars; then compare up to now,
    // once the remote-write queue (200 ms deadline) has sent them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = prom_query(
            &client,
            &prom_base,
            "/api/v1/query_exemplars",
            &[("query", "checkout_requests_total".into())],
        )
        .await;
        if held[0]["exemplars"].as_array().map_or(0, Vec::len) >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus stored no exemplars: {held}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let end = now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let params = |query: &str| {
        vec![
            ("query", query.to_string()),
            ("start", secs(started - 60_000)),
            ("end", secs(end)),
        ]
    };
    let normalized = |data: &Json| -> Vec<SeriesExemplars> {
        let mut out: Vec<_> = data
            .as_array()
            .expect("series list")
            .iter()
            .map(|s| {
                let exemplars = s["exemplars"]
                    .as_array()
                    .expect("exemplars")
                    .iter()
                    .map(|e| {
                        (
                            e["labels"].to_string(),
                            e["value"].as_str().expect("value string").to_string(),
                            e["timestamp"].as_f64().expect("timestamp"),
                        )
                    })
                    .collect();
                (s["seriesLabels"].to_string(), exemplars)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    for query in [
        "checkout_requests_total",
        "rate(checkout_requests_total{path=\"/pay\"}[1m]) * 2",
        "checkout_requests_total{path=\"/other\"}",
    ] {
        let want = prom_query(
            &client,
            &prom_base,
            "/api/v1/query_exemplars",
            &params(query),
        )
        .await;
        let (status, got) = strata
            .get_json("/api/v1/query_exemplars", &params(query), None)
            .await;
        assert_eq!(status, 200, "{query}: {got}");
        assert_eq!(normalized(&got["data"]), normalized(&want), "{query}");
    }
    let got = normalized(
        &strata
            .get_json(
                "/api/v1/query_exemplars",
                &params("checkout_requests_total"),
                None,
            )
            .await
            .1["data"],
    );
    assert_eq!(got.len(), 1);
    assert!(got[0].1.len() >= 4, "one exemplar per scrape: {got:?}");
    assert!(got[0].0.contains(r#""job":"shop""#), "{got:?}");

    // Bad requests, as Prometheus answers them.
    for bad in [
        vec![("query", "checkout_requests_total{".to_string())],
        vec![
            ("query", "up".to_string()),
            ("start", "20".to_string()),
            ("end", "10".to_string()),
        ],
    ] {
        let (status, body) = strata.get_json("/api/v1/query_exemplars", &bad, None).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["errorType"], "bad_data");
    }

    // Durable: the sender stops, Strata dies, the exemplars come back.
    drop(prom);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = normalized(
        &strata
            .get_json(
                "/api/v1/query_exemplars",
                &params("checkout_requests_total"),
                None,
            )
            .await
            .1["data"],
    );
    strata.kill9();
    strata.restart().await;
    let after = normalized(
        &strata
            .get_json(
                "/api/v1/query_exemplars",
                &params("checkout_requests_total"),
                None,
            )
            .await
            .1["data"],
    );
    assert_eq!(after, before);
}

/// Status endpoints Grafana and operators call: `/api/v1/targets` (Strata
/// scrapes nothing) answers as a Prometheus without targets does, under
/// both prefixes; Loki's buildinfo has Loki's shape.
#[tokio::test]
async fn targets_and_buildinfo_answer_as_prometheus_and_loki_do() {
    let dir = tempfile::tempdir().unwrap();
    let strata = Strata::start(dir.path(), &[]).await;
    let port = free_port();
    let prom = spawn_prometheus(dir.path(), port, "global:\n  scrape_interval: 1m\n", &[]).await;
    let prom_base = format!("http://127.0.0.1:{}", prom.port);
    let client = reqwest::Client::new();
    for state in ["", "active", "dropped", "any"] {
        let params: Vec<(&str, String)> = if state.is_empty() {
            vec![]
        } else {
            vec![("state", state.to_string())]
        };
        let want = prom_query(&client, &prom_base, "/api/v1/targets", &params).await;
        for prefix in ["", "/prometheus"] {
            let (status, got) = strata
                .get_json(&format!("{prefix}/api/v1/targets"), &params, None)
                .await;
            assert_eq!(status, 200, "{state}: {got}");
            let mut data = got["data"].clone();
            // Prometheus 3 adds the dropped-target counts 2.42 lacks.
            assert_eq!(data["droppedTargetCounts"], serde_json::json!({}));
            data.as_object_mut().unwrap().remove("droppedTargetCounts");
            assert_eq!(data, want, "state={state}");
        }
    }
    let (status, info) = strata
        .get_json("/loki/api/v1/status/buildinfo", &[], None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    for key in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(info[key].is_string(), "{key}: {info}");
    }
}

/// `/api/v1/status/tsdb`: the tenant's head cardinality, counted exactly
/// for known series, in the keys Prometheus 2.42 answers with.
#[tokio::test]
async fn tsdb_status_counts_the_tenants_head() {
    let dir = tempfile::tempdir().unwrap();
    let strata = Strata::start(dir.path(), &["-auth.multitenancy-enabled=true"]).await;
    let t = now_ms() - 10_000;
    // 6 series of `req_total` (2 jobs x 3 codes), 2 of `up`.
    let mut series = Vec::new();
    for job in ["api", "web"] {
        for code in ["200", "404", "500"] {
            series.push(crate::common::series(
                &[("__name__", "req_total"), ("code", code), ("job", job)],
                &[(t, 1.0), (t + 1_000, 2.0)],
            ));
        }
        series.push(crate::common::series(
            &[("__name__", "up"), ("job", job)],
            &[(t, 1.0)],
        ));
    }
    let (status, text) = strata.push(series, Some("a")).await;
    assert_eq!(status, 200, "{text}");
    let (status, other) = strata
        .push(
            vec![crate::common::series(&[("__name__", "x")], &[(t, 1.0)])],
            Some("b"),
        )
        .await;
    assert_eq!(status, 200, "{other}");

    let (status, got) = strata
        .get_json("/api/v1/status/tsdb", &[("limit", "2".into())], Some("a"))
        .await;
    assert_eq!(status, 200, "{got}");
    let d = &got["data"];
    assert_eq!(d["headStats"]["numSeries"], 8, "{d}");
    // __name__ x2, code x3, job x2.
    assert_eq!(d["headStats"]["numLabelPairs"], 7);
    assert_eq!(d["headStats"]["minTime"], t);
    assert_eq!(d["headStats"]["maxTime"], t + 1_000);
    assert_eq!(
        d["seriesCountByMetricName"],
        serde_json::json!([{"name": "req_total", "value": 6}, {"name": "up", "value": 2}])
    );
    assert_eq!(
        d["labelValueCountByLabelName"],
        serde_json::json!([{"name": "code", "value": 3}, {"name": "__name__", "value": 2}])
    );
    assert_eq!(
        d["seriesCountByLabelValuePair"],
        serde_json::json!([{"name": "__name__=req_total", "value": 6}, {"name": "job=api", "value": 4}])
    );
    // Value bytes: "req_total" + "up" = 11, "200" + "404" + "500" = 9.
    assert_eq!(
        d["memoryInBytesByLabelName"],
        serde_json::json!([{"name": "__name__", "value": 11}, {"name": "code", "value": 9}])
    );
    // The same under Mimir's /prometheus prefix, where Grafana asks.
    let (status, prefixed) = strata
        .get_json(
            "/prometheus/api/v1/status/tsdb",
            &[("limit", "2".into())],
            Some("a"),
        )
        .await;
    assert_eq!(status, 200, "{prefixed}");
    assert_eq!(prefixed["data"], got["data"]);
    let (status, b) = strata.get_json("/api/v1/status/tsdb", &[], Some("b")).await;
    assert_eq!(status, 200);
    assert_eq!(b["data"]["headStats"]["numSeries"], 1, "tenants apart");
    for bad in ["0", "-1", "x"] {
        let (status, body) = strata
            .get_json("/api/v1/status/tsdb", &[("limit", bad.into())], Some("a"))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // The same keys as Prometheus's own answer.
    let port = free_port();
    let prom = spawn_prometheus(dir.path(), port, "global:\n  scrape_interval: 1m\n", &[]).await;
    let client = reqwest::Client::new();
    let want = prom_query(
        &client,
        &format!("http://127.0.0.1:{}", prom.port),
        "/api/v1/status/tsdb",
        &[],
    )
    .await;
    let keys = |v: &Json| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(d), keys(&want));
    assert_eq!(keys(&d["headStats"]), keys(&want["headStats"]));
}

/// `/api/v1/status/{config,flags,runtimeinfo}`: Prometheus's shapes (each
/// runtimeinfo field Prometheus 2.42 reports, with its JSON type, plus the
/// ones Prometheus 3 added), the effective configuration with secrets
/// masked, and every flag with its value; under both prefixes.
#[tokio::test]
async fn status_endpoints_answer_in_prometheus_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let strata = Strata::start(
        dir.path(),
        &[
            "-compactor.blocks-retention-period=90d",
            "-blocks-storage.s3.secret-access-key=hunter2",
        ],
    )
    .await;
    let port = free_port();
    let prom = spawn_prometheus(dir.path(), port, "global:\n  scrape_interval: 1m\n", &[]).await;
    let prom_base = format!("http://127.0.0.1:{}", prom.port);
    let client = reqwest::Client::new();
    let want = prom_query(&client, &prom_base, "/api/v1/status/runtimeinfo", &[]).await;
    let kind = |v: &Json| match v {
        Json::String(_) => "string",
        Json::Number(_) => "number",
        Json::Bool(_) => "bool",
        _ => "other",
    };
    for prefix in ["", "/prometheus"] {
        let (status, got) = strata
            .get_json(&format!("{prefix}/api/v1/status/runtimeinfo"), &[], None)
            .await;
        assert_eq!(status, 200, "{got}");
        let got = &got["data"];
        for (key, value) in want.as_object().expect("runtimeinfo") {
            assert_eq!(kind(&got[key]), kind(value), "{key}: {got}");
        }
        for key in ["hostname", "serverTime", "GOMEMLIMIT"] {
            assert!(!got[key].is_null(), "Prometheus 3's {key}: {got}");
        }
        assert_eq!(got["storageRetention"], "90d");
        assert_eq!(got["reloadConfigSuccess"], true);
        assert!(got["goroutineCount"].as_u64() > Some(0), "{got}");
        let started = chrono::DateTime::parse_from_rfc3339(got["startTime"].as_str().unwrap())
            .expect("RFC 3339 start time");
        assert!(started.timestamp_millis() <= now_ms());

        let (status, config) = strata
            .get_json(&format!("{prefix}/api/v1/status/config"), &[], None)
            .await;
        assert_eq!(status, 200);
        let yaml = config["data"]["yaml"].as_str().expect("yaml text");
        let parsed: serde_yaml::Value = serde_yaml::from_str(yaml).expect("valid YAML");
        assert_eq!(parsed["target"], "all");
        assert!(parsed["limits"]["compactor_blocks_retention_period"].is_string());
        assert!(!yaml.contains("hunter2"), "secrets are masked: {yaml}");

        let (status, flags) = strata
            .get_json(&format!("{prefix}/api/v1/status/flags"), &[], None)
            .await;
        // At the root only, as Mimir: Grafana would take the Prometheus
        // data source at `/prometheus` for Thanos if it answered there.
        if prefix == "/prometheus" {
            assert_eq!(status, 404, "{flags}");
            continue;
        }
        assert_eq!(status, 200);
        let flags = flags["data"].as_object().expect("flat map");
        assert!(flags.values().all(Json::is_string), "{flags:?}");
        assert_eq!(flags["target"], "all");
        assert_eq!(flags["server.http-listen-address"], "127.0.0.1");
        assert_eq!(flags["auth.multitenancy-enabled"], "false");
        assert_eq!(flags["blocks-storage.s3.secret-access-key"], "********");
        assert!(flags.len() > 50, "every flag: {}", flags.len());
    }
}

/// `/api/v1/parse_query`: the syntax tree in Prometheus's JSON, written
/// out here from Prometheus's documented shapes (2.42 has no parse_query
/// to compare with).
#[tokio::test]
async fn parse_query_answers_the_syntax_tree() {
    let dir = tempfile::tempdir().unwrap();
    let strata = Strata::start(dir.path(), &[]).await;
    let selector = |name: &str, matchers: Json| {
        serde_json::json!({
            "type": "vectorSelector", "name": name, "offset": 0,
            "matchers": matchers, "timestamp": null, "startOrEnd": null,
        })
    };
    let name_matcher = |v: &str| serde_json::json!({"name": "__name__", "type": "=", "value": v});
    let cases = [
        (
            "foo / on(job) group_left(a) bar",
            serde_json::json!({
                "type": "binaryExpr", "op": "/", "bool": false,
                "lhs": selector("foo", serde_json::json!([name_matcher("foo")])),
                "rhs": selector("bar", serde_json::json!([name_matcher("bar")])),
                "matching": {
                    "card": "many-to-one", "labels": ["job"], "on": true, "include": ["a"],
                    "fillValues": {"lhs": null, "rhs": null},
                },
            }),
        ),
        (
            r#"sum by (job) (rate(x{c=~"5.."}[5m] offset 1m))"#,
            serde_json::json!({
                "type": "aggregation", "op": "sum", "grouping": ["job"], "without": false, "param": null,
                "expr": {
                    "type": "call",
                    "func": {"name": "rate", "argTypes": ["matrix"], "variadic": 0, "returnType": "vector"},
                    "args": [{
                        "type": "matrixSelector", "name": "x", "range": 300_000, "offset": 60_000,
                        "matchers": [{"name": "c", "type": "=~", "value": "5.."}, name_matcher("x")],
                        "timestamp": null, "startOrEnd": null,
                    }],
                },
            }),
        ),
        (
            "topk(3, -foo @ start()) > bool 2",
            serde_json::json!({
                "type": "binaryExpr", "op": ">", "bool": true, "matching": null,
                "lhs": {
                    "type": "aggregation", "op": "topk", "grouping": [], "without": false,
                    "param": {"type": "numberLiteral", "val": "3"},
                    "expr": {"type": "unaryExpr", "op": "-", "expr": {
                        "type": "vectorSelector", "name": "foo", "offset": 0,
                        "matchers": [name_matcher("foo")], "timestamp": null, "startOrEnd": "start",
                    }},
                },
                "rhs": {"type": "numberLiteral", "val": "2"},
            }),
        ),
        (
            r#"(up)[1h:5m] @ 1700000000"#,
            serde_json::json!({
                "type": "subquery", "range": 3_600_000, "step": 300_000, "offset": 0,
                "timestamp": 1_700_000_000_000_i64, "startOrEnd": null,
                "expr": {"type": "parenExpr", "expr": selector("up", serde_json::json!([name_matcher("up")]))},
            }),
        ),
        (
            r#""text""#,
            serde_json::json!({"type": "stringLiteral", "val": "text"}),
        ),
    ];
    for (query, want) in cases {
        for prefix in ["", "/prometheus"] {
            let (status, got) = strata
                .get_json(
                    &format!("{prefix}/api/v1/parse_query"),
                    &[("query", query.to_string())],
                    None,
                )
                .await;
            assert_eq!(status, 200, "{query}: {got}");
            assert_eq!(got["data"], want, "{query}");
        }
    }
    let (status, got) = strata
        .get_json("/api/v1/parse_query", &[("query", "sum(".into())], None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(got["errorType"], "bad_data", "{got}");
    assert!(
        got["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\""),
        "{got}"
    );
    // Trees are bounded by the query's size (16 KiB) and depth.
    let long = format!("up{{a=\"{}\"}}", "x".repeat(20_000));
    let deep = format!("{}up{}", "(".repeat(5_000), ")".repeat(5_000));
    for query in [long, deep] {
        let (status, got) = strata
            .get_json("/api/v1/parse_query", &[("query", query)], None)
            .await;
        assert_eq!(status, 400, "{got}");
    }
}

/// Mimir's cardinality API over the tenant's in-memory series: exact
/// counts and Mimir's orderings on known series, active vs in-memory,
/// the per-tenant switch (off by default) and Mimir's plain-text 400s.
#[tokio::test]
async fn cardinality_api_counts_in_memory_series() {
    let dir = tempfile::tempdir().unwrap();
    let strata = Strata::start_with_overrides(
        dir.path(),
        "overrides:\n  a:\n    cardinality_analysis_enabled: true\n",
        &[],
    )
    .await;
    let now = now_ms();
    let mut series = Vec::new();
    for (job, code) in [("api", "200"), ("api", "500"), ("web", "200")] {
        series.push(crate::common::series(
            &[("__name__", "req_total"), ("code", code), ("job", job)],
            &[(now - 10_000, 1.0)],
        ));
    }
    for job in ["api", "web"] {
        series.push(crate::common::series(
            &[("__name__", "up"), ("job", job)],
            &[(now - 10_000, 1.0)],
        ));
    }
    // In memory, but not active (no sample in the last 20 minutes).
    series.push(crate::common::series(
        &[("__name__", "old_metric"), ("job", "old")],
        &[(now - 3_600_000, 1.0)],
    ));
    let (status, text) = strata.push(series, Some("a")).await;
    assert_eq!(status, 200, "{text}");
    let get = |path: &'static str, params: Vec<(&'static str, &'static str)>| {
        let strata = &strata;
        async move {
            let r = strata
                .client
                .get(strata.url(path))
                .query(&params)
                .header("X-Scope-OrgID", "a")
                .send()
                .await
                .expect("cardinality request");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str::<Json>(&text).unwrap_or(Json::String(text)),
            )
        }
    };
    let names = "/prometheus/api/v1/cardinality/label_names";
    assert_eq!(
        get(names, vec![]).await,
        (
            200,
            serde_json::json!({
                "label_values_count_total": 8, "label_names_count": 3,
                "cardinality": [
                    {"label_name": "__name__", "label_values_count": 3},
                    {"label_name": "job", "label_values_count": 3},
                    {"label_name": "code", "label_values_count": 2},
                ],
            })
        )
    );
    // Without the prefix too.
    assert_eq!(
        get("/api/v1/cardinality/label_names", vec![]).await,
        get(names, vec![]).await
    );
    assert_eq!(
        get(
            names,
            vec![("selector", r#"{__name__="req_total"}"#), ("limit", "2")]
        )
        .await
        .1,
        serde_json::json!({
            "label_values_count_total": 5, "label_names_count": 3,
            "cardinality": [
                {"label_name": "code", "label_values_count": 2},
                {"label_name": "job", "label_values_count": 2},
            ],
        })
    );
    assert_eq!(
        get(names, vec![("count_method", "active")]).await.1["label_values_count_total"],
        6,
        "old_metric and job=old are not active"
    );

    let values = "/api/v1/cardinality/label_values";
    assert_eq!(
        get(
            values,
            vec![
                ("label_names[]", "job"),
                ("label_names[]", "code"),
                ("count_method", "active")
            ]
        )
        .await
        .1,
        serde_json::json!({
            "series_count_total": 5,
            "labels": [
                {"label_name": "job", "label_values_count": 2, "series_count": 5, "cardinality": [
                    {"label_value": "api", "series_count": 3}, {"label_value": "web", "series_count": 2}]},
                {"label_name": "code", "label_values_count": 2, "series_count": 3, "cardinality": [
                    {"label_value": "200", "series_count": 2}, {"label_value": "500", "series_count": 1}]},
            ],
        })
    );
    assert_eq!(
        get(
            values,
            vec![
                ("label_names[]", "code"),
                ("selector", "up"),
                ("limit", "1")
            ]
        )
        .await
        .1,
        serde_json::json!({
            "series_count_total": 6,
            "labels": [{"label_name": "code", "label_values_count": 0, "series_count": 0, "cardinality": []}],
        }),
        "the total is the tenant's, whatever the selector"
    );

    let (status, active) = get(
        "/api/v1/cardinality/active_series",
        vec![("selector", "up")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        active,
        serde_json::json!({"data": [{"__name__": "up", "job": "api"}, {"__name__": "up", "job": "web"}]})
    );

    for (path, params, want) in [
        (
            names,
            vec![("limit", "501")],
            "'limit' param cannot be greater than '500'",
        ),
        (
            names,
            vec![("limit", "-1")],
            "'limit' param cannot be less than '0'",
        ),
        (
            names,
            vec![("count_method", "all")],
            "invalid 'count_method' param 'all'",
        ),
        (names, vec![("selector", "up{")], "failed to parse selector"),
        (
            names,
            vec![("selector", "up"), ("selector", "x")],
            "multiple 'selector' params",
        ),
        (values, vec![], "'label_names[]' param is required"),
        (
            values,
            vec![("label_names[]", "bad-name")],
            "invalid 'label_names' param 'bad-name'",
        ),
        (
            "/api/v1/cardinality/active_series",
            vec![],
            "missing 'selector' parameter",
        ),
    ] {
        let (status, body) = get(path, params.clone()).await;
        assert_eq!(status, 400, "{path} {params:?}: {body}");
        assert!(
            body.as_str().is_some_and(|b| b.contains(want)),
            "{path} {params:?}: {body}"
        );
    }
    let r = strata
        .client
        .get(strata.url(names))
        .header("X-Scope-OrgID", "b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "cardinality analysis is disabled for the tenant: b"
    );
}

//! The ruler end to end: rule groups through Mimir's rules API, recording
//! rules written back and equal to the expression, and an alert that goes
//! pending, fires after `for`, reaches a real Alertmanager (Debian's
//! `prometheus-alertmanager`) and through it a webhook served here with its
//! templated labels and annotations, then resolves.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value as Json;

use crate::common::{Strata, free_port, now_ms, secs, series, wait_ready};

struct Alertmanager(Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_alertmanager(dir: &std::path::Path, webhook: &str) -> (Alertmanager, u16) {
    let port = free_port();
    let cfg = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n"
    );
    std::fs::write(dir.join("am.yml"), cfg).unwrap();
    let log = std::fs::File::create(dir.join("am.log")).unwrap();
    let child = Command::new(
        std::env::var("STRATA_TEST_ALERTMANAGER").unwrap_or_else(|_| "prometheus-alertmanager".into()),
    )
    .arg(format!("--config.file={}", dir.join("am.yml").display()))
    .arg(format!("--storage.path={}", dir.join("am-data").display()))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .arg("--cluster.listen-address=")
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .expect("the `prometheus-alertmanager` binary (Debian package) must be installed; the README test command installs it");
    let am = Alertmanager(child);
    wait_ready(&format!("http://127.0.0.1:{port}/-/ready"), 30, || {
        std::fs::read_to_string(dir.join("am.log")).unwrap_or_default()
    })
    .await;
    (am, port)
}

/// A webhook receiver collecting Alertmanager's notifications.
async fn start_webhook() -> (String, Arc<Mutex<Vec<Json>>>) {
    let got: Arc<Mutex<Vec<Json>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Json>| {
            let sink = sink.clone();
            async move {
                sink.lock().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

async fn eventually<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Saves `group` in `namespace` through the rules API at `base` (202), then
/// lists every group there.
async fn save_and_list(s: &Strata, base: &str, namespace: &str, group: &str) -> serde_yaml::Value {
    let client = reqwest::Client::new();
    let r = client
        .post(s.url(&format!("{base}/{namespace}")))
        .header("Content-Type", "application/yaml")
        .body(group.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let listed = client
        .get(s.url(base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_yaml::from_str(&listed).unwrap()
}

const GROUP: &str = r#"name: kafka
interval: 1s
rules:
  - record: job:queue_size:max
    expr: max by (job) (queue_size)
  - alert: QueueTooLong
    expr: queue_size > 50
    for: 3s
    labels:
      severity: page
      team: "{{ $labels.job }}-oncall"
    annotations:
      summary: "Queue of {{ $labels.instance }} is {{ $value }}"
      description: "{{ $value | humanize }} messages waiting"
      where: "{{ $externalLabels.cluster }}"
"#;

#[tokio::test]
async fn rules_record_and_alert_through_a_real_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let (hook_url, notifications) = start_webhook().await;
    let (_am, am_port) = start_alertmanager(dir.path(), &hook_url).await;
    let am_flag = format!("-ruler.alertmanager-url=http://127.0.0.1:{am_port}");
    let s = Arc::new(
        Strata::start(
            dir.path(),
            &[
                &am_flag,
                "-ruler.poll-interval=1s",
                "-ruler.resend-delay=1s",
                "-ruler.external.url=http://strata.example",
                "-ruler.external-labels=cluster=prod-eu,team=ignored",
            ],
        )
        .await,
    );

    // A live queue-size gauge, pushed twice a second.
    let value = Arc::new(AtomicU64::new(100));
    let pusher = {
        let s = s.clone();
        let value = value.clone();
        tokio::spawn(async move {
            loop {
                let v = value.load(Ordering::Relaxed) as f64;
                let _ = s
                    .push(
                        vec![
                            series(
                                &[
                                    ("__name__", "queue_size"),
                                    ("instance", "k1"),
                                    ("job", "kafka"),
                                ],
                                &[(now_ms(), v)],
                            ),
                            series(
                                &[
                                    ("__name__", "queue_size"),
                                    ("instance", "k2"),
                                    ("job", "kafka"),
                                ],
                                &[(now_ms(), 5.0)],
                            ),
                        ],
                        None,
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let client = reqwest::Client::new();
    // Invalid groups are refused with the rule and its line.
    let bad = GROUP.replace("queue_size > 50", "queue_size >");
    let r = client
        .post(s.url("/prometheus/config/v1/rules/team-a"))
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let msg = r.text().await.unwrap();
    assert!(msg.contains("rule 2 (line 6) (QueueTooLong)"), "{msg}");

    let listed = save_and_list(&s, "/prometheus/config/v1/rules", "team-a", GROUP).await;
    assert_eq!(listed["team-a"][0]["name"], "kafka");
    assert_eq!(listed["team-a"][0]["rules"][1]["for"], "3s");

    // Pending first, then firing after `for`.
    let pending = eventually("a pending alert", 20, async || {
        let (_, j) = s.get_json("/api/v1/alerts", &[], None).await;
        let a = j["data"]["alerts"].as_array()?.first()?.clone();
        (a["state"] == "pending").then_some(a)
    })
    .await;
    assert_eq!(pending["labels"]["team"], "kafka-oncall");
    eventually("a firing alert", 20, async || {
        let (_, j) = s.get_json("/api/v1/alerts", &[], None).await;
        (j["data"]["alerts"][0]["state"] == "firing").then_some(())
    })
    .await;

    // Alertmanager relays it to the webhook with the templated fields.
    let firing = eventually("the firing notification", 30, async || {
        notifications
            .lock()
            .iter()
            .find(|n| n["status"] == "firing")
            .cloned()
    })
    .await;
    let alert = &firing["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "QueueTooLong");
    assert_eq!(alert["labels"]["instance"], "k1");
    assert_eq!(alert["labels"]["job"], "kafka");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["team"], "kafka-oncall");
    assert!(alert["labels"].get("__name__").is_none());
    assert_eq!(alert["annotations"]["summary"], "Queue of k1 is 100");
    assert_eq!(alert["annotations"]["description"], "100 messages waiting");
    // External labels: added unless the alert has the label, and templatable.
    assert_eq!(alert["labels"]["cluster"], "prod-eu");
    assert_eq!(alert["labels"]["team"], "kafka-oncall");
    assert_eq!(alert["annotations"]["where"], "prod-eu");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("http://strata.example/graph?g0.expr="),
        "{alert}"
    );
    assert_eq!(
        firing["alerts"].as_array().unwrap().len(),
        1,
        "k2 stays below 50"
    );

    // ALERTS series and the rules status API.
    let d = s
        .query(
            "ALERTS{alertname=\"QueueTooLong\",alertstate=\"firing\"}",
            now_ms(),
        )
        .await;
    assert_eq!(d["result"][0]["metric"]["instance"], "k1", "{d}");
    assert_eq!(d["result"][0]["metric"]["severity"], "page", "{d}");
    let d = s
        .query("ALERTS_FOR_STATE{alertname=\"QueueTooLong\"}", now_ms())
        .await;
    let active_at: f64 = d["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        active_at > 0.0 && active_at * 1000.0 < now_ms() as f64,
        "{d}"
    );
    let (_, rules) = s.get_json("/prometheus/api/v1/rules", &[], None).await;
    let g = &rules["data"]["groups"][0];
    assert_eq!(g["name"], "kafka");
    assert_eq!(g["file"], "team-a");
    assert_eq!(g["rules"][0]["type"], "recording");
    assert_eq!(g["rules"][0]["health"], "ok", "{g}");
    assert_eq!(g["rules"][1]["type"], "alerting");
    assert_eq!(g["rules"][1]["state"], "firing");
    assert_eq!(g["rules"][1]["duration"], 3.0);

    // The recording rule's samples equal the expression at their timestamps.
    let recorded = s.raw_samples("job:queue_size:max", "30s", now_ms()).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0["job"], "kafka");
    assert!(recorded[0].1.len() >= 3, "{recorded:?}");
    for (t, v) in &recorded[0].1 {
        let direct = s.query("max by (job) (queue_size)", *t).await;
        let want: f64 = direct["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(*v, want, "recorded at {}", secs(*t));
    }

    // The queue drains: the alert resolves and the webhook hears it.
    value.store(10, Ordering::Relaxed);
    let resolved = eventually("the resolved notification", 30, async || {
        notifications
            .lock()
            .iter()
            .find(|n| n["status"] == "resolved")
            .cloned()
    })
    .await;
    assert_eq!(resolved["alerts"][0]["labels"]["instance"], "k1");
    let (_, j) = s.get_json("/api/v1/alerts", &[], None).await;
    assert_eq!(j["data"]["alerts"], serde_json::json!([]), "{j}");

    // Deleting the group stops it.
    let r = client
        .delete(s.url("/prometheus/config/v1/rules/team-a/kafka"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = client
        .get(s.url("/prometheus/config/v1/rules"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    pusher.abort();
}

const LOG_GROUP: &str = r#"name: latency
interval: 1s
rules:
  - record: endpoint:latency_ms:p95
    expr: quantile_over_time(0.95, {app="api"} | regexp "took (?P<ms>[0-9]+)ms" | unwrap ms [15m]) by (endpoint)
  - alert: SlowEndpoint
    expr: quantile_over_time(0.95, {app="api"} | regexp "took (?P<ms>[0-9]+)ms" | unwrap ms [15m]) by (endpoint) > 200
    for: 2s
    labels:
      severity: warn
    annotations:
      summary: "p95 of {{ $labels.endpoint }} is {{ $value }}ms"
"#;

/// LogQL rules through Loki's rules API: a regex-extracted latency
/// percentile per endpoint recorded as a metric (equal to hand-computed
/// values) and an alert on it delivered through a real Alertmanager.
#[tokio::test]
async fn logql_rules_record_percentiles_and_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (hook_url, notifications) = start_webhook().await;
    let (_am, am_port) = start_alertmanager(dir.path(), &hook_url).await;
    let am_flag = format!("-ruler.alertmanager-url=http://127.0.0.1:{am_port}");
    let s = Strata::start(
        dir.path(),
        &[
            &am_flag,
            "-ruler.poll-interval=1s",
            "-ruler.resend-delay=1s",
        ],
    )
    .await;

    // /users took 10..100 ms -> p95 rank 8.55 -> 95.5; /orders 5, 7, 300 -> rank 1.9 -> 270.7.
    let now_ns = now_ms() * 1_000_000;
    let mut streams = Vec::new();
    for (endpoint, values) in [
        ("/users", (1..=10).map(|i| i * 10).collect::<Vec<i64>>()),
        ("/orders", vec![5, 7, 300]),
    ] {
        let values: Vec<serde_json::Value> = values
            .iter()
            .enumerate()
            .map(|(i, ms)| {
                serde_json::json!([
                    (now_ns - 60_000_000_000 + i as i64 * 1_000_000_000).to_string(),
                    format!("GET {endpoint} took {ms}ms")
                ])
            })
            .collect();
        streams.push(
            serde_json::json!({"stream": {"app": "api", "endpoint": endpoint}, "values": values}),
        );
    }
    let client = reqwest::Client::new();
    let r = client
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({"streams": streams}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // Invalid LogQL groups: 400 naming the rule and its line.
    for (bad, want) in [
        (LOG_GROUP.replace("| unwrap ms [15m]) by (endpoint)\n  - alert", "| unwarp ms [15m]) by (endpoint)\n  - alert"), "rule 1 (line 4) (endpoint:latency_ms:p95)"),
        (LOG_GROUP.replace("expr: quantile_over_time(0.95, {app=\"api\"} | regexp \"took (?P<ms>[0-9]+)ms\" | unwrap ms [15m]) by (endpoint) > 200", "expr: '{app=\"api\"} |= \"error\"'"), "metric query"),
    ] {
        let r = client.post(s.url("/loki/api/v1/rules/logs")).body(bad).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let msg = r.text().await.unwrap();
        assert!(msg.contains(want), "want {want:?} in {msg}");
    }
    let listed = save_and_list(&s, "/loki/api/v1/rules", "logs", LOG_GROUP).await;
    assert_eq!(listed["logs"][0]["name"], "latency");
    // Loki's legacy path, where Grafana's alerting sends a Loki data
    // source's ruler requests, serves the same groups.
    let legacy: serde_yaml::Value = serde_yaml::from_str(
        &client
            .get(s.url("/api/prom/rules/logs/latency"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(legacy["name"], "latency", "{legacy:?}");
    let r = client
        .get(s.url("/api/prom/rules/logs/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // LogQL groups are not PromQL groups.
    let r = client
        .get(s.url("/prometheus/config/v1/rules"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Recorded percentiles equal the hand-computed values.
    let recorded = eventually("recorded percentiles", 30, async || {
        let d = s.query("endpoint:latency_ms:p95", now_ms()).await;
        let r = d["result"].as_array()?.clone();
        (r.len() == 2).then_some(r)
    })
    .await;
    let mut got: Vec<(String, f64)> = recorded
        .iter()
        .map(|x| {
            (
                x["metric"]["endpoint"].as_str().unwrap().to_string(),
                x["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got[0].0, "/orders");
    assert!((got[0].1 - 270.7).abs() < 1e-9, "{got:?}");
    assert_eq!(got[1].0, "/users");
    assert!((got[1].1 - 95.5).abs() < 1e-9, "{got:?}");
    assert_eq!(recorded[0]["metric"]["__name__"], "endpoint:latency_ms:p95");

    // The alert fires for /orders only and reaches the webhook, templated.
    let firing = eventually("the SlowEndpoint notification", 40, async || {
        notifications
            .lock()
            .iter()
            .find(|n| {
                n["status"] == "firing" && n["alerts"][0]["labels"]["alertname"] == "SlowEndpoint"
            })
            .cloned()
    })
    .await;
    let alerts = firing["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{firing}");
    assert_eq!(alerts[0]["labels"]["endpoint"], "/orders");
    assert_eq!(alerts[0]["labels"]["severity"], "warn");
    assert_eq!(
        alerts[0]["annotations"]["summary"],
        "p95 of /orders is 270.7ms"
    );
    let (_, rules) = s.get_json("/api/v1/rules", &[], None).await;
    assert_eq!(rules["data"]["groups"][0]["name"], "latency", "{rules}");
}

const SLOW_GROUP: &str = r#"name: slow
interval: 1s
rules:
  - alert: QueueStuck
    expr: queue_size > 50
    for: 60s
"#;

/// A restarted ruler keeps a pending alert's `for` progress: the active-since
/// time comes back from `ALERTS_FOR_STATE` (shifted by the outage only).
#[tokio::test]
async fn pending_alert_keeps_for_progress_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Strata::start(
        dir.path(),
        &["-ruler.poll-interval=1s", "-ruler.for-grace-period=0s"],
    )
    .await;
    let push = async |s: &Strata| {
        let (st, body) = s
            .push(
                vec![series(
                    &[("__name__", "queue_size"), ("instance", "k1")],
                    &[(now_ms(), 100.0)],
                )],
                None,
            )
            .await;
        assert_eq!(st, 200, "{body}");
    };
    push(&s).await;
    let r = reqwest::Client::new()
        .post(s.url("/prometheus/config/v1/rules/team-a"))
        .body(SLOW_GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let active_at = |a: &Json| -> i64 {
        chrono::DateTime::parse_from_rfc3339(a["activeAt"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let first = eventually("a pending alert", 20, async || {
        let (_, j) = s.get_json("/api/v1/alerts", &[], None).await;
        let a = j["data"]["alerts"].as_array()?.first()?.clone();
        (a["state"] == "pending").then_some(a)
    })
    .await;
    let before = active_at(&first);
    // Several seconds of pending progress, kept fresh.
    for _ in 0..12 {
        push(&s).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(now_ms() - before >= 5_000);
    s.restart().await;
    let restarted_at = now_ms();
    push(&s).await;
    let again = eventually("the alert after the restart", 20, async || {
        let (_, j) = s.get_json("/api/v1/alerts", &[], None).await;
        let a = j["data"]["alerts"].as_array()?.first()?.clone();
        (a["state"] == "pending").then_some(a)
    })
    .await;
    let after = active_at(&again);
    // Without restoring, the alert would be active since after the restart.
    assert!(
        after <= restarted_at - 4_000,
        "activeAt {after} should keep the progress made before the restart at {restarted_at} (was {before})"
    );
    assert!(after >= before, "the outage does not count as pending time");
}

/// Rule-group limits are per-tenant limits, overridable in the runtime config.
#[tokio::test]
async fn rule_group_limits_follow_tenant_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start_with_overrides(
        dir.path(),
        "overrides:\n  small:\n    ruler_max_rule_groups_per_tenant: 1\n    ruler_max_rules_per_rule_group: 1\n",
        &[],
    )
    .await;
    let post = async |tenant: &str, ns: &str, yaml: &str| {
        let r = reqwest::Client::new()
            .post(s.url(&format!("/prometheus/config/v1/rules/{ns}")))
            .header("X-Scope-OrgID", tenant)
            .body(yaml.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let one = |name: &str| format!("name: {name}\nrules:\n  - record: a:b\n    expr: up\n");
    let two = "name: two\nrules:\n  - record: a:b\n    expr: up\n  - record: c:d\n    expr: up\n";
    let (st, msg) = post("small", "ns", two).await;
    assert_eq!(st, 400);
    assert!(
        msg.contains("rules per rule group limit (limit: 1 actual: 2)"),
        "{msg}"
    );
    assert_eq!(post("small", "ns", &one("g1")).await.0, 202);
    // Replacing the stored group is not a new group.
    assert_eq!(post("small", "ns", &one("g1")).await.0, 202);
    let (st, msg) = post("small", "ns", &one("g2")).await;
    assert_eq!(st, 400);
    assert!(
        msg.contains("rule groups limit (limit: 1 actual: 2)"),
        "{msg}"
    );
    // Other tenants keep the defaults (70 groups, 20 rules).
    assert_eq!(post("big", "ns", two).await.0, 202);
    assert_eq!(post("big", "ns", &one("g2")).await.0, 202);
}

/// `query_offset` evaluates a group's expressions that far in the past and,
/// as Prometheus, records the results at that past time: a gauge last
/// written 61 minutes ago is recorded an hour back, not now.
#[tokio::test]
async fn query_offset_evaluates_in_the_past() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-ruler.poll-interval=1s"]).await;
    let old = now_ms() - 61 * 60 * 1000;
    let (st, body) = s
        .push(
            vec![series(
                &[("__name__", "backlog"), ("job", "etl")],
                &[(old, 7.0)],
            )],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let group = "name: offset\ninterval: 1s\nquery_offset: 1h\nrules:\n  - record: job:backlog:offset\n    expr: backlog\n";
    let listed = save_and_list(&s, "/prometheus/config/v1/rules", "team-a", group).await;
    assert_eq!(listed["team-a"][0]["query_offset"], "1h");
    let hour = 3600 * 1000;
    let d = eventually("the recorded value", 20, async || {
        let d = s.query("job:backlog:offset", now_ms() - hour).await;
        (!d["result"].as_array()?.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(d["result"][0]["value"][1], "7", "{d}");
    assert_eq!(d["result"][0]["metric"]["job"], "etl");
    // Nothing is recorded at the wall-clock evaluation time, where the gauge is stale.
    let now = s.query("job:backlog:offset", now_ms()).await;
    assert!(now["result"].as_array().unwrap().is_empty(), "{now}");
}

/// A ruler that cannot evaluate for a while (here: the process stopped
/// with SIGSTOP) counts the evaluations it missed and resumes at the next
/// aligned time, without replaying the missed ones in a burst.
#[tokio::test]
async fn missed_evaluations_are_counted_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(dir.path(), &["-ruler.poll-interval=1s"]).await;
    let group =
        "name: ticker\ninterval: 1s\nrules:\n  - record: ticker_value\n    expr: vector(1)\n";
    save_and_list(&s, "/prometheus/config/v1/rules", "missed", group).await;
    let count = async |s: &Strata| -> Vec<i64> {
        s.raw_samples("ticker_value", "5m", now_ms() + 1000)
            .await
            .into_iter()
            .flat_map(|(_, pts)| pts.into_iter().map(|(t, _)| t))
            .collect()
    };
    eventually("the group records", 30, async || {
        (count(&s).await.len() >= 2).then_some(())
    })
    .await;
    let missed_total = async |s: &Strata| -> f64 {
        let text = s
            .client
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("strata_ruler_evaluations_total{") && l.contains("outcome=\"missed\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let missed_before = missed_total(&s).await;
    s.signal("STOP");
    let stopped_at = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let resumed_at = now_ms();
    s.signal("CONT");
    eventually("recording resumes", 30, async || {
        count(&s)
            .await
            .iter()
            .any(|t| *t > resumed_at)
            .then_some(())
    })
    .await;
    let missed = missed_total(&s).await - missed_before;
    assert!(missed >= 4.0, "missed evaluations counted: {missed}");
    let times = count(&s).await;
    let inside: Vec<i64> = times
        .iter()
        .copied()
        .filter(|t| *t > stopped_at + 1500 && *t < resumed_at - 1500)
        .collect();
    assert!(
        inside.is_empty(),
        "no evaluation replayed for the stopped window: {inside:?}"
    );
    assert!(
        times.is_sorted() && times.windows(2).all(|w| w[1] - w[0] >= 1000),
        "one evaluation per interval at most: {times:?}"
    );
}

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

    let r = client
        .post(s.url("/prometheus/config/v1/rules/team-a"))
        .header("Content-Type", "application/yaml")
        .body(GROUP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let listed = client
        .get(s.url("/prometheus/config/v1/rules"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let listed: serde_yaml::Value = serde_yaml::from_str(&listed).unwrap();
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

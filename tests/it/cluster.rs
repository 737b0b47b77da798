//! Distributed mode: a real cluster of separate `strata` processes started by
//! `deploy/local/cluster.sh` on 127.0.0.x addresses (2 distributors and the
//! compactor as the ring's Raft voters, 3 ingesters with RF 3, 2
//! store-gateways, a query-frontend, a querier, a ruler, one shared
//! object-store directory), under continuous
//! remote-write load while processes are killed and restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value as Json;

use strata_proto::prometheus::{Exemplar, Label, MetricMetadata, TimeSeries};

use crate::common::{encode, encode_with_metadata, free_port, now_ms, series};

const SERIES: usize = 20;

pub(crate) struct Cluster {
    dir: PathBuf,
    http: u16,
    grpc: u16,
    client: reqwest::Client,
    /// Flags added to every process's.
    extra_args: String,
    /// Environment variables of every process.
    env: Vec<(String, String)>,
}

/// The processes `deploy/local/cluster.sh` starts.
pub(crate) const PROCESSES: [&str; 11] = [
    "distributor-1",
    "distributor-2",
    "compactor",
    "ingester-1",
    "ingester-2",
    "ingester-3",
    "store-gateway-1",
    "store-gateway-2",
    "querier",
    "ruler",
    "query-frontend",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/cluster.sh")
}

pub(crate) fn ip_of(name: &str) -> &'static str {
    match name {
        "distributor-1" => "127.0.0.11",
        "distributor-2" => "127.0.0.12",
        "compactor" => "127.0.0.13",
        "ingester-1" => "127.0.0.21",
        "ingester-2" => "127.0.0.22",
        "ingester-3" => "127.0.0.23",
        "store-gateway-1" => "127.0.0.41",
        "store-gateway-2" => "127.0.0.42",
        "querier" => "127.0.0.31",
        "query-frontend" => "127.0.0.33",
        _ => "127.0.0.32",
    }
}

impl Cluster {
    /// A cluster (not started) with its processes' directories under `dir`.
    pub(crate) fn in_dir(dir: &Path) -> Cluster {
        Cluster {
            dir: dir.to_path_buf(),
            http: free_port(),
            grpc: free_port(),
            client: reqwest::Client::new(),
            extra_args: String::new(),
            env: Vec::new(),
        }
    }

    /// The same cluster with `key=value` in every process's environment.
    pub(crate) fn with_env(mut self, key: &str, value: &str) -> Cluster {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The same cluster with `args` added to every process's flags.
    pub(crate) fn with_args(mut self, args: &str) -> Cluster {
        self.extra_args = args.to_string();
        self
    }

    /// The HTTP port every process listens on (each on its own address).
    pub(crate) fn http_port(&self) -> u16 {
        self.http
    }

    pub(crate) fn run(&self, cmd: &str) -> String {
        let out = Command::new("bash")
            .arg(script())
            .arg(cmd)
            .arg(&self.dir)
            .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("HTTP_PORT", self.http.to_string())
            .env("GRPC_PORT", self.grpc.to_string())
            .env(
                "STRATA_ARGS",
                format!(
                    "-ring.heartbeat-period=1s -ring.heartbeat-timeout=15s \
                     -blocks-storage.tsdb.flush-blocks-on-shutdown=true -server.graceful-shutdown-timeout=60s \
                     -querier.cardinality-analysis-enabled=true {}",
                    self.extra_args
                ),
            )
            .output()
            .expect("run cluster.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "cluster.sh {cmd} failed:\n{text}");
        text
    }

    pub(crate) fn url(&self, name: &str, path: &str) -> String {
        format!("http://{}:{}{path}", ip_of(name), self.http)
    }

    /// The log of process `name`.
    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name).join("log")).unwrap_or_default()
    }

    fn pid(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.dir.join(name).join("pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    fn signal(&self, name: &str, sig: &str) {
        let pid = self.pid(name);
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{sig} {name}");
    }

    async fn wait_exit(&self, name: &str) {
        let pid = self.pid(name);
        for _ in 0..900 {
            let alive = Command::new("kill")
                .arg("-0")
                .arg(pid.to_string())
                .stderr(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !alive {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} did not exit");
    }

    async fn ring(&self, via: &str) -> Option<Json> {
        let r = self
            .client
            .get(self.url(via, "/ring?format=json"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    async fn wait_state(&self, name: &str, state: &str) {
        for _ in 0..300 {
            if let Some(r) = self.ring("querier").await
                && r["instances"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|i| i["id"] == name && i["state"] == state))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} never became {state} in the ring");
    }

    /// Pushes `n` log lines (Loki JSON) through the distributors in turn;
    /// every push must succeed. Returns the lines.
    async fn push_logs(&self, n: usize) -> Vec<String> {
        let base = now_ms() * 1_000_000;
        let mut lines = Vec::new();
        for i in 0..n {
            let line = format!("cluster log line {i}");
            let body = serde_json::json!({"streams": [{
                "stream": {"app": "cluster-test", "shard": (i % 3).to_string()},
                "values": [[(base + i as i64).to_string(), line]],
            }]});
            let d = ["distributor-1", "distributor-2"][i % 2];
            let r = self
                .client
                .post(self.url(d, "/loki/api/v1/push"))
                .json(&body)
                .send()
                .await
                .expect("log push");
            let status = r.status();
            assert_eq!(
                status,
                204,
                "log push via {d}: {}",
                r.text().await.unwrap_or_default()
            );
            lines.push(line);
        }
        lines.sort();
        lines
    }

    /// Every line of the test's log streams the cluster returns (through
    /// the query-frontend), sorted.
    async fn log_lines(&self) -> Vec<String> {
        let j: Json = self
            .client
            .get(self.url("query-frontend", "/loki/api/v1/query_range"))
            .query(&[
                ("query", r#"{app="cluster-test"}"#.to_string()),
                ("start", ((now_ms() - 3_600_000) * 1_000_000).to_string()),
                ("end", ((now_ms() + 60_000) * 1_000_000).to_string()),
                ("limit", "1000".to_string()),
            ])
            .send()
            .await
            .expect("log query")
            .json()
            .await
            .expect("log query json");
        assert_eq!(j["status"], "success", "{j}");
        let mut lines: Vec<String> = j["data"]["result"]
            .as_array()
            .expect("streams")
            .iter()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v[1].as_str().map(String::from))
            .collect();
        lines.sort();
        lines
    }

    /// `(entries, bytes)` of the test's log streams by `index/stats`
    /// (replicas counted once; the ingesters answer with sizes only).
    async fn log_stats(&self) -> (u64, u64) {
        let j: Json = self
            .client
            .get(self.url("querier", "/loki/api/v1/index/stats"))
            .query(&[
                ("query", r#"{app="cluster-test"}"#.to_string()),
                ("start", ((now_ms() - 3_600_000) * 1_000_000).to_string()),
                ("end", ((now_ms() + 60_000) * 1_000_000).to_string()),
            ])
            .send()
            .await
            .expect("index stats")
            .json()
            .await
            .expect("index stats json");
        (
            j["entries"].as_u64().unwrap_or_default(),
            j["bytes"].as_u64().unwrap_or_default(),
        )
    }

    /// Every sample of the test series the querier returns, by series.
    async fn returned(&self) -> BTreeMap<String, BTreeSet<i64>> {
        let resp: Json = self
            .client
            .get(self.url("querier", "/prometheus/api/v1/query"))
            .query(&[
                ("query", "cluster_test[1h]".to_string()),
                ("time", crate::common::secs(now_ms() + 60_000)),
            ])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("query json");
        assert_eq!(resp["status"], "success", "{resp}");
        let mut out = BTreeMap::new();
        for s in resp["data"]["result"].as_array().expect("matrix") {
            let ts: BTreeSet<i64> = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| (p[0].as_f64().expect("ts") * 1000.0).round() as i64)
                .collect();
            out.insert(s["metric"]["series"].as_str().unwrap_or("").to_string(), ts);
        }
        out
    }
}

impl Drop for Cluster {
    /// A failed test must not leave processes behind.
    fn drop(&mut self) {
        for name in PROCESSES {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(name).join("pid")) {
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(pid.trim())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// One push of the writer: its timestamp and the HTTP status (0: no answer).
#[derive(Clone, Debug)]
struct Push {
    t: i64,
    status: u16,
    distributor: usize,
    /// Response body of a failed push.
    error: String,
}

/// Pushes one sample per test series every 20 ms, alternating between the
/// distributors, recording every outcome.
struct Writer {
    log: Arc<Mutex<Vec<Push>>>,
    paused: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Writer {
    fn start(cluster: &Cluster) -> Writer {
        let w = Writer {
            log: Arc::default(),
            paused: Arc::default(),
            in_flight: Arc::default(),
            stop: Arc::default(),
        };
        let urls = [
            cluster.url("distributor-1", "/api/v1/push"),
            cluster.url("distributor-2", "/api/v1/push"),
        ];
        let (log, paused, in_flight, stop) = (
            w.log.clone(),
            w.paused.clone(),
            w.in_flight.clone(),
            w.stop.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut last_t = 0;
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                if paused.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                in_flight.fetch_add(1, Ordering::SeqCst);
                let t = now_ms().max(last_t + 1);
                last_t = t;
                let body = encode(
                    (0..SERIES)
                        .map(|k| {
                            series(
                                &[("__name__", "cluster_test"), ("series", &k.to_string())],
                                &[(t, n as f64)],
                            )
                        })
                        .collect(),
                );
                let d = n % 2;
                n += 1;
                let (status, error) = match client
                    .post(&urls[d])
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => (r.status().as_u16(), String::new()),
                    Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                };
                log.lock().push(Push {
                    t,
                    status,
                    distributor: d,
                    error,
                });
                in_flight.fetch_sub(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        w
    }

    async fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    fn pushes(&self) -> Vec<Push> {
        self.log.lock().clone()
    }
}

fn acked(pushes: &[Push]) -> BTreeSet<i64> {
    pushes
        .iter()
        .filter(|p| (200..300).contains(&p.status))
        .map(|p| p.t)
        .collect()
}

/// Every acknowledged sample comes back, in every series; with `exact`,
/// nothing else does either.
fn assert_returned(returned: &BTreeMap<String, BTreeSet<i64>>, pushes: &[Push], exact: bool) {
    let acked = acked(pushes);
    let attempted: BTreeSet<i64> = pushes.iter().map(|p| p.t).collect();
    assert_eq!(returned.len(), SERIES, "every series is returned");
    for (s, ts) in returned {
        let missing: Vec<_> = acked.difference(ts).collect();
        assert!(
            missing.is_empty(),
            "series {s}: {} acknowledged samples missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        let invented: Vec<_> = ts.difference(&attempted).collect();
        assert!(
            invented.is_empty(),
            "series {s}: samples never written: {invented:?}"
        );
        if exact {
            assert_eq!(
                ts.len(),
                acked.len(),
                "series {s}: returned == acknowledged"
            );
        }
    }
}

/// No push failed, and there were enough of them to mean something.
fn assert_all_succeeded(pushes: &[Push], when: &str) {
    let failed: Vec<_> = pushes
        .iter()
        .filter(|p| !(200..300).contains(&p.status))
        .collect();
    assert!(failed.is_empty(), "writes failed {when}: {failed:?}");
    assert!(
        pushes.len() > 50,
        "the writer kept writing: {}",
        pushes.len()
    );
}

async fn wait_writes_succeed(w: &Writer, what: &str) {
    for _ in 0..300 {
        let p = w.pushes();
        if p.iter()
            .rev()
            .take(4)
            .all(|p| (200..300).contains(&p.status))
            && p.len() >= 4
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("writes never succeeded again after {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_ingester_and_leader_loss_without_losing_acknowledged_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::in_dir(tmp.path());
    let started = cluster.run("start");
    assert!(
        started.contains("/api/v1/push"),
        "prints write URLs: {started}"
    );
    let ring = cluster.ring("distributor-1").await.expect("ring page");
    let ingesters: Vec<&Json> = ring["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| i["tokens"].as_u64() > Some(0))
        .filter(|i| {
            i["roles"]
                .as_array()
                .is_some_and(|r| r.contains(&Json::from("ingester")))
        })
        .collect();
    assert_eq!(ingesters.len(), 3, "three ingesters own tokens: {ring}");
    // The store-gateways own tokens too, and split the blocks' hash space.
    let gateways: Vec<&Json> = ring["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| {
            i["roles"]
                .as_array()
                .is_some_and(|r| r.contains(&Json::from("store-gateway")))
        })
        .collect();
    assert_eq!(gateways.len(), 2, "{ring}");
    let block_share: f64 = gateways
        .iter()
        .map(|i| i["block_ownership_percent"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((block_share - 100.0).abs() < 0.01, "{ring}");
    let owned: f64 = ingesters
        .iter()
        .map(|i| i["ownership_percent"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(
        (owned - 100.0).abs() < 0.01,
        "token space fully owned: {owned}"
    );

    // 1. kill -9 one ingester under load: every write still succeeds, and
    //    every acknowledged sample is returned, exactly.
    let writer = Writer::start(&cluster);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.signal("ingester-2", "KILL");
    cluster.wait_exit("ingester-2").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    writer.pause().await;
    let pushes = writer.pushes();
    assert_all_succeeded(&pushes, "with one ingester down");
    assert_returned(&cluster.returned().await, &pushes, true);
    // Label names and values come from the ingesters' own answers.
    let values: Json = cluster
        .client
        .get(cluster.url("querier", "/prometheus/api/v1/label/series/values"))
        .query(&[("match[]", "cluster_test")])
        .send()
        .await
        .expect("label values")
        .json()
        .await
        .expect("label values json");
    let mut want: Vec<String> = (0..SERIES).map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(values["data"], serde_json::json!(want), "{values}");
    let names: Json = cluster
        .client
        .get(cluster.url("querier", "/prometheus/api/v1/labels"))
        .query(&[("match[]", "cluster_test")])
        .send()
        .await
        .expect("labels")
        .json()
        .await
        .expect("labels json");
    assert_eq!(
        names["data"],
        serde_json::json!(["__name__", "series"]),
        "{names}"
    );
    // Metric metadata too: pushed (every entry three times, as several
    // targets send it) with the ingester down, each entry comes back once
    // from the replicas that hold it.
    let metadata: Vec<MetricMetadata> = (0..5)
        .map(|k| MetricMetadata {
            r#type: 1,
            metric_family_name: format!("cluster_family_{k}_total"),
            help: format!("Family {k}."),
            unit: String::new(),
        })
        .collect();
    let tripled: Vec<MetricMetadata> = metadata
        .iter()
        .chain(&metadata)
        .chain(&metadata)
        .cloned()
        .collect();
    // Exemplars of one series ride along (a series without samples).
    let now = now_ms();
    let exemplar_series = TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: "cluster_exemplar_total".into(),
            },
            Label {
                name: "job".into(),
                value: "api".into(),
            },
        ],
        exemplars: (0..3)
            .map(|k| Exemplar {
                labels: vec![Label {
                    name: "trace_id".into(),
                    value: format!("trace-{k}"),
                }],
                value: k as f64,
                timestamp: now - 3_000 + k * 1_000,
            })
            .collect(),
        ..Default::default()
    };
    let pushed = cluster
        .client
        .post(cluster.url("distributor-1", "/api/v1/push"))
        .body(encode_with_metadata(vec![exemplar_series], tripled))
        .send()
        .await
        .expect("metadata push");
    assert_eq!(pushed.status().as_u16(), 200);
    let mut want_metadata: Json = metadata
        .iter()
        .map(|m| {
            (
                m.metric_family_name.clone(),
                serde_json::json!([{"type": "counter", "help": m.help, "unit": ""}]),
            )
        })
        .collect::<serde_json::Map<String, Json>>()
        .into();
    let metadata_answer = || async {
        let answer: Json = cluster
            .client
            .get(cluster.url("querier", "/prometheus/api/v1/metadata"))
            .send()
            .await
            .expect("metadata")
            .json()
            .await
            .expect("metadata json");
        answer["data"].clone()
    };
    assert_eq!(
        metadata_answer().await,
        want_metadata,
        "one entry per family"
    );
    // OTLP metrics take the same replicated path: pushed with the ingester
    // down, each translated series (and target_info) comes back once.
    let now_ns = now_ms() * 1_000_000;
    let otlp = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"otel-svc"}}}},{{"key":"host.name","value":{{"stringValue":"h1"}}}}]}},
          "scopeMetrics":[{{"metrics":[{{"name":"otel.queue.size","unit":"{{item}}","gauge":{{"dataPoints":[{{"timeUnixNano":"{now_ns}","asInt":"7"}}]}}}}]}}]}}]}}"#
    );
    let pushed = cluster
        .client
        .post(cluster.url("distributor-2", "/otlp/v1/metrics"))
        .header("Content-Type", "application/json")
        .body(otlp)
        .send()
        .await
        .expect("OTLP push");
    assert_eq!(pushed.status().as_u16(), 200);
    let answer: Json = cluster
        .client
        .get(cluster.url("querier", "/prometheus/api/v1/query"))
        .query(&[
            (
                "query",
                r#"sort(sum by (__name__, host_name) ({job="otel-svc"}))"#.to_string(),
            ),
            ("time", crate::common::secs(now_ms() + 1000)),
        ])
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("query json");
    assert_eq!(
        answer["data"]["result"],
        serde_json::json!([
            {"metric": {"__name__": "target_info", "host_name": "h1"}, "value": [answer["data"]["result"][0]["value"][0], "1"]},
            {"metric": {"__name__": "otel_queue_size"}, "value": [answer["data"]["result"][0]["value"][0], "7"]},
        ]),
        "{answer}"
    );
    // The cardinality API counts each of them once, whatever the replicas.
    let cardinality: Json = cluster
        .client
        .get(cluster.url("querier", "/prometheus/api/v1/cardinality/label_values"))
        .query(&[
            ("label_names[]", "__name__"),
            ("selector", r#"{job="otel-svc"}"#),
        ])
        .send()
        .await
        .expect("cardinality")
        .json()
        .await
        .expect("cardinality json");
    assert_eq!(
        cardinality["labels"],
        serde_json::json!([{"label_name": "__name__", "label_values_count": 2, "series_count": 2, "cardinality": [
            {"label_value": "otel_queue_size", "series_count": 1},
            {"label_value": "target_info", "series_count": 1},
        ]}]),
        "{cardinality}"
    );
    // OTLP logs too: mapped, replicated and read back once.
    let otlp_logs = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"otel-logs"}}}}]}},
          "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{now_ns}","severityText":"WARN","body":{{"stringValue":"otlp line"}}}}]}}]}}]}}"#
    );
    let pushed = cluster
        .client
        .post(cluster.url("distributor-1", "/otlp/v1/logs"))
        .header("Content-Type", "application/json")
        .body(otlp_logs)
        .send()
        .await
        .expect("OTLP logs push");
    assert_eq!(pushed.status().as_u16(), 200);
    let logs: Json = cluster
        .client
        .get(cluster.url("querier", "/loki/api/v1/query_range"))
        .query(&[
            (
                "query",
                r#"{service_name="otel-logs"} | severity_text="WARN""#.to_string(),
            ),
            ("start", (now_ns - 60_000_000_000).to_string()),
            ("end", (now_ns + 60_000_000_000).to_string()),
        ])
        .send()
        .await
        .expect("OTLP log query")
        .json()
        .await
        .expect("OTLP log query json");
    let otlp_lines: Vec<&str> = logs["data"]["result"]
        .as_array()
        .expect("streams")
        .iter()
        .flat_map(|s| s["values"].as_array().into_iter().flatten())
        .filter_map(|v| v[1].as_str())
        .collect();
    assert_eq!(otlp_lines, vec!["otlp line"], "{logs}");
    // Their metadata joins the families', and outlives the restarts below.
    want_metadata["otel_queue_size"] =
        serde_json::json!([{"type": "gauge", "help": "", "unit": ""}]);
    want_metadata["target_info"] =
        serde_json::json!([{"type": "gauge", "help": "Target metadata", "unit": ""}]);

    // Logs are replicated the same way: pushed through both distributors
    // with the ingester down, every line comes back from the querier.
    let lines = cluster.push_logs(30).await;
    assert_eq!(
        cluster.log_lines().await,
        lines,
        "every pushed log line is returned"
    );
    let line_bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();
    assert_eq!(cluster.log_stats().await, (30, line_bytes), "index stats");

    // 2. Restart it: it replays its WAL (its head holds the series again)
    //    and rejoins as ACTIVE.
    cluster.run("start");
    cluster.wait_state("ingester-2", "ACTIVE").await;
    let head_series = crate::common::Strata::metric_at(
        &cluster.client,
        &cluster.url("ingester-2", "/metrics"),
        "strata_ingester_head_series",
    )
    .await;
    assert!(
        head_series >= SERIES as f64,
        "WAL replayed into the head: {head_series} series"
    );
    writer.resume();
    wait_writes_succeed(&writer, "the ingester restart").await;

    // 3. kill -9 the Raft leader: another voter leads within 10 s, and
    //    writes through the surviving distributors go on.
    let leader = cluster.ring("distributor-1").await.expect("ring")["leader"]
        .as_str()
        .expect("leader known")
        .to_string();
    let leader_name = ["distributor-1", "distributor-2", "compactor"]
        .into_iter()
        .find(|n| leader.starts_with(&format!("{}:", ip_of(n))))
        .expect("leader is a voter");
    let witness = ["distributor-1", "distributor-2", "compactor"]
        .into_iter()
        .find(|n| *n != leader_name)
        .expect("another voter");
    let before = writer.pushes().len();
    cluster.signal(leader_name, "KILL");
    let killed_at = Instant::now();
    loop {
        if let Some(r) = cluster.ring(witness).await
            && let Some(l) = r["leader"].as_str()
            && l != leader
        {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "no new Raft leader within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<Push> = writer.pushes()[before..].to_vec();
    let surviving: Vec<&Push> = after
        .iter()
        .filter(|p| leader_name != ["distributor-1", "distributor-2"][p.distributor])
        .collect();
    assert!(surviving.len() > 10, "writes went on: {}", surviving.len());
    let failed: Vec<_> = surviving
        .iter()
        .filter(|p| p.status != 200 && p.status != 204)
        .collect();
    assert!(
        failed.is_empty(),
        "surviving distributors failed writes after the leader died: {failed:?}"
    );
    cluster.run("start");

    // 4. Stop two of three ingesters (they flush their heads to blocks):
    //    writes now fail with 5xx, and nothing acknowledged is lost.
    cluster.signal("ingester-1", "TERM");
    cluster.signal("ingester-3", "TERM");
    cluster.wait_exit("ingester-1").await;
    cluster.wait_exit("ingester-3").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = writer.pushes().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during: Vec<Push> = writer.pushes()[before..].to_vec();
    assert!(!during.is_empty());
    assert!(
        during
            .iter()
            .all(|p| p.status >= 500 && p.error.contains("cannot replicate the write")),
        "writes without a quorum must get 5xx saying why: {during:?}"
    );
    cluster.run("start");
    cluster.wait_state("ingester-1", "ACTIVE").await;
    cluster.wait_state("ingester-3", "ACTIVE").await;
    wait_writes_succeed(&writer, "the ingesters came back").await;
    writer.pause().await;
    writer.stop.store(true, Ordering::SeqCst);
    let pushes = writer.pushes();
    assert_returned(&cluster.returned().await, &pushes, false);
    // Head cardinality over three ingesters, replicas counted once: every
    // series is on two or three of them (one was down for some writes).
    let tsdb: Json = cluster
        .client
        .get(cluster.url("querier", "/prometheus/api/v1/status/tsdb"))
        .send()
        .await
        .expect("tsdb status")
        .json()
        .await
        .expect("tsdb json");
    let counted = tsdb["data"]["seriesCountByMetricName"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["name"] == "cluster_test")
        .and_then(|e| e["value"].as_u64())
        .unwrap_or(0) as usize;
    assert!(
        counted >= (2 * SERIES).div_ceil(3) && counted <= SERIES,
        "{SERIES} series counted as {counted}: {tsdb}"
    );
    // The metadata, in the WALs of the ingesters that were up, is back.
    assert_eq!(
        metadata_answer().await,
        want_metadata,
        "metadata after the restarts"
    );
    // The log lines, now in blocks flushed by the stopped ingesters and in
    // the restarted one's WAL, are all still there, once each.
    assert_eq!(
        cluster.log_lines().await,
        lines,
        "log lines after the restarts"
    );
    assert_eq!(
        cluster.log_stats().await,
        (30, line_bytes),
        "index stats after the restarts"
    );

    let stopped = cluster.run("stop");
    assert!(stopped.contains("stopped"), "{stopped}");
}

/// A child process that a failed test does not leave behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Raft group as `via` sees it (`/ring/raft`): voters' addresses and ids.
async fn raft_voters(cluster: &Cluster, via: &str) -> Option<BTreeMap<String, u64>> {
    let j: Json = cluster
        .client
        .get(cluster.url(via, "/ring/raft"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        j["voters"]
            .as_array()?
            .iter()
            .filter_map(|v| Some((v[1].as_str()?.to_string(), v[0].as_u64()?)))
            .collect(),
    )
}

async fn wait_voters(cluster: &Cluster, what: &str, f: impl Fn(&BTreeMap<String, u64>) -> bool) {
    for _ in 0..600 {
        if let Some(v) = raft_voters(cluster, "distributor-1").await
            && f(&v)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: voters are {:?}",
        raft_voters(cluster, "distributor-1").await
    );
}

/// The ring's Raft group changes while remote_write goes on: two more
/// voters join through the seeds (3 -> 5), two are removed (5 -> 3), and a
/// voter killed with -9 whose Raft directory is wiped comes back as a new
/// member in its old place. No write fails and every acknowledged sample
/// is returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_group_grows_shrinks_and_heals_a_wiped_voter_under_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::in_dir(tmp.path());
    cluster.run("start");
    let addr = |ip: &str| format!("{ip}:{}", cluster.grpc);
    let seeds = ["127.0.0.11", "127.0.0.12", "127.0.0.13"].map(addr);
    wait_voters(&cluster, "the three seed voters", |v| {
        v.len() == 3 && seeds.iter().all(|s| v.contains_key(s))
    })
    .await;
    let writer = Writer::start(&cluster);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Grow: two queriers that are voters by flag, not by the seed list.
    let mut extra = Vec::new();
    for (name, ip) in [("voter-4", "127.0.0.14"), ("voter-5", "127.0.0.15")] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let log = std::fs::File::create(dir.join("log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .current_dir(&dir)
            .args([
                "-target=querier".to_string(),
                format!("-server.http-listen-address={ip}"),
                format!("-server.http-listen-port={}", cluster.http),
                format!("-server.grpc-listen-address={ip}"),
                format!("-server.grpc-listen-port={}", cluster.grpc),
                format!("-ring.instance-id={name}"),
                format!("-ring.raft.peers={}", seeds.join(",")),
                "-ring.raft.voter=true".to_string(),
                format!("-ring.raft.dir={}", dir.join("ring").display()),
                format!(
                    "-blocks-storage.filesystem.dir={}",
                    tmp.path().join("blocks").display()
                ),
                "-ring.heartbeat-period=1s".to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn voter");
        extra.push((KillOnDrop(child), addr(ip), dir));
    }
    wait_voters(&cluster, "five voters", |v| v.len() == 5).await;
    // A querier runs no ruler but passes the ruler's APIs to the ring's
    // ruler, and says so to Grafana (whose rule editor then opens): a
    // group written through it reads back through the query-frontend.
    let querier = format!("http://127.0.0.14:{}", cluster.http);
    crate::common::wait_ready(&format!("{querier}/ready"), 60, || {
        std::fs::read_to_string(extra[0].2.join("log")).unwrap_or_default()
    })
    .await;
    let info: serde_json::Value = cluster
        .client
        .get(format!("{querier}/api/v1/status/buildinfo"))
        .send()
        .await
        .expect("buildinfo")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
        .expect("buildinfo body");
    assert_eq!(
        info["data"]["features"]["ruler_config_api"], "true",
        "{info}"
    );
    let group = "name: proxied\nrules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n";
    let r = cluster
        .client
        .post(format!("{querier}/prometheus/config/v1/rules/grafana"))
        .header("Content-Type", "application/yaml")
        .body(group)
        .send()
        .await
        .expect("rule group through the querier");
    let status = r.status();
    assert_eq!(status, 202, "{}", r.text().await.unwrap_or_default());
    let listed = cluster
        .client
        .get(cluster.url("query-frontend", "/prometheus/config/v1/rules/grafana"))
        .send()
        .await
        .expect("rules through the frontend");
    assert_eq!(listed.status(), 200);
    let listed = listed.text().await.unwrap_or_default();
    assert!(listed.contains("job:up:sum"), "{listed}");
    // A request already passed on once is not passed on again: a ring entry
    // pointing at a process without a ruler cannot bounce it around.
    let bounced = cluster
        .client
        .get(format!("{querier}/prometheus/config/v1/rules/grafana"))
        .header("x-strata-ruler-proxied", "1")
        .send()
        .await
        .expect("a passed-on request");
    assert_eq!(bounced.status(), 502);
    let why = bounced.text().await.unwrap_or_default();
    assert!(why.contains("runs no ruler"), "{why}");
    // The ring's metrics say so too: five voters, one leader among them.
    let metric = |name: &'static str, via: &'static str| {
        let url = cluster.url(via, "/metrics");
        let client = cluster.client.clone();
        async move { crate::common::Strata::metric_at(&client, &url, name).await }
    };
    assert_eq!(
        metric("strata_ring_raft_voters", "distributor-1").await,
        5.0
    );
    let mut leaders = 0.0;
    for via in ["distributor-1", "distributor-2", "compactor"] {
        leaders += metric("strata_ring_raft_is_leader", via).await;
    }
    for v in ["127.0.0.14", "127.0.0.15"] {
        leaders += crate::common::Strata::metric_at(
            &cluster.client,
            &format!("http://{v}:{}/metrics", cluster.http),
            "strata_ring_raft_is_leader",
        )
        .await;
    }
    assert_eq!(leaders, 1.0, "exactly one voter leads");
    // A process that is not a voter shows the same group, ids included.
    assert_eq!(
        raft_voters(&cluster, "querier").await,
        raft_voters(&cluster, "distributor-1").await
    );
    assert!(
        metric("strata_ring_members", "querier").await >= 8.0,
        "the querier's ring metrics count every member"
    );

    // Shrink: remove both through the ring's admin endpoint, then stop them.
    for (child, voter, _) in &mut extra {
        let r = cluster
            .client
            .post(cluster.url("distributor-2", "/ring/raft"))
            .form(&[("remove", voter.as_str())])
            .send()
            .await
            .expect("remove voter");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let _ = child.0.kill();
        let _ = child.0.wait();
    }
    wait_voters(&cluster, "three voters after the shrink", |v| {
        v.len() == 3 && seeds.iter().all(|s| v.contains_key(s))
    })
    .await;
    let gone = cluster
        .client
        .post(cluster.url("distributor-2", "/ring/raft"))
        .form(&[("remove", extra[0].1.as_str())])
        .send()
        .await
        .expect("remove again");
    assert_eq!(gone.status(), 404, "removing a voter that is not there");

    // A voter loses its disk: kill -9, wipe its Raft directory, restart.
    let before = raft_voters(&cluster, "distributor-1")
        .await
        .expect("voters");
    let compactor = addr("127.0.0.13");
    cluster.signal("compactor", "KILL");
    cluster.wait_exit("compactor").await;
    std::fs::remove_dir_all(tmp.path().join("compactor/ring")).expect("wipe the Raft directory");
    cluster.run("start");
    wait_voters(&cluster, "the wiped voter back as a new member", |v| {
        v.len() == 3
            && v.get(&compactor)
                .is_some_and(|id| Some(id) != before.get(&compactor))
    })
    .await;
    // It has the whole ring again.
    let ring = cluster
        .ring("compactor")
        .await
        .expect("ring from the rejoined voter");
    assert!(
        ring["instances"].as_array().is_some_and(|a| a.len() >= 8),
        "{ring}"
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    writer.pause().await;
    writer.stop.store(true, Ordering::SeqCst);
    let pushes = writer.pushes();
    assert_all_succeeded(&pushes, "while the group changed");
    assert_returned(&cluster.returned().await, &pushes, true);
    cluster.run("stop");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Runs instant queries against a base URL.
struct QueryAt(String);

impl QueryAt {
    async fn query(&self, q: &str, t_ms: i64) -> Json {
        let j: Json = reqwest::Client::new()
            .get(format!("{}/prometheus/api/v1/query", self.0))
            .query(&[
                ("query", q.to_string()),
                ("time", crate::common::secs(t_ms)),
            ])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("query json");
        assert_eq!(j["status"], "success", "{q}: {j}");
        j["data"].clone()
    }
}

/// Starts one process per target, all Raft voters of one ring (so any one
/// of them may die), each with its own directory but one shared bucket
/// (rules and blocks), instance ids p0, p1, ...
pub(crate) async fn start_voters(
    tmp: &Path,
    targets: &[&str],
    extra_args: &[&str],
) -> Vec<crate::common::Strata> {
    use crate::common::Strata;
    let grpc: Vec<u16> = targets.iter().map(|_| free_port()).collect();
    let peers = grpc
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let shared = tmp.join("blocks");
    std::fs::create_dir_all(&shared).expect("shared bucket");
    let mut procs = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let dir = tmp.join(format!("p{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::os::unix::fs::symlink(&shared, dir.join("blocks")).expect("symlink");
        let mut args = vec![
            format!("-target={target}"),
            format!("-server.grpc-listen-port={}", grpc[i]),
            format!("-ring.raft.peers={peers}"),
            format!("-ring.instance-id=p{i}"),
            "-ring.heartbeat-period=500ms".into(),
            // Generous: two debug clusters may share two cores in CI.
            "-ring.heartbeat-timeout=8s".into(),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        // The voters need each other to elect a leader: start them together.
        procs.push(tokio::spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Strata::start(&dir, &args).await
        }));
    }
    futures::future::join_all(procs)
        .await
        .into_iter()
        .map(|r| r.expect("start"))
        .collect()
}

/// Rule groups of a cluster with two rulers: each group is evaluated by
/// exactly one ruler; when one ruler dies, the other takes its groups over
/// within a few evaluation intervals and their recordings continue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rulers_split_groups_and_take_over_a_dead_rulers_groups() {
    use crate::common::Strata;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut procs = start_voters(
        tmp.path(),
        &["distributor,ingester,querier", "ruler", "ruler"],
        &["-ruler.poll-interval=1s"],
    )
    .await;

    // Groups go to rulers by hash over the ring's random tokens: with 6,
    // one ruler got them all in about one run in ten; with 24 that takes
    // odds below one in ten thousand.
    let groups = 24;
    for g in 0..groups {
        let body = format!(
            "name: g{g}\ninterval: 1s\nrules:\n  - record: ruler_sharding_g{g}\n    expr: vector({g})\n"
        );
        let r = procs[1]
            .client
            .post(procs[1].url("/prometheus/config/v1/rules/sharding"))
            .header("Content-Type", "application/yaml")
            .body(body)
            .send()
            .await
            .expect("save group");
        assert_eq!(r.status(), 202);
    }
    async fn loaded(s: &Strata) -> BTreeSet<String> {
        let Ok(r) = s
            .client
            .get(s.url("/prometheus/api/v1/rules?local=true"))
            .send()
            .await
        else {
            return BTreeSet::new();
        };
        let j: Json = r.json().await.unwrap_or_default();
        j["data"]["groups"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
    let all: BTreeSet<String> = (0..groups).map(|g| format!("g{g}")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (a, b) = loop {
        let (a, b) = (loaded(&procs[1]).await, loaded(&procs[2]).await);
        if a.union(&b).cloned().collect::<BTreeSet<_>>() == all && a.is_disjoint(&b) {
            break (a, b);
        }
        assert!(
            Instant::now() < deadline,
            "groups never split: {a:?} / {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both rulers got groups: {a:?} / {b:?}"
    );

    // Every group records, whichever ruler owns it.
    let querier_url = procs[0].url("");
    let recorded = |g: String| {
        let url = querier_url.clone();
        async move {
            let q = QueryAt(url);
            let d = q
                .query(
                    &format!("count_over_time(ruler_sharding_{g}[1m])"),
                    now_ms(),
                )
                .await;
            d["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        }
    };
    for g in &all {
        let deadline = Instant::now() + Duration::from_secs(20);
        while recorded(g.clone()).await < 2.0 {
            assert!(
                Instant::now() < deadline,
                "group {g} never recorded; log:\n{}",
                tail(&procs[0].log())
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // kill -9 the second ruler: the first takes over its groups, and
    // their recordings go on.
    procs[2].kill9();
    let deadline = Instant::now() + Duration::from_secs(40);
    while loaded(&procs[1]).await != all {
        assert!(
            Instant::now() < deadline,
            "the surviving ruler never took over {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The dead ruler can be forgotten from the ring page.
    let r = procs[1]
        .client
        .post(procs[1].url("/ring"))
        .form(&[("forget", "p2")])
        .send()
        .await
        .expect("forget");
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let j: Json = procs[1]
            .client
            .get(procs[1].url("/ring?format=json"))
            .send()
            .await
            .expect("ring")
            .json()
            .await
            .expect("ring json");
        if j["instances"]
            .as_array()
            .is_some_and(|a| a.iter().all(|i| i["id"] != "p2"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "p2 never forgotten: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for g in &b {
        let n = g.clone();
        let before = recorded(n.clone()).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while recorded(n.clone()).await < before + 2.0 {
            assert!(
                Instant::now() < deadline,
                "group {g} stopped recording after the takeover"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Two compactors share the tenants through the ring: each tenant's blocks
/// are merged by exactly one of them, both get tenants, and when one is
/// killed the other takes over all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactors_split_tenants_and_take_over_a_dead_compactors() {
    use crate::common::Strata;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut procs = start_voters(
        tmp.path(),
        &["distributor,ingester,querier", "compactor", "compactor"],
        &[
            "-blocks-storage.tsdb.block-ranges-period=10m",
            "-blocks-storage.tsdb.head-compaction-interval=200ms",
            "-compactor.block-ranges=10m,1h",
            "-compactor.compaction-interval=500ms",
            // One ingester here.
            "-ingester.ring.replication-factor=1",
            "-auth.multitenancy-enabled=true",
        ],
    )
    .await;
    // 12 tenants, 2 series each, a sample a minute over the hour that
    // began 3-4 hours ago: six 10-minute blocks each to merge.
    let tenants: Vec<String> = (0..12).map(|t| format!("tenant-{t}")).collect();
    let start = (now_ms() - 3 * 3_600_000) / 3_600_000 * 3_600_000;
    let pts: Vec<(i64, f64)> = (0..60).map(|i| (start + i * 60_000, i as f64)).collect();
    for t in &tenants {
        let batch = (0..2)
            .map(|k| series(&[("__name__", "split"), ("k", &k.to_string())], &pts))
            .collect();
        let (st, body) = procs[0].push(batch, Some(t)).await;
        assert_eq!(st, 200, "{body}");
    }
    async fn owned(p: &Strata) -> f64 {
        p.self_metric("strata_compactor_tenants_owned").await
    }
    // A live block the compactor wrote.
    let merged = |tenant: &str| -> bool {
        let dir = tmp.path().join("blocks").join(tenant).join("metrics");
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| !e.path().join("deletion-mark.json").exists())
                    .filter_map(|e| std::fs::read_to_string(e.path().join("meta.json")).ok())
                    .any(|m| m.contains("\"source\": \"compactor\""))
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (a, b) = (owned(&procs[1]).await, owned(&procs[2]).await);
        if a + b == 12.0 && tenants.iter().all(|t| merged(t)) {
            assert!(
                a > 0.0 && b > 0.0,
                "one compactor owns every tenant: {a} / {b}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tenants not split and merged: owned {a} / {b}, merged {:?}",
            tenants.iter().filter(|t| merged(t)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // No tenant was compacted by both.
    let compacted_by = |p: &Strata, t: &str| {
        let field = format!("tenant=\"{t}\"");
        let bare = format!("tenant={t} ");
        p.log()
            .lines()
            .any(|l| l.contains("blocks compacted") && (l.contains(&field) || l.contains(&bare)))
    };
    for t in &tenants {
        // The log line follows the block's upload: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(15);
        let by = loop {
            let by: Vec<usize> = [1, 2]
                .into_iter()
                .filter(|i| compacted_by(&procs[*i], t))
                .collect();
            if !by.is_empty() || Instant::now() > deadline {
                break by;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(by.len(), 1, "{t} compacted by compactors {by:?}");
    }

    // kill -9 one: the other owns every tenant once its heartbeat times out.
    procs[1].kill9();
    let deadline = Instant::now() + Duration::from_secs(40);
    while owned(&procs[2]).await != 12.0 {
        assert!(
            Instant::now() < deadline,
            "the survivor never took over: owns {}",
            owned(&procs[2]).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

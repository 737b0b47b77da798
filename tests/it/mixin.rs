//! The monitoring mixin (`deploy/mixin`, rendered into `helm/strata/mixin`,
//! which the chart installs): the committed output is what its source
//! builds; every expression parses with Strata's PromQL parser; every alert
//! has a runbook; and against a running cluster that a real Prometheus
//! scrapes and remote-writes back into (Strata observed by Strata), every
//! metric the mixin names is exported, every rule loads into the ruler and
//! evaluates without error, the SLO recordings produce values, and every
//! dashboard query is answered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::cluster::{Cluster, PROCESSES, ip_of};
use crate::common::{encode_with_metadata, free_port, now_ms, series};
use strata_proto::prometheus::{Exemplar, Label, MetricMetadata};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn output_dir() -> PathBuf {
    repo().join("helm/strata/mixin")
}

/// The rule groups of a rendered rule file.
fn rendered_groups(file: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(output_dir().join(file)).expect("rendered rules");
    let doc: Yaml = serde_yaml::from_str(&text).expect("rules YAML");
    doc["groups"].as_sequence().cloned().expect("groups")
}

/// A rule of the rendered rule files: (alert or record name, expression, the rule).
fn rules(file: &str) -> Vec<(String, String, Yaml)> {
    rendered_groups(file)
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .map(|r| {
            let name = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .unwrap_or_default()
                .to_string();
            let expr = r["expr"].as_str().unwrap_or_default().to_string();
            (name, expr, r)
        })
        .collect()
}

/// The rule groups of a rendered file, each as the YAML the rules API takes.
fn groups(file: &str) -> Vec<(String, String)> {
    rendered_groups(file)
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap_or_default().to_string(),
                serde_yaml::to_string(g).expect("group YAML"),
            )
        })
        .collect()
}

/// Every dashboard query: (dashboard file, panel title, expression).
fn dashboard_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(output_dir().join("dashboards"))
        .expect("dashboards")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        let d: Json =
            serde_json::from_str(&std::fs::read_to_string(&f).expect("read")).expect("JSON");
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for p in d["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    name.clone(),
                    p["title"].as_str().unwrap_or_default().to_string(),
                    t["expr"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

/// A dashboard expression with Grafana's variables as a user would have
/// them: every installation and tenant, the `team` attribution label.
fn instantiate(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$namespace", ".+")
        .replace("$user", ".+")
        .replace("$attribution_label", "team")
}

/// The metric names an expression reads (`strata_*` and `process_*`),
/// leaving out quoted text and recorded series (`level:metric:ops`).
pub(crate) fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = expr.chars().peekable();
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if (word.starts_with("strata_") || word.starts_with("process_")) && !word.contains(':') {
            names.push(word.clone());
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        if c == '"' {
            flush(&mut word);
            while let Some(q) = chars.next() {
                if q == '\\' {
                    chars.next();
                } else if q == '"' {
                    break;
                }
            }
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word);
        }
    }
    flush(&mut word);
    names
}

#[test]
fn the_mixins_output_is_what_its_source_builds() {
    let out = tempfile::tempdir().expect("tempdir");
    let built = Command::new("bash")
        .arg(repo().join("deploy/mixin/build.sh"))
        .arg(out.path())
        .output()
        .expect("run deploy/mixin/build.sh (needs jsonnet; the README test command installs it)");
    assert!(
        built.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for sub in ["", "dashboards"] {
            for e in std::fs::read_dir(dir.join(sub)).expect("dir") {
                let p = e.expect("entry").path();
                if p.is_file() {
                    let rel = p.strip_prefix(dir).expect("prefix").display().to_string();
                    out.insert(rel, std::fs::read(&p).expect("read"));
                }
            }
        }
        out
    }
    let fresh = files(out.path());
    let committed = files(&output_dir());
    assert_eq!(
        fresh.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "helm/strata/mixin holds exactly what deploy/mixin/build.sh writes"
    );
    for (name, bytes) in &fresh {
        assert!(
            committed[name] == *bytes,
            "helm/strata/mixin/{name} is stale: run deploy/mixin/build.sh"
        );
    }
    assert!(fresh.keys().filter(|k| k.ends_with(".json")).count() >= 9);
}

#[test]
fn every_mixin_expression_parses_and_every_alert_has_a_runbook() {
    let runbooks = std::fs::read_to_string(repo().join("docs/runbooks.md")).expect("runbooks");
    let alerts = rules("alerts.yaml");
    let records = rules("rules.yaml");
    assert!(alerts.len() >= 15, "{} alerts", alerts.len());
    assert!(records.len() >= 14, "{} recording rules", records.len());
    for (name, expr, rule) in alerts.iter().chain(&records) {
        strata_promql::parse(expr).unwrap_or_else(|e| panic!("{name}: {expr}: {e}"));
        assert!(
            !metric_names(expr).is_empty() || expr.contains(":strata_"),
            "{name} reads Strata's metrics or recordings: {expr}"
        );
        if rule["alert"].is_string() {
            assert!(name.starts_with("Strata"), "{name}");
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                matches!(severity, "critical" | "warning"),
                "{name}: {severity}"
            );
            for field in ["summary", "description", "runbook_url"] {
                assert!(
                    rule["annotations"][field]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{name} has a {field}"
                );
            }
            assert!(
                runbooks.contains(&format!("\n## {name}\n")),
                "docs/runbooks.md has a section ## {name}"
            );
        } else {
            assert!(
                name.contains(":strata_"),
                "recorded names are level:strata_metric:ops: {name}"
            );
        }
    }
    // Every recording an alert reads is recorded.
    let recorded: BTreeSet<&str> = records.iter().map(|(n, _, _)| n.as_str()).collect();
    for (name, expr, _) in &alerts {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.contains(":strata_") {
                assert!(
                    recorded.contains(word),
                    "{name} reads {word}, which no rule records"
                );
            }
        }
    }
    let queries = dashboard_queries();
    assert!(queries.len() >= 75, "{} dashboard queries", queries.len());
    for (dashboard, panel, expr) in &queries {
        let concrete = instantiate(expr);
        strata_promql::parse(&concrete)
            .unwrap_or_else(|e| panic!("{dashboard} / {panel}: {concrete}: {e}"));
        assert!(
            !metric_names(expr).is_empty(),
            "{dashboard} / {panel} reads Strata's metrics"
        );
    }
}

/// The metric names (sample names: `_bucket`, `_count` and `_sum` too) a
/// process exports.
async fn exported(client: &reqwest::Client, url: &str) -> BTreeSet<String> {
    let text = client
        .get(url)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mixin_works_against_a_cluster_that_monitors_itself() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // With a warm tier, so that its cache's metrics exist too.
    let warm = tmp.path().join("warm");
    let cluster = Cluster::in_dir(tmp.path()).with_args(&format!(
        "-validation.cost-attribution-labels=team -ruler.poll-interval=1s \
         -ruler.evaluation-interval=1s -blocks-storage.warm.backend=filesystem \
         -blocks-storage.warm.filesystem.dir={}",
        warm.display()
    ));
    cluster.run("start");
    let client = reqwest::Client::new();
    let port = cluster.http_port();

    // A real Prometheus scrapes every process, labelled as the Prometheus
    // Operator would (namespace, pod), and writes into the cluster itself.
    let targets: Vec<String> = PROCESSES
        .iter()
        .map(|p| {
            format!(
                "      - targets: [\"{}:{port}\"]\n        labels: {{namespace: strata-test, pod: {p}}}",
                ip_of(p)
            )
        })
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: strata\n    static_configs:\n{}\n\
         remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 500ms\n",
        targets.join("\n"),
        cluster.url("distributor-1", "/api/v1/push"),
    );
    let prom_dir = tmp.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("prometheus dir");
    let _prometheus =
        crate::prometheus::spawn_prometheus(&prom_dir, free_port(), &config, &[]).await;

    // Traffic that makes every kind of series show: samples split by team,
    // metadata and exemplars, logs, and one of each refusal.
    let now = now_ms();
    let push = |body: Vec<u8>| {
        client
            .post(cluster.url("distributor-2", "/api/v1/push"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
    };
    let mut team_series = vec![
        series(
            &[("__name__", "app_requests_total"), ("team", "kafka")],
            &[(now, 1.0)],
        ),
        series(
            &[("__name__", "app_requests_total"), ("team", "spark")],
            &[(now, 2.0)],
        ),
        series(&[("__name__", "app_requests_total")], &[(now, 3.0)]),
    ];
    team_series[0].exemplars.push(Exemplar {
        labels: vec![Label {
            name: "trace_id".into(),
            value: "abc".into(),
        }],
        value: 1.0,
        timestamp: now,
    });
    let r = push(encode_with_metadata(
        team_series,
        vec![MetricMetadata {
            r#type: 2,
            metric_family_name: "app_requests_total".into(),
            help: "Requests.".into(),
            unit: String::new(),
        }],
    ))
    .await
    .expect("push");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    // Refused: a sample an hour in the future, an exemplar without labels,
    // metadata with an overlong name.
    let mut refused = series(&[("__name__", "app_refused")], &[(now + 3_600_000, 1.0)]);
    refused.exemplars.push(Exemplar {
        labels: vec![],
        value: 1.0,
        timestamp: now,
    });
    let r = push(encode_with_metadata(
        vec![refused],
        vec![MetricMetadata {
            r#type: 2,
            metric_family_name: "m".repeat(2048),
            help: String::new(),
            unit: String::new(),
        }],
    ))
    .await
    .expect("push");
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap_or_default());
    let log_push = |line_ns: i64, line: &str| {
        client
            .post(cluster.url("distributor-1", "/loki/api/v1/push"))
            .json(&serde_json::json!({"streams": [{"stream": {"app": "mixin"}, "values": [[line_ns.to_string(), line]]}]}))
            .send()
    };
    let r = log_push(now * 1_000_000, "level=info msg=hello")
        .await
        .expect("log push");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let r = log_push((now - 30 * 24 * 3_600_000) * 1_000_000, "too old")
        .await
        .expect("log push");
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap_or_default());
    for (path, query) in [
        ("/prometheus/api/v1/query", "app_requests_total"),
        ("/loki/api/v1/query_range", "{app=\"mixin\"}"),
    ] {
        let r = client
            .get(cluster.url("querier", path))
            .query(&[("query", query)])
            .send()
            .await
            .expect("query");
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    // Every rule group loads into the ruler (for the tenant Prometheus writes
    // as) and evaluates without error.
    let mut expected = BTreeSet::new();
    for file in ["rules.yaml", "alerts.yaml"] {
        for (name, group) in groups(file) {
            let r = client
                .post(cluster.url("ruler", "/prometheus/config/v1/rules/strata-mixin"))
                .header("Content-Type", "application/yaml")
                .body(group)
                .send()
                .await
                .expect("save group");
            assert_eq!(
                r.status(),
                202,
                "{name}: {}",
                r.text().await.unwrap_or_default()
            );
            expected.insert(name);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let (evaluated, total) = loop {
        let j: Json = client
            .get(cluster.url("ruler", "/prometheus/api/v1/rules"))
            .send()
            .await
            .expect("rules")
            .json()
            .await
            .expect("rules JSON");
        let groups = j["data"]["groups"].as_array().cloned().unwrap_or_default();
        let loaded: BTreeSet<String> = groups
            .iter()
            .filter_map(|g| g["name"].as_str().map(String::from))
            .collect();
        let rules: Vec<&Json> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let bad: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] == "err")
            .map(|r| format!("{}: {}", r["name"], r["lastError"]))
            .collect();
        assert!(bad.is_empty(), "rules failing to evaluate: {bad:#?}");
        let evaluated = rules.iter().filter(|r| r["health"] == "ok").count();
        if loaded == expected && evaluated == rules.len() {
            break (evaluated, rules.len());
        }
        assert!(
            Instant::now() < deadline,
            "groups {loaded:?} of {expected:?} loaded, {evaluated} of {} rules evaluated",
            rules.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(evaluated, total);
    assert!(total >= 29, "{total} rules");

    // Every metric the mixin names is exported by some process (the
    // ruler's per-tenant counters since the groups above evaluated).
    let mut names = BTreeSet::new();
    for p in PROCESSES {
        names.extend(exported(&client, &cluster.url(p, "/metrics")).await);
    }
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    for (name, expr, _) in rules("alerts.yaml").into_iter().chain(rules("rules.yaml")) {
        for m in metric_names(&expr) {
            named.entry(m).or_insert_with(|| name.clone());
        }
    }
    for (dashboard, panel, expr) in dashboard_queries() {
        for m in metric_names(&expr) {
            named
                .entry(m)
                .or_insert_with(|| format!("{dashboard} / {panel}"));
        }
    }
    let missing: Vec<String> = named
        .iter()
        .filter(|(m, _)| !names.contains(*m))
        .map(|(m, by)| format!("{m} (read by {by})"))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics no process exports: {missing:#?}"
    );

    // The SLO recording of the write path has a value: Prometheus's own
    // remote writes are write requests of the installation.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j: Json = client
            .get(cluster.url("querier", "/prometheus/api/v1/query"))
            .query(&[("query", "namespace:strata_write_slo_errors:ratio_rate5m")])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("JSON");
        let result = j["data"]["result"].as_array().cloned().unwrap_or_default();
        // NaN until the window holds two scrapes of counted requests.
        if let Some(v) = result.first()
            && let Ok(ratio) = v["value"][1].as_str().unwrap_or("x").parse::<f64>()
            && !ratio.is_nan()
        {
            assert_eq!(v["metric"]["namespace"], "strata-test", "{j}");
            assert!((0.0..=1.0).contains(&ratio), "{j}");
            break;
        }
        assert!(Instant::now() < deadline, "no write SLO recording: {j}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every dashboard query is answered, with data.
    let mut empty = Vec::new();
    for (dashboard, panel, expr) in dashboard_queries() {
        let r = client
            .get(cluster.url("querier", "/prometheus/api/v1/query"))
            .query(&[("query", instantiate(&expr))])
            .send()
            .await
            .expect("query");
        let status = r.status();
        let j: Json = r.json().await.expect("JSON");
        assert!(status.is_success(), "{dashboard} / {panel}: {expr}: {j}");
        if j["data"]["result"].as_array().is_none_or(|a| a.is_empty()) {
            empty.push(format!("{dashboard} / {panel}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard panels without data: {empty:#?}"
    );
    cluster.run("stop");
}

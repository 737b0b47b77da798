//! Per-tenant limits from the runtime config file: validation, series and
//! ingestion-rate limits on the write path, range length on the read path,
//! and reloading the file without a restart.

use std::time::Duration;

use crate::common::{Strata, now_ms, secs, series};

fn labelled(name: &str, extra: usize, t: i64) -> strata_proto::prometheus::TimeSeries {
    let pairs: Vec<(String, String)> = (0..extra)
        .map(|i| (format!("l{i}"), "v".to_string()))
        .collect();
    let mut labels: Vec<(&str, &str)> = vec![("__name__", name)];
    labels.extend(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    series(&labels, &[(t, 1.0)])
}

async fn wait_for(s: &Strata, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn runtime_overrides_limit_one_tenant_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start_with_overrides(
        dir.path(),
        "overrides:\n  team-a:\n    max_label_names_per_series: 3\n    max_global_series_per_user: 2\n    max_total_query_length: 1h\n",
        &["-runtime-config.reload-period=100ms"],
    )
    .await;
    let runtime = dir.path().join("runtime.yaml");
    let t = now_ms() - 10_000;

    // Label count: team-a's override (3 including the name), team-b's default (30).
    let (st, body) = s.push(vec![labelled("wide", 3, t)], Some("team-a")).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body.contains("has 4 labels, more than the limit of 3"),
        "{body}"
    );
    let (st, body) = s.push(vec![labelled("wide", 3, t)], Some("team-b")).await;
    assert_eq!(st, 200, "{body}");

    // Series limit: two series fit, the third is refused (400, not retried),
    // and samples of existing series still go in.
    let (st, body) = s
        .push(
            vec![
                labelled("s1", 0, t),
                labelled("s2", 0, t),
                labelled("s3", 0, t),
            ],
            Some("team-a"),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("per_user_series_limit"), "{body}");
    let (st, body) = s
        .push(vec![labelled("s1", 0, t + 1000)], Some("team-a"))
        .await;
    assert_eq!(st, 200, "{body}");

    // Query length: 2h is over team-a's 1h, fine for team-b.
    let range = |tenant: &'static str| {
        let s = &s;
        async move {
            s.get_json(
                "/api/v1/query_range",
                &[
                    ("query", "s1".into()),
                    ("start", secs(t - 7_200_000)),
                    ("end", secs(t)),
                    ("step", "60".into()),
                ],
                Some(tenant),
            )
            .await
        }
    };
    let (st, j) = range("team-a").await;
    assert_eq!(st, 400, "{j}");
    assert_eq!(j["errorType"], "bad_data");
    assert!(
        j["error"].as_str().unwrap().contains("exceeds the limit"),
        "{j}"
    );
    let (st, j) = range("team-b").await;
    assert_eq!(st, 200, "{j}");

    // Reload: an ingestion rate limit appears without a restart.
    std::fs::write(
        &runtime,
        "overrides:\n  team-a:\n    ingestion_rate: 1\n    ingestion_burst_size: 10\n",
    )
    .unwrap();
    let batch = |n: i64, t0: i64| -> Vec<_> {
        (0..n)
            .map(|i| {
                let name = format!("r{i}");
                series(&[("__name__", name.as_str())], &[(t0, 1.0)])
            })
            .collect()
    };
    wait_for(&s, "rate limit never applied", async || {
        s.push(batch(20, now_ms()), Some("team-a")).await.0 == 429
    })
    .await;
    let (st, body) = s.push(batch(20, now_ms()), Some("team-a")).await;
    assert_eq!(st, 429, "{body}");
    assert!(body.contains("ingestion rate limit"), "{body}");
    let (st, body) = s.push(batch(20, now_ms()), Some("team-b")).await;
    assert_eq!(st, 200, "other tenants are not limited: {body}");
    // The old overrides are gone: the wide series is accepted now.
    let (st, body) = s
        .push(vec![labelled("wide", 3, now_ms())], Some("team-a"))
        .await;
    assert_eq!(st, 200, "{body}");

    // A broken file keeps the limits in force and is reported.
    std::fs::write(&runtime, "overrides:\n  team-a:\n    no_such_limit: 1\n").unwrap();
    wait_for(&s, "bad runtime config not reported", async || {
        s.self_metric("strata_runtime_config_last_reload_successful")
            .await
            == 0.0
    })
    .await;
    let (st, _) = s.push(batch(20, now_ms()), Some("team-a")).await;
    assert_eq!(st, 429, "previous limits still apply");
}

/// Pushes a sample of `m` and a line of `{app="a"}` at `old` and at `recent` (ms) for `tenant`.
async fn push_old_and_recent(s: &Strata, tenant: &str, old: i64, recent: i64) {
    let (st, body) = s
        .push(
            vec![series(&[("__name__", "m")], &[(old, 1.0), (recent, 2.0)])],
            Some(tenant),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let logs = serde_json::json!({"streams": [{"stream": {"app": "a"}, "values": [
        [(old * 1_000_000).to_string(), "old line"],
        [(recent * 1_000_000).to_string(), "recent line"],
    ]}]});
    let r = reqwest::Client::new()
        .post(s.url("/loki/api/v1/push"))
        .header("X-Scope-OrgID", tenant)
        .header("Content-Type", "application/json")
        .body(logs.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Retention per tenant and per signal: queries never return metrics older
/// than `compactor_blocks_retention_period` or logs older than
/// `logs_retention_period`, while other tenants see everything.
#[tokio::test]
async fn queries_respect_per_tenant_retention_per_signal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start_with_overrides(
        dir.path(),
        "overrides:\n  short:\n    compactor_blocks_retention_period: 1h\n    logs_retention_period: 30m\n",
        &[],
    )
    .await;
    let now = now_ms();
    let (old, recent) = (now - 2 * 3600 * 1000, now - 40 * 60 * 1000);
    for tenant in ["short", "long"] {
        push_old_and_recent(&s, tenant, old, recent).await;
    }
    let metric_times = async |tenant: &str| -> Vec<i64> {
        let (st, j) = s
            .get_json(
                "/api/v1/query",
                &[("query", "m[3h]".to_string()), ("time", secs(now))],
                Some(tenant),
            )
            .await;
        assert_eq!(st, 200, "{j}");
        j["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap().clone())
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .collect()
    };
    assert_eq!(metric_times("long").await, vec![old, recent]);
    // 1h metrics retention: the 2h-old sample is gone, the 40m-old one stays.
    assert_eq!(metric_times("short").await, vec![recent]);
    let log_lines = async |tenant: &str| -> Vec<String> {
        let (st, j) = s
            .get_json(
                "/loki/api/v1/query_range",
                &[
                    ("query", r#"{app="a"}"#.to_string()),
                    ("start", ((now - 3 * 3600 * 1000) * 1_000_000).to_string()),
                    ("end", (now * 1_000_000).to_string()),
                ],
                Some(tenant),
            )
            .await;
        assert_eq!(st, 200, "{j}");
        j["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap().clone())
            .map(|v| v[1].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(log_lines("long").await, vec!["recent line", "old line"]);
    // 30m logs retention, separate from metrics: both lines are too old.
    assert!(log_lines("short").await.is_empty());
}

/// Blocks past a tenant's retention are marked, then deleted after the
/// deletion delay, per signal; other tenants' blocks stay.
#[tokio::test]
async fn expired_blocks_are_marked_then_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start_with_overrides(
        dir.path(),
        "overrides:\n  short:\n    compactor_blocks_retention_period: 1h\n    logs_retention_period: 30m\n",
        &["-blocks-storage.tsdb.block-ranges-period=10m", "-blocks-storage.tsdb.head-compaction-interval=200ms", "-ingester.max-chunk-age=2m", "-compactor.compaction-interval=300ms", "-compactor.cleanup-interval=300ms", "-compactor.deletion-delay=1s", "-blocks-storage.bucket-store.ignore-deletion-marks-delay=500ms"],
    )
    .await;
    let now = now_ms();
    let old = now - 2 * 3600 * 1000;
    for tenant in ["short", "long"] {
        push_old_and_recent(&s, tenant, old, now).await;
    }
    // Block directories that still hold files (a local-disk object store
    // may leave the emptied directory behind).
    let blocks = |tenant: &str, signal: &str| -> usize {
        std::fs::read_dir(dir.path().join(format!("blocks/{tenant}/{signal}")))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| std::fs::read_dir(e.path()).is_ok_and(|mut f| f.next().is_some()))
                    .count()
            })
            .unwrap_or(0)
    };
    // The old samples and lines are cut into blocks; short's are deleted.
    wait_for(&s, "short's expired blocks deleted", async || {
        s.self_metric("strata_compactor_blocks_cleaned_total").await >= 2.0
    })
    .await;
    assert_eq!(blocks("short", "metrics"), 0);
    assert_eq!(blocks("short", "logs"), 0);
    assert!(
        s.self_metric("strata_compactor_blocks_marked_for_deletion_total")
            .await
            >= 2.0
    );
    // long keeps its blocks (no retention), and short's recent data stays.
    wait_for(&s, "long's blocks cut", async || {
        blocks("long", "metrics") >= 1 && blocks("long", "logs") >= 1
    })
    .await;
    let (_, j) = s
        .get_json(
            "/api/v1/query",
            &[("query", "m".to_string()), ("time", secs(now))],
            Some("short"),
        )
        .await;
    assert_eq!(j["data"]["result"][0]["value"][1], "2", "{j}");
}

/// The query limits answer Prometheus's error shape (HTTP 422, `execution`)
/// and leave the process serving: `-querier.max-samples` counts loaded
/// samples, `-querier.max-estimated-memory-consumption-per-query` bounds
/// each query's DataFusion memory pool (loaded samples and plan output).
#[tokio::test]
async fn query_sample_and_memory_limits_fail_the_query_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms() / 1000 * 1000;
    let pts: Vec<(i64, f64)> = (0..30)
        .map(|i| (now - 290_000 + i * 10_000, i as f64))
        .collect();
    let push = async |s: &Strata| {
        let batch = (0..10)
            .map(|k| series(&[("__name__", "lim"), ("k", &k.to_string())], &pts))
            .collect();
        let (st, body) = s.push(batch, None).await;
        assert_eq!(st, 200, "{body}");
    };
    let query = async |s: &Strata, q: &str| {
        s.get_json(
            "/api/v1/query",
            &[("query", q.to_string()), ("time", secs(now))],
            None,
        )
        .await
    };
    for (flag, message) in [
        (
            "-querier.max-samples=100",
            "query processing would load too many samples into memory in query execution",
        ),
        (
            "-querier.max-estimated-memory-consumption-per-query=4096",
            "the query exceeded the maximum allowed estimated amount of memory consumed by a single query (limit: 4096 bytes)",
        ),
    ] {
        let data = dir.path().join(&flag[2..20]);
        std::fs::create_dir_all(&data).expect("data dir");
        let s = Strata::start(&data, &[flag]).await;
        push(&s).await;
        // 10 series x 30 samples: over both limits.
        let (status, j) = query(&s, "sum_over_time(lim[5m])").await;
        assert_eq!(status, 422, "{flag}: {j}");
        assert_eq!(j["status"], "error");
        assert_eq!(j["errorType"], "execution");
        assert_eq!(j["error"], message, "{flag}");
        // One series: within both.
        let (status, j) = query(&s, "sum_over_time(lim{k=\"3\"}[5m])").await;
        assert_eq!(status, 200, "{flag}: {j}");
        assert_eq!(j["data"]["result"][0]["value"][1], "435");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_selections_answer_ranges_whose_samples_exceed_max_samples_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms() / 1000 * 1000;
    // One series sampled every second for 5 minutes: 300 samples, value = second.
    let pts: Vec<(i64, f64)> = (0..300)
        .map(|i| (now - 299_000 + i * 1000, i as f64))
        .collect();
    let end = now;
    let start = now - 240_000;
    let params = [
        ("query", "max_over_time(hf[1m])".to_string()),
        ("start", secs(start)),
        ("end", secs(end)),
        ("step", "60".to_string()),
    ];
    for (split, want_status) in [("1m", 200), ("0s", 422)] {
        let data = dir.path().join(split);
        std::fs::create_dir_all(&data).expect("data dir");
        let split_flag = format!("-querier.selection-split-interval={split}");
        let s = Strata::start(&data, &["-querier.max-samples=100", &split_flag]).await;
        let (st, body) = s
            .push(vec![series(&[("__name__", "hf")], &pts)], None)
            .await;
        assert_eq!(st, 200, "{body}");
        let (status, j) = s.get_json("/api/v1/query_range", &params, None).await;
        assert_eq!(status, want_status, "split {split}: {j}");
        if want_status == 422 {
            // All 240 samples of the range at once are over the limit.
            assert_eq!(
                j["error"],
                "query processing would load too many samples into memory in query execution"
            );
            continue;
        }
        // Each step's window holds 60 samples (under the limit with the
        // output): the maximum is the newest one's value.
        let values: Vec<(f64, String)> = j["data"]["result"][0]["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                (
                    p[0].as_f64().expect("t"),
                    p[1].as_str().expect("v").to_string(),
                )
            })
            .collect();
        let want: Vec<(f64, String)> = (0..5)
            .map(|k| {
                let t = start + k * 60_000;
                (
                    t as f64 / 1000.0,
                    ((t - (now - 299_000)) / 1000).to_string(),
                )
            })
            .collect();
        assert_eq!(values, want, "{j}");
    }
}

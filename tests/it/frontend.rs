//! The query-frontend: queriers pull its queued requests; range queries
//! are cut into parts, cached, and merged into exactly the querier's own
//! answer; data in the freshness window is never served from the cache;
//! tenants share the queriers fairly and a full queue answers 429; a
//! querier killed with SIGKILL costs no failed request.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::cluster::start_voters;
use crate::common::{Strata, now_ms, secs, series};

const SERIES: usize = 10;

async fn get(p: &Strata, path: &str, tenant: &str, params: &[(&str, String)]) -> (u16, Json) {
    let r = p
        .client
        .get(p.url(path))
        .header("X-Scope-OrgID", tenant)
        .query(params)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

/// The answer's series, sorted, for comparing answers of two processes.
fn result(j: &Json) -> Vec<Json> {
    let mut r: Vec<Json> = j["data"]["result"].as_array().cloned().unwrap_or_default();
    r.sort_by_key(|s| s["metric"].to_string() + &s["stream"].to_string());
    r
}

async fn parts_from(p: &Strata, source: &str) -> f64 {
    p.self_metric(&format!(
        "strata_query_frontend_split_parts_total{{source=\"{source}\"}}"
    ))
    .await
}

async fn wait_workers(frontend: &Strata, queriers: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while frontend
        .self_metric("strata_query_frontend_connected_queriers")
        .await
        < queriers
    {
        assert!(
            Instant::now() < deadline,
            "queriers never connected to the frontend"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Range queries through the frontend, cut into hour parts, equal the
/// querier's own answers, cold and from the cache, for PromQL and LogQL;
/// other reads are forwarded; the part in the freshness window is asked
/// again, so new data shows at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_answers_equal_the_queriers_and_cache_only_old_parts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let procs = start_voters(
        tmp.path(),
        &["distributor,ingester,querier", "query-frontend", "querier"],
        &[
            "-ingester.ring.replication-factor=1",
            "-auth.multitenancy-enabled=true",
            "-query-frontend.split-queries-by-interval=1h",
        ],
    )
    .await;
    let (querier, frontend) = (&procs[0], &procs[1]);
    wait_workers(frontend, 2.0).await;

    // Six hours of samples, one a minute, ending a minute ago.
    let now = now_ms() / 60_000 * 60_000;
    let pts: Vec<(i64, f64)> = (1..=360)
        .map(|i| (now - (361 - i) * 60_000, (i * 7 % 13) as f64))
        .collect();
    let batch = (0..SERIES)
        .map(|k| series(&[("__name__", "fe"), ("k", &k.to_string())], &pts))
        .collect();
    let (st, body) = querier.push(batch, Some("t1")).await;
    assert_eq!(st, 200, "{body}");
    let values: Vec<Json> = (0..180)
        .map(|i| {
            let ns = (now - (180 - i) * 60_000) * 1_000_000;
            serde_json::json!([ns.to_string(), format!("line {i}")])
        })
        .collect();
    let r = querier
        .client
        .post(querier.url("/loki/api/v1/push"))
        .header("X-Scope-OrgID", "t1")
        .json(&serde_json::json!({"streams": [{"stream": {"app": "fe"}, "values": values}]}))
        .send()
        .await
        .expect("log push");
    assert_eq!(r.status(), 204);

    let queries = [
        "sum(rate(fe[5m]))",
        "count by (k) (fe)",
        "max_over_time(fe[10m])",
        "topk(3, fe)",
        "fe offset 30m",
        "sum_over_time(fe[1h:5m])",
        "avg(fe) by (k) / on() group_left sum(fe)",
    ];
    let range = |q: &str, step: &str| {
        vec![
            ("query", q.to_string()),
            ("start", secs(now - 6 * 3_600_000 + 17_000)),
            ("end", secs(now - 20 * 60_000)),
            ("step", step.to_string()),
        ]
    };
    for round in ["cold", "warm"] {
        let hits_before = parts_from(frontend, "cache").await;
        for q in queries {
            for step in ["60", "37s"] {
                let (s1, direct) = get(
                    querier,
                    "/prometheus/api/v1/query_range",
                    "t1",
                    &range(q, step),
                )
                .await;
                let (s2, through) = get(
                    frontend,
                    "/prometheus/api/v1/query_range",
                    "t1",
                    &range(q, step),
                )
                .await;
                assert_eq!((s1, s2), (200, 200), "{q}: {direct} / {through}");
                assert!(!result(&direct).is_empty(), "{q}: {direct}");
                assert_eq!(
                    result(&direct),
                    result(&through),
                    "{q} step {step} ({round})"
                );
            }
        }
        let hits = parts_from(frontend, "cache").await - hits_before;
        if round == "cold" {
            assert_eq!(hits, 0.0, "a cold frontend answered from its cache");
        } else {
            // Six hour parts, all but the newest (in the freshness window) cached.
            assert!(
                hits >= (queries.len() * 2 * 5) as f64,
                "{hits} cached parts"
            );
        }
    }

    // LogQL: a metric query is cut and equal; a log query is forwarded.
    let log_range = |q: &str| {
        vec![
            ("query", q.to_string()),
            ("start", ((now - 3 * 3_600_000) * 1_000_000).to_string()),
            ("end", (now * 1_000_000).to_string()),
            ("step", "60s".to_string()),
            ("limit", "1000".to_string()),
        ]
    };
    for q in [
        r#"sum(count_over_time({app="fe"}[5m]))"#,
        r#"{app="fe"} |= "line 1""#,
    ] {
        let (s1, direct) = get(querier, "/loki/api/v1/query_range", "t1", &log_range(q)).await;
        let (s2, through) = get(frontend, "/loki/api/v1/query_range", "t1", &log_range(q)).await;
        assert_eq!((s1, s2), (200, 200), "{q}: {through}");
        assert!(!result(&direct).is_empty(), "{q}: {direct}");
        assert_eq!(result(&direct), result(&through), "{q}");
    }
    // Statistics: Loki's stats block counts the parts, the cache hits (the
    // last loop ran warm) and the queue time; a PromQL query asked with
    // `stats` gets Prometheus's block with what the parts read.
    let (_, stats) = get(
        frontend,
        "/loki/api/v1/query_range",
        "t1",
        &log_range(r#"sum(count_over_time({app="fe"}[5m]))"#),
    )
    .await;
    let summary = &stats["data"]["stats"]["summary"];
    let splits = summary["splits"].as_u64().unwrap_or(0);
    assert!(splits >= 3, "{stats}");
    assert!(summary["queueTime"].as_f64().is_some(), "{stats}");
    let cache = &stats["data"]["stats"]["cache"]["result"];
    assert_eq!(cache["entriesRequested"].as_u64(), Some(splits), "{stats}");
    assert!(cache["entriesFound"].as_u64() >= Some(1), "{stats}");
    let mut with_stats = range("sum(rate(fe[5m]))", "60");
    with_stats.push(("stats", "all".into()));
    let (_, cold) = get(
        frontend,
        "/prometheus/api/v1/query_range",
        "t2",
        &with_stats,
    )
    .await;
    let (_, direct) = get(querier, "/prometheus/api/v1/query_range", "t1", &with_stats).await;
    let samples = |j: &Json| j["data"]["stats"]["samples"]["totalQueryableSamples"].as_u64();
    assert!(samples(&direct) > Some(0), "{direct}");
    // Each series at least once (a long range is selected slice by slice).
    assert!(
        direct["data"]["stats"]["series"]["fetched"].as_u64() >= Some(SERIES as u64),
        "{direct}"
    );
    assert_eq!(
        samples(&cold),
        Some(0),
        "another tenant reads nothing: {cold}"
    );
    let (_, through) = get(
        frontend,
        "/prometheus/api/v1/query_range",
        "t1",
        &with_stats,
    )
    .await;
    assert!(samples(&through) > Some(0), "{through}");
    let parts = &through["data"]["stats"]["resultsCache"];
    assert!(parts["partsRequested"].as_u64() >= Some(6), "{through}");
    assert!(
        through["data"]["stats"]["timings"]["execQueueTime"]
            .as_f64()
            .is_some()
    );
    let (_, plain) = get(
        frontend,
        "/prometheus/api/v1/query_range",
        "t1",
        &range("sum(rate(fe[5m]))", "60"),
    )
    .await;
    assert!(
        plain["data"].get("stats").is_none(),
        "stats only when asked: {plain}"
    );

    // Other reads go through whole.
    for (path, params) in [
        (
            "/prometheus/api/v1/query",
            vec![
                ("query", "sum(fe)".to_string()),
                ("time", secs(now - 3_600_000)),
            ],
        ),
        ("/prometheus/api/v1/labels", vec![]),
        (
            "/prometheus/api/v1/series",
            vec![("match[]", "fe".to_string())],
        ),
        ("/loki/api/v1/labels", vec![]),
    ] {
        let (s1, direct) = get(querier, path, "t1", &params).await;
        let (s2, through) = get(frontend, path, "t1", &params).await;
        assert_eq!((s1, s2), (200, 200), "{path}: {through}");
        assert_eq!(direct["data"], through["data"], "{path}");
    }
    // The frontend resolves tenants as the querier does: an invalid one is
    // refused with Prometheus's error envelope before it is queued.
    let (st, refused) = get(
        frontend,
        "/prometheus/api/v1/query",
        "a|b",
        &[("query", "1".into())],
    )
    .await;
    assert_eq!(st, 400, "{refused}");
    assert_eq!(refused["status"], "error", "{refused}");
    // Tenants stay apart: another tenant sees none of it, cached or not.
    let (_, other) = get(
        frontend,
        "/prometheus/api/v1/query_range",
        "t2",
        &range("sum(fe)", "60"),
    )
    .await;
    assert_eq!(result(&other), Vec::<Json>::new(), "{other}");

    // Freshness: a sample written now into the newest part shows at once,
    // while the older parts come from the cache.
    let q = "max(fe)";
    let fresh = |end: i64| {
        vec![
            ("query", q.to_string()),
            ("start", secs(now - 3 * 3_600_000)),
            ("end", secs(end)),
            ("step", "60".to_string()),
        ]
    };
    let (_, before) = get(
        frontend,
        "/prometheus/api/v1/query_range",
        "t1",
        &fresh(now),
    )
    .await;
    let last = |j: &Json| {
        j["data"]["result"][0]["values"]
            .as_array()
            .and_then(|v| v.last().cloned())
    };
    assert_ne!(
        last(&before).map(|v| v[1].clone()),
        Some(Json::from("1000"))
    );
    let (st, body) = querier
        .push(
            vec![series(&[("__name__", "fe"), ("k", "0")], &[(now, 1000.0)])],
            Some("t1"),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let hits_before = parts_from(frontend, "cache").await;
    let (_, after) = get(
        frontend,
        "/prometheus/api/v1/query_range",
        "t1",
        &fresh(now),
    )
    .await;
    assert_eq!(
        last(&after).map(|v| v[1].clone()),
        Some(Json::from("1000")),
        "{after}"
    );
    assert!(
        parts_from(frontend, "cache").await > hits_before,
        "older parts not cached"
    );
}

/// Two tenants, two querier workers: a tenant flooding the queue with slow
/// queries waits in its own queue while the other tenant's query is served
/// within a round; past its bound the flood gets 429; a querier killed in
/// the middle of a request costs no failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_share_queriers_fairly_and_a_killed_querier_fails_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut procs = start_voters(
        tmp.path(),
        &["distributor,ingester,querier", "query-frontend", "querier"],
        &[
            "-ingester.ring.replication-factor=1",
            "-auth.multitenancy-enabled=true",
            "-querier.max-concurrent=1",
            "-query-frontend.max-outstanding-requests-per-tenant=20",
        ],
    )
    .await;
    wait_workers(&procs[1], 2.0).await;
    let now = now_ms() / 60_000 * 60_000;
    let pts: Vec<(i64, f64)> = (0..120).map(|i| (now - i * 60_000, 1.0)).collect();
    for t in ["flood", "calm"] {
        let batch = (0..SERIES)
            .map(|k| series(&[("__name__", "fair"), ("k", &k.to_string())], &pts))
            .collect();
        let (st, body) = procs[0].push(batch, Some(t)).await;
        assert_eq!(st, 200, "{body}");
    }
    // A slow instant query: a 100 ms subquery over two hours.
    let slow = vec![
        ("query", "sum(sum_over_time(fair[2h:100ms]))".to_string()),
        ("time", secs(now)),
    ];
    let frontend_url = procs[1].url("/prometheus/api/v1/query");
    let client = reqwest::Client::new();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..30 {
        let (client, url, slow, finished) = (
            client.clone(),
            frontend_url.clone(),
            slow.clone(),
            finished.clone(),
        );
        flood.push(tokio::spawn(async move {
            let r = client
                .get(url)
                .header("X-Scope-OrgID", "flood")
                .query(&slow)
                .send()
                .await
                .expect("flood request");
            let status = r.status().as_u16();
            if status == 200 {
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            status
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = finished.load(std::sync::atomic::Ordering::SeqCst);
    // Most of the flood still waits: the check below means something.
    assert!(before <= 10, "{before} flood queries finished already");
    let (st, calm) = get(&procs[1], "/prometheus/api/v1/query", "calm", &slow).await;
    let after = finished.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("fairness: {before} flood queries done before the calm one, {after} after");
    assert_eq!(st, 200, "{calm}");
    assert!(
        after - before <= 8,
        "the calm tenant waited for {} of the flooding tenant's queries",
        after - before
    );
    let statuses: Vec<u16> = futures::future::join_all(flood)
        .await
        .into_iter()
        .map(|r| r.expect("flood task"))
        .collect();
    assert!(
        statuses.contains(&429),
        "the flood never hit its queue bound: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );

    // Kill one querier while requests run: every request still succeeds
    // (the frontend queues the lost ones again for the other querier).
    let mut running = Vec::new();
    for _ in 0..6 {
        let (client, url, slow) = (client.clone(), frontend_url.clone(), slow.clone());
        running.push(tokio::spawn(async move {
            let r = client
                .get(url)
                .header("X-Scope-OrgID", "calm")
                .query(&slow)
                .send()
                .await
                .expect("request");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    procs[2].kill9();
    for r in futures::future::join_all(running).await {
        let (status, body) = r.expect("task");
        assert_eq!(
            status, 200,
            "a request failed with a querier killed: {body}"
        );
    }
}

/// `-target=all` answers reads through its own query-frontend (split,
/// cached, served by in-process workers), and old data written through its
/// own distributor (a backfill) shows at once: the tenant's cached parts
/// are not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_process_splits_caches_and_sees_its_own_backfill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = Strata::start(
        tmp.path(),
        &["-query-frontend.split-queries-by-interval=1h"],
    )
    .await;
    let now = now_ms() / 60_000 * 60_000;
    let pts: Vec<(i64, f64)> = (1..=240).map(|i| (now - i * 60_000, 1.0)).collect();
    let (st, body) = p
        .push(
            vec![series(&[("__name__", "mono"), ("k", "a")], &pts)],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let params = vec![
        ("query", "sum(count_over_time(mono[10m]))".to_string()),
        ("start", secs(now - 4 * 3_600_000)),
        ("end", secs(now)),
        ("step", "60".to_string()),
    ];
    let (st, first) = get(&p, "/prometheus/api/v1/query_range", "anonymous", &params).await;
    assert_eq!(st, 200, "{first}");
    let cached = parts_from(&p, "cache").await;
    let (_, second) = get(&p, "/prometheus/api/v1/query_range", "anonymous", &params).await;
    assert_eq!(result(&first), result(&second));
    assert!(
        parts_from(&p, "cache").await >= cached + 3.0,
        "the old parts were not cached"
    );
    // Backfill: a second series three hours back, long out of the
    // freshness window.
    let old: Vec<(i64, f64)> = (150..=170).map(|i| (now - i * 60_000, 1.0)).collect();
    let (st, body) = p
        .push(
            vec![series(&[("__name__", "mono"), ("k", "b")], &old)],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let (_, third) = get(&p, "/prometheus/api/v1/query_range", "anonymous", &params).await;
    let at = |j: &Json, t: i64| -> Option<String> {
        j["data"]["result"][0]["values"]
            .as_array()?
            .iter()
            .find(|v| v[0].as_f64() == Some((t / 1000) as f64))
            .and_then(|v| v[1].as_str().map(String::from))
    };
    let t = now - 160 * 60_000;
    assert_eq!(at(&second, t).as_deref(), Some("10"), "{second}");
    assert_eq!(
        at(&third, t).as_deref(),
        Some("20"),
        "the backfill is not seen: {third}"
    );
}

/// Answers' series with their values as floats, sorted by labels.
fn float_series(j: &Json) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = j["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![s["value"].clone()]);
            let points = points
                .iter()
                .map(|p| {
                    let v = match p[1].as_str().unwrap_or("NaN") {
                        "+Inf" => f64::INFINITY,
                        "-Inf" => f64::NEG_INFINITY,
                        v => v.parse().unwrap_or(f64::NAN),
                    };
                    (p[0].as_f64().unwrap_or(f64::NAN), v)
                })
                .collect();
            (s["metric"].to_string(), points)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Equal series and times; values equal up to float summation order.
fn assert_close(direct: &Json, through: &Json, what: &str) {
    let (a, b) = (float_series(direct), float_series(through));
    let names = |s: &[(String, Vec<(f64, f64)>)]| s.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "{what}: series differ");
    for ((name, pa), (_, pb)) in a.iter().zip(&b) {
        assert_eq!(pa.len(), pb.len(), "{what} {name}: {pa:?} / {pb:?}");
        for (x, y) in pa.iter().zip(pb) {
            assert_eq!(x.0, y.0, "{what} {name}: times differ");
            let close = (x.1.is_nan() && y.1.is_nan())
                || x.1 == y.1
                || (x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(y.1.abs());
            assert!(close, "{what} {name} at {}: {} / {}", x.0, x.1, y.1);
        }
    }
}

/// Shardable aggregations through a frontend that cuts them into four
/// shards per hour part equal the querier's own answers (range and
/// instant, cold and cached), over data in the heads and in blocks; what
/// cannot be sharded exactly is sent whole; the shard matcher a querier
/// reads splits the series exactly in both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_queries_equal_the_queriers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let procs = start_voters(
        tmp.path(),
        &["distributor,ingester,querier", "query-frontend", "querier"],
        &[
            "-ingester.ring.replication-factor=1",
            "-blocks-storage.tsdb.block-ranges-period=30m",
            "-blocks-storage.tsdb.head-compaction-interval=200ms",
            "-blocks-storage.bucket-store.sync-interval=1s",
            "-query-frontend.split-queries-by-interval=1h",
            "-query-frontend.parallelize-shardable-queries=true",
            "-query-frontend.query-sharding-total-shards=4",
        ],
    )
    .await;
    let (querier, frontend) = (&procs[0], &procs[1]);
    wait_workers(frontend, 2.0).await;

    // Four hours, one sample a minute, ending now: 30 counters and
    // gauges over 3 jobs, and a histogram per job.
    let now = now_ms() / 60_000 * 60_000;
    let minutes: Vec<i64> = (0..240).map(|i| now - (239 - i) * 60_000).collect();
    let mut batch = Vec::new();
    for k in 0..30i64 {
        let (job, pod) = (format!("j{}", k % 3), format!("p{k}"));
        let labels = |name: &'static str| {
            [
                ("__name__", name),
                ("job", job.as_str()),
                ("pod", pod.as_str()),
            ]
        };
        let counter: Vec<(i64, f64)> = minutes
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, (i as f64) * (k + 1) as f64))
            .collect();
        // Distinct values at every step: no ties for topk to break.
        let gauge: Vec<(i64, f64)> = minutes
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                (
                    t,
                    ((k * 37 + i as i64 * 13) % 101) as f64 + k as f64 / 1000.0,
                )
            })
            .collect();
        batch.push(series(&labels("shreq_total"), &counter));
        // Some gauges stop an hour early: groups come and go.
        let cut = if k % 7 == 0 { 180 } else { 240 };
        batch.push(series(&labels("shgauge"), &gauge[..cut]));
    }
    for j in 0..3 {
        let job = format!("j{j}");
        for (b, le) in ["0.1", "0.5", "1", "+Inf"].iter().enumerate() {
            let pts: Vec<(i64, f64)> = minutes
                .iter()
                .enumerate()
                .map(|(i, &t)| (t, (i * (b + 1) * (j + 2)) as f64))
                .collect();
            batch.push(series(
                &[("__name__", "shlat_bucket"), ("job", &job), ("le", le)],
                &pts,
            ));
        }
    }
    let (st, body) = querier.push(batch, None).await;
    assert_eq!(st, 200, "{body}");
    // Logs over the same minutes: 24 streams, logfmt lines whose latencies
    // differ from stream to stream and minute to minute (no ties for topk).
    let streams: Vec<Json> = (0..24i64)
        .map(|k| {
            let values: Vec<Json> = minutes
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let i = i as i64;
                    let level = if (i + k) % 9 == 0 { "error" } else { "info" };
                    let line = format!(
                        "level={level} path=/p{} status={} latency_ms={}",
                        (i + k) % 4,
                        if level == "error" { 500 } else { 200 },
                        k * 1000 + (i * 17) % 997
                    );
                    serde_json::json!([(t * 1_000_000).to_string(), line])
                })
                .collect();
            serde_json::json!({
                "stream": {"app": "sh", "pod": format!("p{k}"), "team": format!("t{}", k % 3)},
                "values": values,
            })
        })
        .collect();
    let r = querier
        .client
        .post(querier.url("/loki/api/v1/push"))
        .json(&serde_json::json!({ "streams": streams }))
        .send()
        .await
        .expect("log push");
    assert_eq!(r.status(), 204);
    // Older half hours are cut into blocks while newer data stays in the head.
    let bucket = tmp.path().join("blocks").join("anonymous").join("metrics");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let blocks = std::fs::read_dir(&bucket)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("meta.json").exists())
                    .count()
            })
            .unwrap_or(0);
        if blocks >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "only {blocks} blocks cut");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let queries = [
        "sum(rate(shreq_total[5m]))",
        "sum by (job) (rate(shreq_total[5m]))",
        "count by (job) (shgauge)",
        "min by (job) (shgauge)",
        "max(shgauge)",
        "group by (job) (shgauge)",
        "avg by (job) (shgauge)",
        "topk(3, shgauge)",
        "bottomk by (job) (2, shgauge)",
        "histogram_quantile(0.9, sum by (le) (rate(shlat_bucket[5m])))",
        r#"sum(rate(shreq_total[5m])) / on() sum(rate(shlat_bucket{le="+Inf"}[5m]))"#,
        "sum(sum by (pod) (shgauge))",
        "sum(shgauge offset 20m) + 1",
        "max_over_time(shgauge[10m])",
    ];
    async fn rewrites(frontend: &Strata, outcome: &str) -> f64 {
        let name =
            format!("strata_query_frontend_query_sharding_rewrites_total{{outcome=\"{outcome}\"}}");
        frontend.self_metric(&name).await
    }
    let sharded_before = rewrites(frontend, "sharded").await;
    let whole_before = rewrites(frontend, "not_shardable").await;
    for round in ["cold", "warm"] {
        for q in queries {
            let range = vec![
                ("query", q.to_string()),
                ("start", secs(now - 4 * 3_600_000 + 7_000)),
                ("end", secs(now - 10 * 60_000)),
                ("step", "120".to_string()),
            ];
            let (s1, direct) = get(
                querier,
                "/prometheus/api/v1/query_range",
                "anonymous",
                &range,
            )
            .await;
            let (s2, through) = get(
                frontend,
                "/prometheus/api/v1/query_range",
                "anonymous",
                &range,
            )
            .await;
            assert_eq!((s1, s2), (200, 200), "{q}: {direct} / {through}");
            assert!(!result(&direct).is_empty(), "{q}: {direct}");
            assert_close(&direct, &through, &format!("{q} range ({round})"));
            for t in [now - 3 * 3_600_000, now - 5 * 60_000] {
                let instant = vec![("query", q.to_string()), ("time", secs(t))];
                let (s1, direct) =
                    get(querier, "/prometheus/api/v1/query", "anonymous", &instant).await;
                let (s2, through) =
                    get(frontend, "/prometheus/api/v1/query", "anonymous", &instant).await;
                assert_eq!((s1, s2), (200, 200), "{q}: {direct} / {through}");
                assert_eq!(
                    direct["data"]["resultType"], through["data"]["resultType"],
                    "{q}"
                );
                assert_close(&direct, &through, &format!("{q} at {t} ({round})"));
            }
        }
    }
    let sharded = rewrites(frontend, "sharded").await - sharded_before;
    let whole = rewrites(frontend, "not_shardable").await - whole_before;
    // 13 shardable queries, each range (cold; warm parts come from the
    // cache, all but the newest) and twice instant, per round.
    assert!(sharded >= 13.0 * 4.0, "{sharded} queries sharded");
    assert!(whole >= 1.0, "max_over_time was sharded");
    assert!(
        frontend
            .self_metric("strata_query_frontend_sharded_queries_total")
            .await
            > 13.0 * 4.0 * 4.0
    );

    // A sharded instant query has statistics only when asked, with its
    // shards' samples and their queue wait.
    let instant = |stats: bool| {
        let mut p = vec![
            ("query", "sum(shgauge)".to_string()),
            ("time", secs(now - 60_000)),
        ];
        if stats {
            p.push(("stats", "all".to_string()));
        }
        p
    };
    let (_, plain) = get(
        frontend,
        "/prometheus/api/v1/query",
        "anonymous",
        &instant(false),
    )
    .await;
    assert!(plain["data"].get("stats").is_none(), "{plain}");
    let (_, with) = get(
        frontend,
        "/prometheus/api/v1/query",
        "anonymous",
        &instant(true),
    )
    .await;
    assert!(
        with["data"]["stats"]["timings"]["execQueueTime"]
            .as_f64()
            .is_some(),
        "{with}"
    );
    assert!(
        with["data"]["stats"]["samples"]["totalQueryableSamples"].as_u64() > Some(0),
        "{with}"
    );

    // The shard matcher splits every series exactly, in head and blocks.
    let at = secs(now - 150 * 60_000);
    async fn count(p: &Strata, q: String, at: &str) -> f64 {
        let params = [("query", q.clone()), ("time", at.to_string())];
        let (st, j) = get(p, "/prometheus/api/v1/query", "anonymous", &params).await;
        assert_eq!(st, 200, "{q}: {j}");
        j["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    }
    for name in ["shreq_total", "shgauge"] {
        let all = count(querier, format!("count(count_over_time({name}[3h]))"), &at).await;
        let mut parts = 0.0;
        for i in 1..=3 {
            let q = format!(r#"count(count_over_time({name}{{__query_shard__="{i}_of_3"}}[3h]))"#);
            let part = count(querier, q, &at).await;
            assert!(
                part > 0.0 && part < all,
                "{name} shard {i}: {part} of {all}"
            );
            parts += part;
        }
        assert_eq!(parts, all, "{name}: shards do not add up");
    }

    // Grafana reads from buildinfo that this cluster shards queries.
    let (_, info) = get(
        frontend,
        "/prometheus/api/v1/status/buildinfo",
        "anonymous",
        &[],
    )
    .await;
    assert_eq!(info["data"]["features"]["query_sharding"], "true", "{info}");

    // LogQL metric queries: aggregations of range aggregations are sharded
    // by stream and equal the querier's answers, cold and cached; label
    // rewrites and other shapes are sent whole.
    let log_queries = [
        r#"sum by (level) (count_over_time({app="sh"} | logfmt [5m]))"#,
        r#"sum(count_over_time({app="sh"} |= "error" [5m]))"#,
        r#"sum by (path) (rate({app="sh"} | logfmt | status >= 500 [5m]))"#,
        r#"count by (team) (rate({app="sh"}[5m]))"#,
        r#"max by (team) (sum_over_time({app="sh"} | logfmt | unwrap latency_ms [10m]))"#,
        r#"min(count_over_time({app="sh"}[10m]))"#,
        r#"avg by (team) (bytes_over_time({app="sh"}[5m]))"#,
        r#"topk(3, sum by (pod) (sum_over_time({app="sh"} | logfmt | unwrap latency_ms [10m])))"#,
        r#"bottomk(2, max_over_time({app="sh"} | logfmt | unwrap latency_ms [10m]))"#,
        r#"sum(count_over_time({app="sh"} | logfmt | drop pod [5m]))"#,
    ];
    let sharded_before = rewrites(frontend, "sharded").await;
    let whole_before = rewrites(frontend, "not_shardable").await;
    for round in ["cold", "warm"] {
        for q in log_queries {
            let range = vec![
                ("query", q.to_string()),
                (
                    "start",
                    ((now - 4 * 3_600_000 + 7_000) * 1_000_000).to_string(),
                ),
                ("end", ((now - 10 * 60_000) * 1_000_000).to_string()),
                ("step", "120s".to_string()),
            ];
            let (s1, direct) = get(querier, "/loki/api/v1/query_range", "anonymous", &range).await;
            let (s2, through) =
                get(frontend, "/loki/api/v1/query_range", "anonymous", &range).await;
            assert_eq!((s1, s2), (200, 200), "{q}: {direct} / {through}");
            assert!(!result(&direct).is_empty(), "{q}: {direct}");
            assert_close(&direct, &through, &format!("{q} ({round})"));
        }
    }
    let sharded = rewrites(frontend, "sharded").await - sharded_before;
    let whole = rewrites(frontend, "not_shardable").await - whole_before;
    // Nine shardable queries, each cut into four hour parts when cold.
    assert!(sharded >= 9.0, "{sharded} LogQL queries sharded");
    assert!(
        whole >= 1.0,
        "a query that drops a stream label was sharded"
    );
    // Loki's statistics count the shard queries.
    let range = vec![
        ("query", log_queries[0].to_string()),
        ("start", ((now - 3_600_000) * 1_000_000).to_string()),
        ("end", (now * 1_000_000).to_string()),
        ("step", "60s".to_string()),
    ];
    let (_, stats) = get(frontend, "/loki/api/v1/query_range", "anonymous", &range).await;
    let summary = &stats["data"]["stats"]["summary"];
    assert!(summary["shards"].as_u64() >= Some(4), "{stats}");
    assert!(summary["totalLinesProcessed"].as_u64() > Some(0), "{stats}");
}

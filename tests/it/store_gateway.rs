//! Store-gateways: blocks sharded over the gateways of the ring, loaded
//! before a gateway serves, re-sharded when one joins, read by queriers
//! from a live owner (the next one when one dies), and a clear failure,
//! never a partial answer, when a block has no live owner left.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::cluster::start_voters;
use crate::common::{Strata, free_port, now_ms, secs, series};

/// Series and samples pushed: 20 series, one sample a minute for 2 hours.
const SERIES: usize = 20;
const MINUTES: i64 = 120;
/// Blocks of each signal: 2 hours cut into 5-minute blocks.
const BLOCKS: usize = 24;

async fn owned(p: &Strata) -> f64 {
    p.self_metric("strata_storegateway_owned_blocks").await
}

/// Complete blocks of `signal` in the shared bucket.
fn blocks_in_bucket(bucket: &std::path::Path, signal: &str) -> usize {
    std::fs::read_dir(bucket.join("anonymous").join(signal))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("meta.json").exists())
                .count()
        })
        .unwrap_or(0)
}

/// The instant query `q` at `t_ms`: its JSON, or the error's text.
async fn query(p: &Strata, q: &str, t_ms: i64) -> Result<Json, String> {
    let r = p
        .client
        .get(p.url("/prometheus/api/v1/query"))
        .query(&[("query", q.to_string()), ("time", secs(t_ms))])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let j: Json = r.json().await.map_err(|e| e.to_string())?;
    if status != 200 || j["status"] != "success" {
        return Err(format!("{status}: {j}"));
    }
    Ok(j["data"]["result"].clone())
}

/// The single value of a one-element vector answer.
fn value(result: &Json) -> f64 {
    result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Waits until `check` passes; fails with what it last reported.
async fn wait_for(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + within;
    while let Err(last) = check().await {
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `Ok` when `cond`, else what was seen.
fn seen(cond: bool, what: String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what) }
}

/// Blocks of two hours of metrics and logs are cut into 24 blocks each and
/// served by two store-gateways (RF 2), each owning every block; a third
/// gateway that joins takes a share from them; queries answer in full from
/// the gateways (and log queries too) while one gateway is killed with
/// SIGKILL in the middle of them; once a block's every owner is dead, the
/// query fails naming the block instead of answering without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gateways_shard_blocks_and_survive_a_killed_gateway() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let common = [
        "-blocks-storage.tsdb.block-ranges-period=5m",
        "-blocks-storage.tsdb.head-compaction-interval=200ms",
        "-blocks-storage.bucket-store.sync-interval=1s",
        "-ingester.ring.replication-factor=1",
        "-store-gateway.sharding-ring.replication-factor=2",
    ];
    // p3 is only the third Raft voter: p1 dies later and the ring must
    // keep a quorum.
    let mut procs = start_voters(
        tmp.path(),
        &[
            "distributor,ingester,querier",
            "store-gateway",
            "store-gateway",
            "ruler",
        ],
        &common,
    )
    .await;
    let bucket = tmp.path().join("blocks");

    // Two hours, starting on an hour three hours ago: 24 five-minute blocks.
    let start = (now_ms() - 3 * 3_600_000) / 3_600_000 * 3_600_000;
    let end = start + MINUTES * 60_000;
    let pts: Vec<(i64, f64)> = (0..MINUTES).map(|i| (start + i * 60_000, 1.0)).collect();
    let batch = (0..SERIES)
        .map(|k| series(&[("__name__", "sgtest"), ("k", &k.to_string())], &pts))
        .collect();
    let (st, body) = procs[0].push(batch, None).await;
    assert_eq!(st, 200, "{body}");
    let values: Vec<Json> = (0..MINUTES)
        .map(|i| {
            let ns = (start + i * 60_000) * 1_000_000;
            serde_json::json!([ns.to_string(), format!("line {i}")])
        })
        .collect();
    // Heads are cut a grace period behind their newest item (for logs an
    // hour): a marker of now moves both heads past the two hours.
    let now_ns = (now_ms() * 1_000_000).to_string();
    let r = procs[0]
        .client
        .post(procs[0].url("/loki/api/v1/push"))
        .json(&serde_json::json!({"streams": [
            {"stream": {"app": "sg"}, "values": values},
            {"stream": {"app": "marker"}, "values": [[now_ns, "now"]]},
        ]}))
        .send()
        .await
        .expect("log push");
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    let (st, body) = procs[0]
        .push(
            vec![series(&[("__name__", "marker")], &[(now_ms(), 1.0)])],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");

    wait_for(
        &format!("all {BLOCKS} blocks of each signal cut and uploaded"),
        Duration::from_secs(90),
        async || {
            let (m, l) = (
                blocks_in_bucket(&bucket, "metrics"),
                blocks_in_bucket(&bucket, "logs"),
            );
            seen(
                m == BLOCKS && l == BLOCKS,
                format!("{m} metric and {l} log blocks"),
            )
        },
    )
    .await;
    // RF 2 over two gateways: each owns every block of both signals.
    wait_for(
        "both gateways own every block",
        Duration::from_secs(30),
        async || {
            let (a, b) = (owned(&procs[1]).await, owned(&procs[2]).await);
            seen(
                a == (2 * BLOCKS) as f64 && b == (2 * BLOCKS) as f64,
                format!("they own {a} and {b}"),
            )
        },
    )
    .await;

    // The ring page shows each gateway's block count.
    let ring: Json = procs[0]
        .client
        .get(procs[0].url("/ring?format=json"))
        .send()
        .await
        .expect("ring page")
        .json()
        .await
        .expect("ring JSON");
    let counts: Vec<u64> = ring["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["roles"].to_string().contains("store-gateway"))
        .filter_map(|i| i["owned_blocks"].as_u64())
        .collect();
    assert_eq!(counts, vec![2 * BLOCKS as u64; 2], "{ring}");

    let total = (SERIES as i64 * MINUTES) as f64;
    let count = "sum(count_over_time(sgtest[3h]))";
    let answer = query(&procs[0], count, end).await.expect("query");
    assert_eq!(value(&answer), total, "{answer}");
    let log_count = r#"sum(count_over_time({app="sg"}[3h]))"#;
    let log_total = |j: &Json| -> f64 {
        j["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let log_query = async |p: &Strata| -> Json {
        p.client
            .get(p.url("/loki/api/v1/query"))
            .query(&[
                ("query", log_count.to_string()),
                ("time", (end * 1_000_000).to_string()),
            ])
            .send()
            .await
            .expect("log query")
            .json()
            .await
            .expect("log json")
    };
    let j = log_query(&procs[0]).await;
    assert_eq!(log_total(&j), MINUTES as f64, "{j}");
    // The blocks were read by the gateways, not by the querier itself.
    let served = procs[1]
        .self_metric("strata_storegateway_served_blocks_total")
        .await
        + procs[2]
            .self_metric("strata_storegateway_served_blocks_total")
            .await;
    assert!(
        served >= (2 * BLOCKS) as f64,
        "gateways served {served} blocks"
    );

    // A third gateway (not a Raft voter) joins: it loads a share of the
    // blocks before it turns ACTIVE, and the first two give that share up.
    let peers = procs[0]
        .extra_args
        .iter()
        .find(|a| a.starts_with("-ring.raft.peers="))
        .cloned()
        .expect("peers flag");
    let dir = tmp.path().join("p4");
    std::fs::create_dir_all(&dir).expect("dir");
    std::os::unix::fs::symlink(&bucket, dir.join("blocks")).expect("symlink");
    let grpc = format!("-server.grpc-listen-port={}", free_port());
    let mut args = vec![
        "-target=store-gateway",
        grpc.as_str(),
        peers.as_str(),
        "-ring.instance-id=p4",
        "-ring.heartbeat-period=500ms",
        "-ring.heartbeat-timeout=8s",
    ];
    args.extend_from_slice(&common);
    let p4 = Strata::start(&dir, &args).await;
    let loaded_at_ready = owned(&p4).await;
    assert!(
        loaded_at_ready > 0.0,
        "the new gateway was ready owning no block"
    );
    wait_for(
        "the old gateways give up the new one's share",
        Duration::from_secs(30),
        async || {
            let (a, b, c) = (
                owned(&procs[1]).await,
                owned(&procs[2]).await,
                owned(&p4).await,
            );
            seen(
                a + b + c == (4 * BLOCKS) as f64
                    && a < (2 * BLOCKS) as f64
                    && b < (2 * BLOCKS) as f64,
                format!("they own {a}, {b} and {c}"),
            )
        },
    )
    .await;

    // Its status page lists them by tenant.
    let page: Json = p4
        .client
        .get(p4.url("/store-gateway/tenants"))
        .send()
        .await
        .expect("status page")
        .json()
        .await
        .expect("status json");
    let t = &page["tenants"][0];
    assert_eq!(t["tenant"], "anonymous", "{page}");
    let listed =
        t["metric_blocks"].as_f64().unwrap_or(0.0) + t["log_blocks"].as_f64().unwrap_or(0.0);
    assert_eq!(listed, owned(&p4).await, "{page}");

    // Queries in a loop while p1 is killed: each answers in full (every
    // block has another live owner); the querier retried some elsewhere.
    let retried_before = procs[0]
        .self_metric("strata_querier_storegateway_block_reads_total{outcome=\"retried\"}")
        .await;
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut killed = false;
    while Instant::now() < deadline {
        if !killed && answered == 3 {
            procs[1].kill9();
            killed = true;
        }
        let r = query(&procs[0], count, end).await;
        match r {
            Ok(a) => assert_eq!(value(&a), total, "a partial answer after the kill: {a}"),
            Err(e) => panic!("a query failed with a live owner for every block: {e}"),
        }
        let j = log_query(&procs[0]).await;
        assert_eq!(log_total(&j), MINUTES as f64, "{j}");
        answered += 1;
    }
    assert!(killed && answered > 5, "only {answered} queries ran");
    let retried = procs[0]
        .self_metric("strata_querier_storegateway_block_reads_total{outcome=\"retried\"}")
        .await;
    assert!(
        retried > retried_before,
        "no block was asked of another owner after the kill ({retried_before} -> {retried})"
    );

    // Kill p2 as well: the blocks whose two owners were p1 and p2 have no
    // live owner; the query fails and says which block and why.
    procs[2].kill9();
    let err = query(&procs[0], count, end)
        .await
        .expect_err("a query answered without the blocks only dead gateways own");
    assert!(
        err.contains("could not be read from any of its store-gateways"),
        "{err}"
    );
    drop(p4);
}

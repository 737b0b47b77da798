//! Blocks in an S3-compatible object store (a real moto server): the head
//! is flushed to S3 on shutdown and read back from there after the local
//! WAL is gone.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Strata, free_port, now_ms, series};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto on `port` and creates the `strata-blocks` bucket.
async fn start_moto(port: u16) -> Moto {
    let moto = Moto(
        Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "python3 with moto[server] must be installed; the README test command installs it",
            ),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client
            .put(format!("http://127.0.0.1:{port}/strata-blocks"))
            .send()
            .await
            && r.status().is_success()
        {
            return moto;
        }
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn s3_args(port: u16) -> Vec<String> {
    vec![
        "-blocks-storage.backend=s3".to_string(),
        format!("-blocks-storage.s3.endpoint=127.0.0.1:{port}"),
        "-blocks-storage.s3.insecure=true".into(),
        "-blocks-storage.s3.bucket-name=strata-blocks".into(),
        "-blocks-storage.s3.region=us-east-1".into(),
        "-blocks-storage.s3.access-key-id=test".into(),
        "-blocks-storage.s3.secret-access-key=test".into(),
    ]
}

#[tokio::test]
async fn blocks_round_trip_through_s3() {
    let port = free_port();
    let moto = start_moto(port).await;
    let client = reqwest::Client::new();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let mut s3_args = s3_args(port);
    s3_args.push("-blocks-storage.tsdb.flush-blocks-on-shutdown=true".into());
    let args: Vec<&str> = s3_args.iter().map(String::as_str).collect();
    let mut s = Strata::start(dir.path(), &args).await;
    let t = now_ms() - 60_000;
    let samples: Vec<(i64, f64)> = (0..60).map(|i| (t + i * 1000, i as f64 / 4.0)).collect();
    let (st, body) = s
        .push(
            vec![series(&[("__name__", "s3_metric"), ("job", "x")], &samples)],
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(s.terminate().success(), "clean shutdown; log:\n{}", s.log());

    let listing = client
        .get(format!(
            "{endpoint}/strata-blocks?list-type=2&prefix=anonymous/metrics/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for file in ["meta.json", "series.parquet", "chunks.parquet"] {
        assert!(listing.contains(file), "{file} uploaded to S3: {listing}");
    }

    std::fs::remove_dir_all(dir.path().join("tsdb")).unwrap();
    s.restart().await;
    let got = s.raw_samples("s3_metric", "5m", t + 59_000).await;
    assert_eq!(got.len(), 1, "series read back from the S3 block");
    assert_eq!(got[0].1, samples);
    drop(moto);
}

#[tokio::test]
async fn object_store_outage_loses_nothing() {
    let port = free_port();
    let moto = start_moto(port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = s3_args(port);
    args.push("-blocks-storage.tsdb.block-ranges-period=1s".into());
    args.push("-blocks-storage.tsdb.head-compaction-interval=200ms".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut s = Strata::start(dir.path(), &args).await;
    // One query while the store is up caches the (empty) block listing.
    s.query("up", now_ms()).await;
    drop(moto);

    let mut expected = Vec::new();
    let start = now_ms();
    while now_ms() - start < 3000 {
        let t = now_ms();
        let (st, body) = s
            .push(
                vec![series(&[("__name__", "outage_metric")], &[(t, t as f64)])],
                None,
            )
            .await;
        assert_eq!(st, 200, "writes do not depend on the object store: {body}");
        expected.push((t, t as f64));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = expected.last().unwrap().0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while s
        .self_metric("strata_ingester_block_upload_failures_total")
        .await
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "uploads never failed; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Cut but not uploaded: still served from memory.
    let got = s.raw_samples("outage_metric", "1m", end).await;
    assert_eq!(got[0].1, expected, "during the outage");

    let _moto = start_moto(port).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.self_metric("strata_ingester_blocks_uploaded_total").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "uploads did not resume; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let got = s.raw_samples("outage_metric", "1m", end).await;
    assert_eq!(got[0].1, expected, "after uploads resumed");
    s.kill9();
    s.restart().await;
    let got = s.raw_samples("outage_metric", "1m", end).await;
    assert_eq!(
        got[0].1, expected,
        "after kill -9: blocks in S3 plus the WAL"
    );
}

/// Hot tier on local disk, warm tier in S3 (moto): blocks older than the
/// hot max age are copied to S3 and verified, the bucket index lists them
/// as warm, the hot copies go after the deletion delay, and queries answer
/// exactly the same from the warm tier.
/// A local hot tier, moto on `port` as the warm tier, blocks older than an
/// hour moved there, short ranges and delays.
fn tier_args(port: u16) -> Vec<String> {
    vec![
        "-blocks-storage.warm.backend=s3".to_string(),
        format!("-blocks-storage.warm.s3.endpoint=127.0.0.1:{port}"),
        "-blocks-storage.warm.s3.insecure=true".into(),
        "-blocks-storage.warm.s3.bucket-name=strata-blocks".into(),
        "-blocks-storage.warm.s3.region=us-east-1".into(),
        "-blocks-storage.warm.s3.access-key-id=test".into(),
        "-blocks-storage.warm.s3.secret-access-key=test".into(),
        "-blocks-storage.hot-max-age=1h".into(),
        "-blocks-storage.tsdb.block-ranges-period=10m".into(),
        "-blocks-storage.tsdb.head-compaction-interval=200ms".into(),
        "-compactor.block-ranges=10m,1h".into(),
        "-compactor.compaction-interval=500ms".into(),
        "-compactor.deletion-delay=3s".into(),
        "-blocks-storage.bucket-store.ignore-deletion-marks-delay=1s".into(),
        "-compactor.cleanup-interval=1s".into(),
        // The deletion delay must outlast queriers' index refresh (12h vs
        // 1m by default); both shortened here.
        "-blocks-storage.bucket-store.sync-interval=500ms".into(),
    ]
}

/// `tier_args` with some flags set to other values.
fn tier_args_with(port: u16, overrides: &[(&str, &str)]) -> Vec<String> {
    tier_args(port)
        .into_iter()
        .map(|a| {
            match overrides
                .iter()
                .find(|(flag, _)| a.starts_with(&format!("{flag}=")))
            {
                Some((flag, value)) => format!("{flag}={value}"),
                None => a,
            }
        })
        .collect()
}

/// 4 series, a sample every 30 s from the hour that began 3-4 hours ago.
struct TieredData {
    now: i64,
    want: Vec<Vec<(i64, f64)>>,
}

impl TieredData {
    async fn push(s: &Strata) -> TieredData {
        let now = now_ms() / 30_000 * 30_000;
        let start = (now - 3 * 3600 * 1000) / 3_600_000 * 3_600_000;
        let times: Vec<i64> = (0..)
            .map(|i| start + i * 30_000)
            .take_while(|t| *t <= now)
            .collect();
        for chunk in times.chunks(120) {
            let batch: Vec<_> = (0..4)
                .map(|k| {
                    let pts: Vec<(i64, f64)> =
                        chunk.iter().map(|t| (*t, (*t / 1000 + k) as f64)).collect();
                    series(&[("__name__", "tiered"), ("k", &k.to_string())], &pts)
                })
                .collect();
            let (st, body) = s.push(batch, None).await;
            assert_eq!(st, 200, "{body}");
        }
        let want = (0..4)
            .map(|k| times.iter().map(|t| (*t, (*t / 1000 + k) as f64)).collect())
            .collect();
        TieredData { now, want }
    }

    /// Every sample back exactly: none missing, none doubled.
    async fn check(&self, s: &Strata) {
        let got = s.raw_samples("tiered", "5h", self.now).await;
        assert_eq!(got.len(), 4);
        for (labels, pts) in got {
            let k: usize = labels["k"].as_str().unwrap().parse().unwrap();
            assert_eq!(pts, self.want[k], "series k={k}");
        }
    }
}

/// Metric blocks listed in the bucket index: (ulid, tier, maxTime).
fn indexed_blocks(dir: &std::path::Path) -> Vec<(String, String, i64)> {
    let Ok(b) = std::fs::read(dir.join("blocks/anonymous/bucket-index.json.gz")) else {
        return Vec::new();
    };
    let mut text = String::new();
    use std::io::Read;
    if flate2::read::GzDecoder::new(&b[..])
        .read_to_string(&mut text)
        .is_err()
    {
        return Vec::new();
    }
    let index: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    index["blocks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|b| b["signal"] == "metrics")
                .map(|b| {
                    (
                        b["ulid"].as_str().unwrap_or_default().to_string(),
                        b["tier"].as_str().unwrap_or("hot").to_string(),
                        b["maxTime"].as_i64().unwrap_or(i64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every block whose newest sample is over an hour old is
/// listed warm in the index with no files left in the hot tier, checking
/// that queries answer exactly on every poll; returns their ULIDs.
async fn wait_old_blocks_warm(s: &Strata, dir: &std::path::Path, data: &TieredData) -> Vec<String> {
    let cutoff = now_ms() - 3600 * 1000;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        data.check(s).await;
        let old: Vec<(String, String, i64)> = indexed_blocks(dir)
            .into_iter()
            .filter(|(_, _, max)| *max < cutoff)
            .collect();
        let hot = hot_block_dirs(dir);
        if !old.is_empty()
            && old
                .iter()
                .all(|(u, tier, _)| tier == "warm" && !hot.contains(u))
        {
            return old.into_iter().map(|(u, _, _)| u).collect();
        }
        assert!(
            Instant::now() < deadline,
            "old blocks never all moved to warm: old {old:?}, hot dirs {hot:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Blocks with files in the local hot tier (the local store leaves empty
/// directories behind).
fn hot_block_dirs(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("blocks/anonymous/metrics"))
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let has_files = std::fs::read_dir(e.path()).ok()?.next().is_some();
                has_files.then(|| e.file_name().into_string().ok())?
            })
            .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn old_blocks_move_to_the_warm_tier_and_answer_the_same() {
    let port = free_port();
    let moto = start_moto(port).await;
    let dir = tempfile::tempdir().unwrap();
    let args = tier_args(port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Strata::start(dir.path(), &args).await;
    let data = TieredData::push(&s).await;
    let check = async || data.check(&s).await;
    check().await;

    // Wait until every block older than the hot max age is warm in the
    // index and its hot copy is gone.
    let warm_ulids = wait_old_blocks_warm(&s, dir.path(), &data).await;
    // The warm copies are in S3 (moto), complete.
    let listing = reqwest::get(format!(
        "http://127.0.0.1:{port}/strata-blocks?list-type=2&prefix=anonymous/metrics/"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    for u in &warm_ulids {
        for f in ["meta.json", "series.parquet", "chunks.parquet"] {
            assert!(
                listing.contains(&format!("anonymous/metrics/{u}/{f}")),
                "{u}/{f} missing in S3"
            );
        }
    }
    // Queries read them from S3 and answer exactly the same; the tier
    // gauges count them.
    check().await;
    let warm_blocks = s
        .self_metric("strata_bucket_blocks{signal=\"metrics\",tier=\"warm\"}")
        .await;
    assert!(
        warm_blocks >= warm_ulids.len() as f64,
        "warm gauge: {warm_blocks}"
    );

    // The querier's warm-block cache: the same query again reads the warm
    // blocks' footers and pages from it, so much that it still answers
    // with the warm tier unreachable.
    let hits =
        || s.self_metric("strata_cache_requests_total{cache=\"warm-blocks\",result=\"hit\"}");
    let before = hits().await;
    check().await;
    let after = hits().await;
    assert!(after > before, "no cache hits: {before} -> {after}");
    drop(moto);
    check().await;
    assert!(hits().await > after);
}

/// The warm tier (moto) goes down while blocks are due to move: every move
/// fails and is retried, the bucket index keeps being written, queries
/// keep answering exactly from the hot tier; once S3 is back the blocks
/// move, queries answering exactly at every poll.
#[tokio::test]
async fn warm_tier_outage_during_moves_retries_and_loses_nothing() {
    let port = free_port();
    let moto = start_moto(port).await;
    let dir = tempfile::tempdir().unwrap();
    // Nothing old enough to move yet: blocks are cut and indexed with S3 up.
    let args = tier_args_with(port, &[("-blocks-storage.hot-max-age", "24h")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut s = Strata::start(dir.path(), &args).await;
    let data = TieredData::push(&s).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while indexed_blocks(dir.path()).len() < 3 {
        assert!(Instant::now() < deadline, "no index: {}", s.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // S3 down, blocks now due to move: moves fail and are retried; no
    // block is listed warm and every answer is exact.
    drop(moto);
    s.kill9();
    s.extra_args = tier_args(port);
    s.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s
        .log()
        .contains("moving blocks to the warm tier failed; will retry")
    {
        assert!(Instant::now() < deadline, "no failed move: {}", s.log());
        data.check(&s).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for _ in 0..5 {
        data.check(&s).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let indexed = indexed_blocks(dir.path());
    assert!(
        indexed.iter().all(|(_, tier, _)| tier == "hot"),
        "a block is listed warm while S3 is down: {indexed:?}"
    );

    // S3 back: the old blocks move, queries stay exact while they do.
    let _moto = start_moto(port).await;
    wait_old_blocks_warm(&s, dir.path(), &data).await;
    data.check(&s).await;
    assert!(
        s.self_metric("strata_compactor_blocks_moved_to_warm_total")
            .await
            >= 1.0
    );
}

/// SIGKILL between a verified warm copy and the hot copy's moved mark
/// (the `compactor.after-warm-copy` crash point): after a clean restart
/// the move finishes, and queries answer exactly before and after.
#[tokio::test]
async fn killed_between_warm_copy_and_moved_mark_finishes_the_move() {
    let port = free_port();
    let _moto = start_moto(port).await;
    let dir = tempfile::tempdir().unwrap();
    // First without passes (the start-up one finds nothing old to move).
    let args = tier_args_with(port, &[("-compactor.compaction-interval", "1h")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut s = Strata::start(dir.path(), &args).await;
    let data = TieredData::push(&s).await;
    data.check(&s).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while hot_block_dirs(dir.path()).len() < 12 {
        assert!(Instant::now() < deadline, "blocks not cut: {}", s.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    s.kill9();
    s.extra_args = tier_args(port);
    s.env = vec![("STRATA_CRASH_AT".into(), "compactor.after-warm-copy".into())];
    s.launch();
    let status = s
        .wait_exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("never reached the crash point: {}", s.log()));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}: {}", s.log());

    s.env.clear();
    s.restart().await;
    data.check(&s).await;
    wait_old_blocks_warm(&s, dir.path(), &data).await;
    data.check(&s).await;
}

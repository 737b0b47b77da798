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

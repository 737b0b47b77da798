//! Acknowledged writes survive `kill -9`, and data handed from the head to
//! Parquet blocks reads back identically, with no gaps or duplicates.

use std::time::Duration;

use crate::common::{Strata, now_ms, series};

fn block_dirs(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let metrics = root.join("blocks").join("anonymous").join("metrics");
    let Ok(rd) = std::fs::read_dir(metrics) else {
        return vec![];
    };
    rd.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect()
}

#[tokio::test]
async fn acknowledged_samples_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Strata::start(dir.path(), &[]).await;
    let t0 = now_ms() - 120_000;
    let mut expected: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 20];
    for round in 0..50i64 {
        let batch: Vec<_> = (0..20)
            .map(|i| {
                let sample = (t0 + round * 1000, (round * 100 + i) as f64);
                expected[i as usize].push(sample);
                let name = format!("s{i:02}");
                series(
                    &[("__name__", "crash_metric"), ("series", name.as_str())],
                    &[sample],
                )
            })
            .collect();
        let (st, body) = s.push(batch, None).await;
        assert_eq!(st, 200, "{body}");
    }
    s.kill9();
    s.restart().await;
    let got = s.raw_samples("crash_metric", "10m", t0 + 60_000).await;
    assert_eq!(got.len(), 20, "every series is back");
    for (i, (labels, samples)) in got.iter().enumerate() {
        assert_eq!(labels["series"], format!("s{i:02}"));
        assert_eq!(samples, &expected[i], "series {i}");
    }
    // Still writable after replay, and order checks still apply.
    let (st, _) = s
        .push(
            vec![series(
                &[("__name__", "crash_metric"), ("series", "s00")],
                &[(t0 + 50_000, 1.0)],
            )],
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .push(
            vec![series(
                &[("__name__", "crash_metric"), ("series", "s00")],
                &[(t0, 1.0)],
            )],
            None,
        )
        .await;
    assert_eq!(st, 400, "older than the newest replayed sample");
}

#[tokio::test]
async fn corrupt_wal_segment_is_set_aside_and_later_samples_survive() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the 50 pushes below span many of them.
    let mut s = Strata::start(
        dir.path(),
        &["-blocks-storage.tsdb.wal-segment-size-bytes=2048"],
    )
    .await;
    let t0 = now_ms() - 120_000;
    for round in 0..50i64 {
        let batch: Vec<_> = (0..10)
            .map(|i| {
                let name = format!("s{i:02}");
                series(
                    &[("__name__", "wal_metric"), ("series", name.as_str())],
                    &[(t0 + round * 1000, round as f64)],
                )
            })
            .collect();
        let (st, body) = s.push(batch, None).await;
        assert_eq!(st, 200, "{body}");
    }
    s.kill9();
    let wal = dir.path().join("tsdb/wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    segments.sort();
    assert!(
        segments.len() >= 4,
        "want several segments, got {segments:?}"
    );
    // A bad block in the middle of the second segment.
    let damaged = segments[1].clone();
    let mut bytes = std::fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    s.restart().await;
    // What the later segments hold is back: the newest samples of every
    // series (before, replay stopped at the damage and deleted the rest).
    let got = s.raw_samples("wal_metric", "10m", t0 + 60_000).await;
    assert_eq!(got.len(), 10, "every series is back");
    for (labels, samples) in &got {
        assert_eq!(samples.last(), Some(&(t0 + 49_000, 49.0)), "{labels}");
        assert!(
            samples.len() >= 25,
            "{labels}: only {} samples",
            samples.len()
        );
    }
    assert_eq!(s.self_metric("strata_wal_corruptions_total").await, 1.0);
    let aside = wal.join("corrupt").join(damaged.file_name().unwrap());
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        bytes,
        "the damaged segment is kept for inspection"
    );
    assert!(s.log().contains("WAL segment has a corrupt record"));
}

#[tokio::test]
async fn samples_moved_to_blocks_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "-blocks-storage.tsdb.block-ranges-period=2s",
        "-blocks-storage.tsdb.head-compaction-interval=300ms",
    ];
    let mut s = Strata::start(dir.path(), &args).await;
    let start = now_ms();
    let mut expected: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 10];
    let mut k = 0i64;
    // Write for ~7s so several 2s blocks get cut while writes continue.
    while now_ms() - start < 7000 {
        let t = now_ms();
        let batch: Vec<_> = (0..10)
            .map(|i| {
                let sample = (t, (k * 10 + i) as f64 + 0.25);
                expected[i as usize].push(sample);
                let name = format!("b{i}");
                series(
                    &[("__name__", "block_metric"), ("series", name.as_str())],
                    &[sample],
                )
            })
            .collect();
        let (st, body) = s.push(batch, None).await;
        assert_eq!(st, 200, "{body}");
        k += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = expected[0].last().unwrap().0;
    // Wait until at least two blocks are uploaded.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while block_dirs(dir.path()).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no blocks cut; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(s.self_metric("strata_ingester_blocks_uploaded_total").await >= 2.0);

    let check = |got: Vec<(serde_json::Value, Vec<(i64, f64)>)>, when: &str| {
        assert_eq!(got.len(), 10, "{when}");
        for (i, (labels, samples)) in got.iter().enumerate() {
            assert_eq!(labels["series"], format!("b{i}"), "{when}");
            assert_eq!(
                samples, &expected[i],
                "{when}: series b{i} has gaps or duplicates"
            );
        }
    };
    // The range spans blocks and the head.
    check(
        s.raw_samples("block_metric", "1m", end).await,
        "head + blocks",
    );
    // Sum over a range query step-by-step sees each sample exactly once.
    let d = s.query("count_over_time(block_metric[1m])", end).await;
    for r in d["result"].as_array().unwrap() {
        assert_eq!(r["value"][1], k.to_string(), "{d}");
    }
    // After a crash: blocks plus the replayed WAL, still exact.
    s.kill9();
    s.restart().await;
    check(
        s.raw_samples("block_metric", "1m", end).await,
        "after kill -9",
    );
    // A graceful stop with flush leaves everything in blocks.
    let status = s.terminate();
    assert!(status.success(), "clean exit on SIGTERM");
}

#[tokio::test]
async fn sigterm_with_flush_moves_the_head_into_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Strata::start(
        dir.path(),
        &["-blocks-storage.tsdb.flush-blocks-on-shutdown=true"],
    )
    .await;
    let t = now_ms() - 5000;
    let (st, _) = s
        .push(
            vec![series(
                &[("__name__", "flushed")],
                &[(t, 1.0), (t + 1000, 2.0)],
            )],
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert!(s.terminate().success());
    assert_eq!(block_dirs(dir.path()).len(), 1, "head flushed to one block");
    // Remove the WAL: the data must come from the block alone.
    std::fs::remove_dir_all(dir.path().join("tsdb")).unwrap();
    s.restart().await;
    let got = s.raw_samples("flushed", "1m", t + 1000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, vec![(t, 1.0), (t + 1000, 2.0)]);
}

/// A small tmpfs over the WAL directory, unmounted on drop.
struct TmpfsMount(std::path::PathBuf);

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (e.g. "4m") at `dir`; None when this process
    /// may not mount (not root).
    fn mount(dir: &std::path::Path, size: &str) -> Option<TmpfsMount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| TmpfsMount(dir.to_path_buf()))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros into `path` until the file system is full.
fn fill_disk(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let one = [0u8; 1];
    while f.write_all(&one).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test]
async fn full_disk_rejects_writes_with_5xx_and_keeps_acknowledged_data() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = dir.path().join("tsdb");
    let Some(_mount) = TmpfsMount::mount(&tsdb, "4m") else {
        eprintln!("SKIPPED full-disk test: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let mut s = Strata::start(dir.path(), &[]).await;
    let t0 = now_ms() - 60_000;
    let labels_of = |i: usize| {
        let pad = "x".repeat(100);
        (format!("s{i:03}"), pad)
    };
    let batch = |round: i64| -> Vec<_> {
        (0..300)
            .map(|i| {
                let (name, pad) = labels_of(i);
                series(
                    &[
                        ("__name__", "disk_metric"),
                        ("pad", pad.as_str()),
                        ("series", name.as_str()),
                    ],
                    &[(t0 + round * 1000, round as f64)],
                )
            })
            .collect()
    };
    let (st, body) = s.push(batch(0), None).await;
    assert_eq!(st, 200, "{body}");

    let filler = tsdb.join("filler");
    fill_disk(&filler);
    // A write that cannot reach the WAL is refused as our fault (5xx, so
    // Prometheus retries), says why, and is not applied.
    let (st, body) = s.push(batch(1), None).await;
    assert_eq!(st, 500, "{body}");
    assert!(body.contains("No space left"), "{body}");
    let got = s.raw_samples("disk_metric", "5m", t0 + 10_000).await;
    assert_eq!(got.len(), 300);
    assert!(
        got.iter().all(|(_, v)| v == &vec![(t0, 0.0)]),
        "refused batch must not be visible"
    );

    // Space comes back: the same batch (Prometheus's retry) is accepted.
    std::fs::remove_file(&filler).unwrap();
    let (st, body) = s.push(batch(1), None).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = s.push(batch(2), None).await;
    assert_eq!(st, 200, "{body}");

    // Nothing acknowledged is lost across kill -9, and the WAL that hit the
    // full disk replays cleanly.
    s.kill9();
    s.restart().await;
    let got = s.raw_samples("disk_metric", "5m", t0 + 10_000).await;
    assert_eq!(got.len(), 300);
    for (labels, samples) in &got {
        assert_eq!(
            samples,
            &vec![(t0, 0.0), (t0 + 1000, 1.0), (t0 + 2000, 2.0)],
            "{labels}"
        );
    }
    assert!(
        !s.log().contains("torn or corrupt"),
        "full disk must not leave a partial record:\n{}",
        s.log()
    );
}

#[tokio::test]
async fn backfill_hours_old_is_accepted_and_cut_as_it_advances() {
    // A remote-write client catching up after an outage sends old samples in
    // time order. The head is cut relative to its newest sample (as
    // Prometheus does), not the wall clock, so none of it is out of bounds.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "-blocks-storage.tsdb.block-ranges-period=10s",
        "-blocks-storage.tsdb.head-compaction-interval=100ms",
    ];
    let mut s = Strata::start(dir.path(), &args).await;
    let start = now_ms() - 3 * 3_600_000;
    let mut expected = Vec::new();
    for i in 0..600i64 {
        let t = start + i * 15_000;
        expected.push((t, i as f64));
        let (st, body) = s
            .push(
                vec![series(&[("__name__", "backfilled")], &[(t, i as f64)])],
                None,
            )
            .await;
        assert_eq!(st, 200, "sample {i} at {t}: {body}");
        if i % 100 == 0 {
            // Let the cutter run between catch-up batches.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while block_dirs(dir.path()).len() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "old data not cut into blocks; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Queried while hundreds of one-sample blocks are still uploading: a
    // sample is always either pending in the head or in a listed block.
    let end = expected.last().unwrap().0;
    let got = s.raw_samples("backfilled", "3h", end).await;
    assert_eq!(got.len(), 1);
    let missing: Vec<_> = expected.iter().filter(|x| !got[0].1.contains(x)).collect();
    let extra: Vec<_> = got[0].1.iter().filter(|x| !expected.contains(x)).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && got[0].1.len() == expected.len(),
        "blocks + head must hold every sample once: {} missing {missing:?}, extra {extra:?}, {} vs {} samples; log:\n{}",
        missing.len(),
        got[0].1.len(),
        expected.len(),
        s.log()
    );
    s.kill9();
    s.restart().await;
    let got = s.raw_samples("backfilled", "3h", end).await;
    assert_eq!(got[0].1, expected, "after kill -9");
}

/// A process replaying a long WAL answers `/health` at once and `/ready`
/// (503, saying how far the replay got) until the replay is done; then the
/// replayed samples are there.
#[tokio::test]
async fn long_wal_replay_answers_health_at_once_and_ready_after() {
    use strata_ingester::walrec;
    use strata_model::{Labels, Sample};
    let dir = tempfile::tempdir().unwrap();
    // A WAL of 20,000 series x 240 samples, written as the ingester writes it.
    let t0 = now_ms() - 3_600_000;
    let wal_dir = dir.path().join("tsdb/wal");
    let (mut wal, _) =
        strata_wal::Wal::open(&wal_dir, strata_wal::WalOptions::default(), |_| {}).unwrap();
    let mut buf = Vec::new();
    for chunk in 0..20u64 {
        let labels: Vec<Labels> = (0..1000)
            .map(|i| {
                let id = (chunk * 1000 + i).to_string();
                Labels::from_pairs([("__name__", "replayed"), ("id", id.as_str())])
            })
            .collect();
        buf.clear();
        walrec::encode_series(
            &mut buf,
            "anonymous",
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (chunk * 1000 + i as u64 + 1, l)),
        );
        wal.append(&buf).unwrap();
        let samples: Vec<Sample> = (0..240)
            .map(|k| Sample {
                t: t0 + k * 15_000,
                v: k as f64,
            })
            .collect();
        buf.clear();
        walrec::encode_samples(
            &mut buf,
            (0..1000u32).map(|i| (chunk * 1000 + u64::from(i) + 1, samples.as_slice())),
        );
        wal.append(&buf).unwrap();
    }
    drop(wal);
    let mut s = Strata::prepare(dir.path(), &[]);
    s.launch();
    // /health answers while /ready says the replay is under way.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (mut healthy_while_replaying, mut phases) = (false, Vec::new());
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "never ready; log:\n{}",
            s.log()
        );
        let health = s
            .client
            .get(s.url("/health"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        let ready = match s.client.get(s.url("/ready")).send().await {
            Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap_or_default())),
            Err(_) => None,
        };
        match (health, ready) {
            (Ok(200), Some((200, _))) => break,
            (Ok(200), Some((503, text))) => {
                if text.contains("replaying the metrics WAL") {
                    healthy_while_replaying = true;
                }
                if phases.last() != Some(&text) {
                    phases.push(text);
                }
            }
            _ => {} // the port is not bound yet
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        healthy_while_replaying,
        "no /ready answer during the replay; saw {phases:?}"
    );
    assert!(
        phases.iter().all(|p| p.starts_with("not ready: ")),
        "{phases:?}"
    );
    assert_eq!(
        s.self_metric("strata_ingester_wal_replay_progress_ratio")
            .await,
        2.0,
        "metrics and logs WALs at 1 each"
    );
    let got = s.query("count(replayed)", t0 + 3_000_000).await;
    assert_eq!(got["result"][0]["value"][1], "20000", "{got}");
}

//! The compactor in a real process: hours of backfilled samples are cut into
//! 10-minute blocks, merged into 1-hour blocks, and every query answer stays
//! exactly what was pushed; each merged block is smaller than its sources.
//! The compactor killed with SIGKILL at each step of a merge finishes the
//! job after a restart without losing or duplicating a sample.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::common::{Strata, now_ms, series};

/// 8 series, a sample every 15 s from the hour that began 3-4 hours ago,
/// pushed in order: at least two whole hours ended over 10 minutes ago,
/// whatever the time of day (a start 3 h back to the minute leaves only
/// one in the first 10 minutes of an hour).
struct Backfill {
    now: i64,
    start: i64,
    want: Vec<(String, Vec<(i64, f64)>)>,
}

impl Backfill {
    async fn push(s: &Strata) -> Backfill {
        let now = now_ms() / 15_000 * 15_000;
        let start = (now - 3 * 3600 * 1000) / 3_600_000 * 3_600_000;
        let times: Vec<i64> = (0..)
            .map(|i| start + i * 15_000)
            .take_while(|t| *t <= now)
            .collect();
        for chunk in times.chunks(60) {
            let batch: Vec<_> = (0..8)
                .map(|k| {
                    let pts: Vec<(i64, f64)> =
                        chunk.iter().map(|t| (*t, (*t / 1000 + k) as f64)).collect();
                    series(&[("__name__", "m"), ("k", &k.to_string())], &pts)
                })
                .collect();
            let (st, body) = s.push(batch, None).await;
            assert_eq!(st, 200, "{body}");
        }
        let want = (0..8)
            .map(|k| {
                (
                    k.to_string(),
                    times.iter().map(|t| (*t, (*t / 1000 + k) as f64)).collect(),
                )
            })
            .collect();
        Backfill { now, start, want }
    }

    /// Queries every sample back: exactly what was pushed.
    async fn check(&self, s: &Strata) {
        let got = s.raw_samples("m", "4h", self.now).await;
        assert_eq!(got.len(), 8);
        for (labels, pts) in got {
            let k = labels["k"].as_str().unwrap().to_string();
            let w = &self.want.iter().find(|(wk, _)| *wk == k).unwrap().1;
            assert_eq!(&pts, w, "series k={k}");
        }
    }
}

/// Metas of the tenant's metric blocks with meta.json; `live`: only those
/// without a deletion mark, as the compactor sees them.
fn metas(dir: &Path, live: bool) -> Vec<Json> {
    let Ok(dirs) = std::fs::read_dir(dir.join("blocks/anonymous/metrics")) else {
        return Vec::new(); // no block cut yet
    };
    dirs.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !live || !p.join("deletion-mark.json").exists())
        .filter_map(|p| std::fs::read_to_string(p.join("meta.json")).ok())
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect()
}

/// Live blocks lying within [from, to).
fn live_within(dir: &Path, from: i64, to: i64) -> Vec<Json> {
    metas(dir, true)
        .into_iter()
        .filter(|m| m["minTime"].as_i64().unwrap() >= from && m["maxTime"].as_i64().unwrap() <= to)
        .collect()
}

#[tokio::test]
async fn merged_blocks_answer_exactly_and_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(
        dir.path(),
        &[
            "-blocks-storage.tsdb.block-ranges-period=10m",
            "-blocks-storage.tsdb.head-compaction-interval=200ms",
            "-compactor.block-ranges=10m,1h",
            "-compactor.compaction-interval=300ms",
        ],
    )
    .await;
    let data = Backfill::push(&s).await;
    data.check(&s).await;
    // The two whole hours that ended at least 10 minutes ago each become one
    // block of all six 10-minute blocks (a window merged while its last block
    // was still being cut is merged again with it on a later pass).
    let full_hours = |metas: &[Json]| -> Vec<Json> {
        metas
            .iter()
            .filter(|m| m["compaction"]["level"].as_u64() >= Some(2))
            .filter(|m| m["stats"]["numSamples"].as_u64() == Some(8 * 240))
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let merged = loop {
        let merged = full_hours(&metas(dir.path(), true));
        if merged.len() >= 2 {
            break merged;
        }
        assert!(
            Instant::now() < deadline,
            "no complete hourly blocks: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Queries now read the merged blocks (sources stay until the deletion delay).
    data.check(&s).await;
    let all = metas(dir.path(), false);
    for m in &merged {
        let sources: Vec<&str> = m["compaction"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(sources.len(), 6, "{m}");
        // The original 10-minute blocks (level 1) it was built from.
        let source_bytes: u64 = all
            .iter()
            .filter(|x| x["compaction"]["level"].as_u64() == Some(1))
            .filter(|x| sources.contains(&x["ulid"].as_str().unwrap()))
            .map(|x| x["stats"]["numBytes"].as_u64().unwrap())
            .sum();
        let bytes = m["stats"]["numBytes"].as_u64().unwrap();
        assert!(
            bytes < source_bytes,
            "merged {bytes} vs sources {source_bytes}"
        );
    }
}

/// Pushes the backfill with compaction idle, restarts with `point` armed
/// so that the compactor kills itself there on its first merge, then
/// restarts it clean: the two whole hours end up as exactly one live block
/// each holding every sample once, and queries answer exactly what was
/// pushed at every stage.
async fn killed_at(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "-blocks-storage.tsdb.block-ranges-period=10m",
        "-blocks-storage.tsdb.head-compaction-interval=200ms",
        "-compactor.block-ranges=10m,1h",
        "-compactor.cleanup-interval=300ms",
        "-compactor.partial-block-deletion-delay=1s",
    ];
    // First the 10-minute blocks, without compaction (its first pass runs
    // at start-up, before there is anything to merge).
    let mut args = common.to_vec();
    args.push("-compactor.compaction-interval=1h");
    let mut s = Strata::start(dir.path(), &args).await;
    let data = Backfill::push(&s).await;
    data.check(&s).await;
    let (first, second) = (data.start, data.start + 2 * 3_600_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while live_within(dir.path(), first, second)
        .iter()
        .map(|m| m["stats"]["numSamples"].as_u64().unwrap())
        .sum::<u64>()
        < 8 * 480
    {
        assert!(Instant::now() < deadline, "blocks not cut: {}", s.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sources = live_within(dir.path(), first, second).len();
    assert!(sources >= 12, "{sources} blocks in two hours");

    // Compaction on, crash armed.
    s.kill9();
    s.extra_args = common.iter().map(|a| a.to_string()).collect();
    s.extra_args
        .push("-compactor.compaction-interval=300ms".to_string());
    s.env = vec![("STRATA_CRASH_AT".into(), point.into())];
    s.launch();
    let status = s
        .wait_exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("never reached {point}: {}", s.log()));
    assert_eq!(status.signal(), Some(9), "{status}: {}", s.log());
    assert!(s.log().contains("crash point reached"), "{}", s.log());

    // Restarted clean: it finishes, and nothing is lost or doubled.
    s.env.clear();
    s.restart().await;
    data.check(&s).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hours: Vec<Vec<Json>> = [first, first + 3_600_000]
            .iter()
            .map(|h| live_within(dir.path(), *h, h + 3_600_000))
            .collect();
        let done = hours.iter().all(|blocks| {
            blocks.len() == 1 && blocks[0]["stats"]["numSamples"].as_u64() == Some(8 * 240)
        });
        // A partial upload (no meta.json) is removed after its delay.
        let partial = std::fs::read_dir(dir.path().join("blocks/anonymous/metrics"))
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.path().join("chunks.parquet").exists() && !e.path().join("meta.json").exists()
            });
        if done && !partial {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the crash at {point}: hours {hours:?}, partial upload left: {partial}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    data.check(&s).await;
}

#[tokio::test]
async fn compactor_killed_mid_upload_finishes_after_restart() {
    killed_at("compactor.mid-upload").await;
}

#[tokio::test]
async fn compactor_killed_after_upload_finishes_after_restart() {
    killed_at("compactor.after-upload").await;
}

#[tokio::test]
async fn compactor_killed_between_marks_finishes_after_restart() {
    killed_at("compactor.after-first-mark").await;
}

#[tokio::test]
async fn compactor_killed_after_marking_finishes_after_restart() {
    killed_at("compactor.after-marks").await;
}

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
    metas_of(dir, "metrics", live)
}

/// Metas of the tenant's blocks of `signal` (`metrics` or `logs`).
fn metas_of(dir: &Path, signal: &str, live: bool) -> Vec<Json> {
    let Ok(dirs) = std::fs::read_dir(dir.join("blocks/anonymous").join(signal)) else {
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
    let s = start_compacting(dir.path()).await;
    let data = Backfill::push(&s).await;
    data.check(&s).await;
    // The two whole hours that ended at least 10 minutes ago each become one
    // block of all six 10-minute blocks (a window merged while its last block
    // was still being cut is merged again with it on a later pass).
    let merged = wait_full_hours(&s, dir.path(), "metrics", 8 * 240).await;
    // Queries now read the merged blocks (sources stay until the deletion delay).
    data.check(&s).await;
    assert_smaller_than_sources(dir.path(), "metrics", &merged);
}

/// A single process cutting 10-minute blocks and merging them hourly.
async fn start_compacting(dir: &Path) -> Strata {
    Strata::start(
        dir,
        &[
            "-blocks-storage.tsdb.block-ranges-period=10m",
            "-blocks-storage.tsdb.head-compaction-interval=200ms",
            "-compactor.block-ranges=10m,1h",
            "-compactor.compaction-interval=300ms",
        ],
    )
    .await
}

/// Waits for at least two live merged blocks of `signal` holding a whole
/// hour (`samples` samples or entries); returns them.
async fn wait_full_hours(s: &Strata, dir: &Path, signal: &str, samples: u64) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let merged: Vec<Json> = metas_of(dir, signal, true)
            .into_iter()
            .filter(|m| m["compaction"]["level"].as_u64() >= Some(2))
            .filter(|m| m["stats"]["numSamples"].as_u64() == Some(samples))
            .collect();
        if merged.len() >= 2 {
            return merged;
        }
        assert!(
            Instant::now() < deadline,
            "no complete hourly {signal} blocks: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each merged block was built from six original 10-minute blocks and is
/// smaller than they were together.
fn assert_smaller_than_sources(dir: &Path, signal: &str, merged: &[Json]) {
    let all = metas_of(dir, signal, false);
    for m in merged {
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

/// Hours of backfilled log lines (three streams, a line every 30 s, and
/// each line's duplicate pushed again as a retry would) cut into
/// 10-minute log blocks merge into hourly blocks: LogQL returns every line
/// exactly once before and after, and each merged block is smaller than
/// its sources.
#[tokio::test]
async fn merged_log_blocks_answer_exactly_and_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_compacting(dir.path()).await;
    let now = now_ms() / 30_000 * 30_000;
    let start = (now - 3 * 3_600_000) / 3_600_000 * 3_600_000;
    let times: Vec<i64> = (0..)
        .map(|i| start + i * 30_000)
        .take_while(|t| *t <= now)
        .collect();
    let apps = ["api", "db", "cache"];
    let line = |app: &str, t: i64| format!("level=info app={app} msg=\"request {t}\" took=12ms");
    for chunk in times.chunks(60) {
        let streams: Vec<Json> = apps
            .iter()
            .map(|app| {
                let values: Vec<Json> = chunk
                    .iter()
                    .map(|t| serde_json::json!([(t * 1_000_000).to_string(), line(app, *t)]))
                    .collect();
                serde_json::json!({"stream": {"job": "backfill", "app": app}, "values": values})
            })
            .collect();
        let body = serde_json::json!({ "streams": streams });
        // Pushed twice: the second copy must not show up anywhere.
        for _ in 0..2 {
            let r = s
                .client
                .post(s.url("/loki/api/v1/push"))
                .json(&body)
                .send()
                .await
                .expect("push");
            assert_eq!(
                r.status().as_u16(),
                204,
                "{}",
                r.text().await.unwrap_or_default()
            );
        }
    }
    let mut want: Vec<(String, i64, String)> = apps
        .iter()
        .flat_map(|app| {
            times
                .iter()
                .map(move |t| (app.to_string(), *t * 1_000_000, line(app, *t)))
        })
        .collect();
    want.sort();
    let lines = || async {
        let (status, j) = s
            .get_json(
                "/loki/api/v1/query_range",
                &[
                    ("query", "{job=\"backfill\"}".to_string()),
                    ("start", (start * 1_000_000).to_string()),
                    ("end", ((now + 1) * 1_000_000).to_string()),
                    ("limit", "5000".to_string()),
                    ("direction", "forward".to_string()),
                ],
                None,
            )
            .await;
        assert_eq!(status, 200, "{j}");
        let mut got: Vec<(String, i64, String)> = Vec::new();
        for stream in j["data"]["result"].as_array().expect("result") {
            let app = stream["stream"]["app"].as_str().expect("app").to_string();
            for v in stream["values"].as_array().expect("values") {
                let ts: i64 = v[0].as_str().expect("ts").parse().expect("ts number");
                got.push((app.clone(), ts, v[1].as_str().expect("line").to_string()));
            }
        }
        got.sort();
        got
    };
    assert!(lines().await == want, "lines differ before compaction");

    let merged = wait_full_hours(&s, dir.path(), "logs", 3 * 120).await;
    assert!(lines().await == want, "lines differ after compaction");
    assert_smaller_than_sources(dir.path(), "logs", &merged);
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

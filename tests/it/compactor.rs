//! The compactor in a real process: hours of backfilled samples are cut into
//! 10-minute blocks, merged into 1-hour blocks, and every query answer stays
//! exactly what was pushed; each merged block is smaller than its sources.

use std::time::Duration;

use serde_json::Value as Json;

use crate::common::{Strata, now_ms, series};

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
    // 8 series, a sample every 15 s from the hour that began 3-4 hours ago,
    // pushed in order: at least two whole hours ended over 10 minutes ago,
    // whatever the time of day (a start 3 h back to the minute leaves only
    // one in the first 10 minutes of an hour).
    let now = now_ms() / 15_000 * 15_000;
    let start = (now - 3 * 3600 * 1000) / 3_600_000 * 3_600_000;
    let times: Vec<i64> = (0..)
        .map(|i| start + i * 15_000)
        .take_while(|t| *t <= now)
        .collect();
    let mut want: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
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
    for k in 0..8 {
        want.push((
            k.to_string(),
            times.iter().map(|t| (*t, (*t / 1000 + k) as f64)).collect(),
        ));
    }
    let check = async || {
        let got = s.raw_samples("m", "4h", now).await;
        assert_eq!(got.len(), 8);
        for (labels, pts) in got {
            let k = labels["k"].as_str().unwrap().to_string();
            let w = &want.iter().find(|(wk, _)| *wk == k).unwrap().1;
            assert_eq!(&pts, w, "series k={k}");
        }
    };
    check().await;
    // Two whole hours end at least 10 minutes ago: 6 blocks each are merged.
    // Blocks with meta.json and no deletion mark, as the compactor sees them.
    let live_metas = || -> Vec<Json> {
        let Ok(dirs) = std::fs::read_dir(dir.path().join("blocks/anonymous/metrics")) else {
            return Vec::new(); // no block cut yet
        };
        dirs.filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.join("deletion-mark.json").exists())
            .filter_map(|p| std::fs::read_to_string(p.join("meta.json")).ok())
            .map(|t| serde_json::from_str(&t).unwrap())
            .collect()
    };
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
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let merged = loop {
        let merged = full_hours(&live_metas());
        if merged.len() >= 2 {
            break merged;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no complete hourly blocks: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Queries now read the merged blocks (sources stay until the deletion delay).
    check().await;
    let all: Vec<Json> = std::fs::read_dir(dir.path().join("blocks/anonymous/metrics"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("meta.json")).ok())
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect();
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

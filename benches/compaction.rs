//! Compaction benchmark: 24 hours of a node-exporter-like series mix cut
//! into 2h blocks, each written three times (the RF 3 copies the ingesters
//! upload), compacted through 2h -> 12h -> 24h. Reports compaction
//! throughput (input samples per second; the compactor runs on one core),
//! bytes per sample of the final block against Prometheus 2.42's compacted
//! TSDB blocks of the same data (promtool writes the 2h blocks, a real
//! Prometheus compacts them), and checks that the result holds every
//! sample exactly once.
//!
//! `cargo bench -p strata-compactor --bench compaction` runs the full size
//! (2,000 series); under `cargo test` it runs a small smoke size without
//! Prometheus.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use strata_compactor::{Compactor, CompactorConfig};
use strata_limits::{Limits, Overrides};
use strata_storage::{BlockReader, Signal, encode_block, upload_block};

#[path = "common/mod.rs"]
mod common;
use common::{dir_size, generate, promtool_blocks, realistic};

const H: i64 = 3_600_000;

/// A `/proc/self/status` field in KiB (Linux only).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak resident size to the current one; the current size.
fn reset_peak_rss() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_kib("VmRSS:")
}

/// Bytes of the TSDB block directories (ULID names) under `dir`.
fn block_dirs_bytes(dir: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().join("meta.json").exists() {
            n += 1;
            bytes += dir_size(&e.path());
        }
    }
    (n, bytes)
}

/// Runs Prometheus on the promtool blocks in `dir` until its compactor has
/// merged them (the block count stops changing after falling), returning
/// (blocks, bytes) after compaction.
fn prometheus_compacted(dir: &Path) -> Option<(usize, u64)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").ok()?;
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let (initial, _) = block_dirs_bytes(dir);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = (initial, 0);
    let mut stable = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(5));
        let now = block_dirs_bytes(dir);
        if now.0 < initial && now == last {
            stable += 1;
            if stable >= 6 {
                break;
            }
        } else {
            stable = 0;
        }
        last = now;
    }
    let _ = child.kill();
    let _ = child.wait();
    (last.0 < initial).then_some(last)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let interval = 15_000;
    let samples = (24 * H / interval) as usize;
    let start: i64 = 1_700_006_400_000 / (24 * H) * (24 * H) + 24 * H; // a day boundary
    // `-- synthetic` or `-- realistic` runs one data set.
    let only = |name: &str| {
        let picked: Vec<String> = std::env::args()
            .filter(|a| a == "synthetic" || a == "realistic")
            .collect();
        picked.is_empty() || picked.iter().any(|a| a == name)
    };
    if only("synthetic") {
        let synthetic = generate(if full { 2000 } else { 20 }, start, samples, interval);
        run("synthetic node-exporter-like mix", synthetic, start, full).await;
    }
    if only("realistic") {
        // 3 nodes' node_exporter, kube-state-metrics and application pods.
        let mut cluster =
            realistic::generate_cluster(if full { 3 } else { 1 }, start, samples, interval);
        if !full {
            cluster.truncate(60);
        }
        run("realistic Kubernetes cluster mix", cluster, start, full).await;
    }
}

/// Uploads `data` (24h from `start`) as RF 3 copies of 2h blocks, compacts
/// them to one 24h block, checks it and reports.
async fn run(
    name: &str,
    data: Vec<(strata_model::Labels, Vec<strata_model::Sample>)>,
    start: i64,
    full: bool,
) {
    let series = data.len();
    let unique = data.iter().map(|(_, s)| s.len() as u64).sum::<u64>();

    // The ingesters' uploads: every 2h window three times.
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn ObjectStore> = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store"),
    );
    let mut input_bytes = 0u64;
    for w in 0..12 {
        let (lo, hi) = (start + w * 2 * H, start + (w + 1) * 2 * H);
        let window: Vec<_> = data
            .iter()
            .map(|(l, s)| {
                let part: Vec<_> = s
                    .iter()
                    .filter(|x| x.t >= lo && x.t < hi)
                    .copied()
                    .collect();
                (l.clone(), part)
            })
            .collect();
        for _replica in 0..3 {
            let b = encode_block(window.clone(), lo, hi).expect("encode");
            input_bytes += (b.series_parquet.len() + b.chunks_parquet.len()) as u64;
            upload_block(store.as_ref(), "bench", &b)
                .await
                .expect("upload");
        }
    }

    let reader = Arc::new(BlockReader::new(store.clone()));
    let compactor = Compactor::new(
        CompactorConfig {
            block_ranges: "2h,12h,24h".into(),
            ..CompactorConfig::default()
        },
        store.clone(),
        reader.clone(),
        Arc::new(Overrides::new(Limits::default())),
    );
    let now = start + 48 * H;
    // Peak memory of the compaction alone: reset the high-water mark
    // (Linux), remember the resident size before.
    let baseline = reset_peak_rss();
    let started = Instant::now();
    let mut passes = 0;
    while compactor.compact(now).await.expect("compact") > 0 {
        passes += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");

    // One live block left, holding each sample once.
    let live: Vec<_> = reader
        .list_tier(strata_storage::Tier::Hot, Signal::Metrics, "bench")
        .await
        .expect("list")
        .into_iter()
        .filter(|m| {
            !dir.path()
                .join(format!("bench/metrics/{}/deletion-mark.json", m.ulid))
                .exists()
        })
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let out = &live[0];
    assert_eq!(out.stats.num_samples, unique);
    assert_eq!((out.min_time, out.max_time), (start, start + 24 * H));
    let out_bytes = out.stats.num_bytes;
    // Samples read per pass: 3 copies at 2h, then 1 copy at 12h and at 24h.
    let processed = 5 * unique;

    println!(
        "compaction, {name}: {series} series x 24h at 15s ({unique} samples), 12 x 2h blocks x RF 3 ({input_bytes} bytes)"
    );
    println!(
        "  {passes} passes in {secs:.2} s: {:.0} samples/s read and merged (one core)",
        processed as f64 / secs
    );
    if let (Some(base), Some(peak)) = (baseline, peak) {
        println!(
            "  peak resident memory during compaction: {:.1} MiB above the {:.1} MiB before it",
            peak.saturating_sub(base) as f64 / 1024.0,
            base as f64 / 1024.0
        );
    }
    println!(
        "  final 24h block: {out_bytes} bytes = {:.3} B/sample ({:.1}x smaller than the RF 3 2h blocks)",
        out_bytes as f64 / unique as f64,
        input_bytes as f64 / out_bytes as f64
    );
    if full {
        let prom = tempfile::tempdir().expect("temp dir");
        let compacted =
            promtool_blocks(&data, prom.path()).and_then(|()| prometheus_compacted(prom.path()));
        match compacted {
            Some((blocks, bytes)) => println!(
                "  prometheus 2.42 after its compaction: {blocks} blocks, {bytes} bytes = {:.3} B/sample; strata/prometheus = {:.2}",
                bytes as f64 / unique as f64,
                out_bytes as f64 / bytes as f64
            ),
            None => println!("  prometheus: promtool/prometheus not available or did not compact"),
        }
    }
}

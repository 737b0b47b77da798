//! Storage benchmark: bytes per sample of Strata's Parquet blocks against
//! Prometheus TSDB blocks for the same data, and the chunk codec choice
//! (Gorilla XOR vs pcodec) on the same chunks.
//!
//! `cargo bench -p strata-storage --bench block_size` runs the full size
//! (2,000 series, 2h at 15s). Under `cargo test` it runs a small smoke size.
//! Prometheus's block is produced by `promtool tsdb create-blocks-from
//! openmetrics` (Debian package `prometheus`); without promtool that column
//! is reported as missing.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use strata_model::{Labels, Sample};
use strata_storage::block::{SAMPLES_PER_CHUNK, encode_block};
use strata_storage::chunk::{XorChunk, decode_chunk};

/// Deterministic xorshift generator: the same data on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A node-exporter-like mix: counters (integer and float), gauges (random
/// walks, memory-like integers), and near-constant series, scraped every
/// `interval_ms` with a few ms of jitter.
fn generate(
    series: usize,
    start: i64,
    samples: usize,
    interval_ms: i64,
) -> Vec<(Labels, Vec<Sample>)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(series);
    for i in 0..series {
        let kind = i % 10;
        let (name, job) = match kind {
            0..=2 => ("node_network_receive_bytes_total", "node"),
            3 => ("node_cpu_seconds_total", "node"),
            4..=5 => ("node_memory_active_bytes", "node"),
            6..=7 => ("node_load1", "node"),
            _ => ("up", "kubernetes-pods"),
        };
        let instance = format!("10.1.{}.{}:9100", i / 200, i % 200);
        let series_id = format!("{i}");
        let labels = Labels::from_pairs([
            ("__name__", name),
            ("job", job),
            ("instance", instance.as_str()),
            ("cpu", series_id.as_str()),
        ]);
        let mut v = match kind {
            4..=5 => 4.0e9 + rng.unit() * 1e9,
            6..=7 => rng.unit() * 4.0,
            8..=9 => 1.0,
            _ => (rng.next() % 1_000_000) as f64,
        };
        let mut s = Vec::with_capacity(samples);
        for k in 0..samples {
            let jitter = (rng.next() % 5) as i64;
            let t = start + k as i64 * interval_ms + jitter;
            v = match kind {
                0..=2 => v + (rng.next() % 20_000) as f64,
                3 => ((v + 15.0 * rng.unit()) * 100.0).round() / 100.0,
                4..=5 => v + ((rng.next() % 64) as f64 - 32.0) * 4096.0,
                6..=7 => ((v + rng.unit() - 0.5).abs() * 100.0).round() / 100.0,
                _ => v,
            };
            s.push(Sample { t, v });
        }
        out.push((labels, s));
    }
    out
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                total += dir_size(&path);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

/// Size of the TSDB block promtool builds from the same data, if promtool runs.
fn prometheus_block_bytes(data: &[(Labels, Vec<Sample>)]) -> Option<u64> {
    let dir = tempfile::tempdir().ok()?;
    let mut text = String::new();
    let mut names: Vec<&str> = data.iter().map(|(l, _)| l.metric_name()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let _ = writeln!(text, "# TYPE {name} gauge");
        for (labels, samples) in data.iter().filter(|(l, _)| l.metric_name() == name) {
            let mut ls = String::new();
            for l in labels.iter().filter(|l| l.name != "__name__") {
                if !ls.is_empty() {
                    ls.push(',');
                }
                let _ = write!(ls, "{}=\"{}\"", l.name, l.value);
            }
            for s in samples {
                let _ = writeln!(
                    text,
                    "{name}{{{ls}}} {} {}.{:03}",
                    s.v,
                    s.t / 1000,
                    s.t % 1000
                );
            }
        }
    }
    text.push_str("# EOF\n");
    let input = dir.path().join("data.om");
    std::fs::write(&input, text).ok()?;
    let out = dir.path().join("tsdb");
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out)
        .output()
        .ok()?;
    if !status.status.success() {
        eprintln!(
            "promtool failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        return None;
    }
    Some(dir_size(&out))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (series, samples) = if full { (2000, 480) } else { (50, 480) };
    let interval = 15_000;
    // Start on a 2h boundary so promtool writes one block.
    let start: i64 = 1_700_006_400_000; // a multiple of 2h
    let data = generate(series, start, samples, interval);
    let total_samples = (series * samples) as f64;

    // Chunk payloads only: Gorilla vs pcodec on the same chunking.
    let (mut gorilla, mut pco_bytes) = (0usize, 0usize);
    let (mut gorilla_dec, mut pco_dec) = (0f64, 0f64);
    for (_, s) in &data {
        for part in s.chunks(SAMPLES_PER_CHUNK) {
            let g = XorChunk::from_samples(part).to_bytes();
            gorilla += g.len();
            let t0 = Instant::now();
            let mut out = Vec::with_capacity(part.len());
            decode_chunk(&g, &mut out).expect("decode own chunk");
            gorilla_dec += t0.elapsed().as_secs_f64();

            let ts: Vec<i64> = part.iter().map(|x| x.t).collect();
            let vs: Vec<f64> = part.iter().map(|x| x.v).collect();
            let cfg = pco::ChunkConfig::default();
            let ct = pco::standalone::simple_compress(&ts, &cfg).expect("pco timestamps");
            let cv = pco::standalone::simple_compress(&vs, &cfg).expect("pco values");
            pco_bytes += ct.len() + cv.len();
            let t0 = Instant::now();
            let dt: Vec<i64> = pco::standalone::simple_decompress(&ct).expect("pco decode");
            let dv: Vec<f64> = pco::standalone::simple_decompress(&cv).expect("pco decode");
            pco_dec += t0.elapsed().as_secs_f64();
            assert_eq!(dt.len() + dv.len(), 2 * part.len());
        }
    }
    let started = Instant::now();
    let block = encode_block(data.clone(), start, start + 7_200_000).expect("encode block");
    let encode_s = started.elapsed().as_secs_f64();
    let strata_bytes = block.series_parquet.len() + block.chunks_parquet.len();
    let prom = prometheus_block_bytes(&data);

    println!("block_size: {series} series x {samples} samples at 15s ({total_samples} samples)");
    println!(
        "  chunk payload  gorilla: {:.3} B/sample ({:.1} Msamples/s decode)   pcodec: {:.3} B/sample ({:.1} Msamples/s decode)",
        gorilla as f64 / total_samples,
        total_samples / gorilla_dec / 1e6,
        pco_bytes as f64 / total_samples,
        total_samples / pco_dec / 1e6,
    );
    println!(
        "  strata block (pcodec chunks; series.parquet + chunks.parquet): {strata_bytes} bytes = {:.3} B/sample, encoded in {:.0} ms",
        strata_bytes as f64 / total_samples,
        encode_s * 1000.0
    );
    match prom {
        Some(p) => println!(
            "  prometheus tsdb block (promtool): {p} bytes = {:.3} B/sample; strata/prometheus = {:.2}",
            p as f64 / total_samples,
            strata_bytes as f64 / p as f64
        ),
        None => println!("  prometheus tsdb block: promtool not available"),
    }
    assert!(strata_bytes > 0);
}

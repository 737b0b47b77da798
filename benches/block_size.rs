//! Storage benchmark: bytes per sample of Strata's Parquet blocks against
//! Prometheus TSDB blocks for the same data, and the chunk codec choice
//! (Gorilla XOR vs pcodec) on the same chunks.
//!
//! `cargo bench -p strata-storage --bench block_size` runs the full size
//! (2,000 series, 2h at 15s). Under `cargo test` it runs a small smoke size.
//! Prometheus's block is produced by `promtool tsdb create-blocks-from
//! openmetrics` (Debian package `prometheus`); without promtool that column
//! is reported as missing.

use std::time::Instant;

use strata_storage::block::{MAX_SAMPLES_PER_CHUNK, SAMPLES_PER_CHUNK, encode_block};
use strata_storage::chunk::{XorChunk, decode_chunk};

#[path = "common/mod.rs"]
mod common;
use common::{dir_size, generate, promtool_blocks};

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
    let prom_dir = tempfile::tempdir().expect("temp dir");
    let prom = promtool_blocks(&data, prom_dir.path()).map(|()| dir_size(prom_dir.path()));

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
    println!(
        "  of which series.parquet: {} bytes = {:.1} B/series; chunks.parquet: {} bytes = {:.3} B/sample",
        block.series_parquet.len(),
        block.series_parquet.len() as f64 / series as f64,
        block.chunks_parquet.len(),
        block.chunks_parquet.len() as f64 / total_samples,
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
    if full {
        realistic_breakdown(start, interval);
    }
}

/// Where a realistic day's chunk bytes go: pcodec timestamps and values
/// per metric family (960-sample chunks), largest first.
fn realistic_breakdown(start: i64, interval: i64) {
    let samples = (86_400_000 / interval) as usize;
    let data = common::realistic::generate_cluster(3, start, samples, interval);
    let total: usize = data.iter().map(|(_, s)| s.len()).sum();
    let mut families: std::collections::BTreeMap<String, (usize, usize, usize)> =
        Default::default();
    let (mut ts_all, mut vs_all) = (0usize, 0usize);
    for (labels, s) in &data {
        let e = families
            .entry(labels.metric_name().to_string())
            .or_default();
        for part in s.chunks(SAMPLES_PER_CHUNK) {
            let ts: Vec<i64> = part.iter().map(|x| x.t).collect();
            let vs: Vec<f64> = part.iter().map(|x| x.v).collect();
            let cfg = pco::ChunkConfig::default();
            let ct = pco::standalone::simple_compress(&ts, &cfg)
                .expect("pco")
                .len();
            let cv = pco::standalone::simple_compress(&vs, &cfg)
                .expect("pco")
                .len();
            e.0 += part.len();
            e.1 += ct;
            e.2 += cv;
            ts_all += ct;
            vs_all += cv;
        }
    }
    println!(
        "realistic day (benches/common/realistic.rs): {} series, {total} samples: timestamps {:.3} B/sample, values {:.3} B/sample",
        data.len(),
        ts_all as f64 / total as f64,
        vs_all as f64 / total as f64
    );
    // The chunk length of 2h blocks next to that of compacted (>= 12h) ones.
    for chunk in [SAMPLES_PER_CHUNK, MAX_SAMPLES_PER_CHUNK] {
        let (mut t_b, mut v_b) = (0usize, 0usize);
        for (_, s) in &data {
            for part in s.chunks(chunk) {
                let ts: Vec<i64> = part.iter().map(|x| x.t).collect();
                let vs: Vec<f64> = part.iter().map(|x| x.v).collect();
                let cfg = pco::ChunkConfig::default();
                t_b += pco::standalone::simple_compress(&ts, &cfg)
                    .expect("pco")
                    .len();
                v_b += pco::standalone::simple_compress(&vs, &cfg)
                    .expect("pco")
                    .len();
            }
        }
        println!(
            "  in chunks of {chunk} samples: timestamps {:.3}, values {:.3} B/sample (pcodec, before the block's zstd)",
            t_b as f64 / total as f64,
            v_b as f64 / total as f64
        );
    }
    let mut rows: Vec<_> = families.into_iter().collect();
    rows.sort_by_key(|(_, (_, t, v))| std::cmp::Reverse(t + v));
    for (name, (n, t, v)) in rows.iter().take(25) {
        println!(
            "  {name:50} {:5.1}% of samples  ts {:.3}  values {:.3} B/sample  ({:.1}% of bytes)",
            100.0 * *n as f64 / total as f64,
            *t as f64 / *n as f64,
            *v as f64 / *n as f64,
            100.0 * (t + v) as f64 / (ts_all + vs_all) as f64
        );
    }
}

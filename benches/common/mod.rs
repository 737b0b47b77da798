//! Data shared by the storage benchmarks: a deterministic node-exporter-like
//! series mix, directory sizes, and Prometheus TSDB blocks of the same data
//! built by `promtool` (Debian package `prometheus`).

#![allow(dead_code)] // each benchmark uses part of it

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use strata_model::{Labels, Sample};

pub mod realistic;
pub mod realistic_logs;

/// Deterministic xorshift generator: the same data on every run.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
}

/// A node-exporter-like mix: counters (integer and float), gauges (random
/// walks, memory-like integers), and near-constant series, scraped every
/// `interval_ms` with a few ms of jitter.
pub fn generate(
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

pub fn dir_size(p: &Path) -> u64 {
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

/// Writes `data` as TSDB blocks into `out` with promtool (2h blocks);
/// `None` when promtool is missing or fails.
pub fn promtool_blocks(data: &[(Labels, Vec<Sample>)], out: &Path) -> Option<()> {
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
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(out)
        .output()
        .ok()?;
    if !status.status.success() {
        eprintln!(
            "promtool failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        return None;
    }
    Some(())
}

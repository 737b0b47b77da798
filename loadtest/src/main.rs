//! Remote-write load generator: drives a Prometheus remote-write endpoint
//! (Strata, or a Prometheus started with `--web.enable-remote-write-receiver`)
//! with a configurable series count, label count, scrape interval, churn and
//! concurrency, and reports accepted samples/s and push latency percentiles.
//!
//! Timestamps start 50 minutes in the past and advance one scrape interval
//! per round, so both Strata and Prometheus accept them without an
//! out-of-order window; the run stops after `--duration` or when simulated
//! time would pass "now + 5m".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Arg, Command};
use strata_loadtest::{
    arg, encoded_labels, one_sample_series, otlp_metrics, parse, remote_write_encoded,
    remote_write_v2,
};
use strata_proto::prometheus::Label;

struct Opts {
    url: String,
    tenant: Option<String>,
    series: usize,
    labels: usize,
    interval_ms: i64,
    duration: Duration,
    concurrency: usize,
    batch: usize,
    churn: f64,
    churn_every: u64,
    /// What to send: remote-write 1.0, 2.0 or OTLP metrics.
    protocol: Protocol,
}

/// The wire format of the pushes.
#[derive(Clone, Copy)]
enum Protocol {
    RemoteWrite1,
    RemoteWrite2,
    Otlp,
}

fn opts() -> Result<Opts, String> {
    let m = Command::new("loadtest")
        .about("Prometheus remote-write load generator")
        .arg(arg(
            "url",
            "http://127.0.0.1:9009/api/v1/push",
            "remote-write endpoint",
        ))
        .arg(
            Arg::new("tenant")
                .long("tenant")
                .help("X-Scope-OrgID header to send"),
        )
        .arg(arg("series", "10000", "active series"))
        .arg(arg("labels", "6", "labels per series besides __name__"))
        .arg(arg(
            "scrape-interval",
            "1s",
            "simulated time between samples of a series",
        ))
        .arg(arg("duration", "30s", "how long to send"))
        .arg(arg(
            "concurrency",
            "8",
            "parallel senders (remote-write shards)",
        ))
        .arg(arg(
            "batch",
            "2000",
            "samples per request (max_samples_per_send)",
        ))
        .arg(arg(
            "churn",
            "0",
            "fraction of series replaced at each churn round",
        ))
        .arg(arg("churn-every", "100", "rounds between churn events"))
        .arg(arg(
            "protocol",
            "1.0",
            "1.0 or 2.0 (remote write; 2.0 with its symbol table) or otlp (OTLP/HTTP metrics, protobuf, gzip)",
        ))
        .try_get_matches()
        .map_err(|e| e.to_string())?;
    let dur = |name: &str| -> Result<Duration, String> {
        let raw = m.get_one::<String>(name).map(String::as_str).unwrap_or("");
        humantime::parse_duration(raw).map_err(|e| format!("--{name}: {e}"))
    };
    Ok(Opts {
        url: parse(&m, "url")?,
        tenant: m.get_one::<String>("tenant").cloned(),
        series: parse(&m, "series")?,
        labels: parse(&m, "labels")?,
        interval_ms: dur("scrape-interval")?.as_millis() as i64,
        duration: dur("duration")?,
        concurrency: parse::<usize>(&m, "concurrency")?.max(1),
        batch: parse::<usize>(&m, "batch")?.max(1),
        churn: parse(&m, "churn")?,
        churn_every: parse::<u64>(&m, "churn-every")?.max(1),
        protocol: match parse::<String>(&m, "protocol")?.as_str() {
            "1.0" => Protocol::RemoteWrite1,
            "2.0" => Protocol::RemoteWrite2,
            "otlp" => Protocol::Otlp,
            other => return Err(format!("--protocol: 1.0, 2.0 or otlp, not {other}")),
        },
    })
}

/// Label sets of the series one sender owns, in sorted label order.
fn series_labels(id: usize, generation: u64, n_labels: usize) -> Vec<Label> {
    let mut labels = vec![Label {
        name: "__name__".into(),
        value: format!("loadtest_metric_{}", id % 50),
    }];
    let names = [
        "cluster",
        "instance",
        "job",
        "namespace",
        "pod",
        "region",
        "zone",
        "container",
    ];
    let mut extra: Vec<Label> = names
        .iter()
        .take(n_labels)
        .enumerate()
        .map(|(i, n)| Label {
            name: n.to_string(),
            value: match i {
                0 => format!("cluster-{}", id % 3),
                1 => format!("10.0.{}.{}:9100", id / 250 % 250, id % 250),
                2 => format!("job-{}", id % 20),
                4 => format!("pod-{id}-g{generation}"),
                _ => format!("{n}-{}", id % 7),
            },
        })
        .collect();
    extra.push(Label {
        name: "series".into(),
        value: id.to_string(),
    });
    extra.sort_by(|a, b| a.name.cmp(&b.name));
    labels.extend(extra);
    labels
}

struct Stats {
    accepted: AtomicU64,
    failed_requests: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = Arc::new(opts()?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .build()?;
    let stats = Arc::new(Stats {
        accepted: AtomicU64::new(0),
        failed_requests: AtomicU64::new(0),
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let t0 = now - 50 * 60 * 1000;
    let t_limit = now + 5 * 60 * 1000;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..o.concurrency {
        let (o, client, stats) = (o.clone(), client.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            let ids: Vec<usize> = (shard..o.series).step_by(o.concurrency).collect();
            let mut generation = vec![0u64; ids.len()];
            let mut labels: Vec<Vec<Label>> = ids
                .iter()
                .map(|&id| series_labels(id, 0, o.labels))
                .collect();
            let mut encoded: Vec<Vec<u8>> = labels.iter().map(|l| encoded_labels(l)).collect();
            let mut latencies: Vec<f64> = Vec::new();
            let mut round = 0u64;
            let mut value = 0f64;
            loop {
                let t = t0 + round as i64 * o.interval_ms;
                if start.elapsed() >= o.duration || t > t_limit {
                    break;
                }
                if o.churn > 0.0 && round > 0 && round.is_multiple_of(o.churn_every) {
                    let n = (ids.len() as f64 * o.churn) as usize;
                    for k in 0..n {
                        let i = (k + round as usize) % ids.len();
                        generation[i] += 1;
                        labels[i] = series_labels(ids[i], generation[i], o.labels);
                        encoded[i] = encoded_labels(&labels[i]);
                    }
                }
                value += 1.0;
                for (chunk, chunk_encoded) in labels.chunks(o.batch).zip(encoded.chunks(o.batch)) {
                    let series = || one_sample_series(chunk, t, value);
                    let tenant = o.tenant.as_deref();
                    let rb = match o.protocol {
                        Protocol::RemoteWrite1 => {
                            remote_write_encoded(&client, &o.url, tenant, chunk_encoded, t, value)?
                        }
                        Protocol::RemoteWrite2 => {
                            remote_write_v2(&client, &o.url, tenant, &series())?
                        }
                        Protocol::Otlp => otlp_metrics(&client, &o.url, tenant, &series())?,
                    };
                    let sent = Instant::now();
                    let resp = rb.send().await;
                    latencies.push(sent.elapsed().as_secs_f64());
                    match resp {
                        Ok(r) if r.status().is_success() => {
                            stats
                                .accepted
                                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            if stats.failed_requests.load(Ordering::Relaxed) <= 3 {
                                eprintln!(
                                    "push failed: {status}: {}",
                                    text.chars().take(300).collect::<String>()
                                );
                            }
                        }
                        Err(e) => {
                            stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                            eprintln!("push error: {e}");
                        }
                    }
                }
                round += 1;
            }
            Ok::<(Vec<f64>, u64), Box<dyn std::error::Error + Send + Sync>>((latencies, round))
        }));
    }
    let mut latencies = Vec::new();
    let mut rounds = 0;
    for t in tasks {
        let (l, r) = t.await?.map_err(|e| e.to_string())?;
        latencies.extend(l);
        rounds = rounds.max(r);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        latencies[((latencies.len() - 1) as f64 * p).round() as usize] * 1000.0
    };
    let accepted = stats.accepted.load(Ordering::Relaxed);
    println!(
        "url={} series={} concurrency={} batch={} rounds={} requests={} failed_requests={} accepted_samples={} elapsed_s={:.1} samples_per_s={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2}",
        o.url,
        o.series,
        o.concurrency,
        o.batch,
        rounds,
        latencies.len(),
        stats.failed_requests.load(Ordering::Relaxed),
        accepted,
        elapsed,
        accepted as f64 / elapsed,
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
    Ok(())
}

//! PromQL range-query latency, Strata against Prometheus on the same data.
//!
//! Backfills both remote-write endpoints with the same generated series
//! (counters by job/instance/code and a classic latency histogram per
//! instance, on 15s scrapes), then runs each benchmark query several times
//! against each server, alternating, and prints p50/p90 latency per query
//! and the Strata/Prometheus p50 ratio. Three windows: the most recent hour
//! (in both servers' in-memory heads), an older window that the servers
//! have persisted (Strata: Parquet blocks; Prometheus: TSDB blocks), and the
//! whole range from 70 minutes after the first sample (longer than Strata's
//! 6h selection split interval when `--hours` is 7 or more).

use std::time::{Duration, Instant};

use clap::{Arg, Command};
use strata_loadtest::{arg, parse, remote_write};
use strata_proto::prometheus::{Label, Sample, TimeSeries};

struct Opts {
    strata: String,
    prometheus: String,
    instances: usize,
    hours: i64,
    runs: usize,
    settle: Duration,
    skip_backfill: bool,
}

fn opts() -> Result<Opts, String> {
    let m = Command::new("promqlbench")
        .about("PromQL range-query latency: Strata vs Prometheus on the same data")
        .arg(arg("strata", "http://127.0.0.1:9009", "Strata base URL"))
        .arg(arg(
            "prometheus",
            "http://127.0.0.1:9090",
            "Prometheus base URL",
        ))
        .arg(arg(
            "instances",
            "200",
            "instances; each has 3 jobs x 2 codes counters and 10 histogram buckets",
        ))
        .arg(arg(
            "hours",
            "6",
            "hours of 15s data to backfill, ending now",
        ))
        .arg(arg("runs", "10", "runs per query and server"))
        .arg(arg(
            "settle",
            "90s",
            "wait after the backfill so both servers persist old data as blocks",
        ))
        .arg(
            Arg::new("skip-backfill")
                .long("skip-backfill")
                .action(clap::ArgAction::SetTrue)
                .help("query data loaded by an earlier run"),
        )
        .try_get_matches()
        .map_err(|e| e.to_string())?;
    Ok(Opts {
        strata: parse(&m, "strata")?,
        prometheus: parse(&m, "prometheus")?,
        instances: parse(&m, "instances")?,
        hours: parse(&m, "hours")?,
        runs: parse(&m, "runs")?,
        settle: humantime::parse_duration(
            m.get_one::<String>("settle")
                .map(String::as_str)
                .unwrap_or("0s"),
        )
        .map_err(|e| format!("invalid --settle: {e}"))?,
        skip_backfill: m.get_flag("skip-backfill"),
    })
}

const STEP_MS: i64 = 15_000;
const BOUNDS: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];

fn label(n: &str, v: &str) -> Label {
    Label {
        name: n.into(),
        value: v.into(),
    }
}

/// All series' samples at scrape `i` (labels sorted by name).
fn scrape(instances: usize, i: i64, t: i64) -> Vec<TimeSeries> {
    let mut out = Vec::with_capacity(instances * 16);
    for inst in 0..instances {
        let instance = format!("10.0.{}.{}:9100", inst / 250, inst % 250);
        for (j, job) in ["api", "web", "worker"].iter().enumerate() {
            for (c, code) in ["200", "500"].iter().enumerate() {
                let per_scrape = ((inst * 7 + j * 3 + c) % 50 + 1) as f64;
                out.push(TimeSeries {
                    labels: vec![
                        label("__name__", "bench_requests_total"),
                        label("code", code),
                        label("instance", &instance),
                        label("job", job),
                    ],
                    samples: vec![Sample {
                        value: per_scrape * i as f64,
                        timestamp: t,
                    }],
                    ..Default::default()
                });
            }
        }
        let mut cumulative = 0.0;
        for (b, le) in BOUNDS.iter().enumerate() {
            cumulative += ((inst + b * 13) % 17 + 1) as f64;
            out.push(TimeSeries {
                labels: vec![
                    label("__name__", "bench_latency_seconds_bucket"),
                    label("instance", &instance),
                    label("le", le),
                ],
                samples: vec![Sample {
                    value: cumulative * i as f64,
                    timestamp: t,
                }],
                ..Default::default()
            });
        }
    }
    out
}

async fn push(client: &reqwest::Client, url: &str, series: Vec<TimeSeries>) -> Result<(), String> {
    let r = remote_write(client, url, None, series)
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "{url}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    Ok(())
}

async fn range_query(
    client: &reqwest::Client,
    base: &str,
    q: &str,
    start: i64,
    end: i64,
) -> Result<(Duration, usize), String> {
    let t = Instant::now();
    let r = client
        .get(format!("{base}/api/v1/query_range"))
        .query(&[
            ("query", q.to_string()),
            ("start", format!("{}", start / 1000)),
            ("end", format!("{}", end / 1000)),
            ("step", "60".to_string()),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let text = r.text().await.map_err(|e| e.to_string())?;
    let elapsed = t.elapsed();
    if !text.contains("\"status\":\"success\"") {
        return Err(format!("{base}: {q}: {text}"));
    }
    Ok((elapsed, text.matches("\"metric\"").count()))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = opts()?;
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let scrapes = o.hours * 3600 * 1000 / STEP_MS;
    let first = (now - scrapes * STEP_MS) / 60_000 * 60_000;
    if !o.skip_backfill {
        let started = Instant::now();
        // Time order, one scrape per request, both servers.
        for i in 0..scrapes {
            let t = first + i * STEP_MS + 3;
            let s = scrape(o.instances, i, t);
            push(&client, &format!("{}/api/v1/push", o.strata), s.clone()).await?;
            push(&client, &format!("{}/api/v1/write", o.prometheus), s).await?;
        }
        println!(
            "backfilled {} series x {} scrapes into both in {:.1}s",
            o.instances * 16,
            scrapes,
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(o.settle).await;
    }
    let queries = [
        "rate(bench_requests_total[5m])",
        "sum by (job) (rate(bench_requests_total[5m]))",
        "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
        "topk(5, rate(bench_requests_total[5m]))",
        "max_over_time(sum by (job) (rate(bench_requests_total[5m]))[1h:1m])",
    ];
    let end_recent = (first + (scrapes - 1) * STEP_MS) / 60_000 * 60_000;
    let windows = [
        ("recent 1h (head)", end_recent - 3_600_000, end_recent),
        (
            "oldest 1h (persisted)",
            first + 3_600_000 + 600_000,
            first + 2 * 3_600_000 + 600_000,
        ),
        // Past Strata's 6h selection split interval when --hours is 7 or more.
        ("whole range", first + 3_600_000 + 600_000, end_recent),
    ];
    println!(
        "| window | query | series | Strata p50 | Strata p90 | Prometheus p50 | Prometheus p90 | p50 ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (wname, start, end) in windows {
        for q in queries {
            let mut times = [Vec::new(), Vec::new()];
            let mut n_series = [0, 0];
            for _ in 0..o.runs {
                for (k, base) in [&o.strata, &o.prometheus].into_iter().enumerate() {
                    let (d, n) = range_query(&client, base, q, start, end).await?;
                    times[k].push(d);
                    n_series[k] = n;
                }
            }
            if n_series[0] != n_series[1] {
                return Err(format!(
                    "{q}: Strata returned {} series, Prometheus {}",
                    n_series[0], n_series[1]
                )
                .into());
            }
            for t in &mut times {
                t.sort();
            }
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "| {wname} | `{q}` | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}x |",
                n_series[0],
                ms(pct(&times[0], 0.5)),
                ms(pct(&times[0], 0.9)),
                ms(pct(&times[1], 0.5)),
                ms(pct(&times[1], 0.9)),
                ms(pct(&times[0], 0.5)) / ms(pct(&times[1], 0.5)),
            );
        }
    }
    Ok(())
}

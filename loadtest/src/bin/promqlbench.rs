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
    dashboard: bool,
    batch: i64,
    backfill_only: bool,
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
            "batch",
            "1",
            "scrapes per remote-write request during the backfill",
        ))
        .arg(arg(
            "settle",
            "90s",
            "wait after the backfill so both servers persist old data as blocks",
        ))
        .arg(
            Arg::new("dashboard")
                .long("dashboard")
                .action(clap::ArgAction::SetTrue)
                .help("load a 10-panel dashboard over the whole range instead: Strata's query-frontend cold (every part from the queriers) and warm (old parts from its results cache) against Prometheus"),
        )
        .arg(
            Arg::new("backfill-only")
                .long("backfill-only")
                .action(clap::ArgAction::SetTrue)
                .help("only backfill; --prometheus none backfills Strata alone"),
        )
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
        dashboard: m.get_flag("dashboard"),
        batch: parse::<i64>(&m, "batch")?.max(1),
        backfill_only: m.get_flag("backfill-only"),
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
    range_query_at(client, base, q, (start, end, 60), &[]).await
}

/// A range query with `(start, end, step seconds)` and extra parameters.
async fn range_query_at(
    client: &reqwest::Client,
    base: &str,
    q: &str,
    (start, end, step): (i64, i64, i64),
    extra: &[(&str, String)],
) -> Result<(Duration, usize), String> {
    let t = Instant::now();
    let mut params = vec![
        ("query", q.to_string()),
        ("start", format!("{}", start / 1000)),
        ("end", format!("{}", end / 1000)),
        ("step", step.to_string()),
    ];
    params.extend(extra.iter().cloned());
    let r = client
        .get(format!("{base}/api/v1/query_range"))
        .query(&params)
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

/// The panels of the dashboard benchmark.
const PANELS: [&str; 10] = [
    "sum by (job) (rate(bench_requests_total[5m]))",
    "sum by (code) (rate(bench_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    "topk(5, sum by (instance) (rate(bench_requests_total[5m])))",
    "sum(rate(bench_requests_total{code=\"500\"}[5m])) / sum(rate(bench_requests_total[5m]))",
    "count(bench_requests_total)",
    "max_over_time(sum by (job) (rate(bench_requests_total[5m]))[1h:5m])",
    "avg by (job) (rate(bench_requests_total[5m]))",
    "sum(rate(bench_latency_seconds_bucket{le=\"+Inf\"}[5m]))",
];

/// Loads the dashboard (every panel at once, as Grafana does) `runs` times
/// per variant, each load ending now as Grafana's "last N days" does (start
/// and end on the step grid): Strata cold (a parameter the querier ignores
/// but the results cache keys on, new each load: every part from a
/// querier), Strata warm (the same parameter each load, after one load to
/// fill the cache: the parts of the freshness window are still asked) and
/// Prometheus. Prints p50/p90 of the whole dashboard's load time.
async fn dashboard(
    client: &reqwest::Client,
    o: &Opts,
    range_ms: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    // Grafana's step for ~1,000 points on a wide panel, in whole minutes.
    let step = (range_ms / 1000 / 60_000).max(1) * 60;
    let load = |base: String, extra: Option<String>| {
        let client = client.clone();
        async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_millis() as i64;
            let end = now / (step * 1000) * (step * 1000);
            let start = end - range_ms / (step * 1000) * (step * 1000);
            let t = Instant::now();
            let extra: Vec<(&str, String)> =
                extra.map(|v| vec![("bench_load", v)]).unwrap_or_default();
            let panels = PANELS
                .iter()
                .map(|q| range_query_at(&client, &base, q, (start, end, step), &extra));
            let mut series = 0;
            for r in futures::future::join_all(panels).await {
                series += r?.1;
            }
            Ok::<(Duration, usize), String>((t.elapsed(), series))
        }
    };
    // Fill the warm variant's cache once.
    load(o.strata.clone(), Some("warm".into())).await?;
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut series = [0usize; 3];
    for run in 0..o.runs {
        let variants = [
            (o.strata.clone(), Some(format!("cold-{run}"))),
            (o.strata.clone(), Some("warm".to_string())),
            (o.prometheus.clone(), None),
        ];
        for (k, (base, extra)) in variants.into_iter().enumerate() {
            let (d, n) = load(base, extra).await?;
            times[k].push(d);
            series[k] = n;
        }
    }
    if series[0] != series[2] || series[1] != series[2] {
        return Err(format!(
            "series per load: Strata cold {}, warm {}, Prometheus {}",
            series[0], series[1], series[2]
        )
        .into());
    }
    for t in &mut times {
        t.sort();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "dashboard: {} panels over {:.1} days ending now, step {step}s, {} series per load, {} loads each",
        PANELS.len(),
        range_ms as f64 / 86_400_000.0,
        series[2],
        o.runs
    );
    println!("| variant | p50 | p90 | p50 vs Strata cold |");
    println!("|---|---|---|---|");
    for (k, name) in [
        "Strata, cold (query-frontend, every part from queriers)",
        "Strata, warm (old parts from the results cache)",
        "Prometheus 2.42",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.2}x |",
            ms(pct(&times[k], 0.5)),
            ms(pct(&times[k], 0.9)),
            ms(pct(&times[k], 0.5)) / ms(pct(&times[0], 0.5)),
        );
    }
    Ok(())
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
        // Time order, `batch` scrapes per request, both servers.
        let mut i = 0;
        while i < scrapes {
            let mut s = scrape(o.instances, i, first + i * STEP_MS + 3);
            for j in i + 1..(i + o.batch).min(scrapes) {
                for (ts, next) in s
                    .iter_mut()
                    .zip(scrape(o.instances, j, first + j * STEP_MS + 3))
                {
                    ts.samples.extend(next.samples);
                }
            }
            i += o.batch;
            push(&client, &format!("{}/api/v1/push", o.strata), s.clone()).await?;
            if o.prometheus != "none" {
                push(&client, &format!("{}/api/v1/write", o.prometheus), s).await?;
            }
        }
        println!(
            "backfilled {} series x {} scrapes into both in {:.1}s",
            o.instances * 16,
            scrapes,
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(o.settle).await;
    }
    if o.backfill_only {
        return Ok(());
    }
    let end_recent = (first + (scrapes - 1) * STEP_MS) / 60_000 * 60_000;
    if o.dashboard {
        return dashboard(&client, &o, end_recent - first - 3_600_000).await;
    }
    let queries = [
        "rate(bench_requests_total[5m])",
        "sum by (job) (rate(bench_requests_total[5m]))",
        "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
        "topk(5, rate(bench_requests_total[5m]))",
        "max_over_time(sum by (job) (rate(bench_requests_total[5m]))[1h:1m])",
    ];
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

//! Loki push load generator and log benchmarks.
//!
//! `logbench push`: pushes realistic log lines (100-500 bytes: logfmt, JSON
//! and access-log formats with IDs and latencies) for `--streams` streams from
//! `--concurrency` senders as snappy protobuf, and reports accepted lines/s,
//! MB/s and push latency percentiles. With `--gzip` it also compresses the
//! same lines with gzip level 6 (what `gzip -6` does) for the compression
//! comparison.
//!
//! `logbench query`: runs a LogQL query `--runs` times against
//! `/loki/api/v1/query_range` and reports latency and, given the raw bytes
//! in range (`--raw-bytes`), GB/s scanned.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Arg, ArgMatches, Command};
use prost::Message;
use strata_loadtest::{arg, parse};
use strata_proto::loki::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};

const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
const PATHS: [&str; 8] = [
    "/api/v1/users",
    "/api/v1/orders",
    "/api/v1/cart",
    "/api/v1/search",
    "/healthz",
    "/api/v1/payments",
    "/static/app.js",
    "/api/v1/inventory",
];

/// A small deterministic generator (xorshift), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One realistic log line; about 1 in 20 is an error.
fn log_line(r: &mut Rng, stream: usize, ts_ms: i64) -> String {
    let method = METHODS[r.below(4) as usize];
    let path = PATHS[r.below(8) as usize];
    let id = r.below(1_000_000);
    let status = match r.below(20) {
        0 => 500 + r.below(4),
        1 | 2 => 404,
        _ => 200,
    };
    let spread = r.below(1000) + 1;
    let took = 1 + r.below(spread);
    let trace = r.next();
    let level = if status >= 500 { "error" } else { "info" };
    let user_agent = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "okhttp/4.12.0",
        "Go-http-client/1.1",
    ][r.below(3) as usize];
    match stream % 3 {
        0 => format!(
            "ts={ts_ms} level={level} caller=handler.go:{} method={method} path={path}/{id} status={status} took={took}ms trace_id={trace:016x} user_agent=\"{user_agent}\"{}",
            100 + r.below(400),
            if status >= 500 {
                " msg=\"upstream error: connection reset by peer\""
            } else {
                ""
            }
        ),
        1 => format!(
            r#"{{"ts":{ts_ms},"level":"{level}","method":"{method}","path":"{path}/{id}","status":{status},"duration_ms":{took},"trace_id":"{trace:016x}","bytes":{}}}"#,
            r.below(50_000)
        ),
        _ => format!(
            "10.{}.{}.{} - - [{ts_ms}] \"{method} {path}/{id} HTTP/1.1\" {status} {} \"-\" \"{user_agent}\" rt={}.{:03}{}",
            r.below(256),
            r.below(256),
            r.below(256),
            r.below(50_000),
            took / 1000,
            took % 1000,
            if status >= 500 { " error" } else { "" }
        ),
    }
}

fn stream_labels(s: usize) -> String {
    format!(
        r#"{{app="x", namespace="ns-{}", pod="pod-{s}", container="{}", level_hint="{}"}}"#,
        s % 10,
        ["api", "web", "worker"][s % 3],
        s % 5
    )
}

struct PushOpts {
    url: String,
    streams: usize,
    duration: Duration,
    concurrency: usize,
    batch: usize,
    gzip: bool,
}

struct Totals {
    lines: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
}

async fn push(o: PushOpts) -> Result<(), Box<dyn std::error::Error>> {
    let o = Arc::new(o);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .build()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // Every stream starts an hour back and advances 1 ms per line.
    let t0_ms = now_ms - 3_600_000;
    let t0_ns = t0_ms * 1_000_000;
    let totals = Arc::new(Totals {
        lines: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let start = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..o.concurrency {
        let (o, client, totals) = (o.clone(), client.clone(), totals.clone());
        tasks.push(tokio::spawn(async move {
            let owned: Vec<usize> = (shard..o.streams).step_by(o.concurrency).collect();
            let labels: Vec<String> = owned.iter().map(|&s| stream_labels(s)).collect();
            let mut next_ts: Vec<i64> = vec![t0_ns; owned.len()];
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (shard as u64 + 1));
            let per_req_streams = owned.len().clamp(1, 50);
            let per_stream = (o.batch / per_req_streams).max(1);
            let mut cursor = 0usize;
            let mut latencies = Vec::new();
            while start.elapsed() < o.duration {
                let mut streams = Vec::with_capacity(per_req_streams);
                let mut lines = 0u64;
                let mut bytes = 0u64;
                for _ in 0..per_req_streams {
                    let i = cursor % owned.len();
                    cursor += 1;
                    let entries: Vec<EntryAdapter> = (0..per_stream)
                        .map(|_| {
                            let ts = next_ts[i];
                            next_ts[i] += 1_000_000;
                            let line = log_line(&mut rng, owned[i], ts / 1_000_000);
                            bytes += line.len() as u64;
                            EntryAdapter {
                                timestamp: Some(Timestamp {
                                    seconds: ts / 1_000_000_000,
                                    nanos: (ts % 1_000_000_000) as i32,
                                }),
                                line,
                                structured_metadata: vec![],
                            }
                        })
                        .collect();
                    lines += entries.len() as u64;
                    streams.push(StreamAdapter {
                        labels: labels[i].clone(),
                        entries,
                        hash: 0,
                    });
                }
                let body = snap::raw::Encoder::new()
                    .compress_vec(&PushRequest { streams }.encode_to_vec())?;
                let sent = Instant::now();
                let resp = client
                    .post(format!("{}/loki/api/v1/push", o.url))
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                latencies.push(sent.elapsed().as_secs_f64());
                match resp {
                    Ok(r) if r.status().is_success() => {
                        totals.lines.fetch_add(lines, Ordering::Relaxed);
                        totals.bytes.fetch_add(bytes, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        if totals.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            eprintln!("push failed: {status}: {}", &text[..text.len().min(300)]);
                        }
                    }
                    Err(e) => {
                        totals.failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("push error: {e}");
                    }
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?.map_err(|e| e.to_string())?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(0.0, |v| v * 1000.0)
    };
    let lines = totals.lines.load(Ordering::Relaxed);
    let bytes = totals.bytes.load(Ordering::Relaxed);
    println!(
        "streams={} concurrency={} batch={} requests={} failed_requests={} lines={lines} raw_bytes={bytes} elapsed_s={elapsed:.1} lines_per_s={:.0} mb_per_s={:.1} p50_ms={:.1} p90_ms={:.1} p99_ms={:.1}",
        o.streams,
        o.concurrency,
        o.batch,
        latencies.len(),
        totals.failed.load(Ordering::Relaxed),
        lines as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        pct(0.5),
        pct(0.9),
        pct(0.99),
    );
    if o.gzip {
        gzip_compare(&o, lines, t0_ms)?;
    }
    Ok(())
}

/// Re-generates the accepted lines (same seeds, same order per sender) and
/// compresses them with gzip level 6, one line per text line, as `gzip -6`
/// would compress a log file of them.
fn gzip_compare(o: &PushOpts, accepted: u64, t0_ms: i64) -> Result<(), Box<dyn std::error::Error>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let mut raw = 0u64;
    let per_shard = accepted / o.concurrency as u64;
    for shard in 0..o.concurrency {
        let owned: Vec<usize> = (shard..o.streams).step_by(o.concurrency).collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (shard as u64 + 1));
        let per_req_streams = owned.len().clamp(1, 50);
        let per_stream = (o.batch / per_req_streams).max(1);
        let mut cursor = 0usize;
        let mut n = 0u64;
        let mut ts = vec![t0_ms; owned.len()];
        while n < per_shard {
            let i = cursor % owned.len();
            cursor += 1;
            for _ in 0..per_stream {
                let line = log_line(&mut rng, owned[i], ts[i]);
                ts[i] += 1;
                raw += line.len() as u64 + 1;
                gz.write_all(line.as_bytes())?;
                gz.write_all(b"\n")?;
                n += 1;
            }
        }
    }
    let out = gz.finish()?;
    println!(
        "gzip6_input_bytes={raw} gzip6_bytes={} gzip6_ratio={:.2}",
        out.len(),
        raw as f64 / out.len() as f64
    );
    Ok(())
}

async fn query(m: &ArgMatches) -> Result<(), Box<dyn std::error::Error>> {
    let url: String = parse(m, "url")?;
    let q: String = parse(m, "query")?;
    let runs: usize = parse(m, "runs")?;
    let raw_bytes: f64 = parse(m, "raw-bytes")?;
    let limit: String = parse(m, "limit")?;
    let client = reqwest::Client::new();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    let start = now_ns - 2 * 3600 * 1_000_000_000;
    let mut times = Vec::new();
    let mut returned = 0usize;
    for _ in 0..runs {
        let t = Instant::now();
        let r = client
            .get(format!("{url}/loki/api/v1/query_range"))
            .query(&[
                ("query", q.clone()),
                ("start", start.to_string()),
                ("end", now_ns.to_string()),
                ("limit", limit.clone()),
                ("step", "60s".to_string()),
            ])
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        times.push(t.elapsed().as_secs_f64());
        if !status.is_success() {
            return Err(format!("query failed: {status}: {body}").into());
        }
        returned = body.len();
    }
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    println!(
        "query={q:?} runs={runs} p50_s={p50:.3} min_s={:.3} max_s={:.3} response_bytes={returned} raw_gb={:.2} gb_per_s={:.2}",
        times[0],
        times[times.len() - 1],
        raw_bytes / 1e9,
        raw_bytes / 1e9 / p50
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let m = Command::new("logbench")
        .about("Loki push load generator and log query benchmark")
        .subcommand_required(true)
        .subcommand(
            Command::new("push")
                .arg(arg(
                    "url",
                    "http://127.0.0.1:9009",
                    "Strata or Loki base URL",
                ))
                .arg(arg("streams", "1000", "active streams"))
                .arg(arg("duration", "20s", "how long to push"))
                .arg(arg("concurrency", "4", "parallel senders"))
                .arg(arg("batch", "5000", "lines per push request"))
                .arg(
                    Arg::new("gzip")
                        .long("gzip")
                        .num_args(0)
                        .help("also gzip -6 the accepted lines and report the ratio"),
                ),
        )
        .subcommand(
            Command::new("query")
                .arg(arg(
                    "url",
                    "http://127.0.0.1:9009",
                    "Strata or Loki base URL",
                ))
                .arg(arg("query", r#"{app="x"} |= "error""#, "LogQL query"))
                .arg(arg("runs", "5", "repetitions"))
                .arg(arg("limit", "1000", "entries limit"))
                .arg(arg(
                    "raw-bytes",
                    "0",
                    "raw log bytes the query's range holds",
                )),
        )
        .get_matches();
    match m.subcommand() {
        Some(("push", p)) => {
            let dur: String = parse(p, "duration")?;
            push(PushOpts {
                url: parse(p, "url")?,
                streams: parse(p, "streams")?,
                duration: humantime::parse_duration(&dur)?,
                concurrency: parse::<usize>(p, "concurrency")?.max(1),
                batch: parse::<usize>(p, "batch")?.max(1),
                gzip: p.get_flag("gzip"),
            })
            .await
        }
        Some(("query", q)) => query(q).await,
        _ => Ok(()),
    }
}

//! Random differential PromQL test: the same generated data goes into a real
//! Prometheus and into Strata through remote write, then hundreds of random
//! valid queries (nested functions, aggregations, binary operators with
//! vector matching, subqueries, offsets) must give the same answers.
//!
//! The data keeps Prometheus 2.42 (the Debian package) and Prometheus 3
//! semantics (what Strata implements) on the same answer: sample timestamps
//! sit a few ms past whole seconds and queries half a second past, off every
//! subquery step too, so closed and left-open windows hold the same points, and every counter exists before
//! the earliest window, where the two versions' rate extrapolation agrees.
//! Functions and operators whose meaning changed between 2 and 3 are not
//! generated (see `docs/promql-conformance.md`).

use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::common::{Strata, encode, free_port, now_ms, secs, series};
use crate::prometheus::{diff, normalize, spawn_prometheus};

/// xorshift64*: a fixed seed reproduces a run exactly.
struct Rng(u64);

impl Rng {
    /// xorshift stays at 0 forever from state 0: that seed is remapped.
    fn new(seed: u64) -> Self {
        Rng(if seed == 0 { 0x5eed_0000 } else { seed })
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn float(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SCRAPE_MS: i64 = 15_000;
/// Samples sit this far past each 15s boundary; queries run on whole seconds.
const PHASE_MS: i64 = 7;
const POINTS: i64 = 240;

/// One generated series: labels and (timestamp, value) samples.
type GenSeries = (Vec<(String, String)>, Vec<(i64, f64)>);

fn generate(rng: &mut Rng, start: i64) -> Vec<GenSeries> {
    let mut out = Vec::new();
    let ts = |i: i64| start + i * SCRAPE_MS + PHASE_MS;
    // Remote write wants labels sorted by name.
    let lbl = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    };
    // Counters, with occasional resets.
    for (job, inst) in [("api", "a"), ("api", "b"), ("db", "a"), ("db", "b")] {
        for code in ["200", "500"] {
            let mut v = rng.below(100) as f64;
            let mut samples = Vec::new();
            for i in 0..POINTS {
                if rng.chance(2) {
                    v = 0.0;
                }
                v += rng.below(50) as f64 + if code == "500" { 0.0 } else { 10.0 };
                samples.push((ts(i), v));
            }
            out.push((
                lbl(&[
                    ("__name__", "http_requests_total"),
                    ("job", job),
                    ("instance", inst),
                    ("code", code),
                ]),
                samples,
            ));
        }
    }
    // Gauges with distinct float values (no ties for topk/bottomk).
    for (job, inst) in [
        ("api", "a"),
        ("api", "b"),
        ("db", "a"),
        ("db", "b"),
        ("db", "c"),
    ] {
        let mut v = 100.0 + rng.float() * 100.0;
        let samples = (0..POINTS)
            .map(|i| {
                v += (rng.float() - 0.5) * 10.0;
                (ts(i), v)
            })
            .collect();
        out.push((
            lbl(&[
                ("__name__", "memory_bytes"),
                ("job", job),
                ("instance", inst),
            ]),
            samples,
        ));
        let samples = (0..POINTS)
            .map(|i| (ts(i), (rng.float() * 1000.0).round() / 10.0))
            .collect();
        out.push((
            lbl(&[
                ("__name__", "temperature"),
                ("job", job),
                ("instance", inst),
            ]),
            samples,
        ));
    }
    // A classic histogram per job: cumulative buckets, _sum and _count.
    let bounds = ["0.1", "0.5", "1", "5", "+Inf"];
    for job in ["api", "db"] {
        let mut counts = [0.0f64; 5];
        let mut sum = 0.0;
        let mut bucket_samples: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 5];
        let mut sums = Vec::new();
        let mut cnts = Vec::new();
        for i in 0..POINTS {
            for _ in 0..rng.below(20) {
                let x = rng.float() * 6.0;
                sum += x;
                for (b, bound) in bounds.iter().enumerate() {
                    let ub: f64 = if *bound == "+Inf" {
                        f64::INFINITY
                    } else {
                        bound.parse().unwrap()
                    };
                    if x <= ub {
                        counts[b] += 1.0;
                    }
                }
            }
            for b in 0..5 {
                bucket_samples[b].push((ts(i), counts[b]));
            }
            sums.push((ts(i), sum));
            cnts.push((ts(i), counts[4]));
        }
        for (b, bound) in bounds.iter().enumerate() {
            out.push((
                lbl(&[
                    ("__name__", "latency_seconds_bucket"),
                    ("job", job),
                    ("le", bound),
                ]),
                bucket_samples[b].clone(),
            ));
        }
        out.push((
            lbl(&[("__name__", "latency_seconds_sum"), ("job", job)]),
            sums,
        ));
        out.push((
            lbl(&[("__name__", "latency_seconds_count"), ("job", job)]),
            cnts,
        ));
    }
    // Sparse gauges (gaps longer than the lookback) and a series that goes
    // stale (staleness marker) and comes back.
    for inst in ["a", "b"] {
        let mut samples = Vec::new();
        for i in 0..POINTS {
            if (i / 30) % 2 == 0 || rng.chance(5) {
                samples.push((ts(i), rng.below(10) as f64));
            }
        }
        out.push((
            lbl(&[
                ("__name__", "queue_depth"),
                ("job", "db"),
                ("instance", inst),
            ]),
            samples,
        ));
    }
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let samples = (0..POINTS)
        .map(|i| {
            let v = if (100..140).contains(&i) {
                stale
            } else {
                i as f64
            };
            (ts(i), v)
        })
        .filter(|(t, v)| !(v.to_bits() == stale.to_bits() && (*t - start) / SCRAPE_MS != 100))
        .collect();
    out.push((
        lbl(&[
            ("__name__", "memory_bytes"),
            ("job", "batch"),
            ("instance", "x"),
        ]),
        samples,
    ));
    out
}

/// Random PromQL over the generated names.
struct Gen<'a> {
    rng: &'a mut Rng,
}

const COUNTERS: &[&str] = &[
    "http_requests_total",
    "http_requests_total{job=\"api\"}",
    "http_requests_total{code=~\"5..\"}",
    "http_requests_total{instance!=\"a\"}",
    "latency_seconds_count",
    "latency_seconds_sum{job=\"db\"}",
];
const GAUGES: &[&str] = &[
    "memory_bytes",
    "memory_bytes{job=\"db\"}",
    "temperature",
    "temperature{instance=~\"a|c\"}",
    "queue_depth",
    "memory_bytes{job!~\"api\"}",
];
const RANGES: &[&str] = &["1m", "2m", "5m", "90s"];
const GROUPINGS: &[&str] = &[
    "",
    " by (job)",
    " by (instance)",
    " without (instance)",
    " by (job, instance)",
];

impl Gen<'_> {
    fn range(&mut self) -> &'static str {
        self.rng.pick(RANGES)
    }

    fn modifiers(&mut self) -> String {
        match self.rng.below(6) {
            0 => " offset 1m".into(),
            1 => " offset 30s".into(),
            _ => String::new(),
        }
    }

    fn scalar(&mut self) -> String {
        match self.rng.below(5) {
            0 => format!("{}", self.rng.below(10) + 1),
            1 => format!("{:.2}", self.rng.float() * 10.0),
            2 => "time()".into(),
            3 => format!("scalar(sum({}))", self.rng.pick(GAUGES)),
            _ => "2".into(),
        }
    }

    /// An instant-vector expression of at most `depth` more levels.
    fn vector(&mut self, depth: u32) -> String {
        if depth == 0 {
            return self.leaf();
        }
        match self.rng.below(11) {
            0 | 1 => self.leaf(),
            2 => {
                let f = self
                    .rng
                    .pick(&["rate", "irate", "increase", "resets", "changes"]);
                format!(
                    "{f}({}[{}]{})",
                    self.rng.pick(COUNTERS),
                    self.range(),
                    self.modifiers()
                )
            }
            3 => {
                let f = self.rng.pick(&[
                    "avg_over_time",
                    "min_over_time",
                    "max_over_time",
                    "sum_over_time",
                    "count_over_time",
                    "last_over_time",
                    "stddev_over_time",
                    "stdvar_over_time",
                    "delta",
                    "idelta",
                    "deriv",
                    "present_over_time",
                ]);
                format!(
                    "{f}({}[{}]{})",
                    self.rng.pick(GAUGES),
                    self.range(),
                    self.modifiers()
                )
            }
            4 => {
                let agg = self.rng.pick(&[
                    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
                ]);
                let g = self.rng.pick(GROUPINGS);
                // A group whose first value is NaN or ±Inf has stddev 0 in
                // Prometheus 2 and NaN in 3: feed those finite gauges only.
                let input = if matches!(agg, "stddev" | "stdvar") {
                    self.leaf()
                } else {
                    self.vector(depth - 1)
                };
                format!("{agg}{g} ({input})")
            }
            5 => {
                let g = self.rng.pick(GROUPINGS);
                match self.rng.below(3) {
                    0 => format!(
                        "quantile{g} (0.{}, {})",
                        self.rng.below(9) + 1,
                        self.vector(depth - 1)
                    ),
                    1 => format!(
                        "topk{g} ({}, {})",
                        self.rng.below(3) + 1,
                        self.rng.pick(GAUGES)
                    ),
                    _ => format!("count_values{g} (\"value\", {})", self.leaf()),
                }
            }
            6 => {
                let op = self
                    .rng
                    .pick(&["+", "-", "*", "/", ">", "<", ">= bool", "!= bool"]);
                format!("{} {op} {}", self.vector(depth - 1), self.scalar())
            }
            7 => {
                // Vector-vector on label sets that always match one to one.
                let op = self
                    .rng
                    .pick(&["+", "-", "/", "*", "and", "or", "unless", "> bool"]);
                let l = self.rng.pick(GAUGES);
                let r = self.rng.pick(GAUGES);
                // `on(job)` makes arithmetic many-to-many: both must refuse it.
                let m = self.rng.pick(&[
                    "on(job, instance)",
                    "ignoring(code)",
                    "on(job, instance)",
                    "on(job)",
                ]);
                if matches!(op, "and" | "or" | "unless") {
                    format!("{l} {op} {m} {r}")
                } else {
                    format!("sum by (job, instance) ({l}) {op} {m} sum by (job, instance) ({r})")
                }
            }
            8 => {
                let f = self.rng.pick(&[
                    "abs",
                    "ceil",
                    "floor",
                    "sqrt",
                    "exp",
                    "ln",
                    "log2",
                    "log10",
                    "sgn",
                    "timestamp",
                ]);
                format!("{f}({})", self.vector(depth - 1))
            }
            9 => {
                let f = self
                    .rng
                    .pick(&["max_over_time", "avg_over_time", "min_over_time"]);
                let step = self.rng.pick(&["30s", "1m", "20s"]);
                format!(
                    "{f}(rate({}[{}])[5m:{step}])",
                    self.rng.pick(COUNTERS),
                    self.range()
                )
            }
            _ => {
                let q = self.rng.pick(&["0.5", "0.9", "0.99", "0.25"]);
                let g = self.rng.pick(&["le", "le, job"]);
                format!(
                    "histogram_quantile({q}, sum by ({g}) (rate(latency_seconds_bucket[{}])))",
                    self.rng.pick(&["2m", "5m"])
                )
            }
        }
    }

    fn leaf(&mut self) -> String {
        match self.rng.below(4) {
            0 => format!("{}{}", self.rng.pick(GAUGES), self.modifiers()),
            1 => format!(
                "clamp({}, 100, 180)",
                self.rng.pick(&["memory_bytes", "temperature"])
            ),
            2 => format!(
                "label_replace({}, \"host\", \"h-$1\", \"instance\", \"(.*)\")",
                self.rng.pick(GAUGES)
            ),
            _ => self.rng.pick(GAUGES).to_string(),
        }
    }
}

async fn query(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> Result<Json, String> {
    let r = client
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let j: Json = r.json().await.map_err(|e| e.to_string())?;
    if j["status"] == "success" {
        Ok(j["data"].clone())
    } else {
        Err(j["error"].as_str().unwrap_or_default().to_string())
    }
}

#[tokio::test]
async fn random_queries_match_a_real_prometheus() {
    let seed: u64 = std::env::var("STRATA_PROMQL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    let queries: usize = std::env::var("STRATA_PROMQL_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    // Selections split every 2 minutes: the 10-minute range queries read
    // and evaluate their selectors in slices, as long ranges do.
    let strata = Strata::start(
        dir.path(),
        &[
            "-querier.default-evaluation-interval=1m",
            "-querier.selection-split-interval=2m",
        ],
    )
    .await;
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let port = free_port();
    let prom = spawn_prometheus(
        &prom_dir,
        port,
        "global:\n  scrape_interval: 1h\n  evaluation_interval: 1m\n",
        &["--web.enable-remote-write-receiver"],
    )
    .await;
    let prom_base = format!("http://127.0.0.1:{}", prom.port);
    let client = reqwest::Client::new();

    // Data: the last hour, on 15s scrapes 7 ms past each boundary.
    let mut rng = Rng::new(seed);
    let now = now_ms();
    let start = (now - POINTS * SCRAPE_MS) / 60_000 * 60_000;
    let data = generate(&mut rng, start);
    // Pushed in time order (Prometheus's head refuses older samples), a
    // few scrapes per request.
    for chunk in 0..(POINTS / 4) {
        let lo = start + chunk * 4 * SCRAPE_MS;
        let hi = lo + 4 * SCRAPE_MS;
        let batch: Vec<_> = data
            .iter()
            .filter_map(|(labels, samples)| {
                let pts: Vec<(i64, f64)> = samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= lo && *t < hi)
                    .collect();
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                (!pts.is_empty()).then(|| series(&pairs, &pts))
            })
            .collect();
        let body = encode(batch);
        let (st, text) = strata.push_raw(body.clone(), None).await;
        assert_eq!(st, 200, "strata push: {text}");
        let r = client
            .post(format!("{prom_base}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .expect("prometheus push");
        assert!(
            r.status().is_success(),
            "prometheus push: {:?}",
            r.text().await
        );
    }

    // Evaluation times late enough that every window and subquery
    // (5m + offset 1m + 5m range) starts after the data does.
    let first_eval = start + 15 * 60_000;
    let last_eval = start + (POINTS - 1) * SCRAPE_MS;
    let mut gen_rng = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let mut both_failed = 0;
    let mut non_empty = 0;
    for n in 0..queries {
        let q = Gen { rng: &mut gen_rng }.vector(3);
        let range = n % 4 == 0;
        // Half a second past a whole second: never on a sample, and never on
        // a subquery step, so no window edge holds a point (Prometheus 2
        // closes windows, Prometheus 3 leaves their start open).
        let t = first_eval
            + (gen_rng.below(((last_eval - first_eval) / 1000) as usize) as i64) * 1000
            + 500;
        let (path, params) = if range {
            let end = (t + 600_000).min(last_eval / 1000 * 1000 - 500);
            (
                "/api/v1/query_range",
                vec![
                    ("query", q.clone()),
                    ("start", secs(end - 600_000)),
                    ("end", secs(end)),
                    ("step", "60".to_string()),
                ],
            )
        } else {
            (
                "/api/v1/query",
                vec![("query", q.clone()), ("time", secs(t))],
            )
        };
        let want = query(&client, &prom_base, path, &params).await;
        let got = query(&client, &strata.url(""), path, &params).await;
        compared += 1;
        match (want, got) {
            (Ok(w), Ok(g)) => {
                let w = normalize(&w);
                if !w.is_empty() {
                    non_empty += 1;
                }
                if let Some(d) = diff(&q, &w, &normalize(&g)) {
                    let mut m = String::new();
                    let _ = write!(m, "{path} {params:?}\n  {d}");
                    mismatches.push(m);
                }
            }
            (Err(_), Err(_)) => both_failed += 1,
            (Ok(w), Err(e)) => mismatches.push(format!(
                "{path} {params:?}\n  Prometheus answered {} series, Strata failed: {e}",
                normalize(&w).len()
            )),
            (Err(e), Ok(g)) => mismatches.push(format!(
                "{path} {params:?}\n  Prometheus failed ({e}), Strata answered {} series",
                normalize(&g).len()
            )),
        }
    }
    println!(
        "random PromQL: seed {seed:#x}, {compared} queries ({non_empty} with data), {} mismatches, {both_failed} refused by both",
        mismatches.len()
    );
    assert!(
        non_empty * 10 >= compared * 8,
        "only {non_empty} of {compared} queries returned data: the generator is not exercising much"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} random queries differ (reproduce with STRATA_PROMQL_SEED={seed}):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

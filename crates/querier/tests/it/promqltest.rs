//! Runs Prometheus's own PromQL conformance scripts (`promqltest` format,
//! read by path from `../shared/promql-testdata`) against Strata's engine,
//! with the data loaded through the ingester's head and read back through
//! the querier, and reports the pass count per file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_ingester::{Ingester, TsdbConfig};
use strata_model::{Label, Labels, Sample, stale_nan};
use strata_promql::{Engine, EngineOptions, Value};
use strata_querier::Querier;
use strata_storage::{BlockCatalog, BlockReader};

/// Files on experimental features and native histograms: a later stage.
const SKIPPED_FILES: &[&str] = &[
    "duration_expression.test",
    "extended_vectors.test",
    "fill-modifier.test",
    "info.test",
    "limit.test",
    "type_and_unit.test",
    "start_timestamps.test",
    "native_histograms.test",
];

/// Cases per file that must keep passing: the count reached when the
/// engine last changed. A lower count is a regression.
const BASELINE: &[(&str, usize)] = &[
    ("aggregators.test", 125),
    ("at_modifier.test", 71),
    ("collision.test", 2),
    ("functions.test", 323),
    ("histograms.test", 93),
    ("literals.test", 25),
    ("name_label_dropping.test", 30),
    ("operators.test", 141),
    ("range_queries.test", 16),
    ("selectors.test", 31),
    ("staleness.test", 17),
    ("subquery.test", 32),
    ("trig_functions.test", 19),
];

fn testdata_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var("STRATA_PROMQL_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("../../../shared/promql-testdata"))
}

struct Env {
    _dir: tempfile::TempDir,
    ingester: Arc<Ingester>,
    querier: Arc<Querier>,
}

fn fresh_env(opts: &EngineOptions) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = TsdbConfig {
        dir: dir.path().join("tsdb").to_string_lossy().into_owned(),
        wal_fsync: "never".into(),
        ..TsdbConfig::default()
    };
    let ingester = Arc::new(Ingester::open(cfg.clone()).expect("open ingester"));
    std::fs::create_dir_all(dir.path().join("blocks")).expect("blocks dir");
    let store = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("blocks"))
            .expect("local store"),
    );
    let catalog = Arc::new(BlockCatalog::new(
        Arc::new(BlockReader::new(store)),
        strata_storage::Signal::Metrics,
        std::time::Duration::from_secs(3600),
    ));
    let logs = Arc::new(
        strata_ingester::LogIngester::open(&cfg, std::time::Duration::from_secs(7200))
            .expect("open log ingester"),
    );
    let pool = strata_ingester::grpc::IngesterPool::new(
        Some((
            "local".into(),
            strata_ingester::grpc::Local::shared(ingester.clone(), logs),
        )),
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(60),
        "",
    )
    .expect("ingester pool");
    let ring = strata_ring::Ring::single("local");
    let blocks = Arc::new(strata_store_gateway::StoreGateways::new(
        ring.clone(),
        catalog.reader().clone(),
        Some("local".into()),
        1,
        std::time::Duration::from_secs(60),
    ));
    let querier = Arc::new(Querier::new(
        ring,
        Arc::new(pool),
        catalog,
        blocks,
        Engine::new(opts.clone()),
        Arc::new(strata_limits::Overrides::new(
            strata_limits::Limits::default(),
        )),
    ));
    Env {
        _dir: dir,
        ingester,
        querier,
    }
}

/// Parses `1h`, `10s53ms`, `0`, `-5m` into ms.
fn parse_dur(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    // promql-parser refuses zero durations such as `0m`; they mean 0 here.
    let ms = if s
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .chars()
        .all(|c| c == '0')
        && !s.is_empty()
    {
        0
    } else if let Ok(n) = s.parse::<f64>() {
        (n * 1000.0) as i64
    } else {
        promql_parser::util::duration::parse_duration(s)
            .ok()?
            .as_millis() as i64
    };
    Some(if neg { -ms } else { ms })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => {
            if let Some(hex) = s.strip_prefix("0x") {
                return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
            }
            s.parse().ok()
        }
    }
}

/// One token of the expanding series notation; `None` entries are gaps.
fn expand(token: &str, out: &mut Vec<Option<f64>>) -> Result<(), String> {
    if token == "_" {
        out.push(None);
        return Ok(());
    }
    if token == "stale" {
        out.push(Some(stale_nan()));
        return Ok(());
    }
    if let Some((base, times)) = token.split_once('x') {
        let n: usize = times
            .parse()
            .map_err(|_| format!("bad repeat in {token}"))?;
        if base == "_" {
            out.extend(std::iter::repeat_n(None, n));
            return Ok(());
        }
        // a+b, a-b (the sign may lead `a` itself).
        let split = base
            .char_indices()
            .skip(1)
            .find(|&(i, c)| (c == '+' || c == '-') && !base[..i].ends_with(['e', 'E']))
            .map(|(i, _)| i);
        let (a, b) = match split {
            Some(i) => (&base[..i], &base[i..]),
            None => (base, "0"),
        };
        let a = parse_float(a).ok_or_else(|| format!("bad number in {token}"))?;
        let b =
            parse_float(b.trim_start_matches('+')).ok_or_else(|| format!("bad step in {token}"))?;
        for i in 0..=n {
            out.push(Some(a + b * i as f64));
        }
        return Ok(());
    }
    out.push(Some(
        parse_float(token).ok_or_else(|| format!("bad value {token}"))?,
    ));
    Ok(())
}

/// Splits `metric{a="b"} rest` into (labels, rest).
fn split_series(line: &str) -> Result<(Labels, &str), String> {
    let line = line.trim();
    let (sel, rest) = match line.find('{') {
        Some(open) if !line[..open].contains(char::is_whitespace) => {
            let mut in_str: Option<char> = None;
            let mut escaped = false;
            let mut end = None;
            for (i, c) in line[open..].char_indices() {
                if escaped {
                    escaped = false;
                    continue;
                }
                match (in_str, c) {
                    (Some(_), '\\') => escaped = true,
                    (Some(q), c) if c == q => in_str = None,
                    (None, '"' | '\'' | '`') => in_str = Some(c),
                    (None, '}') => {
                        end = Some(open + i + 1);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated label set")?;
            (&line[..end], &line[end..])
        }
        _ => match line.find(char::is_whitespace) {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        },
    };
    let labels = if sel == "{}" {
        Labels::default()
    } else {
        let expr = promql_parser::parser::parse(sel).map_err(|e| format!("series {sel}: {e}"))?;
        let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            return Err(format!("not a series: {sel}"));
        };
        let mut l: Vec<Label> = vs
            .matchers
            .matchers
            .iter()
            .map(|m| Label::new(m.name.clone(), m.value.clone()))
            .collect();
        if let Some(n) = vs.name
            && !l.iter().any(|x| x.name == "__name__")
        {
            l.push(Label::new("__name__", n));
        }
        Labels::new(l)
    };
    Ok((labels, rest.trim()))
}

#[derive(Debug)]
enum Expect {
    Series(Vec<(Labels, Vec<Option<f64>>)>),
    Scalar(f64),
    String(String),
}

struct Case {
    line: usize,
    query: String,
    /// (start, end, step); step 0 for instant.
    range: (i64, i64, i64),
    fail: bool,
    ordered: bool,
    expect: Vec<String>,
}

#[derive(Default)]
struct FileResult {
    passed: usize,
    failed: Vec<String>,
    skipped: usize,
    /// Why cases were skipped, with counts.
    skip_reasons: BTreeMap<&'static str, usize>,
}

impl FileResult {
    fn skip(&mut self, reason: &'static str) {
        self.skipped += 1;
        *self.skip_reasons.entry(reason).or_default() += 1;
    }
}

/// (query, (start, end, step), expect failure, expect ordered)
type EvalHeader = (String, (i64, i64, i64), bool, bool);

fn parse_eval(header: &str) -> Option<EvalHeader> {
    let (fail, ordered, rest) = if let Some(r) = header.strip_prefix("eval_fail ") {
        (true, false, r)
    } else if let Some(r) = header.strip_prefix("eval_ordered ") {
        (false, true, r)
    } else if let Some(r) = header
        .strip_prefix("eval_warn ")
        .or(header.strip_prefix("eval_info "))
    {
        (false, false, r)
    } else {
        (false, false, header.strip_prefix("eval ")?)
    };
    if let Some(r) = rest.strip_prefix("instant at ") {
        let (t, q) = r.split_once(' ')?;
        let t = parse_dur(t)?;
        Some((q.trim().to_string(), (t, t, 0), fail, ordered))
    } else if let Some(r) = rest.strip_prefix("range from ") {
        let parts: Vec<&str> = r.splitn(6, ' ').collect();
        if parts.len() < 6 || parts[1] != "to" || parts[3] != "step" {
            return None;
        }
        let (s, e, st) = (
            parse_dur(parts[0])?,
            parse_dur(parts[2])?,
            parse_dur(parts[4])?,
        );
        Some((parts[5].trim().to_string(), (s, e, st), fail, ordered))
    } else {
        None
    }
}

fn parse_expect(lines: &[String], range: bool) -> Result<Expect, String> {
    let mut series = Vec::new();
    for l in lines {
        let l = l.trim();
        if let Some(s) = l.strip_prefix("expect string ") {
            let s = s.trim();
            return Ok(Expect::String(s[1..s.len() - 1].to_string()));
        }
        if !range && let Some(v) = parse_float(l) {
            return Ok(Expect::Scalar(v));
        }
        let (labels, rest) = split_series(l)?;
        let mut vals = Vec::new();
        for tok in rest.split_whitespace() {
            expand(tok, &mut vals)?;
        }
        series.push((labels, vals));
    }
    Ok(Expect::Series(series))
}

fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / (a.abs() + b.abs()) < 1e-6
}

/// Checks `expect warn`, `expect warn msg: ...` and `expect no_warn` (or the
/// `info` forms) against the annotations the query produced.
fn check_annotations(expect: &[String], got: &[String], kind: &str) -> Result<(), String> {
    for l in expect {
        let l = l.trim();
        if l == format!("expect no_{kind}") && !got.is_empty() {
            return Err(format!("expected no {kind} annotation, got {got:?}"));
        }
        if l == format!("expect {kind}") && got.is_empty() {
            return Err(format!("expected a {kind} annotation, got none"));
        }
        if let Some(msg) = l.strip_prefix(&format!("expect {kind} msg:")) {
            let msg = msg.trim();
            if !got.iter().any(|g| g == msg) {
                return Err(format!("expected {kind} annotation {msg:?}, got {got:?}"));
            }
        }
    }
    Ok(())
}

async fn run_case(env: &Env, c: &Case) -> Result<(), String> {
    let (start, end, step) = c.range;
    let result = if step == 0 {
        env.querier.instant_query("t", &c.query, start).await
    } else {
        env.querier
            .range_query("t", &c.query, start, end, step)
            .await
    };
    let expects_fail = c.fail || c.expect.iter().any(|l| l.trim().starts_with("expect fail"));
    let out = match (result, expects_fail) {
        (Err(_), true) => return Ok(()),
        (Ok(v), true) => return Err(format!("expected an error, got {:?}", v.value)),
        (Err(e), false) => return Err(format!("error: {e}")),
        (Ok(v), false) => v,
    };
    check_annotations(&c.expect, &out.warnings, "warn")?;
    check_annotations(&c.expect, &out.infos, "info")?;
    let value = out.value;
    let ordered = c.ordered || c.expect.iter().any(|l| l.trim() == "expect ordered");
    let data: Vec<String> = c
        .expect
        .iter()
        .filter(|l| {
            let t = l.trim();
            !t.starts_with('#') && (!t.starts_with("expect ") || t.starts_with("expect string"))
        })
        .cloned()
        .collect();
    // `expect range vector from A to B step S`: an instant query's matrix
    // result, listed with one column per S from A.
    let (points_start, points_step) = c
        .expect
        .iter()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("expect range vector from ")?;
            let (from, rest) = rest.split_once(" to ")?;
            let (_, st) = rest.split_once(" step ")?;
            Some((parse_dur(from.trim())?, parse_dur(st.trim())?))
        })
        .unwrap_or((start, step.max(1)));
    let expect = parse_expect(&data, step != 0)?;
    match (expect, value) {
        (Expect::Scalar(want), Value::Scalar { v, .. }) => {
            if almost_equal(want, v) {
                Ok(())
            } else {
                Err(format!("scalar: want {want}, got {v}"))
            }
        }
        (Expect::String(want), Value::String { s, .. }) => {
            if want == s {
                Ok(())
            } else {
                Err(format!("string: want {want:?}, got {s:?}"))
            }
        }
        (Expect::Series(want), Value::Vector(got)) => {
            if want.len() != got.len() {
                return Err(format!(
                    "want {} series, got {}: {:?}",
                    want.len(),
                    got.len(),
                    got
                ));
            }
            for (i, (labels, vals)) in want.iter().enumerate() {
                let found = if ordered {
                    got.get(i).filter(|g| g.labels == *labels)
                } else {
                    got.iter().find(|g| g.labels == *labels)
                };
                let Some(g) = found else {
                    return Err(format!("missing {labels} (ordered={ordered}); got {got:?}"));
                };
                let want_v = vals.first().copied().flatten().unwrap_or(f64::NAN);
                if !almost_equal(want_v, g.v) {
                    return Err(format!("{labels}: want {want_v}, got {}", g.v));
                }
            }
            Ok(())
        }
        (Expect::Series(want), Value::Matrix(got)) => {
            let got: BTreeMap<&Labels, &Vec<(i64, f64)>> =
                got.iter().map(|s| (&s.labels, &s.points)).collect();
            if want.len() != got.len() {
                return Err(format!(
                    "want {} series, got {}: {:?}",
                    want.len(),
                    got.len(),
                    got
                ));
            }
            for (labels, vals) in &want {
                let Some(points) = got.get(labels) else {
                    return Err(format!(
                        "missing {labels}; got {:?}",
                        got.keys().collect::<Vec<_>>()
                    ));
                };
                let expected: Vec<(i64, f64)> = vals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (points_start + i as i64 * points_step, v)))
                    .collect();
                if expected.len() != points.len()
                    || expected
                        .iter()
                        .zip(points.iter())
                        .any(|(a, b)| a.0 != b.0 || !almost_equal(a.1, b.1))
                {
                    return Err(format!("{labels}: want {expected:?}, got {points:?}"));
                }
            }
            Ok(())
        }
        (Expect::Series(want), Value::Scalar { v, t }) if step != 0 || !want.is_empty() => {
            // A range query over a scalar expression yields one unlabelled series.
            Err(format!("want series {want:?}, got scalar {v} at {t}"))
        }
        (e, v) => Err(format!("result type mismatch: want {e:?}, got {v:?}")),
    }
}

async fn load(env: &Env, interval: i64, lines: &[String]) -> Result<(), String> {
    // A series listed twice: the later line's values win, as in Prometheus's loader.
    let mut batch: Vec<(Labels, Vec<Sample>)> = Vec::new();
    for l in lines {
        let (labels, rest) = split_series(l)?;
        let mut vals = Vec::new();
        for tok in rest.split_whitespace() {
            expand(tok, &mut vals)?;
        }
        let samples: Vec<Sample> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|v| Sample {
                    t: i as i64 * interval,
                    v,
                })
            })
            .collect();
        match batch.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, existing)) => {
                for smp in samples {
                    match existing.binary_search_by_key(&smp.t, |x| x.t) {
                        Ok(i) => existing[i] = smp,
                        Err(i) => existing.insert(i, smp),
                    }
                }
            }
            None => batch.push((labels, samples)),
        }
    }
    let ing = env.ingester.clone();
    tokio::task::spawn_blocking(move || {
        ing.push("t", &batch, strata_ingester::PushLimits::default())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// True when `query` names `metric` as a whole identifier (not as the
/// prefix of a longer name such as `metric_bucket`).
fn mentions_metric(query: &str, metric: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    query.match_indices(metric).any(|(i, _)| {
        let before = query[..i].chars().next_back();
        let after = query[i + metric.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// True when a selector of `query` selects the series `labels`.
fn selects_series(query: &str, labels: &Labels) -> bool {
    struct Selects<'a> {
        labels: &'a Labels,
        hit: bool,
    }
    impl promql_parser::util::ExprVisitor for Selects<'_> {
        type Error = ();
        fn pre_visit(&mut self, e: &promql_parser::parser::Expr) -> Result<bool, ()> {
            use promql_parser::parser::Expr;
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            let name_ok = vs
                .name
                .as_deref()
                .is_none_or(|n| n == self.labels.metric_name());
            let alts = strata_model::selector_alternatives(&vs.matchers);
            if name_ok
                && alts
                    .iter()
                    .any(|a| strata_model::matches_all(a, self.labels))
            {
                self.hit = true;
            }
            Ok(true)
        }
    }
    let Ok(expr) = promql_parser::parser::parse(query) else {
        return mentions_metric(query, labels.metric_name());
    };
    let mut v = Selects { labels, hit: false };
    let _ = promql_parser::util::walk_expr(&mut v, &expr);
    v.hit
}

async fn run_file(path: &Path, opts: &EngineOptions) -> FileResult {
    let text = std::fs::read_to_string(path).expect("read test file");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut res = FileResult::default();
    let mut env = fresh_env(opts);
    let mut i = 0;
    // A load that could not be parsed (native histograms) poisons the
    // following cases until the next `clear`: they are skipped.
    let mut poisoned = false;
    // Series with native-histogram samples; cases whose selectors select
    // one of them are skipped (native histograms are a later stage).
    let mut histogram_series: Vec<Labels> = Vec::new();
    while i < lines.len() {
        let line = lines[i].trim_end().to_string();
        i += 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut block = Vec::new();
        while i < lines.len() && lines[i].starts_with([' ', '\t']) && !lines[i].trim().is_empty() {
            block.push(lines[i].clone());
            i += 1;
        }
        if t == "clear" {
            env = fresh_env(opts);
            poisoned = false;
            histogram_series.clear();
        } else if let Some(rest) = t
            .strip_prefix("load ")
            .or(t.strip_prefix("load_with_nhcb "))
        {
            let Some(interval) = parse_dur(rest.trim()) else {
                poisoned = true;
                continue;
            };
            let (hist, floats): (Vec<String>, Vec<String>) =
                block.iter().cloned().partition(|l| l.contains("{{"));
            if t.starts_with("load_with_nhcb") {
                // The same buckets also become native histograms (custom
                // buckets) under the name without `_bucket`: cases on those
                // names are native-histogram cases.
                for l in &floats {
                    let Ok((labels, _)) = split_series(l) else {
                        continue;
                    };
                    let name = labels.metric_name().to_string();
                    for suffix in ["_bucket", "_sum", "_count"] {
                        if let Some(base) = name.strip_suffix(suffix) {
                            let mut native = labels.clone();
                            native.set("__name__", base);
                            native.set("le", "");
                            histogram_series.push(native);
                        }
                    }
                }
            }
            for h in &hist {
                if let Ok((labels, _)) = split_series(h) {
                    histogram_series.push(labels);
                }
            }
            if let Err(e) = load(&env, interval, &floats).await {
                if std::env::var("STRATA_PROMQLTEST_VERBOSE").is_ok() {
                    println!("    load at line {i} not understood: {e}");
                }
                poisoned = true;
            }
        } else if t.starts_with("eval") {
            let Some((query, range, fail, ordered)) = parse_eval(t) else {
                if std::env::var("STRATA_PROMQLTEST_VERBOSE").is_ok() {
                    println!("    eval line {i} not understood: {t}");
                }
                res.skip("eval line not understood");
                continue;
            };
            let touches_histograms = block.iter().any(|l| l.contains("{{"))
                || histogram_series.iter().any(|h| selects_series(&query, h));
            if poisoned {
                res.skip("after a load with native histograms");
                continue;
            }
            if touches_histograms {
                res.skip("native histograms");
                continue;
            }
            let case = Case {
                line: i,
                query,
                range,
                fail,
                ordered,
                expect: block,
            };
            match run_case(&env, &case).await {
                Ok(()) => res.passed += 1,
                Err(e) => res
                    .failed
                    .push(format!("line {}: {}: {}", case.line, case.query, e)),
            }
        }
    }
    res
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_conformance_files() {
    run_conformance(&EngineOptions::default(), "").await;
}

/// The same files with every selection split into slices of a few steps
/// (the smallest the engine makes: one window's worth), as long ranges are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_conformance_files_with_selections_split() {
    let opts = EngineOptions {
        selection_slice: std::time::Duration::from_millis(1),
        ..EngineOptions::default()
    };
    run_conformance(&opts, " (selections split)").await;
}

async fn run_conformance(opts: &EngineOptions, variant: &str) {
    let dir = testdata_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("PromQL test data at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let mut total = (0, 0, 0);
    let mut regressions = Vec::new();
    let verbose = std::env::var("STRATA_PROMQLTEST_VERBOSE").is_ok();
    for f in &files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if SKIPPED_FILES.contains(&name.as_str()) {
            println!("promqltest {name}: skipped (experimental feature or native histograms)");
            continue;
        }
        let r = run_file(f, opts).await;
        println!(
            "promqltest{variant} {name}: {} passed, {} failed, {} skipped",
            r.passed,
            r.failed.len(),
            r.skipped
        );
        for (reason, n) in &r.skip_reasons {
            println!("    skipped {n}: {reason}");
        }
        if verbose {
            for m in &r.failed {
                println!("    {}", m.chars().take(400).collect::<String>());
            }
        }
        total.0 += r.passed;
        total.1 += r.failed.len();
        total.2 += r.skipped;
        if let Some((_, min)) = BASELINE.iter().find(|(n, _)| *n == name)
            && r.passed < *min
        {
            regressions.push(format!("{name}: {} passed, baseline {min}", r.passed));
        }
    }
    println!(
        "promqltest{variant} total: {} passed, {} failed, {} skipped",
        total.0, total.1, total.2
    );
    assert!(total.0 > 0, "no PromQL conformance case ran");
    // Every float-sample case of the files run passes: any failure is a regression.
    assert_eq!(total.1, 0, "PromQL conformance cases failed (listed above)");
    assert!(
        regressions.is_empty(),
        "PromQL conformance regressed: {regressions:?}"
    );
}

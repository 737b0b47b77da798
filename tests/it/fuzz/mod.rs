//! Fuzzing on stable Rust: every decoder and parser that reads untrusted
//! bytes gets mutated inputs, and must answer each with a value or an
//! error, never a panic, an abort or a hang.
//!
//! Targets: remote-write decoding and validation, OTLP metrics and logs
//! decoding and translation, Loki push decoding (JSON, protobuf, gzip), PromQL parse, plan and execute on a small data
//! set, LogQL parse and execute, WAL replay of mutated segment files,
//! rule-group YAML and runtime-config YAML.
//!
//! The driver is a plain mutational fuzzer (no coverage feedback, which
//! stable Rust cannot instrument): inputs start from each target's seeds
//! (valid examples; for PromQL every expression of Prometheus's own test
//! files) and are mutated with byte edits, dictionary tokens, extreme
//! numbers, splices and repetitions (which reach nesting and size limits).
//! Every input that ever failed is kept in `tests/fuzz-corpus/<target>/`
//! and replayed first on every run.
//!
//! In the test suite each target runs a bounded number of inputs
//! (`STRATA_FUZZ_ITERATIONS`, default 300); `loadtest/fuzz.sh --minutes N`
//! runs each for N minutes (`STRATA_FUZZ_SECONDS`) and writes the figures.
//! The input being run is written to `target/fuzz/<target>/current` first,
//! so an abort (a stack overflow cannot be caught) leaves it on disk.

mod targets;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One input's run: whether the target accepted it (decoded, parsed); a
/// panic or a hang is a finding.
type Outcome = Pin<Box<dyn Future<Output = bool> + Send>>;

/// A fuzz target: seed inputs, tokens worth inserting, and the code under test.
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    pub dictionary: Vec<&'static str>,
    /// Runs one input; any panic is a finding.
    pub run: fn(Vec<u8>) -> Outcome,
    /// Largest input the mutator builds.
    pub max_len: usize,
}

/// Numbers that break arithmetic.
const EXTREMES: &[&str] = &[
    "0",
    "-0",
    "1e308",
    "-1e308",
    "1e-308",
    "NaN",
    "Inf",
    "-Inf",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "4294967295",
    "1e400",
    "0.0000000001",
    "-1",
    "2147483648",
    "99999999999999999999",
];

/// Accepted mutants kept as bases for further mutation.
const POOL: usize = 2000;

/// How long one input may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(20);

/// What a fuzz run did.
#[derive(Debug, Default)]
pub struct Report {
    pub executions: u64,
    /// Inputs the target accepted (got past its decoder or parser).
    pub accepted: u64,
    pub corpus_replayed: usize,
    pub findings: Vec<String>,
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz-corpus")
        .join(target)
}

fn work_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/fuzz")
        .join(target)
}

/// Mutates `input` a few times.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, t: &Target) {
    // Mostly one or two edits, so that many mutants stay close enough to
    // valid to get past the decoder and reach the code behind it.
    let mut edits = 1;
    while edits < 6 && rng.random_bool(0.4) {
        edits += 1;
    }
    for _ in 0..edits {
        let len = input.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                input.insert(i, rng.random());
            }
            2 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..=16)).min(len);
                input.drain(a..b);
            }
            3 if !t.dictionary.is_empty() => {
                let tok = t.dictionary[rng.random_range(0..t.dictionary.len())];
                let i = rng.random_range(0..=len);
                input.splice(i..i, tok.bytes());
            }
            4 => {
                // Replace a run of digits (or insert) with an extreme number.
                let tok = EXTREMES[rng.random_range(0..EXTREMES.len())];
                let start = rng.random_range(0..=len);
                let end = start
                    + input[start..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                input.splice(start..end, tok.bytes());
            }
            5 if len > 0 => {
                // Repeat a slice many times: nesting, long chains, sizes.
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..=8)).min(len);
                let piece = input[a..b].to_vec();
                let times = [2usize, 10, 100, 1000, 5000][rng.random_range(0..5)];
                let mut rep = Vec::with_capacity(piece.len() * times);
                for _ in 0..times {
                    rep.extend_from_slice(&piece);
                }
                input.splice(a..a, rep);
            }
            6 if !t.seeds.is_empty() => {
                // Splice in a part of another seed.
                let other = &t.seeds[rng.random_range(0..t.seeds.len())];
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = (a + rng.random_range(1..=64)).min(other.len());
                    let i = rng.random_range(0..=len);
                    input.splice(i..i, other[a..b].iter().copied());
                }
            }
            7 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] = [
                    0u8, 0xff, b'(', b')', b'{', b'}', b'[', b']', b'"', b'\\', b'|', b'-',
                ][rng.random_range(0..12)];
            }
            _ => {
                input.truncate(rng.random_range(0..=len));
            }
        }
    }
    input.truncate(t.max_len);
}

/// Runs one input, catching panics and hangs; Ok(accepted).
async fn run_one(t: &Target, input: Vec<u8>) -> Result<bool, String> {
    let dir = work_dir(t.name);
    // Best effort: a failure to record it only loses the abort breadcrumb.
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("current"), &input);
    // On a worker thread, whose stack is the server's.
    let run = tokio::spawn(AssertUnwindSafe((t.run)(input)).catch_unwind());
    match tokio::time::timeout(HANG, run).await {
        Ok(Ok(Ok(accepted))) => Ok(accepted),
        Ok(Ok(Err(panic))) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())),
        Ok(Err(e)) => Err(format!("task failed: {e}")),
        Err(_) => Err(format!("hang: no answer within {HANG:?}")),
    }
}

/// Replays the target's saved findings, then fuzzes for `budget`.
pub async fn fuzz(t: &Target, budget: Budget, seed: u64) -> Report {
    let mut report = Report::default();
    let saved = corpus_dir(t.name);
    let mut replay: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&saved)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok().map(|b| (e.path(), b)))
        .collect();
    replay.sort();
    for (path, input) in replay {
        report.corpus_replayed += 1;
        report.executions += 1;
        if let Err(e) = run_one(t, input).await {
            report.findings.push(format!("{}: {e}", path.display()));
        }
    }
    for seed_input in &t.seeds {
        report.executions += 1;
        if let Err(e) = run_one(t, seed_input.clone()).await {
            report.findings.push(format!(
                "seed {:?}: {e}",
                String::from_utf8_lossy(seed_input)
            ));
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut n = 0u64;
    // Accepted mutants become bases too (without coverage feedback, what
    // got past the parser is the best guess of what reaches deeper).
    let mut pool: Vec<Vec<u8>> = Vec::new();
    while budget.more(n, started) && !t.seeds.is_empty() {
        n += 1;
        let mut input = if !pool.is_empty() && rng.random_bool(0.5) {
            pool[rng.random_range(0..pool.len())].clone()
        } else {
            t.seeds[rng.random_range(0..t.seeds.len())].clone()
        };
        mutate(&mut rng, &mut input, t);
        report.executions += 1;
        let outcome = run_one(t, input.clone()).await;
        if outcome == Ok(true) {
            report.accepted += 1;
            if pool.len() < POOL {
                pool.push(input.clone());
            } else {
                let i = rng.random_range(0..POOL);
                pool[i] = input.clone();
            }
        }
        if let Err(e) = outcome {
            let _ = std::fs::create_dir_all(&saved);
            let file = saved.join(format!("finding-{seed}-{n}"));
            let _ = std::fs::write(&file, &input);
            report
                .findings
                .push(format!("{} (saved as {}): {e}", t.name, file.display()));
            if report.findings.len() >= 5 {
                break;
            }
        }
    }
    report
}

/// How long a target is fuzzed: a number of inputs, or a time.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Inputs(u64),
    Time(Duration),
}

impl Budget {
    fn more(&self, n: u64, started: Instant) -> bool {
        match self {
            Budget::Inputs(max) => n < *max,
            Budget::Time(d) => started.elapsed() < *d,
        }
    }

    /// From `STRATA_FUZZ_SECONDS` / `STRATA_FUZZ_ITERATIONS`.
    fn from_env() -> Self {
        if let Some(s) = std::env::var("STRATA_FUZZ_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            return Budget::Time(Duration::from_secs(s));
        }
        let n = std::env::var("STRATA_FUZZ_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        Budget::Inputs(n)
    }
}

/// Fuzzes `target`, writes its figures, and fails on any finding.
async fn check(target: Target) {
    let budget = Budget::from_env();
    let seed = std::env::var("STRATA_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let started = Instant::now();
    let report = fuzz(&target, budget, seed).await;
    let line = format!(
        "{}: {} executions in {:.1}s, {} mutated inputs accepted by the decoder or parser ({} saved findings replayed), seed {seed}, {} findings",
        target.name,
        report.executions,
        started.elapsed().as_secs_f64(),
        report.accepted,
        report.corpus_replayed,
        report.findings.len()
    );
    eprintln!("fuzz {line}");
    // Long runs leave their figures for loadtest/fuzz.sh; the suite's short
    // runs must not overwrite them.
    if matches!(budget, Budget::Time(_)) {
        let dir = work_dir(target.name);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("report"), format!("{line}\n"));
    }
    assert!(
        report.findings.is_empty(),
        "fuzz target {} found:\n{}",
        target.name,
        report.findings.join("\n")
    );
}

/// Runs `f` on a runtime like the server's: worker threads with 8 MiB
/// stacks (the depth limits are sized for them).
fn on_server_runtime(f: impl Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(f);
}

#[test]
fn fuzz_remote_write_decoding() {
    on_server_runtime(check(targets::remote_write()));
}

#[test]
fn fuzz_remote_write_v2_decoding() {
    on_server_runtime(check(targets::remote_write_v2()));
}

#[test]
fn fuzz_otlp_decoding_and_translation() {
    on_server_runtime(check(targets::otlp()));
}

#[test]
fn fuzz_loki_push_decoding() {
    on_server_runtime(check(targets::loki_push()));
}

#[test]
fn fuzz_promql_parse_plan_execute() {
    on_server_runtime(check(targets::promql()));
}

#[test]
fn fuzz_logql_parse_execute() {
    on_server_runtime(check(targets::logql()));
}

#[test]
fn fuzz_wal_replay() {
    on_server_runtime(check(targets::wal_replay()));
}

#[test]
fn fuzz_rule_group_yaml() {
    on_server_runtime(check(targets::rule_groups()));
}

#[test]
fn fuzz_runtime_config_yaml() {
    on_server_runtime(check(targets::runtime_config()));
}

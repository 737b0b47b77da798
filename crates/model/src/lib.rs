//! Core data types every Strata role shares: label sets, samples, the
//! Prometheus staleness marker, and label-matcher evaluation.
//!
//! Label matchers are promql-parser's [`Matcher`], so a selector parsed from
//! PromQL flows unchanged to the head index and to Parquet block scans.

pub mod api_time;
pub mod freshness;
pub mod head_stats;
pub mod logs;
pub mod matching;
pub mod metadata;
pub mod nesting;
pub mod series_batch;
pub mod shard;
pub mod stats;
pub mod step_windows;
pub mod syntax;

pub use step_windows::StepWindows;

use std::fmt;
use std::hash::Hash;

pub use promql_parser::label::{MatchOp, Matcher};
pub use series_batch::{BatchSeries, LabelSpan, SeriesBatch, SeriesBatchBuilder, StrSpan};

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Bit pattern Prometheus writes as a staleness marker (a signalling NaN that
/// differs from every NaN arithmetic produces).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True when `v` is exactly the staleness marker.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One label name/value pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    /// Builds a label from anything string-like.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A set of labels sorted by name, with unique names and no empty values
/// (an empty value means "label absent", as in Prometheus).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set: sorts by name and drops empty values. Duplicate
    /// names are kept; callers that accept input validate with [`Labels::first_duplicate`].
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.retain(|l| !l.value.is_empty());
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        Self(labels)
    }

    /// Builds from already sorted, unique, non-empty labels without checking.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        Self(labels)
    }

    /// Convenience constructor from `(name, value)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), or "" when absent.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    /// The labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first name that occurs twice, if any.
    pub fn first_duplicate(&self) -> Option<&str> {
        self.0
            .windows(2)
            .find(|w| w[0].name == w[1].name)
            .map(|w| w[0].name.as_str())
    }

    /// A copy without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    /// A copy keeping only (`include`=true) or dropping (`include`=false) the given names.
    pub fn filter_names(&self, names: &[String], include: bool) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.contains(&l.name) == include)
                .cloned()
                .collect(),
        )
    }

    /// Sets or (with an empty value) removes a label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, Label::new(name, value)),
        }
    }

    /// A 64-bit hash of the label set, stable within one build.
    /// Stable across processes and versions (XXH3 over `name 0xff value 0xff`
    /// per label, the framing Prometheus hashes), so it may shard and persist.
    pub fn hash64(&self) -> u64 {
        hash_label_pairs(self.0.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// Consumes the set, returning its labels.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Ordering that puts the metric name first, then the labels: the sort
    /// order of series in blocks and query results.
    pub fn cmp_metric_first(&self, other: &Labels) -> std::cmp::Ordering {
        self.metric_name()
            .cmp(other.metric_name())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Labels {
    /// Prometheus text form: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.metric_name())?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        write!(f, "}}")
    }
}

/// True when `labels` satisfies `m`; an absent label reads as "", so `x!="a"`
/// and `x=~".*"` match series without `x`, as in Prometheus.
/// A shard matcher (`__query_shard__="i_of_n"`) tests the series' shard.
pub fn matcher_matches<L: LabelSet + ?Sized>(m: &Matcher, labels: &L) -> bool {
    if m.name == shard::QUERY_SHARD_LABEL
        && let Some(s) = shard::QueryShard::of_matcher(m)
    {
        return s.contains(labels);
    }
    m.is_match(labels.label(&m.name).unwrap_or(""))
}

/// True when `labels` satisfies every matcher.
pub fn matches_all<L: LabelSet + ?Sized>(matchers: &[Matcher], labels: &L) -> bool {
    matchers.iter().all(|m| matcher_matches(m, labels))
}

/// A selector: one or more alternative matcher lists (PromQL's `or` inside
/// braces); a series is selected when any list matches it fully.
pub fn selector_alternatives(m: &promql_parser::label::Matchers) -> Vec<Vec<Matcher>> {
    if m.or_matchers.is_empty() {
        vec![m.matchers.clone()]
    } else {
        m.or_matchers
            .iter()
            .map(|alt| {
                let mut v = m.matchers.clone();
                v.extend(alt.iter().cloned());
                v
            })
            .collect()
    }
}

/// Request headers a process passing a request on (the query-frontend to a
/// querier, a process without a ruler to a ruler) does not copy: the
/// connection's own, and the length of a body it sends anew.
pub const HOP_BY_HOP_HEADERS: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "content-length",
];

/// What matchers and shards read of a label set: [`Labels`], and the
/// ingester head's compact form of it.
pub trait LabelSet {
    /// The value of label `name` (label sets hold no empty values).
    fn label(&self, name: &str) -> Option<&str>;
    /// The set's hash, as [`Labels::hash64`].
    fn label_hash(&self) -> u64;
    /// Number of labels.
    fn label_count(&self) -> usize;
    /// The (name, value) pairs, sorted by name.
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl LabelSet for Labels {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    fn label_hash(&self) -> u64 {
        self.hash64()
    }

    fn label_count(&self) -> usize {
        self.len()
    }

    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|l| (l.name.as_str(), l.value.as_str()))
    }
}

/// The hash of a label set given as sorted (name, value) pairs: XXH3 over
/// `name 0xff value 0xff` per label, the framing Prometheus hashes. Stable
/// across processes and versions, so it may shard and persist.
pub fn hash_label_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        for (name, value) in pairs {
            buf.extend_from_slice(name.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(value.as_bytes());
            buf.push(0xff);
        }
        twox_hash::XxHash3_64::oneshot(buf)
    })
}

/// A sample: a timestamp in milliseconds and a float value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// An exemplar: one observation of a series with labels of its own (a
/// trace id, say), for linking a metric to a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds.
    pub t: i64,
}

/// A series with its samples in time order, as returned by storage reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Merges `b` into time-ordered `a`, keeping one sample per timestamp.
/// Replicas and head/block overlaps hold identical samples; where they
/// disagree (a replica that missed a write and took a later one for the
/// same timestamp) a value wins over a staleness marker and otherwise the
/// larger value in IEEE total order, whatever the order replicas, blocks
/// and store-gateway answers arrive in, so queries over overlapping blocks
/// and the compactor's merge of them agree.
pub fn merge_samples(a: &mut Vec<Sample>, b: &[Sample]) {
    if b.is_empty() {
        return;
    }
    if a.last().is_none_or(|l| l.t < b[0].t) {
        a.extend_from_slice(b);
        return;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].t.cmp(&b[j].t) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let b_wins = match (is_stale_nan(a[i].v), is_stale_nan(b[j].v)) {
                    (true, false) => true,
                    (false, true) => false,
                    _ => b[j].v.total_cmp(&a[i].v).is_gt(),
                };
                let keep = if b_wins { b[j] } else { a[i] };
                out.push(keep);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    *a = out;
}

/// A map keyed by label sets, as queries gather series from the head,
/// blocks and replicas. Hashed with foldhash, seeded per map: a label set
/// is hashed once per series and SipHash cost a few percent of a query
/// returning many series, while a seeded hash keeps a tenant's crafted
/// label values from colliding on purpose.
pub type LabelsMap<V> = std::collections::HashMap<Labels, V, foldhash::quality::RandomState>;

/// Formats a float as Prometheus prints sample values and `count_values`
/// labels (Go's `strconv.FormatFloat(f, 'f', -1, 64)`): shortest round-trip
/// decimal, `+Inf`, `-Inf`, `NaN`.
pub fn format_float(f: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_float(&mut out, f);
    // Only ASCII is written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`format_float`]'s text to `out` without allocating: a range
/// answer writes one per point. Ryu finds the shortest round-trip digits
/// as Go does, ties included (`212738658851383.125` is `...383.12` in both,
/// checked against Prometheus 2.42; Rust's own formatter writes `...13`);
/// its exponent form is written out positionally, as Go's `'f'` format.
pub fn write_float(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    } else if f == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
        return;
    } else if f == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    let Some((mantissa, exp)) = text.split_once('e') else {
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
        return;
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    out.extend_from_slice(sign.as_bytes());
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // Ryu's exponent is within -324..=308.
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits = int.len() + frac.len();
    // Where the decimal point falls, counted in digits from the first.
    let point = exp + int.len() as i64;
    let all = || int.bytes().chain(frac.bytes());
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
        out.extend(all());
    } else if point as usize >= digits {
        out.extend(all());
        out.extend(std::iter::repeat_n(b'0', point as usize - digits));
    } else {
        out.extend(all().take(point as usize));
        out.push(b'.');
        out.extend(all().skip(point as usize));
    }
}

/// Appends an integer's decimal text to `out` without allocating.
pub fn write_int(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

/// A duration as Prometheus writes one (`15d`, `2w`, `30d1h`: years and
/// weeks only when they divide it exactly); empty for zero, which
/// Prometheus's retention field shows as nothing.
pub fn prometheus_duration(d: std::time::Duration) -> String {
    const UNITS: [(&str, u128, bool); 7] = [
        ("y", 365 * 86_400_000, true),
        ("w", 7 * 86_400_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ];
    let mut ms = d.as_millis();
    let mut out = String::new();
    for (unit, size, exact) in UNITS {
        if ms >= size && (!exact || ms.is_multiple_of(size)) {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// humantime-based serde for `Duration` fields ("2h", "500ms").
pub mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// A duration as configuration writes it ("1h 30m", "500ms", "0s").
    pub fn format(d: Duration) -> String {
        humantime::format_duration(d).to_string()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        if s == "0" {
            return Ok(Duration::ZERO);
        }
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// The tenant of a request from its `X-Scope-OrgID` header (`None`:
/// absent; `Some(None)`: not ASCII), as Mimir takes it: validated with
/// multi-tenancy on, `anonymous` with it off. The error is the HTTP status
/// (401 without a tenant, 400 for a bad one) and its message.
pub fn request_tenant(
    header: Option<Option<&str>>,
    multitenancy: bool,
) -> Result<String, (u16, String)> {
    const NO_AUTH_TENANT: &str = "anonymous";
    let id = match header {
        None if !multitenancy => return Ok(NO_AUTH_TENANT.to_string()),
        None => return Err((401, "no org id".into())),
        Some(None) => return Err((400, "X-Scope-OrgID is not valid ASCII".into())),
        Some(Some(s)) => s.trim(),
    };
    if !multitenancy {
        // Single-tenant mode stores everything under one tenant.
        return Ok(NO_AUTH_TENANT.to_string());
    }
    validate_tenant(id).map_err(|e| (400, e))?;
    Ok(id.to_string())
}

/// Mimir's tenant ID rules: 1-150 chars of `[a-zA-Z0-9!-_.*'()]`, not `.` or `..`.
pub fn validate_tenant(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("tenant ID is empty".into());
    }
    if id.len() > 150 {
        return Err(format!(
            "tenant ID is {} characters long, more than 150",
            id.len()
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("tenant ID {id:?} is not allowed"));
    }
    if id.contains('|') {
        return Err("queries across several tenants are not supported".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
    {
        return Err(format!(
            "tenant ID {id:?} contains unsupported character {c:?}"
        ));
    }
    Ok(())
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_the_standard_formatter_writes_them() {
        let mut edge = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e-5,
            1.5e-5,
            1e-6,
            1e-7,
            123456789.125,
            1e15,
            1e16,
            1e17,
            1e21,
            1e22,
            9007199254740993.0,
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1.7e9,
            0.3,
            2.0 / 3.0,
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Every bit pattern, and values in the ranges samples live in.
            edge.push(f64::from_bits(x));
            edge.push((x >> 11) as f64 / (1u64 << (i % 60)) as f64);
            edge.push(((x % 100_000) as f64) / 100.0);
        }
        for f in edge.into_iter().filter(|f| f.is_finite()) {
            let mut out = Vec::new();
            write_float(&mut out, f);
            let ours = String::from_utf8(out).unwrap();
            let std = format!("{f}");
            // Rust's formatter breaks some ties between two shortest
            // candidates the other way than Go; both are shortest and exact.
            if ours != std {
                assert_eq!(ours.len(), std.len(), "{f:e}: {ours} vs {std}");
                assert_eq!(ours.parse::<f64>().ok(), Some(f), "{f:e}: {ours}");
            }
        }
        // Prometheus 2.42 (Go) answers these scalars so.
        for (f, go) in [
            // Exactly representable: a tie between two shortest texts.
            ("212738658851383.125".parse().unwrap(), "212738658851383.12"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (-1.5e-7, "-0.00000015"),
            (1.25e17, "125000000000000000"),
        ] {
            assert_eq!(format_float(f), go);
        }
        assert!(format_float(5e-324).ends_with("0005") && format_float(5e-324).len() == 326);
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        let mut out = Vec::new();
        write_int(&mut out, -1_700_000_000_123);
        assert_eq!(out, b"-1700000000123");
    }

    #[test]
    fn labels_sorted_and_empty_dropped() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", "")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("a"), Some("1"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.to_string(), "{a=\"1\", b=\"2\"}");
    }

    #[test]
    fn absent_label_matches_empty() {
        let l = Labels::from_pairs([("__name__", "up")]);
        let m = Matcher::new(MatchOp::NotEqual, "job", "x");
        assert!(matcher_matches(&m, &l));
        let m = Matcher::new(MatchOp::Equal, "job", "");
        assert!(matcher_matches(&m, &l));
    }

    #[test]
    fn merge_dedups_identical_timestamps() {
        let mut a = vec![Sample { t: 1, v: 1.0 }, Sample { t: 3, v: 3.0 }];
        merge_samples(
            &mut a,
            &[
                Sample { t: 2, v: 2.0 },
                Sample { t: 3, v: 3.0 },
                Sample { t: 4, v: 4.0 },
            ],
        );
        let ts: Vec<i64> = a.iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![1, 2, 3, 4]);
    }

    #[test]
    fn disagreeing_samples_merge_the_same_in_any_order() {
        let x = [Sample { t: 1, v: 1.0 }, Sample { t: 2, v: 5.0 }];
        let y = [Sample { t: 2, v: 7.0 }, Sample { t: 3, v: 3.0 }];
        let z = [Sample {
            t: 2,
            v: stale_nan(),
        }];
        let merged = |order: [&[Sample]; 3]| {
            let mut out = Vec::new();
            for part in order {
                merge_samples(&mut out, part);
            }
            out.iter().map(|s| (s.t, s.v.to_bits())).collect::<Vec<_>>()
        };
        let want = merged([&x, &y, &z]);
        for order in [
            [&x[..], &z, &y],
            [&y, &x, &z],
            [&y, &z, &x],
            [&z, &x, &y],
            [&z, &y, &x],
        ] {
            assert_eq!(merged(order), want);
        }
        assert_eq!(want.len(), 3);
        // The value beats the staleness marker at t=2: 7 is the larger value.
        assert_eq!(want[1], (2, 7.0f64.to_bits()));
        let mut only = vec![Sample {
            t: 2,
            v: stale_nan(),
        }];
        merge_samples(&mut only, &[Sample { t: 2, v: -1.0 }]);
        assert_eq!(only[0].v, -1.0, "a value wins over a staleness marker");
    }
}

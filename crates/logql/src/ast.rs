//! The LogQL syntax tree.

use std::time::Duration;

use regex::Regex;
use strata_model::Matcher;
use strata_model::logs::LineFilter;

use crate::template::Template;

/// A parsed LogQL query: a log query (returns lines) or a metric query.
#[derive(Debug, Clone)]
pub enum Expr {
    Log(LogExpr),
    Metric(MetricExpr),
}

/// A stream selector and the pipeline its lines go through.
#[derive(Debug, Clone)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub pipeline: Vec<Stage>,
}

impl LogExpr {
    /// Line filters before any stage that changes the line or labels: these
    /// can run in the storage scan, before parsing.
    pub fn leading_line_filters(&self) -> Vec<LineFilter> {
        self.pipeline
            .iter()
            .map_while(|s| match s {
                Stage::LineFilter(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }
}

/// One pipeline stage.
#[derive(Debug, Clone)]
pub enum Stage {
    LineFilter(LineFilter),
    /// `json` with optional `label="json.path"` extractions.
    Json(Vec<(String, JsonPath)>),
    /// `logfmt` with flags and optional `label="key"` extractions.
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Vec<(String, String)>,
    },
    /// `regexp "(?P<name>...)"`: named groups become labels.
    Regexp(Regex),
    /// `pattern "<ip> - <_> <method>"`.
    Pattern(Pattern),
    /// `unpack`: a JSON object of labels plus `_entry` as the line.
    Unpack,
    LabelFilter(LabelFilter),
    LineFormat(Template),
    LabelFormat(Vec<LabelFormat>),
    Drop(Vec<LabelSel>),
    Keep(Vec<LabelSel>),
    Decolorize,
}

/// A path into a JSON document: `a.b[0]["c d"]`.
pub type JsonPath = Vec<JsonStep>;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq)]
pub enum JsonStep {
    Key(String),
    Index(usize),
}

/// A `pattern` expression: literals and named captures.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub parts: Vec<PatternPart>,
}

/// One part of a [`Pattern`].
#[derive(Debug, Clone, PartialEq)]
pub enum PatternPart {
    Literal(String),
    /// `<name>`; `<_>` captures nothing.
    Capture(Option<String>),
}

/// `label_format` assignment.
#[derive(Debug, Clone)]
pub enum LabelFormat {
    /// `dst=src`: rename.
    Rename { dst: String, src: String },
    /// `dst="{{ template }}"`.
    Template { dst: String, template: Template },
}

/// A label in `drop`/`keep`, optionally with a value matcher.
#[derive(Debug, Clone)]
pub enum LabelSel {
    Name(String),
    Matcher(Matcher),
}

/// Comparison of a label filter on numbers, durations or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

/// How the right-hand value of a numeric label filter is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumKind {
    Number,
    /// Seconds, from a Go duration (`250ms`).
    Duration,
    /// Bytes, from a humanized size (`10KB`).
    Bytes,
}

/// A label filter expression.
#[derive(Debug, Clone)]
pub enum LabelFilter {
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
    /// `name = "v"`, `name =~ "re"`...
    Matcher(Matcher),
    /// `name > 10`, `name >= 250ms`, `name < 1KB`.
    Compare {
        name: String,
        op: CmpOp,
        kind: NumKind,
        value: f64,
    },
}

/// How `unwrap` converts a label value to a sample value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwrapConv {
    Number,
    /// `duration()` / `duration_seconds()`: seconds.
    Duration,
    /// `bytes()`.
    Bytes,
}

/// `| unwrap label` and the stages after it.
#[derive(Debug, Clone)]
pub struct Unwrap {
    pub label: String,
    pub conv: UnwrapConv,
    /// Label filters after the unwrap (e.g. `| __error__=""`).
    pub post_filters: Vec<LabelFilter>,
}

/// A log selection over a range, as a range aggregation reads it.
#[derive(Debug, Clone)]
pub struct LogRange {
    pub log: LogExpr,
    pub range: Duration,
    pub offset: Duration,
    pub unwrap: Option<Unwrap>,
}

/// Range aggregation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Rate,
    RateCounter,
    CountOverTime,
    BytesRate,
    BytesOverTime,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    StdvarOverTime,
    StddevOverTime,
    QuantileOverTime,
    FirstOverTime,
    LastOverTime,
    AbsentOverTime,
}

impl RangeOp {
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "rate" => Self::Rate,
            "rate_counter" => Self::RateCounter,
            "count_over_time" => Self::CountOverTime,
            "bytes_rate" => Self::BytesRate,
            "bytes_over_time" => Self::BytesOverTime,
            "sum_over_time" => Self::SumOverTime,
            "avg_over_time" => Self::AvgOverTime,
            "min_over_time" => Self::MinOverTime,
            "max_over_time" => Self::MaxOverTime,
            "stdvar_over_time" => Self::StdvarOverTime,
            "stddev_over_time" => Self::StddevOverTime,
            "quantile_over_time" => Self::QuantileOverTime,
            "first_over_time" => Self::FirstOverTime,
            "last_over_time" => Self::LastOverTime,
            "absent_over_time" => Self::AbsentOverTime,
            _ => return None,
        })
    }

    /// Functions that need an unwrapped value.
    pub fn needs_unwrap(self) -> bool {
        !matches!(
            self,
            Self::Rate
                | Self::CountOverTime
                | Self::BytesRate
                | Self::BytesOverTime
                | Self::AbsentOverTime
        )
    }
}

/// Vector aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
}

impl VectorOp {
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "count" => Self::Count,
            "stddev" => Self::Stddev,
            "stdvar" => Self::Stdvar,
            "topk" => Self::Topk,
            "bottomk" => Self::Bottomk,
            "sort" => Self::Sort,
            "sort_desc" => Self::SortDesc,
            _ => return None,
        })
    }
}

/// `by (...)` / `without (...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

/// Binary operators between metric queries and scalars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    /// The operator as written (`+`, `==`, `and`, ...).
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Mod => "%",
            Self::Pow => "^",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::And => "and",
            Self::Or => "or",
            Self::Unless => "unless",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::Ne | Self::Gt | Self::Ge | Self::Lt | Self::Le
        )
    }
    pub fn is_set(self) -> bool {
        matches!(self, Self::And | Self::Or | Self::Unless)
    }
}

/// `on (...)`/`ignoring (...)` and `group_left/right (...)`: PromQL's.
pub use strata_model::matching::VectorMatching;

/// A metric query.
#[derive(Debug, Clone)]
pub enum MetricExpr {
    Range {
        op: RangeOp,
        param: Option<f64>,
        range: Box<LogRange>,
        grouping: Option<Grouping>,
    },
    Vector {
        op: VectorOp,
        param: Option<f64>,
        grouping: Option<Grouping>,
        expr: Box<MetricExpr>,
    },
    Binary {
        op: BinOp,
        return_bool: bool,
        matching: VectorMatching,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
    },
    Literal(f64),
    /// `vector(1)`.
    VectorLiteral(f64),
}

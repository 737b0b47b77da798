//! LogQL: Loki's query language, parsed by our own parser (errors point at
//! the offending line and column) and evaluated over any [`LogSource`].
//!
//! - [`parser`]: lexer and recursive-descent parser into the [`ast`].
//! - [`pipeline`]: per-entry stages (filters, parsers, formatters).
//! - [`template`]: the Go-template subset of `line_format`/`label_format`.
//! - [`shard`]: metric queries cut by stream shards for the query-frontend,
//!   and the merge of their answers.
//! - [`eval`]: log queries (limit, direction) and metric queries (range and
//!   vector aggregations, binary operators) over steps.
//!
//! Storage does the selective part: stream matchers, the time range and the
//! leading line filters go to [`LogSource::select`], which the querier runs as
//! DataFusion scans over Parquet log blocks plus the ingester's head.

pub mod ast;
pub mod eval;
pub mod format;
pub mod parser;
pub mod pipeline;
pub mod shard;
pub mod template;

pub use ast::Expr;
pub use eval::{
    EvalError, LogSource, QueryParams, QueryResult, QueryStats, Selection, Series, evaluate,
    format_labels,
};
pub use parser::{ParseError, parse};
pub use pipeline::logfmt_pairs;
pub use strata_model::syntax::parse_stream_labels;

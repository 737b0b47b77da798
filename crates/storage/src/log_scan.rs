//! Log block scans: stream ids, the time range and line filters become
//! filters on `entries.parquet` (line filters as LIKE and regexp_like), so
//! DataFusion skips row groups and pages that cannot match.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use datafusion::functions::expr_fn::regexp_like;
use datafusion::logical_expr::expr::Like;
use datafusion::prelude::{Expr, ParquetReadOptions, ident, lit, not};
use futures::TryStreamExt;
use strata_model::logs::{Direction, EntrySize, LineFilter, LogStream};
use strata_model::{Labels, Matcher};

use crate::StorageError;
use crate::block::{BlockMeta, Signal};
use crate::logblock;
use crate::reader::{BlockReader, ids_filter};

impl BlockReader {
    /// Entries in `[start_ns, end_ns)` of the log block's streams that match
    /// `matchers` and pass every line filter. The stream ids, time range and
    /// line filters are pushed into the Parquet scan; with a limit, DataFusion
    /// keeps only the `n` newest (backward) or oldest (forward) entries.
    #[allow(clippy::too_many_arguments)]
    pub async fn select_log_entries(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        line_filters: &[LineFilter],
        start_ns: i64,
        end_ns: i64,
        limit: Option<(usize, Direction)>,
    ) -> Result<Vec<LogStream>, StorageError> {
        let Some((mut df, streams, joined)) = self
            .scan_entries(tenant, meta, matchers, line_filters, (start_ns, end_ns))
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut by_id: HashMap<u32, LogStream> = streams
            .into_iter()
            .map(|(id, labels)| {
                (
                    id,
                    LogStream {
                        labels,
                        entries: Vec::new(),
                    },
                )
            })
            .collect();
        if let Some((n, dir)) = limit {
            let newest_first = dir == Direction::Backward;
            df = df
                .sort(vec![ident("ts").sort(!newest_first, false)])?
                .limit(0, Some(n))?;
        }
        if !joined {
            // After the limit: only the lines returned are put together.
            df = with_lines(df)?;
        }
        let mut stream = df.execute_stream().await?;
        while let Some(batch) = stream.try_next().await? {
            logblock::batch_entries(&batch, |id, e| {
                if let Some(s) = by_id.get_mut(&id) {
                    s.entries.push(e);
                }
            })?;
        }
        let mut out: Vec<LogStream> = by_id
            .into_values()
            .filter(|s| !s.entries.is_empty())
            .collect();
        for s in &mut out {
            // Sorted within a stream in the file; a limited scan returns them by time across streams.
            s.entries.sort_by_key(|e| e.ts);
        }
        Ok(out)
    }

    /// Sizes of the entries of the streams matching `matchers` in
    /// `[start_ns, end_ns)`, per stream oldest first: what index statistics
    /// and volumes need, without holding any line.
    pub async fn select_log_sizes(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        (start_ns, end_ns): (i64, i64),
    ) -> Result<Vec<(Labels, Vec<EntrySize>)>, StorageError> {
        let Some((df, streams, joined)) = self
            .scan_entries(tenant, meta, matchers, &[], (start_ns, end_ns))
            .await?
        else {
            return Ok(Vec::new());
        };
        let df = if joined { df } else { with_lines(df)? };
        let mut by_id: HashMap<u32, (Labels, Vec<EntrySize>)> = streams
            .into_iter()
            .map(|(id, labels)| (id, (labels, Vec::new())))
            .collect();
        let mut stream = df
            .select_columns(&["stream_id", "ts", "line"])?
            .execute_stream()
            .await?;
        while let Some(batch) = stream.try_next().await? {
            logblock::batch_entry_sizes(&batch, |id, size| {
                if let Some((_, sizes)) = by_id.get_mut(&id) {
                    sizes.push(size);
                }
            })?;
        }
        Ok(by_id
            .into_values()
            .filter(|(_, sizes)| !sizes.is_empty())
            .collect())
    }

    /// The scan of a log block's entries of matching streams in the range
    /// that pass the line filters, those streams by id, and whether the scan
    /// has a `line` column yet (`with_lines` adds it); `None` when no
    /// stream matches.
    async fn scan_entries(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        line_filters: &[LineFilter],
        (start_ns, end_ns): (i64, i64),
    ) -> Result<Option<(DataFrame, Vec<(u32, Labels)>, bool)>, StorageError> {
        let streams = self.select_streams(tenant, meta, matchers).await?;
        if streams.is_empty() {
            return Ok(None);
        }
        let ts = ident("ts");
        let mut filter = ids_filter("stream_id", streams.iter().map(|&(id, _)| id))
            .and(ts.clone().gt_eq(lit(start_ns)))
            .and(ts.lt(lit(end_ns)));
        let mut df = self
            .ctx
            .read_parquet(
                Self::url(Signal::Logs, tenant, meta, "entries.parquet"),
                ParquetReadOptions::default(),
            )
            .await?;
        if !df.schema().has_column_with_unqualified_name("tpl") {
            // Written before line templates: the line is a column.
            for f in line_filters {
                filter = filter.and(line_filter_expr(f, ident("line")));
            }
            return Ok(Some((df.filter(filter)?, streams, true)));
        }
        // Filters that can run on the template and variable columns do, in
        // the Parquet scan; lines are put back together only for the rows
        // they keep, and the other filters run over those lines.
        let mut on_lines = Vec::new();
        for f in line_filters {
            match templated_filter_expr(f) {
                Some(e) => filter = filter.and(e),
                None => on_lines.push(f),
            }
        }
        df = df.filter(filter)?;
        let Some(on_lines) = on_lines
            .into_iter()
            .map(|f| line_filter_expr(f, ident("line")))
            .reduce(Expr::and)
        else {
            return Ok(Some((df, streams, false)));
        };
        Ok(Some((with_lines(df)?.filter(on_lines)?, streams, true)))
    }
}

/// A templated log block's scan with its lines put back together as the
/// `line` column, in place of the columns they come from.
fn with_lines(df: DataFrame) -> Result<DataFrame, StorageError> {
    let parts = logblock::line_source_columns()
        .into_iter()
        .map(ident)
        .collect();
    Ok(df.select(vec![
        ident("stream_id"),
        ident("ts"),
        ScalarUDF::from(JoinLines::default())
            .call(parts)
            .alias("line"),
        ident("metadata"),
    ])?)
}

/// A line filter as a filter on the template and variable columns of a
/// templated log block, when it can be one: a substring of ASCII letters
/// and digits only, with at least one character other than digits, `T`
/// and `Z`. A variable is a maximal run of letters and digits, so such a
/// substring of a line lies either in the template's text or inside one
/// variable, never across both (`vrest` separates its variables by
/// spaces); and the runs of letters and digits of a timestamp written from
/// the entry's time hold nothing else, so it cannot lie there. `None` for
/// other filters, which need the whole line.
fn templated_filter_expr(f: &LineFilter) -> Option<Expr> {
    let in_any_part = |text: &str| -> Option<Expr> {
        if !text.bytes().all(|b| b.is_ascii_alphanumeric())
            || text
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'T' || b == b'Z')
        {
            return None;
        }
        logblock::line_source_columns()
            .into_iter()
            .filter(|c| c != "ts")
            .map(|c| line_filter_expr(&LineFilter::Contains(text.to_string()), ident(c)).is_true())
            .reduce(Expr::or)
    };
    match f {
        LineFilter::Contains(t) => in_any_part(t),
        LineFilter::NotContains(t) => in_any_part(t).map(not),
        LineFilter::Regex(_) | LineFilter::NotRegex(_) => None,
        LineFilter::Any(alts) => alts
            .iter()
            .map(templated_filter_expr)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .reduce(Expr::or),
    }
}

/// `strata_log_line(tpl, v0, .., vrest)`: the lines of a templated log
/// block, put back together (`logblock::join_lines`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JoinLines {
    signature: Signature,
}

impl Default for JoinLines {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JoinLines {
    fn name(&self) -> &str {
        "strata_log_line"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let columns = ColumnarValue::values_to_arrays(&args.args)?;
        let lines =
            logblock::join_lines(&columns).map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(Arc::new(lines)))
    }
}

/// Translates a line filter into a filter on the `line` column. Substring
/// filters become `LIKE '%text%'`, which Arrow runs as a vectorised search.
fn line_filter_expr(f: &LineFilter, line: Expr) -> Expr {
    fn like_pattern(text: &str) -> String {
        let mut p = String::with_capacity(text.len() + 2);
        p.push('%');
        for c in text.chars() {
            if matches!(c, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        p
    }
    let like = |text: &str, negated: bool| {
        Expr::Like(Like::new(
            negated,
            Box::new(line.clone()),
            Box::new(lit(like_pattern(text))),
            Some('\\'),
            false,
        ))
    };
    match f {
        LineFilter::Contains(t) => like(t, false),
        LineFilter::NotContains(t) => like(t, true),
        LineFilter::Regex(re) => regexp_like(line, lit(re.as_str().to_string()), None),
        LineFilter::NotRegex(re) => not(regexp_like(line, lit(re.as_str().to_string()), None)),
        LineFilter::Any(alts) => alts
            .iter()
            .map(|a| line_filter_expr(a, line.clone()))
            .reduce(Expr::or)
            .unwrap_or(lit(false)),
    }
}

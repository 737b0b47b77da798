//! Log block scans: stream ids, the time range and line filters become
//! filters on `entries.parquet` (line filters as LIKE and regexp_like), so
//! DataFusion skips row groups and pages that cannot match.

use std::collections::HashMap;

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
        let Some((mut df, streams)) = self
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
        let Some((df, streams)) = self
            .scan_entries(tenant, meta, matchers, &[], (start_ns, end_ns))
            .await?
        else {
            return Ok(Vec::new());
        };
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
    /// that pass the line filters, and those streams by id; `None` when no
    /// stream matches.
    async fn scan_entries(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        line_filters: &[LineFilter],
        (start_ns, end_ns): (i64, i64),
    ) -> Result<Option<(datafusion::dataframe::DataFrame, Vec<(u32, Labels)>)>, StorageError> {
        let streams = self.select_streams(tenant, meta, matchers).await?;
        if streams.is_empty() {
            return Ok(None);
        }
        let ts = ident("ts");
        let mut filter = ids_filter("stream_id", streams.iter().map(|&(id, _)| id))
            .and(ts.clone().gt_eq(lit(start_ns)))
            .and(ts.lt(lit(end_ns)));
        for f in line_filters {
            filter = filter.and(line_filter_expr(f, ident("line")));
        }
        let df = self
            .ctx
            .read_parquet(
                Self::url(Signal::Logs, tenant, meta, "entries.parquet"),
                ParquetReadOptions::default(),
            )
            .await?
            .filter(filter)?;
        Ok(Some((df, streams)))
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

//! Log blocks: immutable Parquet files covering one time range of one
//! tenant's logs, at `<tenant>/logs/<ULID>/{streams.parquet, entries.parquet, meta.json}`.
//!
//! `streams.parquet` has one row per stream, sorted by labels: a `stream_id`
//! and one nullable `l_<name>` column per label name, the layout of
//! `series.parquet`, so stream selectors prune the same way.
//! `entries.parquet` has one row per log line, sorted by `(stream_id, ts)`:
//! `stream_id`, `ts` (ns), the line as its template (`tpl`, see
//! [`crate::line_template`]) and variables (`v0`..`v15` for the first 16,
//! `vrest` for the others, space-separated), and `metadata` (structured
//! metadata as a JSON object, null when empty). zstd with page statistics
//! and the page index, so a stream-id and time-range filter skips most
//! pages; line filters of letters and digits run over the template and
//! variable columns, the others over lines put back together
//! ([`join_lines`]). Blocks written before templates hold the whole line in
//! a `line` column instead, and are read as they are.

use std::sync::Arc;

use std::collections::HashSet;
use std::ops::Range;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, StringBuilder, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use object_store::ObjectStore;
use strata_model::logs::{EntrySize, LogEntry};
use strata_model::{Label, Labels};

use crate::StorageError;
use crate::block::{
    BlockMeta, BlockStats, LabelRows, SERIES_PER_ROW_GROUP, Signal, StrCol, encode_parquet,
    label_names, upload_files,
};
use crate::line_template;

/// Entries per row group (~10 MB of lines): big enough for zstd to find
/// repetition, small enough that a narrow time range or one stream reads little.
pub(crate) const ENTRIES_PER_ROW_GROUP: usize = 64 * 1024;

/// The two Parquet files of a log block, encoded in memory.
pub struct EncodedLogBlock {
    pub meta: BlockMeta,
    pub streams_parquet: Vec<u8>,
    pub entries_parquet: Vec<u8>,
}

/// Encodes streams (entries time-ordered) as a log block covering
/// `[min_time, max_time)` in milliseconds. Empty streams are skipped.
pub fn encode_log_block(
    streams: &[(Labels, Vec<LogEntry>)],
    min_time: i64,
    max_time: i64,
) -> Result<EncodedLogBlock, StorageError> {
    let mut streams: Vec<&(Labels, Vec<LogEntry>)> =
        streams.iter().filter(|(_, e)| !e.is_empty()).collect();
    streams.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rows = LabelRows::new(&label_names(streams.iter().map(|(l, _)| l)));
    for (i, (labels, _)) in streams.iter().enumerate() {
        rows.append(i as u32, labels);
    }
    let streams_batch = rows.finish("stream_id")?;

    let total: usize = streams.iter().map(|(_, e)| e.len()).sum();
    let entries_parquet = encode_entries(&streams)?;
    let streams_parquet = encode_parquet(&streams_batch, SERIES_PER_ROW_GROUP)?;
    let stats = BlockStats {
        num_series: streams.len() as u64,
        num_samples: total as u64,
        num_chunks: 0,
        num_bytes: (streams_parquet.len() + entries_parquet.len()) as u64,
    };
    Ok(EncodedLogBlock {
        meta: BlockMeta::new(min_time, max_time, stats),
        streams_parquet,
        entries_parquet,
    })
}

/// Variables with a column of their own; a line's later variables share
/// `vrest`. Sixteen measured best on realistic logs (docs/benchmarks.md):
/// fewer leave fields of JSON access logs mixed in `vrest`, more spread the
/// variables of unlike templates over the same columns.
pub(crate) const VAR_COLUMNS: usize = 16;

/// The name of variable column `i` (`VAR_COLUMNS` is `vrest`).
fn var_column(i: usize) -> String {
    if i < VAR_COLUMNS {
        format!("v{i}")
    } else {
        "vrest".to_string()
    }
}

/// Column settings of `entries.parquet`, chosen from `sample`, the first
/// rows to be written. Templates repeat, so they are a dictionary; a
/// variable column is one when its values repeat (status codes, hosts, the
/// octets of addresses: fewer distinct values than an eighth of the rows)
/// and otherwise plain with lengths delta-coded, which zstd compresses
/// better than dictionary indexes of near-unique values (ids, latencies).
/// zstd level 9 over 8 MB pages; timestamps are delta-encoded.
pub(crate) fn entries_props(sample: &RecordBatch) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(9).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ENTRIES_PER_ROW_GROUP))
        .set_data_page_size_limit(8 << 20)
        .set_dictionary_page_size_limit(4 << 20)
        .set_column_dictionary_enabled(ColumnPath::from("ts"), false)
        .set_column_encoding(ColumnPath::from("ts"), Encoding::DELTA_BINARY_PACKED);
    for i in 0..=VAR_COLUMNS {
        let name = var_column(i);
        let repeats = sample
            .column_by_name(&name)
            .and_then(|c| StrCol::new(c).ok())
            .is_some_and(|col| {
                let mut distinct = HashSet::new();
                for row in 0..sample.num_rows() {
                    if let Some(v) = col.get(row) {
                        distinct.insert(v);
                    }
                }
                distinct.len() * 8 < sample.num_rows()
            });
        let path = ColumnPath::from(name.as_str());
        props = props.set_column_dictionary_enabled(path.clone(), repeats);
        if !repeats {
            props = props.set_column_encoding(path, Encoding::DELTA_LENGTH_BYTE_ARRAY);
        }
    }
    props.build()
}

/// Writes `entries.parquet` one row group at a time, so no Arrow array
/// grows past its 2 GiB offset limit and memory stays bounded by a row
/// group. The first row group chooses the column settings.
fn encode_entries(streams: &[&(Labels, Vec<LogEntry>)]) -> Result<Vec<u8>, StorageError> {
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut rows = EntryRows::default();
    let entries = streams
        .iter()
        .enumerate()
        .flat_map(|(i, (_, entries))| entries.iter().map(move |e| (i as u32, e)));
    let mut entries = entries.peekable();
    while let Some((id, e)) = entries.next() {
        rows.append(id, e.ts, &e.line, metadata_json(&e.metadata).as_deref());
        if rows.len() < ENTRIES_PER_ROW_GROUP && entries.peek().is_some() {
            continue;
        }
        let batch = rows.finish()?;
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(ArrowWriter::try_new(
                Vec::new(),
                entries_schema(),
                Some(entries_props(&batch)),
            )?),
        };
        w.write(&batch)?;
    }
    let w = match writer {
        Some(w) => w,
        None => {
            let empty = RecordBatch::new_empty(entries_schema());
            ArrowWriter::try_new(Vec::new(), entries_schema(), Some(entries_props(&empty)))?
        }
    };
    // Writes the footer.
    Ok(w.into_inner()?)
}

/// Schema of `entries.parquet`.
pub(crate) fn entries_schema() -> Arc<Schema> {
    let mut fields = vec![
        Field::new("stream_id", DataType::UInt32, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("tpl", DataType::Utf8, false),
    ];
    fields.extend((0..=VAR_COLUMNS).map(|i| Field::new(var_column(i), DataType::Utf8, true)));
    fields.push(Field::new("metadata", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// The columns a line is put back together from, in `line_column`'s order;
/// a reader projects these (or `line`, in blocks written before templates).
pub fn line_source_columns() -> Vec<String> {
    ["ts", "tpl"]
        .into_iter()
        .map(str::to_string)
        .chain((0..=VAR_COLUMNS).map(var_column))
        .collect()
}

/// Structured metadata as stored: a JSON object, `None` when empty.
pub(crate) fn metadata_json(metadata: &Labels) -> Option<String> {
    if metadata.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// Rows of `entries.parquet` being built.
pub(crate) struct EntryRows {
    ids: Vec<u32>,
    ts: Vec<i64>,
    templates: StringBuilder,
    vars: Vec<StringBuilder>,
    metadata: StringBuilder,
    template: String,
    ranges: Vec<Range<usize>>,
    deltas: String,
    rest: String,
}

impl Default for EntryRows {
    fn default() -> Self {
        Self {
            ids: Vec::new(),
            ts: Vec::new(),
            templates: StringBuilder::new(),
            vars: (0..=VAR_COLUMNS).map(|_| StringBuilder::new()).collect(),
            metadata: StringBuilder::new(),
            template: String::new(),
            ranges: Vec::new(),
            deltas: String::new(),
            rest: String::new(),
        }
    }
}

impl EntryRows {
    /// Appends one entry of stream `id`; `metadata` is the stored JSON.
    pub(crate) fn append(&mut self, id: u32, ts: i64, line: &str, metadata: Option<&str>) {
        self.ids.push(id);
        self.ts.push(ts);
        line_template::split(
            line,
            ts,
            &mut self.template,
            &mut self.ranges,
            &mut self.deltas,
        );
        self.templates.append_value(&self.template);
        let var = |r| line_template::var(line, &self.deltas, r);
        for (i, column) in self.vars[..VAR_COLUMNS].iter_mut().enumerate() {
            column.append_option(self.ranges.get(i).map(var));
        }
        if self.ranges.len() > VAR_COLUMNS {
            // Variables after the first are runs of letters and digits, so
            // a space separates them unambiguously.
            self.rest.clear();
            for (j, r) in self.ranges[VAR_COLUMNS..].iter().enumerate() {
                if j > 0 {
                    self.rest.push(' ');
                }
                self.rest.push_str(var(r));
            }
            self.vars[VAR_COLUMNS].append_value(&self.rest);
        } else {
            self.vars[VAR_COLUMNS].append_null();
        }
        self.metadata.append_option(metadata);
    }

    /// Rows appended since the last `finish`.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The rows appended since the last `finish`, as a batch.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, StorageError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(std::mem::take(&mut self.ids))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.ts))),
            Arc::new(self.templates.finish()),
        ];
        columns.extend(
            self.vars
                .iter_mut()
                .map(|v| Arc::new(v.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.metadata.finish()));
        Ok(RecordBatch::try_new(entries_schema(), columns)?)
    }
}

/// The lines of a batch holding `line_source_columns()` (in that order),
/// put back together.
pub fn join_lines(columns: &[ArrayRef]) -> Result<StringArray, StorageError> {
    let [ts, tpl, vars @ ..] = columns else {
        return Err(StorageError::Format("log line columns missing"));
    };
    let ts = ts
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or(StorageError::Format("entries ts is not Int64"))?;
    if vars.len() != VAR_COLUMNS + 1 {
        return Err(StorageError::Format("log line variable columns missing"));
    }
    let templates = StrCol::new(tpl)?;
    let vars = vars
        .iter()
        .map(StrCol::new)
        .collect::<Result<Vec<_>, _>>()?;
    let (fixed, rest) = vars.split_at(VAR_COLUMNS);
    let rest = &rest[0];
    let rows = tpl.len();
    // Lines are their templates and variables, and timestamps of at most
    // 30 bytes in place of two-byte stand-ins: one allocation.
    let bytes = templates.total_len() + vars.iter().map(StrCol::total_len).sum::<usize>();
    let mut out = StringBuilder::with_capacity(rows, bytes + rows * 32);
    let mut parsed = line_template::Template::default();
    for row in 0..rows {
        let Some(template) = templates.get(row) else {
            out.append_null();
            continue;
        };
        if parsed.text() != template {
            parsed.parse(template)?;
        }
        let named = fixed.iter().map_while(|c| c.get(row));
        let others = rest.get(row).into_iter().flat_map(|r| r.split(' '));
        // Written straight into the array's buffer; the empty append ends the value.
        parsed.join(ts.value(row), named.chain(others), &mut out)?;
        out.append_value("");
    }
    Ok(out.finish())
}

/// An `entries.parquet` batch as `stream_id`, `ts`, `line` and `metadata`
/// (what blocks written before line templates hold), lines put back
/// together. Columns other than these are dropped.
pub(crate) fn entries_with_lines(batch: RecordBatch) -> Result<RecordBatch, StorageError> {
    let col = |name: &'static str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or(StorageError::Format("entries column missing"))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::UInt32, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("line", DataType::Utf8, true),
        Field::new("metadata", DataType::Utf8, true),
    ]));
    let line = line_column(&batch)?;
    let line = match line.data_type() {
        DataType::Utf8 => line,
        _ => datafusion::arrow::compute::cast(&line, &DataType::Utf8)?,
    };
    Ok(RecordBatch::try_new(
        schema,
        vec![col("stream_id")?, col("ts")?, line, col("metadata")?],
    )?)
}

/// The lines of an `entries.parquet` batch: its `line` column, or the
/// lines put back together from their templates and variables.
pub fn line_column(batch: &RecordBatch) -> Result<ArrayRef, StorageError> {
    if let Some(line) = batch.column_by_name("line") {
        return Ok(line.clone());
    }
    let columns = line_source_columns()
        .iter()
        .map(|name| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or(StorageError::Format("log line columns missing"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(join_lines(&columns)?))
}

/// Uploads a log block: data files first, `meta.json` last.
pub async fn upload_log_block(
    store: &dyn ObjectStore,
    tenant: &str,
    block: &EncodedLogBlock,
) -> Result<(), StorageError> {
    upload_files(
        store,
        Signal::Logs,
        tenant,
        &block.meta,
        [
            ("entries.parquet", &block.entries_parquet),
            ("streams.parquet", &block.streams_parquet),
        ],
    )
    .await
}

/// The `stream_id`, `ts` and `line` columns of an `entries.parquet` batch.
fn entry_columns(batch: &RecordBatch) -> Result<(&UInt32Array, &Int64Array), StorageError> {
    let col = |name: &'static str| {
        batch
            .column_by_name(name)
            .ok_or(StorageError::Format("entries column missing"))
    };
    let ids = col("stream_id")?
        .as_any()
        .downcast_ref::<UInt32Array>()
        .ok_or(StorageError::Format("entries stream_id is not UInt32"))?;
    let ts = col("ts")?
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or(StorageError::Format("entries ts is not Int64"))?;
    Ok((ids, ts))
}

/// Decodes the rows of an `entries.parquet` batch, calling `sink(stream_id, entry)`.
pub fn batch_entries(
    batch: &RecordBatch,
    mut sink: impl FnMut(u32, LogEntry),
) -> Result<(), StorageError> {
    let (ids, ts) = entry_columns(batch)?;
    let line_array = line_column(batch)?;
    let lines = StrCol::new(&line_array)?;
    let metadata = match batch.column_by_name("metadata") {
        Some(c) => Some(StrCol::new(c)?),
        None => None,
    };
    for row in 0..batch.num_rows() {
        let md = match metadata.as_ref().and_then(|m| m.get(row)) {
            Some(json) => parse_metadata(json)?,
            None => Labels::default(),
        };
        sink(
            ids.value(row),
            LogEntry {
                ts: ts.value(row),
                line: lines.get(row).unwrap_or_default().to_string(),
                metadata: md,
            },
        );
    }
    Ok(())
}

/// Calls `sink(stream_id, size)` for every row of an entries batch with
/// `stream_id`, `ts` and `line` columns, without copying lines.
pub fn batch_entry_sizes(
    batch: &RecordBatch,
    mut sink: impl FnMut(u32, EntrySize),
) -> Result<(), StorageError> {
    let (ids, ts) = entry_columns(batch)?;
    let line_array = line_column(batch)?;
    let lines = StrCol::new(&line_array)?;
    for row in 0..batch.num_rows() {
        let line = lines.get(row).unwrap_or_default();
        sink(ids.value(row), EntrySize::of(ts.value(row), line));
    }
    Ok(())
}

fn parse_metadata(json: &str) -> Result<Labels, StorageError> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)?;
    Ok(Labels::new(
        map.into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Label::new(k, s),
                other => Label::new(k, other.to_string()),
            })
            .collect(),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use strata_model::logs::LineFilter;

    /// `entries.parquet` as blocks written before line templates hold it:
    /// the whole line in a `line` column.
    pub(crate) fn legacy_entries(streams: &[(Labels, Vec<LogEntry>)]) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("stream_id", DataType::UInt32, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("line", DataType::Utf8, false),
            Field::new("metadata", DataType::Utf8, true),
        ]));
        let mut sorted: Vec<&(Labels, Vec<LogEntry>)> =
            streams.iter().filter(|(_, e)| !e.is_empty()).collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let (mut ids, mut ts, mut lines, mut md) = (
            Vec::new(),
            Vec::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        for (i, (_, entries)) in sorted.iter().enumerate() {
            for e in entries {
                ids.push(i as u32);
                ts.push(e.ts);
                lines.append_value(&e.line);
                md.append_option(metadata_json(&e.metadata));
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt32Array::from(ids)),
                Arc::new(Int64Array::from(ts)),
                Arc::new(lines.finish()),
                Arc::new(md.finish()),
            ],
        )
        .expect("batch");
        let mut w = ArrowWriter::try_new(Vec::new(), schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.into_inner().expect("close")
    }

    /// Lines that test the split: no variables, many (past the columns and
    /// past the bound), the stand-in itself, non-ASCII text, ids inside
    /// words, empty lines, and "error" in the template, inside a variable
    /// and across a variable's edge.
    pub(crate) fn awkward_lines() -> Vec<String> {
        let mut lines: Vec<String> = [
            "GET /api/v1/users/123 status=500 error",
            "error500 in x9",
            "ERROR upper case only",
            "no digits but an error here",
            "\u{11} error 1",
            "ünïcödé error 2 ✓",
            "a-b_c",
            "",
            "err or 5",
            "xerror7y",
            "status=500",
            "ts=2026-12-07T08:00:01.123456Z level=info msg=\"cache lookup\" key=product:31 took=180µs",
            "{\"status\":200,\"request_id\":\"4f3ab2c1d0e9f8a7b6c5d4e3f2a1b0c9\",\"error\":null}",
            "java.lang.IllegalStateException: boom\n\tat com.example.Foo.bar(Foo.java:141)",
            "1970-01-01T00:00:00.000015Z at its entry's time",
            "1970-01-01 00:00:00,000002 a microsecond off",
        ]
        .map(str::to_string)
        .to_vec();
        let many: Vec<String> = (0..300).map(|i| format!("n{i}")).collect();
        lines.push(format!("{} error", many.join(" ")));
        lines.push(many[..20].join(","));
        lines
    }

    fn streams_of(lines: &[String]) -> Vec<(Labels, Vec<LogEntry>)> {
        ["a", "b"]
            .iter()
            .enumerate()
            .map(|(s, app)| {
                let entries = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| LogEntry {
                        ts: (i as i64 + 1) * 1_000 + s as i64,
                        line: l.clone(),
                        metadata: if i % 3 == 0 {
                            Labels::new(vec![Label::new("trace_id", format!("t{i}"))])
                        } else {
                            Labels::default()
                        },
                    })
                    .collect();
                (Labels::new(vec![Label::new("app", *app)]), entries)
            })
            .collect()
    }

    /// Whether a block's scan keeps exactly the lines each filter passes,
    /// with and without a limit, for both layouts.
    #[tokio::test]
    async fn line_filters_keep_exactly_the_matching_lines_in_both_layouts() {
        let lines = awkward_lines();
        let streams = streams_of(&lines);
        let re = |r: &str| LineFilter::Regex(regex::Regex::new(r).expect("regex"));
        let filters: Vec<Vec<LineFilter>> = vec![
            vec![],
            vec![LineFilter::Contains("error".into())],
            vec![LineFilter::NotContains("error".into())],
            vec![LineFilter::Contains("500".into())],
            vec![LineFilter::Contains("status=500".into())],
            vec![LineFilter::Contains("r o".into())],
            vec![LineFilter::Contains("".into())],
            vec![LineFilter::Contains("n299".into())],
            // A timestamp's text, and what its stored difference holds.
            vec![LineFilter::Contains("07T08".into())],
            vec![LineFilter::Contains("Z".into())],
            vec![LineFilter::Contains("T".into())],
            vec![LineFilter::Contains("123456Z".into())],
            vec![LineFilter::Contains("p1796".into())],
            vec![LineFilter::Contains("1796".into())],
            vec![LineFilter::NotContains("2026".into())],
            vec![LineFilter::Contains("ünï".into())],
            vec![re(r"err.r\d"), LineFilter::NotContains("x9".into())],
            vec![LineFilter::Any(vec![
                LineFilter::Contains("x9".into()),
                LineFilter::Contains("Foo".into()),
            ])],
            vec![LineFilter::Any(vec![
                LineFilter::Contains("x9".into()),
                LineFilter::Contains("ts=".into()),
            ])],
            vec![
                LineFilter::NotContains("5".into()),
                LineFilter::Contains("e".into()),
            ],
        ];
        for legacy in [false, true] {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let mut block = encode_log_block(&streams, 0, 1).expect("encode");
            if legacy {
                block.entries_parquet = legacy_entries(&streams);
            }
            upload_log_block(store.as_ref(), "t", &block)
                .await
                .expect("upload");
            let reader = crate::BlockReader::new(store);
            for fs in &filters {
                let want: Vec<&String> = lines
                    .iter()
                    .filter(|l| fs.iter().all(|f| f.matches(l)))
                    .collect();
                let got = reader
                    .select_log_entries("t", &block.meta, &[], fs, 0, i64::MAX, None)
                    .await
                    .expect("select");
                assert_eq!(got.len(), if want.is_empty() { 0 } else { 2 });
                for s in &got {
                    let got: Vec<&String> = s.entries.iter().map(|e| &e.line).collect();
                    assert_eq!(got, want, "legacy {legacy}, filters {fs:?}");
                    for e in &s.entries {
                        let i = (e.ts / 1_000 - 1) as usize;
                        assert_eq!(e.metadata, streams[0].1[i].metadata);
                    }
                }
                let limited = reader
                    .select_log_entries(
                        "t",
                        &block.meta,
                        &[],
                        fs,
                        0,
                        i64::MAX,
                        Some((3, strata_model::logs::Direction::Backward)),
                    )
                    .await
                    .expect("select");
                let n: usize = limited.iter().map(|s| s.entries.len()).sum();
                assert_eq!(n, (want.len() * 2).min(3), "legacy {legacy}, {fs:?}");
            }
            let sizes = reader
                .select_log_sizes("t", &block.meta, &[], (0, i64::MAX))
                .await
                .expect("sizes");
            let total: usize = sizes.iter().map(|(_, s)| s.len()).sum();
            assert_eq!(total, lines.len() * 2);
        }
    }

    #[test]
    fn templated_entries_are_smaller_than_whole_lines() {
        // A service's lines: one template, varying numbers.
        let lines: Vec<String> = (0..20_000u64)
            .map(|i| {
                format!(
                    "level=info msg=\"request served\" status={} duration={}ms bytes={}",
                    [200, 200, 200, 404, 500][(i % 5) as usize],
                    (i * 7919) % 1000,
                    (i * 104_729) % 100_000
                )
            })
            .collect();
        let streams = vec![(
            Labels::new(vec![Label::new("app", "x")]),
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| LogEntry {
                    ts: i as i64,
                    line: l.clone(),
                    metadata: Labels::default(),
                })
                .collect::<Vec<_>>(),
        )];
        let templated = encode_log_block(&streams, 0, 1).expect("encode");
        let legacy = legacy_entries(&streams);
        assert!(
            templated.entries_parquet.len() < legacy.len(),
            "{} vs {}",
            templated.entries_parquet.len(),
            legacy.len()
        );
    }

    #[test]
    fn join_lines_refuses_mismatched_columns() {
        let ts: ArrayRef = Arc::new(Int64Array::from(vec![0]));
        let tpl: ArrayRef = Arc::new(StringArray::from(vec!["a\u{11}b\u{11}"]));
        let mut columns = vec![ts, tpl];
        columns.push(Arc::new(StringArray::from(vec![Some("1")])));
        for _ in 1..=VAR_COLUMNS {
            columns.push(Arc::new(StringArray::from(vec![None::<&str>])));
        }
        assert!(join_lines(&columns).is_err(), "a variable short");
        assert!(join_lines(&columns[..4]).is_err(), "columns missing");
        columns[2] = Arc::new(StringArray::from(vec![Some("1")]));
        columns[3] = Arc::new(StringArray::from(vec![Some("2")]));
        let lines = join_lines(&columns).expect("join");
        assert_eq!(lines.value(0), "a1b2");
    }
}

//! Log blocks: immutable Parquet files covering one time range of one
//! tenant's logs, at `<tenant>/logs/<ULID>/{streams.parquet, entries.parquet, meta.json}`.
//!
//! `streams.parquet` has one row per stream, sorted by labels: a `stream_id`
//! and one nullable `l_<name>` column per label name, the layout of
//! `series.parquet`, so stream selectors prune the same way.
//! `entries.parquet` has one row per log line, sorted by `(stream_id, ts)`:
//! `stream_id`, `ts` (ns), `line`, and `metadata` (structured metadata as a
//! JSON object, null when empty). zstd with page statistics and the page
//! index, so a stream-id and time-range filter skips most pages and line
//! filters run vectorised over the `line` column.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringBuilder, UInt32Array};
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

/// Column settings of `entries.parquet`: lines are near-unique, so no
/// dictionary (it would be abandoned after its first megabyte anyway) and
/// zstd level 9 over 8 MB pages, which out-compresses `gzip -6` on the same
/// lines by 10% where level 3 fell short of it (docs/benchmarks.md);
/// timestamps are delta-encoded.
pub(crate) fn entries_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(9).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ENTRIES_PER_ROW_GROUP))
        .set_data_page_size_limit(8 << 20)
        .set_column_dictionary_enabled(ColumnPath::from("line"), false)
        .set_column_dictionary_enabled(ColumnPath::from("ts"), false)
        .set_column_encoding(ColumnPath::from("ts"), Encoding::DELTA_BINARY_PACKED)
        .build()
}

/// Writes `entries.parquet` one row group at a time, so no Arrow array
/// grows past its 2 GiB offset limit and memory stays bounded by a row group.
fn encode_entries(streams: &[&(Labels, Vec<LogEntry>)]) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, entries_schema(), Some(entries_props()))?;
    let mut rows = EntryRows::default();
    for (i, (_, entries)) in streams.iter().enumerate() {
        for e in entries {
            rows.append(
                i as u32,
                e.ts,
                &e.line,
                metadata_json(&e.metadata).as_deref(),
            );
            if rows.len() == ENTRIES_PER_ROW_GROUP {
                w.write(&rows.finish()?)?;
            }
        }
    }
    if rows.len() > 0 {
        w.write(&rows.finish()?)?;
    }
    w.close()?;
    Ok(buf)
}

/// Schema of `entries.parquet`.
pub(crate) fn entries_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::UInt32, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("line", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, true),
    ]))
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
#[derive(Default)]
pub(crate) struct EntryRows {
    ids: Vec<u32>,
    ts: Vec<i64>,
    lines: StringBuilder,
    metadata: StringBuilder,
}

impl EntryRows {
    /// Appends one entry of stream `id`; `metadata` is the stored JSON.
    pub(crate) fn append(&mut self, id: u32, ts: i64, line: &str, metadata: Option<&str>) {
        self.ids.push(id);
        self.ts.push(ts);
        self.lines.append_value(line);
        self.metadata.append_option(metadata);
    }

    /// Rows appended since the last `finish`.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The rows appended since the last `finish`, as a batch.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, StorageError> {
        Ok(RecordBatch::try_new(
            entries_schema(),
            vec![
                Arc::new(UInt32Array::from(std::mem::take(&mut self.ids))),
                Arc::new(Int64Array::from(std::mem::take(&mut self.ts))),
                Arc::new(self.lines.finish()),
                Arc::new(self.metadata.finish()),
            ],
        )?)
    }
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
fn entry_columns(
    batch: &RecordBatch,
) -> Result<(&UInt32Array, &Int64Array, StrCol<'_>), StorageError> {
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
    let lines = StrCol::new(col("line")?)?;
    Ok((ids, ts, lines))
}

/// Decodes the rows of an `entries.parquet` batch, calling `sink(stream_id, entry)`.
pub fn batch_entries(
    batch: &RecordBatch,
    mut sink: impl FnMut(u32, LogEntry),
) -> Result<(), StorageError> {
    let (ids, ts, lines) = entry_columns(batch)?;
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
    let (ids, ts, lines) = entry_columns(batch)?;
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

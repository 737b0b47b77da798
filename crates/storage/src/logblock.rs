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

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringBuilder, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use object_store::ObjectStore;
use strata_model::logs::LogEntry;
use strata_model::{Label, Labels};

use crate::StorageError;
use crate::block::{
    BLOCK_FORMAT_VERSION, BlockCompaction, BlockMeta, BlockStats, Signal, StrCol, Tier,
    encode_parquet, label_columns, upload_files,
};

/// Entries per row group (~10 MB of lines): big enough for zstd to find
/// repetition, small enough that a narrow time range or one stream reads little.
const ENTRIES_PER_ROW_GROUP: usize = 64 * 1024;

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
    let (label_fields, label_cols) = label_columns(streams.iter().map(|(l, _)| l));
    let mut fields = vec![Field::new("stream_id", DataType::UInt32, false)];
    fields.extend(label_fields);
    let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from_iter_values(
        0..streams.len() as u32,
    ))];
    columns.extend(label_cols);
    let streams_batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;

    let total: usize = streams.iter().map(|(_, e)| e.len()).sum();
    let entries_parquet = encode_entries(&streams)?;
    let streams_parquet = encode_parquet(&streams_batch, 8192)?;
    let ulid = ulid::Ulid::new().to_string();
    Ok(EncodedLogBlock {
        meta: BlockMeta {
            ulid: ulid.clone(),
            min_time,
            max_time,
            stats: BlockStats {
                num_series: streams.len() as u64,
                num_samples: total as u64,
                num_chunks: 0,
                num_bytes: (streams_parquet.len() + entries_parquet.len()) as u64,
            },
            compaction: BlockCompaction {
                level: 1,
                sources: vec![ulid],
            },
            version: BLOCK_FORMAT_VERSION,
            source: "ingester".into(),
            tier: Tier::Hot,
        },
        streams_parquet,
        entries_parquet,
    })
}

/// Column settings of `entries.parquet`: lines are near-unique, so no
/// dictionary (it would be abandoned after its first megabyte anyway) and
/// zstd level 9 over 8 MB pages, which out-compresses `gzip -6` on the same
/// lines by 10% where level 3 fell short of it (docs/benchmarks.md);
/// timestamps are delta-encoded.
fn entries_props() -> WriterProperties {
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
    let schema = Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::UInt32, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("line", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, true),
    ]));
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(entries_props()))?;
    let rows = streams
        .iter()
        .enumerate()
        .flat_map(|(i, (_, entries))| entries.iter().map(move |e| (i as u32, e)));
    let mut batch_rows: Vec<(u32, &LogEntry)> = Vec::with_capacity(ENTRIES_PER_ROW_GROUP);
    let mut flush = |rows: &mut Vec<(u32, &LogEntry)>| -> Result<(), StorageError> {
        if rows.is_empty() {
            return Ok(());
        }
        let bytes: usize = rows.iter().map(|(_, e)| e.line.len()).sum();
        let mut lines = StringBuilder::with_capacity(rows.len(), bytes);
        let mut metadata = StringBuilder::new();
        for (_, e) in rows.iter() {
            lines.append_value(&e.line);
            if e.metadata.is_empty() {
                metadata.append_null();
            } else {
                let map: serde_json::Map<String, serde_json::Value> = e
                    .metadata
                    .iter()
                    .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
                    .collect();
                metadata.append_value(serde_json::Value::Object(map).to_string());
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.ts))),
                Arc::new(lines.finish()),
                Arc::new(metadata.finish()),
            ],
        )?;
        w.write(&batch)?;
        rows.clear();
        Ok(())
    };
    for row in rows {
        batch_rows.push(row);
        if batch_rows.len() == ENTRIES_PER_ROW_GROUP {
            flush(&mut batch_rows)?;
        }
    }
    flush(&mut batch_rows)?;
    w.close()?;
    Ok(buf)
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

/// Decodes the rows of an `entries.parquet` batch, calling `sink(stream_id, entry)`.
pub fn batch_entries(
    batch: &RecordBatch,
    mut sink: impl FnMut(u32, LogEntry),
) -> Result<(), StorageError> {
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

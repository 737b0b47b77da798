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
use object_store::ObjectStore;
use strata_model::logs::LogEntry;
use strata_model::{Label, Labels};

use crate::StorageError;
use crate::block::{
    BLOCK_FORMAT_VERSION, BlockCompaction, BlockMeta, BlockStats, Signal, StrCol, encode_parquet,
    label_columns, upload_files,
};

/// Entries per row group: pages of a few MB of lines, so a narrow time range
/// or one stream reads little.
const ENTRIES_PER_ROW_GROUP: usize = 32 * 1024;

/// The two Parquet files of a log block, encoded in memory.
pub struct EncodedLogBlock {
    pub meta: BlockMeta,
    pub streams_parquet: Vec<u8>,
    pub entries_parquet: Vec<u8>,
}

/// Encodes streams (entries time-ordered) as a log block covering
/// `[min_time, max_time)` in milliseconds. Empty streams are skipped.
pub fn encode_log_block(
    mut streams: Vec<(Labels, Vec<LogEntry>)>,
    min_time: i64,
    max_time: i64,
) -> Result<EncodedLogBlock, StorageError> {
    streams.retain(|(_, e)| !e.is_empty());
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
    let mut ids = Vec::with_capacity(total);
    let mut ts = Vec::with_capacity(total);
    let line_bytes: usize = streams
        .iter()
        .flat_map(|(_, e)| e.iter().map(|x| x.line.len()))
        .sum();
    let mut lines = StringBuilder::with_capacity(total, line_bytes);
    let mut metadata = StringBuilder::new();
    for (i, (_, entries)) in streams.iter().enumerate() {
        for e in entries {
            ids.push(i as u32);
            ts.push(e.ts);
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
    }
    let entries_schema = Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::UInt32, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("line", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, true),
    ]));
    let entries_batch = RecordBatch::try_new(
        entries_schema,
        vec![
            Arc::new(UInt32Array::from(ids)),
            Arc::new(Int64Array::from(ts)),
            Arc::new(lines.finish()),
            Arc::new(metadata.finish()),
        ],
    )?;
    let streams_parquet = encode_parquet(&streams_batch, 8192)?;
    let entries_parquet = encode_parquet(&entries_batch, ENTRIES_PER_ROW_GROUP)?;
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
        },
        streams_parquet,
        entries_parquet,
    })
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

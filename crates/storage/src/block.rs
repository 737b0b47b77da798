//! Metric blocks: immutable Parquet files covering one time range of one
//! tenant, at `<tenant>/metrics/<ULID>/{series.parquet, chunks.parquet, meta.json}`.
//!
//! `series.parquet` has one row per series, sorted by metric name then labels:
//! a `series_id` and one nullable string column per label name (`l_<name>`),
//! dictionary-encoded with page statistics so label matchers prune row groups.
//! `chunks.parquet` has one row per compressed chunk, sorted by
//! `(series_id, min_t)`, so a series-id and time-range filter reads little.
//! `meta.json` is written last: a block without it is an incomplete upload
//! and is ignored by readers.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BinaryViewArray, Int64Array, RecordBatch,
    StringArray, StringBuilder, StringViewArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use strata_model::{Label, Labels, Sample, StepWindows};

use crate::StorageError;

/// Samples per stored chunk of a 2h block (2h at 7.5s): long enough to
/// compress well, short enough that a narrow time range decodes little.
pub const SAMPLES_PER_CHUNK: usize = 960;
/// Most samples per stored chunk, for blocks of 12h and longer (a day at
/// 15s). Compacted blocks hold old data, mostly read in wide ranges; their
/// chunks are longer because each chunk's codec header and the parquet row
/// cost as much for a constant series as its samples (a realistic day,
/// `cargo bench -p strata-storage --bench block_size`: 0.547 bytes of
/// values per sample in 960-sample chunks, 0.494 in 5,760-sample ones).
pub const MAX_SAMPLES_PER_CHUNK: usize = 6 * SAMPLES_PER_CHUNK;

/// Samples per chunk for a block covering `range_ms`: [`SAMPLES_PER_CHUNK`]
/// per 2h of range, at most [`MAX_SAMPLES_PER_CHUNK`].
pub fn samples_per_chunk(range_ms: i64) -> usize {
    let two_hours = 2 * 3_600_000;
    let most = (MAX_SAMPLES_PER_CHUNK / SAMPLES_PER_CHUNK) as i64;
    let factor = (range_ms / two_hours).clamp(1, most) as usize;
    SAMPLES_PER_CHUNK * factor
}
/// Prefix of label columns in `series.parquet`.
pub const LABEL_COLUMN_PREFIX: &str = "l_";
/// Version of the block layout this code writes.
pub const BLOCK_FORMAT_VERSION: u32 = 1;

/// Contents of `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: String,
    /// Inclusive lower bound of sample timestamps (ms).
    pub min_time: i64,
    /// Exclusive upper bound of sample timestamps (ms), as in Prometheus TSDB.
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: BlockCompaction,
    pub version: u32,
    /// Which component wrote the block (`ingester`, later `compactor`).
    pub source: String,
    /// Where the block lives: set from the bucket index or the listing,
    /// never written into `meta.json` (a copy moved to warm is identical).
    #[serde(default, skip_serializing_if = "Tier::is_hot")]
    pub tier: Tier,
}

/// Storage tier of a block: hot (where blocks are written) or warm (where
/// the compactor moves blocks older than `-blocks-storage.hot-max-age`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The primary store.
    #[default]
    Hot,
    /// The store for older blocks.
    Warm,
}

impl Tier {
    /// Whether this is the hot tier (the default, omitted in JSON).
    pub fn is_hot(&self) -> bool {
        *self == Tier::Hot
    }

    /// Lower-case name, as in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
        }
    }
}

/// Counts kept in `meta.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
    /// Bytes of `series.parquet` plus `chunks.parquet`.
    pub num_bytes: u64,
}

/// Compaction lineage, as in Prometheus TSDB metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockCompaction {
    pub level: u32,
    pub sources: Vec<String>,
}

/// The two kinds of data Strata stores, each in its own blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Metrics,
    Logs,
}

impl Signal {
    /// Directory name under the tenant.
    pub fn dir(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

/// Object-store directory of a tenant's blocks of one signal.
pub fn signal_prefix(signal: Signal, tenant: &str) -> ObjectPath {
    ObjectPath::from(format!("{tenant}/{}", signal.dir()))
}

/// The tenant whose top-level directory a bucket listing returned.
/// object_store percent-encodes characters it does not allow in a path
/// segment (`*`, which tenant IDs may contain), so the listed name is
/// decoded back; `None` when it is no tenant ID.
pub fn tenant_of_listing(prefix: &ObjectPath) -> Option<String> {
    let encoded = prefix.filename()?;
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|t| t.into_owned())
}

/// Object-store path of one file of a block.
pub fn block_file(signal: Signal, tenant: &str, ulid: &str, file: &str) -> ObjectPath {
    ObjectPath::from(format!("{tenant}/{}/{ulid}/{file}", signal.dir()))
}

pub(crate) fn writer_props(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        .build()
}

pub(crate) fn encode_parquet(
    batch: &RecordBatch,
    row_group_rows: usize,
) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(writer_props(row_group_rows)))?;
    w.write(batch)?;
    w.close()?;
    Ok(buf)
}

/// The two Parquet files of a block, encoded in memory.
pub struct EncodedBlock {
    pub meta: BlockMeta,
    pub series_parquet: Vec<u8>,
    pub chunks_parquet: Vec<u8>,
}

/// Encodes series (any order, samples time-ordered and within
/// `[min_time, max_time)`) as a block. Empty series are skipped.
pub fn encode_block(
    mut series: Vec<(Labels, Vec<Sample>)>,
    min_time: i64,
    max_time: i64,
) -> Result<EncodedBlock, StorageError> {
    series.retain(|(_, s)| !s.is_empty());
    series.sort_by(|a, b| a.0.cmp_metric_first(&b.0));

    let names = label_names(series.iter().map(|(l, _)| l));
    let mut rows = LabelRows::new(&names);
    let mut chunks = ChunkRows::new(samples_per_chunk(max_time.saturating_sub(min_time)));
    for (i, (labels, samples)) in series.iter().enumerate() {
        rows.append(i as u32, labels);
        chunks.append(i as u32, samples)?;
    }
    let series_batch = rows.finish("series_id")?;
    let chunk_batch = chunks.finish()?;
    let rows_per_group = chunks.rows_per_group();
    let mut stats = chunks.stats;
    stats.num_series = series.len() as u64;
    let series_parquet = encode_parquet(&series_batch, SERIES_PER_ROW_GROUP)?;
    let chunks_parquet = encode_parquet(&chunk_batch, rows_per_group)?;
    stats.num_bytes = (series_parquet.len() + chunks_parquet.len()) as u64;
    Ok(EncodedBlock {
        meta: BlockMeta::new(min_time, max_time, stats),
        series_parquet,
        chunks_parquet,
    })
}

/// Rows per row group of `series.parquet` and `streams.parquet`.
pub(crate) const SERIES_PER_ROW_GROUP: usize = 8192;
/// Rows per row group of `chunks.parquet`.
pub(crate) const CHUNKS_PER_ROW_GROUP: usize = 16384;

impl BlockMeta {
    /// The metadata of a new level-1 block written by an ingester.
    pub(crate) fn new(min_time: i64, max_time: i64, stats: BlockStats) -> Self {
        let ulid = ulid::Ulid::new().to_string();
        BlockMeta {
            ulid: ulid.clone(),
            min_time,
            max_time,
            stats,
            compaction: BlockCompaction {
                level: 1,
                sources: vec![ulid],
            },
            version: BLOCK_FORMAT_VERSION,
            source: "ingester".into(),
            tier: Tier::Hot,
        }
    }
}

/// Schema of `chunks.parquet`.
pub(crate) fn chunk_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt32, false),
        Field::new("min_t", DataType::Int64, false),
        Field::new("max_t", DataType::Int64, false),
        Field::new("num_samples", DataType::UInt32, false),
        Field::new("data", DataType::Binary, false),
    ]))
}

/// Rows of `chunks.parquet` being built: each series' samples cut into
/// chunks of `samples_per_chunk` and compressed.
pub(crate) struct ChunkRows {
    samples_per_chunk: usize,
    ids: Vec<u32>,
    min_t: Vec<i64>,
    max_t: Vec<i64>,
    num: Vec<u32>,
    data: BinaryBuilder,
    /// Totals over everything appended (not reset by `finish`).
    pub(crate) stats: BlockStats,
}

impl ChunkRows {
    pub(crate) fn new(samples_per_chunk: usize) -> Self {
        ChunkRows {
            samples_per_chunk: samples_per_chunk.max(1),
            ids: Vec::new(),
            min_t: Vec::new(),
            max_t: Vec::new(),
            num: Vec::new(),
            data: BinaryBuilder::new(),
            stats: BlockStats::default(),
        }
    }

    /// Rows per row group of `chunks.parquet`: fewer for longer chunks, so
    /// that a row group (what a merge holds per source) stays as large.
    pub(crate) fn rows_per_group(&self) -> usize {
        CHUNKS_PER_ROW_GROUP * SAMPLES_PER_CHUNK / self.samples_per_chunk.max(SAMPLES_PER_CHUNK)
    }

    /// Appends the chunks of series `id` (samples time-ordered).
    pub(crate) fn append(&mut self, id: u32, samples: &[Sample]) -> Result<(), StorageError> {
        for part in samples.chunks(self.samples_per_chunk) {
            self.data.append_value(crate::codec::encode(part)?);
            self.ids.push(id);
            self.min_t.push(part[0].t);
            self.max_t.push(part[part.len() - 1].t);
            self.num.push(part.len() as u32);
            self.stats.num_chunks += 1;
        }
        self.stats.num_samples += samples.len() as u64;
        Ok(())
    }

    /// Rows appended since the last `finish`.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The rows appended since the last `finish`, as a batch.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, StorageError> {
        Ok(RecordBatch::try_new(
            chunk_schema(),
            vec![
                Arc::new(UInt32Array::from(std::mem::take(&mut self.ids))),
                Arc::new(Int64Array::from(std::mem::take(&mut self.min_t))),
                Arc::new(Int64Array::from(std::mem::take(&mut self.max_t))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.num))),
                Arc::new(self.data.finish()),
            ],
        )?)
    }
}

/// Sorted, distinct label names of `sets`.
pub(crate) fn label_names<'a>(sets: impl Iterator<Item = &'a Labels>) -> Vec<String> {
    let mut names: Vec<&str> = sets
        .flat_map(|l| l.iter().map(|l| l.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(str::to_string).collect()
}

/// Rows of `series.parquet` / `streams.parquet` being built: an id and one
/// nullable `l_<name>` string column per label name.
pub(crate) struct LabelRows {
    names: Vec<String>,
    ids: Vec<u32>,
    columns: Vec<StringBuilder>,
}

impl LabelRows {
    /// Rows over the label names `names` (sorted; every appended set's
    /// names must be among them).
    pub(crate) fn new(names: &[String]) -> Self {
        Self {
            names: names.to_vec(),
            ids: Vec::new(),
            columns: names.iter().map(|_| StringBuilder::new()).collect(),
        }
    }

    /// The schema of the file, with `id_column` first.
    pub(crate) fn schema(&self, id_column: &str) -> Arc<Schema> {
        let mut fields = vec![Field::new(id_column, DataType::UInt32, false)];
        fields.extend(
            self.names
                .iter()
                .map(|n| Field::new(format!("{LABEL_COLUMN_PREFIX}{n}"), DataType::Utf8, true)),
        );
        Arc::new(Schema::new(fields))
    }

    /// Appends one row.
    pub(crate) fn append(&mut self, id: u32, labels: &Labels) {
        self.ids.push(id);
        // Label names are sorted in both the set and `names`: one merge pass.
        let mut it = labels.iter().peekable();
        for (col, name) in self.names.iter().enumerate() {
            match it.peek() {
                Some(l) if l.name == *name => {
                    self.columns[col].append_value(&l.value);
                    it.next();
                }
                _ => self.columns[col].append_null(),
            }
        }
    }

    /// Rows appended since the last `finish`.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The rows appended since the last `finish`, as a batch.
    pub(crate) fn finish(&mut self, id_column: &str) -> Result<RecordBatch, StorageError> {
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(UInt32Array::from(std::mem::take(&mut self.ids)))];
        columns.extend(
            self.columns
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        Ok(RecordBatch::try_new(self.schema(id_column), columns)?)
    }
}

/// Uploads a block: data files first, `meta.json` last, so a reader never
/// sees a block whose files are not all there.
pub async fn upload_block(
    store: &dyn ObjectStore,
    tenant: &str,
    block: &EncodedBlock,
) -> Result<(), StorageError> {
    upload_files(
        store,
        Signal::Metrics,
        tenant,
        &block.meta,
        [
            ("chunks.parquet", &block.chunks_parquet),
            ("series.parquet", &block.series_parquet),
        ],
    )
    .await
}

/// Puts a block's data files, then its `meta.json`.
pub(crate) async fn upload_files(
    store: &dyn ObjectStore,
    signal: Signal,
    tenant: &str,
    meta: &BlockMeta,
    files: [(&str, &Vec<u8>); 2],
) -> Result<(), StorageError> {
    for (i, (file, data)) in files.into_iter().enumerate() {
        let path = block_file(signal, tenant, &meta.ulid, file);
        store
            .put(&path, PutPayload::from(Bytes::from(data.clone())))
            .await
            .map_err(|e| StorageError::object(&path, e))?;
        if i == 0 {
            mid_upload(meta);
        }
    }
    put_meta(store, signal, tenant, meta).await
}

/// The crash point between a block's two data files, e.g.
/// "compactor.mid-upload": one data file written, no `meta.json`.
pub(crate) fn mid_upload(meta: &BlockMeta) {
    crate::crashpoint::crash_point(&format!("{}.mid-upload", meta.source));
}

/// Writes `meta.json`, which makes the block visible: only after its data files.
pub(crate) async fn put_meta(
    store: &dyn ObjectStore,
    signal: Signal,
    tenant: &str,
    meta: &BlockMeta,
) -> Result<(), StorageError> {
    let json = serde_json::to_vec_pretty(meta)?;
    let path = block_file(signal, tenant, &meta.ulid, "meta.json");
    store
        .put(&path, PutPayload::from(Bytes::from(json)))
        .await
        .map_err(|e| StorageError::object(&path, e))?;
    Ok(())
}

/// Reads the id (column `id_column`) and label set of every row of a
/// `series.parquet` or `streams.parquet` batch.
pub fn batch_labels(
    batch: &RecordBatch,
    id_column: &str,
) -> Result<Vec<(u32, Labels)>, StorageError> {
    let schema = batch.schema();
    let ids = batch
        .column_by_name(id_column)
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
        .ok_or(StorageError::Format("id column missing or not UInt32"))?;
    let mut label_cols: Vec<(&str, StrCol<'_>)> = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if let Some(name) = f.name().strip_prefix(LABEL_COLUMN_PREFIX) {
            label_cols.push((name, StrCol::new(batch.column(i))?));
        }
    }
    label_cols.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut labels = Vec::with_capacity(label_cols.len());
        for (name, arr) in &label_cols {
            if let Some(v) = arr.get(row) {
                labels.push(Label::new(*name, v));
            }
        }
        out.push((ids.value(row), Labels::from_sorted(labels)));
    }
    Ok(out)
}

/// What a chunk scan keeps: samples in `[min_t, max_t]`, only those in
/// `windows` when given.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRange {
    pub min_t: i64,
    pub max_t: i64,
    pub windows: Option<StepWindows>,
}

/// Decodes the chunks of a `chunks.parquet` batch into per-series samples
/// restricted to `range`, calling `sink(series_id, samples)`.
pub fn batch_chunks(
    batch: &RecordBatch,
    ChunkRange {
        min_t,
        max_t,
        windows,
    }: ChunkRange,
    mut sink: impl FnMut(u32, &[Sample]),
) -> Result<(), StorageError> {
    let ids = batch
        .column_by_name("series_id")
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
        .ok_or(StorageError::Format("chunks series_id column missing"))?;
    let data = batch
        .column_by_name("data")
        .ok_or(StorageError::Format("chunks data column missing"))?;
    let data = match data.data_type() {
        DataType::Binary => BinCol::Binary(data.as_binary::<i32>()),
        DataType::BinaryView => BinCol::View(data.as_binary_view()),
        _ => return Err(StorageError::Format("chunks data column is not binary")),
    };
    // A chunk's time bounds, when the batch has them, skip chunks between
    // the windows of steps further apart than a chunk is long.
    let bounds = match (batch.column_by_name("min_t"), batch.column_by_name("max_t")) {
        (Some(lo), Some(hi)) => Some((
            lo.as_any()
                .downcast_ref::<Int64Array>()
                .ok_or(StorageError::Format("chunks min_t column is not int64"))?,
            hi.as_any()
                .downcast_ref::<Int64Array>()
                .ok_or(StorageError::Format("chunks max_t column is not int64"))?,
        )),
        _ => None,
    };
    let mut decoder = crate::codec::ChunkDecoder::default();
    let mut buf = Vec::new();
    for row in 0..batch.num_rows() {
        if let (Some(w), Some((lo, hi))) = (windows, bounds)
            && !w.meets(lo.value(row), hi.value(row))
        {
            continue;
        }
        buf.clear();
        decoder.decode_kept(data.value(row), (min_t, max_t), windows, &mut buf)?;
        if !buf.is_empty() {
            sink(ids.value(row), &buf);
        }
    }
    Ok(())
}

/// A string column as Parquet decoding hands it out (plain or view layout).
pub(crate) enum StrCol<'a> {
    Utf8(&'a StringArray),
    View(&'a StringViewArray),
}

impl<'a> StrCol<'a> {
    /// Views a string column of either layout.
    pub(crate) fn new(col: &'a ArrayRef) -> Result<Self, StorageError> {
        match col.data_type() {
            DataType::Utf8 => Ok(StrCol::Utf8(col.as_string::<i32>())),
            DataType::Utf8View => Ok(StrCol::View(col.as_string_view())),
            _ => Err(StorageError::Format("expected a string column")),
        }
    }

    pub(crate) fn get(&self, row: usize) -> Option<&str> {
        match self {
            StrCol::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            StrCol::View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }

    /// Bytes of all its values together.
    pub(crate) fn total_len(&self) -> usize {
        match self {
            StrCol::Utf8(a) => {
                let offsets = a.value_offsets();
                let first = offsets.first().copied().unwrap_or(0);
                let last = offsets.last().copied().unwrap_or(0);
                usize::try_from(last - first).unwrap_or(0)
            }
            StrCol::View(a) => a.lengths().map(|l| l as usize).sum(),
        }
    }
}

/// A binary column in plain or view layout.
enum BinCol<'a> {
    Binary(&'a BinaryArray),
    View(&'a BinaryViewArray),
}

impl BinCol<'_> {
    fn value(&self, row: usize) -> &[u8] {
        match self {
            BinCol::Binary(a) => a.value(row),
            BinCol::View(a) => a.value(row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_with_encoded_characters_list_back_as_themselves() {
        for tenant in ["team-a", "a*b", "x.y_z!(1)'"] {
            let dir = signal_prefix(Signal::Metrics, tenant);
            let root = ObjectPath::from_iter(dir.parts().take(1));
            assert_eq!(tenant_of_listing(&root).as_deref(), Some(tenant), "{dir}");
        }
    }
}

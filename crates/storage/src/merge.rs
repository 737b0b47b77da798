//! Streaming merge of blocks into one: the compactor's vertical and
//! horizontal compaction. Every source file is sorted (series or streams by
//! labels, chunks or entries by id then time), so the merge walks all sources
//! in step, one label set at a time, and writes the output as it goes.
//! Memory is bounded by one row group per source file plus one output row
//! group, whatever the number of series or the window's length; the output
//! files are streamed to the object store (multipart above a few MB).

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::{
    AsyncFileReader, MetadataSuffixFetch, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use datafusion::parquet::file::properties::WriterProperties;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use strata_model::{Labels, Sample, merge_samples};

use crate::StorageError;
use crate::block::{
    self, BlockCompaction, BlockMeta, BlockStats, ChunkRows, LABEL_COLUMN_PREFIX, LabelRows,
    SERIES_PER_ROW_GROUP, Signal, StrCol, block_file,
};
use crate::logblock::{EntryRows, entries_props};

/// Rows read from a source file per batch.
const READ_BATCH_ROWS: usize = 4096;
/// Rows handed to an output writer per batch (it cuts row groups itself).
const WRITE_BATCH_ROWS: usize = 4096;

/// One block to merge, and the store of the tier it lives in.
pub struct SourceBlock {
    pub store: Arc<dyn ObjectStore>,
    pub meta: BlockMeta,
}

/// What the merged block records about its origin.
pub struct MergeTarget<'a> {
    /// Where the new block is written.
    pub store: &'a Arc<dyn ObjectStore>,
    pub tenant: &'a str,
    /// The block's time range: `[min_time, max_time)` in ms.
    pub min_time: i64,
    pub max_time: i64,
    pub compaction: BlockCompaction,
    /// Component writing it, e.g. `compactor`.
    pub source: &'a str,
}

type BatchStream = ParquetRecordBatchStream<SourceFile>;

/// A Parquet file in an object store, read by ranges: the footer by one
/// suffix request, then the column chunks of one row group at a time.
struct SourceFile {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
}

fn parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for SourceFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(parquet_err)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut SourceFile {
    fn fetch_suffix(
        &mut self,
        suffix: usize,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let got = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(parquet_err)?;
            got.bytes().await.map_err(parquet_err)
        }
        .boxed()
    }
}

/// Opens a source file as a stream of batches in file order, reading only `columns`.
async fn open(
    store: &Arc<dyn ObjectStore>,
    path: ObjectPath,
    columns: Option<&[&str]>,
) -> Result<(Arc<Schema>, BatchStream), StorageError> {
    let reader = SourceFile {
        store: store.clone(),
        path,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .with_batch_size(READ_BATCH_ROWS);
    let schema = builder.schema().clone();
    let builder = match columns {
        Some(cols) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), cols.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    };
    Ok((schema, builder.build()?))
}

/// The rows of a `series.parquet` / `streams.parquet`, in order.
struct LabelledRows {
    stream: BatchStream,
    id_column: &'static str,
    rows: VecDeque<(u32, Labels)>,
}

impl LabelledRows {
    /// The next row, reading a batch when needed; `None` at the end.
    async fn front(&mut self) -> Result<Option<&(u32, Labels)>, StorageError> {
        while self.rows.is_empty() {
            match self.stream.try_next().await? {
                Some(batch) => self
                    .rows
                    .extend(block::batch_labels(&batch, self.id_column)?),
                None => return Ok(None),
            }
        }
        Ok(self.rows.front())
    }
}

/// The rows of a `chunks.parquet` / `entries.parquet` (first column the
/// series or stream id), in order, one row at a time.
struct DataRows {
    stream: BatchStream,
    batch: Option<RecordBatch>,
    row: usize,
    /// Brings each batch read to the columns the merge reads.
    normalize: fn(RecordBatch) -> Result<RecordBatch, StorageError>,
}

impl DataRows {
    fn new(stream: BatchStream, signal: Signal) -> Self {
        Self {
            stream,
            batch: None,
            row: 0,
            normalize: match signal {
                Signal::Metrics => Ok,
                Signal::Logs => crate::logblock::entries_with_lines,
            },
        }
    }

    /// Id of the current row, reading a batch when needed; `None` at the end.
    async fn id(&mut self) -> Result<Option<u32>, StorageError> {
        loop {
            if let Some(b) = &self.batch
                && self.row < b.num_rows()
            {
                let ids = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .ok_or(StorageError::Format("id column is not UInt32"))?;
                return Ok(Some(ids.value(self.row)));
            }
            self.batch = match self.stream.try_next().await? {
                Some(b) => Some((self.normalize)(b)?),
                None => None,
            };
            self.row = 0;
            if self.batch.is_none() {
                return Ok(None);
            }
        }
    }

    /// Moves to the first row of `id` (skipping rows of lower ids, which
    /// have no series row); whether there is one.
    async fn seek(&mut self, id: u32) -> Result<bool, StorageError> {
        while let Some(cur) = self.id().await? {
            match cur.cmp(&id) {
                Ordering::Less => self.row += 1,
                Ordering::Equal => return Ok(true),
                Ordering::Greater => return Ok(false),
            }
        }
        Ok(false)
    }

    /// The current batch and row; call after `id` returned `Some`.
    fn current(&self) -> Result<(&RecordBatch, usize), StorageError> {
        match &self.batch {
            Some(b) => Ok((b, self.row)),
            None => Err(StorageError::Format("read past the end of a block file")),
        }
    }
}

/// A merged block's `entries.parquet`, opened when its first rows are
/// written: they choose the column settings (`entries_props`).
struct EntriesFile {
    path: ObjectPath,
    file: Option<OutputFile>,
}

impl EntriesFile {
    fn open(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        sample: &RecordBatch,
    ) -> Result<&mut OutputFile, StorageError> {
        if self.file.is_none() {
            self.file = Some(OutputFile::new(
                store,
                self.path.clone(),
                crate::logblock::entries_schema(),
                entries_props(sample),
            )?);
        }
        self.file
            .as_mut()
            .ok_or(StorageError::Format("entries file not opened"))
    }

    async fn write(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        batch: RecordBatch,
    ) -> Result<(), StorageError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.open(store, &batch)?.write(batch).await
    }

    async fn close(mut self, store: &Arc<dyn ObjectStore>) -> Result<u64, StorageError> {
        let empty = RecordBatch::new_empty(crate::logblock::entries_schema());
        self.open(store, &empty)?;
        match self.file {
            Some(f) => f.close(store).await,
            None => Err(StorageError::Format("entries file not opened")),
        }
    }
}

/// An output file streamed to the object store.
struct OutputFile {
    path: ObjectPath,
    writer: AsyncArrowWriter<BufWriter>,
}

impl OutputFile {
    fn new(
        store: &Arc<dyn ObjectStore>,
        path: ObjectPath,
        schema: Arc<Schema>,
        props: WriterProperties,
    ) -> Result<Self, StorageError> {
        let writer = AsyncArrowWriter::try_new(
            BufWriter::new(store.clone(), path.clone()),
            schema,
            Some(props),
        )?;
        Ok(Self { path, writer })
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), StorageError> {
        if batch.num_rows() > 0 {
            self.writer.write(&batch).await?;
        }
        Ok(())
    }

    /// Completes the upload; the file's size.
    async fn close(self, store: &Arc<dyn ObjectStore>) -> Result<u64, StorageError> {
        self.writer.close().await?;
        let head = store
            .head(&self.path)
            .await
            .map_err(|e| StorageError::object(&self.path, e))?;
        Ok(head.size)
    }
}

/// The label-ordered walk over all sources' label files: yields each label
/// set once, with the ids it has in the sources that hold it.
struct LabelMerge {
    sources: Vec<LabelledRows>,
    order: fn(&Labels, &Labels) -> Ordering,
}

impl LabelMerge {
    /// The next label set and, per source, its id there (`None` where absent).
    async fn next(&mut self) -> Result<Option<(Labels, Vec<Option<u32>>)>, StorageError> {
        let mut least: Option<Labels> = None;
        for s in &mut self.sources {
            if let Some((_, l)) = s.front().await?
                && least
                    .as_ref()
                    .is_none_or(|m| (self.order)(l, m) == Ordering::Less)
            {
                least = Some(l.clone());
            }
        }
        let Some(labels) = least else {
            return Ok(None);
        };
        let mut ids = Vec::with_capacity(self.sources.len());
        for s in &mut self.sources {
            let id = match s.front().await? {
                Some((id, l)) if *l == labels => Some(*id),
                _ => None,
            };
            if id.is_some() {
                s.rows.pop_front();
            }
            ids.push(id);
        }
        Ok(Some((labels, ids)))
    }
}

/// Opens every source's label file and data file, and unions their label names.
async fn open_sources(
    signal: Signal,
    sources: &[SourceBlock],
    tenant: &str,
    data_columns: &[&str],
) -> Result<(LabelMerge, Vec<DataRows>, Vec<String>), StorageError> {
    let (label_file, id_column, data_file, order): (_, _, _, fn(&Labels, &Labels) -> Ordering) =
        match signal {
            Signal::Metrics => (
                "series.parquet",
                "series_id",
                "chunks.parquet",
                Labels::cmp_metric_first,
            ),
            Signal::Logs => (
                "streams.parquet",
                "stream_id",
                "entries.parquet",
                Labels::cmp,
            ),
        };
    let mut labelled = Vec::with_capacity(sources.len());
    let mut data = Vec::with_capacity(sources.len());
    let mut names: Vec<String> = Vec::new();
    for src in sources {
        let ulid = &src.meta.ulid;
        let (schema, stream) = open(
            &src.store,
            block_file(signal, tenant, ulid, label_file),
            None,
        )
        .await?;
        names.extend(
            schema
                .fields()
                .iter()
                .filter_map(|f| f.name().strip_prefix(LABEL_COLUMN_PREFIX))
                .map(str::to_string),
        );
        labelled.push(LabelledRows {
            stream,
            id_column,
            rows: VecDeque::new(),
        });
        let (_, stream) = open(
            &src.store,
            block_file(signal, tenant, ulid, data_file),
            Some(data_columns),
        )
        .await?;
        data.push(DataRows::new(stream, signal));
    }
    names.sort_unstable();
    names.dedup();
    let merge = LabelMerge {
        sources: labelled,
        order,
    };
    Ok((merge, data, names))
}

/// Merges metric blocks into one, de-duplicating identical samples, and
/// uploads it (data files, then `meta.json`). Samples outside the target's
/// time range are dropped.
pub async fn merge_metric_blocks(
    sources: &[SourceBlock],
    target: MergeTarget<'_>,
) -> Result<BlockMeta, StorageError> {
    let (mut series, mut chunks, names) = open_sources(
        Signal::Metrics,
        sources,
        target.tenant,
        &["series_id", "data"],
    )
    .await?;
    let mut meta = target_meta(&target);
    let file = |name| block_file(Signal::Metrics, target.tenant, &meta.ulid, name);
    let mut series_rows = LabelRows::new(&names);
    let mut series_out = OutputFile::new(
        target.store,
        file("series.parquet"),
        series_rows.schema("series_id"),
        block::writer_props(SERIES_PER_ROW_GROUP),
    )?;
    let mut chunk_rows = ChunkRows::new(block::samples_per_chunk(
        target.max_time.saturating_sub(target.min_time),
    ));
    let mut chunks_out = OutputFile::new(
        target.store,
        file("chunks.parquet"),
        block::chunk_schema(),
        block::writer_props(chunk_rows.rows_per_group()),
    )?;

    let mut next_id = 0u32;
    let (mut samples, mut decoded): (Vec<Sample>, Vec<Sample>) = (Vec::new(), Vec::new());
    let mut decoder = crate::codec::ChunkDecoder::default();
    while let Some((labels, ids)) = series.next().await? {
        samples.clear();
        for (src, id) in chunks.iter_mut().zip(ids) {
            let Some(id) = id else { continue };
            if !src.seek(id).await? {
                continue;
            }
            while src.id().await? == Some(id) {
                let (batch, row) = src.current()?;
                let data = batch.column(1);
                let bytes = match data.data_type() {
                    DataType::Binary => data.as_binary::<i32>().value(row),
                    DataType::BinaryView => data.as_binary_view().value(row),
                    _ => return Err(StorageError::Format("chunks data column is not binary")),
                };
                decoded.clear();
                decoder.decode_kept(bytes, (i64::MIN, i64::MAX), None, &mut decoded)?;
                merge_samples(&mut samples, &decoded);
                src.row += 1;
            }
        }
        samples.retain(|s| s.t >= target.min_time && s.t < target.max_time);
        if samples.is_empty() {
            continue;
        }
        series_rows.append(next_id, &labels);
        chunk_rows.append(next_id, &samples)?;
        next_id += 1;
        if chunk_rows.len() >= WRITE_BATCH_ROWS {
            chunks_out.write(chunk_rows.finish()?).await?;
        }
        if series_rows.len() >= WRITE_BATCH_ROWS {
            series_out.write(series_rows.finish("series_id")?).await?;
        }
    }
    chunks_out.write(chunk_rows.finish()?).await?;
    series_out.write(series_rows.finish("series_id")?).await?;

    let chunk_bytes = chunks_out.close(target.store).await?;
    block::mid_upload(&meta);
    let series_bytes = series_out.close(target.store).await?;
    meta.stats = BlockStats {
        num_series: next_id as u64,
        num_bytes: chunk_bytes + series_bytes,
        ..chunk_rows.stats
    };
    block::put_meta(target.store.as_ref(), Signal::Metrics, target.tenant, &meta).await?;
    Ok(meta)
}

/// Merges log blocks into one, de-duplicating entries with the same stream,
/// timestamp and line, and uploads it (data files, then `meta.json`).
pub async fn merge_log_blocks(
    sources: &[SourceBlock],
    target: MergeTarget<'_>,
) -> Result<BlockMeta, StorageError> {
    // Blocks written before line templates have `line`, later ones its
    // template and variables; a projection skips the names a file lacks.
    let source_columns = crate::logblock::line_source_columns();
    let columns: Vec<&str> = ["stream_id", "ts", "line", "metadata"]
        .into_iter()
        .chain(source_columns.iter().map(String::as_str))
        .collect();
    let (mut streams, mut entries, names) =
        open_sources(Signal::Logs, sources, target.tenant, &columns).await?;
    let mut meta = target_meta(&target);
    let file = |name| block_file(Signal::Logs, target.tenant, &meta.ulid, name);
    let mut stream_rows = LabelRows::new(&names);
    let mut streams_out = OutputFile::new(
        target.store,
        file("streams.parquet"),
        stream_rows.schema("stream_id"),
        block::writer_props(SERIES_PER_ROW_GROUP),
    )?;
    let mut entry_rows = EntryRows::default();
    let mut entries_out = EntriesFile {
        path: file("entries.parquet"),
        file: None,
    };

    let (min_ns, max_ns) = (
        target.min_time.saturating_mul(1_000_000),
        target.max_time.saturating_mul(1_000_000),
    );
    let (mut next_id, mut total) = (0u32, 0u64);
    let mut seen = SeenLines::default();
    while let Some((labels, ids)) = streams.next().await? {
        let mut held: Vec<(usize, u32)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if let Some(id) = *id
                && entries[i].seek(id).await?
            {
                held.push((i, id));
            }
        }
        let (mut written, mut last_ts) = (0u64, None);
        loop {
            // The source whose next entry of this stream is oldest.
            let mut oldest: Option<(usize, i64)> = None;
            for &(i, id) in &held {
                if entries[i].id().await? != Some(id) {
                    continue;
                }
                let ts = entry_ts(&entries[i])?;
                if oldest.is_none_or(|(_, t)| ts < t) {
                    oldest = Some((i, ts));
                }
            }
            let Some((i, ts)) = oldest else { break };
            let (batch, row) = entries[i].current()?;
            let lines = StrCol::new(batch.column(2))?;
            let line = lines.get(row).unwrap_or_default();
            if last_ts != Some(ts) {
                last_ts = Some(ts);
                seen.clear();
            }
            if ts >= min_ns && ts < max_ns && seen.insert(line) {
                let metadata = StrCol::new(batch.column(3))?;
                entry_rows.append(next_id, ts, line, metadata.get(row));
                written += 1;
                if entry_rows.len() >= WRITE_BATCH_ROWS {
                    entries_out
                        .write(target.store, entry_rows.finish()?)
                        .await?;
                }
            }
            entries[i].row += 1;
        }
        if written == 0 {
            continue;
        }
        stream_rows.append(next_id, &labels);
        next_id += 1;
        total += written;
        if stream_rows.len() >= WRITE_BATCH_ROWS {
            streams_out.write(stream_rows.finish("stream_id")?).await?;
        }
    }
    entries_out
        .write(target.store, entry_rows.finish()?)
        .await?;
    streams_out.write(stream_rows.finish("stream_id")?).await?;

    let entry_bytes = entries_out.close(target.store).await?;
    block::mid_upload(&meta);
    let stream_bytes = streams_out.close(target.store).await?;
    meta.stats = BlockStats {
        num_series: next_id as u64,
        num_samples: total,
        num_chunks: 0,
        num_bytes: entry_bytes + stream_bytes,
    };
    block::put_meta(target.store.as_ref(), Signal::Logs, target.tenant, &meta).await?;
    Ok(meta)
}

/// The lines already written at the current timestamp of a stream. The
/// strings are reused from one timestamp to the next, so the merge does
/// not allocate per entry.
#[derive(Default)]
struct SeenLines {
    lines: Vec<String>,
    used: usize,
    /// Slots by line hash, once a timestamp has more than a few lines: a
    /// block may hold many distinct lines at one time, and comparing each
    /// with all the others would be quadratic.
    index: HashMap<u64, Vec<usize>>,
    hasher: RandomState,
}

/// Lines at one timestamp compared one by one before hashing pays off.
const SEEN_LINES_LINEAR: usize = 16;

impl SeenLines {
    fn clear(&mut self) {
        self.used = 0;
        self.index.clear();
    }

    /// Records `line`; false if it was already there.
    fn insert(&mut self, line: &str) -> bool {
        if self.used < SEEN_LINES_LINEAR {
            if self.lines[..self.used].iter().any(|l| l == line) {
                return false;
            }
        } else {
            if self.index.is_empty() {
                for (i, l) in self.lines[..self.used].iter().enumerate() {
                    let h = self.hasher.hash_one(l.as_str());
                    self.index.entry(h).or_default().push(i);
                }
            }
            let h = self.hasher.hash_one(line);
            let same = self.index.entry(h).or_default();
            if same.iter().any(|&i| self.lines[i] == line) {
                return false;
            }
            same.push(self.used);
        }
        match self.lines.get_mut(self.used) {
            Some(slot) => {
                slot.clear();
                slot.push_str(line);
            }
            None => self.lines.push(line.to_string()),
        }
        self.used += 1;
        true
    }
}

fn entry_ts(rows: &DataRows) -> Result<i64, StorageError> {
    let (batch, row) = rows.current()?;
    batch
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(row))
        .ok_or(StorageError::Format("entries ts is not Int64"))
}

fn target_meta(target: &MergeTarget<'_>) -> BlockMeta {
    let mut meta = BlockMeta::new(target.min_time, target.max_time, BlockStats::default());
    meta.compaction = target.compaction.clone();
    meta.source = target.source.to_string();
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use strata_model::logs::LogEntry;
    use strata_model::{Label, MatchOp, Matcher};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    fn samples(ts: impl Iterator<Item = i64>) -> Vec<Sample> {
        ts.map(|t| Sample { t, v: t as f64 }).collect()
    }

    async fn read_all(reader: &crate::BlockReader, meta: &BlockMeta) -> Vec<(Labels, Vec<Sample>)> {
        let mut got: Vec<_> = reader
            .select("t", meta, &[], i64::MIN, i64::MAX)
            .await
            .expect("select")
            .into_iter()
            .map(|s| (s.labels, s.samples))
            .collect();
        got.sort_by(|a, b| a.0.cmp_metric_first(&b.0));
        got
    }

    fn target<'a>(store: &'a Arc<dyn ObjectStore>, min: i64, max: i64) -> MergeTarget<'a> {
        MergeTarget {
            store,
            tenant: "t",
            min_time: min,
            max_time: max,
            compaction: BlockCompaction {
                level: 2,
                sources: vec![],
            },
            source: "compactor",
        }
    }

    /// Overlapping copies and adjacent blocks with different label names
    /// merge into one block holding every sample once; many series cross
    /// the writer's batch and row-group boundaries.
    #[tokio::test]
    async fn metric_blocks_merge_streaming_without_loss_or_duplicates() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let n = 6000;
        let series = |i: usize, ts: std::ops::Range<i64>| {
            let name = if i.is_multiple_of(2) {
                "up"
            } else {
                "a_metric"
            };
            let mut l = vec![
                Label::new("__name__", name),
                Label::new("i", format!("{i:05}")),
            ];
            if i.is_multiple_of(3) {
                l.push(Label::new("zone", format!("{}", i % 7)));
            }
            (Labels::new(l), samples(ts.step_by(15_000)))
        };
        // Two RF copies of [0, 1h) (the second missing some series and
        // samples), and [1h, 2h) with only every other series.
        let a: Vec<_> = (0..n).map(|i| series(i, 0..3_600_000)).collect();
        let b: Vec<_> = (0..n)
            .filter(|i| i % 5 != 0)
            .map(|i| series(i, 600_000..3_600_000))
            .collect();
        let c: Vec<_> = (0..n)
            .filter(|i| i % 2 == 0)
            .map(|i| series(i, 3_600_000..7_200_000))
            .collect();
        let mut metas = Vec::new();
        for (blk, lo, hi) in [
            (a, 0, 3_600_000),
            (b, 0, 3_600_000),
            (c, 3_600_000, 7_200_000),
        ] {
            let enc = block::encode_block(blk, lo, hi).expect("encode");
            block::upload_block(store.as_ref(), "t", &enc)
                .await
                .expect("upload");
            metas.push(enc.meta);
        }
        let sources: Vec<SourceBlock> = metas
            .iter()
            .map(|m| SourceBlock {
                store: store.clone(),
                meta: m.clone(),
            })
            .collect();
        let merged = merge_metric_blocks(&sources, target(&store, 0, 7_200_000))
            .await
            .expect("merge");

        let reader = crate::BlockReader::new(store.clone());
        let got = read_all(&reader, &merged).await;
        let mut want: Vec<(Labels, Vec<Sample>)> = (0..n)
            .map(|i| {
                let hi = if i % 2 == 0 { 7_200_000 } else { 3_600_000 };
                series(i, 0..hi)
            })
            .collect();
        want.sort_by(|a, b| a.0.cmp_metric_first(&b.0));
        assert_eq!(got.len(), want.len());
        assert!(got == want, "merged block differs from the union");
        assert_eq!(merged.stats.num_series, n as u64);
        let total: usize = want.iter().map(|(_, s)| s.len()).sum();
        assert_eq!(merged.stats.num_samples, total as u64);
        assert_eq!(merged.source, "compactor");
        assert_eq!(merged.compaction.level, 2);
        let on_disk = reader
            .read_meta(Signal::Metrics, "t", &merged.ulid)
            .await
            .expect("meta");
        assert_eq!(on_disk, Some(merged.clone()));

        // A narrower target drops what falls outside it.
        let first_hour = merge_metric_blocks(&sources, target(&store, 0, 3_600_000))
            .await
            .expect("merge");
        let got = read_all(&reader, &first_hour).await;
        assert_eq!(got.len(), n);
        assert!(
            got.iter()
                .all(|(_, s)| s.len() == 240 && s.last().is_some_and(|l| l.t < 3_600_000))
        );
    }

    #[tokio::test]
    async fn a_day_block_keeps_longer_chunks_and_every_sample() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        const H: i64 = 3_600_000;
        let series = |i: usize, ts: std::ops::Range<i64>| {
            let l = Labels::new(vec![
                Label::new("__name__", "m"),
                Label::new("i", i.to_string()),
            ]);
            (l, samples(ts.step_by(10_000)))
        };
        // Two 12h blocks at a 10s interval: 4,320 samples per series each.
        let mut metas = Vec::new();
        for (lo, hi) in [(0, 12 * H), (12 * H, 24 * H)] {
            let enc = block::encode_block((0..3).map(|i| series(i, lo..hi)).collect(), lo, hi)
                .expect("encode");
            // 12h blocks are already cut in chunks of up to 5,760 samples.
            assert_eq!(enc.meta.stats.num_chunks, 3);
            block::upload_block(store.as_ref(), "t", &enc)
                .await
                .expect("upload");
            metas.push(enc.meta);
        }
        let sources: Vec<SourceBlock> = metas
            .into_iter()
            .map(|meta| SourceBlock {
                store: store.clone(),
                meta,
            })
            .collect();
        let day = merge_metric_blocks(&sources, target(&store, 0, 24 * H))
            .await
            .expect("merge");
        // 8,640 samples per series: two chunks each (5,760 + 2,880).
        assert_eq!(day.stats.num_chunks, 6);
        let got = read_all(&crate::BlockReader::new(store.clone()), &day).await;
        let want: Vec<_> = (0..3).map(|i| series(i, 0..24 * H)).collect();
        assert!(got == want, "the day block differs from its sources");
        // A 2h block keeps 960-sample chunks: 1,440 samples are two.
        let two_hours = block::encode_block(vec![series(0, 0..2 * H)], 0, 2 * H).expect("encode");
        assert_eq!(two_hours.meta.stats.num_chunks, 1);
        let dense: Vec<_> = (0..1440)
            .map(|k| Sample {
                t: k * 5000,
                v: 1.0,
            })
            .collect();
        let two_hours =
            block::encode_block(vec![(series(0, 0..0).0, dense)], 0, 2 * H).expect("encode");
        assert_eq!(two_hours.meta.stats.num_chunks, 2);
    }

    #[test]
    fn many_distinct_lines_at_one_time_merge_in_linear_time() {
        let mut seen = SeenLines::default();
        for round in 0..2 {
            seen.clear();
            for i in 0..200_000 {
                // Every line is new on the first pass, a repeat on the second
                // within the same timestamp (seen is not cleared between them).
                assert!(seen.insert(&format!("line {i}")), "round {round}, line {i}");
                assert!(!seen.insert(&format!("line {i}")));
            }
        }
    }

    /// Uploads `streams` as tenant `t`'s log block over `[min, max)` ms, in
    /// the layout before line templates when `legacy`, as a merge source.
    async fn upload_log_source(
        store: &Arc<dyn ObjectStore>,
        streams: &[(Labels, Vec<LogEntry>)],
        (min, max): (i64, i64),
        legacy: bool,
    ) -> SourceBlock {
        let mut enc = crate::logblock::encode_log_block(streams, min, max).expect("encode");
        if legacy {
            enc.entries_parquet = crate::logblock::tests::legacy_entries(streams);
        }
        crate::logblock::upload_log_block(store.as_ref(), "t", &enc)
            .await
            .expect("upload");
        SourceBlock {
            store: store.clone(),
            meta: enc.meta,
        }
    }

    /// Blocks written before line templates merge with templated ones:
    /// every line comes out whole, the copies in both once.
    #[tokio::test]
    async fn log_blocks_of_both_layouts_merge_into_templated_lines() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let lines = crate::logblock::tests::awkward_lines();
        let entries = |from: usize, to: usize| {
            (from..to)
                .map(|i| LogEntry {
                    ts: i as i64 * 1_000,
                    line: lines[i % lines.len()].clone(),
                    metadata: Labels::default(),
                })
                .collect::<Vec<_>>()
        };
        let n = lines.len();
        let old = vec![(labels(&[("app", "a")]), entries(0, n))];
        let new = vec![(labels(&[("app", "a")]), entries(n / 2, 2 * n))];
        let sources = vec![
            upload_log_source(&store, &old, (0, 1), true).await,
            upload_log_source(&store, &new, (0, 1), false).await,
        ];
        let merged = merge_log_blocks(&sources, target(&store, 0, 1))
            .await
            .expect("merge");
        let got = crate::BlockReader::new(store.clone())
            .select_log_entries("t", &merged, &[], &[], 0, i64::MAX, None)
            .await
            .expect("select");
        assert_eq!(got.len(), 1);
        let got: Vec<(i64, String)> = got[0]
            .entries
            .iter()
            .map(|e| (e.ts, e.line.clone()))
            .collect();
        let want: Vec<(i64, String)> = entries(0, 2 * n)
            .into_iter()
            .map(|e| (e.ts, e.line))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn log_blocks_merge_streaming_and_drop_duplicate_entries() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let entry = |ts: i64, line: &str| LogEntry {
            ts,
            line: line.to_string(),
            metadata: if (ts / 1_000_000) % 2 == 0 {
                Labels::new(vec![Label::new("trace_id", format!("t{ts}"))])
            } else {
                Labels::default()
            },
        };
        let ms = 1_000_000;
        let app = |a: &str| labels(&[("app", a)]);
        // Two copies of one stream (one with an extra line at an existing
        // timestamp), a stream only in the second, and more lines later.
        let first = vec![
            (
                app("api"),
                vec![entry(ms, "a"), entry(2 * ms, "b"), entry(3 * ms, "c")],
            ),
            (app("db"), vec![entry(ms, "x")]),
        ];
        let second = vec![
            (
                app("api"),
                vec![
                    entry(ms, "a"),
                    entry(2 * ms, "b"),
                    entry(2 * ms, "b2"),
                    entry(3 * ms, "c"),
                ],
            ),
            (app("cache"), vec![entry(5 * ms, "k")]),
        ];
        let later = vec![(
            app("api"),
            vec![entry(10 * ms, "late"), entry(11 * ms, "last")],
        )];
        let mut sources = Vec::new();
        for (blk, lo, hi) in [(first, 0, 10), (second, 0, 10), (later, 10, 20)] {
            sources.push(upload_log_source(&store, &blk, (lo, hi), false).await);
        }
        let merged = merge_log_blocks(&sources, target(&store, 0, 20))
            .await
            .expect("merge");
        assert_eq!(merged.stats.num_series, 3);
        assert_eq!(merged.stats.num_samples, 8);
        let reader = crate::BlockReader::new(store.clone());
        let mut got = reader
            .select_log_entries("t", &merged, &[], &[], 0, i64::MAX, None)
            .await
            .expect("select");
        got.sort_by(|a, b| a.labels.cmp(&b.labels));
        type Lines = Vec<(i64, String, Labels)>;
        let lines: Vec<(String, Lines)> = got
            .into_iter()
            .map(|s| {
                (
                    s.labels.to_string(),
                    s.entries
                        .into_iter()
                        .map(|e| (e.ts / ms, e.line, e.metadata))
                        .collect(),
                )
            })
            .collect();
        let md = |ts: i64| Labels::new(vec![Label::new("trace_id", format!("t{}", ts * ms))]);
        assert_eq!(
            lines,
            vec![
                (
                    app("api").to_string(),
                    vec![
                        (1, "a".into(), Labels::default()),
                        (2, "b".into(), md(2)),
                        (2, "b2".into(), md(2)),
                        (3, "c".into(), Labels::default()),
                        (10, "late".into(), md(10)),
                        (11, "last".into(), Labels::default()),
                    ]
                ),
                (
                    app("cache").to_string(),
                    vec![(5, "k".into(), Labels::default())]
                ),
                (
                    app("db").to_string(),
                    vec![(1, "x".into(), Labels::default())]
                ),
            ]
        );
        // Sizes only, for index statistics and volumes: the matching
        // stream's entries in the range, oldest first.
        let api = [Matcher::new(MatchOp::Equal, "app", "api")];
        let sizes = reader
            .select_log_sizes("t", &merged, &api, (2 * ms, 11 * ms))
            .await
            .expect("sizes");
        use strata_model::logs::EntrySize;
        assert_eq!(
            sizes,
            vec![(
                app("api"),
                vec![
                    EntrySize::of(2 * ms, "b"),
                    EntrySize::of(2 * ms, "b2"),
                    EntrySize::of(3 * ms, "c"),
                    EntrySize::of(10 * ms, "late"),
                ]
            )]
        );
    }
}

//! Metric block scans: the selected series ids and the time range become
//! filters on `chunks.parquet`, pushed into the Parquet scan.

use std::collections::HashMap;

use datafusion::prelude::{ParquetReadOptions, ident, lit};
use futures::TryStreamExt;
use strata_model::{Matcher, Sample, SeriesSamples, StepWindows, merge_samples};

use crate::StorageError;
use crate::block::{self, BlockMeta, Signal};
use crate::reader::{BlockReader, ids_filter};

impl BlockReader {
    /// Samples in `[min_t, max_t]` of the block's series that match `matchers`.
    pub async fn select(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        self.select_windows(tenant, meta, matchers, (min_t, max_t), None)
            .await
    }

    /// [`Self::select`], keeping only the samples in `windows` when given:
    /// chunks no window meets are not decoded, and the others' samples
    /// outside every window are dropped as they are decoded.
    pub async fn select_windows(
        &self,
        tenant: &str,
        meta: &BlockMeta,
        matchers: &[Matcher],
        (min_t, max_t): (i64, i64),
        windows: Option<StepWindows>,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        if meta.max_time <= min_t || meta.min_time > max_t {
            return Ok(Vec::new());
        }
        let series = self.select_series(tenant, meta, matchers).await?;
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_id: HashMap<u32, SeriesSamples> = series
            .into_iter()
            .map(|(id, labels)| {
                (
                    id,
                    SeriesSamples {
                        labels,
                        samples: Vec::new(),
                    },
                )
            })
            .collect();
        let filter = ids_filter("series_id", by_id.keys().copied())
            .and(ident("max_t").gt_eq(lit(min_t)))
            .and(ident("min_t").lt_eq(lit(max_t)));
        let df = self
            .ctx
            .read_parquet(
                Self::url(Signal::Metrics, tenant, meta, "chunks.parquet"),
                ParquetReadOptions::default(),
            )
            .await?
            .filter(filter)?
            // Chunk bounds only when windows may skip chunks by them.
            .select_columns(if windows.is_some() {
                &["series_id", "min_t", "max_t", "data"]
            } else {
                &["series_id", "data"]
            })?;
        let mut stream = df.execute_stream().await?;
        let range = block::ChunkRange {
            min_t,
            max_t,
            windows,
        };
        while let Some(batch) = stream.try_next().await? {
            block::batch_chunks(&batch, range, |id, samples: &[Sample]| {
                if let Some(s) = by_id.get_mut(&id) {
                    merge_samples(&mut s.samples, samples);
                }
            })?;
        }
        Ok(by_id
            .into_values()
            .filter(|s| !s.samples.is_empty())
            .collect())
    }
}

//! Strata's storage format and object-store access: compressed chunks,
//! Parquet metric and log blocks, the object-store backends, and DataFusion scans that
//! read blocks with label-matcher and time-range filters pushed down.

pub mod block;
pub mod bucket_index;
pub mod cache;
mod catalog;
pub mod chunk;
pub mod codec;
pub mod crashpoint;
pub mod durable_fs;
pub mod instrumented;
pub mod line_template;
mod log_scan;
pub mod logblock;
pub mod merge;
mod metric_scan;
pub mod reader;
pub mod store;

pub use block::{BlockMeta, EncodedBlock, Signal, Tier, encode_block, upload_block};
pub use catalog::BlockCatalog;
pub use logblock::{EncodedLogBlock, encode_log_block, upload_log_block};
pub use reader::BlockReader;
pub use store::{StoreConfig, build_store};

/// Errors from encoding, uploading or reading blocks.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store error on {path}: {source}")]
    Object {
        path: String,
        source: object_store::Error,
    },
    #[error("object store configuration: {0}")]
    Config(String),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("block metadata: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bad block format: {0}")]
    Format(&'static str),
    #[error(transparent)]
    Chunk(#[from] chunk::ChunkError),
    #[error(transparent)]
    Template(#[from] line_template::JoinError),
    /// Recent data held by ingesters could not be read.
    #[error("recent data unavailable: {0}")]
    Unavailable(String),
}

impl StorageError {
    pub(crate) fn object(path: &object_store::path::Path, source: object_store::Error) -> Self {
        Self::Object {
            path: path.to_string(),
            source,
        }
    }
}

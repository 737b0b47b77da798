//! The per-tenant bucket index, `<tenant>/bucket-index.json.gz`: every
//! complete block of both signals with its metadata, and the deletion marks.
//! Only the compactor writes it; queriers read it instead of listing the
//! bucket, falling back to a listing (with a warning) while it is missing.

use std::io::{Read, Write};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::StorageError;
use crate::block::{BlockMeta, Signal};

/// Version of the index layout this code writes.
pub const BUCKET_INDEX_VERSION: u32 = 1;

/// Contents of `bucket-index.json.gz`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BucketIndex {
    pub version: u32,
    pub blocks: Vec<IndexedBlock>,
    pub block_deletion_marks: Vec<IndexedMark>,
    /// Unix seconds of the write.
    pub updated_at: i64,
}

/// A block in the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexedBlock {
    /// `metrics` or `logs`.
    pub signal: String,
    #[serde(flatten)]
    pub meta: BlockMeta,
}

/// A deletion mark in the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexedMark {
    pub signal: String,
    pub id: String,
    pub deletion_time: i64,
}

impl BucketIndex {
    /// Metadata of the indexed blocks of one signal, oldest first.
    pub fn blocks_of(&self, signal: Signal) -> Vec<BlockMeta> {
        let mut out: Vec<BlockMeta> = self
            .blocks
            .iter()
            .filter(|b| b.signal == signal.dir())
            .map(|b| b.meta.clone())
            .collect();
        out.sort_by_key(|m| m.min_time);
        out
    }
}

/// Where a tenant's index lives.
pub fn index_path(tenant: &str) -> ObjectPath {
    ObjectPath::from(format!("{tenant}/bucket-index.json.gz"))
}

/// Reads a tenant's index; `None` when there is none yet.
pub async fn read_bucket_index(
    store: &dyn ObjectStore,
    tenant: &str,
) -> Result<Option<BucketIndex>, StorageError> {
    let path = index_path(tenant);
    let gz = match store.get(&path).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| StorageError::object(&path, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(StorageError::object(&path, e)),
    };
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gz.as_ref())
        .read_to_end(&mut json)
        .map_err(|_| StorageError::Format("bucket index is not valid gzip"))?;
    Ok(Some(serde_json::from_slice(&json)?))
}

/// Writes a tenant's index (one PUT, so readers see the old or the new one).
pub async fn write_bucket_index(
    store: &dyn ObjectStore,
    tenant: &str,
    index: &BucketIndex,
) -> Result<(), StorageError> {
    let json = serde_json::to_vec(index)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json)
        .and_then(|_| gz.try_finish())
        .map_err(|_| StorageError::Format("compressing the bucket index failed"))?;
    let body = gz
        .finish()
        .map_err(|_| StorageError::Format("compressing the bucket index failed"))?;
    let path = index_path(tenant);
    store
        .put(&path, PutPayload::from(Bytes::from(body)))
        .await
        .map_err(|e| StorageError::object(&path, e))?;
    Ok(())
}

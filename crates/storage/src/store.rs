//! Object-store backends selected by configuration: a local directory (the
//! default, `./data/blocks`, written durably: see [`crate::durable_fs`]) or
//! any S3-compatible service (AWS S3, MinIO).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use serde::{Deserialize, Serialize};

use crate::StorageError;
use crate::durable_fs::DurableLocalFs;

/// Where blocks live, in Mimir's `blocks_storage` shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StoreConfig {
    /// `filesystem` or `s3`.
    pub backend: String,
    pub filesystem: FilesystemConfig,
    pub s3: S3Config,
}

/// Local-directory backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FilesystemConfig {
    pub dir: String,
}

/// S3-compatible backend. Empty credentials fall back to the usual AWS
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct S3Config {
    /// Host and port (`minio:9000`) or a full URL; empty means AWS.
    pub endpoint: String,
    pub bucket_name: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Use plain HTTP to the endpoint.
    pub insecure: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: "filesystem".into(),
            filesystem: FilesystemConfig::default(),
            s3: S3Config::default(),
        }
    }
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        Self {
            dir: "./data/blocks".into(),
        }
    }
}

/// Builds the configured object store.
pub fn build_store(cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>, StorageError> {
    match cfg.backend.as_str() {
        "filesystem" => {
            std::fs::create_dir_all(&cfg.filesystem.dir).map_err(|e| {
                StorageError::Config(format!(
                    "cannot create blocks directory {}: {e}",
                    cfg.filesystem.dir
                ))
            })?;
            // Durable: a block must survive power loss once the ingester
            // deletes the WAL segments it came from.
            let fs =
                DurableLocalFs::new(std::path::Path::new(&cfg.filesystem.dir)).map_err(|e| {
                    StorageError::Config(format!("blocks directory {}: {e}", cfg.filesystem.dir))
                })?;
            Ok(Arc::new(fs))
        }
        "s3" => {
            let s3 = &cfg.s3;
            if s3.bucket_name.is_empty() {
                return Err(StorageError::Config(
                    "-blocks-storage.s3.bucket-name is required for the s3 backend".into(),
                ));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket_name);
            if !s3.endpoint.is_empty() {
                let url = if s3.endpoint.contains("://") {
                    s3.endpoint.clone()
                } else if s3.insecure {
                    format!("http://{}", s3.endpoint)
                } else {
                    format!("https://{}", s3.endpoint)
                };
                b = b.with_endpoint(url);
            }
            if s3.insecure || s3.endpoint.starts_with("http://") {
                b = b.with_allow_http(true);
            }
            if !s3.region.is_empty() {
                b = b.with_region(&s3.region);
            }
            if !s3.access_key_id.is_empty() {
                b = b.with_access_key_id(&s3.access_key_id);
            }
            if !s3.secret_access_key.is_empty() {
                b = b.with_secret_access_key(&s3.secret_access_key);
            }
            let store = b
                .build()
                .map_err(|e| StorageError::Config(format!("s3 backend: {e}")))?;
            Ok(Arc::new(store))
        }
        other => Err(StorageError::Config(format!(
            "unknown -blocks-storage.backend {other:?} (want filesystem or s3)"
        ))),
    }
}

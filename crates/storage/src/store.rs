//! Object-store backends selected by configuration: a local directory (the
//! default, `./data/blocks`, written durably: see [`crate::durable_fs`]),
//! any S3-compatible service (AWS S3, MinIO), Google Cloud Storage or Azure
//! Blob Storage.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use serde::{Deserialize, Serialize};

use crate::StorageError;
use crate::durable_fs::DurableLocalFs;

/// Where blocks live, in Mimir's `blocks_storage` shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StoreConfig {
    /// `filesystem`, `s3`, `gcs` or `azure`.
    pub backend: String,
    pub filesystem: FilesystemConfig,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
}

/// Google Cloud Storage backend, in Mimir's shape. Without a service
/// account, the usual Google credentials apply (`GOOGLE_APPLICATION_CREDENTIALS`,
/// workload identity through the metadata server).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GcsConfig {
    pub bucket_name: String,
    /// A service account key (the JSON document itself).
    pub service_account: String,
}

/// Azure Blob Storage backend, in Mimir's shape. Without an account key,
/// the usual Azure credentials apply (`AZURE_*` variables, workload identity,
/// managed identity).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AzureConfig {
    pub account_name: String,
    pub account_key: String,
    pub container_name: String,
    /// Blob service host suffix (default `blob.core.windows.net`); the
    /// endpoint is `https://<account>.<suffix>`.
    pub endpoint_suffix: String,
    /// Full blob endpoint URL instead (Azurite, private endpoints), e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1`; http:// is allowed.
    pub endpoint: String,
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
            gcs: GcsConfig::default(),
            azure: AzureConfig::default(),
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
        "gcs" => {
            let gcs = &cfg.gcs;
            if gcs.bucket_name.is_empty() {
                return Err(StorageError::Config(
                    "-blocks-storage.gcs.bucket-name is required for the gcs backend".into(),
                ));
            }
            let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&gcs.bucket_name);
            if !gcs.service_account.is_empty() {
                b = b.with_service_account_key(&gcs.service_account);
            }
            let store = b
                .build()
                .map_err(|e| StorageError::Config(format!("gcs backend: {e}")))?;
            Ok(Arc::new(store))
        }
        "azure" => {
            let az = &cfg.azure;
            if az.account_name.is_empty() || az.container_name.is_empty() {
                return Err(StorageError::Config(
                    "-blocks-storage.azure.account-name and -blocks-storage.azure.container-name \
                     are required for the azure backend"
                        .into(),
                ));
            }
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_account(&az.account_name)
                .with_container_name(&az.container_name);
            if !az.account_key.is_empty() {
                b = b.with_access_key(&az.account_key);
            }
            if !az.endpoint.is_empty() {
                b = b
                    .with_endpoint(az.endpoint.clone())
                    .with_allow_http(az.endpoint.starts_with("http://"));
            } else if !az.endpoint_suffix.is_empty() {
                b = b.with_endpoint(format!(
                    "https://{}.{}",
                    az.account_name,
                    az.endpoint_suffix.trim_start_matches('.')
                ));
            }
            let store = b
                .build()
                .map_err(|e| StorageError::Config(format!("azure backend: {e}")))?;
            Ok(Arc::new(store))
        }
        other => Err(StorageError::Config(format!(
            "unknown -blocks-storage.backend {other:?} (want filesystem, s3, gcs or azure)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(cfg: &StoreConfig) -> String {
        match build_store(cfg) {
            Ok(_) => panic!("{cfg:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cloud_backends_need_their_names_and_take_their_credentials() {
        let mut cfg = StoreConfig {
            backend: "gcs".into(),
            ..StoreConfig::default()
        };
        assert!(refused(&cfg).contains("-blocks-storage.gcs.bucket-name"));
        cfg.gcs.bucket_name = "b".into();
        cfg.gcs.service_account = "not json".into();
        assert!(refused(&cfg).contains("gcs backend"));
        cfg.gcs.service_account = serde_json::json!({
            "gcs_base_url": "http://127.0.0.1:1",
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        })
        .to_string();
        build_store(&cfg).expect("a service account document is taken");

        let mut cfg = StoreConfig {
            backend: "azure".into(),
            ..StoreConfig::default()
        };
        assert!(refused(&cfg).contains("-blocks-storage.azure.container-name"));
        cfg.azure.account_name = "acct".into();
        cfg.azure.container_name = "c".into();
        cfg.azure.account_key = "a2V5".into();
        cfg.azure.endpoint_suffix = "blob.core.chinacloudapi.cn".into();
        build_store(&cfg).expect("account, key and suffix");

        cfg.backend = "hdfs".into();
        assert!(refused(&cfg).contains("filesystem, s3, gcs or azure"));
    }
}

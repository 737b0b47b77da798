//! Byte caches keyed by strings, in memory and, when given a size, on local
//! disk: foyer's hybrid cache, where what memory evicts goes to disk, weighed
//! by the bytes of key and value. The query-frontend's results cache and the
//! warm-block cache are built here, so both size and place their tiers alike.

use bytes::Bytes;
use foyer::{BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder};

/// The least memory a cache is given: foyer needs room for some entries.
const MIN_MEMORY_BYTES: usize = 1 << 20;

/// Why a cache could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create the {name} cache directory {dir}: {source}")]
    CreateDir {
        name: &'static str,
        dir: String,
        source: std::io::Error,
    },
    #[error("{name} cache directory {dir}: {reason}")]
    Device {
        name: &'static str,
        dir: String,
        reason: String,
    },
    #[error("building the {name} cache: {reason}")]
    Build { name: &'static str, reason: String },
}

/// A cache named `name` (in foyer's metrics and in errors) of at most
/// `memory_bytes` in memory (at least 1 MiB) and `disk_bytes` in `dir`
/// (0: memory only).
pub async fn bytes_cache(
    name: &'static str,
    memory_bytes: usize,
    disk_bytes: usize,
    dir: &str,
) -> Result<HybridCache<String, Bytes>, CacheError> {
    let storage = HybridCacheBuilder::new()
        .with_name(name)
        .memory(memory_bytes.max(MIN_MEMORY_BYTES))
        .with_weighter(|k: &String, v: &Bytes| k.len() + v.len())
        .storage();
    let storage = if disk_bytes > 0 {
        std::fs::create_dir_all(dir).map_err(|source| CacheError::CreateDir {
            name,
            dir: dir.to_string(),
            source,
        })?;
        let device = FsDeviceBuilder::new(dir)
            .with_capacity(disk_bytes)
            .build()
            .map_err(|e| CacheError::Device {
                name,
                dir: dir.to_string(),
                reason: e.to_string(),
            })?;
        storage.with_engine_config(BlockEngineConfig::new(device))
    } else {
        storage
    };
    storage.build().await.map_err(|e| CacheError::Build {
        name,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_entries_in_memory_and_on_disk() {
        let memory = bytes_cache("test", 0, 0, "").await.expect("memory cache");
        memory.insert("k".to_string(), Bytes::from_static(b"v"));
        let hit = memory.get(&"k".to_string()).await.expect("read");
        assert_eq!(
            hit.map(|e| e.value().clone()),
            Some(Bytes::from_static(b"v"))
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").display().to_string();
        let hybrid = bytes_cache("test", 1 << 20, 16 << 20, &path)
            .await
            .expect("hybrid cache");
        assert!(std::path::Path::new(&path).is_dir());
        hybrid.insert("k".to_string(), Bytes::from_static(b"v"));
        let hit = hybrid.get(&"k".to_string()).await.expect("read");
        assert!(hit.is_some());
    }

    #[tokio::test]
    async fn an_unusable_directory_is_a_clear_error() {
        let file = tempfile::NamedTempFile::new().expect("file");
        let under_a_file = file.path().join("cache").display().to_string();
        let Err(err) = bytes_cache("results", 0, 16 << 20, &under_a_file).await else {
            panic!("a cache directory under a file was accepted");
        };
        assert!(err.to_string().contains("results cache directory"), "{err}");
    }
}

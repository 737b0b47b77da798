//! A read-through cache of byte ranges in front of an object store (the
//! warm tier, and the store-gateways' blocks): Parquet footers, page
//! indexes and pages that DataFusion reads as ranged GETs are kept in a
//! foyer hybrid cache (memory, then local disk). Blocks never change once
//! written, so an entry never goes stale; it is keyed by path and byte
//! range. A block's label file (`series.parquet`, `streams.parquet`) is
//! cached whole instead: every query of the block reads it, each with other
//! matchers and so other pages, and it is small next to the data file.
//! Writes, lists and deletes pass through.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use bytes::Bytes;
use foyer::HybridCache;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::StorageError;

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_cache_requests_total",
            "Ranged reads of warm blocks, by cache and result (hit or miss).",
        ),
        &["cache", "result"],
    )
    .expect("valid metric")
});
static BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_cache_bytes_total",
            "Bytes of ranged reads of warm blocks, by cache and result (hit or miss).",
        ),
        &["cache", "result"],
    )
    .expect("valid metric")
});

/// Registers the cache metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(REQUESTS.clone()))?;
    r.register(Box::new(BYTES.clone()))
}

/// Sizes and place of the warm-block cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CacheConfig {
    /// Memory for cached ranges, bytes (0 with `disk_bytes` 0: no cache).
    pub memory_bytes: usize,
    /// Local disk for cached ranges, bytes (0: memory only).
    pub disk_bytes: usize,
    /// Directory of the disk cache.
    pub dir: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            disk_bytes: 1 << 30,
            dir: "./data/warm-cache".into(),
        }
    }
}

/// How [`CachedStore`] may answer a read.
enum Cacheable {
    /// A HEAD of an object whose metadata is known.
    Head(ObjectMeta),
    /// A byte range, with the object's metadata when known.
    Range(Option<ObjectMeta>, Range<u64>),
}

/// `inner` with its ranged reads cached.
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    cache: HybridCache<String, Bytes>,
    /// Object metadata seen, to answer cached reads (immutable objects).
    metas: Arc<Mutex<HashMap<Path, ObjectMeta>>>,
    name: &'static str,
    /// Largest label file cached whole; larger ones are cached by range.
    whole_max: u64,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({})", self.inner)
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cached({})", self.inner)
    }
}

/// Wraps `inner` in a cache sized by `cfg`; `inner` itself when both sizes are 0.
pub async fn cached(
    inner: Arc<dyn ObjectStore>,
    cfg: &CacheConfig,
    name: &'static str,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    if cfg.memory_bytes == 0 && cfg.disk_bytes == 0 {
        return Ok(inner);
    }
    for result in ["hit", "miss"] {
        REQUESTS.with_label_values(&[name, result]);
        BYTES.with_label_values(&[name, result]);
    }
    let cache = strata_hybrid_cache::bytes_cache(name, cfg.memory_bytes, cfg.disk_bytes, &cfg.dir)
        .await
        .map_err(|e| StorageError::Config(e.to_string()))?;
    Ok(Arc::new(CachedStore {
        inner,
        cache,
        metas: Arc::new(Mutex::new(HashMap::new())),
        name,
        // A quarter of the memory, at most 64 MiB: a whole file must fit
        // several times over, or it would be fetched whole on every read.
        whole_max: (cfg.memory_bytes.max(1 << 20) as u64 / 4).min(64 << 20),
    }))
}

/// Whether a read asks for the object as it is now: no conditions, no
/// version (those always go to the store).
fn plain(options: &GetOptions) -> bool {
    options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
}

impl CachedStore {
    fn count(&self, result: &str, bytes: usize) {
        REQUESTS.with_label_values(&[self.name, result]).inc();
        BYTES
            .with_label_values(&[self.name, result])
            .inc_by(bytes as u64);
    }

    /// What a plain read may be answered with from the cache: `None` for
    /// conditional or versioned reads, which always go to the store.
    fn cacheable(&self, location: &Path, options: &GetOptions) -> Option<Cacheable> {
        if !plain(options) {
            return None;
        }
        let meta = self.metas.lock().get(location).cloned();
        if options.head {
            return meta.map(Cacheable::Head);
        }
        // A bounded range needs no size to name it; the others are resolved
        // against the size of the object, once known.
        let size = meta.as_ref().map(|m| m.size);
        let range = match (&options.range, size) {
            (Some(GetRange::Bounded(r)), _) => r.clone(),
            (Some(GetRange::Suffix(n)), Some(size)) => size.saturating_sub(*n)..size,
            (Some(GetRange::Offset(o)), Some(size)) => *o..size,
            (None, Some(size)) => 0..size,
            _ => return None,
        };
        Some(Cacheable::Range(meta, range))
    }

    /// Whether `location` is a block's label file small enough (and of a
    /// known size) to be cached whole.
    fn cached_whole(&self, location: &Path) -> bool {
        matches!(
            location.filename(),
            Some("series.parquet" | "streams.parquet")
        ) && self
            .metas
            .lock()
            .get(location)
            .is_some_and(|m| m.size <= self.whole_max)
    }

    /// A read of a file cached whole: the whole object from the cache (or
    /// fetched into it), cut to the range asked for.
    async fn get_whole(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let key = format!("{location}#whole");
        let known = self.metas.lock().get(location).cloned();
        let cached = match known {
            Some(meta) => match self.cache.get(&key).await {
                Ok(Some(hit)) => Some((meta, hit.value().clone())),
                _ => None,
            },
            None => None,
        };
        let (meta, whole, hit) = match cached {
            Some((meta, whole)) => (meta, whole, true),
            None => {
                let r = self.inner.get_opts(location, GetOptions::default()).await?;
                let meta = r.meta.clone();
                let whole = r.bytes().await?;
                self.metas.lock().insert(location.clone(), meta.clone());
                self.cache.insert(key, whole.clone());
                (meta, whole, false)
            }
        };
        let size = whole.len() as u64;
        let range = match &options.range {
            Some(GetRange::Bounded(r)) => r.clone(),
            Some(GetRange::Suffix(n)) => size.saturating_sub(*n)..size,
            Some(GetRange::Offset(o)) => *o..size,
            None => 0..size,
        };
        if range.start > range.end || range.end > size {
            // Out of the object: the store words the error.
            return self.inner.get_opts(location, options).await;
        }
        let part = whole.slice(range.start as usize..range.end as usize);
        self.count(if hit { "hit" } else { "miss" }, part.len());
        Ok(Self::result(meta, range, part))
    }

    fn result(meta: ObjectMeta, range: Range<u64>, bytes: Bytes) -> GetResult {
        GetResult {
            payload: GetResultPayload::Stream(Box::pin(futures::stream::once(
                async move { Ok(bytes) },
            ))),
            meta,
            range,
            attributes: Default::default(),
        }
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if !options.head && plain(&options) && self.cached_whole(location) {
            return self.get_whole(location, options).await;
        }
        let (meta, range) = match self.cacheable(location, &options) {
            Some(Cacheable::Head(meta)) => {
                let range = 0..meta.size;
                return Ok(Self::result(meta, range, Bytes::new()));
            }
            Some(Cacheable::Range(meta, range)) => (meta, range),
            None => {
                let r = self.inner.get_opts(location, options).await?;
                self.metas.lock().insert(location.clone(), r.meta.clone());
                return Ok(r);
            }
        };
        let key = format!("{location}#{}-{}", range.start, range.end);
        if let Some(meta) = meta
            && let Ok(Some(hit)) = self.cache.get(&key).await
        {
            let bytes = hit.value().clone();
            self.count("hit", bytes.len());
            return Ok(Self::result(meta, range, bytes));
        }
        let r = self.inner.get_opts(location, options).await?;
        let meta = r.meta.clone();
        let got = r.range.clone();
        let bytes = r.bytes().await?;
        self.count("miss", bytes.len());
        self.metas.lock().insert(location.clone(), meta.clone());
        self.cache.insert(key, bytes.clone());
        Ok(Self::result(meta, got, bytes))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let metas = self.metas.clone();
        self.inner
            .delete_stream(locations)
            .map(move |deleted| {
                if let Ok(path) = &deleted {
                    metas.lock().remove(path);
                }
                deleted
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let r = self.inner.list_with_delimiter(prefix).await?;
        let mut metas = self.metas.lock();
        for o in &r.objects {
            metas.insert(o.location.clone(), o.clone());
        }
        Ok(r)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn hits(name: &str) -> u64 {
        REQUESTS.with_label_values(&[name, "hit"]).get()
    }

    #[tokio::test]
    async fn second_read_of_a_range_is_a_hit_with_the_same_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/block/chunks.parquet");
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        inner
            .put(&path, PutPayload::from(body.clone()))
            .await
            .expect("put");
        let cfg = CacheConfig {
            memory_bytes: 1 << 20,
            disk_bytes: 4 << 20,
            dir: dir.path().join("cache").display().to_string(),
        };
        let store = cached(inner.clone(), &cfg, "test-range")
            .await
            .expect("cache");

        let first = store.get_range(&path, 100..2_100).await.expect("read");
        assert_eq!(hits("test-range"), 0);
        let meta = store.head(&path).await.expect("head");
        assert_eq!(meta.size, 10_000);
        let second = store.get_range(&path, 100..2_100).await.expect("read");
        assert_eq!(first, second);
        assert_eq!(&second[..], &body[100..2_100]);
        assert_eq!(hits("test-range"), 1);

        // A suffix read (how Parquet footers are fetched) hits too once the size is known.
        for expected_hits in [1, 2] {
            let footer = store
                .get_opts(
                    &path,
                    GetOptions {
                        range: Some(GetRange::Suffix(8)),
                        ..Default::default()
                    },
                )
                .await
                .expect("suffix");
            assert_eq!(footer.range, 9_992..10_000);
            assert_eq!(&footer.bytes().await.expect("bytes")[..], &body[9_992..]);
            assert_eq!(hits("test-range"), expected_hits);
        }
    }

    /// A label file is fetched once, whole, and any range of it is then
    /// a hit, whatever ranges were read before.
    #[tokio::test]
    async fn label_files_are_cached_whole() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/metrics/B/series.parquet");
        let body: Vec<u8> = (0..5_000u32).map(|i| (i % 253) as u8).collect();
        inner
            .put(&path, PutPayload::from(body.clone()))
            .await
            .expect("put");
        let cfg = CacheConfig {
            memory_bytes: 1 << 20,
            disk_bytes: 0,
            dir: String::new(),
        };
        let store = cached(inner, &cfg, "test-whole").await.expect("cache");
        // Its size is learnt first (DataFusion asks with a HEAD).
        store.head(&path).await.expect("head");
        let whole = store.get(&path).await.expect("get");
        assert_eq!(&whole.bytes().await.expect("bytes")[..], &body[..]);
        assert_eq!(hits("test-whole"), 0);
        let part = store.get_range(&path, 1_000..1_300).await.expect("range");
        assert_eq!(&part[..], &body[1_000..1_300]);
        let footer = store
            .get_opts(
                &path,
                GetOptions {
                    range: Some(GetRange::Suffix(8)),
                    ..Default::default()
                },
            )
            .await
            .expect("suffix");
        assert_eq!(footer.range, 4_992..5_000);
        assert_eq!(&footer.bytes().await.expect("bytes")[..], &body[4_992..]);
        assert_eq!(hits("test-whole"), 2);
        // Past the end: the store's own answer, never a panic.
        assert!(store.get_range(&path, 6_000..7_000).await.is_err());
    }

    #[tokio::test]
    async fn deleted_objects_are_no_longer_known() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/block/series.parquet");
        inner
            .put(&path, PutPayload::from(vec![1u8; 64]))
            .await
            .expect("put");
        let cfg = CacheConfig {
            memory_bytes: 1 << 20,
            disk_bytes: 0,
            dir: String::new(),
        };
        let store = cached(inner, &cfg, "test-delete").await.expect("cache");
        store.head(&path).await.expect("head");
        store.delete(&path).await.expect("delete");
        assert!(matches!(
            store.head(&path).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}

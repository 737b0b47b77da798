//! The local-disk object store, made durable: object_store's
//! `LocalFileSystem` writes a staging file and renames it into place but
//! never fsyncs, so after a power loss an uploaded block (or its
//! `meta.json`, or the bucket index) could be missing although the ingester
//! had already deleted the WAL segments that held its samples. Every write
//! through [`DurableLocalFs`] returns only once the file and each directory
//! from it up to the store's root are fsynced.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// `LocalFileSystem` whose writes are durable when they return.
#[derive(Debug)]
pub struct DurableLocalFs {
    inner: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl std::fmt::Display for DurableLocalFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DurableLocalFs({})", self.root.display())
    }
}

impl DurableLocalFs {
    /// A store rooted at `root` (which must exist).
    pub fn new(root: &FsPath) -> object_store::Result<Self> {
        let inner = LocalFileSystem::new_with_prefix(root)?;
        let root = std::fs::canonicalize(root).map_err(|e| generic(root, e))?;
        Ok(Self {
            inner: Arc::new(inner),
            root,
        })
    }

    /// fsyncs the object at `location` and its directories up to the root.
    async fn sync(&self, location: &Path) -> object_store::Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sync_path(&file, &root))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "DurableLocalFs",
                source: Box::new(e),
            })?
    }
}

fn generic(path: &FsPath, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "DurableLocalFs",
        source: format!("fsync {}: {e}", path.display()).into(),
    }
}

/// fsyncs `file`, then every directory from its parent up to `root`: a
/// new file's directory entry is durable only once its directory is, and
/// the block directories are created by the write itself.
fn sync_path(file: &FsPath, root: &FsPath) -> object_store::Result<()> {
    std::fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(|e| generic(file, e))?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| generic(d, e))?;
        if d == root {
            break;
        }
        dir = d.parent().filter(|p| p.starts_with(root));
    }
    Ok(())
}

/// A multipart upload that fsyncs once it is complete.
#[derive(Debug)]
struct DurableUpload {
    inner: Box<dyn MultipartUpload>,
    file: PathBuf,
    root: PathBuf,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let r = self.inner.complete().await?;
        let (file, root) = (self.file.clone(), self.root.clone());
        tokio::task::spawn_blocking(move || sync_path(&file, &root))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "DurableLocalFs",
                source: Box::new(e),
            })??;
        Ok(r)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for DurableLocalFs {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(DurableUpload {
            inner,
            file: self.inner.path_to_filesystem(location)?,
            root: self.root.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, WriteMultipart};

    #[tokio::test]
    async fn writes_land_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DurableLocalFs::new(dir.path()).expect("store");
        let p = Path::from("tenant*x/metrics/01ABC/meta.json");
        store.put(&p, "{}".into()).await.expect("put");
        assert_eq!(
            store
                .get(&p)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes"),
            "{}"
        );
        let big = Path::from("tenant*x/metrics/01ABC/chunks.parquet");
        let mut w = WriteMultipart::new(store.put_multipart(&big).await.expect("multipart"));
        w.write(&[7u8; 100_000]);
        w.finish().await.expect("complete");
        assert_eq!(store.head(&big).await.expect("head").size, 100_000);
        let copy = Path::from("tenant*x/warm/01ABC/chunks.parquet");
        store.copy(&big, &copy).await.expect("copy");
        assert_eq!(store.head(&copy).await.expect("head").size, 100_000);
        // The object paths map to encoded directory names under the root.
        assert!(
            dir.path()
                .join("tenant%2Ax/metrics/01ABC/meta.json")
                .exists()
        );
    }

    #[test]
    fn sync_walks_up_to_the_root_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("root");
        std::fs::create_dir_all(root.join("a/b")).expect("dirs");
        std::fs::write(root.join("a/b/f"), "x").expect("file");
        sync_path(&root.join("a/b/f"), &root).expect("synced");
        assert!(sync_path(&root.join("a/b/missing"), &root).is_err());
    }
}

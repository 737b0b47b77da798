//! Object-store calls counted and timed per bucket and operation, the
//! figures an operator reads first when the store is slow, failing or
//! costly (every request is billed): `strata_objstore_operations_total`,
//! `strata_objstore_operation_failures_total`,
//! `strata_objstore_operation_duration_seconds` and the bytes moved.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

static OPERATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_objstore_operations_total",
            "Object-store operations started, by bucket (hot or warm) and operation.",
        ),
        &["bucket", "operation"],
    )
    .expect("valid metric")
});
static FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_objstore_operation_failures_total",
            "Object-store operations that failed (not counting reads of objects that do not exist), by bucket and operation.",
        ),
        &["bucket", "operation"],
    )
    .expect("valid metric")
});
static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "strata_objstore_operation_duration_seconds",
            "Time until an object-store operation answered (for reads, until the first byte), by bucket and operation.",
        )
        .buckets(prometheus::exponential_buckets(0.001, 4.0, 9).expect("valid buckets")),
        &["bucket", "operation"],
    )
    .expect("valid metric")
});
static BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_objstore_transferred_bytes_total",
            "Bytes read from (direction=read) and written to (direction=write) the object store, by bucket.",
        ),
        &["bucket", "direction"],
    )
    .expect("valid metric")
});

const OPERATION_NAMES: [&str; 10] = [
    "get",
    "get_range",
    "head",
    "put",
    "put_multipart",
    "put_part",
    "put_multipart_complete",
    "list",
    "delete",
    "copy",
];

/// Registers the object-store metrics with `registry`.
pub fn register_metrics(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(OPERATIONS.clone()))?;
    registry.register(Box::new(FAILURES.clone()))?;
    registry.register(Box::new(DURATION.clone()))?;
    registry.register(Box::new(BYTES.clone()))
}

/// `inner` with every call counted under `bucket` (`hot`, `warm`).
pub fn instrumented(inner: Arc<dyn ObjectStore>, bucket: &'static str) -> Arc<dyn ObjectStore> {
    // Every series from the start, so that rates and ratios see the
    // first operation and the first failure.
    for operation in OPERATION_NAMES {
        let labels = [bucket, operation];
        OPERATIONS.with_label_values(&labels);
        FAILURES.with_label_values(&labels);
        DURATION.with_label_values(&labels);
    }
    for direction in ["read", "write"] {
        BYTES.with_label_values(&[bucket, direction]);
    }
    Arc::new(InstrumentedStore { inner, bucket })
}

struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    bucket: &'static str,
}

impl fmt::Debug for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({}, {:?})", self.bucket, self.inner)
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({}, {})", self.bucket, self.inner)
    }
}

/// A missing object is an answer, not a failure: readers probe for marks
/// and indexes that may not exist.
fn failed<T>(result: &object_store::Result<T>) -> bool {
    matches!(result, Err(e) if !matches!(e, object_store::Error::NotFound { .. }))
}

/// Counts and times one finished call.
fn record<T>(bucket: &str, operation: &str, started: Instant, result: &object_store::Result<T>) {
    let labels = [bucket, operation];
    OPERATIONS.with_label_values(&labels).inc();
    DURATION
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    if failed(result) {
        FAILURES.with_label_values(&labels).inc();
    }
}

/// A multipart upload (large blocks) whose parts are counted as `put_part`
/// and whose end as `put_multipart_complete`.
#[derive(Debug)]
struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
    bucket: &'static str,
}

#[async_trait]
impl MultipartUpload for CountedUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let bytes = data.content_length() as u64;
        let bucket = self.bucket;
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let started = Instant::now();
            let r = part.await;
            record(bucket, "put_part", started, &r);
            if r.is_ok() {
                BYTES.with_label_values(&[bucket, "write"]).inc_by(bytes);
            }
            r
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let started = Instant::now();
        let r = self.inner.complete().await;
        record(self.bucket, "put_multipart_complete", started, &r);
        r
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

impl InstrumentedStore {
    fn record<T>(&self, operation: &str, started: Instant, result: &object_store::Result<T>) {
        record(self.bucket, operation, started, result);
    }

    /// Counts a streamed operation (list, delete) once, and its failures
    /// as the stream yields them.
    fn counted_stream<T: Send + 'static>(
        &self,
        operation: &'static str,
        stream: BoxStream<'static, object_store::Result<T>>,
    ) -> BoxStream<'static, object_store::Result<T>> {
        let labels = [self.bucket, operation];
        OPERATIONS.with_label_values(&labels).inc();
        let failures = FAILURES.with_label_values(&labels);
        stream
            .inspect(move |item| {
                if failed(item) {
                    failures.inc();
                }
            })
            .boxed()
    }
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let bytes = payload.content_length() as u64;
        let started = Instant::now();
        let r = self.inner.put_opts(location, payload, opts).await;
        self.record("put", started, &r);
        if r.is_ok() {
            BYTES
                .with_label_values(&[self.bucket, "write"])
                .inc_by(bytes);
        }
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let started = Instant::now();
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.record("put_multipart", started, &r);
        let bucket = self.bucket;
        r.map(|inner| Box::new(CountedUpload { inner, bucket }) as Box<dyn MultipartUpload>)
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let operation = if options.head {
            "head"
        } else if options.range.is_some() {
            "get_range"
        } else {
            "get"
        };
        let started = Instant::now();
        let r = self.inner.get_opts(location, options).await;
        self.record(operation, started, &r);
        if let Ok(got) = &r
            && operation != "head"
        {
            BYTES
                .with_label_values(&[self.bucket, "read"])
                .inc_by(got.range.end.saturating_sub(got.range.start));
        }
        r
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.counted_stream("delete", self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counted_stream("list", self.inner.list(prefix))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let started = Instant::now();
        let r = self.inner.list_with_delimiter(prefix).await;
        self.record("list", started, &r);
        r
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let started = Instant::now();
        let r = self.inner.copy_opts(from, to, options).await;
        self.record("copy", started, &r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn count(m: &IntCounterVec, op: &str) -> u64 {
        m.with_label_values(&["test-bucket", op]).get()
    }

    #[tokio::test]
    async fn operations_bytes_and_failures_are_counted_and_a_missing_object_is_no_failure() {
        let store = instrumented(Arc::new(InMemory::new()), "test-bucket");
        let path = Path::from("t/b/chunks.parquet");
        store
            .put(&path, PutPayload::from(vec![7u8; 1000]))
            .await
            .expect("put");
        let part = store.get_range(&path, 10..110).await.expect("range");
        assert_eq!(part.len(), 100);
        store.head(&path).await.expect("head");
        assert!(store.get(&Path::from("t/missing")).await.is_err());
        let listed: Vec<_> = store.list(Some(&Path::from("t"))).collect().await;
        assert_eq!(listed.len(), 1);

        assert_eq!(count(&OPERATIONS, "put"), 1);
        assert_eq!(count(&OPERATIONS, "get_range"), 1);
        assert_eq!(count(&OPERATIONS, "head"), 1);
        assert_eq!(count(&OPERATIONS, "get"), 1);
        assert_eq!(count(&OPERATIONS, "list"), 1);
        assert_eq!(
            count(&FAILURES, "get"),
            0,
            "a missing object is not a failure"
        );
        assert_eq!(
            BYTES.with_label_values(&["test-bucket", "write"]).get(),
            1000
        );
        assert_eq!(BYTES.with_label_values(&["test-bucket", "read"]).get(), 100);
        assert_eq!(
            DURATION
                .with_label_values(&["test-bucket", "put"])
                .get_sample_count(),
            1
        );
        // Large blocks go up in parts: each is counted, and their bytes.
        let mut upload = store
            .put_multipart(&Path::from("t/b/big.parquet"))
            .await
            .expect("multipart");
        upload
            .put_part(PutPayload::from(vec![1u8; 300]))
            .await
            .expect("part");
        upload.complete().await.expect("complete");
        assert_eq!(count(&OPERATIONS, "put_part"), 1);
        assert_eq!(count(&OPERATIONS, "put_multipart_complete"), 1);
        assert_eq!(
            BYTES.with_label_values(&["test-bucket", "write"]).get(),
            1300
        );
    }
}

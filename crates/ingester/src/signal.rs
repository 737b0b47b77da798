//! What a signal (metrics or logs) supplies to the one [`Head`](crate::Head):
//! its items, its per-tenant index, how a push is checked, logged and
//! applied, how its WAL records replay, and how a cut becomes a block. The
//! head does the rest (WAL, tenants, the two-phase freeze, upload with
//! retry, the cutter loop, shutdown) once for both.

use std::future::Future;

use object_store::ObjectStore;
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use strata_model::Labels;
use strata_storage::{BlockMeta, StorageError};

use crate::head::TenantHead;
use crate::walrec::Record;

/// Appends one batch of WAL records.
pub type WalAppend<'a> = dyn FnMut(&[&[u8]]) -> Result<(), strata_wal::WalError> + 'a;

/// Items of one series or stream, time-ordered: what a cut moves into a block.
pub type Cut<I> = Vec<(Labels, Vec<I>)>;

/// The self-monitoring series a signal's head keeps up to date.
pub struct SignalMetrics {
    /// Items appended (after the WAL write).
    pub appended: &'static IntCounter,
    /// Items refused, by reason.
    pub rejected: &'static IntCounterVec,
    /// Series (streams) in the head.
    pub series: &'static IntGauge,
    /// Blocks cut and uploaded.
    pub blocks_uploaded: &'static IntCounter,
}

/// What a push changed in the head, for the head-wide bookkeeping.
pub struct Applied {
    /// Newest item time applied (in the signal's unit), `i64::MIN` if none.
    pub max_time: i64,
    /// Series (streams) the push created.
    pub created: usize,
}

/// A kind of data the ingester head holds.
pub trait Signal: Send + Sync + Sized + 'static {
    /// "metrics" or "logs": the `wal` label of the WAL metrics, log fields.
    const NAME: &'static str;
    /// The WAL's directory under the TSDB directory.
    const WAL_DIR: &'static str;
    /// The upload record's file name under the TSDB directory.
    const SHIPPED_FILE: &'static str;
    /// Units of the signal's timestamps per millisecond (1 for ms, 10^6 for ns).
    const UNITS_PER_MS: i64;

    /// One sample or log entry.
    type Item: Clone + Send + Sync + 'static;
    /// The series or streams of one tenant.
    type Index: Default + Send + Sync + 'static;
    /// What a push carries.
    type Batch<'a>;
    /// Per-push limits.
    type Limits;
    /// What a push answers.
    type Outcome: Default;
    /// What a push accepted, ready to be logged and applied.
    type Accepted;
    /// State carried across the records of one WAL replay.
    type Replay: Default;
    /// An encoded block.
    type Block: Send + Sync + 'static;

    /// Timestamp of an item.
    fn time(item: &Self::Item) -> i64;
    /// The signal's self-monitoring series.
    fn metrics() -> SignalMetrics;
    /// How far behind its series' newest item an item is still accepted:
    /// the head keeps at least this much before cutting.
    fn window(&self) -> i64;

    /// Checks a push against the tenant's head (under the WAL lock): the
    /// outcome so far, and what is accepted (`None` when nothing is).
    fn check(
        &self,
        head: &TenantHead<Self>,
        batch: Self::Batch<'_>,
        limits: &Self::Limits,
        min_valid: i64,
    ) -> (Self::Outcome, Option<Self::Accepted>);
    /// Encodes the WAL records of an accepted push one after the other
    /// into the empty `buf`, returning where each record ends.
    fn log(&self, tenant: &str, accepted: &Self::Accepted, buf: &mut Vec<u8>) -> Vec<usize>;
    /// Applies an accepted push that the WAL holds.
    fn apply(&self, head: &TenantHead<Self>, accepted: Self::Accepted) -> Applied;
    /// Items a push accepted.
    fn accepted(outcome: &Self::Outcome) -> usize;

    /// Applies one replayed WAL record; `tenant` gives (creating) a tenant's head.
    fn replay(
        &self,
        state: &mut Self::Replay,
        record: Record,
        tenant: &dyn Fn(String) -> std::sync::Arc<TenantHead<Self>>,
    );
    /// Called once after the replay with its final state.
    fn replayed(&self, state: Self::Replay);

    /// Series (streams) in an index.
    fn len(index: &Self::Index) -> usize;
    /// Newest item time in an index.
    fn newest(index: &Self::Index) -> Option<i64>;
    /// Whether any item in an index is older than `boundary`.
    fn any_before(index: &Self::Index, boundary: i64) -> bool;
    /// Appends WAL records re-logging the items at or after `boundary`
    /// (what the head keeps through a cut) to `wal`, one batch at a time.
    fn relog_kept(
        tenant: &str,
        index: &Self::Index,
        boundary: i64,
        buf: &mut Vec<u8>,
        append: &mut WalAppend<'_>,
    ) -> Result<(), strata_wal::WalError>;
    /// Removes and returns the items before `boundary`, dropping series
    /// (streams) left empty.
    fn take_before(index: &mut Self::Index, boundary: i64) -> Cut<Self::Item>;

    /// Encodes one block range's items (`[min_ms, max_ms)`).
    fn encode(
        items: &Cut<Self::Item>,
        min_ms: i64,
        max_ms: i64,
    ) -> Result<Self::Block, StorageError>;
    /// Uploads an encoded block.
    fn upload(
        store: &dyn ObjectStore,
        tenant: &str,
        block: &Self::Block,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// The block's meta.json.
    fn meta(block: &Self::Block) -> &BlockMeta;
}

//! What a push to an ingester answers, and the limits it is checked
//! against: the vocabulary distributors and ingesters share.

use std::time::Duration;

/// Why a sample was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than the series' newest sample beyond the out-of-order window.
    OutOfOrder,
    /// Older than the head's range: its block was already cut.
    OutOfBounds,
    /// Same timestamp as a stored sample with a different value.
    DuplicateTimestamp,
    /// A new series beyond the tenant's `max_global_series_per_user`.
    SeriesLimit,
}

impl RejectReason {
    /// Metric label / API wording, as Prometheus and Mimir name these.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfOrder => "sample-out-of-order",
            Self::OutOfBounds => "sample-out-of-bounds",
            Self::DuplicateTimestamp => "sample-duplicate-timestamp",
            Self::SeriesLimit => "per_user_series_limit",
        }
    }
}

/// Rejection reasons by name, as they cross the wire between processes.
pub trait ReasonName: Copy + Sized {
    /// The reason's name.
    fn name(self) -> &'static str;
    /// The reason called `name`.
    fn from_name(name: &str) -> Option<Self>;
}

impl ReasonName for RejectReason {
    fn name(self) -> &'static str {
        self.as_str()
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Self::OutOfOrder,
            Self::OutOfBounds,
            Self::DuplicateTimestamp,
            Self::SeriesLimit,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// A pushed series' (or stream's) items not accepted, with the reason for the first one.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected<R> {
    /// Position of the series or stream in the pushed batch.
    pub index: usize,
    pub reason: R,
    pub count: usize,
    /// Timestamp of the first rejected item (ms for samples, ns for log entries).
    pub first_timestamp: i64,
}

impl<R> Rejected<R> {
    /// Counts one more rejected item in `slot`, keeping the first one's reason and time.
    pub fn note(slot: &mut Option<Self>, index: usize, reason: R, t: i64) {
        match slot {
            Some(r) => r.count += 1,
            None => {
                *slot = Some(Rejected {
                    index,
                    reason,
                    count: 1,
                    first_timestamp: t,
                })
            }
        }
    }
}

/// A series' samples not accepted.
pub type RejectedSeries = Rejected<RejectReason>;

/// Outcome of a push: how many samples are now durable, and what was refused.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PushOutcome {
    pub accepted: usize,
    pub rejected: Vec<RejectedSeries>,
}

/// The tenant limits a push is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushLimits {
    /// The tenant's out-of-order window.
    pub out_of_order_time_window: Duration,
    /// Most series in the tenant's head; 0 is unlimited.
    pub max_series: usize,
    /// Most metric metadata entries in the tenant's head; 0 is unlimited.
    pub max_metadata: usize,
    /// Most metadata entries of one metric family; 0 is unlimited.
    pub max_metadata_per_metric: usize,
    /// Most exemplars in the tenant's head (oldest evicted); 0 is unlimited.
    pub max_exemplars: usize,
}

/// Why log entries were not accepted, worded as Loki's discarded-samples reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogRejectReason {
    /// More than `max_chunk_age / 2` behind the stream's newest entry.
    TooFarBehind,
    /// Older than the head's range: its block was already cut.
    OutOfBounds,
    /// A new stream beyond the tenant's `max_global_streams_per_user`.
    StreamLimit,
}

impl LogRejectReason {
    /// Metric label / API wording.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooFarBehind => "too_far_behind",
            Self::OutOfBounds => "out_of_bounds",
            Self::StreamLimit => "stream_limit",
        }
    }
}

impl ReasonName for LogRejectReason {
    fn name(self) -> &'static str {
        self.as_str()
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::TooFarBehind, Self::OutOfBounds, Self::StreamLimit]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// A stream's entries not accepted.
pub type RejectedStream = Rejected<LogRejectReason>;

/// Outcome of a log push.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogPushOutcome {
    pub accepted: usize,
    pub rejected: Vec<RejectedStream>,
}

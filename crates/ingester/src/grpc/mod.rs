//! The ingester over gRPC: the service other processes call (pushes from
//! distributors, reads from queriers; metrics and logs) and
//! [`IngesterClient`], the one way distributors and queriers reach an
//! ingester: in-process when it runs in the same process (no encoding),
//! over a pooled tonic channel otherwise.

mod client;
mod rawpush;
mod service;
mod wire;

pub use client::{
    IngesterClient, IngesterPool, LogSelect, Metadata, MetadataAnswer, RemoteIngester, SharedBatch,
    SharedLogBatch,
};
pub use rawpush::EncodedSeries;
pub use service::{IngesterService, ServedIngesters};
pub use wire::{matchers_from_proto, matchers_to_proto};

use tonic::Status;

use crate::IngesterError;

/// Largest gRPC message either side accepts (a push of a large remote-write
/// batch, or a query stream message).
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Series (or log streams) per streamed message: bounded messages.
const SERIES_PER_MESSAGE: usize = 512;

/// Why a call to an ingester failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The ingester could not be reached or is shutting down.
    #[error("ingester {addr} unavailable: {message}")]
    Unavailable {
        /// Its address.
        addr: String,
        /// What happened.
        message: String,
    },
    /// The ingester failed the call.
    #[error("ingester {addr} failed: {message}")]
    Failed {
        /// Its address.
        addr: String,
        /// What happened.
        message: String,
    },
}

impl ClientError {
    fn from_status(addr: &str, s: Status) -> Self {
        let message = s.message().to_string();
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                Self::Unavailable {
                    addr: addr.to_string(),
                    message,
                }
            }
            _ => Self::Failed {
                addr: addr.to_string(),
                message,
            },
        }
    }

    fn local(e: IngesterError) -> Self {
        match e {
            IngesterError::ShuttingDown => Self::Unavailable {
                addr: "local".into(),
                message: e.to_string(),
            },
            other => Self::Failed {
                addr: "local".into(),
                message: other.to_string(),
            },
        }
    }

    fn task(e: tokio::task::JoinError) -> Self {
        Self::Failed {
            addr: "local".into(),
            message: format!("ingester task failed: {e}"),
        }
    }
}

//! The ingester over gRPC: the service other processes call (pushes from
//! distributors, reads from queriers; metrics and logs), and this
//! process's ingesters as [`LocalIngesters`] for in-process callers. The
//! client side lives in `strata-ingester-client`.

mod local;
mod service;

pub use local::Local;
pub use service::{IngesterService, ServedIngesters};
pub use strata_ingester_client::wire::{matchers_from_proto, matchers_to_proto};
pub use strata_ingester_client::{
    ClientError, EncodedSeries, IngesterClient, IngesterPool, LocalIngesters, LogSelect, Metadata,
    MetadataAnswer, RemoteIngester, SharedBatch, SharedLogBatch,
};

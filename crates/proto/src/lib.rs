//! Wire types shared between Strata roles and its clients, generated from `proto/` with prost,
//! the gRPC services between roles, generated with tonic, and how roles
//! connect to each other ([`transport`]: endpoints, mutual TLS).

/// Prometheus remote-write 1.0 messages (`prometheus.WriteRequest` and friends).
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Prometheus remote-write 2.0 messages (`io.prometheus.write.v2.Request`).
pub mod prometheus_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}

/// Loki's push API messages (`logproto.PushRequest` and friends).
pub mod loki {
    include!(concat!(env!("OUT_DIR"), "/logproto.rs"));
}

/// Strata's own services between roles (package `strata.*`).
pub mod strata {
    /// The ring's and Raft's RPCs between Strata processes.
    pub mod ring {
        include!(concat!(env!("OUT_DIR"), "/strata.ring.rs"));
    }

    /// The ingester's gRPC service (push from distributors, reads from
    /// queriers), by wire version; the current one is re-exported here.
    pub mod ingester {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/strata.ingester.v1.rs"));
        }
        pub use v1::*;
    }

    /// The store-gateway's gRPC service (block reads from queriers), by
    /// wire version; the current one is re-exported here.
    pub mod storegateway {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/strata.storegateway.v1.rs"));
        }
        pub use v1::*;
    }

    /// The query-frontend's gRPC service (queriers pull queued requests),
    /// by wire version; the current one is re-exported here.
    pub mod frontend {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/strata.frontend.v1.rs"));
        }
        pub use v1::*;
    }
}

pub use strata::{frontend, ingester, ring, storegateway};

pub mod transport;

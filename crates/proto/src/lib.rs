//! Wire types shared between Strata roles and its clients, generated from `proto/` with prost.

/// Prometheus remote-write 1.0 messages (`prometheus.WriteRequest` and friends).
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Loki's push API messages (`logproto.PushRequest` and friends).
pub mod loki {
    include!(concat!(env!("OUT_DIR"), "/logproto.rs"));
}

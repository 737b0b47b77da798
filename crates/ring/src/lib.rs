//! The ring: which Strata processes exist, what they run, where they listen
//! and which tokens (shares of the series hash space) each ingester owns.
//! It is a small state machine replicated with Raft (openraft) among the
//! group's voters, which join and leave the group at run time (found
//! through `-ring.raft.peers`: addresses or DNS names); every other process
//! watches it over gRPC and keeps a local copy. Distributors pick a series' replicas from
//! it, queriers the ingesters to ask; each process registers itself and
//! heartbeats through it.

pub mod client;
pub mod desc;
pub mod discovery;
pub mod lifecycle;
pub mod metrics;
pub mod page;
pub mod raft;
pub mod replication;
pub mod service;
pub mod shard;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::Ring;
pub use desc::{InstanceDesc, InstanceState, RingCommand, RingDesc};
pub use lifecycle::Lifecycler;
pub use replication::{ReadSet, ReplicationError, ReplicationSet, RingView, block_key, shard_key};

/// Errors of the ring.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// Raft's storage directory could not be used.
    #[error("ring storage in {dir}: {source}")]
    Storage {
        /// The directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A setting is invalid.
    #[error("ring configuration: {0}")]
    Config(String),
    /// Raft refused or failed.
    #[error("ring raft: {0}")]
    Raft(String),
    /// No leader is known right now (election in progress or no quorum).
    #[error("the ring has no leader right now; retry shortly")]
    NoLeader,
    /// A gRPC call to another member failed.
    #[error("ring call to {addr} failed: {message}")]
    Rpc {
        /// Address called.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// A message could not be encoded or decoded.
    #[error("ring message encoding: {0}")]
    Codec(String),
    /// No voter of the Raft group has this address.
    #[error("no voter of the ring's Raft group is at {0}")]
    NotAMember(String),
    /// No ring member could be reached.
    #[error("no ring member reachable (tried {0})")]
    Unreachable(String),
}

/// Ring settings (the `ring:` block of the configuration).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RingConfig {
    /// This process's id in the ring; the host name when empty.
    pub instance_id: String,
    /// Address (`host` or `host:port`) other processes reach this one's gRPC
    /// server at; the gRPC listen address (or 127.0.0.1) when empty.
    pub instance_addr: String,
    /// Availability zone; replicas go to distinct zones when zones are set.
    pub instance_availability_zone: String,
    /// Copies of each series written to ingesters.
    pub replication_factor: usize,
    /// Tokens an ingester owns.
    pub num_tokens: usize,
    /// File keeping an ingester's tokens across restarts.
    pub tokens_file_path: String,
    /// Interval between heartbeats.
    #[serde(with = "strata_model::humantime_serde")]
    pub heartbeat_period: Duration,
    /// An instance whose last heartbeat is older is unhealthy.
    #[serde(with = "strata_model::humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// Unhealthy instances are removed from the ring after this long (0 = never).
    #[serde(with = "strata_model::humantime_serde")]
    pub auto_forget_unhealthy_period: Duration,
    /// Raft settings.
    pub raft: RaftSettings,
}

/// Raft settings (the `ring.raft:` block).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSettings {
    /// Where the ring's Raft group is found: gRPC `host:port` addresses, or
    /// `dns+host:port` names standing for every address they resolve to.
    /// A process whose advertised address is listed is a voter; the first
    /// entry starts the group when none exists. Empty runs a one-voter ring
    /// in this process. A YAML list, or comma-separated on the command line.
    #[serde(with = "string_list")]
    pub peers: Vec<String>,
    /// Makes this process a voter even when its address is not in `peers`:
    /// it joins the group through them.
    pub voter: bool,
    /// Directory of the Raft log, vote and snapshots.
    pub dir: String,
    /// Leader heartbeat interval; elections start after 4-8 missed ones.
    #[serde(with = "strata_model::humantime_serde")]
    pub heartbeat_interval: Duration,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            instance_id: String::new(),
            instance_addr: String::new(),
            instance_availability_zone: String::new(),
            replication_factor: 3,
            num_tokens: 128,
            tokens_file_path: "./data/ring/tokens".into(),
            heartbeat_period: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(60),
            auto_forget_unhealthy_period: Duration::from_secs(600),
            raft: RaftSettings::default(),
        }
    }
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            voter: false,
            dir: "./data/ring".into(),
            heartbeat_interval: Duration::from_millis(250),
        }
    }
}

/// A list written as a YAML sequence or as one comma-separated string.
mod string_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Either::deserialize(d)? {
            Either::List(l) => l,
            Either::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

/// The host name, for default instance ids.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "strata".into())
}

pub use strata_model::now_ms;

//! The ring held in Raft (openraft): type configuration, the voter node
//! that owns a Raft instance, and its storage and network.

pub mod network;
pub mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use tokio::sync::watch;

use crate::RingError;
use crate::desc::{RingCommand, RingDesc, RingResponse};

/// Raft node ids: 1-based positions in `-ring.raft.peers`.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the ring.
    pub TypeConfig:
        D = RingCommand,
        R = RingResponse,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft instance type of the ring.
pub type RingRaft = openraft::Raft<TypeConfig>;

/// Settings of a ring voter.
#[derive(Debug, Clone)]
pub struct VoterConfig {
    /// Directory of the Raft log, vote and snapshots.
    pub dir: PathBuf,
    /// gRPC addresses of all voters, in id order (id = position + 1).
    pub peers: Vec<String>,
    /// This voter's id.
    pub id: NodeId,
    /// Interval of leader heartbeats; elections start after 4-8 of them.
    pub heartbeat_interval: Duration,
}

/// A ring voter: the Raft instance plus the way to reach the others.
pub struct RaftNode {
    raft: RingRaft,
    id: NodeId,
    network: network::GrpcNetwork,
}

impl RaftNode {
    /// Opens the voter's storage, starts Raft and initializes the cluster
    /// from the peer list when this is its first start. Returns the node and
    /// the channel on which every applied ring is published.
    pub async fn start(
        cfg: VoterConfig,
    ) -> Result<(Arc<Self>, watch::Receiver<Arc<RingDesc>>), RingError> {
        let (tx, rx) = watch::channel(Arc::new(RingDesc::default()));
        let log = store::LogStore::open(&cfg.dir).map_err(|e| RingError::Storage {
            dir: cfg.dir.display().to_string(),
            source: e,
        })?;
        let sm = store::RingStateMachine::open(&cfg.dir, tx).map_err(|e| RingError::Storage {
            dir: cfg.dir.display().to_string(),
            source: e,
        })?;
        let hb = cfg.heartbeat_interval.as_millis().max(10) as u64;
        let config = openraft::Config {
            cluster_name: "strata-ring".into(),
            heartbeat_interval: hb,
            election_timeout_min: hb * 4,
            election_timeout_max: hb * 8,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(500),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RingError::Config(e.to_string()))?;
        let network = network::GrpcNetwork::default();
        let raft = RingRaft::new(cfg.id, Arc::new(config), network.clone(), log, sm)
            .await
            .map_err(|e| RingError::Raft(e.to_string()))?;
        let members: BTreeMap<NodeId, BasicNode> = cfg
            .peers
            .iter()
            .enumerate()
            .map(|(i, addr)| (i as NodeId + 1, BasicNode::new(addr.clone())))
            .collect();
        // Every voter may initialize with the same members; openraft
        // rejects it once the cluster has state, which is the normal restart.
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(id = cfg.id, peers = ?cfg.peers, "initialized the ring's Raft cluster")
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(RingError::Raft(e.to_string())),
        }
        Ok((
            Arc::new(Self {
                raft,
                id: cfg.id,
                network,
            }),
            rx,
        ))
    }

    /// The Raft instance (for the gRPC service).
    pub fn raft(&self) -> &RingRaft {
        &self.raft
    }

    /// Whether this voter is the current leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Id of the current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Commits `cmd` through Raft, forwarding it to the leader when this
    /// voter is not the leader.
    pub async fn update(&self, cmd: RingCommand) -> Result<RingResponse, RingError> {
        match self.raft.client_write(cmd.clone()).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
                Some(node) => {
                    self.network.forward_update(&node.addr, &cmd).await?;
                    Ok(RingResponse::default())
                }
                None => Err(RingError::NoLeader),
            },
            Err(e) => Err(RingError::Raft(e.to_string())),
        }
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "ring raft did not shut down cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::watch;

    use super::*;
    use crate::desc::{InstanceDesc, InstanceState};
    use crate::{Ring, RingConfig};

    struct Voter {
        ring: Arc<Ring>,
        stop: watch::Sender<bool>,
        server: tokio::task::JoinHandle<()>,
    }

    async fn start_voter(
        dir: &std::path::Path,
        peers: &[String],
        id: NodeId,
        listener: tokio::net::TcpListener,
    ) -> Voter {
        let cfg = VoterConfig {
            dir: dir.join(format!("v{id}")),
            peers: peers.to_vec(),
            id,
            heartbeat_interval: Duration::from_millis(100),
        };
        let (node, desc) = RaftNode::start(cfg).await.unwrap();
        let mut rc = RingConfig::default();
        rc.raft.peers = peers.to_vec();
        let ring = Ring::from_voter(node, desc, rc);
        let (raft_svc, ring_svc) = crate::service::services(&ring).unwrap();
        let (stop, mut rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(raft_svc)
                .add_service(ring_svc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async move {
                        let _ = rx.changed().await;
                    },
                )
                .await;
        });
        Voter { ring, stop, server }
    }

    fn instance(id: &str) -> InstanceDesc {
        InstanceDesc {
            id: id.into(),
            roles: vec!["ingester".into()],
            grpc_addr: String::new(),
            http_addr: String::new(),
            zone: String::new(),
            state: InstanceState::Active,
            tokens: vec![1],
            heartbeat_ms: 1,
            registered_ms: 1,
        }
    }

    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn update_retrying(ring: &Ring, cmd: RingCommand) {
        for _ in 0..100 {
            if ring.update(cmd.clone()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("update never committed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_voters_replicate_survive_leader_loss_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..3 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.push(l.local_addr().unwrap().to_string());
            listeners.push(l);
        }
        let mut voters = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            voters.push(Some(
                start_voter(dir.path(), &peers, i as NodeId + 1, l).await,
            ));
        }
        // An update through a follower is forwarded to the leader and
        // reaches every voter's state machine.
        let leader = {
            let v = voters[0].as_ref().unwrap();
            eventually("a leader", || v.ring.voter().unwrap().leader().is_some()).await;
            v.ring.voter().unwrap().leader().unwrap()
        };
        let follower = voters
            .iter()
            .flatten()
            .find(|v| !v.ring.voter().unwrap().is_leader())
            .unwrap();
        update_retrying(&follower.ring, RingCommand::Register(instance("a"))).await;
        for v in voters.iter().flatten() {
            eventually("replicated", || v.ring.desc().instances.contains_key("a")).await;
        }

        // Kill the leader: the others elect a new one and take updates.
        let old = voters[leader as usize - 1].take().unwrap();
        old.ring.voter().unwrap().shutdown().await;
        let _ = old.stop.send(true);
        let _ = old.server.await;
        let survivor = voters.iter().flatten().next().unwrap();
        let started = std::time::Instant::now();
        eventually(
            "a new leader",
            || matches!(survivor.ring.voter().unwrap().leader(), Some(l) if l != leader),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(10));
        update_retrying(&survivor.ring, RingCommand::Register(instance("b"))).await;
        for v in voters.iter().flatten() {
            eventually("replicated after failover", || {
                v.ring.desc().instances.contains_key("b")
            })
            .await;
        }

        // The killed voter restarts from its disk and catches up.
        let l = tokio::net::TcpListener::bind(&peers[leader as usize - 1])
            .await
            .unwrap();
        let back = start_voter(dir.path(), &peers, leader, l).await;
        eventually("caught up", || {
            let d = back.ring.desc();
            d.instances.contains_key("a") && d.instances.contains_key("b")
        })
        .await;
        for v in voters.iter().flatten().chain([&back]) {
            v.ring.voter().unwrap().shutdown().await;
            let _ = v.stop.send(true);
        }
    }
}

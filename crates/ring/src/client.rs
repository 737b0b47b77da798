//! [`Ring`]: a process's handle on the ring. A voter reads the ring from its
//! own Raft state machine; any other process keeps a copy fed by a gRPC
//! watch stream from a voter (reconnecting to the next one on failure).
//! Updates go through the local voter or to any voter, which forwards them
//! to the leader. When no voter answers, the last ring seen stays in use, so
//! writes continue during a ring outage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_proto::ring::ring_client::RingClient as RingGrpcClient;
use strata_proto::ring::{RemoveVoterRequest, StatusRequest, UpdateRequest, WatchRequest};
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::desc::{RingCommand, RingDesc};
use crate::raft::RaftNode;
use crate::raft::network::channel;
use crate::replication::RingView;
use crate::{RingConfig, RingError};

/// A role's token index and the ring it was built from.
type BuiltView = (Arc<RingDesc>, Arc<RingView>);

/// A process's view of and access to the ring.
pub struct Ring {
    desc: watch::Receiver<Arc<RingDesc>>,
    voter: Option<Arc<RaftNode>>,
    /// `-ring.raft.peers`: addresses and `dns+` names of voters.
    seeds: Vec<String>,
    /// Voters' addresses as the last ring received from a voter listed them
    /// (voters that joined after the seeds were written).
    learned_voters: Mutex<Vec<String>>,
    config: RingConfig,
    /// Token indexes by role, each of the ring it was built from.
    views: Mutex<HashMap<&'static str, BuiltView>>,
    /// Channels to the voters, reused across updates.
    channels: Mutex<HashMap<String, Channel>>,
}

impl Ring {
    /// The ring of a voter process.
    pub fn from_voter(
        node: Arc<RaftNode>,
        desc: watch::Receiver<Arc<RingDesc>>,
        config: RingConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            desc,
            voter: Some(node),
            seeds: config.raft.peers.clone(),
            learned_voters: Mutex::default(),
            config,
            views: Mutex::default(),
            channels: Mutex::default(),
        })
    }

    /// The ring of a process that is not a voter: watches the voters in
    /// `config.raft.peers` until `shutdown`.
    pub fn watching(
        config: RingConfig,
        instance_id: String,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let (tx, rx) = watch::channel(Arc::new(RingDesc::default()));
        let ring = Arc::new(Self {
            desc: rx,
            voter: None,
            seeds: config.raft.peers.clone(),
            learned_voters: Mutex::default(),
            config,
            views: Mutex::default(),
            channels: Mutex::default(),
        });
        tokio::spawn(watch_members(ring.clone(), instance_id, tx, shutdown));
        ring
    }

    /// A ring of this process's ingester alone that never changes or
    /// expires: for embedding the engine (tests, benchmarks) without Raft.
    pub fn single(instance_id: &str) -> Arc<Self> {
        let mut desc = RingDesc::default();
        desc.apply(&RingCommand::Register(crate::desc::InstanceDesc {
            id: instance_id.to_string(),
            roles: vec!["all".into()],
            grpc_addr: String::new(),
            http_addr: String::new(),
            zone: String::new(),
            state: crate::desc::InstanceState::Active,
            tokens: vec![0],
            // Far in the future: the heartbeat never ages.
            heartbeat_ms: i64::MAX / 4,
            registered_ms: 0,
        }));
        let (_tx, rx) = watch::channel(Arc::new(desc));
        Arc::new(Self {
            desc: rx,
            voter: None,
            seeds: Vec::new(),
            learned_voters: Mutex::default(),
            config: RingConfig::default(),
            views: Mutex::default(),
            channels: Mutex::default(),
        })
    }

    /// Ring settings.
    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// The local Raft voter, when this process is one.
    pub fn voter(&self) -> Option<&Arc<RaftNode>> {
        self.voter.as_ref()
    }

    /// The current ring.
    pub fn desc(&self) -> Arc<RingDesc> {
        self.desc.borrow().clone()
    }

    /// A receiver that sees every new ring.
    pub fn subscribe(&self) -> watch::Receiver<Arc<RingDesc>> {
        self.desc.clone()
    }

    /// The ingesters' token index of the current ring (rebuilt only when
    /// the ring changed).
    pub fn ingesters(&self) -> Arc<RingView> {
        self.view_of("ingester")
    }

    /// The store-gateways' token index of the current ring: which
    /// gateways own a block.
    pub fn store_gateways(&self) -> Arc<RingView> {
        self.view_of("store-gateway")
    }

    /// HTTP addresses of the healthy ACTIVE instances running `role`.
    pub fn http_addrs(&self, role: &str) -> Vec<String> {
        let desc = self.desc();
        let timeout = self.config().heartbeat_timeout.as_millis() as i64;
        crate::shard::members(&desc, role, crate::now_ms(), timeout)
            .into_iter()
            .filter_map(|id| desc.instances.get(&id).map(|i| i.http_addr.clone()))
            .filter(|a| !a.is_empty())
            .collect()
    }

    fn view_of(&self, role: &'static str) -> Arc<RingView> {
        let desc = self.desc();
        let mut cached = self.views.lock();
        if let Some((d, v)) = cached.get(role)
            && Arc::ptr_eq(d, &desc)
        {
            return v.clone();
        }
        let view = Arc::new(RingView::new(desc.clone(), role));
        cached.insert(role, (desc, view.clone()));
        view
    }

    fn channel(&self, addr: &str) -> Result<Channel, RingError> {
        let mut pool = self.channels.lock();
        if let Some(c) = pool.get(addr) {
            return Ok(c.clone());
        }
        let c = channel(addr, Duration::from_secs(10))?;
        pool.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Voters to reach: the seeds (DNS names resolved now), then the voters
    /// the last ring listed.
    async fn candidates(&self) -> Vec<String> {
        let mut out = crate::discovery::resolve(&self.seeds).await;
        for v in self.learned_voters.lock().iter() {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        out
    }

    /// The Raft group's membership, from the local voter or any voter.
    pub async fn group_status(&self) -> Result<crate::raft::GroupStatus, RingError> {
        if let Some(v) = &self.voter {
            return Ok(v.status());
        }
        let mut last = None;
        for addr in self.candidates().await {
            let reply = match self.channel(&addr) {
                Ok(ch) => RingGrpcClient::new(ch)
                    .status(StatusRequest {})
                    .await
                    .map_err(|s| RingError::Rpc {
                        addr: addr.clone(),
                        message: s.message().to_string(),
                    }),
                Err(e) => Err(e),
            };
            match reply {
                Ok(r) => {
                    let r = r.into_inner();
                    return Ok(crate::raft::GroupStatus {
                        node_id: r.node_id,
                        initialized: r.initialized,
                        voter: r.voter_ids.contains(&r.node_id),
                        leader_addr: Some(r.leader_addr).filter(|a| !a.is_empty()),
                        voters: r.voter_ids.into_iter().zip(r.voters).collect(),
                        learners: r.learner_ids.into_iter().zip(r.learners).collect(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RingError::Unreachable(self.seeds.join(","))))
    }

    /// Removes the voter at `addr` from the Raft group (through the local
    /// voter, or any voter), e.g. before its pod is deleted for good.
    pub async fn remove_voter(&self, addr: &str) -> Result<(), RingError> {
        if let Some(v) = &self.voter {
            return v.remove_voter(addr).await;
        }
        let mut last = None;
        for member in self.candidates().await {
            let result = match self.channel(&member) {
                Ok(ch) => RingGrpcClient::new(ch)
                    .remove_voter(RemoveVoterRequest {
                        addr: addr.to_string(),
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| match s.code() {
                        tonic::Code::NotFound => RingError::NotAMember(addr.to_string()),
                        tonic::Code::FailedPrecondition => {
                            RingError::Config(s.message().to_string())
                        }
                        _ => RingError::Rpc {
                            addr: member.clone(),
                            message: s.message().to_string(),
                        },
                    }),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e @ (RingError::NotAMember(_) | RingError::Config(_))) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RingError::Unreachable(self.seeds.join(","))))
    }

    /// Commits `cmd` to the ring: through the local voter, or any voter.
    pub async fn update(&self, cmd: RingCommand) -> Result<(), RingError> {
        if let Some(v) = &self.voter {
            return v.update(cmd).await.map(|_| ());
        }
        let command = serde_json::to_vec(&cmd).map_err(|e| RingError::Codec(e.to_string()))?;
        let mut last = None;
        for addr in &self.candidates().await {
            let result = match self.channel(addr) {
                Ok(ch) => RingGrpcClient::new(ch)
                    .update(UpdateRequest {
                        command: command.clone().into(),
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| RingError::Rpc {
                        addr: addr.clone(),
                        message: s.message().to_string(),
                    }),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RingError::Unreachable(self.seeds.join(","))))
    }
}

/// Follows the ring from the first voter that answers, forever.
async fn watch_members(
    ring: Arc<Ring>,
    instance_id: String,
    tx: watch::Sender<Arc<RingDesc>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = 0usize;
    loop {
        if ring.seeds.is_empty() || *shutdown.borrow() {
            return;
        }
        let members = ring.candidates().await;
        if members.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let addr = &members[next % members.len()];
        next += 1;
        let stream = async {
            let ch: tonic::transport::Channel =
                channel(addr, Duration::from_secs(3600 * 24 * 365))?;
            let mut stream = RingGrpcClient::new(ch)
                .watch(WatchRequest {
                    instance_id: instance_id.clone(),
                })
                .await
                .map_err(|s| RingError::Rpc {
                    addr: addr.clone(),
                    message: s.message().to_string(),
                })?
                .into_inner();
            loop {
                let msg: Result<Option<strata_proto::ring::RingState>, tonic::Status> =
                    stream.message().await;
                match msg {
                    Ok(Some(state)) => match serde_json::from_slice::<RingDesc>(&state.desc) {
                        Ok(d) => {
                            if !state.voters.is_empty() {
                                *ring.learned_voters.lock() = state.voters;
                            }
                            tx.send_replace(Arc::new(d));
                        }
                        Err(e) => return Err(RingError::Codec(e.to_string())),
                    },
                    Ok(None) => {
                        return Err(RingError::Rpc {
                            addr: addr.clone(),
                            message: "watch stream ended".into(),
                        });
                    }
                    Err(s) => {
                        return Err(RingError::Rpc {
                            addr: addr.clone(),
                            message: s.message().to_string(),
                        });
                    }
                }
            }
        };
        tokio::select! {
            r = stream => {
                let r: Result<(), RingError> = r;
                if let Err(e) = r {
                    tracing::debug!(error = %e, "ring watch interrupted; trying the next voter");
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

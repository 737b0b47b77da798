//! The ring held in Raft (openraft): type configuration, the voter node
//! that owns a Raft instance, and its storage and network.

pub mod network;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tokio::sync::watch;

use crate::desc::{RingCommand, RingDesc, RingResponse};
use crate::{RingError, discovery};

/// Raft node ids: random, drawn when a voter starts with an empty Raft
/// directory and kept in `<dir>/raft-node-id`. A voter whose disk was lost
/// comes back as a new member under the same address.
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

/// How long the leader waits for a joining learner to catch up before it
/// answers "retry"; the joiner asks again.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

/// Settings of a ring voter.
#[derive(Debug, Clone)]
pub struct VoterConfig {
    /// Directory of the Raft log, vote, snapshots and node id.
    pub dir: PathBuf,
    /// This voter's advertised gRPC address: how the other voters reach it.
    pub addr: String,
    /// `-ring.raft.peers`: where to find the group (`host:port` or
    /// `dns+host:port` entries); may include this voter.
    pub seeds: Vec<String>,
    /// Whether this voter may start a new group when none exists: the first
    /// entry of `-ring.raft.peers`, or a process running alone.
    pub bootstrap: bool,
    /// Interval of leader heartbeats; elections start after 4-8 of them.
    pub heartbeat_interval: Duration,
}

/// The membership of the Raft group as one voter sees it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GroupStatus {
    /// This voter's node id.
    pub node_id: NodeId,
    /// Whether this voter belongs to a group yet.
    pub initialized: bool,
    /// Whether this voter is one of the group's voters (not only a learner).
    pub voter: bool,
    /// gRPC address of the leader, when known.
    pub leader_addr: Option<String>,
    /// Voters: node id and gRPC address.
    pub voters: Vec<(NodeId, String)>,
    /// Learners (members catching up before they vote).
    pub learners: Vec<(NodeId, String)>,
}

/// A ring voter: the Raft instance plus the way to reach the others.
pub struct RaftNode {
    raft: RingRaft,
    id: NodeId,
    addr: String,
    network: network::GrpcNetwork,
    /// Serializes membership changes made by this node as leader.
    membership: tokio::sync::Mutex<()>,
    joiner: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RaftNode {
    /// Opens the voter's storage and starts Raft. A voter with Raft state
    /// carries on where it was; a fresh one joins the group through its
    /// seeds in the background (or starts the group, when it is the
    /// bootstrap voter and no group exists). Returns the node and the
    /// channel on which every applied ring is published.
    pub async fn start(
        cfg: VoterConfig,
    ) -> Result<(Arc<Self>, watch::Receiver<Arc<RingDesc>>), RingError> {
        let storage_err = |e| RingError::Storage {
            dir: cfg.dir.display().to_string(),
            source: e,
        };
        let (tx, rx) = watch::channel(Arc::new(RingDesc::default()));
        std::fs::create_dir_all(&cfg.dir).map_err(storage_err)?;
        let id = node_id(&cfg).map_err(storage_err)?;
        let log = store::LogStore::open(&cfg.dir).map_err(storage_err)?;
        let sm = store::RingStateMachine::open(&cfg.dir, tx).map_err(storage_err)?;
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
        let raft = RingRaft::new(id, Arc::new(config), network.clone(), log, sm)
            .await
            .map_err(|e| RingError::Raft(e.to_string()))?;
        let node = Arc::new(Self {
            raft,
            id,
            addr: cfg.addr.clone(),
            network,
            membership: tokio::sync::Mutex::new(()),
            joiner: parking_lot::Mutex::new(None),
        });
        // Asked of Raft's core: the metrics may not show the stored
        // membership yet right after start.
        let resumed = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| RingError::Raft(e.to_string()))?;
        if resumed {
            tracing::info!(id, addr = %cfg.addr, "ring voter resumed from its Raft directory");
            // Removed while it was away (a StatefulSet scaled down, then
            // up again with the old volume): ask to be let back in.
            let rejoin = tokio::spawn(rejoin_if_removed(node.clone(), cfg));
            *node.joiner.lock() = Some(rejoin);
        } else if cfg.bootstrap
            && discovery::resolve(&cfg.seeds)
                .await
                .iter()
                .all(|p| *p == cfg.addr)
        {
            // Alone by configuration: start the group at once.
            node.bootstrap().await?;
        } else {
            let joiner = tokio::spawn(join_group(node.clone(), cfg));
            *node.joiner.lock() = Some(joiner);
        }
        Ok((node, rx))
    }

    /// The Raft instance (for the gRPC service).
    pub fn raft(&self) -> &RingRaft {
        &self.raft
    }

    /// This voter's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether this node belongs to a group (it may still be a learner).
    pub fn initialized(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().nodes().next().is_some()
    }

    /// Whether this voter is the current leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Id of the current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The group as this node sees it.
    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let addr_of = |id: NodeId| {
            membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default()
        };
        let voters: Vec<(NodeId, String)> =
            membership.voter_ids().map(|id| (id, addr_of(id))).collect();
        GroupStatus {
            node_id: self.id,
            initialized: membership.nodes().next().is_some(),
            voter: voters.iter().any(|(id, _)| *id == self.id),
            leader_addr: m.current_leader.map(addr_of).filter(|a| !a.is_empty()),
            learners: membership
                .learner_ids()
                .map(|id| (id, addr_of(id)))
                .collect(),
            voters,
        }
    }

    /// gRPC addresses of the group's voters.
    pub fn voter_addrs(&self) -> Vec<String> {
        self.status().voters.into_iter().map(|(_, a)| a).collect()
    }

    fn leader_addr(&self) -> Result<String, RingError> {
        self.status().leader_addr.ok_or(RingError::NoLeader)
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

    /// Starts a new group with this voter alone; the others join it.
    async fn bootstrap(&self) -> Result<(), RingError> {
        let members = BTreeMap::from([(self.id, BasicNode::new(self.addr.clone()))]);
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(id = self.id, addr = %self.addr, "started the ring's Raft group");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(RingError::Raft(e.to_string())),
        }
    }

    /// Adds voter `id` at `addr` to the group (run on the leader; forwarded
    /// there otherwise): first as a learner, then, once it has caught up, as
    /// a voter. Voters already listed under `addr` with another id are
    /// earlier incarnations of the same process and leave the group in the
    /// same change, so a replaced disk never adds a vote.
    pub async fn join(&self, id: NodeId, addr: &str) -> Result<(), RingError> {
        if !self.is_leader() {
            return self
                .network
                .forward_join(&self.leader_addr()?, id, addr)
                .await;
        }
        let _one_change_at_a_time = self.membership.lock().await;
        let status = self.status();
        if status.voters.iter().any(|(v, _)| *v == id) {
            return Ok(());
        }
        let since = if status.learners.iter().any(|(l, _)| *l == id) {
            self.raft.metrics().borrow().last_log_index.unwrap_or(0)
        } else {
            let added = self
                .raft
                .add_learner(id, BasicNode::new(addr.to_string()), false)
                .await
                .map_err(|e| self.write_error(e))?;
            tracing::info!(id, addr, "a voter joins the ring's Raft group as a learner");
            added.log_id.index
        };
        let caught_up = self
            .raft
            .wait(Some(CATCH_UP_WAIT))
            .metrics(
                |m| {
                    // Leadership lost meanwhile (e.g. a returning voter
                    // answered with a newer term): the joiner asks again.
                    m.current_leader != Some(self.id)
                        || m.replication
                            .as_ref()
                            .and_then(|r| r.get(&id).cloned().flatten())
                            .is_some_and(|matched| matched.index >= since)
                },
                "joining learner catches up",
            )
            .await;
        if !self.is_leader() {
            return Err(RingError::NoLeader);
        }
        if caught_up.is_err() {
            return Err(RingError::Raft(format!(
                "voter {id} at {addr} is still catching up; retry"
            )));
        }
        let voters: BTreeSet<NodeId> = status
            .voters
            .iter()
            .filter(|(_, a)| a != addr)
            .map(|(v, _)| *v)
            .chain([id])
            .collect();
        let replaced: Vec<NodeId> = status
            .voters
            .iter()
            .filter(|(v, a)| a == addr && *v != id)
            .map(|(v, _)| *v)
            .collect();
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map_err(|e| self.write_error(e))?;
        tracing::info!(id, addr, ?replaced, "a voter joined the ring's Raft group");
        Ok(())
    }

    /// Removes the voter(s) at `addr` from the group (run on the leader;
    /// forwarded there otherwise). The last voter cannot be removed.
    pub async fn remove_voter(&self, addr: &str) -> Result<(), RingError> {
        if !self.is_leader() {
            return self
                .network
                .forward_remove(&self.leader_addr()?, addr)
                .await;
        }
        let _one_change_at_a_time = self.membership.lock().await;
        let status = self.status();
        let gone: BTreeSet<NodeId> = status
            .voters
            .iter()
            .chain(&status.learners)
            .filter(|(_, a)| a == addr)
            .map(|(id, _)| *id)
            .collect();
        if gone.is_empty() {
            return Err(RingError::NotAMember(addr.to_string()));
        }
        let voters: BTreeSet<NodeId> = status
            .voters
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !gone.contains(id))
            .collect();
        if voters.is_empty() {
            return Err(RingError::Config(format!(
                "{addr} is the group's last voter; it cannot be removed"
            )));
        }
        // Voters leave the voter set; a learner (a join still catching up)
        // is not a voter, so it leaves the node list instead.
        let learners: BTreeSet<NodeId> = status
            .learners
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| gone.contains(id))
            .collect();
        if gone.len() > learners.len() {
            self.raft
                .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
                .await
                .map_err(|e| self.write_error(e))?;
        }
        if !learners.is_empty() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(learners), false)
                .await
                .map_err(|e| self.write_error(e))?;
        }
        tracing::info!(addr, ids = ?gone, "removed from the ring's Raft group");
        Ok(())
    }

    fn write_error(&self, e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> RingError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => RingError::NoLeader,
            e => RingError::Raft(e.to_string()),
        }
    }

    /// Stops Raft (and a join still in progress).
    pub async fn shutdown(&self) {
        if let Some(j) = self.joiner.lock().take() {
            j.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "ring raft did not shut down cleanly");
        }
    }
}

/// This voter's node id: kept in `<dir>/raft-node-id`; drawn at random for
/// an empty directory. A directory written before ids were kept (Raft state
/// but no id file) used the voter's 1-based position in the peer list.
fn node_id(cfg: &VoterConfig) -> std::io::Result<NodeId> {
    let path = cfg.dir.join("raft-node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return text.trim().parse().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            });
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let legacy = cfg.dir.join("raft-vote").exists();
    let id = match cfg.seeds.iter().position(|p| *p == cfg.addr) {
        Some(i) if legacy => i as NodeId + 1,
        _ => loop {
            // Ids up to the peer count were the old positional ones.
            let id: NodeId = rand::random();
            if id > 1 << 16 {
                break id;
            }
        },
    };
    store::write_atomic(&path, id.to_string().as_bytes())?;
    Ok(id)
}

/// How long a voter resumed from its directory keeps asking whether the
/// group still counts it, when no peer answers.
const REJOIN_WAIT: Duration = Duration::from_secs(300);

/// A voter resumed from its Raft directory checks, once, that the group
/// still lists it as a voter (its own copy of the membership may be stale:
/// it could have been removed while it was down) and asks to join again
/// if not. Until a peer confirms it, it does not start elections: a removed
/// voter that still believes in its old membership would otherwise raise
/// its term again and again and unseat the leader. Once: an operator
/// removing a running voter is not undone.
async fn rejoin_if_removed(node: Arc<RaftNode>, cfg: VoterConfig) {
    let elections = node.raft.runtime_config();
    elections.elect(false);
    let deadline = tokio::time::Instant::now() + REJOIN_WAIT;
    'ask: while tokio::time::Instant::now() < deadline {
        // The only voter it knows of is itself: nobody else can confirm.
        let local = node.status();
        if local.voters.len() == 1 && local.voter {
            break;
        }
        let peers = discovery::resolve(&cfg.seeds).await;
        let others: Vec<String> = peers.into_iter().filter(|p| *p != cfg.addr).collect();
        if others.is_empty() {
            break;
        }
        for peer in &others {
            match node.network.status(peer).await {
                Ok(s) if s.node_id == node.id => {}
                // A peer's membership lists this voter: nothing to do.
                Ok(s) if s.initialized && s.voters.contains(&cfg.addr) => break 'ask,
                Ok(s) if s.initialized && !s.leader_addr.is_empty() => {
                    tracing::warn!(id = node.id, addr = %cfg.addr, "this voter is no longer in the ring's Raft group; asking to join again");
                    match node.network.forward_join(peer, node.id, &cfg.addr).await {
                        Ok(()) => {
                            tracing::info!(id = node.id, through = %peer, "rejoined the ring's Raft group");
                            break 'ask;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "rejoining the ring's Raft group failed; retrying")
                        }
                    }
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    elections.elect(true);
}

/// What a fresh voter does until it belongs to a group: ask every peer
/// (the seeds, DNS names resolved) whether it is in a group, and join
/// through the first that is. When none is and this is the bootstrap voter,
/// it starts the group, but only once a majority of the peers it knows of
/// (itself included) answered that they have none: a bootstrap voter whose
/// disk was lost, with its old group's members listed but not answering,
/// waits for them instead of starting a second group.
async fn join_group(node: Arc<RaftNode>, cfg: VoterConfig) {
    let started = tokio::time::Instant::now();
    let mut last_log = started;
    loop {
        if node.initialized() && node.status().voter {
            tracing::info!(id = node.id, waited = ?started.elapsed(), "this voter is in the ring's Raft group");
            return;
        }
        let peers = discovery::resolve(&cfg.seeds).await;
        // Peers other than this voter: those without a group, and all.
        let (mut fresh, mut others) = (0usize, 0usize);
        let mut joined_through = None;
        let mut tried = Vec::new();
        for peer in peers.iter().filter(|p| **p != cfg.addr) {
            match node.network.status(peer).await {
                // This voter under another name (a DNS answer).
                Ok(s) if s.node_id == node.id => continue,
                Ok(s) if s.initialized => {
                    match node.network.forward_join(peer, node.id, &cfg.addr).await {
                        Ok(()) => {
                            joined_through = Some(peer.clone());
                            break;
                        }
                        Err(e) => tried.push(format!("{peer}: {e}")),
                    }
                }
                Ok(_) => {
                    fresh += 1;
                    tried.push(format!("{peer}: not in a group yet"));
                }
                Err(e) => tried.push(format!("{peer}: {e}")),
            }
            others += 1;
        }
        if let Some(peer) = joined_through {
            tracing::info!(id = node.id, through = %peer, "joined the ring's Raft group");
            continue;
        }
        if !node.initialized() && cfg.bootstrap && (fresh + 1) * 2 > others + 1 {
            match node.bootstrap().await {
                Ok(()) => continue,
                Err(e) => tried.push(format!("starting the group: {e}")),
            }
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = tokio::time::Instant::now();
            tracing::warn!(id = node.id, waited = ?started.elapsed(), peers = ?tried, "still waiting to join the ring's Raft group");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
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
        addr: String,
        stop: watch::Sender<bool>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Voter {
        fn node(&self) -> &Arc<RaftNode> {
            self.ring.voter().unwrap()
        }

        async fn stop(self) {
            self.node().shutdown().await;
            let _ = self.stop.send(true);
            let _ = self.server.await;
        }
    }

    async fn listener() -> (tokio::net::TcpListener, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        (l, addr)
    }

    async fn start_voter(
        dir: &std::path::Path,
        seeds: &[String],
        listener: tokio::net::TcpListener,
    ) -> Voter {
        let addr = listener.local_addr().unwrap().to_string();
        let cfg = VoterConfig {
            dir: dir.join(addr.replace(':', "_")),
            addr: addr.clone(),
            seeds: seeds.to_vec(),
            bootstrap: seeds.first() == Some(&addr),
            heartbeat_interval: Duration::from_millis(100),
        };
        let (node, desc) = RaftNode::start(cfg).await.unwrap();
        let mut rc = RingConfig::default();
        rc.raft.peers = seeds.to_vec();
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
        Voter {
            ring,
            addr,
            stop,
            server,
        }
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
        for _ in 0..400 {
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

    /// Three voters listing each other as peers, once all three vote: the
    /// peer list, the same as a set, and the voters in peer order.
    async fn three_voters(dir: &std::path::Path) -> (Vec<String>, BTreeSet<String>, Vec<Voter>) {
        let mut listeners = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (l, a) = listener().await;
            peers.push(a);
            listeners.push(l);
        }
        let mut voters = Vec::new();
        for l in listeners {
            voters.push(start_voter(dir, &peers, l).await);
        }
        // The first peer starts the group; the others join it as voters.
        let all: BTreeSet<String> = peers.iter().cloned().collect();
        for v in &voters {
            eventually("three voters", || voter_addrs(v) == all).await;
        }
        (peers, all, voters)
    }

    fn voter_addrs(v: &Voter) -> BTreeSet<String> {
        v.node().voter_addrs().into_iter().collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_voters_form_a_group_survive_leader_loss_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (peers, all, voters) = three_voters(dir.path()).await;
        let mut voters: Vec<Option<Voter>> = voters.into_iter().map(Some).collect();
        // An update through a follower is forwarded to the leader and
        // reaches every voter's state machine.
        let follower = voters
            .iter()
            .flatten()
            .find(|v| !v.node().is_leader())
            .unwrap();
        update_retrying(&follower.ring, RingCommand::Register(instance("a"))).await;
        for v in voters.iter().flatten() {
            eventually("replicated", || v.ring.desc().instances.contains_key("a")).await;
        }

        // Kill the leader: the others elect a new one and take updates.
        let leader_at = voters
            .iter()
            .position(|v| v.as_ref().is_some_and(|v| v.node().is_leader()))
            .unwrap();
        let old = voters[leader_at].take().unwrap();
        let old_id = old.node().id();
        old.stop().await;
        let survivor = voters.iter().flatten().next().unwrap();
        eventually(
            "a new leader",
            || matches!(survivor.node().leader(), Some(l) if l != old_id),
        )
        .await;
        update_retrying(&survivor.ring, RingCommand::Register(instance("b"))).await;
        for v in voters.iter().flatten() {
            eventually("replicated after failover", || {
                v.ring.desc().instances.contains_key("b")
            })
            .await;
        }

        // The killed voter restarts from its disk, as the same member, and
        // catches up.
        let l = tokio::net::TcpListener::bind(&peers[leader_at])
            .await
            .unwrap();
        let back = start_voter(dir.path(), &peers, l).await;
        assert_eq!(back.node().id(), old_id, "the node id is kept on disk");
        eventually("caught up", || {
            let d = back.ring.desc();
            d.instances.contains_key("a") && d.instances.contains_key("b")
        })
        .await;
        assert_eq!(voter_addrs(&back), all);
        for v in voters.into_iter().flatten().chain([back]) {
            v.stop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_group_grows_shrinks_and_takes_back_a_voter_whose_disk_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        // One seed is all a voter needs to know.
        let (l, first) = listener().await;
        let seeds = vec![first.clone()];
        let mut voters = vec![start_voter(dir.path(), &seeds, l).await];
        for _ in 0..4 {
            let (l, _) = listener().await;
            voters.push(start_voter(dir.path(), &seeds, l).await);
        }
        let five: BTreeSet<String> = voters.iter().map(|v| v.addr.clone()).collect();
        for v in &voters {
            eventually("five voters", || voter_addrs(v) == five).await;
        }
        update_retrying(&voters[4].ring, RingCommand::Register(instance("grown"))).await;

        // Shrink to three through any member; the removed ones are no
        // longer asked for votes and updates still commit.
        for gone in [voters[3].addr.clone(), voters[4].addr.clone()] {
            voters[1].ring.remove_voter(&gone).await.unwrap();
        }
        let v4 = voters.pop().unwrap();
        let v3 = voters.pop().unwrap();
        v4.stop().await;
        v3.stop().await;
        let three: BTreeSet<String> = voters.iter().map(|v| v.addr.clone()).collect();
        for v in &voters {
            eventually("three voters", || voter_addrs(v) == three).await;
        }
        update_retrying(&voters[2].ring, RingCommand::Register(instance("shrunk"))).await;
        assert!(matches!(
            voters[0].ring.remove_voter("127.0.0.1:1").await,
            Err(RingError::NotAMember(_))
        ));

        // A voter loses its disk and comes back under the same address: it
        // joins as a new member and its old entry leaves, so the group
        // still has three voters (never four, never a second group).
        let lost = voters.remove(1);
        let (lost_addr, lost_id) = (lost.addr.clone(), lost.node().id());
        lost.stop().await;
        std::fs::remove_dir_all(dir.path().join(lost_addr.replace(':', "_"))).unwrap();
        let l = tokio::net::TcpListener::bind(&lost_addr).await.unwrap();
        let back = start_voter(dir.path(), &seeds, l).await;
        assert_ne!(back.node().id(), lost_id);
        eventually("the new incarnation replaces the old", || {
            let s = voters[0].node().status();
            s.voters.len() == 3
                && s.voters
                    .iter()
                    .any(|(id, a)| *id == back.node().id() && *a == lost_addr)
                && !s
                    .voters
                    .iter()
                    .chain(&s.learners)
                    .any(|(id, _)| *id == lost_id)
        })
        .await;
        eventually("the rejoined voter has the ring", || {
            let d = back.ring.desc();
            d.instances.contains_key("grown") && d.instances.contains_key("shrunk")
        })
        .await;
        update_retrying(&back.ring, RingCommand::Register(instance("healed"))).await;
        for v in &voters {
            eventually("replicated", || {
                v.ring.desc().instances.contains_key("healed")
            })
            .await;
        }
        for v in voters.into_iter().chain([back]) {
            v.stop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_voter_removed_while_away_rejoins_with_its_old_directory() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("strata_ring=debug,openraft=info")
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let (peers, all, mut voters) = three_voters(dir.path()).await;
        // Scaled down: removed, then stopped, its directory kept.
        let away = voters.pop().unwrap();
        let (addr, id) = (away.addr.clone(), away.node().id());
        voters[0].ring.remove_voter(&addr).await.unwrap();
        away.stop().await;
        eventually("two voters", || voter_addrs(&voters[0]).len() == 2).await;
        update_retrying(
            &voters[0].ring,
            RingCommand::Register(instance("meanwhile")),
        )
        .await;
        // Scaled up again with the old volume: back as a voter, same id.
        let l = tokio::net::TcpListener::bind(&addr).await.unwrap();
        let back = start_voter(dir.path(), &peers, l).await;
        assert_eq!(back.node().id(), id);
        eventually("back in the group", || voter_addrs(&voters[0]) == all).await;
        eventually("caught up", || {
            back.ring.desc().instances.contains_key("meanwhile")
        })
        .await;
        for v in voters.into_iter().chain([back]) {
            v.stop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unusable_joins_are_refused_and_a_stuck_learner_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (_, all, voters) = three_voters(dir.path()).await;
        let network = network::GrpcNetwork::default();
        let huge = format!("{}:9095", "h".repeat(1 << 20));
        for (id, addr) in [
            (7, ""),
            (7, "no-port"),
            (7, "host:99999"),
            (7, ":9095"),
            (0, "host:9095"),
            (7, huge.as_str()),
        ] {
            let refused = network.forward_join(&voters[1].addr, id, addr).await;
            assert!(refused.is_err(), "join {id} at {:.40} was taken", addr);
        }
        let status = voters[0].node().status();
        assert_eq!(voter_addrs(&voters[0]), all);
        assert!(status.learners.is_empty(), "{status:?}");

        // A join that never catches up (nothing answers at its address)
        // stays a learner; removing its address removes it.
        let leader = voters.iter().find(|v| v.node().is_leader()).unwrap();
        // The group may still be committing its voters' own membership
        // (InProgress): try again until that is done.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match leader
                .node()
                .raft()
                .add_learner(42, BasicNode::new("127.0.0.1:1"), false)
                .await
            {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "membership change in progress; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("adding a learner: {e}"),
            }
        }
        eventually("a learner", || !leader.node().status().learners.is_empty()).await;
        voters[2].ring.remove_voter("127.0.0.1:1").await.unwrap();
        eventually("the learner removed", || {
            leader.node().status().learners.is_empty()
        })
        .await;
        assert_eq!(voter_addrs(leader), all);
        for v in voters {
            v.stop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bootstrap_voter_whose_disk_was_lost_rejoins_instead_of_starting_a_second_group() {
        let dir = tempfile::tempdir().unwrap();
        let (peers, all, mut voters) = three_voters(dir.path()).await;
        update_retrying(&voters[2].ring, RingCommand::Register(instance("before"))).await;
        let first = voters.remove(0);
        first.stop().await;
        std::fs::remove_dir_all(dir.path().join(peers[0].replace(':', "_"))).unwrap();
        let l = tokio::net::TcpListener::bind(&peers[0]).await.unwrap();
        let back = start_voter(dir.path(), &peers, l).await;
        eventually("the first voter is back with the group's ring", || {
            back.ring.desc().instances.contains_key("before")
        })
        .await;
        eventually("three voters again", || voter_addrs(&voters[0]).len() == 3).await;
        assert_eq!(voter_addrs(&back), all);
        for v in voters.into_iter().chain([back]) {
            v.stop().await;
        }
    }
}

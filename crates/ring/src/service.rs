//! The gRPC side of a ring voter: Raft traffic from the other voters, ring
//! updates from any process (forwarded to the leader) and watch streams.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_proto::ring::raft_server::{Raft, RaftServer};
use strata_proto::ring::ring_server::{Ring as RingRpc, RingServer};
use strata_proto::ring::{
    JoinReply, JoinRequest, RaftReply, RaftRequest, RemoveVoterReply, RemoveVoterRequest,
    RingState, StatusReply, StatusRequest, UpdateReply, UpdateRequest, WatchRequest,
};
use tonic::{Request, Response, Status};

use crate::desc::RingCommand;
use crate::raft::RaftNode;
use crate::{Ring, RingError};

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| Status::invalid_argument(format!("bad ring message: {e}")))
}

fn reply<T: Serialize, E: Serialize>(r: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    let encode = |r: serde_json::Result<Vec<u8>>| {
        r.map_err(|e| Status::internal(format!("encoding reply: {e}")))
    };
    Ok(Response::new(match r {
        Ok(v) => RaftReply {
            payload: encode(serde_json::to_vec(&v))?.into(),
            error: Default::default(),
        },
        Err(e) => RaftReply {
            payload: Default::default(),
            error: encode(serde_json::to_vec(&e))?.into(),
        },
    }))
}

/// Serves Raft RPCs for the local voter.
pub struct RaftService {
    node: Arc<RaftNode>,
}

impl RaftService {
    /// The message's payload, when it is meant for this node.
    fn payload<T: DeserializeOwned>(&self, req: Request<RaftRequest>) -> Result<T, Status> {
        let req = req.into_inner();
        if req.target != 0 && req.target != self.node.id() {
            return Err(Status::failed_precondition(format!(
                "this is ring voter {}, not {} (a new incarnation at the same address)",
                self.node.id(),
                req.target
            )));
        }
        decode(&req.payload)
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.payload(req)?;
        reply(self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.payload(req)?;
        reply(self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.payload(req)?;
        reply(self.node.raft().install_snapshot(rpc).await)
    }
}

/// Serves ring updates, watches and the Raft group's membership.
pub struct RingService {
    ring: Arc<Ring>,
    node: Arc<RaftNode>,
}

/// A `host:port` a member could be reached at: bounded, since it is
/// stored in the membership every voter keeps.
fn is_peer_address(addr: &str) -> bool {
    addr.len() <= 255
        && addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn membership_status(e: RingError) -> Status {
    match e {
        RingError::NotAMember(addr) => Status::not_found(addr),
        RingError::Config(m) => Status::failed_precondition(m),
        e => Status::unavailable(e.to_string()),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<RingState, Status>> + Send>>;

#[tonic::async_trait]
impl RingRpc for RingService {
    async fn update(&self, req: Request<UpdateRequest>) -> Result<Response<UpdateReply>, Status> {
        let cmd: RingCommand = decode(&req.into_inner().command)?;
        self.ring
            .update(cmd)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(UpdateReply {}))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let who = req.into_inner().instance_id;
        tracing::debug!(instance = %who, "ring watcher connected");
        let rx = self.ring.subscribe();
        let node = self.node.clone();
        let stream = futures::stream::unfold((rx, true), move |(mut rx, first)| {
            let node = node.clone();
            async move {
                if !first && rx.changed().await.is_err() {
                    return None;
                }
                let desc = rx.borrow_and_update().clone();
                let item = serde_json::to_vec(&*desc)
                    .map(|b| RingState {
                        desc: b.into(),
                        voters: node.voter_addrs(),
                    })
                    .map_err(|e| Status::internal(format!("encoding ring: {e}")));
                Some((item, (rx, false)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let req = req.into_inner();
        if req.node_id == 0 || !is_peer_address(&req.addr) {
            return Err(Status::invalid_argument(
                "join needs a node id and a host:port address of at most 255 bytes",
            ));
        }
        self.node
            .join(req.node_id, &req.addr)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(JoinReply {}))
    }

    async fn remove_voter(
        &self,
        req: Request<RemoveVoterRequest>,
    ) -> Result<Response<RemoveVoterReply>, Status> {
        self.node
            .remove_voter(&req.into_inner().addr)
            .await
            .map_err(membership_status)?;
        Ok(Response::new(RemoveVoterReply {}))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let s = self.node.status();
        let (voter_ids, voters) = s.voters.into_iter().unzip();
        let (learner_ids, learners) = s.learners.into_iter().unzip();
        Ok(Response::new(StatusReply {
            node_id: s.node_id,
            initialized: s.initialized,
            leader_addr: s.leader_addr.unwrap_or_default(),
            voters,
            voter_ids,
            learners,
            learner_ids,
        }))
    }
}

/// The ring's gRPC services for a process: Raft when it is a voter, and
/// the ring service (updates, watch) on every voter.
pub fn services(ring: &Arc<Ring>) -> Option<(RaftServer<RaftService>, RingServer<RingService>)> {
    let node = ring.voter()?.clone();
    Some((
        RaftServer::new(RaftService { node: node.clone() }),
        RingServer::new(RingService {
            ring: ring.clone(),
            node,
        }),
    ))
}

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
    RaftReply, RaftRequest, RingState, UpdateReply, UpdateRequest, WatchRequest,
};
use tonic::{Request, Response, Status};

use crate::Ring;
use crate::desc::RingCommand;
use crate::raft::RaftNode;

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

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = decode(&req.into_inner().payload)?;
        reply(self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = decode(&req.into_inner().payload)?;
        reply(self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = decode(&req.into_inner().payload)?;
        reply(self.node.raft().install_snapshot(rpc).await)
    }
}

/// Serves ring updates and watches.
pub struct RingService {
    ring: Arc<Ring>,
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
        let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let desc = rx.borrow_and_update().clone();
            let item = serde_json::to_vec(&*desc)
                .map(|b| RingState { desc: b.into() })
                .map_err(|e| Status::internal(format!("encoding ring: {e}")));
            Some((item, (rx, false)))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The ring's gRPC services for a process: Raft when it is a voter, and
/// the ring service (updates, watch) on every voter.
pub fn services(ring: &Arc<Ring>) -> Option<(RaftServer<RaftService>, RingServer<RingService>)> {
    let node = ring.voter()?.clone();
    Some((
        RaftServer::new(RaftService { node }),
        RingServer::new(RingService { ring: ring.clone() }),
    ))
}

//! Raft's network over gRPC: openraft messages travel as JSON inside the
//! `strata.ring.Raft` service; one lazily connected channel per peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_proto::ring::raft_client::RaftClient;
use strata_proto::ring::ring_client::RingClient as RingGrpcClient;
use strata_proto::ring::{
    JoinRequest, RaftReply, RaftRequest, RemoveVoterRequest, StatusReply, StatusRequest,
    UpdateRequest,
};
use tonic::transport::Channel;

use super::{NodeId, TypeConfig};
use crate::RingError;
use crate::desc::RingCommand;

/// A lazily connected channel to `addr` (`host:port`), reconnecting as needed.
/// With the process's gRPC client TLS, when set (strata_proto::transport).
pub fn channel(addr: &str, timeout: Duration) -> Result<Channel, RingError> {
    let endpoint = strata_proto::transport::endpoint(addr, Duration::from_secs(2), timeout)
        .map_err(RingError::Config)?;
    Ok(endpoint.connect_lazy())
}

/// Connection pool and factory of per-peer Raft clients.
#[derive(Clone, Default)]
pub struct GrpcNetwork {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl GrpcNetwork {
    fn channel(&self, addr: &str) -> Result<Channel, RingError> {
        let mut pool = self.channels.lock();
        if let Some(c) = pool.get(addr) {
            return Ok(c.clone());
        }
        let c = channel(addr, Duration::from_secs(10))?;
        pool.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Sends a ring command to the voter at `addr` (the leader).
    pub async fn forward_update(&self, addr: &str, cmd: &RingCommand) -> Result<(), RingError> {
        let command = serde_json::to_vec(cmd).map_err(|e| RingError::Codec(e.to_string()))?;
        RingGrpcClient::new(self.channel(addr)?)
            .update(UpdateRequest {
                command: command.into(),
            })
            .await
            .map_err(|s| RingError::Rpc {
                addr: addr.to_string(),
                message: s.message().to_string(),
            })?;
        Ok(())
    }
}

impl GrpcNetwork {
    /// Asks the voter at `addr` to add voter `id` at `joiner` to the group.
    pub async fn forward_join(
        &self,
        addr: &str,
        id: NodeId,
        joiner: &str,
    ) -> Result<(), RingError> {
        let mut request = tonic::Request::new(JoinRequest {
            node_id: id,
            addr: joiner.to_string(),
        });
        // Joining waits for the learner to catch up.
        request.set_timeout(Duration::from_secs(60));
        RingGrpcClient::new(self.channel(addr)?)
            .join(request)
            .await
            .map_err(|s| rpc_error(addr, s))?;
        Ok(())
    }

    /// Asks the voter at `addr` to remove the voter at `gone` from the group.
    pub async fn forward_remove(&self, addr: &str, gone: &str) -> Result<(), RingError> {
        RingGrpcClient::new(self.channel(addr)?)
            .remove_voter(RemoveVoterRequest {
                addr: gone.to_string(),
            })
            .await
            .map_err(|s| rpc_error(addr, s))?;
        Ok(())
    }

    /// The group as the voter at `addr` sees it.
    pub async fn status(&self, addr: &str) -> Result<StatusReply, RingError> {
        let mut request = tonic::Request::new(StatusRequest {});
        request.set_timeout(Duration::from_secs(2));
        Ok(RingGrpcClient::new(self.channel(addr)?)
            .status(request)
            .await
            .map_err(|s| rpc_error(addr, s))?
            .into_inner())
    }
}

fn rpc_error(addr: &str, s: tonic::Status) -> RingError {
    if s.code() == tonic::Code::NotFound {
        return RingError::NotAMember(s.message().to_string());
    }
    RingError::Rpc {
        addr: addr.to_string(),
        message: s.message().to_string(),
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            channel: self.channel(&node.addr).map_err(|e| e.to_string()),
        }
    }
}

/// Raft RPCs to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    channel: Result<Channel, String>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        kind: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let channel = self
            .channel
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&TransportError(e))))?;
        let payload =
            serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = RaftClient::new(channel);
        let mut request = tonic::Request::new(RaftRequest {
            payload: payload.into(),
            target: self.target,
        });
        request.set_timeout(option.hard_ttl());
        let reply: Result<tonic::Response<RaftReply>, tonic::Status> = match kind {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let reply = reply
            .map_err(|s| {
                let e = TransportError(format!("{kind} to {}: {}", self.addr, s.message()));
                // FailedPrecondition: another incarnation answers at the
                // address; to Raft, the member it meant is unreachable.
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::FailedPrecondition
                ) {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?
            .into_inner();
        if !reply.error.is_empty() {
            let err: RaftError<NodeId, E> = serde_json::from_slice(&reply.error)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            return Err(RPCError::RemoteError(RemoteError::new(self.target, err)));
        }
        serde_json::from_slice(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call("vote", &rpc, &option).await
    }
}

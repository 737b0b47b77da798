//! [`StoreGateways`]: how a querier reads blocks. Each block goes to the
//! first healthy ACTIVE store-gateway among its owners on the ring; the
//! blocks of one gateway travel in one call, the calls to different
//! gateways run in parallel. A block whose gateway fails is asked of its
//! next owner; a block no owner answered fails the read, naming the block
//! and the gateways tried: never a silently partial answer. With no
//! store-gateway in the ring at all, the querier reads the bucket itself,
//! as before store-gateways existed; a gateway in this process is called
//! directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use parking_lot::Mutex;
use strata_ingester_client::MAX_MESSAGE_BYTES;
use strata_proto::storegateway::store_gateway_client::StoreGatewayClient as GrpcClient;
use strata_ring::{InstanceState, Ring, RingView, block_key};
use strata_storage::{BlockMeta, BlockReader, StorageError};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::metrics::{QUERIER_BLOCK_READS, QUERIER_CALL_SECONDS};
use crate::wire::{add_message, request};
use crate::{BlockAnswer, BlockRead, read_block};

/// A connection to a gateway whose calls carry the caller's trace context.
type Transport = InterceptedService<Channel, strata_telemetry::InjectTraceContext>;

/// The querier's access to blocks: through the ring's store-gateways, or
/// directly when the ring has none.
pub struct StoreGateways {
    ring: Arc<Ring>,
    /// Reads blocks in this process: the local gateway's cached reader
    /// when this process is one, else the querier's own.
    reader: Arc<BlockReader>,
    /// This process's instance id when it runs the store-gateway role.
    local_id: Option<String>,
    replication_factor: usize,
    timeout: Duration,
    clients: Mutex<HashMap<String, (String, GrpcClient<Transport>)>>,
}

/// How one call to one gateway ended: the blocks it was asked (by index
/// into the read's block list; those it answered went to the channel) and,
/// when it stopped early, why.
struct CallResult {
    gateway: usize,
    asked: Vec<usize>,
    error: Option<String>,
}

/// Where a call sends each block's complete answer.
type Answers = tokio::sync::mpsc::UnboundedSender<(usize, BlockAnswer)>;

impl StoreGateways {
    /// Block reads over `ring`'s store-gateways, each block owned by
    /// `replication_factor` of them; `reader` reads in this process (as
    /// the gateway `local_id`, when set); each call may take `timeout`.
    pub fn new(
        ring: Arc<Ring>,
        reader: Arc<BlockReader>,
        local_id: Option<String>,
        replication_factor: usize,
        timeout: Duration,
    ) -> Self {
        Self {
            ring,
            reader,
            local_id,
            replication_factor: replication_factor.max(1),
            timeout,
            clients: Mutex::default(),
        }
    }

    /// Reads `read` from each of `blocks` of `tenant` and hands every
    /// block's whole answer to `visit`, in no particular order. Fails (the
    /// outer error) when a block could not be read from any of its owners;
    /// stops with `visit`'s error (the inner one) when it fails.
    pub async fn read<E>(
        &self,
        tenant: &str,
        blocks: &[BlockMeta],
        read: &BlockRead<'_>,
        mut visit: impl FnMut(BlockAnswer) -> Result<(), E>,
    ) -> Result<Result<(), E>, StorageError> {
        if blocks.is_empty() {
            return Ok(Ok(()));
        }
        let view = self.ring.store_gateways();
        // No gateway that serves (none at all, all still JOINING at a
        // cluster's start, or all LEFT after a scale-down): read directly.
        let serving = view
            .instances()
            .iter()
            .any(|i| matches!(i.state, InstanceState::Active | InstanceState::Leaving));
        if !serving {
            for meta in blocks {
                if let Err(e) = visit(read_block(&self.reader, tenant, meta, read).await?) {
                    return Ok(Err(e));
                }
            }
            return Ok(Ok(()));
        }
        let rf = view.effective_rf(self.replication_factor);
        let now = strata_ring::now_ms();
        let timeout_ms = self.ring.config().heartbeat_timeout.as_millis() as i64;
        // Each block's owners that may answer, in ring order.
        let mut candidates: Vec<Vec<usize>> = blocks
            .iter()
            .map(|b| owners(&view, tenant, &b.ulid, rf))
            .collect();
        let mut last_error: Vec<Option<String>> = vec![None; blocks.len()];
        let mut answered = vec![false; blocks.len()];
        let mut todo: Vec<usize> = (0..blocks.len()).collect();
        while !todo.is_empty() {
            let mut by_gateway: HashMap<usize, Vec<usize>> = HashMap::new();
            for b in todo.drain(..) {
                let next = candidates[b]
                    .iter()
                    .position(|g| view.instances()[*g].is_healthy(now, timeout_ms));
                let Some(pos) = next else {
                    QUERIER_BLOCK_READS.with_label_values(&["failed"]).inc();
                    return Err(no_owner_answered(
                        tenant,
                        &blocks[b],
                        &view,
                        rf,
                        &last_error[b],
                    ));
                };
                let g = candidates[b].remove(pos);
                by_gateway.entry(g).or_default().push(b);
            }
            // Blocks reach `visit` as each one is complete, not when its
            // gateway's call ends: the caller's limits (fetched series)
            // stop a read before it holds every block's answer.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, BlockAnswer)>();
            let mut calls: FuturesUnordered<_> = by_gateway
                .into_iter()
                .map(|(g, ids)| self.call(&view, g, tenant, blocks, ids, read, tx.clone()))
                .collect();
            drop(tx);
            let mut visit_block = |b: usize, answer: BlockAnswer, answered: &mut Vec<bool>| {
                QUERIER_BLOCK_READS.with_label_values(&["ok"]).inc();
                answered[b] = true;
                visit(answer)
            };
            loop {
                tokio::select! {
                    Some((b, answer)) = rx.recv() => {
                        if let Err(e) = visit_block(b, answer, &mut answered) {
                            return Ok(Err(e));
                        }
                    }
                    result = calls.next() => {
                        let Some(CallResult { gateway, asked, error }) = result else {
                            break;
                        };
                        // What the call sent before it ended counts first.
                        while let Ok((b, answer)) = rx.try_recv() {
                            if let Err(e) = visit_block(b, answer, &mut answered) {
                                return Ok(Err(e));
                            }
                        }
                        if let Some(e) = error {
                            let id = &view.instances()[gateway].id;
                            tracing::warn!(tenant, gateway = %id, error = %e, "store-gateway read failed; asking the blocks' other owners");
                            for b in asked.into_iter().filter(|b| !answered[*b]) {
                                QUERIER_BLOCK_READS.with_label_values(&["retried"]).inc();
                                last_error[b] = Some(e.clone());
                                todo.push(b);
                            }
                        }
                    }
                }
            }
            while let Ok((b, answer)) = rx.try_recv() {
                if let Err(e) = visit_block(b, answer, &mut answered) {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(()))
    }

    /// One call to gateway `g` for the blocks `ids`.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        view: &RingView,
        g: usize,
        tenant: &str,
        blocks: &[BlockMeta],
        ids: Vec<usize>,
        read: &BlockRead<'_>,
        done: Answers,
    ) -> CallResult {
        let inst = &view.instances()[g];
        let started = Instant::now();
        let mut error = None;
        if self.local_id.as_deref() == Some(inst.id.as_str()) {
            for &b in &ids {
                match read_block(&self.reader, tenant, &blocks[b], read).await {
                    Ok(a) => {
                        // The reader went away (the read failed elsewhere).
                        if done.send((b, a)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        error = Some(format!("block {}: {e}", blocks[b].ulid));
                        break;
                    }
                }
            }
        } else if let Err(e) = self
            .remote(&inst.id, &inst.grpc_addr, tenant, blocks, &ids, read, &done)
            .await
        {
            error = Some(e);
        }
        let outcome = if error.is_none() { "ok" } else { "error" };
        QUERIER_CALL_SECONDS
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        CallResult {
            gateway: g,
            asked: ids,
            error,
        }
    }

    /// Reads blocks `ids` from the gateway at `addr`, sending each block to
    /// `done` once its last message arrived. A gateway silent for half the
    /// call's time is given up on, leaving the other half to the next owner.
    #[allow(clippy::too_many_arguments)]
    async fn remote(
        &self,
        id: &str,
        addr: &str,
        tenant: &str,
        blocks: &[BlockMeta],
        ids: &[usize],
        read: &BlockRead<'_>,
        done: &Answers,
    ) -> Result<(), String> {
        let mut client = self.client(id, addr)?;
        let metas: Vec<&BlockMeta> = ids.iter().map(|b| &blocks[*b]).collect();
        let mut req = tonic::Request::new(request(tenant, &metas, read));
        req.set_timeout(self.timeout);
        let mut stream = client
            .select(req)
            .await
            .map_err(|s| format!("store-gateway {id} ({addr}): {}", s.message()))?
            .into_inner();
        let index: HashMap<&str, usize> =
            ids.iter().map(|b| (blocks[*b].ulid.as_str(), *b)).collect();
        let mut open: HashMap<usize, BlockAnswer> = HashMap::new();
        let mut answered: std::collections::HashSet<usize> = std::collections::HashSet::new();
        let idle = self.timeout / 2;
        loop {
            let next = tokio::time::timeout(idle, stream.message())
                .await
                .map_err(|_| format!("store-gateway {id} ({addr}) sent nothing for {idle:?}"))?;
            let Some(msg) =
                next.map_err(|s| format!("store-gateway {id} ({addr}): {}", s.message()))?
            else {
                break;
            };
            let Some(&b) = index.get(msg.block.as_str()) else {
                return Err(format!(
                    "store-gateway {id} ({addr}) answered for block {:?}, which was not asked",
                    msg.block
                ));
            };
            let finished = msg.block_done;
            add_message(open.entry(b).or_insert_with(|| read.empty_answer()), msg);
            if finished && let Some(answer) = open.remove(&b) {
                if !answered.insert(b) {
                    return Err(format!(
                        "store-gateway {id} ({addr}) answered block {} twice",
                        blocks[b].ulid
                    ));
                }
                if done.send((b, answer)).is_err() {
                    return Ok(());
                }
            }
        }
        // Every block asked, each once: a count could hide a block
        // answered twice and another never.
        if !ids.iter().all(|b| answered.contains(b)) {
            return Err(format!(
                "store-gateway {id} ({addr}) ended its answer with {} of {} blocks",
                answered.len(),
                ids.len()
            ));
        }
        Ok(())
    }

    /// The pooled client of gateway `id` at `addr`.
    fn client(&self, id: &str, addr: &str) -> Result<GrpcClient<Transport>, String> {
        let mut pool = self.clients.lock();
        if let Some((a, c)) = pool.get(id)
            && a == addr
        {
            return Ok(c.clone());
        }
        let endpoint =
            strata_proto::transport::endpoint(addr, Duration::from_secs(2), self.timeout)
                .map_err(|e| format!("store-gateway {id} ({addr}): {e}"))?;
        let channel = InterceptedService::new(
            endpoint.connect_lazy(),
            strata_telemetry::InjectTraceContext,
        );
        let client = GrpcClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Zstd);
        pool.insert(id.to_string(), (addr.to_string(), client.clone()));
        Ok(client)
    }
}

/// The gateways that serve block `ulid` of `tenant` to queriers: its first
/// `rf` ACTIVE or LEAVING owners clockwise (a JOINING gateway is still
/// loading; one that left serves nothing).
pub(crate) fn owners(view: &RingView, tenant: &str, ulid: &str, rf: usize) -> Vec<usize> {
    view.replicas(block_key(tenant, ulid), rf, |i| {
        matches!(i.state, InstanceState::Active | InstanceState::Leaving)
    })
}

/// The error of a block that no owner answered.
fn no_owner_answered(
    tenant: &str,
    meta: &BlockMeta,
    view: &RingView,
    rf: usize,
    last_error: &Option<String>,
) -> StorageError {
    let owners: Vec<&str> = owners(view, tenant, &meta.ulid, rf)
        .into_iter()
        .map(|g| view.instances()[g].id.as_str())
        .collect();
    let why = match last_error {
        Some(e) => format!("the last one tried failed: {e}"),
        None if owners.is_empty() => "no store-gateway is ACTIVE".to_string(),
        None => "none of them is healthy".to_string(),
    };
    StorageError::Unavailable(format!(
        "block {} of tenant {tenant} could not be read from any of its store-gateways [{}]: {why}",
        meta.ulid,
        owners.join(", ")
    ))
}

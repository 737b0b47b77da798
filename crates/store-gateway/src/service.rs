//! The store-gateway's gRPC service: reads the blocks a querier names,
//! one after the other, through this gateway's cached reader, and streams
//! each block's answer in bounded messages ending with `block_done`. A
//! block that fails ends the stream with the error, so the querier keeps
//! the blocks already done and asks another owner for the rest.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use strata_ingester_client::MAX_MESSAGE_BYTES;
use strata_proto::storegateway::store_gateway_server::{
    StoreGateway as StoreGatewayRpc, StoreGatewayServer,
};
use strata_proto::storegateway::{BlocksRequest, BlocksResponse};
use strata_storage::{BlockReader, StorageError};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::metrics::SERVED_BLOCKS;
use crate::read_block;
use crate::wire::{DecodedRequest, answer_messages};

/// Most blocks one request may name: a querier asks for one query's blocks
/// of one tenant, far fewer.
const MAX_BLOCKS_PER_REQUEST: usize = 100_000;

/// The store-gateway's gRPC service over this process's block reader.
pub struct StoreGatewayService {
    reader: Arc<BlockReader>,
}

impl StoreGatewayService {
    /// The tonic server reading blocks with `reader` (the gateway's cached one).
    pub fn server(reader: Arc<BlockReader>) -> StoreGatewayServer<Self> {
        StoreGatewayServer::new(Self { reader })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Zstd)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A failed block read as the querier sees it: the store's unavailability
/// is worth another owner's try, anything else too, but named as ours.
fn status_of(ulid: &str, e: &StorageError) -> Status {
    let message = format!("block {ulid}: {e}");
    match e {
        StorageError::Object { .. } | StorageError::Unavailable(_) => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

#[tonic::async_trait]
impl StoreGatewayRpc for StoreGatewayService {
    type SelectStream = BoxStream<BlocksResponse>;

    async fn select(
        &self,
        req: Request<BlocksRequest>,
    ) -> Result<Response<Self::SelectStream>, Status> {
        let req = req.into_inner();
        if req.blocks.len() > MAX_BLOCKS_PER_REQUEST {
            return Err(Status::invalid_argument(format!(
                "{} blocks in one read, at most {MAX_BLOCKS_PER_REQUEST}",
                req.blocks.len()
            )));
        }
        let decoded = DecodedRequest::decode(req)?;
        let reader = self.reader.clone();
        // Two messages in flight: a slow querier holds back the reads.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<BlocksResponse, Status>>(2);
        let span = tracing::info_span!("storegateway_select", tenant = %decoded.tenant, blocks = decoded.blocks.len());
        tokio::spawn(
            async move {
                let read = decoded.read();
                let signal = read.signal().dir();
                for meta in &decoded.blocks {
                    match read_block(&reader, &decoded.tenant, meta, &read).await {
                        Ok(answer) => {
                            SERVED_BLOCKS.with_label_values(&[signal, "ok"]).inc();
                            for msg in answer_messages(&meta.ulid, &answer) {
                                if tx.send(Ok(msg)).await.is_err() {
                                    // The querier went away.
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            SERVED_BLOCKS.with_label_values(&[signal, "error"]).inc();
                            tracing::warn!(block = %meta.ulid, error = %e, "block read failed");
                            let _ = tx.send(Err(status_of(&meta.ulid, &e))).await;
                            return;
                        }
                    }
                }
            }
            .instrument(span),
        );
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        Ok(Response::new(Box::pin(stream)))
    }
}

//! The replicated push without re-encoding: each series of a batch is
//! encoded as a `TimeSeries` message once, and every replica's
//! `PushRequest` is those bytes concatenated behind its header fields (a
//! repeated message field is just its elements' bytes, each behind a tag
//! and a length). Profiling the distributor showed building one
//! `TimeSeries` per replica (cloning every label string three times) as
//! its largest cost.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use strata_proto::ingester::PushResponse;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::client::SharedBatch;
use crate::outcome::PushLimits;
use crate::wire::series_to_proto;

/// The encodings of a batch's series, made once for all its replicas.
#[derive(Default)]
pub struct EncodedSeries(OnceLock<Vec<Bytes>>);

impl EncodedSeries {
    fn get(&self, batch: &SharedBatch) -> &[Bytes] {
        self.0.get_or_init(|| {
            batch
                .iter()
                .map(|(l, s)| Bytes::from(series_to_proto(l, s).encode_to_vec()))
                .collect()
        })
    }
}

/// The `PushRequest` bytes for the series of `batch` at `indexes`.
pub(super) fn push_request(
    tenant: &str,
    batch: &SharedBatch,
    encoded: &EncodedSeries,
    indexes: &[u32],
    limits: PushLimits,
) -> Bytes {
    let series = encoded.get(batch);
    let body: usize = indexes
        .iter()
        .map(|i| {
            let n = series[*i as usize].len();
            1 + encoded_len_varint(n as u64) + n
        })
        .sum();
    let mut buf = BytesMut::with_capacity(body + tenant.len() + 32);
    prost::encoding::string::encode(1, &tenant.to_string(), &mut buf);
    for i in indexes {
        let s = &series[*i as usize];
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(s.len() as u64, &mut buf);
        buf.put_slice(s);
    }
    let ooo = limits.out_of_order_time_window.as_millis() as i64;
    if ooo != 0 {
        prost::encoding::int64::encode(3, &ooo, &mut buf);
    }
    let max_series = limits.max_series as u64;
    if max_series != 0 {
        prost::encoding::uint64::encode(4, &max_series, &mut buf);
    }
    buf.freeze()
}

/// Sends pre-encoded request bytes and decodes a `PushResponse`.
#[derive(Default, Clone, Copy)]
pub(super) struct RawPushCodec;

pub(super) struct RawEncoder;
pub(super) struct PushResponseDecoder;

impl Codec for RawPushCodec {
    type Encode = Bytes;
    type Decode = PushResponse;
    type Encoder = RawEncoder;
    type Decoder = PushResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        PushResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for PushResponseDecoder {
    type Item = PushResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<PushResponse>, Status> {
        PushResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("bad push response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use strata_model::{Labels, Sample};
    use strata_proto::ingester::PushRequest;

    use super::*;

    #[test]
    fn concatenated_request_decodes_as_the_prost_encoding() {
        let batch: SharedBatch = Arc::new(
            (0..4)
                .map(|i| {
                    (
                        Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]),
                        vec![Sample { t: i, v: i as f64 }],
                    )
                })
                .collect(),
        );
        let limits = PushLimits {
            out_of_order_time_window: Duration::from_secs(60),
            max_series: 7,
        };
        let enc = EncodedSeries::default();
        let bytes = push_request("t", &batch, &enc, &[3, 1], limits);
        let got = PushRequest::decode(bytes).unwrap();
        let want = PushRequest {
            tenant: "t".into(),
            timeseries: [3, 1]
                .iter()
                .map(|i: &usize| series_to_proto(&batch[*i].0, &batch[*i].1))
                .collect(),
            out_of_order_time_window_ms: 60_000,
            max_series: 7,
        };
        assert_eq!(got, want);
    }
}

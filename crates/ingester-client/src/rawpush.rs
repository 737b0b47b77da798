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
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use strata_model::BatchSeries;
use strata_proto::ingester::PushResponse;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::client::SharedBatch;
use crate::outcome::PushLimits;

/// The encodings of a batch's series, made once for all its replicas.
#[derive(Default)]
pub struct EncodedSeries(OnceLock<Vec<Bytes>>);

impl EncodedSeries {
    fn get(&self, batch: &SharedBatch) -> &[Bytes] {
        self.0.get_or_init(|| {
            let mut buf = BytesMut::new();
            batch
                .iter()
                .map(|s| {
                    encode_series(s, &mut buf);
                    buf.split().freeze()
                })
                .collect()
        })
    }
}

/// A series as a `prometheus.TimeSeries` message, written from the batch's
/// strings (the bytes prost writes for the same message).
fn encode_series(s: BatchSeries<'_>, buf: &mut BytesMut) {
    let field = |tag: u32, bytes: &[u8], buf: &mut BytesMut| {
        if !bytes.is_empty() {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(bytes.len() as u64, buf);
            buf.put_slice(bytes);
        }
    };
    let field_len = |tag: u32, len: usize| {
        if len == 0 {
            0
        } else {
            key_len(tag) + encoded_len_varint(len as u64) + len
        }
    };
    for (name, value) in s.labels() {
        let len = field_len(1, name.len()) + field_len(2, value.len());
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
        field(1, name.as_bytes(), buf);
        field(2, value.as_bytes(), buf);
    }
    for sample in s.samples() {
        // proto3 leaves out fields holding their default (prost compares
        // the double with 0.0, so -0.0 is left out too).
        let has_value = sample.v != 0.0;
        let mut len = 0;
        if has_value {
            len += key_len(1) + 8;
        }
        if sample.t != 0 {
            len += key_len(2) + encoded_len_varint(sample.t as u64);
        }
        encode_key(2, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
        if has_value {
            encode_key(1, WireType::SixtyFourBit, buf);
            buf.put_f64_le(sample.v);
        }
        if sample.t != 0 {
            encode_key(2, WireType::Varint, buf);
            encode_varint(sample.t as u64, buf);
        }
    }
}

/// The `PushRequest` bytes for the series of `batch` at `indexes`: the
/// tenant, then the `MetricBatch` field holding the series and their
/// limits (metadata travels in pushes of its own).
pub(super) fn push_request(
    tenant: &str,
    batch: &SharedBatch,
    encoded: &EncodedSeries,
    indexes: &[u32],
    limits: PushLimits,
) -> Bytes {
    let series = encoded.get(batch);
    let ooo = limits.out_of_order_time_window.as_millis() as i64;
    let max_series = limits.max_series as u64;
    let mut metric_batch: usize = indexes
        .iter()
        .map(|i| {
            let n = series[*i as usize].len();
            1 + encoded_len_varint(n as u64) + n
        })
        .sum();
    if ooo != 0 {
        metric_batch += prost::encoding::int64::encoded_len(2, &ooo);
    }
    if max_series != 0 {
        metric_batch += prost::encoding::uint64::encoded_len(3, &max_series);
    }
    let mut buf = BytesMut::with_capacity(metric_batch + tenant.len() + 32);
    prost::encoding::string::encode(1, &tenant.to_string(), &mut buf);
    encode_key(2, WireType::LengthDelimited, &mut buf);
    encode_varint(metric_batch as u64, &mut buf);
    for i in indexes {
        let s = &series[*i as usize];
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(s.len() as u64, &mut buf);
        buf.put_slice(s);
    }
    if ooo != 0 {
        prost::encoding::int64::encode(2, &ooo, &mut buf);
    }
    if max_series != 0 {
        prost::encoding::uint64::encode(3, &max_series, &mut buf);
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

    use strata_model::{Labels, Sample, SeriesBatch};
    use strata_proto::ingester::push_request::Batch;
    use strata_proto::ingester::{MetricBatch, PushRequest};

    use super::*;
    use crate::wire::series_to_proto;

    #[test]
    fn concatenated_request_decodes_as_the_prost_encoding() {
        // Zero and negative zero values and timestamps, negative
        // timestamps, NaN: prost leaves out defaults, sign-extends int64.
        let values = [0.0, -0.0, f64::NAN, 1.5, -2.0];
        let owned: Vec<(Labels, Vec<Sample>)> = (0..5)
            .map(|i| {
                (
                    Labels::from_pairs([("__name__", "m"), ("i", &i.to_string()), ("é", "ü")]),
                    vec![
                        Sample {
                            t: i - 2,
                            v: values[i as usize],
                        },
                        Sample { t: 1 << 40, v: 0.0 },
                    ],
                )
            })
            .collect();
        let batch: SharedBatch = Arc::new(SeriesBatch::from_owned(&owned));
        let series_to_proto = |i: usize| series_to_proto(&owned[i].0, &owned[i].1);
        let limits = PushLimits {
            out_of_order_time_window: Duration::from_secs(60),
            max_series: 7,
            ..Default::default()
        };
        let enc = EncodedSeries::default();
        let want = |indexes: &[u32], limits: PushLimits| PushRequest {
            tenant: "t".into(),
            batch: Some(Batch::Metrics(MetricBatch {
                timeseries: indexes
                    .iter()
                    .map(|i| series_to_proto(*i as usize).encode_to_vec().into())
                    .collect(),
                out_of_order_time_window_ms: limits.out_of_order_time_window.as_millis() as i64,
                max_series: limits.max_series as u64,
                ..Default::default()
            })),
        };
        for (indexes, limits) in [
            (vec![3, 1, 4, 2], limits),
            (vec![0], PushLimits::default()),
            (vec![], limits),
        ] {
            let bytes = push_request("t", &batch, &enc, &indexes, limits);
            assert_eq!(bytes, want(&indexes, limits).encode_to_vec(), "{indexes:?}");
            // Byte-equal to prost's encoding (NaN makes the messages
            // themselves unequal), so it decodes as prost's does.
            assert!(PushRequest::decode(bytes).is_ok());
        }
    }
}

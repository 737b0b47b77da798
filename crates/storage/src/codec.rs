//! Encoding of a stored chunk (the `data` column of `chunks.parquet`). The
//! first byte names the codec so blocks stay readable if the default changes:
//! `1` = pcodec (`[1][ts_len: u32 LE][pco(timestamps)][pco(values)]`), the
//! default since it stores real scrape data in ~2.6x fewer bytes than
//! Gorilla XOR at the same decode speed (`benches/block_size.rs`);
//! `0` = a Gorilla XOR chunk ([`crate::chunk::XorChunk`] bytes).

use strata_model::Sample;

use crate::chunk::{ChunkError, decode_chunk};

const CODEC_XOR: u8 = 0;
const CODEC_PCO: u8 = 1;

/// Encodes time-ordered samples with the default codec (pcodec).
pub fn encode(samples: &[Sample]) -> Result<Vec<u8>, ChunkError> {
    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    // pcodec is lossless: NaN payloads such as the staleness marker
    // round-trip bit-exact (tested below).
    let vs: Vec<f64> = samples.iter().map(|s| s.v).collect();
    let cfg = pco::ChunkConfig::default();
    let ct = pco::standalone::simple_compress(&ts, &cfg)
        .map_err(|e| ChunkError(format!("pcodec timestamps: {e}")))?;
    let cv = pco::standalone::simple_compress(&vs, &cfg)
        .map_err(|e| ChunkError(format!("pcodec values: {e}")))?;
    let mut out = Vec::with_capacity(5 + ct.len() + cv.len());
    out.push(CODEC_PCO);
    out.extend_from_slice(&(ct.len() as u32).to_le_bytes());
    out.extend_from_slice(&ct);
    out.extend_from_slice(&cv);
    Ok(out)
}

/// Decodes a stored chunk of any supported codec, appending to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let (&codec, rest) = bytes
        .split_first()
        .ok_or_else(|| ChunkError("empty chunk".into()))?;
    match codec {
        CODEC_XOR => decode_chunk(rest, out),
        CODEC_PCO => {
            if rest.len() < 4 {
                return Err(ChunkError("pcodec chunk shorter than its header".into()));
            }
            let ts_len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let rest = &rest[4..];
            if rest.len() < ts_len {
                return Err(ChunkError("pcodec chunk truncated".into()));
            }
            let ts: Vec<i64> = pco::standalone::simple_decompress(&rest[..ts_len])
                .map_err(|e| ChunkError(format!("pcodec timestamps: {e}")))?;
            let vs: Vec<f64> = pco::standalone::simple_decompress(&rest[ts_len..])
                .map_err(|e| ChunkError(format!("pcodec values: {e}")))?;
            if ts.len() != vs.len() {
                return Err(ChunkError(format!(
                    "pcodec chunk has {} timestamps but {} values",
                    ts.len(),
                    vs.len()
                )));
            }
            out.extend(ts.into_iter().zip(vs).map(|(t, v)| Sample { t, v }));
            Ok(())
        }
        other => Err(ChunkError(format!("unknown chunk codec {other}"))),
    }
}

/// Wraps Gorilla XOR chunk bytes with the codec tag.
pub fn tag_xor(xor_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + xor_bytes.len());
    out.push(CODEC_XOR);
    out.extend_from_slice(xor_bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::XorChunk;

    #[test]
    fn pco_round_trip_is_bit_exact() {
        let special = [
            strata_model::stale_nan(),
            f64::NAN,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-310,
            42.5,
        ];
        let samples: Vec<Sample> = (0..1000)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 15_000 + (i % 3),
                v: if i % 50 == 0 {
                    special[(i / 50) as usize % special.len()]
                } else {
                    i as f64 * 0.1
                },
            })
            .collect();
        let bytes = encode(&samples).unwrap();
        let mut out = Vec::new();
        decode(&bytes, &mut out).unwrap();
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(&samples) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits(), "at {}", b.t);
        }
    }

    #[test]
    fn xor_tagged_chunks_still_decode() {
        let samples: Vec<Sample> = (0..10).map(|i| Sample { t: i, v: i as f64 }).collect();
        let bytes = tag_xor(&XorChunk::from_samples(&samples).to_bytes());
        let mut out = Vec::new();
        decode(&bytes, &mut out).unwrap();
        assert_eq!(out, samples);
    }

    #[test]
    fn corrupt_chunks_are_errors() {
        let mut out = Vec::new();
        assert!(decode(&[], &mut out).is_err());
        assert!(decode(&[7, 1, 2], &mut out).is_err());
        assert!(decode(&[CODEC_PCO, 200, 0, 0, 0, 1], &mut out).is_err());
        let good = encode(&[Sample { t: 1, v: 1.0 }, Sample { t: 2, v: 2.0 }]).unwrap();
        assert!(decode(&good[..good.len() - 2], &mut out).is_err());
    }
}

//! Encoding of a stored chunk (the `data` column of `chunks.parquet`). The
//! first byte names the codec so blocks stay readable if the default changes:
//! `1` = pcodec (`[1][ts_len: u32 LE][pco(timestamps)][pco(values)]`), the
//! default since it stores real scrape data in ~2.6x fewer bytes than
//! Gorilla XOR at the same decode speed (`benches/block_size.rs`);
//! `0` = a Gorilla XOR chunk ([`crate::chunk::XorChunk`] bytes).

use strata_model::{Sample, StepWindows};

use crate::chunk::{ChunkError, MAX_CHUNK_SAMPLES, decode_chunk};

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
    ChunkDecoder::default().decode_kept(bytes, (i64::MIN, i64::MAX), None, out)
}

/// Decodes stored chunks one after another into buffers it keeps, so a
/// scan allocates per scan, not per chunk, and materializes as samples only
/// what it keeps.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    ts: Vec<i64>,
    vs: Vec<f64>,
    xor: Vec<Sample>,
}

impl ChunkDecoder {
    /// Appends to `out` the samples of the stored chunk `bytes` in
    /// `[min_t, max_t]`, only those in `windows` when given.
    pub fn decode_kept(
        &mut self,
        bytes: &[u8],
        (min_t, max_t): (i64, i64),
        windows: Option<StepWindows>,
        out: &mut Vec<Sample>,
    ) -> Result<(), ChunkError> {
        let (&codec, rest) = bytes
            .split_first()
            .ok_or_else(|| ChunkError("empty chunk".into()))?;
        match codec {
            CODEC_XOR => {
                self.xor.clear();
                decode_chunk(rest, &mut self.xor)?;
                let lo = self.xor.partition_point(|s| s.t < min_t);
                // An empty range (min_t > max_t) keeps nothing.
                let hi = self.xor.partition_point(|s| s.t <= max_t).max(lo);
                match windows {
                    Some(w) => w.extend_kept(out, &self.xor[lo..hi]),
                    None => out.extend_from_slice(&self.xor[lo..hi]),
                }
                Ok(())
            }
            CODEC_PCO => {
                if rest.len() < 4 {
                    return Err(ChunkError("pcodec chunk shorter than its header".into()));
                }
                let ts_len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let rest = &rest[4..];
                if rest.len() < ts_len {
                    return Err(ChunkError("pcodec chunk truncated".into()));
                }
                pco_into(&rest[..ts_len], &mut self.ts)
                    .map_err(|e| ChunkError(format!("pcodec timestamps: {e}")))?;
                pco_into(&rest[ts_len..], &mut self.vs)
                    .map_err(|e| ChunkError(format!("pcodec values: {e}")))?;
                let (ts, vs) = (&self.ts, &self.vs);
                if ts.len() != vs.len() {
                    return Err(ChunkError(format!(
                        "pcodec chunk has {} timestamps but {} values",
                        ts.len(),
                        vs.len()
                    )));
                }
                let lo = ts.partition_point(|&t| t < min_t);
                let hi = ts.partition_point(|&t| t <= max_t).max(lo);
                let mut take = |r: std::ops::Range<usize>| {
                    out.extend(r.map(|i| Sample { t: ts[i], v: vs[i] }));
                };
                match windows {
                    Some(w) => w.runs(&ts[lo..hi], |&t| t, |r| take(r.start + lo..r.end + lo)),
                    None => take(lo..hi),
                }
                Ok(())
            }
            other => Err(ChunkError(format!("unknown chunk codec {other}"))),
        }
    }
}

/// Decompresses a standalone pcodec file into `dst` (cleared first),
/// refusing files that claim more numbers than a chunk holds before
/// allocating for them.
fn pco_into<T: pco::data_types::Number + Default>(
    src: &[u8],
    dst: &mut Vec<T>,
) -> Result<(), String> {
    use pco::standalone::{DecompressorItem, FileDecompressor};
    dst.clear();
    let (file, mut src) = FileDecompressor::new(src).map_err(|e| e.to_string())?;
    loop {
        match file.chunk_decompressor::<T, _>(src).map_err(|e| e.to_string())? {
            DecompressorItem::Chunk(mut chunk) => {
                let (at, n) = (dst.len(), chunk.n());
                if at + n > MAX_CHUNK_SAMPLES {
                    return Err(format!(
                        "{} numbers, more than a chunk holds ({MAX_CHUNK_SAMPLES})",
                        at + n
                    ));
                }
                dst.resize(at + n, T::default());
                let progress = chunk.read(&mut dst[at..]).map_err(|e| e.to_string())?;
                if progress.n_processed != n {
                    return Err(format!("{} of {n} numbers decoded", progress.n_processed));
                }
                src = chunk.into_src();
            }
            DecompressorItem::EndOfData(_) => return Ok(()),
        }
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

    /// One decoder over chunks of both codecs and several sizes keeps what
    /// the range and windows say, exactly as filtering a full decode.
    #[test]
    fn a_reused_decoder_keeps_the_range_and_windows() {
        let chunk = |n: i64, from: i64| -> Vec<Sample> {
            (0..n)
                .map(|i| Sample {
                    t: from + i * 15_000 + (i % 4),
                    v: (i * i) as f64 * 0.5,
                })
                .collect()
        };
        let mut decoder = ChunkDecoder::default();
        for (n, from) in [(5_760, 0), (10, 7), (960, 1_000_000), (1, 3), (2_000, -60_000)] {
            let samples = chunk(n, from);
            let last = samples[samples.len() - 1].t;
            for bytes in [
                encode(&samples).unwrap(),
                tag_xor(&XorChunk::from_samples(&samples).to_bytes()),
            ] {
                for (range, windows) in [
                    ((i64::MIN, i64::MAX), None),
                    ((from + 100_000, last - 50_000), None),
                    ((from, last), StepWindows::new(last, 2_580_000, 300_000)),
                    ((from + 1, last - 1), StepWindows::new(last - 7, 60_001, 60_000)),
                ] {
                    let want: Vec<Sample> = samples
                        .iter()
                        .filter(|s| s.t >= range.0 && s.t <= range.1)
                        .filter(|s| windows.is_none_or(|w| w.keeps(s.t)))
                        .copied()
                        .collect();
                    let mut out = vec![Sample { t: -1, v: 0.0 }];
                    decoder.decode_kept(&bytes, range, windows, &mut out).unwrap();
                    assert_eq!(out[0].t, -1, "appends");
                    assert_eq!(&out[1..], &want[..], "{n} samples, {range:?} {windows:?}");
                }
            }
        }
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

//! Encoding of a stored chunk (the `data` column of `chunks.parquet`). The
//! first byte names the codec so blocks stay readable if the default changes:
//! - `2` = paged pcodec, the default: timestamps and values each one pcodec
//!   chunk (shared bins) cut into pages of up to [`PAGE_SAMPLES`], with a
//!   directory of each page's count, first timestamp and byte lengths, so a
//!   read decodes only the pages its range and step windows meet (a
//!   compacted day's 5,760-sample chunk is six pages);
//!   `[2][pages][header len][header][ts meta len][ts meta][vs meta len][vs meta]`
//!   `[per page: n, first t (zig-zag delta), ts len, vs len][pages: ts, vs, ...]`
//!   (lengths and counts as varints);
//! - `1` = pcodec in one page (`[1][ts_len: u32 LE][pco(timestamps)][pco(values)]`),
//!   chosen over Gorilla XOR since it stores real scrape data in ~2.6x fewer
//!   bytes at the same decode speed (`benches/block_size.rs`);
//! - `0` = a Gorilla XOR chunk ([`crate::chunk::XorChunk`] bytes).

use bytes::Buf;
use pco::wrapped::{ChunkDecompressor, FileCompressor, FileDecompressor};
use pco::{ChunkConfig, PagingSpec};
use prost::encoding::{decode_varint, encode_varint};
use strata_model::{Sample, StepWindows};

use crate::chunk::{ChunkError, MAX_CHUNK_SAMPLES, decode_chunk};

const CODEC_XOR: u8 = 0;
const CODEC_PCO: u8 = 1;
const CODEC_PCO_PAGED: u8 = 2;

/// Most samples in one page of a paged chunk: 4 hours at a 15 s scrape
/// interval, a head block's whole chunk. Measured on the realistic cluster
/// day compacted to 24h (`cargo bench -p strata-compactor --bench
/// compaction`): 0.484 bytes per sample in pages vs 0.473 in one page
/// (2.3% more), for reads of a few hours decoding a sixth of a day's chunk.
pub const PAGE_SAMPLES: usize = 960;

fn pco_err(what: &str) -> impl Fn(pco::errors::PcoError) -> ChunkError + '_ {
    move |e| ChunkError(format!("pcodec {what}: {e}"))
}

/// Encodes time-ordered samples with the default codec (paged pcodec).
pub fn encode(samples: &[Sample]) -> Result<Vec<u8>, ChunkError> {
    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    // pcodec is lossless: NaN payloads such as the staleness marker
    // round-trip bit-exact (tested below).
    let vs: Vec<f64> = samples.iter().map(|s| s.v).collect();
    let cfg = ChunkConfig::default().with_paging_spec(PagingSpec::EqualPagesUpTo(PAGE_SAMPLES));
    let file = FileCompressor::default();
    let header = file.write_header(Vec::new()).map_err(pco_err("header"))?;
    let mut tc = file
        .chunk_compressor(&ts, &cfg)
        .map_err(pco_err("timestamps"))?;
    let mut vc = file
        .chunk_compressor(&vs, &cfg)
        .map_err(pco_err("values"))?;
    let ts_meta = tc.write_meta(Vec::new()).map_err(pco_err("timestamps"))?;
    let vs_meta = vc.write_meta(Vec::new()).map_err(pco_err("values"))?;
    let counts = tc.n_per_page();
    let mut out = Vec::with_capacity(64 + samples.len());
    out.push(CODEC_PCO_PAGED);
    encode_varint(counts.len() as u64, &mut out);
    for part in [&header, &ts_meta, &vs_meta] {
        encode_varint(part.len() as u64, &mut out);
        out.extend_from_slice(part);
    }
    let (mut pages, mut at, mut prev_first) = (Vec::new(), 0, 0i64);
    for (i, &n) in counts.iter().enumerate() {
        let first = *ts.get(at).ok_or_else(|| {
            ChunkError(format!(
                "pcodec paged {} samples past the {} given",
                at + 1,
                ts.len()
            ))
        })?;
        let ts_page = tc
            .write_page(i, Vec::new())
            .map_err(pco_err("timestamps"))?;
        let vs_page = vc.write_page(i, Vec::new()).map_err(pco_err("values"))?;
        encode_varint(n as u64, &mut out);
        let delta = first.wrapping_sub(prev_first);
        encode_varint(((delta << 1) ^ (delta >> 63)) as u64, &mut out);
        encode_varint(ts_page.len() as u64, &mut out);
        encode_varint(vs_page.len() as u64, &mut out);
        pages.extend_from_slice(&ts_page);
        pages.extend_from_slice(&vs_page);
        (at, prev_first) = (at + n, first);
    }
    out.extend_from_slice(&pages);
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
                let xor = &self.xor;
                kept_runs(
                    xor,
                    |s| s.t,
                    (min_t, max_t),
                    windows,
                    |r| {
                        out.extend_from_slice(&xor[r]);
                    },
                );
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
                if self.ts.len() != self.vs.len() {
                    return Err(ChunkError(format!(
                        "pcodec chunk has {} timestamps but {} values",
                        self.ts.len(),
                        self.vs.len()
                    )));
                }
                keep(&self.ts, &self.vs, (min_t, max_t), windows, out);
                Ok(())
            }
            CODEC_PCO_PAGED => self.decode_paged(rest, (min_t, max_t), windows, out),
            other => Err(ChunkError(format!("unknown chunk codec {other}"))),
        }
    }

    /// The paged pcodec chunk `src` (after its codec byte): only the pages
    /// whose time span meets the range and windows are decoded.
    fn decode_paged(
        &mut self,
        mut src: &[u8],
        (min_t, max_t): (i64, i64),
        windows: Option<StepWindows>,
        out: &mut Vec<Sample>,
    ) -> Result<(), ChunkError> {
        let truncated = || ChunkError("paged pcodec chunk truncated".into());
        let varint = |src: &mut &[u8]| decode_varint(src).map_err(|_| truncated());
        let length = |src: &mut &[u8]| -> Result<usize, ChunkError> {
            let n = varint(src)?;
            usize::try_from(n)
                .ok()
                .filter(|&n| n <= src.len())
                .ok_or_else(truncated)
        };
        let n_pages = varint(&mut src)?;
        if n_pages > MAX_CHUNK_SAMPLES as u64 {
            return Err(ChunkError(format!(
                "paged pcodec chunk claims {n_pages} pages"
            )));
        }
        let mut parts = [&[][..]; 3];
        for part in &mut parts {
            let len = length(&mut src)?;
            *part = &src[..len];
            src.advance(len);
        }
        let [header, ts_meta, vs_meta] = parts;
        // The directory: (count, first time, ts bytes, vs bytes) per page.
        let mut pages = Vec::with_capacity(n_pages as usize);
        let (mut total, mut first) = (0usize, 0i64);
        for _ in 0..n_pages {
            let n = varint(&mut src)? as usize;
            let z = varint(&mut src)?;
            first = first.wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
            let ts_len = varint(&mut src)? as usize;
            let vs_len = varint(&mut src)? as usize;
            total = total.saturating_add(n);
            if n == 0 || total > MAX_CHUNK_SAMPLES {
                return Err(ChunkError(format!(
                    "paged pcodec chunk has a page of {n} samples or over {MAX_CHUNK_SAMPLES} in all"
                )));
            }
            pages.push((n, first, ts_len, vs_len));
        }
        let (file, _) = FileDecompressor::new(header).map_err(pco_err("header"))?;
        let (mut tcd, _) = file
            .chunk_decompressor::<i64, _>(ts_meta)
            .map_err(pco_err("timestamps"))?;
        let (mut vcd, _) = file
            .chunk_decompressor::<f64, _>(vs_meta)
            .map_err(pco_err("values"))?;
        for (i, &(n, first, ts_len, vs_len)) in pages.iter().enumerate() {
            if ts_len > src.len() || vs_len > src.len() - ts_len {
                return Err(truncated());
            }
            let (ts_page, vs_page) = (&src[..ts_len], &src[ts_len..ts_len + vs_len]);
            src.advance(ts_len + vs_len);
            // Times are strictly increasing: a page's samples lie before the
            // next page's first.
            let last = pages.get(i + 1).map_or(i64::MAX, |p| p.1.saturating_sub(1));
            if first > max_t || last < min_t || windows.is_some_and(|w| !w.meets(first, last)) {
                continue;
            }
            read_page(&mut tcd, (ts_page, n), &mut self.ts, "timestamps")?;
            read_page(&mut vcd, (vs_page, n), &mut self.vs, "values")?;
            keep(&self.ts, &self.vs, (min_t, max_t), windows, out);
        }
        Ok(())
    }
}

/// Decodes one page of `n` numbers (`what`) into `dst` (cleared first).
fn read_page<T: pco::data_types::Number + Default>(
    chunk: &mut ChunkDecompressor<T>,
    (page, n): (&[u8], usize),
    dst: &mut Vec<T>,
    what: &str,
) -> Result<(), ChunkError> {
    dst.clear();
    dst.resize(n, T::default());
    let mut pd = chunk.page_decompressor(page, n).map_err(pco_err(what))?;
    let progress = pd.read(dst).map_err(pco_err(what))?;
    if progress.n_processed != n {
        return Err(ChunkError(format!(
            "pcodec {what}: {} of a page's {n} numbers decoded",
            progress.n_processed
        )));
    }
    Ok(())
}

/// Calls `take` with each run of `items` (ascending by `time`) in
/// `[min_t, max_t]` and, when given, in one of `windows`.
fn kept_runs<T>(
    items: &[T],
    time: impl Fn(&T) -> i64 + Copy,
    (min_t, max_t): (i64, i64),
    windows: Option<StepWindows>,
    mut take: impl FnMut(std::ops::Range<usize>),
) {
    let lo = items.partition_point(|x| time(x) < min_t);
    // An empty range (min_t > max_t) keeps nothing.
    let hi = items.partition_point(|x| time(x) <= max_t).max(lo);
    match windows {
        Some(w) => w.runs(&items[lo..hi], time, |r| take(r.start + lo..r.end + lo)),
        None => take(lo..hi),
    }
}

/// Appends the samples of `ts`/`vs` (time-ordered, same length) in the range
/// and windows to `out`.
fn keep(
    ts: &[i64],
    vs: &[f64],
    range: (i64, i64),
    windows: Option<StepWindows>,
    out: &mut Vec<Sample>,
) {
    let n = ts.len().min(vs.len());
    let (ts, vs) = (&ts[..n], &vs[..n]);
    kept_runs(
        ts,
        |&t| t,
        range,
        windows,
        |r| {
            out.extend(
                ts[r.clone()]
                    .iter()
                    .zip(&vs[r])
                    .map(|(&t, &v)| Sample { t, v }),
            );
        },
    );
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
        match file
            .chunk_decompressor::<T, _>(src)
            .map_err(|e| e.to_string())?
        {
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

    /// A chunk as codec 1 wrote it (pcodec in one page), before pages.
    fn encode_single_page(samples: &[Sample]) -> Vec<u8> {
        let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
        let vs: Vec<f64> = samples.iter().map(|s| s.v).collect();
        let cfg = pco::ChunkConfig::default();
        let ct = pco::standalone::simple_compress(&ts, &cfg).unwrap();
        let cv = pco::standalone::simple_compress(&vs, &cfg).unwrap();
        let mut out = vec![CODEC_PCO];
        out.extend_from_slice(&(ct.len() as u32).to_le_bytes());
        out.extend_from_slice(&ct);
        out.extend_from_slice(&cv);
        out
    }

    #[test]
    fn single_page_chunks_still_decode() {
        let samples: Vec<Sample> = (0..3000)
            .map(|i| Sample {
                t: i * 15,
                v: i as f64,
            })
            .collect();
        let mut out = Vec::new();
        decode(&encode_single_page(&samples), &mut out).unwrap();
        assert_eq!(out, samples);
    }

    /// A day's chunk is six pages; a read of one hour decodes only the
    /// page holding it (a corrupt page elsewhere goes unnoticed), a read
    /// of everything notices it.
    #[test]
    fn reads_decode_only_the_pages_they_meet() {
        let samples: Vec<Sample> = (0..5_760)
            .map(|i| Sample {
                t: i * 15_000,
                v: i as f64,
            })
            .collect();
        let mut bytes = encode(&samples).unwrap();
        let mut decoder = ChunkDecoder::default();
        let hour = (3_600_000, 7_199_999);
        let mut out = Vec::new();
        decoder.decode_kept(&bytes, hour, None, &mut out).unwrap();
        assert_eq!(out, samples[240..480]);
        // Scramble the last page's value bytes (the end of the chunk).
        let n = bytes.len();
        for b in &mut bytes[n - 40..] {
            *b ^= 0x5a;
        }
        out.clear();
        decoder.decode_kept(&bytes, hour, None, &mut out).unwrap();
        assert_eq!(out, samples[240..480]);
        out.clear();
        let all = decoder.decode_kept(&bytes, (i64::MIN, i64::MAX), None, &mut out);
        assert!(
            all.is_err() || out != samples,
            "a scrambled page must not read back as it was"
        );
    }

    /// No samples encode to a chunk that decodes to none, or to an error.
    #[test]
    fn an_empty_chunk_is_no_panic() {
        let mut out = Vec::new();
        if let Ok(bytes) = encode(&[]) {
            decode(&bytes, &mut out).unwrap();
            assert!(out.is_empty());
        }
    }

    /// Random lengths and times round-trip through pages of every size.
    #[test]
    fn paged_chunks_round_trip() {
        let mut seed = 11u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for n in [1usize, 2, 959, 960, 961, 1_919, 5_760, 5_761, 20_000] {
            let mut t = (next() % 1_000_000) as i64 - 500_000;
            let samples: Vec<Sample> = (0..n)
                .map(|_| {
                    t += 1 + (next() % 30_000) as i64;
                    Sample {
                        t,
                        v: f64::from_bits(next()),
                    }
                })
                .collect();
            let bytes = encode(&samples).unwrap();
            let mut out = Vec::new();
            decode(&bytes, &mut out).unwrap();
            assert_eq!(out.len(), n);
            for (a, b) in out.iter().zip(&samples) {
                assert_eq!((a.t, a.v.to_bits()), (b.t, b.v.to_bits()));
            }
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
        for (n, from) in [
            (5_760, 0),
            (10, 7),
            (960, 1_000_000),
            (1, 3),
            (2_000, -60_000),
        ] {
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
                    (
                        (from + 1, last - 1),
                        StepWindows::new(last - 7, 60_001, 60_000),
                    ),
                ] {
                    let want: Vec<Sample> = samples
                        .iter()
                        .filter(|s| s.t >= range.0 && s.t <= range.1)
                        .filter(|s| windows.is_none_or(|w| w.keeps(s.t)))
                        .copied()
                        .collect();
                    let mut out = vec![Sample { t: -1, v: 0.0 }];
                    decoder
                        .decode_kept(&bytes, range, windows, &mut out)
                        .unwrap();
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
        let good = encode_single_page(&[Sample { t: 1, v: 1.0 }, Sample { t: 2, v: 2.0 }]);
        assert!(decode(&good[..good.len() - 2], &mut out).is_err());
        // Paged: a directory claiming more pages or samples than a chunk
        // holds, and every truncation, are errors, not allocations or panics.
        assert!(decode(&[CODEC_PCO_PAGED, 0xff, 0xff, 0xff, 0x7f], &mut out).is_err());
        let day: Vec<Sample> = (0..5_760).map(|i| Sample { t: i, v: 1.0 }).collect();
        let good = encode(&day).unwrap();
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], &mut out).is_err(), "cut at {cut}");
        }
        let mut big = vec![CODEC_PCO_PAGED, 1, 0, 0, 0];
        encode_varint(MAX_CHUNK_SAMPLES as u64 + 1, &mut big);
        big.extend_from_slice(&[0, 0, 0]);
        assert!(decode(&big, &mut out).is_err());
        // Every single-byte corruption decodes or errs; never panics.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xa5;
            out.clear();
            let _ = decode(&bad, &mut out);
            assert!(out.len() <= MAX_CHUNK_SAMPLES);
        }
    }
}

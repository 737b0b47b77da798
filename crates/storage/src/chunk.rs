//! Gorilla-style compressed chunks of float samples: delta-of-delta
//! timestamps and XOR-encoded values in a bit stream, the encoding Prometheus
//! TSDB uses for its XOR chunks. Used for head chunks (appendable) and for the
//! `data` column of `chunks.parquet`.
//!
//! Layout: `[num_samples: u16 BE]` then the bit stream. The first sample
//! stores a zig-zag varint timestamp and the raw 64-bit value, the second a
//! varint timestamp delta and an XOR value, the rest delta-of-deltas in
//! 1/14/17/20/64-bit buckets and XOR values with a reused or new
//! leading/trailing-zero window.

use strata_model::Sample;

/// Most samples one chunk holds (the count is stored as u16).
pub const MAX_CHUNK_SAMPLES: usize = u16::MAX as usize;

#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0..=7; 0 means start a new byte).
    free: u8,
}

/// Bytes a chunk's buffer grows by: a head holds one open chunk per series,
/// and doubling would leave a quarter of it unused on average.
const GROW_BYTES: usize = 16;

impl BitWriter {
    fn new_byte(&mut self) {
        if self.bytes.len() == self.bytes.capacity() {
            self.bytes.reserve_exact(GROW_BYTES);
        }
        self.bytes.push(0);
        self.free = 8;
    }

    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.new_byte();
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    fn write_bits(&mut self, value: u64, nbits: u8) {
        let mut n = nbits;
        while n > 0 {
            if self.free == 0 {
                self.new_byte();
            }
            let take = n.min(self.free);
            let shift = n - take;
            let chunk = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= chunk << (self.free - take);
            self.free -= take;
            n -= take;
        }
    }

    fn write_uvarint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.write_bits(byte as u64, 8);
                return;
            }
            self.write_bits((byte | 0x80) as u64, 8);
        }
    }

    fn write_varint(&mut self, v: i64) {
        self.write_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, nbits: u8) -> Option<u64> {
        // Fast path: the eight bytes from the current one hold the offset
        // (under 8 bits) and any field of up to 56 bits.
        let n = nbits as usize;
        let byte = self.pos / 8;
        if (1..=56).contains(&n)
            && let Some(word) = self.bytes.get(byte..byte + 8)
        {
            let mut be = [0u8; 8];
            be.copy_from_slice(word);
            let v = (u64::from_be_bytes(be) << (self.pos % 8)) >> (64 - n);
            self.pos += n;
            return Some(v);
        }
        let mut v = 0u64;
        let mut n = nbits as usize;
        while n > 0 {
            let byte = *self.bytes.get(self.pos / 8)? as u64;
            let offset = self.pos % 8;
            let avail = 8 - offset;
            let take = n.min(avail);
            let bits = (byte >> (avail - take)) & ((1u64 << take) - 1);
            v = if take == 64 { bits } else { (v << take) | bits };
            self.pos += take;
            n -= take;
        }
        Some(v)
    }

    fn read_uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.read_bits(8)?;
            v |= (b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn read_varint(&mut self) -> Option<i64> {
        let u = self.read_uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// An appendable compressed chunk.
#[derive(Debug, Clone, Default)]
pub struct XorChunk {
    bits: BitWriter,
    num: u16,
    min_t: i64,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl XorChunk {
    /// Releases spare buffer capacity (a chunk that takes no more samples).
    pub fn shrink_to_fit(&mut self) {
        self.bits.bytes.shrink_to_fit();
    }

    /// An empty chunk.
    pub fn new() -> Self {
        Self {
            leading: 0xff,
            ..Self::default()
        }
    }

    /// Encodes samples (time order) into a new chunk.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut c = Self::new();
        for s in samples {
            c.append(s.t, s.v);
        }
        c
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.num as usize
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.num == 0
    }

    /// True when no further sample fits.
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_CHUNK_SAMPLES
    }

    /// Timestamp of the first sample (meaningless when empty).
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Timestamp of the last sample (meaningless when empty).
    pub fn max_t(&self) -> i64 {
        self.t
    }

    /// Appends a sample whose timestamp is not before the last one. Callers
    /// guarantee order; the chunk does not check it.
    pub fn append(&mut self, t: i64, v: f64) {
        let vb = v.to_bits();
        match self.num {
            0 => {
                self.bits.write_varint(t);
                self.bits.write_bits(vb, 64);
                self.min_t = t;
            }
            1 => {
                let delta = t - self.t;
                self.bits.write_varint(delta);
                self.write_value(vb);
                self.t_delta = delta;
            }
            _ => {
                let delta = t - self.t;
                let dod = delta - self.t_delta;
                match dod {
                    0 => self.bits.write_bit(false),
                    -8191..=8192 => {
                        self.bits.write_bits(0b10, 2);
                        self.bits.write_bits(dod as u64, 14);
                    }
                    -65535..=65536 => {
                        self.bits.write_bits(0b110, 3);
                        self.bits.write_bits(dod as u64, 17);
                    }
                    -524287..=524288 => {
                        self.bits.write_bits(0b1110, 4);
                        self.bits.write_bits(dod as u64, 20);
                    }
                    _ => {
                        self.bits.write_bits(0b1111, 4);
                        self.bits.write_bits(dod as u64, 64);
                    }
                }
                self.write_value(vb);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = vb;
        self.num += 1;
    }

    fn write_value(&mut self, vb: u64) {
        let xor = vb ^ self.v;
        if xor == 0 {
            self.bits.write_bit(false);
            return;
        }
        self.bits.write_bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.bits.write_bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.bits.write_bits(xor >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            self.bits.write_bit(true);
            self.bits.write_bits(leading as u64, 5);
            let sig = 64 - leading - trailing;
            // 64 significant bits are stored as 0 in 6 bits.
            self.bits.write_bits((sig & 63) as u64, 6);
            self.bits.write_bits(xor >> trailing, sig);
        }
    }

    /// The encoded bytes: sample count then bit stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.bits.bytes.len());
        out.extend_from_slice(&self.num.to_be_bytes());
        out.extend_from_slice(&self.bits.bytes);
        out
    }

    /// Decodes every sample.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.len());
        decode_into(self.num as usize, &self.bits.bytes, &mut out);
        out
    }

    /// Appends samples with `min_t <= t <= max_t` to `out`.
    pub fn samples_in(&self, min_t: i64, max_t: i64, out: &mut Vec<Sample>) {
        if self.num == 0 || self.t < min_t || self.min_t > max_t {
            return;
        }
        let start = out.len();
        decode_into(self.num as usize, &self.bits.bytes, out);
        // Samples are time-ordered: drop the head before min_t and the tail after max_t.
        let skip = out[start..].partition_point(|s| s.t < min_t);
        out.drain(start..start + skip);
        let keep = out[start..].partition_point(|s| s.t <= max_t);
        out.truncate(start + keep);
    }

    /// Size of the encoded form in bytes.
    pub fn encoded_len(&self) -> usize {
        2 + self.bits.bytes.len()
    }
}

/// Errors decoding a stored chunk.
#[derive(Debug, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct ChunkError(pub String);

/// Decodes bytes produced by [`XorChunk::to_bytes`], appending to `out`.
pub fn decode_chunk(bytes: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    if bytes.len() < 2 {
        return Err(ChunkError("shorter than its header".into()));
    }
    let num = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    let before = out.len();
    decode_into(num, &bytes[2..], out);
    if out.len() - before != num {
        return Err(ChunkError("bit stream ends before its sample count".into()));
    }
    Ok(())
}

fn decode_into(num: usize, bytes: &[u8], out: &mut Vec<Sample>) {
    let mut r = BitReader { bytes, pos: 0 };
    let (mut t, mut delta, mut v, mut leading, mut trailing) = (0i64, 0i64, 0u64, 0u8, 0u8);
    for i in 0..num {
        let ok = (|| -> Option<()> {
            match i {
                0 => {
                    t = r.read_varint()?;
                    v = r.read_bits(64)?;
                }
                1 => {
                    delta = r.read_varint()?;
                    t += delta;
                    v = read_value(&mut r, v, &mut leading, &mut trailing)?;
                }
                _ => {
                    let mut prefix = 0u8;
                    for _ in 0..4 {
                        if !r.read_bit()? {
                            break;
                        }
                        prefix += 1;
                    }
                    let dod = match prefix {
                        0 => 0,
                        1 => sign_extend(r.read_bits(14)?, 14),
                        2 => sign_extend(r.read_bits(17)?, 17),
                        3 => sign_extend(r.read_bits(20)?, 20),
                        _ => r.read_bits(64)? as i64,
                    };
                    delta += dod;
                    t += delta;
                    v = read_value(&mut r, v, &mut leading, &mut trailing)?;
                }
            }
            Some(())
        })();
        if ok.is_none() {
            return;
        }
        out.push(Sample {
            t,
            v: f64::from_bits(v),
        });
    }
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn read_value(
    r: &mut BitReader<'_>,
    prev: u64,
    leading: &mut u8,
    trailing: &mut u8,
) -> Option<u64> {
    if !r.read_bit()? {
        return Some(prev);
    }
    if r.read_bit()? {
        *leading = r.read_bits(5)? as u8;
        let mut sig = r.read_bits(6)? as u8;
        if sig == 0 {
            sig = 64;
        }
        // A corrupt stream may claim more bits than a value has.
        *trailing = 64u8.checked_sub(*leading)?.checked_sub(sig)?;
    }
    let sig = 64 - *leading - *trailing;
    let bits = r.read_bits(sig)?;
    Some(prev ^ (bits << *trailing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(samples: &[Sample]) {
        let c = XorChunk::from_samples(samples);
        let mut out = Vec::new();
        decode_chunk(&c.to_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(samples) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits());
        }
    }

    #[test]
    fn a_window_wider_than_a_value_is_an_error() {
        // Two samples; the second's value claims 31 leading zeros and 64
        // significant bits (stored as 0), 95 bits of a 64-bit value.
        let mut w = BitWriter::default();
        w.write_varint(0);
        w.write_bits(0, 64);
        w.write_varint(15_000);
        w.write_bits(0b11, 2);
        w.write_bits(31, 5);
        w.write_bits(0, 6);
        w.write_bits(u64::MAX, 64);
        let mut bytes = 2u16.to_be_bytes().to_vec();
        bytes.extend_from_slice(&w.bytes);
        let mut out = Vec::new();
        assert!(decode_chunk(&bytes, &mut out).is_err());
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn random_series_round_trip() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in [1usize, 2, 3, 7, 64, 120, 961] {
            for _ in 0..50 {
                let mut t = (next() % 1_000_000_000_000) as i64;
                let mut v = 0.0;
                let s: Vec<Sample> = (0..len)
                    .map(|_| {
                        // Regular steps, jitter, and now and then a jump
                        // past every delta-of-delta bucket.
                        t += match next() % 10 {
                            0 => (next() % 10_000_000_000) as i64,
                            1..=3 => 15_000 + (next() % 40) as i64,
                            _ => 15_000,
                        };
                        v = match next() % 6 {
                            0 => f64::from_bits(next()),
                            1 => v,
                            2 => v + 1.0,
                            3 => (next() % 1000) as f64 / 100.0,
                            4 => -v,
                            _ => v * 1.000_001,
                        };
                        Sample { t, v }
                    })
                    .collect();
                roundtrip(&s);
            }
        }
    }

    #[test]
    fn regular_scrape_series() {
        let s: Vec<Sample> = (0..500)
            .map(|i| Sample {
                t: 1_700_000_000_000 + i * 15_000,
                v: (i as f64 * 1.5).floor(),
            })
            .collect();
        roundtrip(&s);
        let c = XorChunk::from_samples(&s);
        assert!(c.encoded_len() < s.len() * 4, "{} bytes", c.encoded_len());
    }

    #[test]
    fn irregular_and_special_values() {
        let vals = [
            0.0,
            -0.0,
            f64::NAN,
            strata_model::stale_nan(),
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            42.0,
            42.0,
        ];
        let mut t = -5_000i64;
        let mut s = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            t += [1, 17, 9000, 70_000, 600_000, 10_000_000_000][i % 6];
            s.push(Sample { t, v: *v });
        }
        roundtrip(&s);
    }

    #[test]
    fn truncated_bytes_error() {
        let s: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: i,
                v: i as f64 * 0.1,
            })
            .collect();
        let bytes = XorChunk::from_samples(&s).to_bytes();
        let mut out = Vec::new();
        assert!(decode_chunk(&bytes[..bytes.len() / 2], &mut out).is_err());
        assert!(decode_chunk(&[1], &mut out).is_err());
    }

    #[test]
    fn samples_in_range() {
        let s: Vec<Sample> = (0..100)
            .map(|i| Sample {
                t: i * 10,
                v: i as f64,
            })
            .collect();
        let c = XorChunk::from_samples(&s);
        let mut out = Vec::new();
        c.samples_in(95, 200, &mut out);
        assert_eq!(out.first().map(|s| s.t), Some(100));
        assert_eq!(out.last().map(|s| s.t), Some(200));
    }
}

//! flagd's `fractional` operator: deterministic weighted bucketing.
//!
//! - [`FractionalAlgorithm::V2`] (flagd 0.16, `core/pkg/evaluator/fractional.go`): MurmurHash3 x86_32,
//!   seed 0, over the UTF-8 bucketing string; the default key is `flagKey + targetingKey`, hashed as a
//!   stream so nothing is concatenated.
//! - [`FractionalAlgorithm::V3`] (accepted ADR `fractional-non-string-rand-units.md`): the same hash over
//!   the deterministic (RFC 8949 §4.2.1) CBOR encoding of the bucketing value, integral floats encoded as
//!   integers, other floats in their shortest exact width; the default key is the array
//!   `[flagKey, targetingKey]`; a null bucketing value gives null.
//!
//! Both map the unsigned hash into `[0, totalWeight)` as `(hash * total) >> 32` and validate weights as
//! flagd does. Bad input gives null, never an error: this module does not fail.

use super::FractionalAlgorithm;
use super::value::{Arr, Kind, Obj, Val, go_int};

/// The largest weight, and the largest sum of weights (Go `math.MaxInt32`).
pub const MAX_WEIGHT_SUM: i64 = i32::MAX as i64;

/// Streaming MurmurHash3 x86_32 (seed 0 by default): feeding `a` then `b` equals hashing `a ++ b`.
#[derive(Debug, Clone)]
pub struct Murmur3 {
    h: u32,
    tail: [u8; 4],
    tail_len: usize,
    len: usize,
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

impl Murmur3 {
    /// A hasher with the given seed.
    pub fn new(seed: u32) -> Self {
        Murmur3 {
            h: seed,
            tail: [0; 4],
            tail_len: 0,
            len: 0,
        }
    }

    fn block(&mut self, k: u32) {
        self.h ^= mix_k(k);
        self.h = self
            .h
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }

    /// Feeds bytes.
    pub fn write(&mut self, mut data: &[u8]) {
        self.len += data.len();
        if self.tail_len > 0 {
            while self.tail_len < 4 {
                let Some((&b, rest)) = data.split_first() else {
                    return;
                };
                self.tail[self.tail_len] = b;
                self.tail_len += 1;
                data = rest;
            }
            self.block(u32::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut chunks = data.chunks_exact(4);
        for c in &mut chunks {
            self.block(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        for &b in chunks.remainder() {
            self.tail[self.tail_len] = b;
            self.tail_len += 1;
        }
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u32 {
        let mut h = self.h;
        if self.tail_len > 0 {
            let mut k = 0u32;
            for i in (0..self.tail_len).rev() {
                k = (k << 8) | u32::from(self.tail[i]);
            }
            h ^= mix_k(k);
        }
        // Go and the reference implementation fold in the length modulo 2^32.
        h ^= self.len as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

/// MurmurHash3 x86_32 of `data` with seed 0.
pub fn murmur3_32(data: &[u8]) -> u32 {
    let mut m = Murmur3::new(0);
    m.write(data);
    m.finish()
}

/// What `fractional` needs from the data it is evaluated against.
pub(crate) struct FracData<'s, 'a> {
    /// `$flagd.flagKey` (empty when absent).
    pub(crate) flag_key: std::borrow::Cow<'s, str>,
    /// `data["targetingKey"]` (`None` when absent).
    pub(crate) targeting_key: Option<Val<'a>>,
}

/// The outcome of choosing the bucketing key.
pub(crate) enum KeyHash {
    /// No usable key: the operator returns null.
    Null,
    /// The key's hash; `first_is_dist` when the first argument is a distribution, not the key.
    Hash { hash: u32, first_is_dist: bool },
}

/// Chooses and hashes the bucketing key from the first (evaluated) argument.
pub(crate) fn key_hash(
    first: &Val<'_>,
    data: Option<FracData<'_, '_>>,
    algorithm: FractionalAlgorithm,
) -> KeyHash {
    let Some(data) = data else {
        return KeyHash::Null;
    };
    let mut hasher = Murmur3::new(0);
    let first_is_dist = match algorithm {
        FractionalAlgorithm::V2 => {
            if let Kind::Str(key) = first.kind() {
                hasher.write(key.as_bytes());
                false
            } else {
                let Some(tk) = &data.targeting_key else {
                    return KeyHash::Null;
                };
                let Kind::Str(tk) = tk.kind() else {
                    return KeyHash::Null;
                };
                if tk.is_empty() {
                    return KeyHash::Null;
                }
                hasher.write(data.flag_key.as_bytes());
                hasher.write(tk.as_bytes());
                !first.is_nil()
            }
        }
        FractionalAlgorithm::V3 => match first.kind() {
            Kind::Arr(_) => {
                let Some(tk) = &data.targeting_key else {
                    return KeyHash::Null;
                };
                let Kind::Str(tk) = tk.kind() else {
                    return KeyHash::Null;
                };
                hasher.write(&[0x82]);
                cbor_text(&mut hasher, &data.flag_key);
                cbor_text(&mut hasher, tk);
                true
            }
            Kind::Null => return KeyHash::Null,
            k => {
                cbor(&mut hasher, k);
                false
            }
        },
    };
    KeyHash::Hash {
        hash: hasher.finish(),
        first_is_dist,
    }
}

/// Evaluates `fractional` over its already-evaluated arguments. `data` is `None` when the data is not an
/// object (flagd: null).
pub(crate) fn fractional<'a>(
    args: &[Val<'a>],
    data: Option<FracData<'_, 'a>>,
    algorithm: FractionalAlgorithm,
) -> Val<'a> {
    let Some(first) = args.first() else {
        return Val::Null;
    };
    match key_hash(first, data, algorithm) {
        KeyHash::Null => Val::Null,
        KeyHash::Hash {
            hash,
            first_is_dist,
        } => pick(hash, if first_is_dist { args } else { &args[1..] }),
    }
}

/// Validates the distributions and returns the variant the hash falls into (null on bad input).
fn pick<'a>(hash: u32, dists: &[Val<'a>]) -> Val<'a> {
    let Some(total) = total_weight(dists) else {
        return Val::Null;
    };
    if total == 0 {
        return Val::Null;
    }
    let bucket = (u64::from(hash) * total) >> 32;
    let mut end = 0u64;
    for dist in dists {
        let Kind::Arr(arr) = dist.kind() else {
            return Val::Null;
        };
        end += weight(arr).unwrap_or(0);
        if bucket < end {
            return arr.get(0);
        }
    }
    Val::Null
}

/// Constant distributions, validated and summed once at compile time.
#[derive(Debug, Clone)]
pub(crate) enum PreDists {
    /// flagd rejects them (or they sum to 0): the operator always returns null.
    Invalid,
    /// The variants with their cumulative upper bounds, and the total weight.
    Valid {
        variants: Vec<(serde_json::Value, u64)>,
        total: u64,
    },
}

impl PreDists {
    /// Validates constant distributions.
    pub(crate) fn new(dists: &[serde_json::Value]) -> PreDists {
        let vals: Vec<Val<'_>> = dists.iter().map(Val::Json).collect();
        let Some(total) = total_weight(&vals) else {
            return PreDists::Invalid;
        };
        if total == 0 {
            return PreDists::Invalid;
        }
        let mut end = 0;
        let mut variants = Vec::with_capacity(dists.len());
        for dist in &vals {
            if let Kind::Arr(arr) = dist.kind() {
                end += weight(arr).unwrap_or(0);
                variants.push((
                    arr.get(0).to_value().unwrap_or(serde_json::Value::Null),
                    end,
                ));
            }
        }
        PreDists::Valid { variants, total }
    }

    /// The variant a hash falls into.
    pub(crate) fn pick(&self, hash: u32) -> Val<'_> {
        let PreDists::Valid { variants, total } = self else {
            return Val::Null;
        };
        let bucket = (u64::from(hash) * total) >> 32;
        variants
            .iter()
            .find(|(_, end)| bucket < *end)
            .map_or(Val::Null, |(v, _)| Val::Json(v))
    }
}

/// Validates every distribution as flagd does and sums the weights; `None` on bad input.
pub(crate) fn total_weight(dists: &[Val<'_>]) -> Option<u64> {
    let mut total: i64 = 0;
    for dist in dists {
        let Kind::Arr(arr) = dist.kind() else {
            return None;
        };
        if arr.len() == 0 {
            return None;
        }
        match arr.kind_at(0) {
            Kind::Str(_) | Kind::Bool(_) | Kind::Num(_) | Kind::Null => {}
            _ => return None,
        }
        total += i64::try_from(weight(arr)?).ok()?;
    }
    (total <= MAX_WEIGHT_SUM).then_some(total as u64)
}

/// One distribution's weight: default 1, null counts as 1, integral float64 only, at most MaxInt32,
/// negative clamped to 0.
pub(crate) fn weight(arr: Arr<'_, '_>) -> Option<u64> {
    if arr.len() < 2 {
        return Some(1);
    }
    match arr.kind_at(1) {
        Kind::Null => Some(1),
        Kind::Num(f) => {
            let w = go_int(f);
            if f != w as f64 || w > MAX_WEIGHT_SUM {
                return None;
            }
            Some(w.max(0) as u64)
        }
        _ => None,
    }
}

fn cbor_head(h: &mut Murmur3, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        h.write(&[m | n as u8]);
    } else if n <= 0xff {
        h.write(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        let b = (n as u16).to_be_bytes();
        h.write(&[m | 25, b[0], b[1]]);
    } else if n <= 0xffff_ffff {
        h.write(&[m | 26]);
        h.write(&(n as u32).to_be_bytes());
    } else {
        h.write(&[m | 27]);
        h.write(&n.to_be_bytes());
    }
}

fn cbor_text(h: &mut Murmur3, s: &str) {
    cbor_head(h, 3, s.len() as u64);
    h.write(s.as_bytes());
}

fn cbor_int(h: &mut Murmur3, i: i128) {
    if i >= 0 {
        cbor_head(h, 0, i as u64);
    } else {
        cbor_head(h, 1, (-1 - i) as u64);
    }
}

/// The exact IEEE half-precision bits of `f`, if it has them.
fn f16_bits(f: f64) -> Option<u16> {
    let sign = if f.is_sign_negative() { 0x8000u16 } else { 0 };
    let a = f.abs();
    if a.is_nan() {
        return Some(0x7e00);
    }
    if a.is_infinite() {
        return Some(sign | 0x7c00);
    }
    // Subnormal halves are multiples of 2^-24 below 2^-14.
    if a < 6.103_515_625e-5 {
        let m = a * 16_777_216.0;
        return (m.fract() == 0.0).then_some(sign | m as u16);
    }
    let bits = a.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mantissa = bits & ((1u64 << 52) - 1);
    if exp > 15 || mantissa & ((1u64 << 42) - 1) != 0 {
        return None;
    }
    Some(sign | (((exp + 15) as u16) << 10) | (mantissa >> 42) as u16)
}

fn cbor_float(h: &mut Murmur3, f: f64) {
    if let Some(bits) = f16_bits(f) {
        let b = bits.to_be_bytes();
        h.write(&[0xf9, b[0], b[1]]);
    } else if f64::from(f as f32) == f {
        h.write(&[0xfa]);
        h.write(&(f as f32).to_bits().to_be_bytes());
    } else {
        h.write(&[0xfb]);
        h.write(&f.to_bits().to_be_bytes());
    }
}

fn cbor_number(h: &mut Murmur3, f: f64) {
    // ADR: integral values within [-2^63, 2^64) are integers (so -0.0 is 0); the rest stay floats.
    if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f)
    {
        cbor_int(h, f as i128);
    } else {
        cbor_float(h, f);
    }
}

/// Feeds the deterministic CBOR encoding of a value into the hasher.
fn cbor(h: &mut Murmur3, k: Kind<'_, '_>) {
    match k {
        Kind::Null => h.write(&[0xf6]),
        Kind::Bool(false) => h.write(&[0xf4]),
        Kind::Bool(true) => h.write(&[0xf5]),
        Kind::Num(f) => cbor_number(h, f),
        Kind::Int(i) => cbor_int(h, i128::from(i)),
        Kind::Str(s) => cbor_text(h, s),
        Kind::Arr(a) => {
            cbor_head(h, 4, a.len() as u64);
            for i in 0..a.len() {
                cbor(h, a.kind_at(i));
            }
        }
        Kind::Obj(m) => {
            cbor_head(h, 5, m.len() as u64);
            // Text keys sort by encoded bytes: shorter first, then bytewise.
            match m {
                Obj::Json(m) => {
                    let mut keys: Vec<(&String, &serde_json::Value)> = m.iter().collect();
                    keys.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
                    for (k, v) in keys {
                        cbor_text(h, k);
                        cbor(h, super::value::json_kind(v));
                    }
                }
                Obj::Own(m) => {
                    let mut keys: Vec<(&String, &Val<'_>)> = m.iter().collect();
                    keys.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
                    for (k, v) in keys {
                        cbor_text(h, k);
                        cbor(h, v.kind());
                    }
                }
            }
        }
    }
}

/// The V3 bucketing hash of a value (for tests and tools).
#[cfg(test)]
pub(crate) fn v3_hash(v: &serde_json::Value) -> u32 {
    let mut h = Murmur3::new(0);
    cbor(&mut h, super::value::json_kind(v));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_published_vectors() {
        // SMHasher / Wikipedia vectors for MurmurHash3_x86_32.
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(Murmur3::new(1).finish(), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
        assert_eq!(murmur3_32(&[0x21, 0x43, 0x65, 0x87]), 0xf55b_516b);
        assert_eq!(murmur3_32(&[0x21, 0x43, 0x65]), 0x7e4a_8634);
        assert_eq!(murmur3_32(&[0x21, 0x43]), 0xa0f7_b07a);
        assert_eq!(murmur3_32(&[0x21]), 0x7266_1cf4);
    }

    #[test]
    fn murmur3_hash_edges_from_the_testbed() {
        assert_eq!(murmur3_32(b"ejOoVL"), 0);
        assert_eq!(murmur3_32(b"bY9fO-"), 1);
        assert_eq!(murmur3_32(b"SI7p-"), 0x7fff_ffff);
        assert_eq!(murmur3_32(b"6LvT0"), 0x8000_0000);
        assert_eq!(murmur3_32(b"ceQdGm"), 0xffff_ffff);
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data = b"fractional-flag-shorthandjon@company.com";
        for split in 0..data.len() {
            let mut m = Murmur3::new(0);
            m.write(&data[..split]);
            m.write(&data[split..]);
            assert_eq!(m.finish(), murmur3_32(data), "split at {split}");
        }
    }

    #[test]
    fn half_precision_detection() {
        assert_eq!(f16_bits(1.5), Some(0x3e00));
        assert_eq!(f16_bits(65504.0), Some(0x7bff));
        assert_eq!(f16_bits(5.960_464_477_539_063e-8), Some(0x0001));
        assert_eq!(f16_bits(6.103_515_625e-5), Some(0x0400));
        assert_eq!(f16_bits(1.1), None);
        assert_eq!(f16_bits(65536.0), None);
    }
}

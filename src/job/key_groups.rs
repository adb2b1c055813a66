//! Key groups: how keyed records and keyed state are spread over a keyed stage's subtasks, as
//! Flink's `KeyGroupRangeAssignment` does.
//!
//! A keyed stage has `max_parallelism` key groups (`pipeline.max-parallelism`; -1 derives it from
//! the parallelism). A key belongs to one key group for the life of the job
//! ([`assign_to_key_group`]); each subtask owns one contiguous [`KeyGroupRange`]
//! ([`key_group_range_for_operator`]), and [`operator_index_for_key_group`] is its inverse. State
//! is snapshotted per key group, so a later rescale moves whole groups, never single keys.
//!
//! The key hash must be the same in every process, on every machine and with every Rust version
//! (a restored snapshot and a sender on another TaskManager must agree with it), so it is
//! MurmurHash3 (x86, 32 bit, seed 0) of the key's serialized bytes, written out here, not `std`'s
//! `Hash`, which is neither stable nor specified. Flink hashes `key.hashCode()` with
//! `MathUtils.murmurHash`; we feed that same finalisation our byte hash instead.

/// The key naming the maximum parallelism (the number of key groups).
pub const MAX_PARALLELISM_KEY: &str = "pipeline.max-parallelism";

/// The smallest derived maximum parallelism, leaving room to scale up when none is configured
/// (Flink's `DEFAULT_LOWER_BOUND_MAX_PARALLELISM`).
pub const DEFAULT_LOWER_BOUND_MAX_PARALLELISM: u32 = 1 << 7;

/// The largest maximum parallelism, inclusive (Flink's `UPPER_BOUND_MAX_PARALLELISM`, 2^15).
pub const UPPER_BOUND_MAX_PARALLELISM: u32 = 1 << 15;

/// A maximum parallelism that cannot be used: one line naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaxParallelismError {
    #[error(
        "{MAX_PARALLELISM_KEY}: {0} is out of range; use -1 (derived from the parallelism) or 1..={UPPER_BOUND_MAX_PARALLELISM}"
    )]
    OutOfRange(i64),
    #[error(
        "{MAX_PARALLELISM_KEY}: {max_parallelism} is below the job's parallelism {parallelism}; every subtask needs at least one key group"
    )]
    BelowParallelism {
        max_parallelism: u32,
        parallelism: u32,
    },
    #[error(
        "parallelism {0} is out of range for keyed state ({MAX_PARALLELISM_KEY} allows at most {UPPER_BOUND_MAX_PARALLELISM})"
    )]
    ParallelismOutOfRange(u32),
}

/// The maximum parallelism derived when none is configured: 1.5 × `parallelism` rounded up to
/// a power of two, within 128..=32768 (Flink's `computeDefaultMaxParallelism`).
pub fn compute_default_max_parallelism(parallelism: u32) -> u32 {
    let wanted = u64::from(parallelism) + u64::from(parallelism / 2);
    wanted.next_power_of_two().clamp(
        u64::from(DEFAULT_LOWER_BOUND_MAX_PARALLELISM),
        u64::from(UPPER_BOUND_MAX_PARALLELISM),
    ) as u32
}

/// The number of key groups of a job: `configured` (`pipeline.max-parallelism`; -1 = derived
/// with [`compute_default_max_parallelism`]) checked against `parallelism`.
pub fn max_parallelism(configured: i64, parallelism: u32) -> Result<u32, MaxParallelismError> {
    if parallelism == 0 || parallelism > UPPER_BOUND_MAX_PARALLELISM {
        return Err(MaxParallelismError::ParallelismOutOfRange(parallelism));
    }
    let max = match configured {
        -1 => compute_default_max_parallelism(parallelism),
        n if (1..=i64::from(UPPER_BOUND_MAX_PARALLELISM)).contains(&n) => n as u32,
        n => return Err(MaxParallelismError::OutOfRange(n)),
    };
    if max < parallelism {
        return Err(MaxParallelismError::BelowParallelism {
            max_parallelism: max,
            parallelism,
        });
    }
    Ok(max)
}

/// The key groups `start..=end` (inclusive, as Flink's `KeyGroupRange`). `end < start` is the
/// empty range; ranges of [`key_group_range_for_operator`] are never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    pub start: u32,
    pub end: u32,
}

impl KeyGroupRange {
    /// No key groups (Flink's `EMPTY_KEY_GROUP_RANGE`).
    pub const EMPTY: KeyGroupRange = KeyGroupRange { start: 1, end: 0 };

    pub fn new(start: u32, end: u32) -> KeyGroupRange {
        KeyGroupRange { start, end }
    }

    pub fn contains(&self, key_group: u32) -> bool {
        (self.start..=self.end).contains(&key_group)
    }

    /// The number of key groups.
    pub fn len(&self) -> u32 {
        if self.end < self.start {
            0
        } else {
            self.end - self.start + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key groups in order.
    pub fn iter(&self) -> std::ops::RangeInclusive<u32> {
        self.start..=self.end
    }

    /// The position of `key_group` in this range, if it is in it.
    pub fn index_of(&self, key_group: u32) -> Option<usize> {
        self.contains(key_group)
            .then(|| (key_group - self.start) as usize)
    }

    /// The key groups in both ranges; `None` if they share none.
    pub fn intersection(&self, other: &KeyGroupRange) -> Option<KeyGroupRange> {
        let common = KeyGroupRange::new(self.start.max(other.start), self.end.min(other.end));
        (!common.is_empty()).then_some(common)
    }
}

impl IntoIterator for KeyGroupRange {
    type Item = u32;
    type IntoIter = std::ops::RangeInclusive<u32>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key groups {}..={}", self.start, self.end)
    }
}

/// The key groups subtask `index` of `parallelism` owns, out of `max_parallelism` (Flink's
/// `computeKeyGroupRangeForOperatorIndex`): contiguous, never empty, together exactly
/// `0..max_parallelism`, sizes differing by at most one.
///
/// Expects `1 <= parallelism <= max_parallelism` (as [`max_parallelism`] ensures) and
/// `index < parallelism`; the arithmetic is in 64 bits, so nothing overflows either way.
pub fn key_group_range_for_operator(
    max_parallelism: u32,
    parallelism: u32,
    index: u32,
) -> KeyGroupRange {
    debug_assert!(0 < parallelism && parallelism <= max_parallelism && index < parallelism);
    let (max, par, i) = (
        u64::from(max_parallelism),
        u64::from(parallelism.max(1)),
        u64::from(index),
    );
    let start = (i * max).div_ceil(par);
    let end = ((i + 1) * max).saturating_sub(1) / par;
    KeyGroupRange::new(start as u32, end as u32)
}

/// The subtask of `parallelism` that owns `key_group` (Flink's `computeOperatorIndexForKeyGroup`;
/// the inverse of [`key_group_range_for_operator`]).
#[inline]
pub fn operator_index_for_key_group(max_parallelism: u32, parallelism: u32, key_group: u32) -> u32 {
    debug_assert!(key_group < max_parallelism);
    let scaled = u64::from(key_group) * u64::from(parallelism);
    // The same value as the division, without one for the usual power of two.
    if max_parallelism.is_power_of_two() {
        (scaled >> max_parallelism.trailing_zeros()) as u32
    } else {
        (scaled / u64::from(max_parallelism.max(1))) as u32
    }
}

/// The key group of a key, given its serialized bytes: Flink's `computeKeyGroupForKeyHash` of
/// our stable [`murmur3_32`] hash.
///
/// # Panics
/// If `max_parallelism` is 0 (it comes from [`max_parallelism`], which never returns 0).
#[inline]
pub fn assign_to_key_group(key_bytes: &[u8], max_parallelism: u32) -> u32 {
    let hash = flink_murmur_hash(murmur3_32(key_bytes, 0) as i32);
    // The same value as `%`, without a division for the usual power of two (128 by default).
    if max_parallelism.is_power_of_two() {
        hash & (max_parallelism - 1)
    } else {
        hash % max_parallelism
    }
}

/// The subtask of `parallelism` a key is routed to (Flink's `assignKeyToParallelOperator`).
pub fn assign_key_to_operator(key_bytes: &[u8], max_parallelism: u32, parallelism: u32) -> u32 {
    operator_index_for_key_group(
        max_parallelism,
        parallelism,
        assign_to_key_group(key_bytes, max_parallelism),
    )
}

/// Flink's `MathUtils.murmurHash(int)`: MurmurHash3 of one 4-byte block, folded to a
/// non-negative `u32` as Flink folds its `int` (`|h|`, with `i32::MIN` → 0), so that `% max`
/// gives Flink's key group for the same 32-bit key hash.
#[inline]
pub fn flink_murmur_hash(code: i32) -> u32 {
    let h = fmix32(mix_h1(0, code as u32) ^ 4) as i32;
    if h == i32::MIN { 0 } else { h.unsigned_abs() }
}

/// MurmurHash3 x86 32-bit (Austin Appleby's `MurmurHash3_x86_32`): blocks read little-endian,
/// so the value is the same on every platform.
#[inline]
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let mut h1 = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        h1 = mix_h1(h1, k);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        h1 ^= mix_k1(k);
    }
    fmix32(h1 ^ data.len() as u32)
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

fn mix_k1(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

fn mix_h1(h1: u32, k: u32) -> u32 {
    (h1 ^ mix_k1(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// The finalisation mix (Flink's `MathUtils.bitMix`).
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_max_parallelism_is_flinks() {
        assert_eq!(compute_default_max_parallelism(1), 128);
        assert_eq!(compute_default_max_parallelism(2), 128);
        assert_eq!(compute_default_max_parallelism(3), 128);
        // 85 + 42 = 127 still fits; 86 + 43 = 129 rounds up to 256.
        assert_eq!(compute_default_max_parallelism(85), 128);
        assert_eq!(compute_default_max_parallelism(86), 256);
        assert_eq!(compute_default_max_parallelism(100), 256);
        assert_eq!(compute_default_max_parallelism(128), 256);
        assert_eq!(compute_default_max_parallelism(1000), 2048);
        assert_eq!(compute_default_max_parallelism(21845), 32768);
        assert_eq!(compute_default_max_parallelism(30000), 32768);
        assert_eq!(compute_default_max_parallelism(32768), 32768);
    }

    #[test]
    fn max_parallelism_resolves_and_names_the_key() {
        assert_eq!(max_parallelism(-1, 2), Ok(128));
        assert_eq!(max_parallelism(-1, 100), Ok(256));
        assert_eq!(max_parallelism(4, 4), Ok(4));
        assert_eq!(max_parallelism(32768, 1), Ok(32768));
        for bad in [0, -2, 32769, i64::MAX, i64::MIN] {
            let e = max_parallelism(bad, 1).unwrap_err();
            assert_eq!(e, MaxParallelismError::OutOfRange(bad));
            let m = e.to_string();
            assert!(
                m.starts_with("pipeline.max-parallelism: ") && m.contains("-1"),
                "{m}"
            );
        }
        let m = max_parallelism(3, 4).unwrap_err().to_string();
        assert!(
            m.contains("pipeline.max-parallelism: 3 is below") && m.contains("parallelism 4"),
            "{m}"
        );
        assert!(max_parallelism(-1, 0).is_err());
        assert!(max_parallelism(-1, 32769).is_err());
    }

    #[test]
    fn ranges_partition_the_key_groups_and_invert_operator_index() {
        let mut pairs = Vec::new();
        for max in [1, 2, 3, 7, 10, 128, 129, 256, 1000, 4096, 32768] {
            for par in [1, 2, 3, 4, 5, 7, 8, 13, 64, 100, 127, 128, 1000, 32768] {
                if par <= max {
                    pairs.push((max, par));
                }
            }
        }
        for (max, par) in pairs {
            let mut next = 0;
            for index in 0..par {
                let r = key_group_range_for_operator(max, par, index);
                assert_eq!(r.start, next, "max {max} par {par} index {index}");
                assert!(!r.is_empty(), "max {max} par {par} index {index}");
                let (small, big) = (max / par, max.div_ceil(par));
                assert!(
                    r.len() == small || r.len() == big,
                    "{r} of max {max} par {par}"
                );
                for kg in r {
                    assert_eq!(operator_index_for_key_group(max, par, kg), index);
                }
                next = r.end + 1;
            }
            assert_eq!(
                next, max,
                "max {max} par {par}: not every key group covered"
            );
        }
        // Flink's own numbers: 128 groups over 3 subtasks.
        assert_eq!(
            key_group_range_for_operator(128, 3, 0),
            KeyGroupRange::new(0, 42)
        );
        assert_eq!(
            key_group_range_for_operator(128, 3, 1),
            KeyGroupRange::new(43, 85)
        );
        assert_eq!(
            key_group_range_for_operator(128, 3, 2),
            KeyGroupRange::new(86, 127)
        );
    }

    #[test]
    fn key_group_range_basics() {
        let r = KeyGroupRange::new(3, 5);
        assert_eq!(r.len(), 3);
        assert!(r.contains(3) && r.contains(5) && !r.contains(2) && !r.contains(6));
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(r.to_string(), "key groups 3..=5");
        assert!(KeyGroupRange::EMPTY.is_empty());
        assert_eq!(KeyGroupRange::EMPTY.iter().count(), 0);
        assert!(!KeyGroupRange::EMPTY.contains(0));
        assert_eq!(KeyGroupRange::new(7, 7).len(), 1);
    }

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        // MurmurHash3_x86_32's published vectors (also what Python's mmh3 and Guava give).
        let cases: &[(&[u8], u32, u32)] = &[
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"", 0xffff_ffff, 0x81f1_6f39),
            (&[0, 0, 0, 0], 0, 0x2362_f9de),
            (&[0, 0, 0], 0, 0x85f0_b427),
            (&[0, 0], 0, 0x30f4_c306),
            (&[0], 0, 0x514e_28b7),
            (&[0xff, 0xff, 0xff, 0xff], 0, 0x7629_3b50),
            (&[0x21, 0x43, 0x65, 0x87], 0, 0xf55b_516b),
            (&[0x21, 0x43, 0x65, 0x87], 0x5082_edee, 0x2362_f9de),
            (&[0x21, 0x43, 0x65], 0, 0x7e4a_8634),
            (&[0x21, 0x43], 0, 0xa0f7_b07a),
            (&[0x21], 0, 0x7266_1cf4),
            (b"aaaa", 0x9747_b28c, 0x5a97_808a),
            (b"aaa", 0x9747_b28c, 0x283e_0130),
            (b"aa", 0x9747_b28c, 0x5d21_1726),
            (b"a", 0x9747_b28c, 0x7fa0_9ea6),
            (b"abcd", 0x9747_b28c, 0xf047_8627),
            (b"abc", 0x9747_b28c, 0xc84a_62dd),
            (b"ab", 0x9747_b28c, 0x7487_5592),
            (b"Hello, world!", 0x9747_b28c, 0x2488_4cba),
            (
                b"The quick brown fox jumps over the lazy dog",
                0,
                0x2e4f_f723,
            ),
            (
                b"The quick brown fox jumps over the lazy dog",
                0x9747_b28c,
                0x2fa8_26cd,
            ),
            (b"hello", 0, 0x248b_fa47),
            ("\u{fc}ber".as_bytes(), 0, 0xa006_a72c),
        ];
        for (data, seed, want) in cases {
            assert_eq!(murmur3_32(data, *seed), *want, "{data:?} seed {seed:#x}");
        }
    }

    #[test]
    fn flinks_int_hash_is_murmur3_of_the_int_folded() {
        // MathUtils.murmurHash(code) is MurmurHash3 of code's 4 little-endian bytes, |h|.
        for code in [0, 1, 2, -1, 42, i32::MAX, i32::MIN, 0x8765_4321_u32 as i32] {
            let h = murmur3_32(&code.to_le_bytes(), 0) as i32;
            let want = if h == i32::MIN { 0 } else { h.unsigned_abs() };
            assert_eq!(flink_murmur_hash(code), want, "{code}");
        }
        // 0xf55b516b (the vector above) is negative as an int: Flink returns its negation.
        assert_eq!(flink_murmur_hash(0x8765_4321_u32 as i32), 0x0aa4_ae95);
        assert!((0..100_000).all(|c| (flink_murmur_hash(c) as i32) >= 0));
    }

    #[test]
    fn keys_spread_evenly_over_the_key_groups() {
        let (max, keys) = (128u32, 100_000u32);
        let mut groups = vec![0u32; max as usize];
        for k in 0..keys {
            let kg = assign_to_key_group(format!("word-{k}").as_bytes(), max);
            groups[kg as usize] += 1;
        }
        let mean = keys / max; // 781
        for (kg, n) in groups.iter().enumerate() {
            // A binomial's spread is about sqrt(781) = 28; 20% is more than 5 of those.
            assert!(
                n.abs_diff(mean) < mean / 5,
                "key group {kg}: {n} keys, mean {mean}"
            );
        }
        // Stable: the same bytes always land in the same group.
        assert_eq!(
            assign_to_key_group(b"hello", max),
            assign_to_key_group(b"hello", max)
        );
        assert_eq!(
            assign_to_key_group(b"hello", 128),
            flink_murmur_hash(0x248b_fa47_u32 as i32) % 128
        );
        let op = assign_key_to_operator(b"hello", 128, 3);
        assert!(
            key_group_range_for_operator(128, 3, op).contains(assign_to_key_group(b"hello", 128))
        );
    }
}

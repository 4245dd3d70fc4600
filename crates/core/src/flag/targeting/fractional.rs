//! flagd's `fractional` bucketing, as flagd (Go) does it today (the
//! testbed's `@fractional-v2`): MurmurHash3 x86_32 with seed 0 over the UTF-8
//! bytes of the bucketing value, then `bucket = (hash × Σweights) >> 32`, and
//! the first variant whose running sum of weights exceeds the bucket.

/// MurmurHash3, x86, 32 bits.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    // The length is mixed in modulo 2^32, as the reference does.
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// [`bucket`] of the concatenation `prefix + value`, without making it
/// (flag key + targeting key, the default bucketing value) when it is short.
pub fn bucket_of(prefix: &str, value: &str, weights: &[u32]) -> Option<(u64, usize)> {
    let len = prefix.len() + value.len();
    let mut buf = [0u8; 256];
    if len <= buf.len() {
        buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
        buf[prefix.len()..len].copy_from_slice(value.as_bytes());
        bucket_bytes(&buf[..len], weights)
    } else {
        bucket(&format!("{prefix}{value}"), weights)
    }
}

/// The point `value` hashes to in `0..Σweights` and the index of the weight
/// it falls into: `None` when the weights sum to 0 (flagd then answers as if
/// the rule gave nothing).
pub fn bucket(value: &str, weights: &[u32]) -> Option<(u64, usize)> {
    bucket_bytes(value.as_bytes(), weights)
}

fn bucket_bytes(value: &[u8], weights: &[u32]) -> Option<(u64, usize)> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let hash = u64::from(murmur3_32(value, 0));
    let point = (hash * total) >> 32;
    let mut running = 0u64;
    weights
        .iter()
        .position(|w| {
            running += u64::from(*w);
            running > point
        })
        .map(|i| (point, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
    }

    /// The testbed's `@fractional-v2` rows (evaluator/gherkin/fractional.feature,
    /// testbed v3.9.0): flag key + value, four variants of weight 25.
    #[test]
    fn buckets_match_flagd_testbed_v2() {
        let suits = ["clubs", "diamonds", "hearts", "spades"];
        for (name, want) in [
            ("jack", "hearts"),
            ("queen", "spades"),
            ("ten", "clubs"),
            ("nine", "diamonds"),
            ("3", "clubs"),
        ] {
            let (_, i) = bucket(&format!("fractional-flag{name}"), &[25; 4]).unwrap();
            assert_eq!(suits[i], want, "{name}");
        }
        for (key, want) in [("jon@company.com", 0), ("jane@company.com", 1)] {
            let i = bucket(&format!("fractional-flag-shorthand{key}"), &[1, 1]).map(|b| b.1);
            assert_eq!(i, Some(want), "{key}");
        }
    }

    #[test]
    fn zero_weights_give_no_bucket_and_zero_weight_variants_are_never_chosen() {
        assert_eq!(bucket("x", &[0, 0]), None);
        for i in 0..1000 {
            assert_eq!(bucket(&format!("k{i}"), &[0, 3, 0]).map(|b| b.1), Some(1));
        }
    }
}

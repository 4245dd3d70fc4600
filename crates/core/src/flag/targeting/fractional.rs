//! flagd's `fractional` bucketing. `v2`, as flagd (Go) does it today (the
//! testbed's `@fractional-v2`): MurmurHash3 x86_32 with seed 0 over the UTF-8
//! bytes of the bucketing value, then `bucket = (hash × Σweights) >> 32`, and
//! the first variant whose running sum of weights exceeds the bucket. `v3`
//! (flagd's ADR "fractional non-string rand units", the testbed's
//! `@fractional-v3`): the same hash and buckets over the value's
//! deterministic CBOR encoding ([`cbor`]), so a bucketing value may be any
//! JSON value but null, and the default one is the array
//! `[flagKey, targetingKey]`.

use serde_json::Value;

/// Which `fractional` bucketing a server serves (`fractional_bucketing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucketing {
    /// The UTF-8 of a string bucketing value, or of flag key + targeting
    /// key: flagd (Go) and the JavaScript flagd-core 4.0.x today.
    #[default]
    V2,
    /// The deterministic CBOR of any bucketing value, or of
    /// `[flagKey, targetingKey]`: the Python provider 0.6.x (flagd-core
    /// 2.0.0) and the testbed's `@fractional-v3`.
    V3,
}

impl Bucketing {
    /// `v2` or `v3`.
    pub fn parse(s: &str) -> Option<Bucketing> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v2" | "2" => Some(Bucketing::V2),
            "v3" | "3" => Some(Bucketing::V3),
            _ => None,
        }
    }

    /// `v2` or `v3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucketing::V2 => "v2",
            Bucketing::V3 => "v3",
        }
    }
}

/// Appends the deterministic CBOR encoding of `v` (RFC 8949 §4.2.1, with
/// flagd's number normalisation) to `out`: a number without a fractional
/// part in `[-2^63, 2^64)` is an integer (`-0.0` is `0`), any other in the
/// shortest float that holds it exactly (half, single, double); map keys in
/// the bytewise order of their encodings.
pub fn cbor(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::String(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                head(out, 0, u);
            } else if let Some(i) = n.as_i64() {
                // Negative: major type 1 holds -1 - i.
                head(out, 1, !(i as u64));
            } else {
                number(out, n.as_f64().unwrap_or(f64::NAN));
            }
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for i in items {
                cbor(i, out);
            }
        }
        Value::Object(m) => {
            let mut entries: Vec<(Vec<u8>, &Value)> = m
                .iter()
                .map(|(k, v)| {
                    let mut key = Vec::with_capacity(k.len() + 9);
                    head(&mut key, 3, k.len() as u64);
                    key.extend_from_slice(k.as_bytes());
                    (key, v)
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                out.extend_from_slice(&k);
                cbor(v, out);
            }
        }
    }
}

/// A float, normalised: integral values in range as integers, the rest in
/// the shortest exact float encoding.
fn number(out: &mut Vec<u8>, f: f64) {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if f.fract() == 0.0 && (-TWO_63..TWO_64).contains(&f) {
        if f >= 0.0 {
            head(out, 0, f as u64);
        } else {
            head(out, 1, !(f as i64 as u64));
        }
        return;
    }
    let single = f as f32;
    if f64::from(single) != f && !f.is_nan() {
        out.push(0xfb);
        out.extend_from_slice(&f.to_bits().to_be_bytes());
    } else if let Some(half) = half_of(single) {
        out.push(0xf9);
        out.extend_from_slice(&half.to_be_bytes());
    } else {
        out.push(0xfa);
        out.extend_from_slice(&single.to_bits().to_be_bytes());
    }
}

/// `x` as an IEEE half, when it holds it exactly.
fn half_of(x: f32) -> Option<u16> {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        // Infinities and NaN (undefined in JSON): the half's own.
        return Some(sign | 0x7c00 | if mant == 0 { 0 } else { 0x200 });
    }
    if exp == 0 {
        // Zero (a single's subnormals are below every half).
        return (mant == 0).then_some(sign);
    }
    let e = exp - 127;
    if (-14..=15).contains(&e) {
        return (mant & 0x1fff == 0)
            .then(|| sign | (((e + 15) as u16) << 10) | (mant >> 13) as u16);
    }
    if (-24..-14).contains(&e) {
        let full = 0x80_0000 | mant;
        let shift = (-(e + 1)) as u32;
        return (full & ((1 << shift) - 1) == 0).then(|| sign | (full >> shift) as u16);
    }
    None
}

/// A CBOR head: the major type and its argument, in the fewest bytes.
fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// `v3`'s bucket of a bucketing value (not null: flagd answers no variant).
pub fn bucket_v3(value: &Value, weights: &[u32]) -> Option<(u64, usize)> {
    let mut bytes = Vec::with_capacity(64);
    cbor(value, &mut bytes);
    bucket_bytes(&bytes, weights)
}

/// `v3`'s bucket of the default bucketing value, `[flagKey, targetingKey]`.
pub fn bucket_v3_of(flag_key: &str, targeting_key: &str, weights: &[u32]) -> Option<(u64, usize)> {
    let mut bytes = Vec::with_capacity(flag_key.len() + targeting_key.len() + 19);
    head(&mut bytes, 4, 2);
    for s in [flag_key, targeting_key] {
        head(&mut bytes, 3, s.len() as u64);
        bytes.extend_from_slice(s.as_bytes());
    }
    bucket_bytes(&bytes, weights)
}

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

    /// `fractional-basic-flag` of testbed v3.9.0: `{"var": "hashing_input"}`
    /// over 25 buckets of weight 4.
    fn basic(input: Value) -> String {
        let (_, i) = bucket_v3(&input, &[4; 25]).unwrap();
        format!("bucket{}", i + 1)
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// The testbed's `@fractional-v3` rows (gherkin/targeting.feature, testbed
    /// v3.9.0), each input as its step gives it to the provider.
    #[test]
    fn buckets_match_flagd_testbed_v3() {
        let rows: &[(&str, &str)] = &[
            // basic types
            ("true", "bucket5"),
            ("false", "bucket1"),
            ("\"user1\"", "bucket22"),
            ("\"user2\"", "bucket16"),
            ("123", "bucket20"),
            ("456", "bucket12"),
            ("1.23", "bucket14"),
            ("4.56", "bucket18"),
            ("\"123\"", "bucket22"),
            ("\"true\"", "bucket24"),
            ("\"null\"", "bucket8"),
            ("\"1.23\"", "bucket4"),
            ("0", "bucket8"),
            // float mapping and zeros
            ("1.0", "bucket23"),
            ("1", "bucket23"),
            ("1.0000000000000001", "bucket23"),
            ("-2.0", "bucket12"),
            ("-2", "bucket12"),
            ("9007199254740992.0", "bucket10"),
            ("9007199254740992", "bucket10"),
            ("0.0", "bucket8"),
            ("-0.0", "bucket8"),
            // integer limits
            ("2147483647", "bucket10"),
            ("2147483648", "bucket25"),
            ("-2147483648", "bucket8"),
            ("-2147483649", "bucket18"),
            ("9007199254740991", "bucket2"),
            ("23", "bucket21"),
            ("24", "bucket11"),
            ("255", "bucket13"),
            ("256", "bucket13"),
            ("65535", "bucket4"),
            ("65536", "bucket11"),
            ("4294967295", "bucket14"),
            ("4294967296", "bucket19"),
            ("-24", "bucket4"),
            ("-25", "bucket16"),
            // float limits
            ("1e20", "bucket19"),
            ("-1e20", "bucket25"),
            ("65504.0", "bucket16"),
            ("-65504.0", "bucket9"),
            ("0.00006103515625", "bucket22"),
            ("0.000000059604644775390625", "bucket23"),
            ("65505.0", "bucket17"),
            ("-65505.0", "bucket17"),
            ("3.4028234663852886e+38", "bucket10"),
            ("-3.4028234663852886e+38", "bucket3"),
            ("1.1754943508222875e-38", "bucket24"),
            ("3.5e+38", "bucket1"),
            ("-3.5e+38", "bucket6"),
            ("1.7976931348623157e+308", "bucket17"),
            ("-1.7976931348623157e+308", "bucket9"),
            ("2.2250738585072014e-308", "bucket11"),
            ("4.9406564584124654e-324", "bucket2"),
            // map key ordering
            ("{\"a\": 1, \"b\": 2}", "bucket23"),
            ("{\"b\": 2, \"a\": 1}", "bucket23"),
            ("{\"c\": 3, \"a\": 1, \"b\": 2}", "bucket18"),
            ("{\"aa\": 2, \"z\": 1}", "bucket21"),
            ("{\"b\": 2, \"a\": {\"b\": 1}}", "bucket9"),
            (
                "{\"c\": \"text\", \"bbb\": 1, \"a\": true, \"dddd\": 2.5}",
                "bucket25",
            ),
            ("{\"ÿ\": 2, \"aaa\": 1}", "bucket12"),
            ("{\"\": 2, \"abc\": 1}", "bucket25"),
            ("{\"key\": -0.0}", "bucket10"),
            ("{\"key\": 0}", "bucket10"),
            ("{\"c\": 0.0, \"b\": -0.0, \"a\": {\"b\": 1}}", "bucket8"),
            (
                "{\"café\": \"façade\", \"b\": {\"résumé\": {\"ÿ\": true}}}",
                "bucket22",
            ),
            // advanced structures
            ("{}", "bucket3"),
            ("{\"a\": {}}", "bucket20"),
            ("{\"a\": {}, \"b\": []}", "bucket7"),
            ("{\"a\": [1, [], 3], \"b\": null}", "bucket3"),
            ("{\"a\": [1, \"two\", true, [], null]}", "bucket23"),
            (
                "{\"a\": [false, 2.5, \"\"], \"b\": [], \"c\": [{}], \"c\": null}",
                "bucket15",
            ),
            (
                "{\"x\": [{\"a\": 1}, {\"b\": 2}, {\"b\": null}]}",
                "bucket3",
            ),
            ("{\"a\": [[[[[]]]]]}", "bucket15"),
            ("{\"a\": {\"b\": {\"c\": {\"d\": null}}}}", "bucket19"),
            // strings
            ("\"\"", "bucket4"),
            ("\"a\"", "bucket6"),
            ("\"12345678901234567890123\"", "bucket4"),
            ("\"123456789012345678901234\"", "bucket14"),
            ("\"あいうえおかき\"", "bucket17"),
            ("\"éééééééééééé\"", "bucket19"),
            ("\"café façade résumé café\"", "bucket9"),
        ];
        for (input, want) in rows {
            assert_eq!(&basic(json(input)), want, "{input}");
        }
        // The default bucketing value, [flagKey, targetingKey].
        for (key, want) in [("user-1", 0), ("user-2", 1), ("user-3", 0)] {
            let i = bucket_v3_of("fractional-flag-shorthand", key, &[1, 1]).map(|b| b.1);
            assert_eq!(i, Some(want), "{key}");
        }
        // `cat` of flag key and name: a string.
        let suits = ["clubs", "diamonds", "hearts", "spades"];
        for (name, want) in [
            ("jack", "diamonds"),
            ("queen", "diamonds"),
            ("ten", "clubs"),
            ("nine", "clubs"),
            ("3", "spades"),
        ] {
            let v = Value::String(format!("fractional-flag{name}"));
            let (_, i) = bucket_v3(&v, &[25; 4]).unwrap();
            assert_eq!(suits[i], want, "{name}");
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

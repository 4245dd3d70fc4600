//! Upper bounds of the protobuf encodings of flags, which the core counts
//! without knowing protobuf: answers that carry many flags (a `ListFlags`
//! page, a watch snapshot's part, a flag written) are cut, or refused, by
//! them, so that no answer passes `max_message_bytes`. Each bound is the
//! fields' bytes plus a tag and a length prefix at their largest, checked
//! against real encodings by the listing and watch suites.

use serde_json::Value;

use super::{Effective, FlagDef};

/// The most bytes one page or one snapshot part holds, counted by
/// [`encoded_bound`] and [`def_bound`], when the message limit allows more:
/// about 1 MiB, well under the 4 MiB default limit of gRPC clients.
pub const MAX_PART_BYTES: usize = 1024 * 1024;

/// What a message holds besides its flags (revision, page token, framing):
/// a page or part is cut at the message limit minus this.
pub const ENVELOPE_BYTES: usize = 1024;

/// The room for flags in one message under a limit of `max_message_bytes`.
pub fn part_budget(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_sub(ENVELOPE_BYTES)
        .clamp(1, MAX_PART_BYTES)
}

/// A field's tag and length prefix at most.
const FIELD: usize = 1 + 5;

/// An upper bound of the protobuf encoding of `v` as a
/// `google.protobuf.Value` (a number is 9 bytes there, where its JSON may be
/// one), without its own tag and length.
fn value_bound(v: &Value) -> usize {
    // Iterative: values nest at most 32 deep, but this must not care.
    let mut total = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += FIELD
            + match v {
                Value::Null | Value::Bool(_) => 2,
                Value::Number(_) => 9,
                Value::String(s) => FIELD + s.len(),
                Value::Array(a) => {
                    stack.extend(a.iter());
                    FIELD + a.len() * FIELD
                }
                Value::Object(o) => {
                    stack.extend(o.values());
                    FIELD + o.keys().map(|k| 2 * FIELD + k.len() + FIELD).sum::<usize>()
                }
            };
    }
    total
}

/// An upper bound of the protobuf encoding of an effective flag (an
/// `EffectiveFlag` with its tag and length in a repeated field).
pub fn encoded_bound(e: &Effective) -> usize {
    FIELD + FIELD + e.flag.len() + FIELD + value_bound(&e.value) + FIELD + 8
}

/// An upper bound of the protobuf encoding of a flag's definition (a `Flag`
/// with its tag and length in a repeated field).
pub fn def_bound(d: &FlagDef) -> usize {
    FIELD
        + FIELD
        + d.key.len()
        + 2
        + FIELD
        + d.description.len()
        + FIELD
        // A flag given by its legacy values lists no variants.
        + if d.is_legacy_shaped() {
            0
        } else {
            d.variants
                .iter()
                .map(|(k, v)| 3 * FIELD + k.len() + value_bound(v))
                .sum::<usize>()
        }
        + d.default_value().map_or(0, |v| FIELD + value_bound(v))
        + d.stored_value().map_or(0, |v| FIELD + value_bound(v))
        + d.default_variant.as_ref().map_or(0, |v| FIELD + v.len())
        + d.targeting.as_ref().map_or(0, |r| FIELD + value_bound(r.source()))
        + if d.metadata.is_empty() {
            0
        } else {
            FIELD + value_bound(&serde_json::Value::Object(d.metadata.clone()))
        }
        + FIELD
        + 8
        + 11
        + 2 * (FIELD + 11 + 6)
}

//! The persisted format of change-log payloads, versioned and separate from
//! the domain types.
//!
//! A payload is a JSON object `{"v": <version>, "kind": ..., ...}`. Version 1
//! is the format switchyard 0.1.0 wrote, which had no `"v"` field: a payload
//! without one is version 1. Every later release must decode every version it
//! has ever written (`tests/golden/changelog/` holds real rows of each); a
//! change to what a payload carries is a new version, never an edit of an old
//! one. Unknown fields are refused rather than ignored, so a payload written
//! by a newer release is reported as undecodable instead of being half read.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The version this release writes.
pub const VERSION: u64 = 1;

/// A flag as the change log records it (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRecord {
    /// The key.
    pub key: String,
    /// The type.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// The declared default.
    pub default: Json,
    /// The stored value, if any (written as `null` when none).
    #[serde(default)]
    pub stored: Option<Json>,
    /// The revision of the flag's last change.
    pub revision: i64,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
    /// Last change, µs since the epoch.
    pub updated_at_us: i64,
}

/// A flag's type as the change log records it (version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// `bool`.
    Bool,
    /// `number`.
    Number,
    /// `string`.
    String,
    /// `list`.
    List,
    /// `object`.
    Object,
}

/// The payload of one row, version 1. Tenant upserts have no payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum PayloadV1 {
    FlagUpsert {
        flag: FlagRecord,
        overridden: Vec<String>,
    },
    FlagDelete {},
    OverrideUpsert {
        value: Json,
    },
    OverrideDelete {
        flag: FlagRecord,
    },
    TenantDelete {
        restored: Vec<FlagRecord>,
    },
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u64,
    #[serde(flatten)]
    payload: &'a PayloadV1,
}

/// Encodes a payload in the current version.
pub(super) fn encode(payload: &PayloadV1) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Versioned {
        v: VERSION,
        payload,
    })
}

/// Decodes a payload of any version this release reads.
pub(super) fn decode(text: &str) -> Result<PayloadV1, String> {
    let mut object = match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(o)) => o,
        Ok(_) => return Err("the payload is not a JSON object".to_owned()),
        Err(e) => return Err(format!("the payload is not JSON: {e}")),
    };
    let version = match object.remove("v") {
        None => 1,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("the payload version {v} is not a number"))?,
    };
    match version {
        1 => serde_json::from_value(Json::Object(object))
            .map_err(|e| format!("the version 1 payload does not decode: {e}")),
        v => Err(format!(
            "payload version {v} was written by a newer release (this one reads up to {VERSION})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_payloads_round_trip_and_carry_their_version() {
        let p = PayloadV1::OverrideUpsert {
            value: serde_json::json!({"a": [1, "x"]}),
        };
        let text = encode(&p).unwrap();
        assert!(text.starts_with("{\"v\":1,"), "{text}");
        assert_eq!(decode(&text).unwrap(), p);
    }

    #[test]
    fn unversioned_payloads_are_version_1() {
        let p = decode(r#"{"kind":"flag_delete"}"#).unwrap();
        assert_eq!(p, PayloadV1::FlagDelete {});
    }

    #[test]
    fn newer_or_malformed_payloads_are_refused_with_a_reason() {
        for (text, reason) in [
            (r#"{"v":2,"kind":"flag_delete"}"#, "newer release"),
            (r#"{"kind":"flag_renamed"}"#, "does not decode"),
            (
                r#"{"kind":"override_upsert","value":1,"extra":true}"#,
                "unknown field",
            ),
            ("[1]", "not a JSON object"),
            ("{", "not JSON"),
        ] {
            let e = decode(text).unwrap_err();
            assert!(e.contains(reason), "{text}: {e}");
        }
    }
}

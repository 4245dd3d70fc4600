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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::json::integral;

/// The version this release writes.
pub const VERSION: u64 = 2;

/// A flag as the change log records it (version 2: flagd's model).
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
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// The variants by name.
    pub variants: BTreeMap<String, Json>,
    /// The default variant, if any.
    #[serde(default)]
    pub default_variant: Option<String>,
    /// The targeting rule as written, if any.
    #[serde(default)]
    pub targeting: Option<Json>,
    /// Scalar metadata.
    #[serde(default)]
    pub metadata: Map<String, Json>,
    /// The revision of the flag's last change.
    pub revision: i64,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
    /// Last change, µs since the epoch.
    pub updated_at_us: i64,
}

/// A flag as version 1 recorded it: a declared default and a stored value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlagRecordV1 {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default)]
    pub description: String,
    pub default: Json,
    #[serde(default)]
    pub stored: Option<Json>,
    pub revision: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl From<FlagRecordV1> for FlagRecord {
    /// Version 1's values become variants: `default`, and `store` (then the
    /// default variant) when a value was stored.
    fn from(r: FlagRecordV1) -> FlagRecord {
        // Version 1 wrote integral numbers as doubles (`3.0`).
        let mut variants = BTreeMap::new();
        variants.insert("default".to_owned(), integral(&r.default));
        let default_variant = match r.stored {
            Some(v) if !v.is_null() => {
                variants.insert("store".to_owned(), integral(&v));
                "store"
            }
            _ => "default",
        };
        FlagRecord {
            key: r.key,
            value_type: r.value_type,
            description: r.description,
            state: "ENABLED".to_owned(),
            variants,
            default_variant: Some(default_variant.to_owned()),
            targeting: None,
            metadata: Map::new(),
            revision: r.revision,
            created_at_us: r.created_at_us,
            updated_at_us: r.updated_at_us,
        }
    }
}

/// A flag's type as the change log records it (versions 1 and 2).
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

/// The payload of one row, version 2. Tenant upserts have no payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Payload {
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

/// The payload of one row, version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum PayloadV1 {
    FlagUpsert {
        flag: FlagRecordV1,
        overridden: Vec<String>,
    },
    FlagDelete {},
    OverrideUpsert {
        value: Json,
    },
    OverrideDelete {
        flag: FlagRecordV1,
    },
    TenantDelete {
        restored: Vec<FlagRecordV1>,
    },
}

impl From<PayloadV1> for Payload {
    fn from(p: PayloadV1) -> Payload {
        match p {
            PayloadV1::FlagUpsert { flag, overridden } => Payload::FlagUpsert {
                flag: flag.into(),
                overridden,
            },
            PayloadV1::FlagDelete {} => Payload::FlagDelete {},
            PayloadV1::OverrideUpsert { value } => Payload::OverrideUpsert {
                value: integral(&value),
            },
            PayloadV1::OverrideDelete { flag } => Payload::OverrideDelete { flag: flag.into() },
            PayloadV1::TenantDelete { restored } => Payload::TenantDelete {
                restored: restored.into_iter().map(Into::into).collect(),
            },
        }
    }
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u64,
    #[serde(flatten)]
    payload: &'a Payload,
}

/// Encodes a payload in the current version.
pub(super) fn encode(payload: &Payload) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Versioned {
        v: VERSION,
        payload,
    })
}

/// Decodes a payload of any version this release reads.
pub(super) fn decode(text: &str) -> Result<Payload, String> {
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
        1 => serde_json::from_value::<PayloadV1>(Json::Object(object))
            .map(Payload::from)
            .map_err(|e| format!("the version 1 payload does not decode: {e}")),
        2 => serde_json::from_value(Json::Object(object))
            .map_err(|e| format!("the version 2 payload does not decode: {e}")),
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
        let p = Payload::OverrideUpsert {
            value: serde_json::json!({"a": [1, "x"]}),
        };
        let text = encode(&p).unwrap();
        assert!(text.starts_with("{\"v\":2,"), "{text}");
        assert_eq!(decode(&text).unwrap(), p);
    }

    #[test]
    fn unversioned_payloads_are_version_1() {
        let p = decode(r#"{"kind":"flag_delete"}"#).unwrap();
        assert_eq!(p, Payload::FlagDelete {});
    }

    #[test]
    fn newer_or_malformed_payloads_are_refused_with_a_reason() {
        for (text, reason) in [
            (r#"{"v":3,"kind":"flag_delete"}"#, "newer release"),
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

//! flagd's published JSON schema for targeting rules (`schema/targeting.json`,
//! draft-07), checked with `boon`, the Rust port of the validator flagd
//! itself uses. A rule that compiles but that the schema refuses (a
//! `fractional` weight that is negative or not an integer, `sem_ver` with an
//! operator or version flagd's schema does not know, `starts_with` on a
//! number, `$flagd.` followed by anything but `flagKey` or `timestamp`) is
//! refused when written; flagd itself only logs a warning for such a rule
//! and evaluates it, which an import may ask for
//! (`allow_schema_violations`).

use std::sync::LazyLock;

use serde_json::Value;

const URL: &str = "https://flagd.dev/schema/v0/targeting.json";

/// The compiled schema: `None` if it did not compile (a bug; every rule is
/// then accepted, and a test fails).
static SCHEMA: LazyLock<Option<(boon::Schemas, boon::SchemaIndex)>> = LazyLock::new(|| {
    let doc: Value = serde_json::from_str(include_str!("schema/targeting.json")).ok()?;
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource(URL, doc).ok()?;
    let index = compiler.compile(URL, &mut schemas).ok()?;
    Some((schemas, index))
});

/// Where a rule breaks flagd's schema, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// A JSON pointer into the rule (`""`: the rule itself).
    pub at: String,
    /// What the schema wants there.
    pub message: String,
}

impl Violation {
    /// Why the rule is refused, naming the schema.
    pub fn reason(&self) -> String {
        format!("{} (flagd's targeting schema)", self.message)
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.reason())
    }
}

/// Whether the schema compiled (a test checks it does).
pub fn loaded() -> bool {
    SCHEMA.is_some()
}

/// Checks `rule` against flagd's targeting schema. Of the schema's
/// complaints (one per alternative it tried), the one deepest in the rule
/// is named: the alternatives that fail at the top only say the rule is
/// not that kind of operation.
pub fn check(rule: &Value) -> Result<(), Violation> {
    let Some((schemas, index)) = SCHEMA.as_ref() else {
        return Ok(());
    };
    let Err(e) = schemas.validate(rule, *index) else {
        return Ok(());
    };
    let mut deepest: Option<&boon::ValidationError> = None;
    let mut stack = vec![&e];
    while let Some(v) = stack.pop() {
        if !v.causes.is_empty() {
            stack.extend(v.causes.iter().rev());
        } else if deepest
            .is_none_or(|d| v.instance_location.tokens.len() > d.instance_location.tokens.len())
        {
            deepest = Some(v);
        }
    }
    let deepest = deepest.unwrap_or(&e);
    Err(Violation {
        at: deepest.instance_location.to_string(),
        message: deepest.kind.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(kind: &str) -> Vec<(String, Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/flag/targeting/schema/vectors")
            .join(kind);
        let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let text = std::fs::read_to_string(&p).unwrap();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    serde_json::from_str(&text).unwrap(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!out.is_empty(), "no vectors in {}", dir.display());
        out
    }

    #[test]
    fn the_schema_repositorys_own_vectors_pass_and_fail_as_published() {
        assert!(loaded(), "the embedded schema compiles");
        for (name, rule) in vectors("positive") {
            assert_eq!(check(&rule), Ok(()), "{name}");
        }
        for (name, rule) in vectors("negative") {
            assert!(check(&rule).is_err(), "{name} is refused");
        }
    }

    #[test]
    fn the_place_named_is_the_deepest_the_schema_complains_of() {
        let rule = serde_json::json!({"if": [{"ends_with": [{"var": "id"}, 3]}, "a", "b"]});
        let v = check(&rule).unwrap_err();
        assert_eq!(v.at, "/if/0/ends_with/1", "{v}");
        let rule = serde_json::json!({"fractional": [["a", 50], ["b", -50]]});
        let v = check(&rule).unwrap_err();
        assert!(v.at.starts_with("/fractional/1"), "{v}");
        let rule = serde_json::json!({"==": [{"var": "$flagd.nope"}, 1]});
        assert!(check(&rule).unwrap_err().at.starts_with("/==/0"));
    }
}

//! Update masks: which fields of a resource an update changes.

use crate::error::{Error, Result};

/// The fields an update mask named (every updatable field when it named none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMask {
    covered: Vec<&'static str>,
}

impl UpdateMask {
    /// Parses field-mask paths. `updatable` lists each updatable field with
    /// its accepted spellings (the proto name first, then its JSON name);
    /// `immutable` the fields that exist but cannot change. An empty list
    /// means every updatable field; an immutable or unknown path is
    /// INVALID_ARGUMENT naming `update_mask`.
    pub fn parse(
        paths: &[String],
        updatable: &[&[&'static str]],
        immutable: &[&str],
    ) -> Result<UpdateMask> {
        if paths.is_empty() {
            return Ok(UpdateMask {
                covered: updatable
                    .iter()
                    .filter_map(|f| f.first().copied())
                    .collect(),
            });
        }
        let mut covered = Vec::new();
        for p in paths {
            if let Some(field) = updatable.iter().find(|f| f.contains(&p.as_str())) {
                if let Some(name) = field.first() {
                    covered.push(*name);
                }
            } else if immutable.contains(&p.as_str()) {
                return Err(Error::invalid_argument(
                    "update_mask",
                    format!("{p:?} cannot be changed"),
                ));
            } else {
                let names: Vec<&str> = updatable
                    .iter()
                    .filter_map(|f| f.first().copied())
                    .collect();
                return Err(Error::invalid_argument(
                    "update_mask",
                    format!("unknown field {p:?} ({})", names.join(", ")),
                ));
            }
        }
        Ok(UpdateMask { covered })
    }

    /// Returns whether the update changes `field` (its proto name).
    pub fn covers(&self, field: &str) -> bool {
        self.covered.contains(&field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&[&str]] = &[&["display_name", "displayName"], &["patterns"]];

    fn parse(paths: &[&str]) -> Result<UpdateMask> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        UpdateMask::parse(&paths, FIELDS, &["id"])
    }

    #[test]
    fn empty_means_everything_and_json_names_count() {
        let all = parse(&[]).unwrap();
        assert!(all.covers("display_name") && all.covers("patterns"));
        let one = parse(&["displayName"]).unwrap();
        assert!(one.covers("display_name") && !one.covers("patterns"));
    }

    #[test]
    fn immutable_and_unknown_fields_are_refused_by_name() {
        assert_eq!(
            parse(&["id"]).unwrap_err().message(),
            "update_mask: \"id\" cannot be changed"
        );
        assert_eq!(
            parse(&["nmae"]).unwrap_err().message(),
            "update_mask: unknown field \"nmae\" (display_name, patterns)"
        );
    }
}

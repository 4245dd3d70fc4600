//! Keys, patterns and their precedence.
//!
//! A key (usually a Host header) is normalised before matching: lowercased, a
//! port and one trailing dot stripped, an international name converted to its
//! punycode (ASCII) form. Patterns are normalised the same way when stored.
//!
//! Pattern forms, most specific first:
//! * exact `api.acme.example`;
//! * suffix wildcard `*.acme.example`: matches keys with **one or more** labels
//!   before `.acme.example` (`a.acme.example`, `a.b.acme.example`), never
//!   `acme.example` itself;
//! * prefix wildcard `acme.*`: matches keys with one or more labels after
//!   `acme.`, never `acme` itself;
//! * catch-all `*`.
//!
//! Among suffix (prefix) wildcards the one with the longest fixed part wins. A
//! `*` anywhere else (`a.*.b`, `a*.b`) is invalid.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// The longest key or pattern, in characters, after normalisation (DNS limit).
pub const MAX_KEY_LEN: usize = 253;
/// The longest label between dots.
pub const MAX_LABEL_LEN: usize = 63;

/// A parsed, normalised pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// Matches one key exactly.
    Exact(String),
    /// `*.<fixed>`: keys ending in `.<fixed>` with at least one label before.
    Suffix(String),
    /// `<fixed>.*`: keys starting with `<fixed>.` with at least one label after.
    Prefix(String),
    /// `*`: every key.
    CatchAll,
}

impl Pattern {
    /// Parses and normalises `raw`; `field` names it in errors.
    pub fn parse(raw: &str, field: &str) -> Result<Pattern> {
        check_raw(raw, field)?;
        if raw == "*" {
            return Ok(Pattern::CatchAll);
        }
        if raw.starts_with('[') {
            return Ok(Pattern::Exact(ipv6_literal(raw, field)?));
        }
        if let Some(rest) = raw.strip_prefix("*.") {
            let fixed = normalize_host(rest, raw, field)?;
            return Ok(Pattern::Suffix(fixed.into_owned()));
        }
        if let Some(rest) = raw.strip_suffix(".*") {
            let fixed = normalize_host(rest, raw, field)?;
            return Ok(Pattern::Prefix(fixed.into_owned()));
        }
        if raw.contains('*') {
            return Err(Error::invalid_argument(
                field,
                format!(
                    "{raw:?}: a wildcard may only be the whole first label (*.example.com), \
                     the whole last label (example.*) or the whole pattern (*)"
                ),
            ));
        }
        Ok(Pattern::Exact(
            normalize_host(raw, raw, field)?.into_owned(),
        ))
    }

    /// Returns the stored text form (`*.x`, `x.*`, `*` or the host).
    pub fn as_text(&self) -> String {
        match self {
            Pattern::Exact(h) => h.clone(),
            Pattern::Suffix(f) => format!("*.{f}"),
            Pattern::Prefix(f) => format!("{f}.*"),
            Pattern::CatchAll => "*".to_owned(),
        }
    }

    /// Returns whether this pattern matches the normalised `key`.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::Exact(h) => key == h,
            Pattern::Suffix(f) => {
                key.len() > f.len() + 1
                    && key.ends_with(f.as_str())
                    && key.as_bytes()[key.len() - f.len() - 1] == b'.'
            }
            Pattern::Prefix(f) => {
                key.len() > f.len() + 1
                    && key.starts_with(f.as_str())
                    && key.as_bytes()[f.len()] == b'.'
            }
            Pattern::CatchAll => true,
        }
    }

    /// Returns the precedence rank: higher wins. Exact beats every suffix,
    /// suffixes beat every prefix, longer fixed parts beat shorter ones.
    pub fn rank(&self) -> (u8, usize) {
        match self {
            Pattern::Exact(h) => (3, h.len()),
            Pattern::Suffix(f) => (2, f.len()),
            Pattern::Prefix(f) => (1, f.len()),
            Pattern::CatchAll => (0, 0),
        }
    }
}

/// Normalises a request key: lowercase, port and one trailing dot stripped,
/// punycode for international names. Errors name the field `key`.
pub fn normalize_key(raw: &str) -> Result<Cow<'_, str>> {
    if is_normal_host(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let field = "key";
    check_raw(raw, field)?;
    let host = strip_port(raw)?;
    if host.starts_with('[') {
        // An IPv6 literal, in canonical form: only exact patterns name it.
        return Ok(Cow::Owned(ipv6_literal(host, field)?));
    }
    normalize_host(host, raw, field)
}

/// Refuses an empty input, or one too long to be a host even in Unicode form
/// (the precise limit is checked after normalisation).
fn check_raw(raw: &str, field: &str) -> Result<()> {
    if raw.is_empty() {
        return Err(Error::invalid_argument(field, "must not be empty"));
    }
    if raw.len() > MAX_KEY_LEN * 4 {
        return Err(Error::invalid_argument(
            field,
            format!("must be at most {MAX_KEY_LEN} characters"),
        ));
    }
    Ok(())
}

/// Returns whether `raw` is already a normalised host (lowercase ASCII labels
/// of 1 to 63 characters, no port, no trailing dot), in one pass: the common
/// case on the resolution hot path.
fn is_normal_host(raw: &str) -> bool {
    if raw.is_empty() || raw.len() > MAX_KEY_LEN {
        return false;
    }
    // Labels of a-z, 0-9 and '-', not at either end; anything else, and
    // any label with "--" at its third and fourth characters (punycode
    // among them), takes the full check.
    let mut label = 0usize;
    let mut last = b'.';
    for &c in raw.as_bytes() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => label += 1,
            b'-' if label > 0 => {
                label += 1;
                if label == 4 && last == b'-' {
                    return false;
                }
            }
            b'.' if label > 0 && last != b'-' => label = 0,
            _ => return false,
        }
        if label > MAX_LABEL_LEN {
            return false;
        }
        last = c;
    }
    label > 0 && last != b'-'
}

fn strip_port(raw: &str) -> Result<&str> {
    if raw.starts_with('[') {
        let end = raw
            .find(']')
            .ok_or_else(|| Error::invalid_argument("key", "unterminated IPv6 literal"))?;
        let (host, rest) = raw.split_at(end + 1);
        return match rest.strip_prefix(':') {
            None if rest.is_empty() => Ok(host),
            Some(port) if valid_port(port) => Ok(host),
            _ => Err(Error::invalid_argument(
                "key",
                format!("{raw:?}: invalid port"),
            )),
        };
    }
    match raw.rsplit_once(':') {
        None => Ok(raw),
        Some((host, port)) if valid_port(port) && !host.contains(':') => Ok(host),
        Some(_) => Err(Error::invalid_argument(
            "key",
            format!("{raw:?}: invalid port"),
        )),
    }
}

fn valid_port(p: &str) -> bool {
    p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

/// Returns `[addr]` in canonical form for a bracketed IPv6 literal.
fn ipv6_literal(raw: &str, field: &str) -> Result<String> {
    raw.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
        .map(|a| format!("[{a}]"))
        .ok_or_else(|| {
            Error::invalid_argument(field, format!("{raw:?} is not a valid IPv6 literal"))
        })
}

/// Lowercases, strips one trailing dot, converts to punycode and validates the
/// labels of a host name (or the fixed part of a wildcard pattern `whole`,
/// which errors quote).
///
/// The rules (RFC 1123 host names, with IDNA): at most 253 characters once
/// in ASCII form; labels of 1 to 63 characters of `a-z`, `0-9` and `-`, not
/// starting or ending with `-`; a label starting with `xn--` must be valid
/// punycode; international names are converted to punycode first.
fn normalize_host<'a>(raw: &'a str, whole: &str, field: &str) -> Result<Cow<'a, str>> {
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() {
        let what = if whole == raw {
            "must not be empty".to_owned()
        } else {
            format!("{whole:?}: a wildcard needs a host name beside it (*.example.com, example.*)")
        };
        return Err(Error::invalid_argument(field, what));
    }
    let ascii: Cow<'a, str> = if trimmed.is_ascii() {
        if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(trimmed.to_ascii_lowercase())
        } else {
            Cow::Borrowed(trimmed)
        }
    } else {
        Cow::Owned(idna::domain_to_ascii(trimmed).map_err(|_| {
            Error::invalid_argument(field, format!("{whole:?}: not a valid international name"))
        })?)
    };
    if ascii.len() > MAX_KEY_LEN {
        return Err(Error::invalid_argument(
            field,
            format!("must be at most {MAX_KEY_LEN} characters once normalised"),
        ));
    }
    let bad = |what: String| Error::invalid_argument(field, format!("{whole:?}: {what}"));
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(bad(
                "empty label (two dots in a row, or a leading dot)".into()
            ));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(bad(format!(
                "a label is longer than {MAX_LABEL_LEN} characters"
            )));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(bad(if c == '*' {
                "a wildcard may only be the whole first or last label".to_owned()
            } else {
                format!("character {c:?} is not allowed in a host name (a-z, 0-9 and '-')")
            }));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(format!("label {label:?} starts or ends with '-'")));
        }
        if let Some(puny) = label.strip_prefix("xn--") {
            let decoded = idna::punycode::decode_to_string(puny);
            let valid = decoded.as_deref().is_some_and(|u| {
                !u.is_empty() && idna::domain_to_ascii(u).is_ok_and(|a| a == label)
            });
            if !valid {
                return Err(bad(format!("label {label:?} is not valid punycode")));
            }
        }
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise() {
        assert_eq!(
            normalize_key("API.Acme.Example:8443").unwrap(),
            "api.acme.example"
        );
        assert_eq!(normalize_key("acme.example.").unwrap(), "acme.example");
        assert_eq!(
            normalize_key("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize_key("[::1]:80").unwrap(), "[::1]");
        assert_eq!(normalize_key("[0:0::1]").unwrap(), "[::1]");
        assert_eq!(
            Pattern::parse("[::0:1]", "p").unwrap(),
            Pattern::Exact("[::1]".into())
        );
        assert_eq!(normalize_key("10.0.0.1:80").unwrap(), "10.0.0.1");
    }

    #[test]
    fn bad_keys_are_invalid_arguments_naming_the_field() {
        for bad in [
            "",
            "a..b",
            ".a",
            "a b",
            "a:port",
            "a:123456",
            "a/b",
            &"a".repeat(64),
            &"a.".repeat(130),
        ] {
            let e = normalize_key(bad).unwrap_err();
            assert_eq!(
                e.kind(),
                crate::error::ErrorKind::InvalidArgument,
                "{bad:?}"
            );
            assert!(e.message().starts_with("key: "), "{bad:?}: {}", e.message());
        }
    }

    #[test]
    fn patterns_parse() {
        let p = |s| Pattern::parse(s, "p").unwrap();
        assert_eq!(p("*"), Pattern::CatchAll);
        assert_eq!(p("*.Acme.Example"), Pattern::Suffix("acme.example".into()));
        assert_eq!(p("acme.*"), Pattern::Prefix("acme".into()));
        assert_eq!(
            p("API.acme.example."),
            Pattern::Exact("api.acme.example".into())
        );
        for bad in ["", "a.*.b", "*a.b", "a*", "**", "*.", ".*", "*.*", "a..b"] {
            assert!(Pattern::parse(bad, "p").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_labels_follow_the_dns_rules_and_errors_quote_the_pattern_given() {
        let e = |s: &str| Pattern::parse(s, "p").unwrap_err().message().to_owned();
        assert_eq!(
            e("-a.example"),
            "p: \"-a.example\": label \"-a\" starts or ends with '-'"
        );
        assert_eq!(
            e("a-.example"),
            "p: \"a-.example\": label \"a-\" starts or ends with '-'"
        );
        assert_eq!(
            e("a_b.example"),
            "p: \"a_b.example\": character '_' is not allowed in a host name (a-z, 0-9 and '-')"
        );
        assert_eq!(
            e("xn--zz.example"),
            "p: \"xn--zz.example\": label \"xn--zz\" is not valid punycode"
        );
        assert_eq!(
            e("*.*"),
            "p: \"*.*\": a wildcard may only be the whole first or last label"
        );
        assert_eq!(
            e("*.*.example"),
            "p: \"*.*.example\": a wildcard may only be the whole first or last label"
        );
        assert_eq!(
            e("*."),
            "p: \"*.\": a wildcard needs a host name beside it (*.example.com, example.*)"
        );
        // What the rules allow.
        let ok = |s: &str| Pattern::parse(s, "p").unwrap().as_text();
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(ok("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(ok("a-b.example"), "a-b.example");
        assert_eq!(ok("ab--c.example"), "ab--c.example");
        assert_eq!(ok("10.0.0.1"), "10.0.0.1");
        // Keys take the same rules, on the fast path and off it.
        for bad in [
            "-a.example",
            "a-.example",
            "a_b.example",
            "xn--zz.example",
            "a.-b",
        ] {
            assert!(normalize_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a-b.example", "xn--bcher-kva.example", "ab--c.x", "a.b-c"] {
            assert_eq!(normalize_key(good).unwrap(), good);
        }
    }

    #[test]
    fn a_suffix_wildcard_covers_one_or_more_labels_but_not_the_bare_domain() {
        let p = Pattern::parse("*.acme.example", "p").unwrap();
        assert!(p.matches("a.acme.example"));
        assert!(p.matches("a.b.acme.example"));
        assert!(!p.matches("acme.example"));
        assert!(!p.matches("xacme.example"));
        let p = Pattern::parse("acme.*", "p").unwrap();
        assert!(p.matches("acme.example"));
        assert!(p.matches("acme.a.b"));
        assert!(!p.matches("acme"));
        assert!(!p.matches("acmex.example"));
    }
}

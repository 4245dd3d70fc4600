//! flagd's `sem_ver`: versions read as Go's `golang.org/x/mod/semver` reads
//! them, after flagd's own leniency (a missing `v` is added, `V` lowered), so
//! `1`, `1.2` and `v1.2.3-rc.1+build` are versions and `1.2.3.4` is not.

use std::cmp::Ordering;

/// A parsed version: numeric parts (shorthands filled with 0) and the
/// pre-release identifiers (build metadata is dropped: it never orders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    pre: Option<&'a str>,
}

/// Parses `text` as flagd does; `None` when it is not a version.
///
/// Scans bytes rather than splitting with `char` patterns: a rule compares
/// a version per evaluation, and the searchers' setup cost more than these
/// few bytes.
pub fn parse(text: &str) -> Option<Version<'_>> {
    let v = match text.as_bytes().first() {
        Some(b'v' | b'V') => &text[1..],
        _ => text,
    };
    let (main, build) = match find(v, b'+') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let (main, pre) = match find(main, b'-') {
        Some(i) => (&main[..i], Some(&main[i + 1..])),
        None => (main, None),
    };
    let mut parts = dots(main);
    let major = number(parts.next()?)?;
    let minor = parts.next().map(number);
    let patch = parts.next().map(number);
    if parts.next().is_some() {
        return None;
    }
    let (minor, patch) = match (minor, patch) {
        (Some(m), Some(p)) => (m?, p?),
        // Go accepts `v1` and `v1.2` as shorthands, without a pre-release
        // or build part.
        (m, None) if pre.is_none() && build.is_none() => (m.unwrap_or(Some("0"))?, "0"),
        _ => return None,
    };
    if let Some(p) = pre
        && !dots(p).all(|id| identifier(id, true))
    {
        return None;
    }
    if let Some(b) = build
        && !dots(b).all(|id| identifier(id, false))
    {
        return None;
    }
    Some(Version {
        major,
        minor,
        patch,
        pre,
    })
}

/// `s` split at dots, by a plain loop (a `'.'` pattern sets up a searcher).
#[allow(clippy::manual_pattern_char_comparison)] // on purpose: see above
fn dots(s: &str) -> std::str::Split<'_, impl FnMut(char) -> bool> {
    s.split(|c: char| c == '.')
}

/// The index of the first `byte` in `s` (an ASCII byte, so a char boundary).
fn find(s: &str, byte: u8) -> Option<usize> {
    s.bytes().position(|b| b == byte)
}

/// A numeric part: digits, no leading zero unless it is `0`.
fn number(s: &str) -> Option<&str> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then_some(s)
}

/// A pre-release or build identifier; numeric pre-release identifiers have no
/// leading zero.
fn identifier(id: &str, pre: bool) -> bool {
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !(pre && id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Compares numbers written in decimal without leading zeros.
fn cmp_num(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for Version<'_> {
    fn cmp(&self, o: &Self) -> Ordering {
        cmp_num(self.major, o.major)
            .then_with(|| cmp_num(self.minor, o.minor))
            .then_with(|| cmp_num(self.patch, o.patch))
            .then_with(|| match (self.pre, o.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => cmp_pre(a, b),
            })
    }
}

impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Pre-release order: identifier by identifier, numbers below words, a
/// shorter list first when one is a prefix of the other.
fn cmp_pre(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    let (mut x, mut y) = (dots(a), dots(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (numeric(p), numeric(q)) {
                    (true, true) => cmp_num(p, q),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// `sem_ver`'s operators. `~` holds when major and minor are equal, `^`
/// when major is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Tilde,
    Caret,
}

impl Cmp {
    /// The operator written `op`; `None` when flagd does not know it.
    pub fn named(op: &str) -> Option<Cmp> {
        Some(match op {
            "=" => Cmp::Eq,
            "!=" => Cmp::Ne,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            "~" => Cmp::Tilde,
            "^" => Cmp::Caret,
            _ => return None,
        })
    }

    /// Whether `l op r`.
    pub fn holds(self, l: &Version<'_>, r: &Version<'_>) -> bool {
        match self {
            Cmp::Eq => l.cmp(r).is_eq(),
            Cmp::Ne => l.cmp(r).is_ne(),
            Cmp::Lt => l < r,
            Cmp::Le => l <= r,
            Cmp::Gt => l > r,
            Cmp::Ge => l >= r,
            Cmp::Tilde => cmp_num(l.major, r.major).is_eq() && cmp_num(l.minor, r.minor).is_eq(),
            Cmp::Caret => cmp_num(l.major, r.major).is_eq(),
        }
    }
}

/// A version parsed once, when a rule is compiled (a `sem_ver` whose right
/// side is written in the rule), owning its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    major: Box<str>,
    minor: Box<str>,
    patch: Box<str>,
    pre: Option<Box<str>>,
}

impl Owned {
    /// `text` parsed; `None` when it is not a version.
    pub fn parse(text: &str) -> Option<Owned> {
        let v = parse(text)?;
        Some(Owned {
            major: v.major.into(),
            minor: v.minor.into(),
            patch: v.patch.into(),
            pre: v.pre.map(Into::into),
        })
    }

    pub fn version(&self) -> Version<'_> {
        Version {
            major: &self.major,
            minor: &self.minor,
            patch: &self.patch,
            pre: self.pre.as_deref(),
        }
    }
}

/// `sem_ver(left, op, right)`: `None` (flagd's null) when either side is not
/// a version or the operator is unknown.
pub fn sem_ver(left: &str, op: &str, right: &str) -> Option<bool> {
    let (l, r) = (parse(left)?, parse(right)?);
    Some(Cmp::named(op)?.holds(&l, &r))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The testbed's rows (evaluator/gherkin/semver.feature, v3.9.0).
    #[test]
    fn answers_match_flagd_testbed() {
        let three_way = |v: &str| {
            if sem_ver(v, "=", "2.0.0")? {
                Some("equal")
            } else if sem_ver(v, ">", "2.0.0")? {
                Some("greater")
            } else if sem_ver(v, "<", "2.0.0")? {
                Some("lesser")
            } else {
                Some("none")
            }
        };
        assert_eq!(three_way("2.0.0"), Some("equal"));
        assert_eq!(three_way("2.1.0"), Some("greater"));
        assert_eq!(three_way("1.9.0"), Some("lesser"));
        assert_eq!(three_way("2.0.0-alpha"), Some("lesser"));
        assert_eq!(three_way("2.0.0.0"), None);

        assert_eq!(sem_ver("3.0.1", "~", "3.0.0"), Some(true));
        assert_eq!(sem_ver("3.1.0", "~", "3.0.0"), Some(false));
        assert_eq!(sem_ver("3.1.0", "^", "3.0.0"), Some(true));
        assert_eq!(sem_ver("4.0.0", "^", "3.0.0"), Some(false));

        assert_eq!(sem_ver("not-a-version", "=", "1.0.0"), None);
        assert_eq!(sem_ver("1.0.0", "===", "1.0.0"), None);

        for v in ["1.0.0", "v1.0.0", "V1.0.0"] {
            assert_eq!(sem_ver(v, "=", "v1.0.0"), Some(true), "{v}");
        }
        assert_eq!(sem_ver("2.0.0", "=", "v1.0.0"), Some(false));
        for v in ["1.5.0", "1.0.0", "1.0", "1", "1.2"] {
            assert_eq!(sem_ver(v, "^", "1"), Some(true), "{v}");
        }
        assert_eq!(sem_ver("2.0.0", "^", "1"), Some(false));
        assert_eq!(sem_ver("1.2", ">", "1.1"), Some(true));
        assert_eq!(sem_ver("1.1", ">", "1.1"), Some(false));
    }

    #[test]
    fn versions_parse_as_go_reads_them() {
        assert!(parse("1.2.3-rc.1+build.5").is_some());
        assert!(
            parse("1.2-rc.1").is_none(),
            "a shorthand takes no pre-release"
        );
        assert!(parse("01.2.3").is_none());
        assert!(parse("1.2.3-01").is_none());
        assert!(parse("1.2.3-").is_none());
        assert!(parse("").is_none());
        assert_eq!(
            sem_ver("1.0.0+a", "=", "1.0.0+b"),
            Some(true),
            "build metadata never orders"
        );
        assert_eq!(
            sem_ver("1.0.0-alpha.1", "<", "1.0.0-alpha.beta"),
            Some(true)
        );
        assert_eq!(sem_ver("1.0.0-alpha", "<", "1.0.0-alpha.1"), Some(true));
        assert_eq!(sem_ver("1.0.0-2", "<", "1.0.0-10"), Some(true));
        assert_eq!(sem_ver("10.0.0", ">", "9.0.0"), Some(true));
    }
}

//! `google.api.http` path templates: parsing and matching.
//!
//! The supported grammar is the part of `google/api/http.proto` that
//! grpc-gateway users rely on: literal segments, single-segment variables
//! `{field.path}` (or `{field.path=*}`), and an optional `:verb` suffix. A
//! multi-segment pattern (`**`, or a variable spanning several segments) is
//! refused when the template is parsed, so an annotation that this server
//! could not route fails the build, never a request.
//!
//! This file uses only `std`: `build.rs` includes it to generate the OpenAPI
//! document from the same parser the router uses.

/// One `/`-separated segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal the request's segment.
    Literal(String),
    /// Binds one non-empty request segment to the request field at this dotted path.
    Variable(String),
}

/// A parsed path template, for example `/v1/flags/{flag_key}:evaluate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The segments after the leading `/`.
    pub segments: Vec<Segment>,
    /// The custom method after the last `:`, if any.
    pub verb: Option<String>,
}

impl Template {
    /// Parses `path` or says what is wrong with it.
    pub fn parse(path: &str) -> Result<Template, String> {
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| format!("{path:?}: a path template starts with '/'"))?;
        // The verb follows the last ':' outside braces.
        let mut depth = 0usize;
        let mut verb_at = None;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        let (body, verb) = match verb_at {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_owned())),
            None => (rest, None),
        };
        if verb.as_deref().is_some_and(|v| !is_literal(v)) {
            return Err(format!("{path:?}: the verb must be a plain literal"));
        }
        let mut segments = Vec::new();
        for raw in body.split('/') {
            if let Some(inner) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                let field = match inner.split_once('=') {
                    Some((field, "*")) => field,
                    Some(_) => {
                        return Err(format!(
                            "{path:?}: only single-segment variables are supported"
                        ));
                    }
                    None => inner,
                };
                if field.is_empty()
                    || !field.split('.').all(|p| {
                        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                {
                    return Err(format!("{path:?}: {{{inner}}} is not a field path"));
                }
                segments.push(Segment::Variable(field.to_owned()));
            } else if is_literal(raw) {
                segments.push(Segment::Literal(raw.to_owned()));
            } else {
                return Err(format!(
                    "{path:?}: segment {raw:?} is neither a literal nor a single-segment variable"
                ));
            }
        }
        Ok(Template { segments, verb })
    }

    /// Matches a request path (still percent-encoded). Returns the variables'
    /// field paths with their decoded values, or `None` when the path does not
    /// fit.
    pub fn matches<'t>(&'t self, path: &str) -> Option<Vec<(&'t str, String)>> {
        let mut rest = path.strip_prefix('/')?;
        if let Some(verb) = &self.verb {
            rest = rest.strip_suffix(verb.as_str())?.strip_suffix(':')?;
        }
        let mut bound = Vec::new();
        let mut parts = rest.split('/');
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(l) => {
                    if part != l {
                        return None;
                    }
                }
                Segment::Variable(field) => {
                    if part.is_empty() {
                        return None;
                    }
                    // A malformed escape is bound as sent, for the service
                    // to refuse with a 400 naming the field.
                    let value = percent_decode(part).unwrap_or_else(|| part.to_owned());
                    bound.push((field.as_str(), value));
                }
            }
        }
        parts.next().is_none().then_some(bound)
    }

    /// Returns the dotted field paths bound by the path, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Variable(f) => Some(f.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Returns the number of literal segments (and the verb): routes with more
    /// literals are tried first.
    pub fn specificity(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
            + usize::from(self.verb.is_some())
    }
}

impl std::fmt::Display for Template {
    /// Writes the template in OpenAPI form: `/v1/flags/{flag_key}:evaluate`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.segments {
            match s {
                Segment::Literal(l) => write!(f, "/{l}")?,
                Segment::Variable(v) => write!(f, "/{{{v}}}")?,
            }
        }
        if let Some(v) = &self.verb {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

impl Template {
    /// Returns the template as an OpenAPI path, each variable named by its
    /// field path with `.` turned into `_` (`{flag.key}` is `{flag_key}`).
    /// OpenAPI treats paths that differ only in variable names as one path,
    /// so siblings such as `/v1/flags/{flag_key}` and `/v1/flags/{flag.key}`
    /// must use the same name.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(&format!("/{l}")),
                Segment::Variable(v) => out.push_str(&format!("/{{{}}}", openapi_name(v))),
            }
        }
        if let Some(v) = &self.verb {
            out.push_str(&format!(":{v}"));
        }
        out
    }
}

/// The OpenAPI name of a path variable: its field path with `.` as `_`.
pub fn openapi_name(field_path: &str) -> String {
    field_path.replace('.', "_")
}

fn is_literal(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s).expect(s)
    }

    #[test]
    fn literals_variables_and_verbs() {
        let tpl = t("/v1/flags/{flag_key}:evaluate");
        assert_eq!(tpl.verb.as_deref(), Some("evaluate"));
        assert_eq!(
            tpl.matches("/v1/flags/dark-mode:evaluate"),
            Some(vec![("flag_key", "dark-mode".to_owned())])
        );
        assert_eq!(tpl.matches("/v1/flags/dark-mode"), None);
        assert_eq!(tpl.matches("/v1/flags/:evaluate"), None);
        assert_eq!(tpl.to_string(), "/v1/flags/{flag_key}:evaluate");
        assert_eq!(
            t("/v1/flags/{flag.key}").openapi_path(),
            "/v1/flags/{flag_key}"
        );

        let nested = t("/v1/tenants/{tenant.id}");
        assert_eq!(
            nested.matches("/v1/tenants/a%2Db"),
            Some(vec![("tenant.id", "a-b".to_owned())])
        );
        assert_eq!(nested.matches("/v1/tenants/a/b"), None);
        assert_eq!(nested.matches("/v1/tenants"), None);
        assert_eq!(
            nested.matches("/v1/tenants/%zz"),
            Some(vec![("tenant.id", "%zz".to_owned())]),
            "bound as sent, for the service to refuse"
        );
        assert_eq!(
            nested.matches("/v1/tenants/%+5"),
            Some(vec![("tenant.id", "%+5".to_owned())])
        );

        let collection = t("/v1/tenants:resolve");
        assert_eq!(collection.matches("/v1/tenants:resolve"), Some(vec![]));
        assert_eq!(t("/v1/tenants").matches("/v1/tenants:resolve"), None);
        assert_eq!(
            t("/v1/flags/{flag_key=*}").variables().collect::<Vec<_>>(),
            ["flag_key"]
        );
    }

    #[test]
    fn unsupported_templates_are_refused() {
        for bad in [
            "v1/x",
            "/v1/{name=**}",
            "/v1/{name=a/*}",
            "/v1/**",
            "/v1/{}",
            "/v1/x:",
            "/v1//x",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}

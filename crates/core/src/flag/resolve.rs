//! One evaluation of one flag, in OpenFeature's terms: the value, the
//! variant, the reason and, when the rule fails, flagd's error code.
//!
//! The precedence, first match wins: the replica's `env` override, a
//! disabled flag (no value), the tenant's override, the targeting rule, the
//! default variant. The rule sees the caller's context with `tenantId` set
//! to the tenant evaluated for and flagd's `$flagd` enrichment; from there
//! on the steps are flagd's (`core/pkg/evaluator/json.go`).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{
    EnvOverrides, FlagDef, STORED_VARIANT, ValueSource,
    targeting::logic::{self, Input, Trace},
};

pub use super::targeting::logic::TENANT_ATTRIBUTE;

/// OpenFeature's reason for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The flag has no rule: every context gets this value.
    Static,
    /// The default variant (or none) after the rule picked nothing.
    Default,
    /// The rule (or the tenant's override) picked the value.
    TargetingMatch,
    /// The flag is disabled.
    Disabled,
    /// The rule failed.
    Error,
}

impl Reason {
    /// OpenFeature's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::Default => "DEFAULT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

/// flagd's error code of a failed rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    /// The rule could not be evaluated (flagd's `PARSE_ERROR`).
    Parse,
    /// The rule named no variant of the flag (flagd's `GENERAL`).
    General,
}

impl RuleError {
    /// OpenFeature's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleError::Parse => "PARSE_ERROR",
            RuleError::General => "GENERAL",
        }
    }
}

/// The answer of one evaluation; its value and variant's name are borrowed
/// from the flag's definition (or the override) until the caller keeps them
/// ([`Resolution::into_owned`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution<'d> {
    /// The value (`Null`: none; the caller's own default applies).
    pub value: Cow<'d, Value>,
    /// The variant's name (`env` and `tenant` for those overrides).
    pub variant: Option<Cow<'d, str>>,
    /// Where the value comes from.
    pub source: ValueSource,
    /// OpenFeature's reason.
    pub reason: Reason,
    /// Why the rule failed, when it did.
    pub error: Option<(RuleError, String)>,
}

impl Resolution<'_> {
    /// The answer, owning its value and variant's name.
    pub fn into_owned(self) -> Resolution<'static> {
        Resolution {
            value: Cow::Owned(self.value.into_owned()),
            variant: self.variant.map(|v| Cow::Owned(v.into_owned())),
            source: self.source,
            reason: self.reason,
            error: self.error,
        }
    }
}

/// A flag's answer for one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The flag's key.
    pub key: String,
    /// The value, variant, reason and source.
    pub resolution: Resolution<'static>,
    /// The flag's metadata (with `source` for an `env` or tenant override).
    pub metadata: Map<String, Value>,
    /// Whether another context could get another answer from a tenant's
    /// override (some tenant overrides the flag).
    pub overridden: bool,
    /// The revision the value is at.
    pub revision: i64,
    /// The tenant it was evaluated for, if any.
    pub tenant: Option<String>,
    /// The rule's steps, when asked for.
    pub explanation: Explanation,
}

/// What `explain` asks for: the steps the rule took.
pub type Explanation = Vec<logic::Step>;

/// Evaluates `def` for `tenant` (whose override of it is `tenant_value`) in
/// `context`, at `now_s` (Unix seconds, `$flagd.timestamp`). With `trace`,
/// the rule's steps are recorded in it.
pub fn resolve<'d>(
    env: &'d EnvOverrides,
    def: &'d FlagDef,
    tenant: Option<&str>,
    tenant_value: Option<&'d Value>,
    context: &Map<String, Value>,
    now_s: i64,
    trace: Option<&mut Explanation>,
) -> Resolution<'d> {
    if let Some(v) = env.get(def) {
        return fixed(v, "env", ValueSource::Env, Reason::Static);
    }
    if def.status == super::Status::Disabled {
        return Resolution {
            value: Cow::Owned(Value::Null),
            variant: None,
            source: ValueSource::Disabled,
            reason: Reason::Disabled,
            error: None,
        };
    }
    if let Some(v) = tenant_value {
        return fixed(v, "tenant", ValueSource::Tenant, Reason::TargetingMatch);
    }
    let mut reason = Reason::Static;
    if let Some(rule) = def
        .targeting
        .as_ref()
        .filter(|r| !is_empty_rule(r.source()))
    {
        let tr = Trace::new(trace.is_some());
        let result = rule.program().eval(
            Input {
                flag_key: &def.key,
                context,
                tenant,
                now_s,
                bucketing: env.bucketing(),
            },
            &tr,
        );
        let picked = match result {
            Err(e) => Err(e),
            Ok(v) if v.is_null() => Ok(None),
            Ok(v) => Ok(Some(v)),
        };
        if let Some(out) = trace {
            *out = tr.into_steps();
        }
        match picked {
            Err(e) => return failed(RuleError::Parse, e.0),
            Ok(None) => reason = Reason::Default,
            Ok(Some(picked)) => {
                let name = variant_name(&picked);
                return match def.variants.get_key_value(name.as_ref()) {
                    Some((name, v)) => Resolution {
                        value: Cow::Borrowed(v),
                        variant: Some(Cow::Borrowed(name)),
                        source: ValueSource::Targeting,
                        reason: Reason::TargetingMatch,
                        error: None,
                    },
                    None => failed(
                        RuleError::General,
                        format!("the rule picked {name:?}, which is not a variant of the flag"),
                    ),
                };
            }
        }
    }
    match def.default_variant_value() {
        Some((name, v)) => Resolution {
            value: Cow::Borrowed(v),
            variant: Some(Cow::Borrowed(name)),
            source: if name == STORED_VARIANT {
                ValueSource::Store
            } else {
                ValueSource::Default
            },
            reason,
            error: None,
        },
        None => Resolution {
            value: Cow::Owned(Value::Null),
            variant: None,
            source: ValueSource::Default,
            reason: Reason::Default,
            error: None,
        },
    }
}

/// flagd skips a rule written as `{}`.
fn is_empty_rule(v: &Value) -> bool {
    matches!(v, Value::Object(o) if o.is_empty())
}

/// flagd reads the rule's result as JSON with the quotes taken out.
fn variant_name(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Number(n) => Cow::Owned(logic::number_text(n)),
        other => Cow::Owned(other.to_string().replace('"', "")),
    }
}

fn fixed<'d>(
    value: &'d Value,
    variant: &'static str,
    source: ValueSource,
    reason: Reason,
) -> Resolution<'d> {
    Resolution {
        value: Cow::Borrowed(value),
        variant: Some(Cow::Borrowed(variant)),
        source,
        reason,
        error: None,
    }
}

fn failed(code: RuleError, message: String) -> Resolution<'static> {
    Resolution {
        value: Cow::Owned(Value::Null),
        variant: None,
        source: ValueSource::Error,
        reason: Reason::Error,
        error: Some((code, message)),
    }
}

/// The current time as `$flagd.timestamp` has it.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

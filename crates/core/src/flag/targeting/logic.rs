//! flagd's dialect of JsonLogic, compiled once and evaluated many times.
//!
//! A rule is compiled from its JSON into an [`Expr`] tree when a flag is
//! written or loaded; an evaluation walks the tree over the caller's context
//! and never parses JSON. The semantics are those of the library flagd (Go)
//! uses (`diegoholiveira/jsonlogic` v3): `{}` is falsy, `null` equals only
//! `null`, two strings compare as strings and anything else as numbers; and
//! flagd's own operations (`fractional`, `sem_ver`, `starts_with`,
//! `ends_with`) answer `null` where their input is not what they take.

use serde_json::{Map, Value};

use super::{fractional, semver};

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A value written in the rule (arrays of expressions are [`Expr::List`]).
    Literal(Value),
    /// An array whose elements are rules.
    List(Vec<Expr>),
    /// `{"var": path}` or `{"var": [path, default]}`: `path` split at dots.
    Var(Vec<String>, Option<Box<Expr>>),
    /// Any other operation, its arguments compiled.
    Op(Op, Vec<Expr>),
    /// An `if` or a `fractional` at a JSON pointer of the rule, whose
    /// choice an explanation records.
    Traced(String, Box<Expr>),
    /// A stored rule this release does not compile: every evaluation fails.
    Invalid(String),
}

/// The operations flagd's targeting knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    If,
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
    Not,
    Truthy,
    And,
    Or,
    In,
    Cat,
    StartsWith,
    EndsWith,
    SemVer,
    Fractional,
}

impl Op {
    fn named(name: &str) -> Option<Op> {
        Some(match name {
            "if" | "?:" => Op::If,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "===" => Op::StrictEq,
            "!==" => Op::StrictNe,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "!" => Op::Not,
            "!!" => Op::Truthy,
            "and" => Op::And,
            "or" => Op::Or,
            "in" => Op::In,
            "cat" => Op::Cat,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            "sem_ver" => Op::SemVer,
            "fractional" => Op::Fractional,
            _ => return None,
        })
    }
}

/// Why a rule does not compile: where (a JSON pointer into the rule) and
/// what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub at: String,
    pub message: String,
}

/// Compiles `rule`, naming positions from `at` (a JSON pointer).
pub fn compile(rule: &Value, at: &str) -> Result<Expr, CompileError> {
    match rule {
        Value::Array(items) => Ok(Expr::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| compile(v, &format!("{at}/{i}")))
                .collect::<Result<_, _>>()?,
        )),
        // An object of one key is an operation; any other is a value.
        Value::Object(m) if m.len() == 1 => {
            let (name, args) = m.iter().next().expect("one key");
            let here = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
            let args: Vec<&Value> = match args {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            if name == "var" {
                return compile_var(&args, &here);
            }
            let op = Op::named(name).ok_or_else(|| CompileError {
                at: at.to_owned(),
                message: format!("unknown operation {name:?}"),
            })?;
            let args = args
                .iter()
                .enumerate()
                .map(|(i, v)| compile(v, &format!("{here}/{i}")))
                .collect::<Result<_, _>>()?;
            let e = Expr::Op(op, args);
            Ok(if matches!(op, Op::If | Op::Fractional) {
                Expr::Traced(at.to_owned(), Box::new(e))
            } else {
                e
            })
        }
        other => Ok(Expr::Literal(other.clone())),
    }
}

fn compile_var(args: &[&Value], at: &str) -> Result<Expr, CompileError> {
    let path = match args.first() {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => s.split('.').map(str::to_owned).collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(_) => {
            return Err(CompileError {
                at: at.to_owned(),
                message: "var takes a path: a string or a number".into(),
            });
        }
    };
    let default = match args.get(1) {
        Some(d) => Some(Box::new(compile(d, &format!("{at}/1"))?)),
        None => None,
    };
    Ok(Expr::Var(path, default))
}

/// What an evaluation needs besides the context: the flag's key (for
/// `fractional`'s default bucketing value) and where to record its steps.
pub struct Scope<'a> {
    pub flag_key: &'a str,
    pub data: &'a Value,
    pub trace: &'a Trace,
}

/// One choice a rule made, for `explain`.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An `if` at `at` took the branch after condition `condition` (0-based),
    /// or its `else` (`None`; `null` when it has none).
    If {
        at: String,
        condition: Option<usize>,
    },
    /// A `fractional` at `at` hashed `value` into `bucket` of
    /// `0..Σweights` and picked `picked` (`Null`: no bucketing value).
    Fractional {
        at: String,
        value: String,
        bucket: u64,
        weights: Vec<(Value, u32)>,
        picked: Value,
    },
}

/// The steps of one evaluation, when asked for (otherwise recording costs
/// nothing).
#[derive(Debug, Default)]
pub struct Trace(Option<std::cell::RefCell<Vec<Step>>>);

impl Trace {
    /// A trace that records when `on`.
    pub fn new(on: bool) -> Trace {
        Trace(on.then(Default::default))
    }

    fn on(&self) -> bool {
        self.0.is_some()
    }

    fn push(&self, s: Step) {
        if let Some(steps) = &self.0 {
            steps.borrow_mut().push(s);
        }
    }

    /// The steps recorded, in evaluation order.
    pub fn into_steps(self) -> Vec<Step> {
        self.0.map(|s| s.into_inner()).unwrap_or_default()
    }
}

/// An evaluation that cannot go on (flagd's PARSE_ERROR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

/// Evaluates `e` in `scope`.
pub fn eval(e: &Expr, scope: &Scope<'_>) -> Result<Value, EvalError> {
    match e {
        Expr::Literal(v) => Ok(v.clone()),
        Expr::List(items) => Ok(Value::Array(
            items
                .iter()
                .map(|i| eval(i, scope))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Var(path, default) => {
            let mut at = scope.data;
            for part in path {
                let next = match at {
                    Value::Object(m) => m.get(part),
                    Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                match next {
                    Some(v) => at = v,
                    None => return default.as_ref().map_or(Ok(Value::Null), |d| eval(d, scope)),
                }
            }
            if at.is_null()
                && let Some(d) = default
            {
                return eval(d, scope);
            }
            Ok(at.clone())
        }
        Expr::Op(op, args) => apply(*op, args, scope, None),
        Expr::Invalid(why) => Err(EvalError(why.clone())),
        Expr::Traced(at, inner) => match (scope.trace.on(), inner.as_ref()) {
            (true, Expr::Op(op, args)) => apply(*op, args, scope, Some(at)),
            _ => eval(inner, scope),
        },
    }
}

fn apply(
    op: Op,
    args: &[Expr],
    scope: &Scope<'_>,
    traced: Option<&String>,
) -> Result<Value, EvalError> {
    let arg = |i: usize| args.get(i).map_or(Ok(Value::Null), |a| eval(a, scope));
    match op {
        Op::If => {
            let mut i = 0;
            while i + 1 < args.len() {
                if truthy(&eval(&args[i], scope)?) {
                    if let Some(at) = traced {
                        scope.trace.push(Step::If {
                            at: at.clone(),
                            condition: Some(i / 2),
                        });
                    }
                    return eval(&args[i + 1], scope);
                }
                i += 2;
            }
            if let Some(at) = traced {
                scope.trace.push(Step::If {
                    at: at.clone(),
                    condition: None,
                });
            }
            if i < args.len() {
                eval(&args[i], scope)
            } else {
                Ok(Value::Null)
            }
        }
        Op::And | Op::Or => {
            let mut last = Value::Null;
            for a in args {
                last = eval(a, scope)?;
                if truthy(&last) != (op == Op::And) {
                    return Ok(last);
                }
            }
            Ok(last)
        }
        Op::Not => Ok(Value::Bool(!truthy(&arg(0)?))),
        Op::Truthy => Ok(Value::Bool(truthy(&arg(0)?))),
        Op::Eq => Ok(Value::Bool(loose_eq(&arg(0)?, &arg(1)?))),
        Op::Ne => Ok(Value::Bool(!loose_eq(&arg(0)?, &arg(1)?))),
        Op::StrictEq => Ok(Value::Bool(strict_eq(&arg(0)?, &arg(1)?))),
        Op::StrictNe => Ok(Value::Bool(!strict_eq(&arg(0)?, &arg(1)?))),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let vals: Vec<Value> = args
                .iter()
                .map(|a| eval(a, scope))
                .collect::<Result<_, _>>()?;
            // `{"<": [a, b, c]}` is a < b < c (between).
            Ok(Value::Bool(
                vals.windows(2).all(|w| compare(op, &w[0], &w[1])),
            ))
        }
        Op::In => {
            let (needle, hay) = (arg(0)?, arg(1)?);
            Ok(Value::Bool(match (&needle, &hay) {
                (Value::String(n), Value::String(h)) => h.contains(n.as_str()),
                (_, Value::String(_)) => {
                    return Err(EvalError(
                        "in: a string is searched for a string only".into(),
                    ));
                }
                (_, Value::Array(items)) => items.iter().any(|i| loose_eq(&needle, i)),
                _ => false,
            }))
        }
        Op::Cat => {
            let mut out = String::new();
            for a in args {
                match eval(a, scope)? {
                    Value::String(s) => out.push_str(&s),
                    Value::Number(n) => out.push_str(&number_text(&n)),
                    Value::Null => {}
                    other => return Err(EvalError(format!("cat cannot join {other}"))),
                }
            }
            Ok(Value::String(if args.len() > 1 {
                out.trim().to_owned()
            } else {
                out
            }))
        }
        Op::StartsWith | Op::EndsWith => {
            if args.len() != 2 {
                return Ok(Value::Null);
            }
            Ok(match (arg(0)?, arg(1)?) {
                (Value::String(s), Value::String(p)) => Value::Bool(if op == Op::StartsWith {
                    s.starts_with(&p)
                } else {
                    s.ends_with(&p)
                }),
                _ => Value::Null,
            })
        }
        Op::SemVer => {
            if args.len() != 3 {
                return Ok(Value::Null);
            }
            let text = |v: Value| match v {
                Value::String(s) => Some(s),
                Value::Number(n) => Some(number_text(&n)),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            let (l, o, r) = (text(arg(0)?), arg(1)?, text(arg(2)?));
            Ok(match (l, o, r) {
                (Some(l), Value::String(o), Some(r)) => {
                    semver::sem_ver(&l, &o, &r).map_or(Value::Null, Value::Bool)
                }
                _ => Value::Null,
            })
        }
        Op::Fractional => fractional_op(args, scope, traced),
    }
}

/// flagd's `fractional`: the bucketing value (a string first argument, else
/// flag key + `targetingKey`), then `[variant, weight?]` entries.
fn fractional_op(
    args: &[Expr],
    scope: &Scope<'_>,
    traced: Option<&String>,
) -> Result<Value, EvalError> {
    let mut vals: Vec<Value> = args
        .iter()
        .map(|a| eval(a, scope))
        .collect::<Result<_, _>>()?;
    let value = match vals.first() {
        Some(Value::String(s)) => {
            let s = s.clone();
            vals.remove(0);
            s
        }
        first => {
            if matches!(first, Some(Value::Null)) {
                vals.remove(0);
            }
            match scope.data.get("targetingKey") {
                Some(Value::String(k)) if !k.is_empty() => format!("{}{k}", scope.flag_key),
                _ => return Ok(Value::Null),
            }
        }
    };
    let mut variants = Vec::with_capacity(vals.len());
    let mut weights = Vec::with_capacity(vals.len());
    let mut total: u64 = 0;
    for entry in &vals {
        let Value::Array(e) = entry else {
            return Ok(Value::Null);
        };
        let variant = match e.first() {
            Some(v @ (Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null)) => v,
            _ => return Ok(Value::Null),
        };
        let weight = match e.get(1) {
            None | Some(Value::Null) => 1,
            // flagd reads a weight as a float64 and truncates it.
            Some(Value::Number(n)) => match n.as_f64() {
                Some(w) if w > f64::from(i32::MAX) => return Ok(Value::Null),
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Some(w) => w.max(0.0) as u32,
                None => return Ok(Value::Null),
            },
            Some(_) => return Ok(Value::Null),
        };
        total += u64::from(weight);
        if total > i32::MAX as u64 {
            return Ok(Value::Null);
        }
        variants.push(variant.clone());
        weights.push(weight);
    }
    let (point, picked) = match fractional::bucket(&value, &weights) {
        Some((point, i)) => (point, variants[i].clone()),
        None => (0, Value::Null),
    };
    if let Some(at) = traced {
        scope.trace.push(Step::Fractional {
            at: at.clone(),
            value,
            bucket: point,
            weights: variants.into_iter().zip(weights).collect(),
            picked: picked.clone(),
        });
    }
    Ok(picked)
}

/// JsonLogic truthiness as flagd's library has it: `{}` and `[]` are falsy.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A value as a number for comparison: null 0, booleans 1 and 0, strings
/// parsed (empty 0, unparseable NaN), arrays and objects NaN.
fn number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) if s.trim().is_empty() => 0.0,
        Value::String(s) => s.trim().parse().unwrap_or(f64::NAN),
        Value::Array(_) | Value::Object(_) => f64::NAN,
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(x), Value::String(y)) => x == y,
        _ => number(a) == number(b),
    }
}

fn strict_eq(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b) && loose_eq(a, b)
}

fn compare(op: Op, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering::*;
    let ord = match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => number(a).partial_cmp(&number(b)),
    };
    matches!(
        (op, ord),
        (Op::Lt, Some(Less))
            | (Op::Le, Some(Less | Equal))
            | (Op::Gt, Some(Greater))
            | (Op::Ge, Some(Greater | Equal))
    )
}

/// A number as Go's `%v` writes a float64 (`1`, `1.5`).
pub fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => n.to_string(),
    }
}

/// The context with flagd's enrichment: `$flagd.flagKey` and
/// `$flagd.timestamp` (Unix seconds), replacing any the caller sent.
pub fn enrich(context: &Map<String, Value>, flag_key: &str, now_s: i64) -> Value {
    let mut data = context.clone();
    data.insert(
        "$flagd".into(),
        serde_json::json!({ "flagKey": flag_key, "timestamp": now_s }),
    );
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(rule: Value, flag_key: &str, context: Value) -> Result<Value, EvalError> {
        let e = compile(&rule, "/targeting").unwrap();
        let Value::Object(ctx) = context else {
            panic!("an object")
        };
        let data = enrich(&ctx, flag_key, 1_700_000_000);
        eval(
            &e,
            &Scope {
                flag_key,
                data: &data,
                trace: &Trace::default(),
            },
        )
    }

    #[test]
    fn fractional_with_an_expression_and_shorthand_match_the_testbed() {
        let rule = json!({"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]},
            ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]});
        for (name, want) in [
            ("jack", "hearts"),
            ("queen", "spades"),
            ("ten", "clubs"),
            ("nine", "diamonds"),
            ("3", "clubs"),
        ] {
            let got = run(
                rule.clone(),
                "fractional-flag",
                json!({"user": {"name": name}}),
            )
            .unwrap();
            assert_eq!(got, json!(want), "{name}");
        }
        let short = json!({"fractional": [["heads"], ["tails", 1]]});
        assert_eq!(
            run(
                short.clone(),
                "fractional-flag-shorthand",
                json!({"targetingKey": "jon@company.com"})
            )
            .unwrap(),
            json!("heads")
        );
        assert_eq!(
            run(
                short.clone(),
                "fractional-flag-shorthand",
                json!({"targetingKey": "jane@company.com"})
            )
            .unwrap(),
            json!("tails")
        );
        assert_eq!(
            run(short, "fractional-flag-shorthand", json!({})).unwrap(),
            Value::Null,
            "no targeting key: null"
        );
    }

    #[test]
    fn comparisons_follow_flagds_library() {
        assert_eq!(
            run(json!({"==": [1, "1"]}), "f", json!({})).unwrap(),
            json!(true)
        );
        assert_eq!(
            run(json!({"==": [null, 0]}), "f", json!({})).unwrap(),
            json!(false)
        );
        assert_eq!(
            run(json!({"===": [1, "1"]}), "f", json!({})).unwrap(),
            json!(false)
        );
        assert_eq!(
            run(json!({"<": ["a", "b"]}), "f", json!({})).unwrap(),
            json!(true)
        );
        assert_eq!(
            run(json!({"<": [1, {"var": "n"}, 3]}), "f", json!({"n": 2})).unwrap(),
            json!(true)
        );
        assert_eq!(
            run(json!({"!": [{}]}), "f", json!({})).unwrap(),
            json!(true),
            "an empty object is falsy"
        );
        assert_eq!(
            run(
                json!({"in": ["@example.com", {"var": "email"}]}),
                "f",
                json!({"email": "a@example.com"})
            )
            .unwrap(),
            json!(true)
        );
        assert_eq!(
            run(json!({"var": ["missing", "dflt"]}), "f", json!({})).unwrap(),
            json!("dflt")
        );
        assert_eq!(
            run(
                json!({"var": "$flagd.flagKey"}),
                "my-flag",
                json!({"$flagd": {"flagKey": "spoofed"}})
            )
            .unwrap(),
            json!("my-flag")
        );
    }

    #[test]
    fn flagds_operations_answer_null_on_wrong_input() {
        assert_eq!(
            run(
                json!({"starts_with": [{"var": "n"}, "1"]}),
                "f",
                json!({"n": 1})
            )
            .unwrap(),
            Value::Null
        );
        assert_eq!(
            run(
                json!({"ends_with": [{"var": "s"}, "z"]}),
                "f",
                json!({"s": "abz"})
            )
            .unwrap(),
            json!(true)
        );
        assert_eq!(
            run(
                json!({"sem_ver": [{"var": "v"}, ">", "1.1"]}),
                "f",
                json!({"v": 1.2})
            )
            .unwrap(),
            json!(true)
        );
        assert_eq!(
            run(
                json!({"sem_ver": [{"var": "v"}, "="]}),
                "f",
                json!({"v": "1.0.0"})
            )
            .unwrap(),
            Value::Null
        );
    }

    #[test]
    fn unknown_operations_do_not_compile_and_say_where() {
        let err = compile(
            &json!({"if": [{"nope": [1]}, "a", "b"]}),
            "/flags/x/targeting",
        )
        .unwrap_err();
        assert_eq!(err.at, "/flags/x/targeting/if/0");
        assert!(err.message.contains("nope"), "{err:?}");
    }
}

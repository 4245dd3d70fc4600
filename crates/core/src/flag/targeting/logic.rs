//! flagd's dialect of JsonLogic, compiled once and evaluated many times.
//!
//! A rule is compiled from its JSON into an [`Expr`] tree when a flag is
//! written or loaded; an evaluation walks the tree over the caller's context
//! and never parses JSON. The semantics are those of the library flagd (Go)
//! uses (`diegoholiveira/jsonlogic` v3): `{}` is falsy, `null` equals only
//! `null`, two strings compare as strings and anything else as numbers; and
//! flagd's own operations (`fractional`, `sem_ver`, `starts_with`,
//! `ends_with`) answer `null` where their input is not what they take.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{fractional, semver};

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A value written in the rule (arrays of expressions are [`Expr::List`]).
    Literal(Value),
    /// An array whose elements are rules.
    List(Vec<Expr>),
    /// `{"var": "name"}` of a context attribute: read from its slot, bound
    /// once per evaluation (see [`Program`]).
    Attr(u32),
    /// Any other `{"var": path}` or `{"var": [path, default]}`: `path`
    /// split at dots.
    Var(Path, Option<Box<Expr>>),
    /// Any other operation, its arguments compiled.
    Op(Op, Vec<Expr>),
    /// An `if` or a `fractional` at a JSON pointer of the rule, whose
    /// choice an explanation records.
    Traced(String, Box<Expr>),
    /// A stored rule this release does not compile: every evaluation fails.
    Invalid(String),
    /// A `fractional` whose entries are written in the rule: checked and
    /// summed once, when compiled.
    Fractional(Box<Split>),
    /// A `sem_ver` whose operator and version are written in the rule:
    /// both read once, when compiled.
    SemVer(Box<(Expr, semver::Cmp, semver::Owned)>),
}

/// A `fractional` with its entries known at compile time.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The bucketing value's expression, if the rule gives one (it must
    /// evaluate to a string; null means flag key + `targetingKey`).
    by: Option<Expr>,
    /// The variants, in the rule's order.
    variants: Vec<Value>,
    /// Their weights.
    weights: Vec<u32>,
    /// Where the rule has it (for `explain`).
    at: String,
    /// The arguments as written: a bucketing expression that turns out to
    /// be an array is an entry, as in the general case.
    args: Vec<Expr>,
}

/// A `var` path, its first part classified when compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    root: Root,
    rest: Vec<String>,
}

/// Where a `var` path starts.
#[derive(Debug, Clone, PartialEq)]
enum Root {
    /// `""`: the whole data.
    Whole,
    /// `tenantId`: the tenant evaluated for (else the context's, in this
    /// slot).
    Tenant(u32),
    /// `$flagd`: flagd's enrichment.
    Flagd,
    /// Any other attribute of the context, by slot.
    Context(u32),
}

/// A compiled rule: its expression, and the context attributes it reads by
/// name, each given a slot. An evaluation binds the slots in one pass over
/// the context, so reading an attribute is an index, not a lookup by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    expr: Expr,
    /// The attributes read, sorted by name as the context is, with their
    /// slots.
    attrs: Vec<(String, u32)>,
    /// The slot of `targetingKey` (`fractional`'s default bucketing value),
    /// when the rule has a `fractional`.
    key: Option<u32>,
}

/// What an evaluation reads: the flag's key (`$flagd.flagKey`,
/// `fractional`'s default bucketing value), the caller's context, the
/// tenant evaluated for (the rule's `tenantId`, whatever the context says),
/// the time (`$flagd.timestamp`) and the server's `fractional` bucketing.
/// Nothing is copied to make it: attributes are read where they are.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub flag_key: &'a str,
    pub context: &'a Map<String, Value>,
    pub tenant: Option<&'a str>,
    pub now_s: i64,
    pub bucketing: fractional::Bucketing,
}

/// Slots bound on the stack up to this many attributes (a rule reading more
/// binds them in a vector).
const INLINE_SLOTS: usize = 8;

impl Program {
    /// A stored rule this release does not compile: every evaluation fails.
    pub fn invalid(why: String) -> Program {
        Program {
            expr: Expr::Invalid(why),
            attrs: Vec::new(),
            key: None,
        }
    }

    /// The compiled expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Evaluates the rule for `input`, recording its choices in `trace`;
    /// values written in the rule or read from the context are borrowed,
    /// not copied.
    pub fn eval<'a>(&'a self, input: Input<'a>, trace: &Trace) -> Out<'a> {
        let mut inline = [None; INLINE_SLOTS];
        let mut spilled;
        let slots: &mut [Option<&'a Value>] = if self.attrs.len() <= INLINE_SLOTS {
            &mut inline[..self.attrs.len()]
        } else {
            spilled = vec![None; self.attrs.len()];
            &mut spilled
        };
        self.bind(input.context, slots);
        let key = match self.key.and_then(|k| slots[as_index(k)]) {
            Some(Value::String(k)) if !k.is_empty() => Some(k.as_str()),
            _ => None,
        };
        eval(
            &self.expr,
            &Scope {
                input,
                slots,
                key,
                trace,
            },
        )
    }

    /// Fills `slots` from `context`: a merge of the two sorted lists when
    /// the context is small next to the rule's attributes, else a lookup
    /// per attribute.
    fn bind<'a>(&self, context: &'a Map<String, Value>, slots: &mut [Option<&'a Value>]) {
        if context.len() > 4 * self.attrs.len() + 8 {
            for (name, slot) in &self.attrs {
                slots[as_index(*slot)] = context.get(name);
            }
            return;
        }
        let mut want = self.attrs.iter();
        let Some(mut next) = want.next() else {
            return;
        };
        for (name, value) in context {
            loop {
                match order(next.0.as_bytes(), name.as_bytes()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => slots[as_index(next.1)] = Some(value),
                    std::cmp::Ordering::Greater => break,
                }
                match want.next() {
                    Some(n) => next = n,
                    None => return,
                }
            }
        }
    }
}

/// Byte order, as the context's map sorts its keys. Names usually differ in
/// their first byte, which is compared here; only names that share it are
/// compared whole.
#[inline]
fn order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// Compiling: the attributes met so far, each with its slot.
#[derive(Default)]
struct Compiler {
    attrs: Vec<String>,
    key: Option<u32>,
}

impl Compiler {
    fn slot(&mut self, name: &str) -> u32 {
        let i = match self.attrs.iter().position(|a| a == name) {
            Some(i) => i,
            None => {
                self.attrs.push(name.to_owned());
                self.attrs.len() - 1
            }
        };
        u32::try_from(i).expect("fewer attributes than a rule's size limit allows")
    }

    fn path(&mut self, parts: Vec<String>) -> Path {
        let mut parts = parts.into_iter();
        let root = match parts.next() {
            None => Root::Whole,
            Some(p) if p == TENANT_ATTRIBUTE => Root::Tenant(self.slot(&p)),
            Some(p) if p == "$flagd" => Root::Flagd,
            Some(p) => Root::Context(self.slot(&p)),
        };
        Path {
            root,
            rest: parts.collect(),
        }
    }
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
pub fn compile(rule: &Value, at: &str) -> Result<Program, CompileError> {
    let mut c = Compiler::default();
    let expr = c.expr(rule, at)?;
    let key = c.key;
    let mut attrs: Vec<(String, u32)> = c.attrs.into_iter().zip(0..).collect();
    attrs.sort_unstable();
    Ok(Program { expr, attrs, key })
}

impl Compiler {
    fn expr(&mut self, rule: &Value, at: &str) -> Result<Expr, CompileError> {
        match rule {
            Value::Array(items) => {
                let items: Vec<Expr> = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.expr(v, &format!("{at}/{i}")))
                    .collect::<Result<_, _>>()?;
                // A list of values is a value (read in place, never rebuilt).
                if items.iter().all(|e| matches!(e, Expr::Literal(_))) {
                    return Ok(Expr::Literal(Value::Array(
                        items
                            .into_iter()
                            .map(|e| match e {
                                Expr::Literal(v) => v,
                                _ => Value::Null,
                            })
                            .collect(),
                    )));
                }
                Ok(Expr::List(items))
            }
            // An object of one key is an operation; any other is a value.
            Value::Object(m) if m.len() == 1 => {
                let (name, args) = m.iter().next().expect("one key");
                let here = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
                let args: Vec<&Value> = match args {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                if name == "var" {
                    return self.var(&args, &here);
                }
                let op = Op::named(name).ok_or_else(|| CompileError {
                    at: at.to_owned(),
                    message: format!("unknown operation {name:?}"),
                })?;
                let args: Vec<Expr> = args
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.expr(v, &format!("{here}/{i}")))
                    .collect::<Result<_, _>>()?;
                if op == Op::Fractional {
                    // Its default bucketing value.
                    self.key = Some(self.slot(TARGETING_KEY));
                    if let Some(split) = split(&args, at) {
                        return Ok(Expr::Fractional(Box::new(split)));
                    }
                }
                if op == Op::SemVer
                    && let [
                        left,
                        Expr::Literal(Value::String(cmp)),
                        Expr::Literal(right),
                    ] = args.as_slice()
                    && let Some(cmp) = semver::Cmp::named(cmp)
                    && let Some(right) = version_text(right).and_then(|r| semver::Owned::parse(&r))
                {
                    return Ok(Expr::SemVer(Box::new((left.clone(), cmp, right))));
                }
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

    fn var(&mut self, args: &[&Value], at: &str) -> Result<Expr, CompileError> {
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
            Some(d) => Some(Box::new(self.expr(d, &format!("{at}/1"))?)),
            None => None,
        };
        Ok(match (self.path(path), default) {
            (
                Path {
                    root: Root::Context(slot),
                    rest,
                },
                None,
            ) if rest.is_empty() => Expr::Attr(slot),
            (path, default) => Expr::Var(path, default),
        })
    }
}

/// The attribute `fractional` buckets by when the rule gives no value.
const TARGETING_KEY: &str = "targetingKey";

/// A `fractional` whose entries are all written in the rule and valid (an
/// optional bucketing expression first, then `[variant, weight?]` arrays),
/// precompiled; anything else is left to the general case, which answers
/// as flagd does when an entry is not one.
fn split(args: &[Expr], at: &str) -> Option<Split> {
    let (by, entries) = match args.first() {
        Some(Expr::Literal(Value::Array(_))) | None => (None, args),
        Some(first) => (Some(first.clone()), &args[1..]),
    };
    let mut variants = Vec::with_capacity(entries.len());
    let mut weights = Vec::with_capacity(entries.len());
    let mut total: u64 = 0;
    for e in entries {
        let Expr::Literal(Value::Array(entry)) = e else {
            return None;
        };
        let variant = match entry.first() {
            Some(v @ (Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null)) => v,
            _ => return None,
        };
        let weight = weight(entry.get(1))?;
        total += u64::from(weight);
        if total > i32::MAX as u64 {
            return None;
        }
        variants.push(variant.clone());
        weights.push(weight);
    }
    Some(Split {
        by,
        variants,
        weights,
        at: at.to_owned(),
        args: args.to_vec(),
    })
}

/// An entry's weight as flagd reads it (an integer; none is 1, negative is
/// 0); `None` when flagd gives up on the rule (a fraction, too large).
fn weight(w: Option<&Value>) -> Option<u32> {
    match w {
        None | Some(Value::Null) => Some(1),
        // flagd (since its #1909): weights must be integers.
        Some(Value::Number(n)) => match n.as_f64() {
            Some(w) if w.fract() != 0.0 || w > f64::from(i32::MAX) => None,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(w) => Some(w.max(0.0) as u32),
            None => None,
        },
        Some(_) => None,
    }
}

/// One evaluation's state: its input, the rule's attributes bound to
/// slots, the targeting key, and where to record the rule's choices.
struct Scope<'a, 't> {
    input: Input<'a>,
    slots: &'t [Option<&'a Value>],
    /// `targetingKey`, when it is a non-empty string.
    key: Option<&'a str>,
    trace: &'t Trace,
}

impl<'a> Scope<'a, '_> {
    /// The attribute in `slot` (null when the context does not have it).
    #[inline]
    fn attr(&self, slot: u32) -> &'a Value {
        self.slots[as_index(slot)].unwrap_or(&NULL)
    }
}

static NULL: Value = Value::Null;

#[inline]
fn as_index(slot: u32) -> usize {
    slot as usize
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

type Out<'a> = Result<Cow<'a, Value>, EvalError>;

fn owned<'a>(v: Value) -> Out<'a> {
    Ok(Cow::Owned(v))
}

/// Evaluates `e` in `scope`; values written in the rule or read from the
/// context are borrowed, not copied.
fn eval<'a>(e: &'a Expr, scope: &Scope<'a, '_>) -> Out<'a> {
    match e {
        Expr::Literal(v) => Ok(Cow::Borrowed(v)),
        Expr::Attr(slot) => Ok(Cow::Borrowed(scope.attr(*slot))),
        Expr::List(items) => owned(Value::Array(
            items
                .iter()
                .map(|i| eval(i, scope).map(Cow::into_owned))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Var(path, default) => match lookup(path, scope) {
            Some(v) if !v.is_null() => Ok(v),
            found => match default {
                Some(d) => eval(d, scope),
                None => Ok(found.unwrap_or(Cow::Owned(Value::Null))),
            },
        },
        Expr::Op(op, args) => apply(*op, args, scope, None),
        Expr::Invalid(why) => Err(EvalError(why.clone())),
        Expr::Fractional(split) => split_eval(split, scope),
        Expr::SemVer(c) => {
            let (left, cmp, right) = c.as_ref();
            let l = operand(left, scope)?;
            owned(match version_text(&l).as_deref().and_then(semver::parse) {
                Some(l) => Value::Bool(cmp.holds(&l, &right.version())),
                None => Value::Null,
            })
        }
        Expr::Traced(at, inner) => match (scope.trace.on(), inner.as_ref()) {
            (true, Expr::Op(op, args)) => apply(*op, args, scope, Some(at)),
            _ => eval(inner, scope),
        },
    }
}

/// Whether `e` is truthy, without making the value when only that is
/// asked (an `if`'s conditions): comparisons answer a bool, `and`/`or`/`!`
/// combine their operands' truth, and values read from the context are
/// looked at in place.
fn truth<'a>(e: &'a Expr, scope: &Scope<'a, '_>) -> Result<bool, EvalError> {
    let arg = |args: &'a [Expr], i: usize| match args.get(i) {
        Some(a) => operand(a, scope),
        None => Ok(Cow::Owned(Value::Null)),
    };
    match e {
        Expr::Literal(v) => Ok(truthy(v)),
        Expr::Attr(slot) => Ok(truthy(scope.attr(*slot))),
        Expr::Var(path, None) => Ok(lookup(path, scope).is_some_and(|v| truthy(&v))),
        Expr::Op(op, args) => match op {
            Op::And => {
                for a in args {
                    if !truth(a, scope)? {
                        return Ok(false);
                    }
                }
                Ok(!args.is_empty())
            }
            Op::Or => {
                for a in args {
                    if truth(a, scope)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Op::Not => Ok(!truth_of(args.first(), scope)?),
            Op::Truthy => truth_of(args.first(), scope),
            Op::Eq => Ok(loose_eq(&*arg(args, 0)?, &*arg(args, 1)?)),
            Op::Ne => Ok(!loose_eq(&*arg(args, 0)?, &*arg(args, 1)?)),
            Op::StrictEq => Ok(strict_eq(&*arg(args, 0)?, &*arg(args, 1)?)),
            Op::StrictNe => Ok(!strict_eq(&*arg(args, 0)?, &*arg(args, 1)?)),
            Op::StartsWith | Op::EndsWith if args.len() == 2 => {
                let (s, p) = (arg(args, 0)?, arg(args, 1)?);
                Ok(match (s.as_ref(), p.as_ref()) {
                    (Value::String(s), Value::String(p)) if *op == Op::StartsWith => {
                        s.starts_with(p.as_str())
                    }
                    (Value::String(s), Value::String(p)) => s.ends_with(p.as_str()),
                    _ => false,
                })
            }
            _ => Ok(truthy(&*apply(*op, args, scope, None)?)),
        },
        other => Ok(truthy(&*eval(other, scope)?)),
    }
}

/// An operation's operand: a value written in the rule or an attribute is
/// read here, without a call to [`eval`].
#[inline]
fn operand<'a>(e: &'a Expr, scope: &Scope<'a, '_>) -> Out<'a> {
    match e {
        Expr::Literal(v) => Ok(Cow::Borrowed(v)),
        Expr::Attr(slot) => Ok(Cow::Borrowed(scope.attr(*slot))),
        _ => eval(e, scope),
    }
}

fn truth_of<'a>(e: Option<&'a Expr>, scope: &Scope<'a, '_>) -> Result<bool, EvalError> {
    e.map_or(Ok(false), |e| truth(e, scope))
}

/// The data at `path`: the context with `tenantId` set to the tenant
/// evaluated for and flagd's `$flagd` (`flagKey`, `timestamp`) added.
fn lookup<'a>(path: &'a Path, scope: &Scope<'a, '_>) -> Option<Cow<'a, Value>> {
    let rest = path.rest.as_slice();
    let root: Cow<'a, Value> = match &path.root {
        Root::Whole => {
            // The whole data: made only when a rule asks for it.
            let mut data = scope.input.context.clone();
            if let Some(t) = scope.input.tenant {
                data.insert(TENANT_ATTRIBUTE.into(), Value::String(t.to_owned()));
            }
            data.insert("$flagd".into(), flagd(scope));
            return Some(Cow::Owned(Value::Object(data)));
        }
        Root::Tenant(slot) => match scope.input.tenant {
            Some(t) => Cow::Owned(Value::String(t.to_owned())),
            None => Cow::Borrowed(scope.slots[as_index(*slot)]?),
        },
        Root::Flagd => match rest {
            [k] if k == "flagKey" => {
                return Some(Cow::Owned(Value::String(scope.input.flag_key.to_owned())));
            }
            [k] if k == "timestamp" => return Some(Cow::Owned(Value::from(scope.input.now_s))),
            _ => Cow::Owned(flagd(scope)),
        },
        Root::Context(slot) => Cow::Borrowed(scope.slots[as_index(*slot)]?),
    };
    if rest.is_empty() {
        return Some(root);
    }
    match root {
        Cow::Borrowed(mut at) => {
            for part in rest {
                at = step(at, part)?;
            }
            Some(Cow::Borrowed(at))
        }
        Cow::Owned(v) => {
            let mut at = &v;
            for part in rest {
                at = step(at, part)?;
            }
            Some(Cow::Owned(at.clone()))
        }
    }
}

fn step<'v>(at: &'v Value, part: &str) -> Option<&'v Value> {
    match at {
        Value::Object(m) => m.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }
}

/// The context attribute that names the tenant: rules read the tenant
/// evaluated for from it, and an admin's OpenFeature context names the
/// tenant with it.
pub const TENANT_ATTRIBUTE: &str = "tenantId";

fn flagd(scope: &Scope<'_, '_>) -> Value {
    serde_json::json!({ "flagKey": scope.input.flag_key, "timestamp": scope.input.now_s })
}

fn apply<'a>(op: Op, args: &'a [Expr], scope: &Scope<'a, '_>, traced: Option<&String>) -> Out<'a> {
    let arg = |i: usize| match args.get(i) {
        Some(a) => operand(a, scope),
        None => Ok(Cow::Owned(Value::Null)),
    };
    let boolean = |b: bool| owned(Value::Bool(b));
    match op {
        Op::If => {
            let mut i = 0;
            while i + 1 < args.len() {
                if truth(&args[i], scope)? {
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
                owned(Value::Null)
            }
        }
        Op::And | Op::Or => {
            let mut last = Cow::Owned(Value::Null);
            for a in args {
                last = eval(a, scope)?;
                if truthy(&last) != (op == Op::And) {
                    return Ok(last);
                }
            }
            Ok(last)
        }
        Op::Not => boolean(!truthy(&*arg(0)?)),
        Op::Truthy => boolean(truthy(&*arg(0)?)),
        Op::Eq => boolean(loose_eq(&*arg(0)?, &*arg(1)?)),
        Op::Ne => boolean(!loose_eq(&*arg(0)?, &*arg(1)?)),
        Op::StrictEq => boolean(strict_eq(&*arg(0)?, &*arg(1)?)),
        Op::StrictNe => boolean(!strict_eq(&*arg(0)?, &*arg(1)?)),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            // `{"<": [a, b, c]}` is a < b < c (between); fewer than two
            // operands is false, more than three are not read (as flagd's
            // library does).
            if args.len() < 2 {
                return boolean(false);
            }
            let mut prev = operand(&args[0], scope)?;
            let mut all = true;
            for a in &args[1..args.len().min(3)] {
                let v = operand(a, scope)?;
                all &= compare(op, &prev, &v);
                prev = v;
            }
            boolean(all)
        }
        Op::In => {
            // `{"in": [{"var": "tenantId"}, [...]]}` is how rules pick
            // tenants: the tenant is compared where it is, not copied into a
            // value first.
            if let Some(t) = args.first().and_then(|a| tenant_of(a, scope)) {
                return boolean(match arg(1)?.as_ref() {
                    Value::String(h) => h.contains(t),
                    Value::Array(items) => in_array(Needle::Str(t), items)?,
                    _ => false,
                });
            }
            let (needle, hay) = (arg(0)?, arg(1)?);
            boolean(match (needle.as_ref(), hay.as_ref()) {
                (Value::String(n), Value::String(h)) => h.contains(n.as_str()),
                (_, Value::String(_)) => {
                    return Err(EvalError(
                        "in: a string is searched for a string only".into(),
                    ));
                }
                (n, Value::Array(items)) => in_array(Needle::Value(n), items)?,
                _ => false,
            })
        }
        Op::Cat => {
            let mut out = String::new();
            for a in args {
                match eval(a, scope)?.as_ref() {
                    Value::String(s) => out.push_str(s),
                    Value::Number(n) => out.push_str(&number_text(n)),
                    Value::Null => {}
                    other => return Err(EvalError(format!("cat cannot join {other}"))),
                }
            }
            owned(Value::String(if args.len() > 1 {
                out.trim().to_owned()
            } else {
                out
            }))
        }
        Op::StartsWith | Op::EndsWith => {
            if args.len() != 2 {
                return owned(Value::Null);
            }
            let (s, p) = (arg(0)?, arg(1)?);
            match (s.as_ref(), p.as_ref()) {
                (Value::String(s), Value::String(p)) => boolean(if op == Op::StartsWith {
                    s.starts_with(p.as_str())
                } else {
                    s.ends_with(p.as_str())
                }),
                _ => owned(Value::Null),
            }
        }
        Op::SemVer => {
            if args.len() != 3 {
                return owned(Value::Null);
            }
            let (l, o, r) = (arg(0)?, arg(1)?, arg(2)?);
            owned(match (version_text(&l), o.as_ref(), version_text(&r)) {
                (Some(l), Value::String(o), Some(r)) => {
                    semver::sem_ver(&l, o, &r).map_or(Value::Null, Value::Bool)
                }
                _ => Value::Null,
            })
        }
        Op::Fractional => fractional_op(args, scope, traced),
    }
}

/// A precompiled `fractional`: the variant is borrowed from the rule.
fn split_eval<'a>(split: &'a Split, scope: &Scope<'a, '_>) -> Out<'a> {
    let by = match &split.by {
        Some(e) => Some(eval(e, scope)?),
        None => None,
    };
    if matches!(by.as_deref(), Some(Value::Array(_))) {
        // The first argument gave an entry after all.
        return fractional_op(&split.args, scope, None);
    }
    let Some((found, value)) = bucket_for(scope, by.as_deref(), &split.weights) else {
        return owned(Value::Null);
    };
    let picked = found.map(|(_, i)| &split.variants[i]);
    if scope.trace.on() {
        scope.trace.push(Step::Fractional {
            at: split.at.clone(),
            value: value.text(scope),
            bucket: found.map_or(0, |(point, _)| point),
            weights: split
                .variants
                .iter()
                .cloned()
                .zip(split.weights.iter().copied())
                .collect(),
            picked: picked.cloned().unwrap_or(Value::Null),
        });
    }
    Ok(picked.map_or(Cow::Owned(Value::Null), Cow::Borrowed))
}

/// What a `fractional` hashed, for `explain`.
enum Hashed<'v> {
    /// A bucketing value given by the rule.
    Given(&'v Value),
    /// The default one, from the targeting key.
    TargetingKey(&'v str),
}

impl Hashed<'_> {
    /// As `explain` shows it: the string hashed (v2), or the value whose
    /// CBOR was hashed (v3: a string as it is, anything else as JSON; the
    /// default one is `["<flagKey>","<targetingKey>"]`).
    fn text(&self, scope: &Scope<'_, '_>) -> String {
        match (self, scope.input.bucketing) {
            (Hashed::Given(Value::String(s)), _) => s.clone(),
            (Hashed::Given(v), _) => v.to_string(),
            (Hashed::TargetingKey(k), fractional::Bucketing::V2) => {
                format!("{}{k}", scope.input.flag_key)
            }
            (Hashed::TargetingKey(k), fractional::Bucketing::V3) => {
                Value::from(vec![scope.input.flag_key, k]).to_string()
            }
        }
    }
}

/// The bucket `fractional` picks in `scope` (by its bucketing), `first`
/// being the value of its first argument when that is not an entry; `None`
/// when there is nothing to hash (the rule then gives null).
///
/// v2 (flagd (Go) today): a string is hashed as UTF-8; no first argument,
/// or a null one, hashes flag key + targeting key; anything else gives
/// nothing. v3: any value but null is hashed as CBOR; no first argument
/// hashes `[flagKey, targetingKey]`. Either way an empty or missing (or,
/// in v3, non-string) targeting key gives nothing.
fn bucket_for<'v>(
    scope: &Scope<'v, '_>,
    first: Option<&'v Value>,
    weights: &[u32],
) -> Option<(Option<(u64, usize)>, Hashed<'v>)> {
    let key = || scope.key;
    match scope.input.bucketing {
        fractional::Bucketing::V2 => match first {
            Some(v @ Value::String(s)) => Some((fractional::bucket(s, weights), Hashed::Given(v))),
            None | Some(Value::Null) => {
                let k = key()?;
                Some((
                    fractional::bucket_of(scope.input.flag_key, k, weights),
                    Hashed::TargetingKey(k),
                ))
            }
            Some(_) => None,
        },
        fractional::Bucketing::V3 => match first {
            Some(Value::Null) => None,
            Some(v) => Some((fractional::bucket_v3(v, weights), Hashed::Given(v))),
            None => {
                let k = key()?;
                Some((
                    fractional::bucket_v3_of(scope.input.flag_key, k, weights),
                    Hashed::TargetingKey(k),
                ))
            }
        },
    }
}

/// What `sem_ver` reads as a version: a string, a number as Go writes it, a
/// boolean's name.
fn version_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(number_text(n))),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// flagd's `fractional`: the bucketing value (a string first argument, else
/// flag key + `targetingKey`), then `[variant, weight?]` entries.
fn fractional_op<'a>(args: &'a [Expr], scope: &Scope<'a, '_>, traced: Option<&String>) -> Out<'a> {
    let mut vals: Vec<Cow<'a, Value>> = args
        .iter()
        .map(|a| eval(a, scope))
        .collect::<Result<_, _>>()?;
    // The bucketing value: a first argument that is not an entry.
    let first = match vals.first().map(AsRef::as_ref) {
        None | Some(Value::Array(_)) => None,
        Some(_) => Some(vals.remove(0)),
    };
    // The entries, checked and summed without copying them.
    let mut weights = Vec::with_capacity(vals.len());
    let mut total: u64 = 0;
    for entry in &vals {
        let Value::Array(e) = entry.as_ref() else {
            return owned(Value::Null);
        };
        if !matches!(
            e.first(),
            Some(Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null)
        ) {
            return owned(Value::Null);
        }
        let Some(weight) = weight(e.get(1)) else {
            return owned(Value::Null);
        };
        total += u64::from(weight);
        if total > i32::MAX as u64 {
            return owned(Value::Null);
        }
        weights.push(weight);
    }
    let variant = |i: usize| match vals[i].as_ref() {
        Value::Array(e) => e[0].clone(),
        _ => Value::Null,
    };
    let Some((found, value)) = bucket_for(scope, first.as_deref(), &weights) else {
        return owned(Value::Null);
    };
    let (point, picked) = match found {
        Some((point, i)) => (point, variant(i)),
        None => (0, Value::Null),
    };
    if let Some(at) = traced {
        scope.trace.push(Step::Fractional {
            at: at.clone(),
            value: value.text(scope),
            bucket: point,
            weights: (0..weights.len()).map(variant).zip(weights).collect(),
            picked: picked.clone(),
        });
    }
    owned(picked)
}

/// What `in` looks for: a value, or the tenant evaluated for (a string
/// not made into a value).
#[derive(Clone, Copy)]
enum Needle<'a> {
    Value(&'a Value),
    Str(&'a str),
}

impl Needle<'_> {
    fn number(self) -> Result<f64, EvalError> {
        match self {
            Needle::Value(v) => typed_number(v),
            Needle::Str(s) => Ok(text_number(s)),
        }
    }
}

/// The tenant evaluated for, when `e` is `{"var": "tenantId"}` and there is
/// one (else the context's `tenantId` is read as any attribute).
fn tenant_of<'a>(e: &Expr, scope: &Scope<'a, '_>) -> Option<&'a str> {
    match e {
        Expr::Var(path, _) if matches!(path.root, Root::Tenant(_)) && path.rest.is_empty() => {
            scope.input.tenant
        }
        _ => None,
    }
}

/// `in` over an array as flagd's library has it: an element that is an
/// array `[low, high]` is a range the needle falls in (inclusive); a number
/// equals an element read as a number (a string parsed, else 0); anything
/// else equals an element of the same type and value. What the library
/// cannot read as a number fails the rule.
fn in_array(needle: Needle<'_>, items: &[Value]) -> Result<bool, EvalError> {
    for element in items {
        if let Value::Array(range) = element {
            let (Some(low), Some(high)) = (range.first(), range.get(1)) else {
                return Err(EvalError("in: a range is [low, high]".into()));
            };
            let v = needle.number()?;
            if v >= typed_number(low)? && typed_number(high)? >= v {
                return Ok(true);
            }
            continue;
        }
        match needle {
            Needle::Str(t) => {
                if matches!(element, Value::String(e) if e == t) {
                    return Ok(true);
                }
            }
            Needle::Value(Value::Number(n)) => {
                if Some(typed_number(element)?) == n.as_f64() {
                    return Ok(true);
                }
            }
            Needle::Value(Value::Array(_) | Value::Object(_)) => {}
            Needle::Value(scalar) => {
                if element == scalar {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// A value as flagd's library reads a number for `in`: a number, a string
/// parsed (0 when it is not a number); anything else fails the rule.
fn typed_number(v: &Value) -> Result<f64, EvalError> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Ok(text_number(s)),
        other => Err(EvalError(format!("in: {other} is not a number"))),
    }
}

/// Text as `in` reads a number: parsed, 0 when it is not one.
fn text_number(s: &str) -> f64 {
    s.parse().unwrap_or(0.0)
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
        // Only blank text is 0; otherwise the text as written (" 1 " is not
        // a number).
        Value::String(s) if s.trim().is_empty() => 0.0,
        Value::String(s) => s.parse().unwrap_or(f64::NAN),
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

/// `<`, `<=`, `>`, `>=` as flagd's library has them: two strings compare as
/// strings, anything else as numbers; `<=` and `>=` are "less, or equal"
/// with equality's rule that null equals only null (so `null >= 0` is false
/// while `null < 1` is true).
fn compare(op: Op, a: &Value, b: &Value) -> bool {
    let less = |x: &Value, y: &Value| match (x, y) {
        (Value::String(x), Value::String(y)) => x < y,
        _ => number(x) < number(y),
    };
    match op {
        Op::Lt => less(a, b),
        Op::Le => less(a, b) || loose_eq(a, b),
        Op::Gt => less(b, a),
        Op::Ge => less(b, a) || loose_eq(a, b),
        _ => false,
    }
}

/// A number as Go's `%v` writes a float64 (`1`, `1.5`).
pub fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => n.to_string(),
    }
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
        e.eval(
            Input {
                flag_key,
                context: &ctx,
                tenant: None,
                now_s: 1_700_000_000,
                bucketing: fractional::Bucketing::V2,
            },
            &Trace::default(),
        )
        .map(Cow::into_owned)
    }

    /// `in` on the tenant evaluated for (compared in place) answers as `in`
    /// on the same string read from the context: lists, ranges, substrings.
    #[test]
    fn in_on_the_tenant_answers_as_on_a_context_string() {
        let eval_with = |rule: &Value, tenant: Option<&str>, ctx: &Map<String, Value>| {
            let e = compile(rule, "/targeting").unwrap();
            e.eval(
                Input {
                    flag_key: "f",
                    context: ctx,
                    tenant,
                    now_s: 0,
                    bucketing: fractional::Bucketing::V2,
                },
                &Trace::default(),
            )
            .map(Cow::into_owned)
        };
        let hays = [
            json!(["a", "b"]),
            json!(["x", "b"]),
            json!([1, "b"]),
            json!([[0, 10]]),
            json!([[5, 10]]),
            json!("tenant-b-and-c"),
            json!(42),
            json!([["low"]]),
        ];
        for tenant in ["b", "7", "0", "c"] {
            for hay in &hays {
                let rule = json!({"in": [{"var": "tenantId"}, hay]});
                let in_place = eval_with(&rule, Some(tenant), &Map::new());
                let mut ctx = Map::new();
                ctx.insert("tenantId".into(), json!(tenant));
                let from_context = eval_with(&rule, None, &ctx);
                assert_eq!(in_place, from_context, "tenant {tenant}, in {hay}");
            }
        }
        let rule = json!({"in": [{"var": "tenantId"}, ["a", "b"]]});
        assert_eq!(eval_with(&rule, Some("b"), &Map::new()), Ok(json!(true)));
        assert_eq!(eval_with(&rule, Some("z"), &Map::new()), Ok(json!(false)));
    }

    /// A `sem_ver` written with its operator and version (read once, when
    /// compiled) answers as one that reads them from the context.
    #[test]
    fn sem_ver_read_once_answers_as_read_each_time() {
        let versions = [
            "1.2.3",
            "v1.2.3",
            "1.2",
            "1",
            "1.3.0-rc.1",
            "2.0.0",
            "0.9.9+b",
            "x",
            "1.2.3.4",
        ];
        let ops = ["=", "!=", "<", "<=", ">", ">=", "~", "^", "=="];
        for right in ["1.2.3", "1.3.0-rc.2", "2", "v0.9.9"] {
            for op in ops {
                let literal = json!({"sem_ver": [{"var": "v"}, op, right]});
                let read = json!({"sem_ver": [{"var": "v"}, {"var": "op"}, {"var": "r"}]});
                assert_eq!(
                    matches!(compile(&literal, "").unwrap().expr(), Expr::SemVer(_)),
                    op != "==",
                    "{op} is compiled once when flagd knows it"
                );
                for v in versions
                    .iter()
                    .map(|v| json!(v))
                    .chain([json!(1.2), json!(null)])
                {
                    let ctx = json!({"v": v, "op": op, "r": right});
                    assert_eq!(
                        run(literal.clone(), "f", ctx.clone()),
                        run(read.clone(), "f", ctx),
                        "{v} {op} {right}"
                    );
                }
            }
        }
    }

    /// Binding the rule's attributes to slots finds what a lookup by name
    /// finds, whether it merges (a small context) or looks up (a large one):
    /// names that are prefixes of others, missing ones, non-ASCII ones.
    #[test]
    fn slots_bind_what_a_lookup_by_name_finds() {
        let names = ["", "a", "ab", "b", "targetingKey", "z", "é", "zz"];
        let rule =
            json!({"cat": names.iter().map(|n| json!({"var": [n, "-"]})).collect::<Vec<_>>()});
        let program = compile(&rule, "").unwrap();
        for size in [0_usize, 1, 3, 7, 40, 100] {
            for skip in 0..3 {
                let mut ctx = Map::new();
                for (i, n) in names.iter().enumerate() {
                    if i % 3 != skip {
                        ctx.insert((*n).into(), json!(i));
                    }
                }
                for i in 0..size {
                    ctx.insert(format!("k{i}"), json!("x"));
                    ctx.insert(format!("a{i}"), json!("y"));
                }
                let mut slots = vec![None; program.attrs.len()];
                program.bind(&ctx, &mut slots);
                for (name, slot) in &program.attrs {
                    assert_eq!(
                        slots[as_index(*slot)],
                        ctx.get(name),
                        "{name:?}, size {size}"
                    );
                }
            }
        }
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

    /// Cases where OpenFeature's evaluators disagree and flagd's JsonLogic
    /// library (diegoholiveira/jsonlogic v3) decides, as found by the
    /// differential run against it.
    #[test]
    fn comparisons_membership_and_weights_follow_flagds_library() {
        let t = |rule: Value, ctx: Value| run(rule, "f", ctx).unwrap();
        // <= and >= use equality's null rule; < and > read null as 0.
        assert_eq!(
            t(json!({">=": [{"var": "age"}, 0]}), json!({})),
            json!(false)
        );
        assert_eq!(t(json!({"<=": [null, 0]}), json!({})), json!(false));
        assert_eq!(t(json!({"<": [{"var": "age"}, 1]}), json!({})), json!(true));
        assert_eq!(t(json!({"<": [1]}), json!({})), json!(false));
        assert_eq!(t(json!({"<": [1, 2, 3]}), json!({})), json!(true));
        // Text with spaces around a number is not that number.
        assert_eq!(
            t(json!({"==": [{"var": "x"}, 1]}), json!({"x": " 1 "})),
            json!(false)
        );
        assert_eq!(
            t(json!({"==": [{"var": "x"}, 1]}), json!({"x": "1"})),
            json!(true)
        );
        // `in`: a string needle is found only as the same string; a number
        // equals an element read as a number; an array element is a range.
        assert_eq!(
            t(json!({"in": [{"var": "x"}, [1, 2]]}), json!({"x": "1"})),
            json!(false)
        );
        assert_eq!(t(json!({"in": [1, ["1", "2"]]}), json!({})), json!(true));
        assert_eq!(t(json!({"in": [true, [1]]}), json!({})), json!(false));
        assert_eq!(t(json!({"in": [5, [[1, 10]]]}), json!({})), json!(true));
        assert_eq!(t(json!({"in": [11, [[1, 10]]]}), json!({})), json!(false));
        assert!(run(json!({"in": [1, [true]]}), "f", json!({})).is_err());
        // Weights must be integers.
        assert_eq!(
            t(
                json!({"fractional": [["a", 1.5], ["b", 1]]}),
                json!({"targetingKey": "u"})
            ),
            Value::Null
        );
        assert_ne!(
            t(
                json!({"fractional": [["a", 1.0], ["b", 1]]}),
                json!({"targetingKey": "u"})
            ),
            Value::Null
        );
    }
}

// Differential test: Switchyard's flag answers (OFREP bulk evaluation) against
// OpenFeature's JavaScript in-process evaluator, @openfeature/flagd-core 4.0.1
// (the evaluator the JavaScript flagd provider runs in in-process mode).
//
//   node differential.mjs BASE_URL ADMIN_TOKEN SEED COUNT
//
// From SEED (deterministic) it generates a flagd flag-definition file whose
// rules together use every operator of flagd's targeting (if, ==, !=, ===, !==,
// <, <=, >, >= incl. the three-argument "between" form, !, !!, and, or, in on
// arrays and strings, cat, var with a default and nested paths, starts_with,
// ends_with, sem_ver with all eight operators, fractional with the targeting
// key and with a given bucketing value, $flagd.flagKey, $flagd.timestamp,
// $evaluators/$ref), several flags of each type (boolean, string, number with
// integer and float variants, object), plus a static, a disabled and a
// default-less flag. It imports the file (prune), reads it back with
// GET /v1/flags:export and loads THAT into FlagdCore, so both sides evaluate
// the definitions the server holds. Then, for COUNT random contexts, it calls
// POST /ofrep/v1/evaluate/flags once per context and compares each flag's
// value, variant, reason, error code and metadata with FlagdCore's answer.
//
// Rules and contexts stay inside the domain where flagd (Go), which Switchyard
// follows, and flagd-core agree; the known divergences are left out on purpose
// (docs/openfeature.md, "Known divergences", for the documented ones):
//   - targeting keys are non-empty ASCII strings (JS hashes UTF-16 code units)
//     -- a missing targetingKey is generated;
//   - each attribute keeps one JSON type (or is missing), and no rule compares
//     null with 0, so comparisons never mix types where the JsonLogic libraries
//     differ (json-logic-engine throws on `"abc" < 1`, has `null == 0`, finds
//     `"1"` in `[1]` only strictly...);
//   - `cat` never gets null (json-logic-engine writes "null", flagd nothing);
//   - sem_ver inputs are versions, shorthands (`1`, `1.2`, `v1.2`), numbers and
//     invalid strings on which all implementations agree (no shorthand with a
//     pre-release, no surrounding spaces, no numbers beyond 2^53);
//   - a fractional's bucketing value, when given, always evaluates to a string
//     (flagd (Go) drops a null bucketing value and falls back to the targeting
//     key; flagd-core gives up and answers the default), and weights are
//     integers (flagd-core refuses others).
// $flagd.timestamp is only compared with bounds no second can cross.
//
// Prints `differential js: N contexts x M flags = K answers, D differences`
// and the first differences in detail; exits 1 on any difference.
// Environment: DIFF_CONCURRENCY (requests in flight, default 8), DIFF_SHOW
// (differences shown in detail, default 5), DIFF_COVERAGE=1 (print how often
// each flag gave each reason and variant, to see that every branch is taken).

import { FlagdCore } from '@openfeature/flagd-core';

const [baseUrl, adminToken, seedArg, countArg] = process.argv.slice(2);
if (!baseUrl || !adminToken || seedArg === undefined || countArg === undefined) {
  console.error('usage: node differential.mjs BASE_URL ADMIN_TOKEN SEED COUNT');
  process.exit(2);
}
const BASE = baseUrl.replace(/\/+$/, '');
const COUNT = Number.parseInt(countArg, 10);
const CONCURRENCY = Number.parseInt(process.env.DIFF_CONCURRENCY ?? '8', 10);
const SHOW = Number.parseInt(process.env.DIFF_SHOW ?? '5', 10);
const AUTH = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };

// ---------------------------------------------------------------------------
// Deterministic randomness: mulberry32 seeded with a 32-bit FNV-1a of SEED
// (the Python twin, tests/openfeature/differential_python.py, has the same
// generator, so one seed gives the same rule parameters in both).

function seedOf(text) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(String(text), 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1) >>> 0;
    t = (t ^ (t + Math.imul(t ^ (t >>> 7), t | 61))) >>> 0;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = (arr) => arr[Math.floor(next() * arr.length)];
  const chance = (p) => next() < p;
  const word = (n, alphabet) => {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(next() * alphabet.length)];
    return s;
  };
  return { next, int, pick, chance, word };
}

const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const KEYCHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:@/+';
const DOMAINS = ['example.com', 'beta.example', 'corp.example.org', 'mail.test', 'example.net'];
const COUNTRIES = ['US', 'DE', 'FR', 'JP', 'BR', 'IN', 'de', 'us'];
const TIERS = ['gold', 'silver', 'bronze', 'free', 'platinum']; // platinum: no variant
const PLANS = ['pro', 'team', 'free', 'enterprise'];
const TAGS = ['vip', 'internal', 'early', 'mobile', 'legacy'];

// ---------------------------------------------------------------------------
// The flag file.

// A version for a rule (always valid).
function ruleVersion(r) {
  const v = `${r.int(0, 3)}.${r.int(0, 5)}.${r.int(0, 9)}`;
  return r.chance(0.2) ? `${v}-rc.${r.int(1, 3)}` : v;
}

// Builds the flag file. (The Python twin builds the same one, then leaves out
// the flags using `fractional`: see its header.)
function buildFlags(r) {
  const evaluators = {
    isBeta: { ends_with: [{ var: 'email' }, `@${r.pick(['beta.example', 'mail.test'])}`] },
    isAdult: { '>=': [{ var: 'age' }, r.int(16, 21)] },
  };
  const flags = {};
  const meta = (i) => ({ team: r.pick(['growth', 'core', 'payments']), owner: `o${i}`, weight: r.int(1, 9) });
  const flag = (key, variants, defaultVariant, targeting, extra = {}) => {
    const f = { state: 'ENABLED', variants, defaultVariant };
    if (targeting !== undefined) f.targeting = targeting;
    Object.assign(f, extra);
    flags[key] = f;
  };
  const onOff = { on: true, off: false };
  const ts = r.int(1000000000, 1600000000);

  // --- boolean ---
  flag('bool-beta', onOff, 'off', {
    if: [{ and: [{ $ref: 'isBeta' }, { '!': { var: 'optOut' } }] }, 'on', 'off'],
  }, { metadata: meta(1) });
  {
    const lo = r.int(10, 30);
    flag('bool-age-between', onOff, 'off', {
      if: [{ [r.pick(['<', '<='])]: [lo, { var: 'age' }, lo + r.int(5, 40)] }, 'on', null],
    });
  }
  flag('bool-timestamp', onOff, r.pick(['on', 'off']), {
    if: [
      { and: [{ '>': [{ var: '$flagd.timestamp' }, ts] }, { '<=': [{ var: '$flagd.timestamp' }, 4102444800] }, { '!!': [{ var: 'beta' }] }] },
      'on',
      'off',
    ],
  });
  flag('bool-strict', onOff, 'off', {
    if: [
      { '===': [{ var: 'beta' }, true] }, 'on',
      { '!==': [{ var: 'country' }, r.pick(COUNTRIES)] }, 'off',
      null,
    ],
  });
  // `or` falls through to its last operand; `nope` is no variant (GENERAL).
  flag('bool-or', onOff, 'off', {
    or: [
      { and: [{ $ref: 'isAdult' }, { in: [r.pick(TAGS), { var: 'tags' }] }, 'on'] },
      { and: [{ '!': [{ var: 'beta' }] }, { '<': [{ var: 'score' }, Math.floor(r.next() * 1000) / 1000] }, 'off'] },
      { if: [{ var: 'optOut' }, 'nope', 'off'] },
    ],
  });
  flag('bool-rollout', onOff, 'off', { fractional: [['on', r.int(1, 60)], ['off', r.int(1, 60)]] });
  flag('bool-static', onOff, r.pick(['on', 'off']), undefined, { metadata: { kind: 'static' } });
  flag('bool-disabled', onOff, 'on', { if: [true, 'on'] }, { state: 'DISABLED', metadata: { kind: 'kill' } });

  // --- string ---
  flag('str-tier', {
    'tier-gold': 'G', 'tier-silver': 'S', 'tier-bronze': 'B', 'tier-free': 'F',
  }, 'tier-free', { cat: ['tier-', { var: ['tier', 'free'] }] }, { metadata: meta(2) });
  flag('str-country', { eu: 'Europe', mail: 'mailbox', other: 'elsewhere', none: '' }, 'none', {
    if: [
      { in: [{ var: 'country' }, ['DE', 'FR', r.pick(['IN', 'JP', 'BR'])]] }, 'eu',
      { in: [r.pick(['@mail', '.org', 'example.n', 'corp']), { var: 'email' }] }, 'mail',
      { '==': [{ var: 'country' }, null] }, null,
      'other',
    ],
  });
  flag('str-semver-a', { new: 'new', tilde: 'tilde', caret: 'caret', old: 'old' }, 'old', {
    if: [
      { sem_ver: [{ var: 'appVersion' }, '~', ruleVersion(r)] }, 'tilde',
      { sem_ver: [{ var: 'appVersion' }, '^', ruleVersion(r)] }, 'caret',
      { sem_ver: [{ var: 'appVersion' }, '>=', ruleVersion(r)] }, 'new',
      null,
    ],
  });
  flag('str-semver-b', { eq: 'eq', lt: 'lt', ne: 'ne', none: 'none' }, 'none', {
    if: [
      { sem_ver: [{ var: 'appVersion' }, '=', ruleVersion(r)] }, 'eq',
      { sem_ver: [{ var: 'appVersion' }, '<', ruleVersion(r)] }, 'lt',
      { sem_ver: [{ var: 'appVersion' }, '!=', ruleVersion(r)] }, 'ne',
      'none',
    ],
  });
  flag('str-flagkey', { 'str-flagkey-hit': 'hit', 'str-flagkey-name': 'name', miss: 'miss' }, 'miss', {
    if: [
      { starts_with: [{ var: 'name' }, r.word(1, LOWER)] }, { cat: [{ var: '$flagd.flagKey' }, '-name'] },
      { starts_with: [{ var: '$flagd.flagKey' }, 'str-'] }, { cat: [{ var: '$flagd.flagKey' }, '-', 'hit'] },
      'miss',
    ],
  });
  flag('str-nodefault', { yes: 'yes', no: 'no' }, null, {
    if: [{ $ref: 'isAdult' }, 'yes', { '<': [{ var: 'age' }, 5] }, 'no', null],
  });
  flag('str-fractional-by', { a: 'A', b: 'B', c: 'C' }, 'a', {
    fractional: [{ cat: [{ var: ['user.org.id', 'none'] }, '/', r.word(4, LOWER)] }, ['a', 1], ['b', 1], ['c', r.int(1, 5)]],
  });
  flag('str-fractional-nested', { red: 'red', green: 'green', blue: 'blue', gray: 'gray' }, 'gray', {
    if: [
      { '!=': [{ var: 'user.plan' }, 'free'] },
      { fractional: [['red', r.int(0, 5)], ['green', r.int(1, 5)], ['blue']] },
      'gray',
    ],
  });

  // --- number (integer and float variants) ---
  {
    // Never 0: flagd (Go) has `null >= 0` false, the server and flagd-core true.
    const t = (Math.floor(r.next() * 999) + 1) / 1000;
    flag('num-int-score', { high: 3, mid: 2, low: 1, zero: 0 }, 'zero', {
      if: [
        { '>=': [{ var: 'score' }, t] }, 'high',
        { '>': [{ var: 'score' }, t / 2] }, 'mid',
        { '<=': [{ var: 'score' }, t / 4] }, 'low',
        null,
      ],
    });
  }
  {
    const a = r.int(20, 60);
    // `exact` is 42.0: JavaScript writes it 42, the Python twin 42.0 (a float
    // variant, which the server must keep: the Python twin checks the export).
    flag('num-float-age', { small: 0.5, big: 2.75, neg: -1.125, exact: 42.0 }, 'big', {
      if: [
        { '<': [{ var: 'age' }, a] }, 'small',
        { '==': [{ var: 'age' }, a + r.int(0, 3)] }, 'exact',
        { '!=': [{ var: 'age' }, a + 10] }, 'big',
        'neg',
      ],
    }, { metadata: meta(3) });
  }
  flag('num-semver', { legacy: -7, modern: 1000000, mid: 12 }, 'mid', {
    if: [
      { sem_ver: [{ var: 'appVersion' }, '<=', ruleVersion(r)] }, 'legacy',
      { sem_ver: [{ var: 'appVersion' }, '>', ruleVersion(r)] }, 'modern',
      null,
    ],
  });
  flag('num-nested', { paid: 1.5, big: 250, free: 0 }, 'free', {
    if: [
      { '>': [{ var: ['user.org.size', 0] }, r.int(10, 500)] }, 'big',
      { and: [{ '!=': [{ var: 'user.plan' }, 'free'] }, { '!!': { var: 'user.plan' } }] }, 'paid',
      'free',
    ],
  });
  flag('num-fractional', { one: 1, two: 2, three: 3.5 }, 'one', {
    fractional: [['one'], ['two'], ['three', r.int(1, 3)]],
  });
  flag('num-static', { only: 0.25 }, 'only');

  // --- object ---
  flag('obj-plan', {
    pro: { limits: { seats: 50, storageGb: 1.5 }, features: ['a', 'b'] },
    team: { limits: { seats: 10 }, features: ['a'] },
    basic: { limits: {}, features: [] },
  }, 'basic', {
    if: [
      { '==': [{ var: 'user.plan' }, 'pro'] }, 'pro',
      { or: [{ '===': [{ var: 'user.plan' }, 'team'] }, { in: ['vip', { var: 'tags' }] }] }, 'team',
      null,
    ],
  }, { metadata: meta(4) });
  flag('obj-email', {
    admin: { role: 'admin', level: 3 },
    external: { role: 'guest', level: 0, nested: { deep: [1, { x: null }] } },
    internal: { role: 'staff', level: 1 },
  }, 'internal', {
    if: [
      { starts_with: [{ var: 'email' }, r.word(1, 'abcde')] }, 'admin',
      { '!': [{ ends_with: [{ var: 'email' }, r.pick(DOMAINS)] }] }, 'external',
      null,
    ],
  });
  flag('obj-fractional-flagkey', { x: { bucket: 'x' }, y: { bucket: 'y' } }, 'x', {
    fractional: [{ cat: [{ var: '$flagd.flagKey' }, { var: ['targetingKey', ''] }] }, ['x', r.int(1, 50)], ['y', r.int(1, 50)]],
  });
  flag('obj-disabled', { v: { a: 1 } }, 'v', undefined, { state: 'DISABLED' });
  flag('obj-age-ge', { adult: { adult: true }, minor: { adult: false } }, 'minor', {
    if: [{ '>=': [{ var: 'age' }, 18] }, 'adult', { '<': [{ var: 'age' }, 18, 1000] }, 'minor', null],
  });

  return { $evaluators: evaluators, flags };
}

// ---------------------------------------------------------------------------
// The contexts. Each attribute has one JSON type (or is missing): see the header.

function semverInput(r) {
  const M = r.int(0, 3), m = r.int(0, 5), p = r.int(0, 9);
  switch (r.int(0, 13)) {
    case 0: case 1: case 2: return `${M}.${m}.${p}`;
    case 3: return `v${M}.${m}.${p}`;
    case 4: return `V${M}.${m}.${p}`;
    case 5: return `${M}.${m}.${p}-${r.pick(['rc.1', 'rc.2', 'alpha', 'beta.2', '0.3.7', 'x-y'])}`;
    case 6: return `${M}.${m}.${p}+build.${r.int(0, 99)}`;
    case 7: return `${M}.${m}.${p}-rc.${r.int(0, 3)}+b${r.int(0, 9)}`;
    case 8: return `${M}.${m}`; // shorthands: all read them as M.m.0 / M.0.0
    case 9: return r.chance(0.5) ? `${M}` : `v${M}.${m}`;
    case 10: return `${M}.${m}.${p}.${r.int(0, 9)}`; // invalid everywhere
    case 11: return r.pick(['latest', 'abc', '', 'x.y.z', '1.x', '1.2.3-', '01.2.3', '1.02.3', '1.2.3-01', '-1.2.3']);
    case 12: return r.chance(0.5) ? M : M + m / 10 + (m === 0 ? 0.5 : 0); // a number
    default: return undefined;
  }
}

function makeContext(r, i) {
  const ctx = {};
  if (r.chance(0.9)) ctx.targetingKey = r.word(r.int(1, 24), KEYCHARS);
  const put = (k, v) => { if (v !== undefined) ctx[k] = v; };
  put('email', r.chance(0.85) ? `${r.word(r.int(1, 10), 'abcdefghij.0123')}@${r.pick(DOMAINS)}` : undefined);
  put('name', r.chance(0.8) ? r.word(r.int(1, 8), LOWER) : undefined);
  const ageKind = r.int(0, 9);
  put('age', ageKind < 6 ? r.int(0, 99) : ageKind < 8 ? r.int(0, 990) / 10 : undefined);
  put('score', r.chance(0.85) ? Math.floor(r.next() * 1000) / 1000 : undefined);
  put('beta', r.chance(0.7) ? r.chance(0.5) : undefined);
  put('optOut', r.chance(0.3) ? r.chance(0.5) : undefined);
  put('appVersion', semverInput(r));
  put('country', r.chance(0.85) ? r.pick(COUNTRIES) : undefined);
  put('tier', r.chance(0.8) ? r.pick(TIERS) : undefined);
  if (r.chance(0.8)) {
    const user = {};
    if (r.chance(0.8)) user.plan = r.pick(PLANS);
    if (r.chance(0.7)) {
      user.org = { id: `org-${r.int(0, 50)}` };
      if (r.chance(0.7)) user.org.size = r.int(1, 1000);
    }
    ctx.user = user;
  }
  if (r.chance(0.7)) {
    const tags = [];
    for (const t of TAGS) if (r.chance(0.3)) tags.push(t);
    if (tags.length > 0) ctx.tags = tags;
  }
  // Attributes no rule reads, of every type.
  for (let k = r.int(0, 3); k > 0; k--) {
    put(`extra${r.int(0, 9)}`, r.pick([r.word(3, LOWER), r.int(-5, 5), r.chance(0.5), { n: r.int(0, 3), s: r.word(2, LOWER) }, [1, 'two', false]]));
  }
  ctx.seq = i;
  return ctx;
}

// ---------------------------------------------------------------------------
// HTTP.

async function call(method, path, body) {
  const r = await fetch(`${BASE}${path}`, { method, headers: AUTH, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, text };
}

// ---------------------------------------------------------------------------
// Answers, normalised: {value?, variant?, reason, errorCode?, metadata?}.

function fromServer(f) {
  if (f.errorCode !== undefined) return { reason: 'ERROR', errorCode: f.errorCode };
  const a = { reason: f.reason };
  if (f.variant !== undefined) a.variant = f.variant;
  if (f.value !== undefined) a.value = f.value;
  if (f.metadata !== undefined) a.metadata = f.metadata;
  return a;
}

const SENTINEL = Symbol('caller default');
function fromCore(core, key, type, ctx) {
  const res = core.resolve(type, key, SENTINEL, ctx);
  if (res.errorCode !== undefined) return { reason: 'ERROR', errorCode: res.errorCode };
  const a = { reason: res.reason };
  if (res.variant !== undefined) a.variant = res.variant;
  if (res.value !== SENTINEL && res.variant !== undefined) a.value = res.value;
  a.metadata = res.flagMetadata;
  return a;
}

function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

// What differs between the two answers ([] when nothing).
function differences(s, c) {
  const out = [];
  for (const field of ['reason', 'variant', 'value', 'errorCode']) {
    if (canon(s[field]) !== canon(c[field])) out.push(field);
  }
  // The server's metadata is the flag's own; compare when it sends one.
  if (s.metadata !== undefined && c.reason !== 'ERROR' && canon(s.metadata) !== canon(c.metadata ?? {})) {
    out.push('metadata');
  }
  return out;
}

function typeOf(def) {
  const v = Object.values(def.variants)[0];
  if (typeof v === 'boolean') return 'boolean';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'number') return 'number';
  return 'object';
}

// ---------------------------------------------------------------------------

async function main() {
  const started = Date.now();
  const seed = seedOf(seedArg);
  const rng = makeRng(seed);
  const file = buildFlags(rng);

  const imp = await call('POST', '/v1/flags:import', { configurationText: JSON.stringify(file), prune: true });
  if (imp.status !== 200) throw new Error(`import: ${imp.status} ${imp.text}`);
  const exp = await call('GET', '/v1/flags:export');
  if (exp.status !== 200) throw new Error(`export: ${exp.status} ${exp.text}`);
  // configurationText: the file with numbers as the server holds them.
  const exportText = JSON.parse(exp.text).configurationText;
  const exported = JSON.parse(exportText);

  // The export must be the file, $ref substituted (JSON numbers compared as
  // values: JavaScript cannot tell 1.0 from 1; the Python twin checks that).
  const substituted = JSON.parse(
    Object.entries(file.$evaluators).reduce(
      (text, [name, rule]) => text.replaceAll(JSON.stringify({ $ref: name }), JSON.stringify(rule)),
      JSON.stringify(file.flags),
    ),
  );
  const roundTrip = [];
  for (const key of new Set([...Object.keys(substituted), ...Object.keys(exported.flags ?? {})])) {
    const want = substituted[key] && { metadata: {}, ...substituted[key] };
    const got = exported.flags?.[key] && { metadata: {}, ...exported.flags[key] };
    if (want && want.defaultVariant === undefined) want.defaultVariant = null;
    if (canon(want) !== canon(got)) roundTrip.push(key);
  }
  if (roundTrip.length > 0) {
    console.log(`WARNING export round-trip: ${roundTrip.length} flag(s) differ from the imported file: ${roundTrip.join(', ')}`);
  }

  const silent = { error() {}, warn() {}, info() {}, debug() {} };
  const core = new FlagdCore(undefined, silent);
  core.setConfigurations(exportText);
  const keys = Object.keys(exported.flags).sort();
  const types = Object.fromEntries(keys.map((k) => [k, typeOf(exported.flags[k])]));

  // Contexts come from their own stream, so the rules do not depend on COUNT.
  const crng = makeRng(seedOf(`${seedArg}/contexts`));
  const contexts = Array.from({ length: COUNT }, (_, i) => makeContext(crng, i));

  const diffs = [];
  const classes = new Map();
  const outcomes = new Map(keys.map((k) => [k, new Map()]));
  let answers = 0;
  let nextIndex = 0;
  const worker = async () => {
    while (nextIndex < contexts.length) {
      const i = nextIndex++;
      const ctx = contexts[i];
      const res = await call('POST', '/ofrep/v1/evaluate/flags', { context: ctx });
      if (res.status !== 200) throw new Error(`OFREP bulk for context #${i}: ${res.status} ${res.text}`);
      const got = new Map(JSON.parse(res.text).flags.map((f) => [f.key, f]));
      for (const key of keys) {
        answers++;
        const c = fromCore(core, key, types[key], ctx);
        const f = got.get(key);
        const s = f === undefined ? { reason: '(flag missing from the bulk answer)' } : fromServer(f);
        const d = differences(s, c);
        const o = `${s.reason}${s.variant !== undefined ? `:${s.variant}` : ''}${s.errorCode ? `:${s.errorCode}` : ''}`;
        outcomes.get(key).set(o, (outcomes.get(key).get(o) ?? 0) + 1);
        if (d.length > 0) {
          const cls = `${key}: ${d.join('+')} server ${s.reason}${s.errorCode ? `/${s.errorCode}` : ''} vs flagd-core ${c.reason}${c.errorCode ? `/${c.errorCode}` : ''}`;
          classes.set(cls, (classes.get(cls) ?? 0) + 1);
          diffs.push({ i, key, fields: d, context: ctx, server: s, core: c });
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, CONCURRENCY) }, worker));

  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const tks = new Set(contexts.filter((c) => c.targetingKey !== undefined).map((c) => c.targetingKey)).size;
  console.log(`differential js: ${COUNT} contexts x ${keys.length} flags = ${answers} answers, ${diffs.length} differences (seed ${seedArg}, ${tks} distinct targeting keys, ${secs} s)`);
  if (process.env.DIFF_COVERAGE) {
    console.log('server outcomes per flag (reason:variant count):');
    for (const [k, m] of outcomes) {
      console.log(`  ${k}: ${[...m].sort().map(([o, n]) => `${o} ${n}`).join(', ')}`);
    }
  }
  if (diffs.length > 0) {
    console.log('difference classes (flag: fields, reasons):');
    for (const [cls, n] of [...classes].sort((a, b) => b[1] - a[1])) console.log(`  ${n} x ${cls}`);
    diffs.sort((a, b) => a.i - b.i);
    for (const d of diffs.slice(0, SHOW)) {
      console.log(`--- context #${d.i}, flag ${d.key}, differs in ${d.fields.join(', ')}`);
      console.log(`  flag:     ${JSON.stringify(exported.flags[d.key])}`);
      console.log(`  context:  ${JSON.stringify(d.context)}`);
      console.log(`  server:   ${JSON.stringify(d.server)}`);
      console.log(`  flagd-core: ${JSON.stringify(d.core)}`);
    }
  }
  process.exit(diffs.length > 0 ? 1 : 0);
}

main().catch((e) => {
  console.error(`differential js: ${e.stack ?? e}`);
  process.exit(2);
});

"""Differential test: Switchyard's flag answers (OFREP bulk evaluation) against
OpenFeature's Python in-process evaluator, openfeature-flagd-core 2.0.0 (the
evaluator the Python flagd provider 0.6.x runs in in-process mode).

    python differential_python.py BASE_URL ADMIN_TOKEN SEED COUNT

(in a venv with tests/openfeature/requirements.txt installed).

The twin of tests/openfeature-js/differential.mjs, with the same generator (one
SEED gives the same rule parameters in both): a flagd flag-definition file whose
rules together use every operator of flagd's targeting (if, ==, !=, ===, !==,
<, <=, >, >= incl. the three-argument "between" form, !, !!, and, or, in on
arrays and strings, cat, var with a default and nested paths, starts_with,
ends_with, sem_ver with all eight operators, $flagd.flagKey, $flagd.timestamp,
$evaluators/$ref), several flags of each type (boolean, string, number with
integer and float variants, object), plus a static, a disabled and a
default-less flag. It imports the file (prune), reads it back with
GET /v1/flags:export and loads THAT into FlagdCore, so both sides evaluate the
definitions the server holds. Then, for COUNT random contexts, it calls
POST /ofrep/v1/evaluate/flags once per context and compares each flag's value
(JSON type included: 1 is not 1.0 nor true), variant, reason, error code and
metadata with FlagdCore's answer.

`fractional` is LEFT OUT by default: flagd-core 2.0.0 hashes a CBOR encoding
of the bucketing value (flagd's "fractional-v3"), while flagd (Go), flagd-core
4.0.1 (JavaScript) and Switchyard by default hash its UTF-8 ("fractional-v2"),
a documented divergence (docs/openfeature.md, "Known divergences"). The flags
of the shared file that use `fractional` are dropped before the import; the
JavaScript twin compares them. With DIFF_FRACTIONAL=v3, against a server
serving `fractional_bucketing = "v3"`, they are kept and compared too.

Rules and contexts stay inside the domain where flagd (Go), which Switchyard
follows, and flagd-core agree; the other known divergences are left out on
purpose (docs/openfeature.md, "Known divergences", for the documented ones):
  - targeting keys are non-empty ASCII strings -- a missing targetingKey is
    generated;
  - each attribute keeps one JSON type (or is missing), and no rule compares
    null with 0, so comparisons never mix types where the JsonLogic libraries
    differ (panzi-json-logic raises TypeError on `"a" == true`, has
    `None == 0`, `1 === true`, `{}` truthy...);
  - `cat` never gets null (panzi-json-logic writes "null", flagd nothing);
  - sem_ver inputs are versions, shorthands (`1`, `1.2`, `v1.2`), numbers and
    invalid strings on which all implementations agree (no shorthand with a
    pre-release such as `1.2-rc.1`, which only this evaluator pads and
    accepts).
$flagd.timestamp is only compared with bounds no second can cross.

The file is also checked against the export (JSON types included): the export
should be the file with `$ref` substituted. A mismatch is printed as a WARNING
and does not count as a difference in the answers.

Prints `differential python: N contexts x M flags = K answers, D differences`
and the first differences in detail; exits 1 on any difference.
Environment: DIFF_CONCURRENCY (requests in flight, default 8), DIFF_SHOW
(differences shown in detail, default 5), DIFF_COVERAGE=1 (print how often each
flag gave each reason and variant, to see that every branch is taken).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import OpenFeatureError
from openfeature.contrib.tools.flagd.core import FlagdCore

# flagd-core logs (with a traceback) every sem_ver input that is no version.
logging.getLogger("openfeature").setLevel(logging.CRITICAL)

# ---------------------------------------------------------------------------
# Deterministic randomness: mulberry32 seeded with a 32-bit FNV-1a of SEED, as
# in the JavaScript twin (same calls, same order: same parameters).

M32 = 0xFFFFFFFF


def seed_of(text: str) -> int:
    h = 0x811C9DC5
    for b in str(text).encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & M32
    return h


class Rng:
    def __init__(self, seed: int) -> None:
        self.a = seed & M32

    def next(self) -> float:
        self.a = (self.a + 0x6D2B79F5) & M32
        t = self.a
        t = ((t ^ (t >> 15)) * (t | 1)) & M32
        t = (t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & M32)) & M32)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    def int(self, lo: int, hi: int) -> int:
        return lo + math.floor(self.next() * (hi - lo + 1))

    def pick(self, arr: list) -> Any:
        return arr[math.floor(self.next() * len(arr))]

    def chance(self, p: float) -> bool:
        return self.next() < p

    def word(self, n: int, alphabet: str) -> str:
        return "".join(alphabet[math.floor(self.next() * len(alphabet))] for _ in range(n))


LOWER = "abcdefghijklmnopqrstuvwxyz"
KEYCHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:@/+"
DOMAINS = ["example.com", "beta.example", "corp.example.org", "mail.test", "example.net"]
COUNTRIES = ["US", "DE", "FR", "JP", "BR", "IN", "de", "us"]
TIERS = ["gold", "silver", "bronze", "free", "platinum"]  # platinum: no variant
PLANS = ["pro", "team", "free", "enterprise"]
TAGS = ["vip", "internal", "early", "mobile", "legacy"]

# ---------------------------------------------------------------------------
# The flag file (the JavaScript twin's buildFlags, call for call).


def rule_version(r: Rng) -> str:
    v = f"{r.int(0, 3)}.{r.int(0, 5)}.{r.int(0, 9)}"
    return f"{v}-rc.{r.int(1, 3)}" if r.chance(0.2) else v


def var(path: Any) -> dict:
    return {"var": path}


def build_flags(r: Rng) -> dict:
    evaluators = {
        "isBeta": {"ends_with": [var("email"), "@" + r.pick(["beta.example", "mail.test"])]},
        "isAdult": {">=": [var("age"), r.int(16, 21)]},
    }
    flags: dict[str, dict] = {}

    def meta(i: int) -> dict:
        return {"team": r.pick(["growth", "core", "payments"]), "owner": f"o{i}", "weight": r.int(1, 9)}

    def flag(key, variants, default_variant, targeting=None, extra=None):
        f = {"state": "ENABLED", "variants": variants, "defaultVariant": default_variant}
        if targeting is not None:
            f["targeting"] = targeting
        f.update(extra or {})
        flags[key] = f

    on_off = {"on": True, "off": False}
    ts = r.int(1000000000, 1600000000)

    # --- boolean ---
    flag("bool-beta", on_off, "off",
         {"if": [{"and": [{"$ref": "isBeta"}, {"!": var("optOut")}]}, "on", "off"]},
         {"metadata": meta(1)})
    lo = r.int(10, 30)
    flag("bool-age-between", on_off, "off",
         {"if": [{r.pick(["<", "<="]): [lo, var("age"), lo + r.int(5, 40)]}, "on", None]})
    flag("bool-timestamp", on_off, r.pick(["on", "off"]), {
        "if": [
            {"and": [{">": [var("$flagd.timestamp"), ts]},
                     {"<=": [var("$flagd.timestamp"), 4102444800]},
                     {"!!": [var("beta")]}]},
            "on",
            "off",
        ]})
    flag("bool-strict", on_off, "off", {
        "if": [
            {"===": [var("beta"), True]}, "on",
            {"!==": [var("country"), r.pick(COUNTRIES)]}, "off",
            None,
        ]})
    # `or` falls through to its last operand; `nope` is no variant (GENERAL).
    flag("bool-or", on_off, "off", {
        "or": [
            {"and": [{"$ref": "isAdult"}, {"in": [r.pick(TAGS), var("tags")]}, "on"]},
            {"and": [{"!": [var("beta")]}, {"<": [var("score"), math.floor(r.next() * 1000) / 1000]}, "off"]},
            {"if": [var("optOut"), "nope", "off"]},
        ]})
    flag("bool-rollout", on_off, "off", {"fractional": [["on", r.int(1, 60)], ["off", r.int(1, 60)]]})
    flag("bool-static", on_off, r.pick(["on", "off"]), None, {"metadata": {"kind": "static"}})
    flag("bool-disabled", on_off, "on", {"if": [True, "on"]}, {"state": "DISABLED", "metadata": {"kind": "kill"}})

    # --- string ---
    flag("str-tier", {"tier-gold": "G", "tier-silver": "S", "tier-bronze": "B", "tier-free": "F"},
         "tier-free", {"cat": ["tier-", var(["tier", "free"])]}, {"metadata": meta(2)})
    flag("str-country", {"eu": "Europe", "mail": "mailbox", "other": "elsewhere", "none": ""}, "none", {
        "if": [
            {"in": [var("country"), ["DE", "FR", r.pick(["IN", "JP", "BR"])]]}, "eu",
            {"in": [r.pick(["@mail", ".org", "example.n", "corp"]), var("email")]}, "mail",
            {"==": [var("country"), None]}, None,
            "other",
        ]})
    flag("str-semver-a", {"new": "new", "tilde": "tilde", "caret": "caret", "old": "old"}, "old", {
        "if": [
            {"sem_ver": [var("appVersion"), "~", rule_version(r)]}, "tilde",
            {"sem_ver": [var("appVersion"), "^", rule_version(r)]}, "caret",
            {"sem_ver": [var("appVersion"), ">=", rule_version(r)]}, "new",
            None,
        ]})
    flag("str-semver-b", {"eq": "eq", "lt": "lt", "ne": "ne", "none": "none"}, "none", {
        "if": [
            {"sem_ver": [var("appVersion"), "=", rule_version(r)]}, "eq",
            {"sem_ver": [var("appVersion"), "<", rule_version(r)]}, "lt",
            {"sem_ver": [var("appVersion"), "!=", rule_version(r)]}, "ne",
            "none",
        ]})
    flag("str-flagkey", {"str-flagkey-hit": "hit", "str-flagkey-name": "name", "miss": "miss"}, "miss", {
        "if": [
            {"starts_with": [var("name"), r.word(1, LOWER)]}, {"cat": [var("$flagd.flagKey"), "-name"]},
            {"starts_with": [var("$flagd.flagKey"), "str-"]}, {"cat": [var("$flagd.flagKey"), "-", "hit"]},
            "miss",
        ]})
    flag("str-nodefault", {"yes": "yes", "no": "no"}, None, {
        "if": [{"$ref": "isAdult"}, "yes", {"<": [var("age"), 5]}, "no", None]})
    flag("str-fractional-by", {"a": "A", "b": "B", "c": "C"}, "a", {
        "fractional": [{"cat": [var(["user.org.id", "none"]), "/", r.word(4, LOWER)]},
                       ["a", 1], ["b", 1], ["c", r.int(1, 5)]]})
    flag("str-fractional-nested", {"red": "red", "green": "green", "blue": "blue", "gray": "gray"}, "gray", {
        "if": [
            {"!=": [var("user.plan"), "free"]},
            {"fractional": [["red", r.int(0, 5)], ["green", r.int(1, 5)], ["blue"]]},
            "gray",
        ]})

    # --- number (integer and float variants) ---
    # Never 0: flagd (Go) has `null >= 0` false, the server and flagd-core true.
    t = (math.floor(r.next() * 999) + 1) / 1000
    flag("num-int-score", {"high": 3, "mid": 2, "low": 1, "zero": 0}, "zero", {
        "if": [
            {">=": [var("score"), t]}, "high",
            {">": [var("score"), t / 2]}, "mid",
            {"<=": [var("score"), t / 4]}, "low",
            None,
        ]})
    a = r.int(20, 60)
    # `exact` is 42.0, a float variant the server must keep as one.
    flag("num-float-age", {"small": 0.5, "big": 2.75, "neg": -1.125, "exact": 42.0}, "big", {
        "if": [
            {"<": [var("age"), a]}, "small",
            {"==": [var("age"), a + r.int(0, 3)]}, "exact",
            {"!=": [var("age"), a + 10]}, "big",
            "neg",
        ]}, {"metadata": meta(3)})
    flag("num-semver", {"legacy": -7, "modern": 1000000, "mid": 12}, "mid", {
        "if": [
            {"sem_ver": [var("appVersion"), "<=", rule_version(r)]}, "legacy",
            {"sem_ver": [var("appVersion"), ">", rule_version(r)]}, "modern",
            None,
        ]})
    flag("num-nested", {"paid": 1.5, "big": 250, "free": 0}, "free", {
        "if": [
            {">": [var(["user.org.size", 0]), r.int(10, 500)]}, "big",
            {"and": [{"!=": [var("user.plan"), "free"]}, {"!!": var("user.plan")}]}, "paid",
            "free",
        ]})
    flag("num-fractional", {"one": 1, "two": 2, "three": 3.5}, "one", {
        "fractional": [["one"], ["two"], ["three", r.int(1, 3)]]})
    flag("num-static", {"only": 0.25}, "only")

    # --- object ---
    flag("obj-plan", {
        "pro": {"limits": {"seats": 50, "storageGb": 1.5}, "features": ["a", "b"]},
        "team": {"limits": {"seats": 10}, "features": ["a"]},
        "basic": {"limits": {}, "features": []},
    }, "basic", {
        "if": [
            {"==": [var("user.plan"), "pro"]}, "pro",
            {"or": [{"===": [var("user.plan"), "team"]}, {"in": ["vip", var("tags")]}]}, "team",
            None,
        ]}, {"metadata": meta(4)})
    flag("obj-email", {
        "admin": {"role": "admin", "level": 3},
        "external": {"role": "guest", "level": 0, "nested": {"deep": [1, {"x": None}]}},
        "internal": {"role": "staff", "level": 1},
    }, "internal", {
        "if": [
            {"starts_with": [var("email"), r.word(1, "abcde")]}, "admin",
            {"!": [{"ends_with": [var("email"), r.pick(DOMAINS)]}]}, "external",
            None,
        ]})
    flag("obj-fractional-flagkey", {"x": {"bucket": "x"}, "y": {"bucket": "y"}}, "x", {
        "fractional": [{"cat": [var("$flagd.flagKey"), var(["targetingKey", ""])]},
                       ["x", r.int(1, 50)], ["y", r.int(1, 50)]]})
    flag("obj-disabled", {"v": {"a": 1}}, "v", None, {"state": "DISABLED"})
    flag("obj-age-ge", {"adult": {"adult": True}, "minor": {"adult": False}}, "minor", {
        "if": [{">=": [var("age"), 18]}, "adult", {"<": [var("age"), 18, 1000]}, "minor", None]})

    return {"$evaluators": evaluators, "flags": flags}


def uses_fractional(rule: Any) -> bool:
    if isinstance(rule, dict):
        return "fractional" in rule or any(uses_fractional(v) for v in rule.values())
    if isinstance(rule, list):
        return any(uses_fractional(v) for v in rule)
    return False


# ---------------------------------------------------------------------------
# The contexts (the JavaScript twin's makeContext, call for call).


def semver_input(r: Rng) -> Any:
    M, m, p = r.int(0, 3), r.int(0, 5), r.int(0, 9)
    k = r.int(0, 13)
    if k <= 2:
        return f"{M}.{m}.{p}"
    if k == 3:
        return f"v{M}.{m}.{p}"
    if k == 4:
        return f"V{M}.{m}.{p}"
    if k == 5:
        return f"{M}.{m}.{p}-" + r.pick(["rc.1", "rc.2", "alpha", "beta.2", "0.3.7", "x-y"])
    if k == 6:
        return f"{M}.{m}.{p}+build.{r.int(0, 99)}"
    if k == 7:
        return f"{M}.{m}.{p}-rc.{r.int(0, 3)}+b{r.int(0, 9)}"
    if k == 8:
        return f"{M}.{m}"
    if k == 9:
        return f"{M}" if r.chance(0.5) else f"v{M}.{m}"
    if k == 10:
        return f"{M}.{m}.{p}.{r.int(0, 9)}"
    if k == 11:
        return r.pick(["latest", "abc", "", "x.y.z", "1.x", "1.2.3-", "01.2.3", "1.02.3", "1.2.3-01", "-1.2.3"])
    if k == 12:
        return M if r.chance(0.5) else M + m / 10 + (0.5 if m == 0 else 0)
    return None


def make_context(r: Rng, i: int) -> dict:
    ctx: dict[str, Any] = {}
    if r.chance(0.9):
        ctx["targetingKey"] = r.word(r.int(1, 24), KEYCHARS)

    def put(k: str, v: Any) -> None:
        if v is not None:
            ctx[k] = v

    put("email", f"{r.word(r.int(1, 10), 'abcdefghij.0123')}@{r.pick(DOMAINS)}" if r.chance(0.85) else None)
    put("name", r.word(r.int(1, 8), LOWER) if r.chance(0.8) else None)
    age_kind = r.int(0, 9)
    put("age", r.int(0, 99) if age_kind < 6 else r.int(0, 990) / 10 if age_kind < 8 else None)
    put("score", math.floor(r.next() * 1000) / 1000 if r.chance(0.85) else None)
    put("beta", r.chance(0.5) if r.chance(0.7) else None)
    put("optOut", r.chance(0.5) if r.chance(0.3) else None)
    put("appVersion", semver_input(r))
    put("country", r.pick(COUNTRIES) if r.chance(0.85) else None)
    put("tier", r.pick(TIERS) if r.chance(0.8) else None)
    if r.chance(0.8):
        user: dict[str, Any] = {}
        if r.chance(0.8):
            user["plan"] = r.pick(PLANS)
        if r.chance(0.7):
            user["org"] = {"id": f"org-{r.int(0, 50)}"}
            if r.chance(0.7):
                user["org"]["size"] = r.int(1, 1000)
        ctx["user"] = user
    if r.chance(0.7):
        tags = [t for t in TAGS if r.chance(0.3)]
        if tags:
            ctx["tags"] = tags
    # Attributes no rule reads, of every type (evaluated in the same order as
    # the JavaScript array literal).
    for _ in range(r.int(0, 3)):
        name = f"extra{r.int(0, 9)}"
        choices = [r.word(3, LOWER), r.int(-5, 5), r.chance(0.5),
                   {"n": r.int(0, 3), "s": r.word(2, LOWER)}, [1, "two", False]]
        put(name, r.pick(choices))
    ctx["seq"] = i
    return ctx


# ---------------------------------------------------------------------------
# HTTP, one kept-alive connection per thread.


class Http:
    def __init__(self, base: str, token: str) -> None:
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.prefix = u.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.local = threading.local()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        data = None if body is None else json.dumps(body)
        for attempt in (0, 1):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                conn.request(method, self.prefix + path, body=data, headers=self.headers)
                resp = conn.getresponse()
                return resp.status, resp.read().decode("utf-8")
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


# ---------------------------------------------------------------------------
# Answers, normalised: {value?, variant?, reason, errorCode?, metadata?}.


def from_server(f: dict) -> dict:
    if "errorCode" in f:
        return {"reason": "ERROR", "errorCode": f["errorCode"]}
    a: dict[str, Any] = {"reason": f.get("reason")}
    for k in ("variant", "value", "metadata"):
        if k in f:
            a[k] = f[k]
    return a


def enum_text(v: Any) -> Any:
    return getattr(v, "value", v)


SENTINEL = object()


def from_core(core: FlagdCore, key: str, kind: str, ctx: dict) -> dict:
    ec = EvaluationContext(
        targeting_key=ctx.get("targetingKey"),
        attributes={k: v for k, v in ctx.items() if k != "targetingKey"},
    )
    resolve = {
        "boolean": core.resolve_boolean_value,
        "string": core.resolve_string_value,
        "integer": core.resolve_integer_value,
        "float": core.resolve_float_value,
        "object": core.resolve_object_value,
    }[kind]
    try:
        res = resolve(key, SENTINEL, ec)
    except OpenFeatureError as e:
        return {"reason": "ERROR", "errorCode": enum_text(e.error_code)}
    except Exception as e:  # noqa: BLE001 -- the provider reports these as GENERAL
        return {"reason": "ERROR", "errorCode": "GENERAL", "exception": f"{type(e).__name__}: {e}"}
    if res.error_code is not None:
        return {"reason": "ERROR", "errorCode": enum_text(res.error_code)}
    a: dict[str, Any] = {"reason": enum_text(res.reason)}
    if res.variant is not None:
        a["variant"] = res.variant
        if res.value is not SENTINEL:
            a["value"] = res.value
    a["metadata"] = dict(res.flag_metadata or {})
    return a


def canon(v: Any) -> str:
    """JSON with sorted keys: 1, 1.0 and true differ."""
    return json.dumps(v, sort_keys=True)


def differences(s: dict, c: dict, kind: str) -> list[str]:
    out = []
    for field in ("reason", "variant", "value", "errorCode"):
        sv, cv = s.get(field), c.get(field)
        if field == "value" and kind == "float" and isinstance(sv, (int, float)) and not isinstance(sv, bool):
            # Float resolution hands every number back as a float.
            sv = float(sv)
        if canon(sv) != canon(cv):
            out.append(field)
    if "metadata" in s and c.get("reason") != "ERROR" and canon(s["metadata"]) != canon(c.get("metadata", {})):
        out.append("metadata")
    return out


def kind_of(definition: dict) -> str:
    values = list(definition["variants"].values())
    v = values[0]
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "integer" if all(isinstance(x, int) and not isinstance(x, bool) for x in values) else "float"
    return "object"


def substitute_refs(file: dict) -> dict:
    text = json.dumps(file["flags"])
    for name, rule in file.get("$evaluators", {}).items():
        text = text.replace(json.dumps({"$ref": name}), json.dumps(rule))
    return json.loads(text)


# ---------------------------------------------------------------------------


def main() -> int:
    try:
        return run()
    except Exception as e:  # noqa: BLE001 -- the test could not run: not a difference
        print(f"differential python: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


def run() -> int:
    if len(sys.argv) != 5:
        print("usage: differential_python.py BASE_URL ADMIN_TOKEN SEED COUNT", file=sys.stderr)
        return 2
    base, token, seed_arg, count_arg = sys.argv[1:]
    count = int(count_arg)
    concurrency = max(1, int(os.environ.get("DIFF_CONCURRENCY", "8")))
    show = int(os.environ.get("DIFF_SHOW", "5"))
    started = time.monotonic()
    http_ = Http(base, token)

    file = build_flags(Rng(seed_of(seed_arg)))
    # No fractional here (fractional-v3 in flagd-core 2.0.0: see the header),
    # unless the server serves v3 too.
    if os.environ.get("DIFF_FRACTIONAL") != "v3":
        file["flags"] = {k: f for k, f in file["flags"].items()
                         if not uses_fractional(f.get("targeting"))}

    status, text = http_.call("POST", "/v1/flags:import", {"configurationText": json.dumps(file), "prune": True})
    if status != 200:
        raise RuntimeError(f"import: {status} {text}")
    status, export_text = http_.call("GET", "/v1/flags:export")
    if status != 200:
        raise RuntimeError(f"export: {status} {export_text}")
    # configurationText: the file with numbers as the server holds them.
    export_text = json.loads(export_text)["configurationText"]
    exported = json.loads(export_text)

    # The export should be the file, $ref substituted, numbers as written.
    want_flags = substitute_refs(file)
    round_trip = []
    for key in sorted(set(want_flags) | set(exported.get("flags", {}))):
        want, got = want_flags.get(key), exported.get("flags", {}).get(key)
        if want is not None:
            want = {"metadata": {}, **want}
        if got is not None:
            got = {"metadata": {}, **got}
        if canon(want) != canon(got):
            round_trip.append((key, want, got))
    if round_trip:
        print(f"WARNING export round-trip: {len(round_trip)} flag(s) differ from the imported file "
              f"(JSON types compared): {', '.join(k for k, _, _ in round_trip)}")
        for key, want, got in round_trip[:show]:
            print(f"  {key}: imported variants {canon((want or {}).get('variants'))}, "
                  f"exported {canon((got or {}).get('variants'))}")

    core = FlagdCore()
    core.set_flags(export_text)
    keys = sorted(exported["flags"])
    kinds = {k: kind_of(exported["flags"][k]) for k in keys}
    # Resolve number flags as the server holds them (the export may have lost
    # a float's ".0": see the round-trip check).
    for k in keys:
        if kinds[k] == "integer" and kind_of(want_flags.get(k, exported["flags"][k])) == "float":
            kinds[k] = "float"

    crng = Rng(seed_of(f"{seed_arg}/contexts"))
    contexts = [make_context(crng, i) for i in range(count)]

    lock = threading.Lock()
    diffs: list[dict] = []
    classes: Counter = Counter()
    outcomes: dict[str, Counter] = defaultdict(Counter)

    def one(i: int) -> int:
        ctx = contexts[i]
        status, body = http_.call("POST", "/ofrep/v1/evaluate/flags", {"context": ctx})
        if status != 200:
            raise RuntimeError(f"OFREP bulk for context #{i}: {status} {body}")
        got = {f["key"]: f for f in json.loads(body)["flags"]}
        local = []
        outs = []
        for key in keys:
            c = from_core(core, key, kinds[key], ctx)
            f = got.get(key)
            s = {"reason": "(flag missing from the bulk answer)"} if f is None else from_server(f)
            outs.append((key, f"{s.get('reason')}" + (f":{s['variant']}" if "variant" in s else "")
                         + (f":{s['errorCode']}" if "errorCode" in s else "")))
            d = differences(s, c, kinds[key])
            if d:
                local.append({"i": i, "key": key, "fields": d, "context": ctx, "server": s, "core": c})
        with lock:
            for key, o in outs:
                outcomes[key][o] += 1
            for d in local:
                s, c = d["server"], d["core"]
                cls = (f"{d['key']}: {'+'.join(d['fields'])} server {s.get('reason')}"
                       f"{'/' + s['errorCode'] if 'errorCode' in s else ''} vs flagd-core {c.get('reason')}"
                       f"{'/' + c['errorCode'] if 'errorCode' in c else ''}")
                classes[cls] += 1
                diffs.append(d)
        return len(keys)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = sum(pool.map(one, range(count)))

    secs = time.monotonic() - started
    tks = len({c["targetingKey"] for c in contexts if "targetingKey" in c})
    print(f"differential python: {count} contexts x {len(keys)} flags = {answers} answers, "
          f"{len(diffs)} differences (seed {seed_arg}, {tks} distinct targeting keys, {secs:.1f} s)")
    if os.environ.get("DIFF_COVERAGE"):
        print("server outcomes per flag (reason:variant count):")
        for k in keys:
            print(f"  {k}: {', '.join(f'{o} {n}' for o, n in sorted(outcomes[k].items()))}")
    if diffs:
        print("difference classes (flag: fields, reasons):")
        for cls, n in classes.most_common():
            print(f"  {n} x {cls}")
        diffs.sort(key=lambda d: (d["i"], d["key"]))
        for d in diffs[:show]:
            print(f"--- context #{d['i']}, flag {d['key']}, differs in {', '.join(d['fields'])}")
            print(f"  flag:     {json.dumps(exported['flags'][d['key']])}")
            print(f"  context:  {json.dumps(d['context'])}")
            print(f"  server:   {json.dumps(d['server'])}")
            print(f"  flagd-core: {json.dumps(d['core'])}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())

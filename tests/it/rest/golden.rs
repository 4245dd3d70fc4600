//! Golden JSON bodies of every REST route, success and error, on SQLite and
//! PostgreSQL: a fixed script of requests on a fresh database, each answer
//! compared with `tests/golden/rest/<case>.json`.
//!
//! Timestamps are checked to be RFC 3339 in UTC ending in `Z`, then replaced
//! by `"<timestamp>"`; everything else (revisions included) must match
//! exactly. `UPDATE_GOLDEN=1 cargo test --test it rest::golden` rewrites the files
//! after an intended change; review the diff.

use std::{collections::BTreeSet, path::PathBuf};

use crate::common::*;
use serde_json::{Value as Json, json};

on_both_backends!(every_route_answers_its_golden_bodies);

/// One scripted request: a golden case when it has a name, setup otherwise.
struct Step {
    name: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    token: Option<String>,
    body: Option<Json>,
}

fn case(name: &'static str, method: &'static str, path: &'static str, body: Option<Json>) -> Step {
    Step {
        name: Some(name),
        method,
        path,
        token: Some(ADMIN.into()),
        body,
    }
}

fn setup(method: &'static str, path: &'static str, body: Json) -> Step {
    Step {
        name: None,
        method,
        path,
        token: Some(ADMIN.into()),
        body: Some(body),
    }
}

fn as_token(mut s: Step, token: Option<String>) -> Step {
    s.token = token;
    s
}

fn script() -> Vec<Step> {
    vec![
        // TenantService
        case(
            "CreateTenant.ok",
            "POST",
            "/v1/tenants",
            Some(json!({"id": "a", "displayName": "Tenant A", "patterns": ["*.a.example", "a.*"]})),
        ),
        case(
            "CreateTenant.error",
            "POST",
            "/v1/tenants",
            Some(json!({"id": "b", "patterns": ["*.a.example"]})),
        ),
        setup(
            "POST",
            "/v1/tenants",
            json!({"id": "b", "patterns": ["b.example"]}),
        ),
        case("GetTenant.ok", "GET", "/v1/tenants/a", None),
        case("GetTenant.error", "GET", "/v1/tenants/nobody", None),
        case("ListTenants.ok", "GET", "/v1/tenants?pageSize=1", None),
        case("ListTenants.error", "GET", "/v1/tenants?pageToken=zz", None),
        case(
            "UpdateTenant.ok",
            "PATCH",
            "/v1/tenants/a",
            Some(json!({"displayName": "Tenant A, renamed"})),
        ),
        case(
            "UpdateTenant.error",
            "PATCH",
            "/v1/tenants/a?expectedRevision=1",
            Some(json!({"disabled": true})),
        ),
        case(
            "ResolveTenant.ok",
            "GET",
            "/v1/tenants:resolve?key=API.A.Example:443",
            None,
        ),
        case(
            "ResolveTenant.error",
            "GET",
            "/v1/tenants:resolve?key=a..example",
            None,
        ),
        // FlagService
        case(
            "CreateFlag.ok",
            "POST",
            "/v1/flags",
            Some(
                json!({"key": "banner", "type": "FLAG_TYPE_STRING", "description": "The banner text", "defaultValue": "hello"}),
            ),
        ),
        case(
            "CreateFlag.error",
            "POST",
            "/v1/flags",
            Some(json!({"key": "limit", "type": "FLAG_TYPE_NUMBER", "defaultValue": "ten"})),
        ),
        setup(
            "POST",
            "/v1/flags",
            json!({"key": "limit", "type": "FLAG_TYPE_NUMBER", "defaultValue": 10}),
        ),
        setup(
            "POST",
            "/v1/flags",
            json!({"key": "kill-switch", "type": "FLAG_TYPE_BOOL", "defaultValue": false}),
        ),
        case("GetFlag.ok", "GET", "/v1/flags/banner", None),
        case("GetFlag.error", "GET", "/v1/flags/nope", None),
        case(
            "UpdateFlag.ok",
            "PATCH",
            "/v1/flags/limit",
            Some(json!({"storedValue": 20.5})),
        ),
        case(
            "UpdateFlag.error",
            "PATCH",
            "/v1/flags/limit",
            Some(json!({"type": "FLAG_TYPE_STRING"})),
        ),
        case(
            "SetTenantOverride.ok",
            "PUT",
            "/v1/tenants/a/flags/banner",
            Some(json!("hi from a")),
        ),
        case(
            "SetTenantOverride.error",
            "PUT",
            "/v1/tenants/a/flags/banner",
            Some(json!(42)),
        ),
        case(
            "ListFlags.ok",
            "GET",
            "/v1/flags?tenant=a&view=FLAG_VIEW_FULL",
            None,
        ),
        case("ListFlags.error", "GET", "/v1/flags?pageSize=-1", None),
        case(
            "ListFlags_admin.ok",
            "GET",
            "/admin/feature-flags?tenant=a",
            None,
        ),
        as_token(
            case(
                "ListFlags_admin.error",
                "GET",
                "/admin/feature-flags?tenant=a",
                None,
            ),
            Some(tenant_token("b")),
        ),
        case(
            "EvaluateFlag.ok",
            "GET",
            "/v1/flags/banner:evaluate?resolveKey=www.a.example",
            None,
        ),
        case(
            "EvaluateFlag.error",
            "GET",
            "/v1/flags/banner:evaluate?resolveKey=nobody.example",
            None,
        ),
        case(
            "ImportFlags.ok",
            "POST",
            "/v1/flags:import",
            Some(json!({"configuration": {
                "$evaluators": {"beta_users": {"starts_with": [{"var": "email"}, "beta"]}},
                "flags": {"checkout": {
                    "state": "ENABLED",
                    "variants": {"new": true, "old": false},
                    "defaultVariant": "old",
                    "targeting": {"if": [{"$ref": "beta_users"}, "new",
                        {"fractional": [["new", 10], ["old", 90]]}]},
                    "metadata": {"team": "payments"}
                }}
            }})),
        ),
        case(
            "ImportFlags.error",
            "POST",
            "/v1/flags:import",
            Some(json!({"configuration": {"flags": {"checkout": {
                "state": "ENABLED", "variants": {"new": true},
                "targeting": {"if": [{"nope": [1]}, "new", null]}
            }}}})),
        ),
        case(
            "EvaluateFlag_post.ok",
            "POST",
            "/v1/flags/checkout:evaluate",
            Some(json!({"tenantId": "a", "context": {"targetingKey": "user-7"}, "explain": true})),
        ),
        case(
            "EvaluateFlag_post.error",
            "POST",
            "/v1/flags/checkout:evaluate",
            Some(json!({"context": "user-7"})),
        ),
        case("ExportFlags.ok", "GET", "/v1/flags:export", None),
        as_token(
            case("ExportFlags.error", "GET", "/v1/flags:export", None),
            Some(tenant_token("a")),
        ),
        case("WatchFlags.ok", "GET", "/v1/flags:watch?tenantId=a", None),
        case(
            "WatchFlags.error",
            "GET",
            "/v1/flags:watch?sinceRevision=yesterday",
            None,
        ),
        case(
            "WatchFlags_post.ok",
            "POST",
            "/v1/flags:watch",
            Some(json!({"tenantId": "a", "context": {"targetingKey": "user-7", "plan": "pro"}})),
        ),
        case(
            "WatchFlags_post.error",
            "POST",
            "/v1/flags:watch",
            Some(json!({"tenantId": "a", "context": "user-7"})),
        ),
        case(
            "ClearTenantOverride.ok",
            "DELETE",
            "/v1/tenants/a/flags/banner",
            None,
        ),
        case(
            "ClearTenantOverride.error",
            "DELETE",
            "/v1/tenants/nobody/flags/banner",
            None,
        ),
        case("DeleteFlag.ok", "DELETE", "/v1/flags/limit", None),
        case("DeleteFlag.error", "DELETE", "/v1/flags/limit", None),
        case("DeleteTenant.ok", "DELETE", "/v1/tenants/b", None),
        case("DeleteTenant.error", "DELETE", "/v1/tenants/b", None),
        // GatingService (no Prometheus configured: the base threshold).
        case(
            "GetSmokeThreshold.ok",
            "GET",
            "/v1/gating/smoke-threshold",
            None,
        ),
        case(
            "GetSmokeThreshold.error",
            "GET",
            "/v1/gating/smoke-threshold?slo=latency",
            None,
        ),
        case(
            "EvaluateSmoke.ok",
            "POST",
            "/v1/gating/smoke:evaluate",
            Some(json!({
                "target": "127.0.0.1:50051",
                "runId": "ci-1",
                "results": {
                    "count": 6000, "ok": 5994, "errors": 6, "error_rate": 0.001, "rps": 199.8,
                    "latency_ms": {"min": 0.3, "med": 0.9, "avg": 1.1, "p(90)": 1.8, "p(95)": 2.4, "p(99)": 5.1, "max": 30.2, "p(50)": 0.9},
                    "statusCodeDistribution": {"UNAVAILABLE": 6, "OK": 5994},
                    "errorDistribution": {"UNAVAILABLE": 6},
                    "percentileMethod": "hdr", "duration_s": 30
                },
                "config": {"calls": ["switchyard.v1.FlagService/EvaluateFlag"], "rate": 200, "duration_s": 30, "warmup_s": 3, "percentileMethod": "hdr"}
            })),
        ),
        case(
            "EvaluateSmoke.error",
            "POST",
            "/v1/gating/smoke:evaluate",
            Some(json!({"results": {"count": 10, "errors": 11}})),
        ),
        case("ListGateRuns.ok", "GET", "/v1/gating/runs?kind=smoke", None),
        case(
            "ListGateRuns.error",
            "GET",
            "/v1/gating/runs?kind=deploy",
            None,
        ),
        case(
            "CompareCanary.ok",
            "POST",
            "/v1/gating/canary:compare",
            Some(json!({
                "baseline": {"count": 6010, "errors": 3, "latency_ms": {"p(50)": 60.2, "p(95)": 210.0, "p(99)": 380.1}},
                "canary": {"count": 5995, "errors": 9, "latency_ms": {"p(50)": 61.0, "p(95)": 238.5, "p(99)": 401.0}},
                "config": {"interleaved": true, "percentileMethod": "hdr", "baseline": "10.0.0.1:50051", "canary": "10.0.0.2:50051"}
            })),
        ),
        case(
            "CompareCanary.error",
            "POST",
            "/v1/gating/canary:compare",
            Some(
                json!({"baseline": {"count": 10, "ok": 10, "latency_ms": {"p(95)": 1.5}}, "canary": {"count": 10, "latency_ms": {"p(95)": -1}}}),
            ),
        ),
        case(
            "RecordNlpOutcomes.ok",
            "POST",
            "/v1/nlp/outcomes:record",
            Some(json!({"outcomes": [
                {"tenantId": "a", "confidence": 0.31, "intent": "billing"},
                {"tenantId": "a", "confidence": 0.92, "intent": "billing"},
                {"tenantId": "a", "confidence": 0.77}
            ]})),
        ),
        case(
            "RecordNlpOutcomes.error",
            "POST",
            "/v1/nlp/outcomes:record",
            Some(
                json!({"outcomes": [{"tenantId": "a", "confidence": 0.5}, {"tenantId": "nobody", "confidence": 0.5}]}),
            ),
        ),
        // TokenService.
        case(
            "CreateToken.ok",
            "POST",
            "/v1/tokens",
            Some(json!({"name": "ci", "scope": "gating", "lifetime": "86400s"})),
        ),
        case(
            "CreateToken.error",
            "POST",
            "/v1/tokens",
            Some(json!({"name": "ci", "scope": "tenant:a"})),
        ),
        case("ListTokens.ok", "GET", "/v1/tokens?pageSize=10", None),
        case("ListTokens.error", "GET", "/v1/tokens?pageSize=-1", None),
        case("GetCaller.ok", "GET", "/v1/caller", None),
        as_token(case("GetCaller.error", "GET", "/v1/caller", None), None),
        case("RevokeToken.ok", "DELETE", "/v1/tokens/ci", None),
        case("RevokeToken.error", "DELETE", "/v1/tokens/ci", None),
        // AuditService: the entries of the writes above.
        case(
            "ListChanges.ok",
            "GET",
            "/v1/changes?tenantId=a&pageSize=2",
            None,
        ),
        case("ListChanges.error", "GET", "/v1/changes?pageSize=-1", None),
        case(
            "ExportChanges.ok",
            "GET",
            "/v1/changes:export?actor=admin_token",
            None,
        ),
        case(
            "ExportChanges.error",
            "GET",
            "/v1/changes:export?afterId=-1",
            None,
        ),
        // RolloutService (`{rollout}`: the id of the last rollout an answer
        // named). Holds of an hour: nothing is judged during the script.
        setup(
            "POST",
            "/v1/flags",
            json!({"key": "rollout-demo", "type": "FLAG_TYPE_BOOL",
                   "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
        ),
        case(
            "StartRollout.ok",
            "POST",
            "/v1/rollouts",
            Some(
                json!({"flagKey": "rollout-demo", "treatment": "on", "stages": [
                {"percent": 5, "hold": "3600s", "minSamples": 100},
                {"percent": 50, "hold": "3600s"}]}),
            ),
        ),
        case(
            "StartRollout.error",
            "POST",
            "/v1/rollouts",
            Some(
                json!({"flagKey": "rollout-demo", "treatment": "on", "stages": [
                {"percent": 5, "hold": "3600s"}]}),
            ),
        ),
        case("GetRollout.ok", "GET", "/v1/rollouts/{rollout}", None),
        case("GetRollout.error", "GET", "/v1/rollouts/nope", None),
        case(
            "ListRollouts.ok",
            "GET",
            "/v1/rollouts?flagKey=rollout-demo",
            None,
        ),
        case(
            "ListRollouts.error",
            "GET",
            "/v1/rollouts?pageSize=-1",
            None,
        ),
        case(
            "PauseRollout.ok",
            "POST",
            "/v1/rollouts/{rollout}:pause",
            Some(json!({})),
        ),
        case(
            "PauseRollout.error",
            "POST",
            "/v1/rollouts/{rollout}:pause",
            Some(json!({})),
        ),
        case(
            "SkipStage.ok",
            "POST",
            "/v1/rollouts/{rollout}:skip",
            Some(json!({})),
        ),
        case(
            "SkipStage.error",
            "POST",
            "/v1/rollouts/ro-000000000000:skip",
            Some(json!({})),
        ),
        case(
            "ResumeRollout.ok",
            "POST",
            "/v1/rollouts/{rollout}:resume",
            Some(json!({})),
        ),
        case(
            "ResumeRollout.error",
            "POST",
            "/v1/rollouts/{rollout}:resume",
            Some(json!({})),
        ),
        case(
            "AbortRollout.ok",
            "POST",
            "/v1/rollouts/{rollout}:abort",
            Some(json!({})),
        ),
        case(
            "AbortRollout.error",
            "POST",
            "/v1/rollouts/{rollout}:abort",
            Some(json!({})),
        ),
        setup(
            "POST",
            "/v1/rollouts",
            json!({"flagKey": "rollout-demo", "treatment": "on", "stages": [
                {"percent": 1, "hold": "3600s"}]}),
        ),
        as_token(
            case(
                "KillRollout.ok",
                "POST",
                "/v1/rollouts/{rollout}:kill",
                Some(json!({})),
            ),
            Some(GATING.into()),
        ),
        case(
            "KillRollout.error",
            "POST",
            "/v1/rollouts/{rollout}:kill",
            Some(json!({})),
        ),
        // Refusals of the HTTP layer itself.
        as_token(
            case("refusal.unauthenticated", "GET", "/v1/flags", None),
            None,
        ),
        as_token(
            case("refusal.bad_token", "GET", "/v1/flags", None),
            Some("not-a-token-0123456789".into()),
        ),
        case("refusal.no_route", "GET", "/v2/flags", None),
        case(
            "refusal.method_not_allowed",
            "DELETE",
            "/admin/feature-flags",
            None,
        ),
        case(
            "refusal.unknown_query_parameter",
            "GET",
            "/admin/feature-flags?tennant=a",
            None,
        ),
        case(
            "refusal.unknown_body_field",
            "POST",
            "/v1/tenants",
            Some(json!({"id": "c", "pattern": "c.example"})),
        ),
    ]
}

async fn every_route_answers_its_golden_bodies(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/rest");
    let table = switchyard::rest::route_table().unwrap();
    let mut ok_routes = BTreeSet::new();
    let mut error_routes = BTreeSet::new();
    let mut mismatches = Vec::new();
    let mut rollout = String::new();
    for mut step in script() {
        let template = step.path;
        let path = step.path.replace("{rollout}", &rollout);
        step.path = Box::leak(path.into_boxed_str());
        let (status, body) = if (step.path.starts_with("/v1/flags:watch")
            || step.path.starts_with("/v1/changes:export"))
            && step.name.is_some_and(|n| n.ends_with(".ok"))
        {
            first_stream_line(&server, &step).await
        } else {
            let r = http(
                &server,
                step.method,
                step.path,
                step.token.as_deref(),
                step.body.clone(),
            )
            .await;
            (r.status, r.json())
        };
        if let Some(id) = body["rollout"]["id"].as_str() {
            rollout = id.to_owned();
        }
        let Some(name) = step.name else {
            assert_eq!(status, 200, "setup {} {}: {body}", step.method, step.path);
            continue;
        };
        let method: http::Method = step.method.parse().unwrap();
        let path = step.path.split('?').next().unwrap();
        if let switchyard::rest::routes::Lookup::Found(route, _) = table.find(&method, path) {
            let key = format!("{} {}", route.method, route.template);
            if status == 200 {
                ok_routes.insert(key);
            } else {
                error_routes.insert(key);
            }
        }
        let actual = json!({
            "request": format!("{} {}", step.method, template),
            "requestBody": step.body,
            "status": status,
            "body": normalise(body),
        });
        let file = dir.join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
            continue;
        }
        let expected: Json = std::fs::read_to_string(&file)
            .map(|s| serde_json::from_str(&s).unwrap())
            .unwrap_or(Json::Null);
        if expected != actual {
            mismatches.push(format!(
                "{name}:\n  expected {}\n  actual   {}",
                expected, actual
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} golden bodies differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // Every route has an error case and a success case.
    for r in table.routes() {
        let key = format!("{} {}", r.method, r.template);
        assert!(
            error_routes.contains(&key),
            "no golden error body for {key}"
        );
        assert!(ok_routes.contains(&key), "no golden success body for {key}");
    }
}

/// Opens a watch and returns its first NDJSON line.
async fn first_stream_line(server: &TestServer, step: &Step) -> (u16, Json) {
    let body = step
        .body
        .as_ref()
        .map(|b| ("application/json", b.to_string().into_bytes()));
    let resp = http_send(server, step.method, step.path, Some(ADMIN), body).await;
    let status = resp.status().as_u16();
    (status, Lines::new(resp.into_body()).next().await)
}

/// Replaces RFC 3339 UTC timestamps by `"<timestamp>"` and gate run ids (24
/// hex digits, random) by `"<gate-run-id>"`; any other timestamp shape stays
/// and fails the comparison.
fn normalise(v: Json) -> Json {
    match v {
        Json::String(s) if is_utc_timestamp(&s) => Json::String("<timestamp>".into()),
        // A rollout's id (`ro-` and 12 random hex digits), alone or in a
        // message.
        Json::String(s) if s.contains("ro-") => Json::String(mask_rollout_ids(&s)),
        Json::Array(items) => Json::Array(items.into_iter().map(normalise).collect()),
        Json::Object(m) => Json::Object(
            m.into_iter()
                .map(|(k, v)| match v {
                    Json::String(id)
                        if k == "id"
                            && id.len() == 24
                            && id.bytes().all(|b| b.is_ascii_hexdigit()) =>
                    {
                        (k, Json::String("<gate-run-id>".into()))
                    }
                    // A new token's secret: `sy_` and 64 random hex digits.
                    Json::String(secret) if k == "secret" && secret.starts_with("sy_") => {
                        (k, Json::String("<secret>".into()))
                    }
                    // `"<revision>-<16 hex digits>"`: the digits name the
                    // server version, so they change with every release.
                    Json::String(tag) if k == "etag" && tag.starts_with('"') => {
                        let revision = tag.trim_matches('"').split('-').next().unwrap_or("");
                        (k, Json::String(format!("\"{revision}-<tag>\"")))
                    }
                    v => (k, normalise(v)),
                })
                .collect(),
        ),
        other => other,
    }
}

/// `s` with every `ro-` and 12 hex digits written `<rollout-id>`.
fn mask_rollout_ids(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("ro-") {
        let id = rest[i + 3..].get(..12);
        out.push_str(&rest[..i]);
        if id.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())) {
            out.push_str("<rollout-id>");
            rest = &rest[i + 15..];
        } else {
            out.push_str("ro-");
            rest = &rest[i + 3..];
        }
    }
    out.push_str(rest);
    out
}

/// `2026-11-25T15:40:28.661243Z`: date, `T`, time, optional fraction, `Z`.
fn is_utc_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20 || !s.ends_with('Z') {
        return false;
    }
    let fixed = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let rest = &s[19..s.len() - 1];
    fixed
        && (rest.is_empty()
            || (rest.len() > 1
                && rest.starts_with('.')
                && rest[1..].bytes().all(|c| c.is_ascii_digit())))
}

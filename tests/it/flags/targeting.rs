//! Flags in flagd's model as their users meet them, on SQLite and
//! PostgreSQL: rules that pick a variant from the evaluation context under
//! the tenant's override and the replica's `env` override, one answer on
//! every protocol (EvaluateFlag, OFREP, flagd RPC), invalid definitions
//! refused with their place and nothing written, and definitions that
//! survive a restart and round-trip through `flags import` / `flags export`,
//! and a watch that passes a context and follows its own values.

use crate::common::*;
use serde_json::{Value as Json, json};
use switchyard::{
    api::{
        flagd::evaluation::v2,
        v1::{
            CreateFlagRequest, EvaluateFlagRequest, ExportFlagsRequest, Flag, FlagType,
            ImportFlagsRequest, UpdateFlagRequest, evaluate_flag_request,
        },
    },
    client::Bearer,
};
use tonic::Code;

on_both_backends!(
    rules_pick_variants_from_the_context_under_overrides,
    one_context_gets_one_answer_on_every_protocol,
    invalid_definitions_are_refused_with_their_place_and_write_nothing,
    definitions_survive_a_restart_and_round_trip_through_the_cli,
    a_watch_with_a_context_gets_its_values_and_only_their_changes,
    fractional_v3_buckets_any_value_when_the_server_serves_it,
);

/// The flags every test starts from, in flagd's file format.
fn file() -> Json {
    json!({
        "$evaluators": {
            "beta": {"starts_with": [{"var": "email"}, "beta"]}
        },
        "flags": {
            "checkout": {
                "state": "ENABLED",
                "variants": {"new": "v2", "old": "v1"},
                "defaultVariant": "old",
                "targeting": {"if": [{"$ref": "beta"}, "new",
                    {"fractional": [["new", 50], ["old", 50]]}]},
                "metadata": {"team": "payments"}
            },
            "plan-gate": {
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{"in": [{"var": "tenantId"}, ["a"]]}, "on", "off"]}
            },
            "retired": {
                "state": "DISABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "on"
            },
            "opt-in": {
                "state": "ENABLED",
                "variants": {"yes": 1, "no": 0},
                "defaultVariant": null,
                "targeting": {"if": [{"sem_ver": [{"var": "version"}, ">=", "2.0.0"]}, "yes", null]}
            },
            "ratio": {
                "state": "ENABLED",
                "variants": {"zero": 0.0, "one": 1.0},
                "defaultVariant": "zero"
            },
            "broken": {
                "state": "ENABLED",
                "variants": {"a": "x"},
                "defaultVariant": "a",
                "targeting": {"cat": ["nope-", {"var": "targetingKey"}]}
            }
        }
    })
}

fn to_struct(v: &Json) -> pbjson_types::Struct {
    switchyard::server::grpc::flag::to_struct(v)
}

async fn import(
    server: &TestServer,
    file: &Json,
    prune: bool,
) -> Result<Vec<String>, tonic::Status> {
    server
        .flags(ADMIN)
        .await
        .import_flags(ImportFlagsRequest {
            configuration: Some(to_struct(file)),
            prune,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().created)
}

/// EvaluateFlag for `tenant` in `context`, as JSON (the REST body).
async fn evaluate(server: &TestServer, key: &str, tenant: Option<&str>, context: Json) -> Json {
    let mut body = json!({"context": context, "explain": true});
    if let Some(t) = tenant {
        body["tenantId"] = json!(t);
    }
    let r = http(
        server,
        "POST",
        &format!("/v1/flags/{key}:evaluate"),
        Some(ADMIN),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn answer(j: &Json) -> (Json, &str, &str, &str) {
    (
        j.get("value").cloned().unwrap_or(Json::Null),
        j["variant"].as_str().unwrap(),
        j["reason"].as_str().unwrap(),
        j["source"].as_str().unwrap(),
    )
}

async fn rules_pick_variants_from_the_context_under_overrides(backend: Backend) {
    let Some((server, _db)) = server_with(backend, |c| with_env_flag(c, "opt-in", "5")).await
    else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    import(&server, &file(), false).await.unwrap();

    // A shared rule ($evaluators) on a context attribute.
    let j = evaluate(
        &server,
        "checkout",
        None,
        json!({"email": "beta@x.example"}),
    )
    .await;
    assert_eq!(
        answer(&j),
        (json!("v2"), "new", "TARGETING_MATCH", "targeting")
    );
    assert_eq!(j["metadata"], json!({"team": "payments"}));
    // No targeting key for the fractional split: the default variant.
    let j = evaluate(&server, "checkout", None, json!({})).await;
    assert_eq!(answer(&j), (json!("v1"), "old", "DEFAULT", "default"));
    // With one, a stable bucket, explained: the if took its else, the split
    // hashed flag key + targeting key into 0..100.
    let j = evaluate(&server, "checkout", None, json!({"targetingKey": "user-1"})).await;
    let again = evaluate(&server, "checkout", None, json!({"targetingKey": "user-1"})).await;
    assert_eq!(answer(&j), answer(&again));
    let steps = j["explanation"].as_array().unwrap();
    assert_eq!(steps[0]["operation"], "if");
    assert_eq!(steps[0]["condition"], -1);
    assert_eq!(steps[1]["operation"], "fractional");
    assert_eq!(steps[1]["bucketingValue"], "checkoutuser-1");
    let bucket: u64 = steps[1]["bucket"].as_str().unwrap().parse().unwrap();
    assert!(bucket < 100, "{bucket}");
    let picked = if bucket < 50 { "new" } else { "old" };
    assert_eq!(
        (steps[1]["picked"].as_str(), j["variant"].as_str()),
        (Some(picked), Some(picked))
    );

    // The tenant is a context attribute: "only tenant a" is a rule...
    let a = evaluate(&server, "plan-gate", Some("a"), json!({})).await;
    assert_eq!(
        answer(&a),
        (json!(true), "on", "TARGETING_MATCH", "targeting")
    );
    let b = evaluate(&server, "plan-gate", Some("b"), json!({"tenantId": "a"})).await;
    assert_eq!(
        answer(&b),
        (json!(false), "off", "TARGETING_MATCH", "targeting"),
        "the tenant evaluated for is the rule's tenantId, whatever the context says"
    );
    // ...and the tenant's override comes before it.
    set_override(&server, "b", "plan-gate", v_bool(true)).await;
    let b = evaluate(&server, "plan-gate", Some("b"), json!({})).await;
    assert_eq!(
        answer(&b),
        (json!(true), "tenant", "TARGETING_MATCH", "tenant")
    );

    // A disabled flag: no value, whatever the overrides.
    set_override(&server, "a", "retired", v_bool(false)).await;
    let j = evaluate(&server, "retired", Some("a"), json!({})).await;
    assert_eq!(answer(&j), (Json::Null, "", "DISABLED", "disabled"));

    // The replica's env override comes before everything.
    let j = evaluate(&server, "opt-in", None, json!({"version": "1.0.0"})).await;
    assert_eq!(answer(&j), (json!(5), "env", "STATIC", "env"));

    // A rule naming no variant of the flag: ERROR, flagd's GENERAL.
    let j = evaluate(&server, "broken", None, json!({"targetingKey": "k"})).await;
    assert_eq!(answer(&j), (Json::Null, "", "ERROR", "error"));
    assert_eq!(j["errorCode"], "GENERAL");
    assert!(
        j["errorMessage"].as_str().unwrap().contains("nope-k"),
        "{j}"
    );

    // The listing says which flags have a rule and what the default
    // context (the tenant alone) gets.
    let r = http(
        &server,
        "GET",
        "/admin/feature-flags?tenant=a",
        Some(ADMIN),
        None,
    )
    .await;
    let listed: Vec<(String, bool, Json)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["flag"].as_str().unwrap().to_owned(),
                f["targeting"].as_bool().unwrap(),
                f["value"].clone(),
            )
        })
        .collect();
    assert!(
        listed.contains(&("plan-gate".into(), true, json!(true))),
        "{listed:?}"
    );
    assert!(
        listed.contains(&("checkout".into(), true, json!("v1"))),
        "{listed:?}"
    );
    assert!(
        listed.contains(&("retired".into(), false, Json::Null)),
        "{listed:?}"
    );
}

async fn one_context_gets_one_answer_on_every_protocol(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a"]).await;
    import(&server, &file(), false).await.unwrap();
    let mut flagd = v2::service_client::ServiceClient::with_interceptor(
        server.channel().await,
        Bearer::new(ADMIN),
    );
    let mut grpc = server.flags(ADMIN).await;
    for i in 0..100 {
        let ctx = json!({"targetingKey": format!("user-{i}"), "tenantId": "a",
                         "email": if i % 7 == 0 { "beta@x" } else { "x@y" }});
        let fields = to_struct(&ctx);
        let e = grpc
            .evaluate_flag(EvaluateFlagRequest {
                flag_key: "checkout".into(),
                target: Some(evaluate_flag_request::Target::TenantId("a".into())),
                context: Some(fields.clone()),
                explain: false,
            })
            .await
            .unwrap()
            .into_inner();
        let f = flagd
            .resolve_string(v2::ResolveStringRequest {
                flag_key: "checkout".into(),
                context: Some(fields),
            })
            .await
            .unwrap()
            .into_inner();
        let o = http(
            &server,
            "POST",
            "/ofrep/v1/evaluate/flags/checkout",
            Some(ADMIN),
            Some(json!({"context": ctx})),
        )
        .await
        .json();
        let value = e.value.as_ref().and_then(|v| match &v.kind {
            Some(pbjson_types::value::Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        });
        assert_eq!(
            (value.as_deref(), e.variant.as_str(), e.reason.as_str()),
            (
                f.value.as_deref(),
                f.variant.as_deref().unwrap(),
                f.reason.as_str()
            ),
            "{ctx}"
        );
        assert_eq!(
            (
                o["value"].as_str(),
                o["variant"].as_str(),
                o["reason"].as_str()
            ),
            (
                value.as_deref(),
                Some(e.variant.as_str()),
                Some(e.reason.as_str())
            ),
            "{ctx}"
        );
    }
    // No value: the reason alone, on each protocol.
    let f = flagd
        .resolve_int(v2::ResolveIntRequest {
            flag_key: "opt-in".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (f.value, f.variant, f.reason.as_str()),
        (None, None, "DEFAULT")
    );
    let o = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/retired",
        Some(ADMIN),
        Some(json!({})),
    )
    .await;
    assert_eq!(o.status, 200);
    assert_eq!(
        (o.json().get("value"), o.json()["reason"].as_str()),
        (None, Some("DISABLED"))
    );
    // A failing rule: flagd's status codes and OFREP's error body.
    let e = flagd
        .resolve_string(v2::ResolveStringRequest {
            flag_key: "broken".into(),
            context: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "{e:?}");
    let o = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/broken",
        Some(ADMIN),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (o.status, o.json()["errorCode"].as_str()),
        (400, Some("GENERAL"))
    );
    // Numbers in a gRPC context (doubles on the wire): a whole one reads as
    // written without a fraction (`cat` gives "3"), others as they are, and
    // one that is not finite is refused, naming where it is.
    import(
        &server,
        &json!({"flags": {"by-count": {"state": "ENABLED", "variants": {"yes": "yes", "no": "no"},
            "defaultVariant": "no",
            "targeting": {"if": [{"===": [{"cat": [{"var": "n"}]}, "3"]}, "yes", "no"]}}}}),
        false,
    )
    .await
    .unwrap();
    let by_count = |n: f64| EvaluateFlagRequest {
        flag_key: "by-count".into(),
        target: Some(evaluate_flag_request::Target::TenantId("a".into())),
        context: Some(pbjson_types::Struct {
            fields: [
                ("n".to_owned(), pbjson_types::Value::from(n)),
                ("nested".to_owned(), to_struct(&json!({"m": 1.5})).into()),
            ]
            .into(),
        }),
        explain: false,
    };
    let e = grpc
        .evaluate_flag(by_count(3.0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.variant, "yes", "3.0 on the wire reads as 3");
    let e = grpc
        .evaluate_flag(by_count(3.5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.variant, "no");
    for bad in [f64::NAN, f64::INFINITY] {
        let e = grpc.evaluate_flag(by_count(bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert_eq!(e.message(), "context.n: numbers must be finite");
    }
}

async fn invalid_definitions_are_refused_with_their_place_and_write_nothing(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut admin = server.flags(ADMIN).await;
    let create = |targeting: Json, variants: Json, default_variant: &str| CreateFlagRequest {
        flag: Some(Flag {
            key: "f".into(),
            r#type: FlagType::String as i32,
            variants: variants
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::from_value(v.clone()).unwrap()))
                .collect(),
            default_variant: default_variant.into(),
            targeting: Some(to_struct(&targeting)),
            ..Default::default()
        }),
    };
    for (req, place) in [
        (
            create(
                json!({"if": [{"regex": ["a", "b"]}, "x", null]}),
                json!({"x": "1"}),
                "x",
            ),
            "flag.targeting: at /targeting/if/0: unknown operation \"regex\"",
        ),
        (
            create(json!({"var": {"a": 1}}), json!({"x": "1"}), "x"),
            "flag.targeting: at /targeting/var",
        ),
        (
            create(json!({}), json!({"x": 1}), "x"),
            "flag.variants.x: is a number",
        ),
        // Rules that compile but break flagd's published targeting schema.
        (
            create(
                json!({"fractional": [["x", 50], ["y", -50]]}),
                json!({"x": "1", "y": "2"}),
                "x",
            ),
            "flag.targeting: at /targeting/fractional/1/1: must be >=0",
        ),
        (
            create(
                json!({"if": [{"sem_ver": [{"var": "v"}, "*", "1.0.0"]}, "x", null]}),
                json!({"x": "1"}),
                "x",
            ),
            "flag.targeting: at /targeting/if/0/sem_ver/1: value must be one of",
        ),
        (
            create(json!({}), json!({"x": "1"}), "y"),
            "flag.default_variant: names \"y\"",
        ),
    ] {
        let e = admin.create_flag(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with(place), "{place}: {}", e.message());
    }
    // One bad flag in a file: nothing of the file is written.
    let mut bad = file();
    bad["flags"]["zz-bad"] = json!({"state": "ENABLED", "variants": {"a": 1},
        "targeting": {"fractional": [["a", 1]], "extra": 1}});
    bad["flags"]["checkout"]["targeting"]["if"][0] = json!({"$ref": "missing"});
    let e = import(&server, &bad, false).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with("configuration/flags/checkout/targeting/if/0/$ref"),
        "{}",
        e.message()
    );
    let listed = http(&server, "GET", "/admin/feature-flags", Some(ADMIN), None).await;
    assert_eq!(listed.json(), json!([]), "nothing was written");
    // A rule that breaks flagd's schema refuses the file, naming the place,
    // unless the import takes such rules as flagd does, with warnings.
    let mut lax = file();
    lax["flags"]["checkout"]["targeting"]["if"][0] = json!({"ends_with": [{"var": "id"}, 3]});
    let e = import(&server, &lax, false).await.unwrap_err();
    assert_eq!(
        e.message(),
        "configuration/flags/checkout/targeting/if/0/ends_with/1: want string, but got \
         number (flagd's targeting schema)"
    );
    let listed = http(&server, "GET", "/admin/feature-flags", Some(ADMIN), None).await;
    assert_eq!(listed.json(), json!([]), "nothing was written");
    let r = server
        .flags(ADMIN)
        .await
        .import_flags(ImportFlagsRequest {
            configuration: Some(to_struct(&lax)),
            allow_schema_violations: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.created.len(), 6);
    assert_eq!(
        r.warnings,
        [
            "configuration/flags/checkout/targeting/if/0/ends_with/1: want string, but got \
          number (flagd's targeting schema)"
        ]
    );
    // ... and evaluates it as flagd does (ends_with on a number: null, false).
    let j = evaluate(
        &server,
        "checkout",
        None,
        json!({"id": "x3", "targetingKey": "u"}),
    )
    .await;
    assert_ne!(j["reason"], "ERROR", "{j}");
    server
        .flags(ADMIN)
        .await
        .delete_flag(switchyard::api::v1::DeleteFlagRequest {
            flag_key: "checkout".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // A flag's type cannot change by import.
    import(&server, &file(), false).await.unwrap();
    let mut retyped = file();
    retyped["flags"]["plan-gate"]["variants"] = json!({"on": "yes", "off": "no"});
    let e = import(&server, &retyped, false).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("plan-gate"), "{}", e.message());
    // Nor does an update leave a default variant that is not a variant.
    let e = admin
        .update_flag(UpdateFlagRequest {
            flag: Some(Flag {
                key: "checkout".into(),
                default_variant: "gone".into(),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["default_variant".into()],
            }),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let j = evaluate(&server, "checkout", None, json!({})).await;
    assert_eq!(j["variant"], "old", "the refused update wrote nothing");
}

async fn definitions_survive_a_restart_and_round_trip_through_the_cli(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let server = TestServer::start(test_config(&db)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, file().to_string()).unwrap();
    let addr = server.addr.to_string();
    let cli = |args: &[&str]| {
        let out = command(dir.path(), args, &[("SWITCHYARD_TOKEN", ADMIN)])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&["flags", "import", path.to_str().unwrap(), "--target", &addr]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("6 created, 0 updated, 0 unchanged, 0 deleted"),
        "{out}"
    );
    let (code, out, _) = cli(&["flags", "import", path.to_str().unwrap(), "--target", &addr]);
    assert_eq!(code, Some(0));
    assert!(out.contains("0 created, 0 updated, 6 unchanged"), "{out}");
    let before = evaluate(&server, "checkout", None, json!({"targetingKey": "user-9"})).await;
    // A file's `0.0` stays a float (SDKs check it), its `0` an integer.
    let ofrep = |key: &'static str| {
        let server = &server;
        async move {
            let r = http(
                server,
                "POST",
                &format!("/ofrep/v1/evaluate/flags/{key}"),
                Some(ADMIN),
                Some(json!({})),
            )
            .await;
            String::from_utf8(r.body.to_vec()).unwrap()
        }
    };
    assert!(
        ofrep("ratio").await.contains(r#""value":0.0"#),
        "{}",
        ofrep("ratio").await
    );
    assert!(ofrep("opt-in").await.contains(r#""reason":"DEFAULT""#));

    // Export: the same flags, $evaluators substituted where they were used.
    let (code, exported, err) = cli(&["flags", "export", "--target", &addr]);
    assert_eq!(code, Some(0), "{err}");
    assert!(exported.contains("\"zero\": 0.0"), "{exported}");
    let exported: Json = serde_json::from_str(&exported).unwrap();
    let mut want = file();
    want["flags"]["checkout"]["targeting"]["if"][0] =
        json!({"starts_with": [{"var": "email"}, "beta"]});
    assert_eq!(exported["flags"], want["flags"]);
    // A file that is not JSON is a usage error; a refused one exit 1.
    std::fs::write(&path, "{not json").unwrap();
    let (code, _, err) = cli(&["flags", "import", path.to_str().unwrap(), "--target", &addr]);
    assert_eq!(code, Some(2), "{err}");
    std::fs::write(&path, json!({"flags": {"x": {"variants": {}}}}).to_string()).unwrap();
    let (code, _, err) = cli(&["flags", "import", path.to_str().unwrap(), "--target", &addr]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("configuration/flags/x/state"), "{err}");

    // A restart reads the definitions back from the tables: same answers.
    server.shutdown().await.unwrap();
    let server = TestServer::start(test_config(&db)).await;
    let after = evaluate(&server, "checkout", None, json!({"targetingKey": "user-9"})).await;
    assert_eq!(answer(&after), answer(&before));
    let exported_again = server
        .flags(ADMIN)
        .await
        .export_flags(ExportFlagsRequest {})
        .await
        .unwrap()
        .into_inner();
    let exported_again: Json = serde_json::from_str(&exported_again.configuration_text).unwrap();
    assert_eq!(exported_again["flags"], want["flags"]);
    // Prune: a file of one flag leaves one flag.
    let one = json!({"flags": {"retired": file()["flags"]["retired"].clone()}});
    server
        .flags(ADMIN)
        .await
        .import_flags(ImportFlagsRequest {
            configuration: Some(to_struct(&one)),
            prune: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = http(&server, "GET", "/admin/feature-flags", Some(ADMIN), None).await;
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
}

/// WatchFlags for tenant `a` in `context` (none: the default context).
async fn watch_in(
    server: &TestServer,
    context: Option<Json>,
    since: i64,
) -> tonic::Streaming<switchyard::api::v1::WatchFlagsResponse> {
    server
        .flags(ADMIN)
        .await
        .watch_flags(switchyard::api::v1::WatchFlagsRequest {
            tenant_id: "a".into(),
            since_revision: since,
            context: context.as_ref().map(to_struct),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A watch event as (type, flag, value, variant, source, revision).
fn event(
    ev: &switchyard::api::v1::WatchFlagsResponse,
) -> (String, String, Json, String, String, i64) {
    let f = ev.flag.clone().unwrap_or_default();
    (
        ev.r#type().as_str_name().to_owned(),
        f.flag,
        f.value.as_ref().map(from_proto).unwrap_or(Json::Null),
        f.variant,
        f.source,
        ev.revision,
    )
}

fn from_proto(v: &pbjson_types::Value) -> Json {
    switchyard::server::grpc::convert::from_proto("value", Some(v)).unwrap()
}

/// `checkout` with its two variants' values.
fn checkout_with(new: &str, old: &str) -> Json {
    let mut f = file();
    f["flags"]["checkout"]["variants"] = json!({"new": new, "old": old});
    f
}

async fn a_watch_with_a_context_gets_its_values_and_only_their_changes(backend: Backend) {
    use crate::watch::next;
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a"]).await;
    import(&server, &file(), false).await.unwrap();
    let beta = json!({"email": "beta@x.example"});
    let mut mine = watch_in(&server, Some(beta.clone()), 0).await;
    let mut plain = watch_in(&server, None, 0).await;

    // The snapshot holds what EvaluateFlag answers this context.
    let snap = next(&mut mine).await;
    let start = snap.revision;
    let value_of = |ev: &switchyard::api::v1::WatchFlagsResponse, key: &str| {
        let f = ev.flags.iter().find(|f| f.flag == key).unwrap();
        (
            f.value.as_ref().map(from_proto).unwrap_or(Json::Null),
            f.variant.clone(),
            f.source.clone(),
        )
    };
    assert_eq!(
        value_of(&snap, "checkout"),
        (json!("v2"), "new".into(), "targeting".into())
    );
    assert_eq!(
        value_of(&snap, "plan-gate"),
        (json!(true), "on".into(), "targeting".into())
    );
    let e = evaluate(&server, "checkout", Some("a"), beta.clone()).await;
    assert_eq!(answer(&e).0, json!("v2"));
    // The default context has no email: the default variant.
    let snap = next(&mut plain).await;
    assert_eq!(
        value_of(&snap, "checkout"),
        (json!("v1"), "old".into(), "default".into())
    );

    // A change to a variant this context is not served sends it nothing;
    // the default context's subscriber gets its new value.
    let r1 = import(&server, &checkout_with("v2", "v1b"), false).await;
    assert_eq!(r1.unwrap(), Vec::<String>::new());
    let ev = event(&next(&mut plain).await);
    assert_eq!(
        (ev.0.as_str(), ev.1.as_str(), &ev.2),
        ("FLAG_EVENT_TYPE_UPSERT", "checkout", &json!("v1b"))
    );
    // ... and a change to its own variant is its next event.
    import(&server, &checkout_with("v3", "v1b"), false)
        .await
        .unwrap();
    let ev = event(&next(&mut mine).await);
    assert_eq!(
        ev,
        (
            "FLAG_EVENT_TYPE_UPSERT".into(),
            "checkout".into(),
            json!("v3"),
            "new".into(),
            "targeting".into(),
            ev.5
        )
    );
    assert_eq!(ev.5, start + 2, "the change at {} sent nothing", start + 1);

    // The tenant's override beats the rule, and clearing it restores it.
    let over = set_override(&server, "a", "checkout", v_str("pinned")).await;
    let ev = event(&next(&mut mine).await);
    assert_eq!(
        (ev.2, ev.3, ev.4, ev.5),
        (json!("pinned"), "tenant".into(), "tenant".into(), over)
    );
    server
        .flags(ADMIN)
        .await
        .clear_tenant_override(switchyard::api::v1::ClearTenantOverrideRequest {
            tenant_id: "a".into(),
            flag_key: "checkout".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ev = event(&next(&mut mine).await);
    assert_eq!((ev.1.as_str(), ev.2), ("checkout", json!("v3")));

    // A deleted flag is a DELETE.
    let deleted = server
        .flags(ADMIN)
        .await
        .delete_flag(switchyard::api::v1::DeleteFlagRequest {
            flag_key: "ratio".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    let ev = event(&next(&mut mine).await);
    assert_eq!(
        (ev.0.as_str(), ev.1.as_str(), ev.5),
        ("FLAG_EVENT_TYPE_DELETE", "ratio", deleted)
    );

    // Resumed at the revision it holds, the watch goes on without a
    // snapshot; from an earlier one, it starts with one.
    let mut resumed = watch_in(&server, Some(beta.clone()), deleted).await;
    let from_start = next(&mut watch_in(&server, Some(beta.clone()), start).await).await;
    assert_eq!(
        from_start.r#type().as_str_name(),
        "FLAG_EVENT_TYPE_SNAPSHOT"
    );
    assert_eq!(
        value_of(&from_start, "checkout"),
        (json!("v3"), "new".into(), "targeting".into())
    );
    let over = set_override(&server, "a", "plan-gate", v_bool(false)).await;
    let ev = event(&next(&mut resumed).await);
    assert_eq!(
        (ev.0.as_str(), ev.1.as_str(), ev.2, ev.5),
        ("FLAG_EVENT_TYPE_UPSERT", "plan-gate", json!(false), over)
    );

    // Over REST, the request is the body of a POST.
    let resp = http_send(
        &server,
        "POST",
        "/v1/flags:watch",
        Some(ADMIN),
        Some((
            "application/json",
            json!({"tenantId": "a", "context": beta})
                .to_string()
                .into_bytes(),
        )),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut lines = Lines::new(resp.into_body());
    let snap = lines.next().await;
    let checkout = snap["result"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flag"] == "checkout")
        .cloned()
        .unwrap();
    assert_eq!(
        (&checkout["value"], &checkout["variant"]),
        (&json!("v3"), &json!("new"))
    );
}

/// `fractional-basic-flag` of testbed v3.9.0: 25 buckets of weight 4 over
/// `hashing_input`.
fn basic_flag() -> Json {
    let entries: Vec<Json> = (1..=25).map(|i| json!([format!("bucket{i}"), 4])).collect();
    let mut fractional = vec![json!({"var": "hashing_input"})];
    fractional.extend(entries);
    let variants: serde_json::Map<String, Json> = (1..=25)
        .map(|i| (format!("bucket{i}"), json!(format!("bucket{i}"))))
        .chain([("fallback".to_owned(), json!("fallback"))])
        .collect();
    json!({"flags": {
        "fractional-basic-flag": {"state": "ENABLED", "variants": variants,
            "defaultVariant": "fallback", "targeting": {"fractional": fractional}},
        "fractional-flag-shorthand": {"state": "ENABLED",
            "variants": {"heads": "heads", "tails": "tails", "draw": "draw"},
            "defaultVariant": "draw",
            "targeting": {"fractional": [["heads"], ["tails", 1]]}}
    }})
}

async fn fractional_v3_buckets_any_value_when_the_server_serves_it(backend: Backend) {
    let Some((server, _db)) = server_with(backend, |c| {
        c.flags.fractional_bucketing = switchyard::flag::targeting::fractional::Bucketing::V3;
    })
    .await
    else {
        return;
    };
    import(&server, &basic_flag(), false).await.unwrap();
    // The testbed's @fractional-v3 rows, through gRPC's Struct (where every
    // number is a double) and REST.
    for (input, want) in [
        (json!(true), "bucket5"),
        (json!("user1"), "bucket22"),
        (json!(123), "bucket20"),
        (json!(1.23), "bucket14"),
        (json!(-2.0), "bucket12"),
        (json!(4294967296_u64), "bucket19"),
        (json!({"c": 3, "a": 1, "b": 2}), "bucket18"),
        (json!({"a": [1, "two", true, [], null]}), "bucket23"),
    ] {
        let j = evaluate(
            &server,
            "fractional-basic-flag",
            None,
            json!({"hashing_input": input}),
        )
        .await;
        assert_eq!(j["value"], json!(want), "{input}: {j}");
        assert_eq!(j["reason"], "TARGETING_MATCH");
    }
    // A null bucketing value, or no targeting key for the shorthand: the
    // default variant.
    let j = evaluate(&server, "fractional-basic-flag", None, json!({})).await;
    assert_eq!(
        (&j["value"], &j["reason"]),
        (&json!("fallback"), &json!("DEFAULT"))
    );
    for (key, want) in [
        ("user-1", "heads"),
        ("user-2", "tails"),
        ("user-3", "heads"),
    ] {
        let j = evaluate(
            &server,
            "fractional-flag-shorthand",
            None,
            json!({"targetingKey": key}),
        )
        .await;
        assert_eq!(j["value"], json!(want), "{key}");
        // explain shows what was hashed.
        let steps = j["explanation"].as_array().unwrap();
        assert_eq!(
            steps[0]["bucketingValue"],
            format!("[\"fractional-flag-shorthand\",\"{key}\"]")
        );
    }
    let j = evaluate(
        &server,
        "fractional-flag-shorthand",
        None,
        json!({"targetingKey": 12345}),
    )
    .await;
    assert_eq!(
        (&j["value"], &j["reason"]),
        (&json!("draw"), &json!("DEFAULT"))
    );
}

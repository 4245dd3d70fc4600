//! Values and setups the flag, watch and tenant suites share.

use pbjson_types::{Value, value::Kind};
use switchyard::{
    api::v1::{
        CreateFlagRequest, CreateTenantRequest, Flag, FlagType, SetTenantOverrideRequest, Tenant,
    },
    config::Config,
};

use super::server::{ADMIN, TestServer};

/// Sets the replica-local env override of flag `key`, as
/// `SWITCHYARD_FLAG_<KEY>=value` would.
pub fn with_env_flag(config: &mut Config, key: &str, value: &str) {
    config
        .flags
        .flag_overrides
        .insert(switchyard::flag::env_name(key), value.into());
}

pub fn v_bool(b: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(b)),
    }
}
pub fn v_str(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}
pub fn v_num(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

pub fn new_flag(key: &str, ty: FlagType, default: Value) -> CreateFlagRequest {
    CreateFlagRequest {
        flag: Some(Flag {
            key: key.into(),
            r#type: ty as i32,
            default_value: Some(default),
            ..Default::default()
        }),
    }
}

pub async fn setup_tenants(server: &TestServer, ids: &[&str]) {
    let mut t = server.tenants(ADMIN).await;
    for id in ids {
        t.create_tenant(CreateTenantRequest {
            tenant: Some(Tenant {
                id: id.to_string(),
                patterns: vec![format!("{id}.example")],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
}

pub async fn set_override(server: &TestServer, tenant: &str, key: &str, value: Value) -> i64 {
    server
        .flags(ADMIN)
        .await
        .set_tenant_override(SetTenantOverrideRequest {
            tenant_id: tenant.into(),
            flag_key: key.into(),
            value: Some(value),
            expected_revision: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .revision
}

/// Returns the id of the tenant `key` resolves to (as admin), or `None`.
pub async fn resolved_id(server: &TestServer, key: &str) -> Option<String> {
    server
        .tenants(ADMIN)
        .await
        .resolve_tenant(switchyard::api::v1::ResolveTenantRequest { key: key.into() })
        .await
        .ok()
        .and_then(|r| r.into_inner().tenant.map(|t| t.id))
}

/// Creates the bool flag `key` with `default` through `client` (an admin's).
pub async fn create_bool_flag(client: &switchyard::client::Client, key: &str, default: bool) {
    client
        .flags()
        .create_flag(new_flag(key, FlagType::Bool, v_bool(default)))
        .await
        .unwrap();
}

/// The flags OpenFeature's suites evaluate (`tests/ofrep.rs`, `tests/flagd.rs`
/// and the provider scripts they run): one of every type, tenants `a` and
/// `b`, and `a`'s override of `of-bool` to true. Written through REST, as an
/// operator would.
pub async fn seed_openfeature_flags(server: &TestServer) {
    use serde_json::json;
    setup_tenants(server, &["a", "b"]).await;
    for (key, ty, default) in [
        ("of-bool", "FLAG_TYPE_BOOL", json!(false)),
        ("of-string", "FLAG_TYPE_STRING", json!("blue")),
        ("of-int", "FLAG_TYPE_NUMBER", json!(3)),
        ("of-float", "FLAG_TYPE_NUMBER", json!(2.5)),
        ("of-object", "FLAG_TYPE_OBJECT", json!({"a": 1})),
        ("of-list", "FLAG_TYPE_LIST", json!(["x", 2])),
    ] {
        let r = super::http(
            server,
            "POST",
            "/v1/flags",
            Some(ADMIN),
            Some(json!({"key": key, "type": ty, "defaultValue": default})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = super::http(
        server,
        "PUT",
        "/v1/tenants/a/flags/of-bool",
        Some(ADMIN),
        Some(json!(true)),
    )
    .await;
    assert_eq!(r.status, 200);
}

/// A tenant id, checked (for the tests that call the core directly).
pub fn tenant_id(id: &str) -> switchyard::id::TenantId {
    switchyard::id::TenantId::parse(id, "tenant").expect("a valid tenant id")
}

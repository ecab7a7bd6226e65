//! A tenant admin enables, configures and disables plugins for their tenant (spec 004 US-006)
//! through the REST API, and reads them back from `GET /api/v1/tenant/plugins`.

use end_to_end::{TestApp, eventually, manifest};
use infra::auth::Role;
use serde_json::{Value, json};

/// CRM's manifest, with a configuration schema: deal stages and an optional currency.
fn crm() -> Value {
    let mut crm = manifest("crm", "1.0.0");
    crm["configuration"] = json!({"schema": {
        "type": "object",
        "properties": {
            "stages": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "currency": {"enum": ["EUR", "USD"]}
        },
        "required": ["stages"],
        "additionalProperties": false
    }});
    crm
}

async fn plugin_status_becomes(app: &TestApp, id: &str, status: &str) {
    let token = app.super_admin();
    eventually(&format!("{id} is {status}"), || async {
        let reply = app
            .graphql(&token, &format!(r#"{{ plugin(id: "{id}") {{ status }} }}"#))
            .await;
        (reply["data"]["plugin"]["status"] == status).then_some(())
    })
    .await;
}

/// Registers `manifest`, installs and enables it globally, and waits until it is ACTIVE.
async fn active_plugin(app: &TestApp, manifest: &Value) {
    let id = manifest["id"].as_str().expect("id");
    app.register(manifest).await;
    let admin = app.super_admin();
    let path = format!("/api/v1/plugins/{id}/install");
    let response = app.send(reqwest::Method::POST, &path, &admin).await;
    assert_eq!(response.status(), 202, "install starts");
    plugin_status_becomes(app, id, "INSTALLED").await;
    let path = format!("/api/v1/plugins/{id}/enable");
    let response = app.send(reqwest::Method::POST, &path, &admin).await;
    assert_eq!(response.status(), 200, "enable is accepted");
    plugin_status_becomes(app, id, "ACTIVE").await;
}

/// Creates a tenant and returns its id and a token of its admin.
async fn tenant(app: &TestApp, slug: &str) -> (uuid::Uuid, String) {
    let id = uuid::Uuid::now_v7();
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&app.super_admin()),
            &json!({"id": id, "slug": slug, "name": slug}),
        )
        .await;
    assert_eq!(response.status(), 201, "the tenant is created");
    (id, app.token(Role::TenantAdmin, Some(&id.to_string())))
}

/// Sends `method path` with an optional JSON body as `token`; the status and the JSON reply.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a reply");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn enable(app: &TestApp, token: &str, body: Option<&Value>) -> (u16, Value) {
    let path = "/api/v1/tenant/plugins/crm/enable";
    call(app, reqwest::Method::POST, path, token, body).await
}

/// The tenant's plugins as `GET /api/v1/tenant/plugins` lists them, once `ready` holds.
async fn plugins_when(
    app: &TestApp,
    token: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, || async {
        let (status, reply) = call(
            app,
            reqwest::Method::GET,
            "/api/v1/tenant/plugins",
            token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let plugins = reply["plugins"].clone();
        ready(&plugins).then_some(plugins)
    })
    .await
}

fn pointers(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["pointer"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_enables_configures_disables_and_enables_a_plugin_again() {
    let app = TestApp::spawn().await;
    active_plugin(&app, &crm()).await;
    let (_acme, acme_admin) = tenant(&app, "acme").await;

    // An invalid configuration: every error, located under /configuration.
    let (status, problem) = enable(
        &app,
        &acme_admin,
        Some(&json!({"configuration": {"stages": [1], "currency": "GBP"}})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let found = pointers(&problem);
    assert!(found.contains(&"/configuration/stages/0"), "{problem}");
    assert!(found.contains(&"/configuration/currency"), "{problem}");
    // Without a configuration, `{}` lacks the stages.
    let (status, problem) = enable(&app, &acme_admin, None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), ["/configuration"], "{problem}");
    // A body the API does not know.
    let (status, problem) = enable(&app, &acme_admin, Some(&json!({"config": {}}))).await;
    assert_eq!(status, 422, "{problem}");

    let configuration = json!({"stages": ["lead", "won"], "currency": "EUR"});
    let (status, reply) = enable(
        &app,
        &acme_admin,
        Some(&json!({ "configuration": configuration })),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["events"][0]["eventType"], "core.tenant.plugin-enabled",
        "{reply}"
    );
    let plugins = plugins_when(&app, &acme_admin, "crm is enabled", |p| {
        p[0]["enabled"] == true
    })
    .await;
    assert_eq!(plugins.as_array().map(Vec::len), Some(1), "{plugins}");
    assert_eq!(plugins[0]["pluginId"], "crm");
    assert_eq!(plugins[0]["name"], "Plugin crm");
    assert_eq!(plugins[0]["version"], "1.0.0");
    assert_eq!(plugins[0]["pluginStatus"], "ACTIVE");
    assert_eq!(plugins[0]["configuration"], configuration);

    // Enabled twice: a conflict.
    let (status, problem) = enable(&app, &acme_admin, None).await;
    assert_eq!(status, 409, "{problem}");

    // Configured: the new configuration replaces the old; an invalid one is refused.
    let path = "/api/v1/tenant/plugins/crm/config";
    let changed = json!({"stages": ["won"]});
    let (status, reply) = call(
        &app,
        reqwest::Method::PUT,
        path,
        &acme_admin,
        Some(&json!({ "configuration": changed })),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (status, problem) = call(
        &app,
        reqwest::Method::PUT,
        path,
        &acme_admin,
        Some(&json!({"configuration": {"stages": []}})),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), ["/configuration/stages"], "{problem}");
    let (status, problem) = call(&app, reqwest::Method::PUT, path, &acme_admin, None).await;
    assert!((400..500).contains(&status), "{status} {problem}");
    plugins_when(&app, &acme_admin, "crm is configured", |p| {
        p[0]["configuration"] == changed
    })
    .await;

    // Disabled: the configuration stays, and comes back with the next enablement.
    let (status, reply) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/tenant/plugins/crm/disable",
        &acme_admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let plugins = plugins_when(&app, &acme_admin, "crm is disabled", |p| {
        p[0]["enabled"] == false
    })
    .await;
    assert_eq!(plugins[0]["configuration"], changed);
    let (status, problem) = call(
        &app,
        reqwest::Method::PUT,
        path,
        &acme_admin,
        Some(&json!({ "configuration": changed })),
    )
    .await;
    assert_eq!(
        status, 409,
        "a disabled plugin is not configured: {problem}"
    );
    let (status, reply) = enable(&app, &acme_admin, None).await;
    assert_eq!(status, 200, "{reply}");
    let plugins = plugins_when(&app, &acme_admin, "crm is enabled again", |p| {
        p[0]["enabled"] == true
    })
    .await;
    assert_eq!(plugins[0]["configuration"], changed);

    // Another tenant's admin sees none of it, and GraphQL shows the tenant's own.
    let (globex, globex_admin) = tenant(&app, "globex").await;
    let (status, reply) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/tenant/plugins",
        &globex_admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["tenantId"], globex.to_string());
    assert_eq!(reply["plugins"], json!([]), "{reply}");
    let reply = app
        .graphql(
            &acme_admin,
            &format!(
                r#"{{ tenant(id: "{_acme}") {{ plugins {{ pluginId enabled pluginStatus configuration }} }} }}"#
            ),
        )
        .await;
    assert_eq!(
        reply["data"]["tenant"]["plugins"],
        json!([{"pluginId": "crm", "enabled": true, "pluginStatus": "ACTIVE",
                "configuration": changed}]),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_tenant_admins_of_a_tenant_manage_its_plugins() {
    let app = TestApp::spawn().await;
    let (_acme, _acme_admin) = tenant(&app, "acme").await;
    let without_tenant = app.token(Role::TenantAdmin, None);
    let body = json!({"configuration": {"stages": ["lead"]}});
    for token in [app.super_admin(), without_tenant] {
        let (status, problem) = enable(&app, &token, Some(&body)).await;
        assert_eq!(status, 403, "{problem}");
        let (status, problem) = call(
            &app,
            reqwest::Method::POST,
            "/api/v1/tenant/plugins/crm/disable",
            &token,
            None,
        )
        .await;
        assert_eq!(status, 403, "{problem}");
        let (status, problem) = call(
            &app,
            reqwest::Method::PUT,
            "/api/v1/tenant/plugins/crm/config",
            &token,
            Some(&body),
        )
        .await;
        assert_eq!(status, 403, "{problem}");
        let (status, problem) = call(
            &app,
            reqwest::Method::GET,
            "/api/v1/tenant/plugins",
            &token,
            None,
        )
        .await;
        assert_eq!(status, 403, "{problem}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_not_active_or_a_suspended_tenant_is_refused() {
    let app = TestApp::spawn().await;
    let (acme, acme_admin) = tenant(&app, "acme").await;
    let body = json!({"configuration": {"stages": ["lead"]}});

    // Never registered: not found. Registered but not ACTIVE: a conflict naming its status.
    let (status, problem) = enable(&app, &acme_admin, Some(&body)).await;
    assert_eq!(status, 404, "{problem}");
    app.register(&crm()).await;
    plugin_status_becomes(&app, "crm", "REGISTERED").await;
    let (status, problem) = enable(&app, &acme_admin, Some(&body)).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("REGISTERED")),
        "{problem}"
    );

    // Suspended: nothing changes, whatever the plugin's status.
    active_plugin(&app, &manifest("mail", "1.0.0")).await;
    let path = "/api/v1/tenant/plugins/mail/enable";
    let (status, reply) = call(&app, reqwest::Method::POST, path, &acme_admin, None).await;
    assert_eq!(status, 200, "{reply}");
    plugins_when(&app, &acme_admin, "mail is enabled", |p| {
        p[0]["enabled"] == true
    })
    .await;
    let path = format!("/api/v1/tenants/{acme}/suspend");
    let response = app
        .send(reqwest::Method::POST, &path, &app.super_admin())
        .await;
    assert_eq!(response.status(), 200);
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/v1/tenant/plugins/mail/disable",
            None,
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/tenant/plugins/mail/config",
            Some(json!({"configuration": {"x": 1}})),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/tenant/plugins/crm/enable",
            None,
        ),
    ] {
        let (status, problem) = call(&app, method, path, &acme_admin, body.as_ref()).await;
        assert_eq!(status, 409, "{path}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("SUSPENDED")),
            "{problem}"
        );
        assert_eq!(
            problem["allowed"],
            json!(["tenant.reactivate", "tenant.delete"]),
            "{problem}"
        );
    }
    let (status, reply) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/tenant/plugins",
        &acme_admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["plugins"].as_array().map(Vec::len),
        Some(1),
        "{reply}"
    );
    assert_eq!(reply["plugins"][0]["pluginId"], "mail");
    assert_eq!(reply["plugins"][0]["enabled"], true);
    assert_eq!(reply["plugins"][0]["configuration"], json!({}));
}

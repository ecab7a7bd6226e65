//! The plugin lifecycle through the REST API (spec 004 section 8): every transition of
//! FR-003, and the refusals that name the current status and what is allowed instead.

use end_to_end::plugins::wait_for_status as status_becomes;
use end_to_end::{TestApp, eventually, manifest};
use infra::auth::Role;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_goes_through_its_whole_lifecycle() {
    let app = TestApp::spawn().await;
    app.register(&manifest("crm", "1.0.0")).await;

    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/plugins/crm/install",
            &app.super_admin(),
        )
        .await;
    assert_eq!(response.status(), 202, "install starts a saga");
    let operation = response.headers()["location"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(operation.starts_with("/api/v1/operations/"), "{operation}");
    status_becomes(&app, "crm", "INSTALLED").await;
    assert_eq!(
        registered_permissions(&app, "crm", 1).await,
        json!([{"key": "crm.records.read", "pluginId": "crm", "name": "Read records", "description": null}]),
        "an installed plugin's permissions are registered (FR-014)"
    );

    assert_eq!(
        app.send(
            reqwest::Method::POST,
            "/api/v1/plugins/crm/enable",
            &app.super_admin()
        )
        .await
        .status(),
        200
    );
    status_becomes(&app, "crm", "ACTIVE").await;

    let response = app
        .post(
            "/api/v1/plugins/crm/disable",
            Some(&app.super_admin()),
            &json!({"reason": "maintenance"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    status_becomes(&app, "crm", "DISABLED").await;

    let response = app
        .post(
            "/api/v1/plugins/crm/update",
            Some(&app.super_admin()),
            &manifest("crm", "1.1.0"),
        )
        .await;
    assert_eq!(response.status(), 202, "update starts a saga");
    let updated = eventually("the update completes", || async {
        let plugin = status_becomes(&app, "crm", "DISABLED").await;
        (plugin["version"] == "1.1.0").then_some(plugin)
    })
    .await;
    assert_eq!(updated["version"], "1.1.0");

    let response = app
        .client
        .delete(format!(
            "{}/api/v1/plugins/crm?purge_data=true",
            app.address
        ))
        .bearer_auth(app.super_admin())
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 202, "uninstall starts a saga");
    status_becomes(&app, "crm", "UNINSTALLED").await;
    registered_permissions(&app, "crm", 0).await;
}

/// Plugin `id`'s registered permissions in GraphQL, once there are `count` of them.
async fn registered_permissions(app: &TestApp, id: &str, count: usize) -> Value {
    let token = app.super_admin();
    let query =
        format!(r#"{{ permissions(pluginId: "{id}") {{ key pluginId name description }} }}"#);
    eventually(&format!("{count} permissions of {id}"), || async {
        let reply = app.graphql(&token, &query).await;
        let permissions = reply["data"]["permissions"].clone();
        (permissions.as_array()?.len() == count).then_some(permissions)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transition_the_status_does_not_allow_is_refused_with_what_is_allowed() {
    let app = TestApp::spawn().await;
    app.register(&manifest("crm", "1.0.0")).await;

    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/plugins/crm/enable",
            &app.super_admin(),
        )
        .await;
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.expect("JSON");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("REGISTERED"),
        "{problem}"
    );
    assert_eq!(problem["allowed"], json!(["plugin.install"]), "{problem}");

    let response = app
        .client
        .delete(format!("{}/api/v1/plugins/crm", app.address))
        .bearer_auth(app.super_admin())
        .send()
        .await
        .expect("answers");
    assert_eq!(
        response.status(),
        409,
        "a registered plugin is not uninstalled"
    );

    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/plugins/nobody/enable",
            &app.super_admin(),
        )
        .await;
    assert_eq!(response.status(), 404);
    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/plugins/Not%20An%20Id/enable",
            &app.super_admin(),
        )
        .await;
    assert_eq!(response.status(), 422);

    let response = app
        .post(
            "/api/v1/plugins/crm/update",
            Some(&app.super_admin()),
            &manifest("billing", "2.0.0"),
        )
        .await;
    assert_eq!(
        response.status(),
        422,
        "an update's manifest is for the same plugin"
    );
    let response = app
        .client
        .post(format!("{}/api/v1/plugins/crm/disable", app.address))
        .bearer_auth(app.super_admin())
        .header("content-type", "application/json")
        .body(r#"{"reason": 42}"#)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 422);

    let tenant_admin = app.token(Role::TenantAdmin, Some("t"));
    let response = app
        .post(
            "/api/v1/plugins/crm/install",
            Some(&tenant_admin),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 403);

    let plugin = status_becomes(&app, "crm", "REGISTERED").await;
    assert_eq!(
        plugin["version"], "1.0.0",
        "no refused command changed anything"
    );
}

//! Driving plugins through their lifecycle over HTTP and reading where they are, for the
//! end-to-end tests.

use serde_json::Value;

use crate::{TestApp, eventually};

/// Sends a lifecycle request and checks that the command was accepted.
pub async fn request(app: &TestApp, method: reqwest::Method, path: &str, body: Option<&Value>) {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(app.super_admin());
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    let reply = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{path} is accepted: {status} {reply}");
}

/// Starts plugin `id`'s install and returns its operation id (the command id of the 202).
pub async fn start_install(app: &TestApp, id: &str) -> String {
    let response = app
        .post(
            &format!("/api/v1/plugins/{id}/install"),
            Some(&app.super_admin()),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(response.status(), 202, "the install starts");
    let reply: Value = response.json().await.expect("JSON reply");
    reply["commandId"]
        .as_str()
        .expect("a command id")
        .to_owned()
}

pub async fn install(app: &TestApp, id: &str) {
    let path = format!("/api/v1/plugins/{id}/install");
    request(app, reqwest::Method::POST, &path, None).await;
}

pub async fn update(app: &TestApp, manifest: &Value) {
    let id = manifest["id"].as_str().expect("id");
    let path = format!("/api/v1/plugins/{id}/update");
    request(app, reqwest::Method::POST, &path, Some(manifest)).await;
}

pub async fn uninstall(app: &TestApp, id: &str, purge_data: bool) {
    let path = format!("/api/v1/plugins/{id}?purge_data={purge_data}");
    request(app, reqwest::Method::DELETE, &path, None).await;
}

/// The plugin as GraphQL serves it.
pub async fn plugin(app: &TestApp, id: &str) -> Value {
    let reply = app
        .graphql(
            &app.super_admin(),
            &format!(r#"{{ plugin(id: "{id}") {{ id version status }} }}"#),
        )
        .await;
    reply["data"]["plugin"].clone()
}

pub async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(&format!("plugin {id} is {status}"), || async {
        let plugin = plugin(app, id).await;
        (plugin["status"] == status).then_some(plugin)
    })
    .await
}

/// Why the plugin's last install or update failed, as the catalog keeps it.
pub async fn last_error(app: &TestApp, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT last_error FROM catalog.plugins WHERE id = $1")
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .expect("the catalog answers")
        .flatten()
}

/// Registers the plugin of `manifest` and installs it.
pub async fn installed(app: &TestApp, manifest: &Value) {
    let id = manifest["id"].as_str().expect("id");
    app.register(manifest).await;
    install(app, id).await;
    wait_for_status(app, id, "INSTALLED").await;
}

//! The tenant lifecycle through the REST API: suspend, reactivate and delete, as GraphQL then
//! shows them, and the refusals that name the current status and what is allowed instead.

use end_to_end::{TestApp, eventually};
use infra::auth::Role;
use serde_json::{Value, json};

async fn status_becomes(app: &TestApp, id: uuid::Uuid, status: &str) -> Value {
    let token = app.super_admin();
    eventually(&format!("tenant {id} is {status}"), || async {
        let reply = app
            .graphql(
                &token,
                &format!(r#"{{ tenant(id: "{id}") {{ id status }} }}"#),
            )
            .await;
        let tenant = reply["data"]["tenant"].clone();
        (tenant["status"] == status).then_some(tenant)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_is_suspended_reactivated_and_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let id = uuid::Uuid::now_v7();
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&admin),
            &json!({"id": id, "slug": "acme-corp", "name": "Acme Corp"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    status_becomes(&app, id, "ACTIVE").await;

    let response = app
        .post(
            &format!("/api/v1/tenants/{id}/suspend"),
            Some(&admin),
            &json!({"reason": "unpaid invoices"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.expect("JSON");
    assert_eq!(reply["events"][0]["eventType"], "core.tenant.suspended");
    status_becomes(&app, id, "SUSPENDED").await;

    // Suspended twice: refused, naming the status and what it allows.
    let response = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{id}/suspend"),
            &admin,
        )
        .await;
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.expect("JSON");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("SUSPENDED"),
        "{problem}"
    );
    assert_eq!(
        problem["allowed"],
        json!(["tenant.reactivate", "tenant.delete"]),
        "{problem}"
    );

    let response = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{id}/reactivate"),
            &admin,
        )
        .await;
    assert_eq!(response.status(), 200);
    status_becomes(&app, id, "ACTIVE").await;

    let response = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/{id}"),
            &admin,
        )
        .await;
    assert_eq!(response.status(), 200);
    status_becomes(&app, id, "DELETED").await;

    // Nothing is allowed after a deletion.
    let response = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{id}/reactivate"),
            &admin,
        )
        .await;
    assert_eq!(response.status(), 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tenant_commands_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();

    let unknown = uuid::Uuid::now_v7();
    let response = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{unknown}/suspend"),
            &admin,
        )
        .await;
    assert_eq!(response.status(), 404);
    let response = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/{unknown}"),
            &admin,
        )
        .await;
    assert_eq!(response.status(), 404);

    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/tenants/not-a-uuid/reactivate",
            &admin,
        )
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("JSON");
    assert_eq!(problem["errors"][0]["pointer"], "/id", "{problem}");

    let tenant_admin = app.token(Role::TenantAdmin, Some(&unknown.to_string()));
    let response = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{unknown}/suspend"),
            &tenant_admin,
        )
        .await;
    assert_eq!(response.status(), 403);
    let response = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/tenants/{unknown}"),
            &tenant_admin,
        )
        .await;
    assert_eq!(response.status(), 403);
}

//! Read-your-writes: a query that presents a command's consistency token sees the command's
//! change, however far behind the projections are when it arrives.

use end_to_end::{TestApp, manifest};
use serde_json::{Value, json};

const TOKEN_HEADER: &str = "x-consistency-token";

async fn graphql_after(app: &TestApp, token: &str, query: &str) -> Value {
    app.client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(app.super_admin())
        .header(TOKEN_HEADER, token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("GraphQL answers")
        .json()
        .await
        .expect("GraphQL answers JSON")
}

async fn rest_after(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.address))
        .bearer_auth(app.super_admin())
        .header(TOKEN_HEADER, token)
        .send()
        .await
        .expect("the API answers")
}

/// The command's token, from the reply's header, checked against its body.
async fn token_of(response: reqwest::Response) -> String {
    let header = response
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("the reply carries a consistency token");
    let body: Value = response.json().await.expect("JSON reply");
    assert_eq!(body["consistencyToken"], header.as_str());
    header
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_with_the_commands_token_always_sees_its_change() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    for i in 0..20 {
        let id = format!("ryw-{i}");
        let registered = app
            .post("/api/v1/plugins", Some(&admin), &manifest(&id, "1.0.0"))
            .await;
        assert_eq!(registered.status(), 201);
        let token = token_of(registered).await;
        let reply = graphql_after(
            &app,
            &token,
            &format!(r#"{{ plugin(id: "{id}") {{ id status }} }}"#),
        )
        .await;
        assert_eq!(
            reply["data"]["plugin"],
            json!({"id": id, "status": "REGISTERED"}),
            "GraphQL after registration {i}: {reply}"
        );

        // A change to a row that exists already: an eventually consistent read would show
        // the old status.
        let install = app
            .post(
                &format!("/api/v1/plugins/{id}/install"),
                Some(&admin),
                &json!({}),
            )
            .await;
        assert_eq!(install.status(), 202);
        let token = token_of(install).await;
        let plugin: Value = rest_after(&app, &token, &format!("/api/v1/plugins/{id}"))
            .await
            .json()
            .await
            .expect("JSON plugin");
        assert_ne!(
            plugin["status"], "REGISTERED",
            "REST after install {i}: {plugin}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_the_read_models_cannot_reach_is_stale_and_a_bad_one_is_refused() {
    let app = TestApp::spawn().await;
    let unreachable = format!("{}:0:1000000", app.topics.plugins());

    let reply = graphql_after(&app, &unreachable, "{ plugins { totalCount } }").await;
    assert_eq!(reply["errors"][0]["extensions"]["code"], "STALE", "{reply}");
    assert!(reply["data"].is_null(), "{reply}");
    let response = rest_after(&app, &unreachable, "/api/v1/plugins").await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.expect("problem JSON");
    assert_eq!(problem["type"], "https://plexica.io/problems/stale");

    let reply = graphql_after(&app, "core.plugins:zero:1", "{ plugins { totalCount } }").await;
    assert_eq!(
        reply["errors"][0]["extensions"]["code"], "BAD_CONSISTENCY_TOKEN",
        "{reply}"
    );
    let response = rest_after(&app, "core.plugins:1", "/api/v1/plugins").await;
    assert_eq!(response.status(), 400);

    // A position on a topic the catalog does not read holds nothing up.
    let elsewhere = graphql_after(&app, "plugin.crm:0:99", "{ plugins { totalCount } }").await;
    assert_eq!(elsewhere["data"]["plugins"]["totalCount"], 0, "{elsewhere}");
}

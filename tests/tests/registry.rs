//! The plugin registry through the REST API (milestone M2.4): published versions yanked and
//! deprecated, classification, one editable review per user, and who may do what.

use end_to_end::{TestApp, eventually, manifest};
use infra::auth::Role;
use serde_json::{Value, json};

async fn put(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(format!("{}{path}", app.address))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the API answers")
}

/// A token of a tenant admin whose subject is `subject`: a reviewer of their own.
fn tenant_admin(app: &TestApp, subject: &str) -> String {
    app.config
        .auth
        .keys()
        .issue(
            subject,
            vec![Role::TenantAdmin],
            Some("0193a000-0000-7000-8000-00000000ac3e".to_owned()),
            chrono::Duration::hours(1),
        )
        .expect("signing a token works")
}

/// Waits until `GET /api/v1/plugins/{id}` satisfies `ready`, returning the plugin.
async fn plugin_when(app: &TestApp, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let token = app.super_admin();
    eventually(what, || async {
        let response = app
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/plugins/{id}"),
                &token,
            )
            .await;
        if !response.status().is_success() {
            return None;
        }
        let plugin: Value = response.json().await.ok()?;
        ready(&plugin).then_some(plugin)
    })
    .await
}

/// The event types an accepted command recorded.
async fn recorded(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), 200, "accepted");
    let body: Value = response.json().await.expect("JSON");
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["eventType"].as_str().expect("type").to_owned())
        .collect()
}

async fn status_and_problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("problem JSON"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_version_is_deprecated_then_yanked() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    app.register(&manifest("crm", "1.0.0")).await;

    let publish = |version: &str| json!({"manifest": manifest("crm", version), "releaseNotes": "Faster deals"});
    let response = app
        .post(
            "/api/v1/registry/plugins/crm/versions",
            Some(&admin),
            &publish("1.1.0"),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["location"],
        "/api/v1/registry/plugins/crm/versions/1.1.0"
    );
    let response = app
        .post(
            "/api/v1/registry/plugins/crm/versions",
            Some(&admin),
            &publish("1.1.0"),
        )
        .await;
    assert_eq!(response.status(), 409, "a version is published once");
    let response = app
        .post(
            "/api/v1/registry/plugins/crm/versions",
            Some(&admin),
            &publish("1.0.0"),
        )
        .await;
    assert_eq!(response.status(), 409, "the registered version is known");
    let response = app
        .post(
            "/api/v1/registry/plugins/nobody/versions",
            Some(&admin),
            &json!({"manifest": manifest("nobody", "1.0.0")}),
        )
        .await;
    assert_eq!(response.status(), 404, "the plugin must be registered");

    let deprecate = "/api/v1/registry/plugins/crm/versions/1.1.0/deprecate";
    let yank = "/api/v1/registry/plugins/crm/versions/1.1.0/yank";
    let message = json!({"message": "use 1.2"});
    let reason = json!({"reason": "leaks deals"});
    assert_eq!(
        recorded(app.post(deprecate, Some(&admin), &message).await).await,
        ["core.registry.version-deprecated"]
    );
    assert_eq!(
        app.post(deprecate, Some(&admin), &message).await.status(),
        409
    );
    assert_eq!(
        recorded(app.post(yank, Some(&admin), &reason).await).await,
        ["core.registry.version-yanked"]
    );
    assert_eq!(app.post(yank, Some(&admin), &reason).await.status(), 409);

    let response = app
        .post(
            "/api/v1/registry/plugins/crm/versions/9.9.9/yank",
            Some(&admin),
            &reason,
        )
        .await;
    assert_eq!(response.status(), 404, "an unknown version");
    let (status, problem) = status_and_problem(
        app.post(
            "/api/v1/registry/plugins/crm/versions/one.two/yank",
            Some(&admin),
            &reason,
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["pointer"], "/version", "{problem}");

    let plugin = plugin_when(&app, "crm", "the yanked version shows", |p| {
        p["versions"][0]["yanked"] == true
    })
    .await;
    let versions = plugin["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1, "{plugin}");
    let version = &versions[0];
    assert_eq!(version["version"], "1.1.0");
    assert_eq!(version["releaseNotes"], "Faster deals");
    assert_eq!(version["yankReason"], "leaks deals");
    assert_eq!(
        (&version["deprecated"], &version["deprecationMessage"]),
        (&json!(true), &json!("use 1.2"))
    );
    assert_eq!(
        plugin["version"], "1.0.0",
        "the plugin in service is untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn classification_and_reviews_show_on_the_plugin() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    app.register(&manifest("crm", "1.0.0")).await;

    let path = "/api/v1/registry/plugins/crm/classification";
    let labels = json!({"categories": ["sales", "crm", "sales"], "tags": ["deals"]});
    assert_eq!(
        recorded(put(&app, path, &admin, &labels).await).await,
        ["core.registry.plugin-classified"]
    );
    assert!(
        recorded(put(&app, path, &admin, &labels).await)
            .await
            .is_empty(),
        "the same sets again record nothing"
    );
    let (status, problem) = status_and_problem(
        put(
            &app,
            path,
            &admin,
            &json!({"categories": ["Sales"], "tags": []}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        problem["errors"][0]["pointer"], "/categories/0",
        "{problem}"
    );

    let mine = "/api/v1/registry/plugins/crm/reviews/mine";
    let alice = tenant_admin(&app, "alice");
    assert_eq!(
        recorded(put(&app, mine, &alice, &json!({"rating": 4, "comment": "good"})).await).await,
        ["core.registry.review-submitted"]
    );
    let plugin = plugin_when(&app, "crm", "alice's review counts", |p| {
        p["rating"]["count"] == 1
    })
    .await;
    assert_eq!(plugin["rating"]["average"], 4.0);
    assert_eq!(
        recorded(put(&app, mine, &alice, &json!({"rating": 2})).await).await,
        ["core.registry.review-revised"]
    );
    let plugin = plugin_when(&app, "crm", "alice's revision counts", |p| {
        p["rating"]["average"] == 2.0
    })
    .await;
    assert_eq!(plugin["rating"]["count"], 1, "one review per user");
    assert_eq!(plugin["categories"], json!(["crm", "sales"]));
    assert_eq!(plugin["tags"], json!(["deals"]));

    assert_eq!(
        recorded(put(&app, mine, &admin, &json!({"rating": 5})).await).await,
        ["core.registry.review-submitted"],
        "a super admin reviews too"
    );
    let plugin = plugin_when(&app, "crm", "the second reviewer counts", |p| {
        p["rating"]["count"] == 2
    })
    .await;
    assert_eq!(plugin["rating"]["average"], 3.5);

    for stars in [0, 6] {
        let (status, problem) =
            status_and_problem(put(&app, mine, &alice, &json!({"rating": stars})).await).await;
        assert_eq!(status, 422, "{stars} stars");
        assert_eq!(problem["errors"][0]["pointer"], "/rating", "{problem}");
    }
    let response = put(
        &app,
        "/api/v1/registry/plugins/nobody/reviews/mine",
        &alice,
        &json!({"rating": 5}),
    )
    .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_super_admin_publishes_and_classifies() {
    let app = TestApp::spawn().await;
    app.register(&manifest("crm", "1.0.0")).await;
    let tenant_admin = app.token(Role::TenantAdmin, Some("acme"));

    let response = app
        .post(
            "/api/v1/registry/plugins/crm/versions",
            Some(&tenant_admin),
            &json!({"manifest": manifest("crm", "1.1.0")}),
        )
        .await;
    assert_eq!(response.status(), 403);
    let response = put(
        &app,
        "/api/v1/registry/plugins/crm/classification",
        &tenant_admin,
        &json!({"categories": ["crm"], "tags": []}),
    )
    .await;
    assert_eq!(response.status(), 403);
    let response = app
        .post(
            "/api/v1/registry/plugins/crm/versions",
            None,
            &json!({"manifest": manifest("crm", "1.1.0")}),
        )
        .await;
    assert_eq!(response.status(), 401);

    let plugin = plugin_when(&app, "crm", "the plugin shows", |_| true).await;
    assert_eq!(plugin["versions"], json!([]), "nothing was published");
    assert_eq!(plugin["categories"], json!([]));
}

/// A suspended or deleted tenant changes nothing, its admins' reviews included: they are
/// refused with 409, as every other change of a tenant that is not active is (the tenant's
/// state is in the way, not the token's role), and a reactivated tenant's admins review again.
#[tokio::test(flavor = "multi_thread")]
async fn admins_of_a_suspended_or_deleted_tenant_cannot_review() {
    let app = TestApp::spawn().await;
    app.register(&manifest("crm", "1.0.0")).await;
    let admin = app.super_admin();
    let tenant = uuid::Uuid::now_v7();
    let created = app
        .post(
            "/api/v1/tenants",
            Some(&admin),
            &json!({"id": tenant, "slug": "reviewers", "name": "Reviewers"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let reviewer = app.token(Role::TenantAdmin, Some(&tenant.to_string()));
    let mine = "/api/v1/registry/plugins/crm/reviews/mine";
    let refused = |status: &'static str| {
        let (app, reviewer) = (&app, &reviewer);
        async move {
            let response = put(app, mine, reviewer, &json!({"rating": 1})).await;
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let (code, problem) = status_and_problem(response).await;
            assert_eq!(code, 409, "a review from a {status} tenant: {problem}");
            assert!(
                problem["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(status)),
                "{problem}"
            );
        }
    };

    let tenant_path = format!("/api/v1/tenants/{tenant}");
    let suspended = app
        .post(&format!("{tenant_path}/suspend"), Some(&admin), &json!({}))
        .await;
    assert_eq!(suspended.status(), 200);
    refused("SUSPENDED").await;

    let reactivated = app
        .post(
            &format!("{tenant_path}/reactivate"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(reactivated.status(), 200);
    assert_eq!(
        recorded(put(&app, mine, &reviewer, &json!({"rating": 5})).await).await,
        ["core.registry.review-submitted"]
    );

    let deleted = app
        .send(reqwest::Method::DELETE, &tenant_path, &admin)
        .await;
    assert_eq!(deleted.status(), 200);
    refused("DELETED").await;
}

/// The AsyncAPI document lists every core event with its Avro schema, and an installed
/// plugin's declared events on its own topic; a caller without a role gets none of it.
#[tokio::test(flavor = "multi_thread")]
async fn the_asyncapi_document_names_core_events_and_an_installed_plugins_events() {
    let app = TestApp::spawn().await;
    app.register(&manifest("quotes", "1.0.0")).await;
    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/plugins/quotes/install",
            &app.super_admin(),
        )
        .await;
    assert_eq!(response.status(), 202);
    end_to_end::plugins::wait_for_status(&app, "quotes", "INSTALLED").await;

    let response = app
        .send(
            reqwest::Method::GET,
            "/api/v1/asyncapi.json",
            &app.super_admin(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("JSON");
    assert_eq!(doc["asyncapi"], "3.0.0");
    let plugins_topic = app.topics.plugins();
    assert!(
        doc["channels"][&plugins_topic]["messages"]["core.plugin.installed"].is_object(),
        "{}",
        doc["channels"]
    );
    assert_eq!(
        doc["components"]["messages"]["core.tenant.created"]["payload"]["schema"]["name"],
        "TenantCreated"
    );
    let quotes = app.topics.plugin("quotes");
    assert!(
        doc["channels"][&quotes]["messages"]["plugin.quotes.created"].is_object(),
        "{}",
        doc["channels"]
    );

    let nobody = app
        .config
        .auth
        .keys()
        .issue("nobody", vec![], None, chrono::Duration::minutes(1))
        .expect("a token");
    let response = app
        .send(reqwest::Method::GET, "/api/v1/asyncapi.json", &nobody)
        .await;
    assert_eq!(response.status(), 403);
}

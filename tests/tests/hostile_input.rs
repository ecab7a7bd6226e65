//! Input a hostile caller sends: text Postgres cannot store, NUL in paths and queries,
//! forged or premature tokens, another tenant's operations, unknown routes. Each is refused at
//! the edge with a problem document (or a coded GraphQL error), and nothing reaches the log.

use end_to_end::TestApp;
use infra::auth::Role;
use serde_json::{Value, json};

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "problem JSON");
    response.json().await.expect("JSON problem")
}

#[tokio::test(flavor = "multi_thread")]
async fn text_holding_nul_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let mut manifest = end_to_end::manifest("nul-plugin", "1.0.0");
    manifest["name"] = json!("a\u{0}b");
    let reply = problem(
        app.post("/api/v1/plugins", Some(&admin), &manifest).await,
        422,
    )
    .await;
    assert_eq!(reply["errors"][0]["pointer"], "/name", "{reply}");

    let tenant = json!({"slug": "nul-tenant", "name": "a\u{0}b"});
    let reply = problem(
        app.post("/api/v1/tenants", Some(&admin), &tenant).await,
        422,
    )
    .await;
    assert_eq!(reply["errors"][0]["pointer"], "/name", "{reply}");

    let tenant_admin = app.token(Role::TenantAdmin, Some(&uuid::Uuid::now_v7().to_string()));
    let review = json!({"rating": 4, "comment": "a\u{0}b"});
    let response = app
        .client
        .put(format!(
            "{}/api/v1/registry/plugins/nul-plugin/reviews/mine",
            app.address
        ))
        .bearer_auth(&tenant_admin)
        .json(&review)
        .send()
        .await
        .expect("the API answers");
    let reply = problem(response, 422).await;
    assert_eq!(reply["errors"][0]["pointer"], "/comment", "{reply}");

    // An optional body is parsed by the same rule.
    let reason = json!({"reason": "x\u{0}"});
    let path = format!("/api/v1/tenants/{}/suspend", uuid::Uuid::now_v7());
    problem(app.post(&path, Some(&admin), &reason).await, 422).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_in_a_path_or_query_is_a_client_error() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let get = reqwest::Method::GET;
    problem(
        app.send(get.clone(), "/api/v1/plugins/%00", &admin).await,
        404,
    )
    .await;
    problem(
        app.send(get, "/api/v1/plugins?after=%00", &admin).await,
        400,
    )
    .await;
    let response = app
        .client
        .get(format!("{}/subjects/%00/versions", app.registry_url))
        .send()
        .await
        .expect("the registry answers");
    assert_eq!(response.status(), 404);

    for query in [
        r#"{ plugin(id: "\u0000") { id } }"#,
        r#"{ registrySearch(text: "a\u0000") { totalCount } }"#,
    ] {
        let reply = app.graphql(&admin, query).await;
        assert_eq!(
            reply["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{query}: {reply}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_answer_problems() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    problem(
        app.send(reqwest::Method::GET, "/api/v1/nothing", &admin)
            .await,
        404,
    )
    .await;
    problem(
        app.send(reqwest::Method::PATCH, "/api/v1/plugins", &admin)
            .await,
        405,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn premature_tokens_are_refused_without_parser_internals() {
    let app = TestApp::spawn().await;
    let keys = app.config.auth.keys();
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: Value| {
        let mut claims =
            json!({"sub": "eve", "roles": ["super_admin"], "iat": now, "exp": now + 3600});
        claims
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        keys.sign(&claims).expect("signing works")
    };
    for token in [
        claims(json!({"nbf": now + 3600})),
        claims(json!({"iat": now + 3600})),
        claims(json!({"roles": ["none"]})),
    ] {
        let reply = problem(
            app.send(reqwest::Method::GET, "/api/v1/plugins", &token)
                .await,
            401,
        )
        .await;
        let detail = reply["detail"].as_str().unwrap_or_default();
        assert!(!detail.contains("variant"), "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenants_operation_is_not_readable() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let reply = app
        .post(
            "/api/v1/tenants",
            Some(&admin),
            &json!({"slug": "op-owner", "name": "Op owner"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    let reply: Value = reply.json().await.expect("JSON");
    let operation = format!(
        "/api/v1/operations/{}",
        reply["commandId"].as_str().expect("id")
    );
    let stranger = app.token(Role::TenantAdmin, Some(&uuid::Uuid::now_v7().to_string()));
    problem(
        app.send(reqwest::Method::GET, &operation, &stranger).await,
        403,
    )
    .await;
    let no_roles = keys_without_roles(&app);
    problem(
        app.send(reqwest::Method::GET, &operation, &no_roles).await,
        403,
    )
    .await;
    assert_eq!(
        app.send(reqwest::Method::GET, &operation, &admin)
            .await
            .status(),
        200
    );
}

fn keys_without_roles(app: &TestApp) -> String {
    app.config
        .auth
        .keys()
        .issue("nobody", vec![], None, chrono::Duration::hours(1))
        .expect("signing works")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_creation_does_not_keep_the_new_slug() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let id = uuid::Uuid::now_v7();
    let create = |slug: &str, id: uuid::Uuid| json!({"id": id, "slug": slug, "name": "Acme"});
    let response = app
        .post("/api/v1/tenants", Some(&admin), &create("first-slug", id))
        .await;
    assert_eq!(response.status(), 201);
    // Same id, new slug: refused, and the new slug stays free for another tenant.
    let response = app
        .post("/api/v1/tenants", Some(&admin), &create("second-slug", id))
        .await;
    assert_eq!(response.status(), 409);
    let other = uuid::Uuid::now_v7();
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&admin),
            &create("second-slug", other),
        )
        .await;
    let status = response.status();
    assert_eq!(status, 201, "{}", response.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_of_two_tenants_admins_do_not_collide() {
    let app = TestApp::spawn().await;
    let plugin = "idem-plugin";
    app.register(&end_to_end::manifest(plugin, "1.0.0")).await;
    let review = |comment: &str| json!({"rating": 4, "comment": comment});
    let mut replies = Vec::new();
    for (tenant, comment) in [
        (uuid::Uuid::now_v7(), "from A"),
        (uuid::Uuid::now_v7(), "from B"),
    ] {
        // Both admins share one `sub` ("tester") and one key.
        let token = app.token(Role::TenantAdmin, Some(&tenant.to_string()));
        let response = app
            .client
            .put(format!(
                "{}/api/v1/registry/plugins/{plugin}/reviews/mine",
                app.address
            ))
            .bearer_auth(&token)
            .header("idempotency-key", "same-key")
            .json(&review(comment))
            .send()
            .await
            .expect("the API answers");
        replies.push((
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ));
    }
    assert_ne!(replies[1].0, 422, "B's request is B's own: {replies:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_that_runs_too_long_is_cancelled_by_postgres() {
    let app = TestApp::spawn().await;
    let reads = infra::postgres::connect_for_reads(
        &app.config.postgres,
        std::time::Duration::from_millis(200),
    )
    .await
    .expect("connects");
    let error = sqlx::query("SELECT pg_sleep(30)")
        .execute(&reads)
        .await
        .expect_err("cancelled");
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .unwrap_or_default()
        .into_owned();
    assert_eq!(code, "57014", "query_canceled: {error}");
}

/// A token's `sub` becomes the `user-id` header of every event its request causes (and the
/// actor in the history, the reviewer of a review), its `tenant_id` the `tenant-id` header: a
/// claim Postgres cannot store is a malformed token, refused before anything reaches the log.
#[tokio::test(flavor = "multi_thread")]
async fn token_claims_postgres_cannot_store_are_refused() {
    let app = TestApp::spawn().await;
    let keys = app.config.auth.keys();
    let now = chrono::Utc::now().timestamp();
    let manifest = end_to_end::manifest("nul-claims", "1.0.0");
    for claims in [
        json!({"sub": "eve\u{0}", "roles": ["super_admin"]}),
        json!({"sub": "eve", "roles": ["super_admin"], "tenant_id": "t\u{0}"}),
    ] {
        let mut claims = claims;
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 3600);
        let token = keys.sign(&claims).expect("signing works");
        let reply = problem(
            app.post("/api/v1/plugins", Some(&token), &manifest).await,
            401,
        )
        .await;
        assert!(reply["detail"].as_str().is_some(), "{reply}");
    }
    // Nothing was registered: the same id is still free.
    let admin = app.super_admin();
    let response = app.post("/api/v1/plugins", Some(&admin), &manifest).await;
    assert_eq!(response.status(), 201);
}

/// The schema registry refuses text holding NUL in its paths and bodies with a problem
/// document, never a 5xx: a subject of that name cannot exist, and a schema or level holding
/// one is not valid.
#[tokio::test(flavor = "multi_thread")]
async fn the_schema_registry_refuses_nul_with_problems() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let record = |doc: &str| json!({"schema": format!(r#"{{"type":"record","name":"N","doc":"{doc}","fields":[]}}"#)});
    let requests = [
        (
            reqwest::Method::POST,
            "/subjects/nul-value/versions",
            json!({"schema": "{\"type\":\"string\"}\u{0}"}),
        ),
        (
            reqwest::Method::POST,
            "/subjects/nul-value/versions",
            record("a\u{0}b"),
        ),
        (
            reqwest::Method::POST,
            "/subjects/%00/versions",
            record("fine"),
        ),
        (reqwest::Method::POST, "/subjects/%00", record("fine")),
        (
            reqwest::Method::POST,
            "/compatibility/subjects/nul-value/versions",
            record("a\u{0}b"),
        ),
        (
            reqwest::Method::PUT,
            "/config/nul-value",
            json!({"compatibility": "NONE\u{0}"}),
        ),
        (
            reqwest::Method::PUT,
            "/config/%00",
            json!({"compatibility": "NONE"}),
        ),
    ];
    for (method, path, body) in requests {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.registry_url))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("the registry answers");
        let status = response.status().as_u16();
        assert!(
            [400, 404, 422].contains(&status),
            "{method} {path}: {status}"
        );
        problem(response, status).await;
    }
    let response = app
        .client
        .get(format!("{}/subjects", app.registry_url))
        .send()
        .await
        .expect("the registry answers");
    let subjects: Value = response.json().await.expect("JSON");
    let stored: Vec<&str> = subjects
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| s.contains("nul") || s.contains('\u{0}'))
        .collect();
    assert!(
        stored.is_empty(),
        "nothing holding NUL is stored: {stored:?}"
    );
}

/// A header holding NUL (a `traceparent` or `Idempotency-Key`, which the command API copies
/// into the command and its events) never reaches a route: HTTP parsing refuses the request
/// with 400 before the platform sees it, so nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_header_holding_nul_is_refused_before_any_route() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let body = end_to_end::manifest("nul-header", "1.0.0").to_string();
    let host = app.address.trim_start_matches("http://");
    for header in ["traceparent", "idempotency-key"] {
        let mut stream = tokio::net::TcpStream::connect(host)
            .await
            .expect("the API listens");
        let request = format!(
            "POST /api/v1/plugins HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {admin}\r\n\
             {header}: a\u{0}b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("the request is sent");
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .await
            .expect("the API answers");
        assert!(reply.starts_with("HTTP/1.1 400"), "{header}: {reply}");
    }
    // Nothing was registered: the same id is still free.
    let response = app
        .post(
            "/api/v1/plugins",
            Some(&admin),
            &end_to_end::manifest("nul-header", "1.0.0"),
        )
        .await;
    assert_eq!(response.status(), 201);
}

/// A dead letter's discard reason becomes a header of the record on `plexica.dlq` and a row of
/// the audit: its optional body is read by the same rule as every other, so text Postgres
/// cannot store is a 422 naming the field (checked before the dead letter is looked up), and a
/// body of the wrong shape a 422 too.
#[tokio::test(flavor = "multi_thread")]
async fn a_discard_reason_holding_nul_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let path = format!("/api/v1/admin/dlq/{}/discard", uuid::Uuid::now_v7());
    let reply = problem(
        app.post(&path, Some(&admin), &json!({"reason": "a\u{0}b"}))
            .await,
        422,
    )
    .await;
    assert_eq!(reply["errors"][0]["pointer"], "/reason", "{reply}");
    problem(
        app.post(&path, Some(&admin), &json!({"reason": 5})).await,
        422,
    )
    .await;
}

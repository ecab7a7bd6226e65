//! GraphQL as hostile or merely curious clients use it: the standard introspection query
//! passes, expensive reads are bounded (aliases, `first`, search text, body size), and every
//! error carries a code.

use end_to_end::TestApp;
use serde_json::{Value, json};

/// graphql-js's `getIntrospectionQuery()`, as GraphiQL and schemathesis send it.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

fn code(reply: &Value) -> &str {
    reply["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standard_introspection_query_is_answered() {
    let app = TestApp::spawn().await;
    let reply = app.graphql(&app.super_admin(), INTROSPECTION).await;
    assert!(reply["errors"].is_null(), "{reply}");
    assert_eq!(reply["data"]["__schema"]["queryType"]["name"], "Root");
}

#[tokio::test(flavor = "multi_thread")]
async fn expensive_reads_are_bounded_and_every_error_has_a_code() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let aliases: String = (0..999)
        .map(|i| format!("a{i}: plugins {{ totalCount }} "))
        .collect();
    let long_text = "word ".repeat(100);
    for (query, expected) in [
        (format!("{{ {aliases} }}"), "BAD_USER_INPUT"),
        (
            "{ plugins(first: 0) { totalCount } }".to_owned(),
            "BAD_USER_INPUT",
        ),
        (
            r#"{ history(aggregateId: "plugin:x", first: -1) { eventType } }"#.to_owned(),
            "BAD_USER_INPUT",
        ),
        (
            "{ plugins(first: 99999999999) { totalCount } }".to_owned(),
            "BAD_USER_INPUT",
        ),
        (
            format!(r#"{{ registrySearch(query: "{long_text}") {{ rank }} }}"#),
            "BAD_USER_INPUT",
        ),
        ("{ nothing }".to_owned(), "BAD_USER_INPUT"),
    ] {
        let reply = app.graphql(&admin, &query).await;
        assert_eq!(
            code(&reply),
            expected,
            "{}: {reply}",
            &query[..query.len().min(80)]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graphql_body_is_bounded_and_parsed_into_coded_errors() {
    let app = TestApp::spawn().await;
    let post = |body: String| {
        app.client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(app.super_admin())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let huge =
        json!({"query": format!("{{ plugins {{ totalCount }} }} #{}", "x".repeat(128 << 10))});
    let response = post(huge.to_string()).await.expect("answers");
    assert_eq!(response.status(), 413);

    let response = post("{not json".to_owned()).await.expect("answers");
    assert_eq!(response.status(), 400);
    let reply: Value = response.json().await.expect("a GraphQL reply in JSON");
    assert_eq!(code(&reply), "BAD_REQUEST", "{reply}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_consistency_token_is_a_client_error_at_once() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(format!("{}/api/v1/plugins", app.address))
        .bearer_auth(app.super_admin())
        .header("x-consistency-token", "core.plugins:-1:5")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 400);
}

/// `pluginVersions` (and every field reading by id) under hostile input answers data or a
/// coded client error, never `INTERNAL`: NUL as a literal, as a variable, and as a variable's
/// default value (which no client sends as a variable, so the edge must read it from the
/// document), an unknown id, and an id as long as the body limit allows.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_versions_answers_hostile_input_with_coded_errors() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let ask = |query: String, variables: Value| {
        let admin = admin.clone();
        let app = &app;
        async move {
            app.client
                .post(format!("{}/graphql", app.address))
                .bearer_auth(admin)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .expect("GraphQL answers")
                .json::<Value>()
                .await
                .expect("GraphQL answers JSON")
        }
    };
    let versions = "pluginVersions(pluginId: $id) { version }";
    let refused = [
        (
            r#"{ pluginVersions(pluginId: "\u0000") { version } }"#.to_owned(),
            json!({}),
        ),
        (
            format!("query($id: String!) {{ {versions} }}"),
            json!({"id": "\u{0}"}),
        ),
        (
            format!(r#"query($id: String! = "a\u0000") {{ {versions} }}"#),
            json!({}),
        ),
        (
            r#"query($id: String! = "\u0000") { plugin(id: $id) { id } }"#.to_owned(),
            json!({}),
        ),
    ];
    for (query, variables) in refused {
        let reply = ask(query.clone(), variables).await;
        assert_eq!(code(&reply), "BAD_USER_INPUT", "{query}: {reply}");
    }
    let long = "x".repeat(60_000);
    for id in ["no-such-plugin", long.as_str()] {
        let reply = ask(
            format!("query($id: String!) {{ {versions} }}"),
            json!({ "id": id }),
        )
        .await;
        assert!(reply["errors"].is_null(), "{reply}");
        assert_eq!(reply["data"]["pluginVersions"], json!([]));
    }
}

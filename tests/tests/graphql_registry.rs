//! The registry through GraphQL: plugin lists filtered, ordered and paged, each plugin with
//! its labels, rating, versions and adoption, full-text search and autocomplete.

use end_to_end::{TestApp, eventually, manifest, plugins};
use infra::auth::Role;
use serde_json::{Value, json};

async fn send(app: &TestApp, method: reqwest::Method, path: &str, token: &str, body: &Value) {
    let response = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the API answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.text().await.unwrap_or_default()
    );
}

fn manifest_described(id: &str, name: &str, description: &str) -> Value {
    let mut manifest = manifest(id, "1.0.0");
    manifest["name"] = json!(name);
    manifest["description"] = json!(description);
    manifest
}

/// Three plugins: `crm` ACTIVE, classified, reviewed and enabled by two tenants; `billing`
/// classified and verified; `crm-analytics` only registered.
async fn registry(app: &TestApp) {
    let admin = app.super_admin();
    plugins::installed(
        app,
        &manifest_described(
            "crm",
            "Customer CRM",
            "Deals, contacts and a sales pipeline",
        ),
    )
    .await;
    plugins::request(
        app,
        reqwest::Method::POST,
        "/api/v1/plugins/crm/enable",
        None,
    )
    .await;
    plugins::wait_for_status(app, "crm", "ACTIVE").await;
    app.register(&manifest_described(
        "billing",
        "Billing",
        "Invoices and payments",
    ))
    .await;
    app.register(&manifest_described(
        "crm-analytics",
        "CRM Analytics",
        "Reports over the deals of the CRM",
    ))
    .await;
    let classify = |id: &str| format!("/api/v1/registry/plugins/{id}/classification");
    send(
        app,
        reqwest::Method::PUT,
        &classify("crm"),
        &admin,
        &json!({"categories": ["sales"], "tags": ["deals", "pipeline"]}),
    )
    .await;
    send(
        app,
        reqwest::Method::PUT,
        &classify("billing"),
        &admin,
        &json!({"categories": ["finance"], "tags": ["invoices"]}),
    )
    .await;
    send(
        app,
        reqwest::Method::PUT,
        "/api/v1/registry/plugins/billing/verification",
        &admin,
        &json!({"verified": true, "note": "security review passed"}),
    )
    .await;
    for (reviewer, rating) in [("ann", 5), ("bob", 2)] {
        let token = app
            .config
            .auth
            .keys()
            .issue(
                reviewer,
                vec![Role::TenantAdmin],
                Some("0193a000-0000-7000-8000-00000000ac3e".to_owned()),
                chrono::Duration::hours(1),
            )
            .expect("a token");
        send(
            app,
            reqwest::Method::PUT,
            "/api/v1/registry/plugins/crm/reviews/mine",
            &token,
            &json!({"rating": rating}),
        )
        .await;
    }
    for slug in ["acme", "globex"] {
        let id = uuid::Uuid::now_v7();
        send(
            app,
            reqwest::Method::POST,
            "/api/v1/tenants",
            &admin,
            &json!({"id": id, "slug": slug, "name": slug}),
        )
        .await;
        let tenant_admin = app.token(Role::TenantAdmin, Some(&id.to_string()));
        send(
            app,
            reqwest::Method::POST,
            "/api/v1/tenant/plugins/crm/enable",
            &tenant_admin,
            &json!({}),
        )
        .await;
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|edge| {
            edge.pointer("/node/id")
                .or_else(|| edge.pointer("/plugin/id"))
                .and_then(Value::as_str)
                .expect("an id")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_lists_filter_order_page_and_carry_the_registry() {
    let app = TestApp::spawn().await;
    registry(&app).await;
    let admin = app.super_admin();
    // The projection has every change once crm counts two tenants and two reviews.
    let crm = eventually("the registry is projected", || async {
        let reply = app
            .graphql(
                &admin,
                r#"{ plugin(id: "crm") { status categories tags tenantCount
                     rating { average count } versions { version } } }"#,
            )
            .await;
        let crm = reply["data"]["plugin"].clone();
        (crm["tenantCount"] == 2 && crm["rating"]["count"] == 2 && crm["tags"] != json!([]))
            .then_some(crm)
    })
    .await;
    assert_eq!(
        crm,
        json!({"status": "ACTIVE", "categories": ["sales"], "tags": ["deals", "pipeline"],
               "tenantCount": 2, "rating": {"average": 3.5, "count": 2}, "versions": []})
    );

    let list = |arguments: &str| {
        format!(
            "{{ plugins({arguments}) {{ totalCount pageInfo {{ hasNextPage hasPreviousPage endCursor }}
                 edges {{ node {{ id tenantCount }} }} }} }}"
        )
    };
    let reply = app
        .graphql(&admin, &list(r#"filter: {category: "sales"}"#))
        .await;
    assert_eq!(ids(&reply["data"]["plugins"]["edges"]), ["crm"], "{reply}");
    let reply = app
        .graphql(&admin, &list("filter: {status: REGISTERED}"))
        .await;
    assert_eq!(
        ids(&reply["data"]["plugins"]["edges"]),
        ["billing", "crm-analytics"]
    );
    assert_eq!(reply["data"]["plugins"]["totalCount"], 2);
    let reply = app
        .graphql(&admin, &list(r#"filter: {tag: "invoices"}"#))
        .await;
    assert_eq!(ids(&reply["data"]["plugins"]["edges"]), ["billing"]);

    // Verified by a super admin: the marketplace's "verified only" filter and badge.
    eventually("billing shows verified", || async {
        let reply = app
            .graphql(&admin, r#"{ plugin(id: "billing") { verified } }"#)
            .await;
        (reply["data"]["plugin"]["verified"] == true).then_some(())
    })
    .await;
    let reply = app.graphql(&admin, &list("filter: {verified: true}")).await;
    assert_eq!(
        ids(&reply["data"]["plugins"]["edges"]),
        ["billing"],
        "{reply}"
    );
    let reply = app
        .graphql(&admin, &list("filter: {verified: false}"))
        .await;
    assert_eq!(
        ids(&reply["data"]["plugins"]["edges"]),
        ["crm", "crm-analytics"]
    );
    let tenant_admin = app.token(Role::TenantAdmin, Some(&uuid::Uuid::now_v7().to_string()));
    let refused = app
        .client
        .put(format!(
            "{}/api/v1/registry/plugins/crm/verification",
            app.address
        ))
        .bearer_auth(&tenant_admin)
        .json(&json!({"verified": true}))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(refused.status(), 403, "only super admins verify");
    let rest: Value = app
        .send(reqwest::Method::GET, "/api/v1/plugins/billing", &admin)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(rest["verified"], true, "{rest}");

    // Paging through the most adopted first, one at a time.
    let reply = app
        .graphql(&admin, &list("first: 1, orderBy: TENANT_COUNT"))
        .await;
    let page = &reply["data"]["plugins"];
    assert_eq!(ids(&page["edges"]), ["crm"]);
    assert_eq!(page["totalCount"], 3);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let cursor = page["pageInfo"]["endCursor"].as_str().expect("a cursor");
    let reply = app
        .graphql(
            &admin,
            &list(&format!(
                r#"first: 5, after: "{cursor}", orderBy: TENANT_COUNT"#
            )),
        )
        .await;
    let page = &reply["data"]["plugins"];
    assert_eq!(ids(&page["edges"]), ["billing", "crm-analytics"]);
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    assert_eq!(page["pageInfo"]["hasPreviousPage"], true);

    let reply = app.graphql(&admin, &list("orderBy: RATING")).await;
    assert_eq!(ids(&reply["data"]["plugins"]["edges"])[0], "crm");
    let reply = app.graphql(&admin, &list(r#"after: "nowhere""#)).await;
    assert_eq!(reply["errors"][0]["extensions"]["code"], "BAD_CURSOR");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_is_searched_by_relevance_and_suggests_as_you_type() {
    let app = TestApp::spawn().await;
    registry(&app).await;
    let admin = app.super_admin();
    eventually("billing is classified", || async {
        let reply = app
            .graphql(&admin, r#"{ plugin(id: "billing") { tags } }"#)
            .await;
        (reply["data"]["plugin"]["tags"] == json!(["invoices"])).then_some(())
    })
    .await;

    // "deals" names crm's tag and both CRMs' descriptions; the tag weighs more.
    let reply = app
        .graphql(
            &admin,
            r#"{ registrySearch(query: "deals") { plugin { id } rank } }"#,
        )
        .await;
    let hits = &reply["data"]["registrySearch"];
    assert_eq!(ids(hits), ["crm", "crm-analytics"], "{reply}");
    assert!(hits[0]["rank"].as_f64() > hits[1]["rank"].as_f64());
    let reply = app
        .graphql(
            &admin,
            r#"{ registrySearch(query: "invoices -payments") { plugin { id } } }"#,
        )
        .await;
    assert_eq!(reply["data"]["registrySearch"], json!([]));
    let reply = app
        .graphql(
            &admin,
            r#"{ plugins(filter: {search: "crm"}, orderBy: RELEVANCE) { totalCount } }"#,
        )
        .await;
    assert_eq!(reply["data"]["plugins"]["totalCount"], 2);

    let reply = app
        .graphql(&admin, r#"{ registrySuggest(prefix: "cr") }"#)
        .await;
    assert_eq!(
        reply["data"]["registrySuggest"],
        json!(["Customer CRM", "CRM Analytics"]),
        "{reply}"
    );
    let reply = app
        .graphql(&admin, r#"{ registrySuggest(prefix: "fin") }"#)
        .await;
    assert_eq!(reply["data"]["registrySuggest"], json!(["finance"]));
    let reply = app
        .graphql(&admin, r#"{ registrySuggest(prefix: "'):* |") }"#)
        .await;
    assert_eq!(reply["data"]["registrySuggest"], json!([]), "{reply}");
}

//! Who did what, when, from which command: an aggregate's history and an operation's steps
//! through GraphQL, and what a tenant admin may not read of another tenant.

use end_to_end::log::{Entry, LogWriter, plugin_history};
use end_to_end::{TestApp, eventually, manifest, plugins};
use infra::auth::Role;
use serde_json::{Value, json};

fn types(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["eventType"].as_str().expect("a type").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_install_is_an_operation_whose_steps_are_its_events() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    app.register(&manifest("crm", "1.0.0")).await;
    let operation_id = plugins::start_install(&app, "crm").await;
    plugins::wait_for_status(&app, "crm", "INSTALLED").await;

    let query = format!(
        r#"{{ operation(id: "{operation_id}") {{ id status aggregateId steps {{
               eventType aggregateId userId commandId operationId }} }} }}"#
    );
    let operation = eventually("the install's last step is projected", || async {
        let reply = app.graphql(&admin, &query).await;
        let operation = reply["data"]["operation"].clone();
        (operation["status"] == "SUCCEEDED").then_some(operation)
    })
    .await;
    assert_eq!(operation["id"], operation_id.as_str());
    assert_eq!(operation["aggregateId"], "plugin:crm");
    let plugin_steps: Vec<String> = operation["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["aggregateId"] == "plugin:crm")
        .map(|s| s["eventType"].as_str().expect("a type").to_owned())
        .collect();
    let mut expected = vec!["core.plugin.install-requested".to_owned()];
    expected.extend(std::iter::repeat_n(
        "core.plugin.install-step-completed".to_owned(),
        5,
    ));
    expected.push("core.plugin.installed".to_owned());
    assert_eq!(plugin_steps, expected);
    let steps = operation["steps"].as_array().expect("steps");
    assert!(
        steps
            .iter()
            .all(|s| s["operationId"] == operation_id.as_str()),
        "every step belongs to the operation: {operation}"
    );
    assert_eq!(steps[0]["commandId"], operation_id.as_str());
    assert_eq!(steps[0]["userId"], "tester");
    assert!(
        steps
            .iter()
            .any(|s| s["eventType"] == "core.registry.names-reserved"),
        "the saga's permission reservation is one of its steps: {operation}"
    );

    let reply = app
        .graphql(
            &admin,
            r#"{ history(aggregateId: "plugin:crm") { eventType aggregateVersion } }"#,
        )
        .await;
    let history = &reply["data"]["history"];
    assert_eq!(types(history)[0], "core.plugin.registered");
    assert_eq!(
        types(history).last().map(String::as_str),
        Some("core.plugin.installed")
    );
    let versions: Vec<i64> = history
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["aggregateVersion"].as_i64().expect("a version"))
        .collect();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>(), "gapless: {reply}");

    let unknown = app
        .graphql(
            &admin,
            &format!(
                r#"{{ operation(id: "{}") {{ id }} }}"#,
                uuid::Uuid::now_v7()
            ),
        )
        .await;
    assert_eq!(unknown["data"]["operation"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_reads_nothing_of_another_tenant_through_any_field() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let mut tenants = Vec::new();
    for slug in ["acme", "globex"] {
        let id = uuid::Uuid::now_v7();
        let created = app
            .post(
                "/api/v1/tenants",
                Some(&admin),
                &json!({"id": id, "slug": slug, "name": slug}),
            )
            .await;
        assert_eq!(created.status(), 201);
        tenants.push(id);
    }
    let (acme, globex) = (tenants[0], tenants[1]);
    let acme_admin = app.token(Role::TenantAdmin, Some(&acme.to_string()));
    eventually("both tenants are projected", || async {
        let reply = app.graphql(&admin, "{ tenants { id } }").await;
        (reply["data"]["tenants"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;

    let own = app
        .graphql(
            &acme_admin,
            &format!(r#"{{ tenant(id: "{acme}") {{ slug }} history(aggregateId: "tenant:{acme}") {{ eventType }} }}"#),
        )
        .await;
    assert_eq!(own["data"]["tenant"]["slug"], "acme", "{own}");
    assert_eq!(types(&own["data"]["history"]), ["core.tenant.created"]);

    let listed = app.graphql(&acme_admin, "{ tenants { slug } }").await;
    assert_eq!(listed["data"]["tenants"], json!([{"slug": "acme"}]));
    for query in [
        format!(r#"{{ tenant(id: "{globex}") {{ slug }} }}"#),
        format!(r#"{{ tenant(id: "{globex}") {{ plugins {{ pluginId configuration }} }} }}"#),
        format!(r#"{{ history(aggregateId: "tenant:{globex}") {{ eventType }} }}"#),
        r#"{ history(aggregateId: "plugin:crm") { eventType } }"#.to_owned(),
        format!(
            r#"{{ operation(id: "{}") {{ id }} }}"#,
            uuid::Uuid::now_v7()
        ),
    ] {
        let reply = app.graphql(&acme_admin, &query).await;
        assert_eq!(
            reply["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{query}: {reply}"
        );
        assert!(!reply.to_string().contains("globex"), "{query}: {reply}");
    }

    let anonymous: Value = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({"query": format!(r#"{{ tenant(id: "{acme}") {{ slug }} }}"#)}))
        .send()
        .await
        .expect("GraphQL answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        anonymous["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
}

/// An event whose correlation id is longer than a Postgres notification may carry (only a
/// writer other than the command processor puts one there) is applied and kept in the history
/// like any other; only its operation goes unannounced. The catalog announced each history row
/// with a notification of its own, and Postgres refused the whole batch over the one that was
/// too long: the catalog tried it again forever, and no later event was applied.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_with_a_correlation_id_too_long_to_announce_is_applied_all_the_same() {
    let app = TestApp::spawn().await;
    let writer = LogWriter::on(&app.config, &app.topics, &app.registry_url).await;
    let long = "c".repeat(9_000);
    let registered = plugin_history("long-correlation", 1).remove(0);
    writer
        .append_with(
            "plugin:long-correlation",
            1,
            &Entry::Event(registered),
            |envelope| {
                envelope.correlation_id = Some(long.clone());
            },
        )
        .await;
    // Written after it by the command processor: applied only once the catalog got past it.
    app.register(&manifest("after-long-correlation", "1.0.0"))
        .await;
    app.plugin_in_graphql("after-long-correlation").await;

    let plugin = app.plugin_in_graphql("long-correlation").await;
    assert_eq!(plugin["status"], "REGISTERED");
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM catalog.event_history WHERE correlation_id = $1")
            .bind(&long)
            .fetch_one(&app.pool)
            .await
            .expect("the history is read");
    assert_eq!(
        kept, 1,
        "the event is in the history with its correlation id"
    );
    app.stop().await;
}

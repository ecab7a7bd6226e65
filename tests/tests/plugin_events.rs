//! Plugins on the log (issue 15): a plugin built on the Rust SDK publishes its declared event
//! with the caller's context on its own topic, its schema registered under its own identity,
//! and its subscription records the event in the tenant's schema in the consumer's
//! transaction; an event its handler cannot process is dead-lettered and its key parked.

use end_to_end::deal_won::DealWon;
use end_to_end::eventually;
use end_to_end::log::read_log;
use end_to_end::running::{
    active, enable_for_tenant, spawn_running_plugins, tenant_with_schema, unique_id,
};
use serde_json::{Value, json};

fn events_manifest(id: &str) -> Value {
    let bundle = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/events-rs");
    json!({
        "id": id,
        "name": "Events",
        "version": "1.0.0",
        "runtime": {
            "type": "process",
            "command": [env!("CARGO_BIN_EXE_events-plugin")],
            "bundle": format!("file://{}", bundle.display()),
            "resources": {"cpu": "500m", "memory": "256Mi"}
        },
        "migrations": {"path": "migrations"},
        "events": {
            "publishes": [format!("plugin.{id}.deal.won")],
            "subscribes": [format!("plugin.{id}.deal.won"), "core.tenant.created"]
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_publishes_with_the_callers_context_and_its_subscription_records_it_in_the_tenant()
{
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let id = unique_id("events");
    active(&app, &events_manifest(&id)).await;
    let admin = enable_for_tenant(&app, acme, &id).await;

    let won = |deal: &'static str, amount: i64| {
        let (app, id, admin) = (&app, id.clone(), admin.clone());
        async move {
            let response = app
                .client
                .post(format!("{}/api/plugins/{id}/deals/{deal}/won", app.address))
                .bearer_auth(&admin)
                .header("x-trace-id", "4bf92f3577b34da6a3ce929d0e0e4736")
                .json(&json!({"amount": amount}))
                .send()
                .await
                .expect("the gateway answers");
            assert_eq!(response.status(), 202, "the plugin published");
            response.json::<Value>().await.expect("JSON")["eventId"].clone()
        }
    };
    let received = || {
        let (app, id, admin) = (&app, id.clone(), admin.clone());
        async move {
            app.client
                .get(format!("{}/api/plugins/{id}/received", app.address))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("the gateway answers")
                .json::<Value>()
                .await
                .expect("JSON")
                .as_array()
                .expect("a list")
                .iter()
                .filter(|row| row["type"] != "core.tenant.created")
                .cloned()
                .collect::<Value>()
        }
    };

    let event_id = won("d1", 100).await;
    let rows = eventually("the subscription records the event", || async {
        let rows = received().await;
        (rows.as_array()?.len() == 1).then_some(rows)
    })
    .await;
    let row = &rows[0];
    assert_eq!(row["type"], format!("plugin.{id}.deal.won"));
    assert_eq!(row["body"], r#"{"deal_id":"d1","amount":100}"#);
    assert!(
        row["user"].is_string(),
        "the caller travels with the event: {row}"
    );

    // Plugin to plugin through the gateway (the SDK's `Services`): the same tenant's rows, for
    // the same caller.
    let relayed = app
        .client
        .get(format!(
            "{}/api/plugins/{id}/through-gateway/received",
            app.address
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(relayed.status(), 200);
    let relayed: Value = relayed.json().await.expect("JSON");
    let relayed_deals: Vec<&Value> = relayed
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["type"] != "core.tenant.created")
        .collect();
    assert_eq!(
        relayed_deals,
        rows.as_array().expect("a list").iter().collect::<Vec<_>>()
    );

    // The record on the plugin's topic, as any Kafka client reads it.
    let topic = app.topics.plugin(&id);
    let log = read_log(&app, &topic).await;
    let (_, _, envelope) = log
        .iter()
        .find(|(_, _, e)| Some(e.id.to_string()) == event_id.as_str().map(str::to_owned))
        .expect("the event is on the plugin's topic");
    assert_eq!(envelope.event_type, format!("plugin.{id}.deal.won"));
    assert_eq!(envelope.source, format!("plexica/plugin/{id}"));
    assert_eq!(envelope.tenant_id, Some(acme.to_string()));
    assert_eq!(envelope.subject.as_deref(), Some("d1"));
    assert!(
        envelope.traceparent.is_some(),
        "the trace travels: {envelope:?}"
    );

    // A deal the handler refuses is dead-lettered and parks its key: the next event of that
    // key waits behind it, while another key flows.
    won("d2", -1).await;
    won("d2", 5).await;
    won("d3", 7).await;
    let rows = eventually("the other key flows past the parked one", || async {
        let rows = received().await;
        let bodies: Vec<&str> = rows
            .as_array()?
            .iter()
            .filter_map(|r| r["body"].as_str())
            .collect();
        bodies.iter().any(|b| b.contains("d3")).then_some(rows)
    })
    .await;
    assert!(
        !rows.to_string().contains(r#"\"deal_id\":\"d2\""#),
        "nothing of the parked key was applied: {rows}"
    );
    let consumer = format!("plugin.{id}");
    let token = app.super_admin();
    let letters = eventually(
        "the refused event is a dead letter of the plugin's consumer",
        || async {
            let reply = app
                .graphql(
                    &token,
                    &format!(
                        r#"{{ deadLetters(filter: {{consumer: "{consumer}"}}, first: 10) {{
                        totalCount edges {{ node {{ id key status errorClass errorMessage }} }} }} }}"#
                    ),
                )
                .await;
            let letters = reply["data"]["deadLetters"].clone();
            (letters["edges"].as_array()?.len() == 2).then_some(letters)
        },
    )
    .await;
    let head = &letters["edges"][0]["node"];
    assert_eq!(head["key"], "d2");
    assert_eq!(head["status"], "FAILED", "{letters}");
    assert!(
        head["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("negative amount"),
        "{letters}"
    );
    assert_eq!(letters["edges"][1]["node"]["status"], "PARKED", "{letters}");

    // On tansu any client can write the plugin's topic: what another wrote there is not the
    // plugin's event, and its subscribers dead-letter it instead of applying it.
    let mut forged =
        event_schemas::Envelope::new(format!("plugin.{id}.deal.won"), "plexica/plugin/rogue");
    forged.tenant_id = Some(acme.to_string());
    let producer = infra::kafka::producer(&app.config.kafka).expect("a producer");
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key("d9")
                .payload(b"forged".as_slice())
                .headers(forged.to_headers()),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("the broker takes it");
    eventually(
        "the forged record is a dead letter of the plugin's consumer",
        || async {
            let reply = app
            .graphql(
                &token,
                &format!(
                    r#"{{ deadLetters(filter: {{consumer: "{consumer}", key: "d9"}}, first: 1) {{
                        edges {{ node {{ errorMessage }} }} }} }}"#
                ),
            )
            .await;
            let message = reply["data"]["deadLetters"]["edges"][0]["node"]["errorMessage"].clone();
            message.as_str()?.contains("only plugin").then_some(())
        },
    )
    .await;

    // The platform reads every plugin topic too (its webhooks consumer): it dead-letters the
    // forged record, and a well-formed record of a type the plugin's manifest does not
    // declare, written past the SDK with a bare client.
    let mut undeclared = event_schemas::Envelope::new(
        format!("plugin.{id}.deal.lost"),
        format!("plexica/plugin/{id}"),
    );
    undeclared.tenant_id = Some(acme.to_string());
    let payload = app
        .codec()
        .encode(
            &topic,
            &DealWon {
                deal_id: "d10".into(),
                amount: 1,
            },
        )
        .await
        .expect("encoded");
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key("d10")
                .payload(&payload)
                .headers(undeclared.to_headers()),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("the broker takes it");
    for (key, why) in [("d9", "only plugin"), ("d10", "does not declare")] {
        eventually("the platform dead-letters what the plugin may not publish", || async {
            let reply = app
                .graphql(
                    &token,
                    &format!(
                        r#"{{ deadLetters(filter: {{consumer: "webhooks", key: "{key}"}}, first: 1) {{
                            edges {{ node {{ errorMessage }} }} }} }}"#
                    ),
                )
                .await;
            let message = reply["data"]["deadLetters"]["edges"][0]["node"]["errorMessage"].clone();
            message.as_str()?.contains(why).then_some(())
        })
        .await;
    }

    // An admin discards the refused event through the platform's DLQ API: its key is released
    // and what waited behind it reaches the plugin, on the plugin's retry topic.
    let head_id = head["id"].as_str().expect("an id");
    let discarded = app
        .client
        .post(format!(
            "{}/api/v1/admin/dlq/{head_id}/discard",
            app.address
        ))
        .bearer_auth(&token)
        .json(&json!({"reason": "a test's bad deal"}))
        .send()
        .await
        .expect("the API answers");
    assert!(discarded.status().is_success(), "{}", discarded.status());
    eventually(
        "the parked event reaches the plugin once its key is released",
        || async {
            let rows = received().await;
            rows.to_string()
                .contains(r#"{\"deal_id\":\"d2\",\"amount\":5}"#)
                .then_some(())
        },
    )
    .await;
    app.stop().await;
}

/// A plugin subscribed to `core.tenant.created` handles it in the new tenant's schema: the
/// event waits until the platform made the schema and ran the plugin's migrations there.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_handles_a_new_tenant_in_its_schema_once_its_tables_are_there() {
    let app = spawn_running_plugins().await;
    let id = unique_id("events");
    active(&app, &events_manifest(&id)).await;

    let tenant = tenant_with_schema(&app, "initech").await;
    let schema = domain::TenantSchema::of(tenant);
    let recorded: String = eventually(
        "the new tenant's creation is handled in its schema",
        || async {
            sqlx::query_scalar(&format!(
                "SELECT event_type FROM {schema}.received WHERE event_type = 'core.tenant.created'"
            ))
            .fetch_optional(&app.pool)
            .await
            .ok()
            .flatten()
        },
    )
    .await;
    assert_eq!(recorded, "core.tenant.created");
    let letters = app
        .graphql(
            &app.super_admin(),
            &format!(
                r#"{{ deadLetters(filter: {{consumer: "plugin.{id}"}}, first: 5) {{ totalCount edges {{ node {{ errorMessage headers }} }} }} }}"#
            ),
        )
        .await;
    assert_eq!(
        letters["data"]["deadLetters"]["totalCount"], 0,
        "nothing was dead-lettered while the schema was not ready: {letters}"
    );
    app.stop().await;
}

/// A plugin in Python that publishes with stock clients (confluent-kafka, fastavro) from the
/// README's wire contract alone: the platform reads its event as one of its own (decoded
/// through the registry, the plugin's topic rule and its manifest checked) and delivers it to
/// the tenant's webhook with the caller's tenant.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_publishes_with_stock_clients_and_the_platform_reads_its_event() {
    let python = std::env::var("PLEXICA_TEST_PYTHON").expect(
        "PLEXICA_TEST_PYTHON names a Python with confluent-kafka and fastavro (cargo xtask test sets it)",
    );
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let id = unique_id("events-py");
    let bundle = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/events-py");
    let manifest = json!({
        "id": id,
        "name": "Events in Python",
        "version": "1.0.0",
        "runtime": {
            "type": "process",
            "command": [python, "server.py"],
            "bundle": format!("file://{}", bundle.display()),
            "resources": {"cpu": "500m", "memory": "256Mi"}
        },
        "events": {"publishes": [format!("plugin.{id}.deal.won")]}
    });
    active(&app, &manifest).await;
    let admin = enable_for_tenant(&app, acme, &id).await;

    let (hooks, mut delivered) = tokio::sync::mpsc::unbounded_channel::<String>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let hooks = hooks.clone();
            async move {
                let _ = hooks.send(body);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let registered = app
        .post(
            "/api/v1/webhooks",
            Some(&admin),
            &json!({"url": url, "events": [format!("plugin.{id}.deal.won")]}),
        )
        .await;
    assert_eq!(registered.status(), 201);

    let response = app
        .client
        .post(format!("{}/api/plugins/{id}/deals/d1/won", app.address))
        .bearer_auth(&admin)
        .json(&json!({"amount": 7}))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "the Python plugin published: {body}");

    let hook = tokio::time::timeout(std::time::Duration::from_secs(30), delivered.recv())
        .await
        .expect("the event reaches the webhook in time")
        .expect("a delivery");
    let hook: Value = serde_json::from_str(&hook).expect("JSON");
    assert_eq!(hook["type"], format!("plugin.{id}.deal.won"));
    assert_eq!(hook["id"], body["eventId"]);
    assert_eq!(hook["tenantId"], acme.to_string());
    assert_eq!(hook["data"], json!({"deal_id": "d1", "amount": 7}));
}

//! One change through every part: REST command → log → processor → event → projection →
//! Postgres → GraphQL, and what happens around it.

use std::time::Duration;

use end_to_end::{TestApp, eventually, manifest};
use event_schemas::envelope::header;
use infra::auth::Role;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_plugin_is_served_by_graphql_as_registered() {
    let app = TestApp::spawn().await;

    let reply = app.register(&manifest("crm", "1.2.0")).await;

    assert_eq!(reply["status"], "accepted");
    assert_eq!(reply["events"][0]["eventType"], "core.plugin.registered");
    assert_eq!(reply["events"][0]["aggregateVersion"], 1);
    let plugin = app.plugin_in_graphql("crm").await;
    assert_eq!(
        plugin,
        json!({"id": "crm", "name": "Plugin crm", "version": "1.2.0", "status": "REGISTERED"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_is_avro_in_the_confluent_wire_format_with_cloudevents_headers() {
    let app = TestApp::spawn().await;
    let reply = app.register(&manifest("billing", "2.0.1")).await;
    let partition = reply["events"][0]["partition"].as_i64().expect("partition") as i32;
    let offset = reply["events"][0]["offset"].as_i64().expect("offset");

    let consumer: StreamConsumer = infra::kafka::consumer_config(&app.config.kafka, "e2e-reader")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(
            &app.topics.plugins(),
            partition,
            rdkafka::Offset::Offset(offset),
        )
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
        .await
        .expect("the event arrives")
        .expect("no Kafka error");

    let payload = message.payload().expect("a value");
    assert_eq!(payload[0], 0, "Confluent magic byte");
    let schema_id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    let schema: Value = reqwest::get(format!("{}/schemas/ids/{schema_id}", app.registry_url))
        .await
        .expect("registry answers")
        .json()
        .await
        .expect("JSON");
    assert!(
        schema["schema"]
            .as_str()
            .expect("schema text")
            .contains("PluginRegistered")
    );
    assert_eq!(message.key(), Some(&b"plugin:billing"[..]));

    let headers = message.headers().expect("headers");
    let get = |name: &str| event_schemas::envelope::header_str(headers, name).map(str::to_owned);
    assert_eq!(get(header::SPEC_VERSION).as_deref(), Some("1.0"));
    assert_eq!(get(header::TYPE).as_deref(), Some("core.plugin.registered"));
    assert_eq!(get(header::SUBJECT).as_deref(), Some("plugin:billing"));
    assert_eq!(get(header::AGGREGATE_VERSION).as_deref(), Some("1"));
    assert_eq!(
        get(header::CAUSATION_ID),
        reply["commandId"].as_str().map(str::to_owned)
    );
    assert!(
        get(header::WRITER_EPOCH).is_some(),
        "events carry the writer's epoch"
    );
    assert!(get(header::TRACEPARENT).is_some());
    let id = uuid::Uuid::parse_str(&get(header::ID).expect("ce_id")).expect("a UUID");
    assert_eq!(id.get_version_num(), 7, "event ids are UUID v7");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_tenant_is_served_by_graphql() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::now_v7();
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&app.super_admin()),
            &json!({"id": id, "slug": "acme-corp", "name": "Acme Corp"}),
        )
        .await;
    assert_eq!(response.status(), 201);

    let token = app.super_admin();
    let tenant = eventually("the tenant is visible", || async {
        let reply = app
            .graphql(
                &token,
                &format!(r#"{{ tenant(id: "{id}") {{ id slug name status }} }}"#),
            )
            .await;
        let tenant = reply["data"]["tenant"].clone();
        (!tenant.is_null()).then_some(tenant)
    })
    .await;
    assert_eq!(
        tenant,
        json!({"id": id.to_string(), "slug": "acme-corp", "name": "Acme Corp", "status": "ACTIVE"})
    );

    let other_admin = app.token(Role::TenantAdmin, Some(&uuid::Uuid::now_v7().to_string()));
    let reply = app
        .graphql(
            &other_admin,
            &format!(r#"{{ tenant(id: "{id}") {{ id }} }}"#),
        )
        .await;
    assert_eq!(reply["errors"][0]["extensions"]["code"], "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_problem_documents_and_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();

    let mut invalid = manifest("Not Kebab", "one");
    invalid["surprise"] = json!(1);
    let response = app.post("/api/v1/plugins", Some(&admin), &invalid).await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("JSON");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert!(pointers.contains(&"/id"), "{problem}");

    let response = app
        .client
        .post(format!("{}/api/v1/plugins", app.address))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 400);

    let oversize = json!({"id": "big", "name": "x".repeat(1024 * 1024 + 1), "version": "1.0.0"});
    let response = app.post("/api/v1/plugins", Some(&admin), &oversize).await;
    assert_eq!(response.status(), 413);

    let response = app
        .post("/api/v1/plugins", None, &manifest("crm", "1.0.0"))
        .await;
    assert_eq!(response.status(), 401);
    let response = app
        .post(
            "/api/v1/plugins",
            Some("not-a-token"),
            &manifest("crm", "1.0.0"),
        )
        .await;
    assert_eq!(response.status(), 401);
    let tenant_admin = app.token(Role::TenantAdmin, Some("t"));
    let response = app
        .post(
            "/api/v1/plugins",
            Some(&tenant_admin),
            &manifest("crm", "1.0.0"),
        )
        .await;
    assert_eq!(response.status(), 403);

    app.register(&manifest("crm", "1.0.0")).await;
    let response = app
        .post("/api/v1/plugins", Some(&admin), &manifest("crm", "1.1.0"))
        .await;
    assert_eq!(response.status(), 409);

    // Wait for the accepted registration, so that any other would have had time to show too.
    app.plugin_in_graphql("crm").await;
    let reply = app.graphql(&admin, "{ plugins { totalCount } }").await;
    assert_eq!(
        reply["data"]["plugins"]["totalCount"], 1,
        "only the valid registration exists"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_answers_a_repeat_with_the_first_outcome() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let key = uuid::Uuid::new_v4().to_string();
    let send = |body: Value| {
        let request = app
            .client
            .post(format!("{}/api/v1/plugins", app.address))
            .bearer_auth(&admin)
            .header("Idempotency-Key", &key)
            .json(&body);
        async move { request.send().await.expect("answers") }
    };

    let first = send(manifest("notes", "1.0.0")).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("JSON");
    let repeat = send(manifest("notes", "1.0.0")).await;
    assert_eq!(repeat.status(), 201, "a repeat is not a conflict");
    let repeat: Value = repeat.json().await.expect("JSON");
    assert_eq!(repeat["commandId"], first["commandId"]);
    assert_eq!(repeat["events"], first["events"]);

    let different = send(manifest("notes", "2.0.0")).await;
    assert_eq!(different.status(), 422);
}

/// A record the projection cannot decode goes to the DLQ with its context, and the DLQ worker
/// keeps it in Postgres; a record that lacks the writer headers is dead-lettered too.
#[tokio::test(flavor = "multi_thread")]
async fn undecodable_and_unsigned_records_are_dead_lettered_and_stored() {
    let app = TestApp::spawn().await;
    // An accepted command makes sure the processor has fenced partition 0's event topics.
    app.register(&manifest("crm", "1.0.0")).await;
    let producer = infra::kafka::producer(&app.config.kafka).expect("producer");
    let topic = app.topics.plugins();

    let signed = OwnedHeaders::new()
        .insert(Header {
            key: header::ID,
            value: Some(&uuid::Uuid::now_v7().to_string()),
        })
        .insert(Header {
            key: header::TYPE,
            value: Some("core.plugin.registered"),
        })
        .insert(Header {
            key: header::SOURCE,
            value: Some("/tests"),
        })
        .insert(Header {
            key: header::TIME,
            value: Some(&chrono::Utc::now().to_rfc3339()),
        })
        .insert(Header {
            key: header::WRITER_EPOCH,
            value: Some("999999"),
        });
    producer
        .send(
            FutureRecord::to(&topic)
                .key("plugin:garbage")
                .payload(&b"\x00garbage"[..])
                .headers(signed),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    producer
        .send(
            FutureRecord::to(&topic)
                .key("plugin:unsigned")
                .payload(&b"{}"[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");

    let rows: Vec<(String, String, String, String, Option<String>)> =
        eventually("both records are stored as dead letters", || async {
            let rows: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
                "SELECT consumer, original_topic, error_class, error_message, record_key
                 FROM dlq.dead_letters WHERE consumer = 'catalog' ORDER BY record_key",
            )
            .fetch_all(&app.pool)
            .await
            .ok()?;
            (rows.len() == 2).then_some(rows)
        })
        .await;
    for (consumer, original_topic, class, _, _) in &rows {
        assert_eq!(consumer, "catalog");
        assert_eq!(original_topic, &topic);
        assert_eq!(class, "permanent");
    }
    assert_eq!(rows[0].4.as_deref(), Some("plugin:garbage"));
    assert_eq!(rows[1].4.as_deref(), Some("plugin:unsigned"));
    assert!(rows[1].3.contains("writer-epoch"), "{}", rows[1].3);

    // A healthy record after them is applied: the poison did not stop the projection. The
    // command goes to crm, whose partition the processor already holds: a new owner's rebuild
    // stops at a signed record it cannot decode, as it must (log_promises.rs).
    let install = app
        .send(
            reqwest::Method::POST,
            "/api/v1/plugins/crm/install",
            &app.super_admin(),
        )
        .await;
    assert_eq!(install.status(), 202);
    eventually("the install is in the catalog", || async {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM catalog.plugins WHERE id = 'crm'")
                .fetch_optional(&app.pool)
                .await
                .ok()
                .flatten();
        status.filter(|s| s != "REGISTERED").map(|_| ())
    })
    .await;
}

/// Stopping and starting again keeps everything, decides nothing twice, and a dropped read
/// model comes back from the log with the same content.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_everything_and_a_dropped_read_model_is_rebuilt_from_the_log() {
    let app = TestApp::spawn().await;
    for (id, version) in [
        ("crm", "1.0.0"),
        ("billing", "0.3.1"),
        ("analytics", "4.2.0"),
    ] {
        app.register(&manifest(id, version)).await;
        app.plugin_in_graphql(id).await;
    }
    let snapshot = |pool: sqlx::PgPool| async move {
        let rows: Vec<(String, String, String, String, i64, Value)> = sqlx::query_as(
            "SELECT id, name, version, status, aggregate_version, manifest FROM catalog.plugins ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .expect("catalog readable");
        rows
    };
    let before = snapshot(app.pool.clone()).await;
    let config = app.stop().await;

    let app = TestApp::spawn_with(config).await;
    let response = app
        .post(
            "/api/v1/plugins",
            Some(&app.super_admin()),
            &manifest("crm", "1.0.0"),
        )
        .await;
    assert_eq!(
        response.status(),
        409,
        "the processor rebuilt its state from the log"
    );
    assert_eq!(
        snapshot(app.pool.clone()).await,
        before,
        "nothing applied twice"
    );

    sqlx::query("DROP SCHEMA catalog CASCADE")
        .execute(&app.pool)
        .await
        .expect("drop");
    let config = app.stop().await;
    let app = TestApp::spawn_with(config).await;
    let rebuilt = eventually("the catalog is rebuilt", || {
        let pool = app.pool.clone();
        async move {
            let rows: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM catalog.plugins")
                .fetch_one(&pool)
                .await
                .ok();
            (rows == Some(3)).then_some(())
        }
    })
    .await;
    let () = rebuilt;
    assert_eq!(snapshot(app.pool.clone()).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_read_routes_of_the_spec_serve_the_catalog() {
    let app = TestApp::spawn().await;
    app.register(&manifest("crm", "1.2.0")).await;
    app.register(&manifest("billing", "0.1.0")).await;
    app.plugin_in_graphql("crm").await;
    app.plugin_in_graphql("billing").await;
    let get = |path: &str, token: String| {
        let request = app
            .client
            .get(format!("{}{path}", app.address))
            .bearer_auth(token);
        async move { request.send().await.expect("answers") }
    };

    let list: Value = get("/api/v1/plugins", app.super_admin())
        .await
        .json()
        .await
        .expect("JSON");
    let ids: Vec<&str> = list["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["billing", "crm"]);
    let page: Value = get("/api/v1/plugins?limit=1&after=billing", app.super_admin())
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["plugins"][0]["id"], "crm");
    assert_eq!(page["plugins"].as_array().map(Vec::len), Some(1));

    let crm = get("/api/v1/plugins/crm", app.super_admin()).await;
    assert_eq!(crm.status(), 200);
    let crm: Value = crm.json().await.expect("JSON");
    assert_eq!(crm["status"], "REGISTERED");
    assert_eq!(crm["manifest"], manifest("crm", "1.2.0"));
    assert_eq!(
        get("/api/v1/plugins/nobody", app.super_admin())
            .await
            .status(),
        404
    );
    let tenant_admin = app.token(Role::TenantAdmin, Some("t"));
    assert_eq!(get("/api/v1/plugins", tenant_admin).await.status(), 403);
    assert_eq!(
        get("/api/v1/plugins?limit=many", app.super_admin())
            .await
            .status(),
        400
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics_are_served() {
    let app = TestApp::spawn().await;
    app.register(&manifest("crm", "1.0.0")).await;
    app.plugin_in_graphql("crm").await;
    let get = |path: &str| {
        let request = app.client.get(format!("{}{path}", app.address));
        async move { request.send().await.expect("answers") }
    };

    assert_eq!(get("/health").await.status(), 200);
    let ready: Value = get("/ready").await.json().await.expect("JSON");
    assert_eq!(ready["status"], "ready");
    for component in ["command-processor", "catalog", "dlq-worker"] {
        assert_eq!(ready["components"][component], true, "{ready}");
    }
    // A command is counted once its decision's record is acknowledged, which may come after
    // its reply and after its events are in GraphQL.
    let metrics = eventually("the command is counted", || async {
        let metrics = get("/metrics").await.text().await.expect("text");
        metrics
            .contains("plexica_commands_total")
            .then_some(metrics)
    })
    .await;
    assert!(
        metrics.contains("plexica_consumer_records_total"),
        "{metrics}"
    );
}

/// A log's topics keep their partitions: a platform configured with another count refuses to
/// start and says which, instead of placing an aggregate's new events in another partition
/// than its old ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_platform_configured_with_other_partitions_than_its_log_refuses_to_start() {
    let mut config = end_to_end::isolated_config().await;
    let topics =
        event_schemas::Topics::new(config.kafka.topic_prefix.clone(), config.kafka.partitions);
    infra::kafka::create_topics(&config.kafka, &topics.catalogue())
        .await
        .expect("the log's topics are created");
    assert_eq!(config.kafka.partitions, 3);
    config.kafka.partitions = 1;
    let refused = plexica::start(config, plexica::Part::QueryApi).await;
    match refused {
        Err(plexica::LaunchError::Partitions {
            on_the_log: 3,
            configured: 1,
            topic,
        }) => assert!(
            topic.ends_with("plexica.commands") || topic.contains("core."),
            "{topic}"
        ),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("the platform started on a log of 3 partitions configured with 1"),
    }
}

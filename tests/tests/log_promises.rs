//! The log's promises under failure (DESIGN.md §4): a command's events count all or none, a
//! decision, refusals included, is never taken twice, and idempotency outlives Redis.

use end_to_end::log::{plugin_history, read_log, rewind_command_processor};
use end_to_end::{TestApp, eventually, manifest};
use event_schemas::Envelope;
use event_schemas::envelope::CommandPart;
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_command_whose_events_were_half_written_counts_for_no_reader_and_is_decided_again() {
    let app = TestApp::spawn().await;
    let id = format!("half-{}", Uuid::now_v7().simple());
    let key = format!("plugin:{id}");

    // A processor wrote the first of a command's two events, then crashed: the prefix is in
    // the log under the partition's current epoch, as its writer left it.
    let registered = plugin_history(&id, 1).remove(0);
    let topic = app.topics.plugins();
    let codec = app.codec();
    let value = codec
        .encode_event(&topic, &registered)
        .await
        .expect("the event encodes");
    let mut envelope = Envelope::new(registered.event_type(), "/plexica/command-processor");
    envelope.subject = Some(key.clone());
    envelope.causation_id = Some(Uuid::now_v7());
    envelope.aggregate_version = Some(1);
    envelope.writer_epoch = Some(1);
    envelope.command_part = CommandPart::of(0, 2);
    let producer = infra::kafka::producer(&app.config.kafka).expect("producer");
    // The same partitioner as the command API's: the partition the plugin's commands go to.
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .headers(envelope.to_headers()),
            Duration::from_secs(10),
        )
        .await
        .expect("the prefix is written");
    let (partition, prefix_offset) = (delivery.partition, delivery.offset);
    let lease: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM command_leases WHERE partition = $1")
            .bind(partition)
            .fetch_optional(&app.pool)
            .await
            .expect("leases readable");
    assert!(
        lease.unwrap_or(1) <= 1,
        "the prefix is under the current epoch"
    );

    // The writer crashed: the next processor takes the partition and fences it.
    let config = app.stop().await;
    let app = TestApp::spawn_with(config).await;
    eventually("the catalog read past the next owner's fence", || async {
        app.catalog_checkpoint(&topic, partition)
            .await
            .filter(|next| *next > prefix_offset + 1)
    })
    .await;
    let applied: Option<String> =
        sqlx::query_scalar("SELECT id FROM catalog.plugins WHERE id = $1")
            .bind(&id)
            .fetch_optional(&app.pool)
            .await
            .expect("catalog readable");
    assert_eq!(
        applied, None,
        "a command's first event alone is never applied"
    );

    // The processor that takes the partition next does not count the prefix either: the
    // plugin is not registered, so registering it is accepted, once.
    let response = app
        .post(
            "/api/v1/plugins",
            Some(&app.super_admin()),
            &manifest(&id, "1.0.0"),
        )
        .await;
    let status = response.status();
    let reply: Value = response.json().await.expect("JSON");
    assert!(status.is_success(), "{status}: {reply}");
    assert_eq!(reply["events"][0]["eventType"], "core.plugin.registered");
    assert!(reply["events"][0]["offset"].as_i64() > Some(prefix_offset));
    eventually("the registration is in the catalog", || async {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT aggregate_version FROM catalog.plugins WHERE id = $1")
                .bind(&id)
                .fetch_optional(&app.pool)
                .await
                .ok()
                .flatten();
        version.filter(|v| *v == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_command_delivered_again_after_a_crash_is_refused_again() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let tenant = Uuid::now_v7();
    let created = app
        .post(
            "/api/v1/tenants",
            Some(&admin),
            &json!({"id": tenant, "slug": format!("t-{}", tenant.simple()), "name": "Refused Once"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let suspend = format!("/api/v1/tenants/{tenant}/suspend");
    assert_eq!(
        app.send(reqwest::Method::POST, &suspend, &admin)
            .await
            .status(),
        200
    );
    let refused = app.send(reqwest::Method::POST, &suspend, &admin).await;
    assert_eq!(
        refused.status(),
        409,
        "a suspended tenant is not suspended again"
    );
    let refusal: Value = refused.json().await.expect("JSON");
    let refused_id = refusal["commandId"]
        .as_str()
        .expect("command id")
        .to_owned();
    let reactivate = format!("/api/v1/tenants/{tenant}/reactivate");
    assert_eq!(
        app.send(reqwest::Method::POST, &reactivate, &admin)
            .await
            .status(),
        200
    );

    // A crash before the offsets were committed: every command is delivered again, the
    // refused one now to an ACTIVE tenant. Its stored outcome is gone too.
    let config = app.stop().await;
    rewind_command_processor(&config);
    let redis = redis::Client::open(config.redis.url.as_str()).expect("redis URL");
    let mut connection = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("DEL")
        .arg(format!("command-outcome:{refused_id}"))
        .query_async::<()>(&mut connection)
        .await
        .expect("deleted");
    let app = TestApp::spawn_with(config).await;

    let answer: Value = eventually("the redelivered refusal is answered", || async {
        let response = app
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/operations/{refused_id}"),
                &admin,
            )
            .await;
        let body: Value = response.json().await.ok()?;
        (body["type"]
            .as_str()
            .is_some_and(|t| !t.ends_with("not-found"))
            || body["status"] == "accepted")
            .then_some(body)
    })
    .await;
    assert_eq!(answer["status"], 409, "its first outcome: {answer}");
    let suspensions = read_log(&app, &app.topics.tenants())
        .await
        .into_iter()
        .filter(|(_, _, e)| {
            e.event_type == "core.tenant.suspended"
                && e.subject.as_deref() == Some(&format!("tenant:{tenant}"))
        })
        .count();
    assert_eq!(suspensions, 1, "the refused command was not decided again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_sent_again_with_its_idempotency_key_after_redis_forgot_it_gets_its_first_outcome()
 {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let id = format!("idem-{}", Uuid::now_v7().simple());
    let key = Uuid::now_v7().to_string();
    let register = || async {
        let response = app
            .client
            .post(format!("{}/api/v1/plugins", app.address))
            .bearer_auth(&admin)
            .header("Idempotency-Key", &key)
            .json(&manifest(&id, "1.0.0"))
            .send()
            .await
            .expect("the API answers");
        let status = response.status();
        (status, response.json::<Value>().await.expect("JSON"))
    };
    let (status, first) = register().await;
    assert!(status.is_success(), "{status}: {first}");

    // Redis loses everything it knew of the request: the key's claim and the outcome.
    let redis = redis::Client::open(app.config.redis.url.as_str()).expect("redis URL");
    let mut connection = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let claims: Vec<String> = redis::cmd("KEYS")
        .arg(format!("idempotency:*:{key}"))
        .query_async(&mut connection)
        .await
        .expect("keys");
    assert_eq!(claims.len(), 1, "{claims:?}");
    let command_id = first["commandId"].as_str().expect("command id");
    redis::cmd("DEL")
        .arg(&claims[0])
        .arg(format!("command-outcome:{command_id}"))
        .query_async::<()>(&mut connection)
        .await
        .expect("deleted");

    let (status, again) = register().await;
    assert!(
        status.is_success(),
        "the first outcome, not a refusal: {status}: {again}"
    );
    assert_eq!(again["commandId"], first["commandId"]);
    assert_eq!(again["events"], first["events"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_owner_whose_lease_table_was_lost_writes_above_every_fence_in_the_log() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let tenant = Uuid::now_v7();
    let created = app
        .post(
            "/api/v1/tenants",
            Some(&admin),
            &json!({"id": tenant, "slug": format!("t-{}", tenant.simple()), "name": "Leased"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    // A restart: the next owner fences the tenant's partition with epoch 2.
    let app = TestApp::spawn_with(app.stop().await).await;
    let suspend = format!("/api/v1/tenants/{tenant}/suspend");
    assert_eq!(
        app.send(reqwest::Method::POST, &suspend, &admin)
            .await
            .status(),
        200
    );

    // The lease table is lost (a restored or new database); the log keeps its fences.
    let config = app.stop().await;
    let pool = infra::postgres::connect(&config.postgres)
        .await
        .expect("database");
    sqlx::query("DELETE FROM command_leases")
        .execute(&pool)
        .await
        .expect("leases deleted");
    let app = TestApp::spawn_with(config).await;
    let reactivate = format!("/api/v1/tenants/{tenant}/reactivate");
    let response = app.send(reqwest::Method::POST, &reactivate, &admin).await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.expect("JSON");
    let offset = reply["events"][0]["offset"].as_i64().expect("offset");
    let partition = i32::try_from(reply["events"][0]["partition"].as_i64().expect("partition"))
        .expect("partition");

    // What the new owner wrote counts for the readers: the catalog applies it.
    let topic = app.topics.tenants();
    eventually("the catalog read past the reactivation", || async {
        app.catalog_checkpoint(&topic, partition)
            .await
            .filter(|next| *next > offset)
    })
    .await;
    let status: String = sqlx::query_scalar("SELECT status FROM catalog.tenants WHERE id = $1")
        .bind(tenant)
        .fetch_one(&app.pool)
        .await
        .expect("the tenant is in the catalog");
    assert_eq!(status, "ACTIVE", "the reactivation was not voided");
}

/// The catalog as rows of JSON, every column but the projection's own clock.
async fn catalog(app: &TestApp) -> (Vec<Value>, Vec<Value>) {
    let plugins =
        sqlx::query_scalar("SELECT to_jsonb(p) - 'updated_at' FROM catalog.plugins p ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("catalog readable");
    let tenants =
        sqlx::query_scalar("SELECT to_jsonb(t) - 'updated_at' FROM catalog.tenants t ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("catalog readable");
    (plugins, tenants)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_comes_back_from_the_log_alone_when_its_database_is_lost() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let plugin = format!("kept-{}", Uuid::now_v7().simple());
    app.register(&manifest(&plugin, "1.0.0")).await;
    let tenant = Uuid::now_v7();
    let created = app
        .post(
            "/api/v1/tenants",
            Some(&admin),
            &json!({"id": tenant, "slug": format!("t-{}", tenant.simple()), "name": "Kept"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let suspend = format!("/api/v1/tenants/{tenant}/suspend");
    assert_eq!(
        app.send(reqwest::Method::POST, &suspend, &admin)
            .await
            .status(),
        200
    );
    let before = eventually("the catalog holds both", || async {
        let (plugins, tenants) = catalog(&app).await;
        (plugins.len() == 1 && tenants.first().is_some_and(|t| t["status"] == "SUSPENDED"))
            .then_some((plugins, tenants))
    })
    .await;

    // The database is lost: schemas, leases, read models, checkpoints. The log is not.
    let config = app.stop().await;
    infra::postgres::drop_database(&config.postgres.url)
        .await
        .expect("database dropped");
    let app = TestApp::spawn_with(config).await;

    // The processor decides on the state the log gives: the plugin exists.
    let again = app
        .post("/api/v1/plugins", Some(&admin), &manifest(&plugin, "1.0.0"))
        .await;
    assert_eq!(again.status(), 409, "the plugin is still registered");
    let reactivate = format!("/api/v1/tenants/{tenant}/reactivate");
    assert_eq!(
        app.send(reqwest::Method::POST, &reactivate, &admin)
            .await
            .status(),
        200
    );
    let added = format!("added-{}", Uuid::now_v7().simple());
    app.register(&manifest(&added, "1.0.0")).await;

    // Every read model equals what it was, plus the new commands.
    let (plugins, tenants) = eventually("the catalog is rebuilt with the new commands", || async {
        let (plugins, tenants) = catalog(&app).await;
        (plugins.len() == 2 && tenants.first().is_some_and(|t| t["status"] == "ACTIVE"))
            .then_some((plugins, tenants))
    })
    .await;
    assert_eq!(
        plugins.iter().find(|p| p["id"] == plugin.as_str()),
        before.0.first(),
        "the plugin as it was"
    );
    assert!(plugins.iter().any(|p| p["id"] == added.as_str()));
    let mut expected = before.1[0].clone();
    expected["status"] = json!("ACTIVE");
    expected["aggregate_version"] = json!(before.1[0]["aggregate_version"].as_i64().map(|v| v + 1));
    assert_eq!(tenants, vec![expected], "the tenant as it was, reactivated");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_can_never_be_decoded_stops_its_partition_instead_of_being_skipped() {
    let mut config = end_to_end::isolated_config().await;
    config.command_api.reply_timeout_ms = 2_000;
    let app = TestApp::spawn_with(config).await;
    let id = format!("undecodable-{}", Uuid::now_v7().simple());
    let key = format!("plugin:{id}");

    // The plugin's registration, written under the reader rule, in a shape no registry
    // decodes: skipping it would let the plugin be registered a second time.
    let mut envelope = Envelope::new("core.plugin.registered", "/plexica/command-processor");
    envelope.subject = Some(key.clone());
    envelope.causation_id = Some(Uuid::now_v7());
    envelope.aggregate_version = Some(1);
    envelope.writer_epoch = Some(1);
    let producer = infra::kafka::producer(&app.config.kafka).expect("producer");
    producer
        .send(
            FutureRecord::to(&app.topics.plugins())
                .key(&key)
                .payload(b"not an Avro record".as_slice())
                .headers(envelope.to_headers()),
            Duration::from_secs(10),
        )
        .await
        .expect("written");
    // Its writer crashed: the next processor rebuilds the partition from the log.
    let config = app.stop().await;
    let app = TestApp::spawn_with(config).await;

    let response = app
        .post(
            "/api/v1/plugins",
            Some(&app.super_admin()),
            &manifest(&id, "1.0.0"),
        )
        .await;
    assert_eq!(
        response.status(),
        202,
        "the command waits; it is not decided on a state the log does not give"
    );
    eventually("the stopped partition is reported", || async {
        (app.metric("plexica_processor_stopped_partitions").await == 1.0).then_some(())
    })
    .await;
}

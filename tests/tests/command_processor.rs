//! The command processor as the fenced single writer of each partition (DESIGN.md §4): a
//! zombie's writes are void and unacknowledged, and a command redelivered after a crash is
//! answered with its first outcome.

use std::collections::BTreeSet;
use std::time::Duration;

use end_to_end::log::{read_log, rewind_command_processor};
use end_to_end::{TestApp, eventually, isolated_config, manifest};
use event_schemas::Envelope;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

/// Registers plugins until every partition has had a command, so the processor owns them all.
async fn own_every_partition(app: &TestApp) -> Vec<Value> {
    let mut replies = Vec::new();
    let mut partitions = BTreeSet::new();
    let mut i = 0;
    while partitions.len() < app.config.kafka.partitions as usize {
        let reply = app
            .register(&manifest(&format!("plugin-{i}"), "1.0.0"))
            .await;
        partitions.insert(reply["events"][0]["partition"].as_i64().expect("partition"));
        replies.push(reply);
        i += 1;
        assert!(i < 200, "murmur2 spreads keys over the partitions");
    }
    replies
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_processor_acknowledges_nothing_and_its_records_are_void() {
    let mut config = isolated_config().await;
    config.command_api.reply_timeout_ms = 2_000;
    let app = TestApp::spawn_with(config).await;
    own_every_partition(&app).await;

    // A new owner takes every partition: it bumps the lease epochs and fences the event
    // topics, as a processor given the partitions in a rebalance would. The running processor
    // has not noticed: it is now a zombie.
    let codec = app.codec();
    let producer = infra::kafka::producer(&app.config.kafka).expect("producer");
    for partition in 0..app.config.kafka.partitions {
        command_api::processor::ownership::acquire(
            partition,
            "the-new-owner",
            &app.pool,
            &producer,
            &codec,
            &app.topics,
            &app.config.kafka,
        )
        .await
        .expect("the new owner takes the partition");
    }

    let response = app
        .post(
            "/api/v1/plugins",
            Some(&app.super_admin()),
            &manifest("zombie-write", "1.0.0"),
        )
        .await;
    assert_eq!(response.status(), 202, "the zombie acknowledges nothing");
    let pending: Value = response.json().await.expect("JSON");
    let command_id = pending["commandId"]
        .as_str()
        .expect("command id")
        .to_owned();

    let log = read_log(&app, &app.topics.plugins()).await;
    let zombie_records: Vec<_> = log
        .iter()
        .filter(|(_, _, e)| e.causation_id.map(|id| id.to_string()) == Some(command_id.clone()))
        .collect();
    let operation = app
        .client
        .get(format!("{}/api/v1/operations/{command_id}", app.address))
        .bearer_auth(app.super_admin())
        .send()
        .await
        .expect("answers");
    assert_eq!(operation.status(), 404, "no outcome was published");

    // The zombie learns of the fence only after writing: its records lie after the new
    // owner's fence with a lower epoch, and no reader applies them.
    assert!(
        !zombie_records.is_empty(),
        "the zombie wrote before checking its lease"
    );
    for (partition, offset, envelope) in &zombie_records {
        assert_eq!(envelope.writer_epoch, Some(1));
        let fence = log
            .iter()
            .find(|(p, _, e)| p == partition && e.is_fence() && e.writer_epoch == Some(2))
            .expect("the new owner's fence is in the partition");
        assert!(fence.1 < *offset, "the zombie wrote after the fence");
        eventually("the catalog passed the zombie's record", || async {
            let next = app
                .catalog_checkpoint(&app.topics.plugins(), *partition)
                .await;
            next.filter(|n| n > offset).map(|_| ())
        })
        .await;
    }
    let applied: Option<String> =
        sqlx::query_scalar("SELECT id FROM catalog.plugins WHERE id = 'zombie-write'")
            .fetch_optional(&app.pool)
            .await
            .expect("catalog readable");
    assert_eq!(applied, None, "a void record is never applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_redelivered_after_a_crash_is_answered_with_its_first_outcome() {
    let app = TestApp::spawn().await;
    let replies = own_every_partition(&app).await;
    let config = app.stop().await;

    // The crash: events in the log, but the command offsets never committed and the outcome
    // lost. Rewind the processor's group to the start and forget the outcomes.
    rewind_command_processor(&config);
    let redis = redis::Client::open(config.redis.url.as_str()).expect("redis URL");
    let mut connection = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    for reply in &replies {
        let id = reply["commandId"].as_str().expect("command id");
        redis::cmd("DEL")
            .arg(format!("command-outcome:{id}"))
            .query_async::<()>(&mut connection)
            .await
            .expect("deleted");
    }

    let app = TestApp::spawn_with(config).await;
    let token = app.super_admin();
    for reply in &replies {
        let id = reply["commandId"].as_str().expect("command id");
        let outcome: Value = eventually("the redelivered command is answered again", || async {
            let response = app
                .client
                .get(format!("{}/api/v1/operations/{id}", app.address))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            if response.status() != 200 {
                return None;
            }
            response.json().await.ok()
        })
        .await;
        assert_eq!(outcome["status"], "accepted");
        assert_eq!(
            outcome["events"], reply["events"],
            "the first outcome, not a new decision"
        );
    }

    let registered = read_log(&app, &app.topics.plugins())
        .await
        .into_iter()
        .filter(|(_, _, e)| e.event_type == "core.plugin.registered")
        .count();
    assert_eq!(registered, replies.len(), "nothing decided twice");
    let versions: Vec<i64> = sqlx::query_scalar("SELECT aggregate_version FROM catalog.plugins")
        .fetch_all(&app.pool)
        .await
        .expect("catalog readable");
    assert!(versions.iter().all(|v| *v == 1), "{versions:?}");
}

/// 200 commands against one plugin from 20 concurrent clients: each accepted command is in
/// the log exactly once, the aggregate's versions have no gap, and the state the projection
/// shows is the state a replay of the log gives.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_commands_on_one_plugin_are_serialised_exactly_once() {
    let app = TestApp::spawn().await;
    app.register(&manifest("crm", "1.0.0")).await;
    let install = app
        .client
        .post(format!("{}/api/v1/plugins/crm/install", app.address))
        .bearer_auth(app.super_admin())
        .send()
        .await
        .expect("answers");
    assert_eq!(install.status(), 202);
    let token = app.super_admin();
    eventually("crm is installed", || async {
        let reply = app
            .graphql(&token, r#"{ plugin(id: "crm") { status } }"#)
            .await;
        (reply["data"]["plugin"]["status"] == "INSTALLED").then_some(())
    })
    .await;

    let clients = (0..20).map(|client| {
        let (http, address, token) = (app.client.clone(), app.address.clone(), token.clone());
        async move {
            let mut accepted = Vec::new();
            for i in 0..10 {
                let action = if (client + i) % 2 == 0 {
                    "enable"
                } else {
                    "disable"
                };
                let response = http
                    .post(format!("{address}/api/v1/plugins/crm/{action}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("answers");
                match response.status().as_u16() {
                    200 => {
                        let body: Value = response.json().await.expect("JSON");
                        accepted.push(body["commandId"].as_str().expect("id").to_owned());
                    }
                    409 => {}
                    other => panic!("unexpected status {other}"),
                }
            }
            accepted
        }
    });
    let accepted: Vec<String> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        !accepted.is_empty(),
        "some enables and disables get through"
    );

    let codec = app.codec();
    // Acknowledged before the answer, but tansu may show a record to a reader a moment later.
    let crm: Vec<(i32, i64, Envelope)> =
        eventually("every answer's events are readable", || async {
            let crm: Vec<(i32, i64, Envelope)> = read_log(&app, &app.topics.plugins())
                .await
                .into_iter()
                .filter(|(_, _, e)| e.subject.as_deref() == Some("plugin:crm") && !e.is_fence())
                .collect();
            let caused = |command: &String| {
                crm.iter().any(|(_, _, e)| {
                    e.causation_id.map(|id| id.to_string()).as_ref() == Some(command)
                })
            };
            accepted.iter().all(caused).then_some(crm)
        })
        .await;
    for command in &accepted {
        let events = crm
            .iter()
            .filter(|(_, _, e)| e.causation_id.map(|id| id.to_string()).as_ref() == Some(command))
            .count();
        assert_eq!(
            events, 1,
            "accepted command {command} is in the log exactly once"
        );
    }
    let versions: Vec<u64> = crm
        .iter()
        .filter_map(|(_, _, e)| e.aggregate_version)
        .collect();
    let expected: Vec<u64> = (1..=versions.len() as u64).collect();
    assert_eq!(versions, expected, "versions are gapless and in log order");

    // Replay the log through the domain and compare with what the projection shows.
    let consumer: StreamConsumer = infra::kafka::consumer_config(&app.config.kafka, "e2e-replay")
        .create()
        .expect("consumer");
    let partition = crm[0].0;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&app.topics.plugins(), partition, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let last_offset = crm.last().map(|(_, o, _)| *o).expect("events");
    let key = domain::AggregateKey::Plugin(domain::plugin::PluginId::parse("crm").expect("id"));
    let mut state = domain::AggregateState::initial(&key);
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .expect("readable")
            .expect("no Kafka error");
        if message.key() == Some(&b"plugin:crm"[..]) {
            let event = codec
                .decode_event(message.payload())
                .await
                .expect("decodes");
            state = domain::evolve(state, &event);
        }
        if message.offset() >= last_offset {
            break;
        }
    }
    let domain::AggregateState::Plugin(plugin) = state else {
        panic!("a plugin aggregate");
    };
    let replayed = plugin.status().expect("registered").as_str();
    let shown = eventually("the projection has caught up", || async {
        let version: Option<(i64, String)> = sqlx::query_as(
            "SELECT aggregate_version, status FROM catalog.plugins WHERE id = 'crm'",
        )
        .fetch_optional(&app.pool)
        .await
        .ok()
        .flatten();
        version
            .filter(|(v, _)| *v == versions.len() as i64)
            .map(|(_, status)| status)
    })
    .await;
    assert_eq!(shown, replayed);
}

/// The platform hands the commands it puts on the log to its own processor, while another
/// process's commands reach the processor through its consumer. Interleaved on one aggregate,
/// each is decided once, and as the log orders them: an enable is accepted exactly when the
/// commands before it in the log leave the plugin inactive.
#[tokio::test(flavor = "multi_thread")]
async fn commands_handed_off_and_commands_fetched_are_decided_once_each_in_log_order() {
    use command_api::bus::system_actor;
    use domain::plugin::{PluginCommand, PluginId};
    use end_to_end::plugins::{install, wait_for_status};
    use uuid::Uuid;

    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    app.register(&manifest("crm", "1.0.0")).await;
    install(&app, "crm").await;
    wait_for_status(&app, "crm", "INSTALLED").await;

    let another_process = app.another_process_bus().await;
    let toggle = |i: usize| {
        if i.is_multiple_of(2) {
            "enable"
        } else {
            "disable"
        }
    };
    // Each client sends through the platform and as the other process in turn, so that the
    // other process's commands sit in the log, waiting for the consumer, between commands
    // the platform hands off.
    let clients = (0..12).map(|client| {
        let (app, bus, admin) = (&app, &another_process, admin.clone());
        async move {
            let actor = system_actor("test:another-process");
            let mut sent = Vec::new();
            for i in 0..8 {
                let action = toggle(client + i);
                if (client + i / 2).is_multiple_of(2) {
                    let response = app
                        .send(
                            reqwest::Method::POST,
                            &format!("/api/v1/plugins/crm/{action}"),
                            &admin,
                        )
                        .await;
                    let status = response.status().as_u16();
                    assert!(status == 200 || status == 409, "decided: {status}");
                    let body: Value = response.json().await.expect("JSON");
                    sent.push(body["commandId"].as_str().expect("id").to_owned());
                } else {
                    let command = match action {
                        "enable" => PluginCommand::Enable,
                        _ => PluginCommand::Disable { reason: None },
                    };
                    let command = domain::Command::Plugin {
                        id: PluginId::parse("crm").expect("id"),
                        command,
                    };
                    let id = Uuid::now_v7();
                    bus.send(&actor, &command, id, None, String::new())
                        .await
                        .expect("sent");
                    sent.push(id.to_string());
                }
            }
            sent
        }
    });
    let sent: BTreeSet<String> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(sent.len(), 96);
    for id in &sent {
        eventually("the command is decided", || async {
            let response = app
                .send(
                    reqwest::Method::GET,
                    &format!("/api/v1/operations/{id}"),
                    &admin,
                )
                .await;
            // A refusal is answered with its problem's status.
            (response.status() != 404).then_some(())
        })
        .await;
    }

    // The commands in the log's order, and what that order decides; tansu may show a record
    // to a reader a moment after it acknowledged it.
    let commands = eventually("every command is readable in the log", || async {
        let mut commands: Vec<(i64, Envelope)> = read_log(&app, &app.topics.commands())
            .await
            .into_iter()
            .filter(|(_, _, e)| sent.contains(&e.id.to_string()))
            .map(|(_, offset, e)| (offset, e))
            .collect();
        commands.sort_by_key(|(offset, _)| *offset);
        // A record the broker wrote twice (a retried produce) is decided once, where first.
        let mut seen = BTreeSet::new();
        commands.retain(|(_, command)| seen.insert(command.id));
        (commands.len() == sent.len()).then_some(commands)
    })
    .await;
    let mut active = false;
    let mut expected = Vec::new();
    for (_, command) in &commands {
        let enable = command.event_type.ends_with(".plugin.enable");
        if enable != active {
            active = enable;
            expected.push(command.id.to_string());
        }
    }
    let applied: Vec<String> = eventually("the accepted commands' events are readable", || async {
        let applied: Vec<String> = read_log(&app, &app.topics.plugins())
            .await
            .into_iter()
            .filter(|(_, _, e)| e.subject.as_deref() == Some("plugin:crm") && !e.is_fence())
            .filter(|(_, _, e)| {
                e.event_type.ends_with(".enabled") || e.event_type.ends_with(".disabled")
            })
            .filter_map(|(_, _, e)| e.causation_id.map(|id| id.to_string()))
            .collect();
        (applied.len() >= expected.len()).then_some(applied)
    })
    .await;
    assert_eq!(
        applied, expected,
        "the accepted commands, each once, are those the log's order accepts, in that order"
    );

    // Each decision in the log of outcomes too, an acceptance's written after the reply.
    eventually("every decision is on plexica.command-results", || async {
        let recorded: BTreeSet<String> = read_log(&app, &app.topics.command_results())
            .await
            .into_iter()
            .filter_map(|(_, _, e)| e.causation_id.map(|id| id.to_string()))
            .collect();
        sent.is_subset(&recorded).then_some(())
    })
    .await;

    let metrics = app
        .send(reqwest::Method::GET, "/metrics", &admin)
        .await
        .text()
        .await
        .expect("metrics");
    let series = |name: &str| end_to_end::metric_value(&metrics, name);
    assert!(
        series("plexica_command_handoffs_total{taken=\"true\"}") > 0.0,
        "the platform's commands were handed off:\n{metrics}"
    );
    assert!(
        series("plexica_command_copies_skipped_total") > 0.0,
        "the consumer's copies of handed-off commands were skipped"
    );
}

/// A replay that starts between a fence and a zombie's record: the record stays void.
#[tokio::test(flavor = "multi_thread")]
async fn a_replay_from_after_a_fence_keeps_a_zombies_record_void() {
    let mut config = isolated_config().await;
    config.command_api.reply_timeout_ms = 2_000;
    let app = TestApp::spawn_with(config).await;
    own_every_partition(&app).await;
    let codec = app.codec();
    let producer = infra::kafka::producer(&app.config.kafka).expect("producer");
    for partition in 0..app.config.kafka.partitions {
        command_api::processor::ownership::acquire(
            partition,
            "the-new-owner",
            &app.pool,
            &producer,
            &codec,
            &app.topics,
            &app.config.kafka,
        )
        .await
        .expect("the new owner takes the partition");
    }
    let response = app
        .post(
            "/api/v1/plugins",
            Some(&app.super_admin()),
            &manifest("zombie-replayed", "1.0.0"),
        )
        .await;
    assert_eq!(response.status(), 202, "the zombie acknowledges nothing");
    let topic = app.topics.plugins();
    let log = read_log(&app, &topic).await;
    let (partition, zombie_offset) = log
        .iter()
        .find(|(_, _, e)| e.subject.as_deref() == Some("plugin:zombie-replayed"))
        .map(|(p, o, _)| (*p, *o))
        .expect("the zombie wrote its record");
    let fence_offset = log
        .iter()
        .find(|(p, _, e)| *p == partition && e.is_fence() && e.writer_epoch == Some(2))
        .map(|(_, o, _)| *o)
        .expect("the new owner's fence");
    let passed = || async {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT next_offset FROM catalog.checkpoints
             WHERE topic = $1 AND partition = $2 AND NOT rewound",
        )
        .bind(&topic)
        .bind(partition)
        .fetch_optional(&app.pool)
        .await
        .ok()
        .flatten();
        next.filter(|n| *n > zombie_offset).map(|_| ())
    };
    eventually("the catalog passed the zombie's record", passed).await;

    // An admin replays the catalog from just after the fence.
    let replay = app
        .post(
            "/api/v1/admin/consumers/catalog/replay",
            Some(&app.super_admin()),
            &serde_json::json!({"fromOffset": fence_offset + 1, "topic": topic}),
        )
        .await;
    assert_eq!(replay.status(), 202);
    // Read again, the record is either void again (counted) or applied.
    let voids = || app.metric("plexica_void_records_total{consumer=\"catalog\"}");
    let before = voids().await;
    assert!(before >= 1.0, "the zombie's record was void the first time");
    eventually("the replay read the zombie's record again", || async {
        let again = voids().await > before;
        let applied: Option<String> =
            sqlx::query_scalar("SELECT id FROM catalog.plugins WHERE id = 'zombie-replayed'")
                .fetch_optional(&app.pool)
                .await
                .ok()
                .flatten();
        (again || applied.is_some()).then_some(())
    })
    .await;
    let applied: Option<String> =
        sqlx::query_scalar("SELECT id FROM catalog.plugins WHERE id = 'zombie-replayed'")
            .fetch_optional(&app.pool)
            .await
            .expect("catalog readable");
    assert_eq!(applied, None, "a void record stays void in a replay");
}

/// The commands waiting when the processor is ready are decided together, in order, each on
/// what the ones before it decided: a tenant enables a plugin that the command just before it
/// activated (the directory sees an accepted command of its own batch), and a command
/// delivered twice within the batch is decided once.
#[tokio::test(flavor = "multi_thread")]
async fn commands_decided_together_see_each_other_and_a_repeat_is_decided_once() {
    use command_api::bus::system_actor;
    use domain::plugin::{PluginCommand, PluginId};
    use domain::tenant::{TenantCommand, TenantId};
    use end_to_end::plugins::{install, wait_for_status};
    use serde_json::json;
    use uuid::Uuid;

    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let crm = app.register(&manifest("crm", "1.0.0")).await;
    let crm_partition = crm["events"][0]["partition"].as_i64().expect("partition");
    install(&app, "crm").await;
    wait_for_status(&app, "crm", "INSTALLED").await;
    // A tenant in crm's partition, so that the log orders its commands after crm's.
    let tenant = loop {
        let tenant = Uuid::now_v7();
        let created = app
            .post(
                "/api/v1/tenants",
                Some(&admin),
                &json!({"id": tenant, "slug": format!("t-{}", tenant.simple()), "name": "Batch"}),
            )
            .await;
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await.expect("JSON");
        if created["events"][0]["partition"].as_i64() == Some(crm_partition) {
            break tenant;
        }
    };

    let bus = app.another_process_bus().await;
    let actor = system_actor("test:batch");
    let enable_crm = domain::Command::Plugin {
        id: PluginId::parse("crm").expect("id"),
        command: PluginCommand::Enable,
    };
    let enable_for_tenant = domain::Command::Tenant {
        id: TenantId(tenant),
        command: TenantCommand::EnablePlugin {
            plugin: PluginId::parse("crm").expect("id"),
            configuration: None,
        },
    };
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());

    // The lease check waits behind this lock, so the processor is held in the middle of a
    // batch while the next commands queue up behind it.
    let mut hold = app.pool.begin().await.expect("transaction");
    sqlx::query("LOCK TABLE command_leases IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .expect("locked");
    // Any command will do: this one is refused, and a refusal is checked against the lease
    // like an acceptance.
    let nobody = domain::Command::Plugin {
        id: PluginId::parse("nobody").expect("id"),
        command: PluginCommand::Enable,
    };
    bus.send(&actor, &nobody, Uuid::now_v7(), None, String::new())
        .await
        .expect("sent");
    eventually("the processor waits for the lease table", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE '%command_leases%'",
        )
        .fetch_one(&app.pool)
        .await
        .ok()?;
        (waiting > 0).then_some(())
    })
    .await;
    for (command, id) in [
        (&enable_crm, first),
        (&enable_for_tenant, second),
        (&enable_for_tenant, second),
    ] {
        bus.send(&actor, command, id, None, String::new())
            .await
            .expect("sent");
    }
    // Acknowledged by the broker; the processor's consumer fetches them into its queue
    // within a few fetch waits (5 ms each) while the processor is held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.rollback().await.expect("released");

    let outcome = |id: Uuid| {
        let app = &app;
        let admin = admin.clone();
        async move {
            eventually("the command is decided", || async {
                let response = app
                    .send(
                        reqwest::Method::GET,
                        &format!("/api/v1/operations/{id}"),
                        &admin,
                    )
                    .await;
                (response.status() != 404).then_some(())?;
                response.json::<Value>().await.ok()
            })
            .await
        }
    };
    let enabled = outcome(first).await;
    assert_eq!(enabled["status"], "accepted", "crm enabled: {enabled}");
    let for_tenant = outcome(second).await;
    assert_eq!(
        for_tenant["status"], "accepted",
        "the tenant's enable saw crm ACTIVE from the same batch: {for_tenant}"
    );
    let enablements = read_log(&app, &app.topics.tenants())
        .await
        .into_iter()
        .filter(|(_, _, e)| e.causation_id == Some(second))
        .count();
    assert_eq!(enablements, 1, "the repeated command was decided once");

    let metrics = app
        .send(reqwest::Method::GET, "/metrics", &admin)
        .await
        .text()
        .await
        .expect("metrics");
    let largest: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("plexica_command_batch_size{quantile=\"1\"} ")?
                .trim()
                .parse()
                .ok()
        })
        .expect("the batch sizes are measured");
    assert!(
        largest >= 3.0,
        "the queued commands were decided in one batch (largest {largest})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_processor_takes_its_partitions_before_their_first_command() {
    let app = TestApp::spawn().await;
    let partitions = i64::from(app.config.kafka.partitions);
    let leases = || async {
        sqlx::query_as::<_, (i32, i64, String)>(
            "SELECT partition, epoch, owner FROM command_leases ORDER BY partition",
        )
        .fetch_all(&app.pool)
        .await
        .expect("the leases")
    };
    // Without a command: a command after a start or a rebalance does not wait for its
    // partition's rebuild.
    let taken = eventually("the processor holds every partition", || async {
        let taken = leases().await;
        (taken.len() as i64 == partitions).then_some(taken)
    })
    .await;
    // Decided (201) on every partition.
    own_every_partition(&app).await;
    assert_eq!(
        leases().await,
        taken,
        "the first commands found their partitions taken, and took them no second time"
    );
}

/// On a new log (no committed offset) a partition's place is its start, where the consumer
/// begins: its first command is handed off too, instead of waiting for the consumer's fetch.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_command_of_a_new_log_is_handed_off() {
    let app = TestApp::spawn().await;
    let partitions = f64::from(app.config.kafka.partitions);
    eventually("the processor took its partitions", || async {
        (app.metric("plexica_partition_acquisitions_total").await >= partitions).then_some(())
    })
    .await;
    app.register(&manifest("first", "1.0.0")).await;
    assert_eq!(
        app.metric("plexica_command_handoffs_total{taken=\"false\"}")
            .await,
        0.0,
        "a handed-off command was left to the consumer"
    );
    assert!(
        app.metric("plexica_command_handoffs_total{taken=\"true\"}")
            .await
            >= 1.0
    );
}

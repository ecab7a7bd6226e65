//! The install, update and uninstall sagas driven end to end (spec 004 US-001, US-002, edge
//! cases 1 and 9): the command puts the request in the log, the saga runner of `plexica all`
//! runs each step on the simulated runtime and records its outcome through the command
//! processor, the catalog shows where the plugin is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use command_api::sagas::{InstallStep, PluginId, PluginRuntime, PluginSpec, StepError};
use end_to_end::plugins::{
    install, installed, last_error, plugin, request, uninstall, update, wait_for_status,
};
use end_to_end::{TestApp, eventually, manifest};
use event_schemas::events::PluginEvent;
use event_schemas::{CoreEvent, Envelope};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};
use uuid::Uuid;

/// A manifest whose runtime image carries `suffix`: `-fail-<step>` makes the simulated
/// runtime fail that step.
fn manifest_with_image(id: &str, version: &str, suffix: &str) -> Value {
    let mut manifest = manifest(id, version);
    manifest["runtime"]["image"] = json!(format!("registry.plexica.io/{id}:{version}{suffix}"));
    manifest
}

/// One event of a plugin, as the log holds it.
#[derive(Debug)]
struct Logged {
    envelope: Envelope,
    event: PluginEvent,
}

impl Logged {
    fn event_type(&self) -> &str {
        self.event.event_type()
    }
}

/// The high watermark of every partition of the plugin topic.
fn plugin_topic_ends(app: &TestApp, consumer: &StreamConsumer) -> HashMap<i32, i64> {
    (0..app.config.kafka.partitions)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(&app.topics.plugins(), partition, Duration::from_secs(10))
                .expect("watermarks");
            (partition, high)
        })
        .collect()
}

/// Every event of plugin `id`, in the order of the log.
async fn plugin_log(app: &TestApp, id: &str) -> Vec<Logged> {
    let topic = app.topics.plugins();
    let consumer: StreamConsumer =
        infra::kafka::consumer_config(&app.config.kafka, "e2e-saga-log-reader")
            .create()
            .expect("consumer");
    let mut ends = plugin_topic_ends(app, &consumer);
    ends.retain(|_, high| *high > 0);
    let mut assignment = TopicPartitionList::new();
    for partition in ends.keys() {
        assignment
            .add_partition_offset(&topic, *partition, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let codec = app.codec();
    let key = format!("plugin:{id}");
    let mut log = Vec::new();
    while !ends.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .expect("the log is readable")
            .expect("no Kafka error");
        if ends
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            ends.remove(&message.partition());
        }
        if message.key() != Some(key.as_bytes()) {
            continue;
        }
        let envelope = message
            .headers()
            .map(Envelope::from_headers)
            .expect("headers")
            .expect("an envelope");
        if let Ok(CoreEvent::Plugin(event)) = codec.decode_event(message.payload()).await {
            log.push(Logged { envelope, event });
        }
    }
    log
}

fn event_types(log: &[Logged]) -> Vec<&str> {
    log.iter().map(Logged::event_type).collect()
}

fn completed_steps(log: &[Logged]) -> Vec<String> {
    log.iter()
        .filter_map(|logged| match &logged.event {
            PluginEvent::InstallStepCompleted(e) => Some(e.step.clone()),
            _ => None,
        })
        .collect()
}

/// Whether the consumer whose checkpoints are in `schema` has read the whole plugin topic.
async fn caught_up(app: &TestApp, schema: &str) -> bool {
    let consumer: StreamConsumer =
        infra::kafka::consumer_config(&app.config.kafka, "e2e-saga-watermarks")
            .create()
            .expect("consumer");
    let ends = plugin_topic_ends(app, &consumer);
    let checkpoints: Vec<(i32, i64)> = sqlx::query_as(&format!(
        "SELECT partition, next_offset FROM {schema}.checkpoints WHERE topic = $1"
    ))
    .bind(app.topics.plugins())
    .fetch_all(&app.pool)
    .await
    .unwrap_or_default();
    let checkpoints: HashMap<i32, i64> = checkpoints.into_iter().collect();
    ends.iter()
        .all(|(partition, high)| *high == 0 || checkpoints.get(partition) >= Some(high))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_install_runs_every_step_in_order_and_installs_the_plugin() {
    let app = TestApp::spawn().await;
    app.register(&manifest("crm", "1.0.0")).await;

    install(&app, "crm").await;

    let plugin = wait_for_status(&app, "crm", "INSTALLED").await;
    assert_eq!(plugin["version"], "1.0.0");
    // The catalog read `installed`, so the log holds it; tansu's high watermark can lag a
    // moment behind under load, so the log is read again until it reaches it.
    let log = eventually("the log holds the install's last event", || async {
        let log = plugin_log(&app, "crm").await;
        log.iter()
            .any(|logged| matches!(logged.event, PluginEvent::Installed(_)))
            .then_some(log)
    })
    .await;
    assert_eq!(
        event_types(&log),
        [
            "core.plugin.registered",
            "core.plugin.install-requested",
            "core.plugin.install-step-completed",
            "core.plugin.install-step-completed",
            "core.plugin.install-step-completed",
            "core.plugin.install-step-completed",
            "core.plugin.install-step-completed",
            "core.plugin.installed",
        ]
    );
    let in_domain_order: Vec<String> = InstallStep::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(completed_steps(&log), in_domain_order);
    // Each step's command is the saga's answer to the event before it, with an id derived
    // from that event, and the last step's command also installed the plugin.
    let install_command = log[1].envelope.causation_id;
    for pair in log[1..7].windows(2) {
        assert_eq!(
            pair[1].envelope.causation_id,
            Some(command_api::sagas::command_id(pair[0].envelope.id)),
            "{} answers {}",
            pair[1].event_type(),
            pair[0].event_type()
        );
    }
    assert_eq!(log[7].envelope.causation_id, log[6].envelope.causation_id);
    assert_eq!(
        log[2].envelope.user_id.as_deref(),
        Some(command_api::sagas::ACTOR)
    );
    assert_eq!(
        log[2].envelope.traceparent, log[1].envelope.traceparent,
        "the trace goes on through the saga"
    );
    assert_ne!(install_command, None);
    assert_eq!(last_error(&app, "crm").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_install_whose_health_check_fails_rolls_back_to_registered() {
    let app = TestApp::spawn().await;
    app.register(&manifest_with_image("crm", "1.0.0", "-fail-health-checked"))
        .await;

    install(&app, "crm").await;

    let error = eventually("the install failed", || async {
        last_error(&app, "crm").await
    })
    .await;
    assert!(error.contains("HEALTH_CHECKED"), "{error}");
    assert!(error.contains("health-checked"), "{error}");
    assert_eq!(plugin(&app, "crm").await["status"], "REGISTERED");
    let log = plugin_log(&app, "crm").await;
    assert_eq!(
        completed_steps(&log),
        [
            "DEPENDENCIES_CHECKED",
            "PERMISSIONS_RESERVED",
            "MIGRATIONS_APPLIED",
            "ROUTES_REGISTERED"
        ]
    );
    match log.last().map(|l| &l.event) {
        Some(PluginEvent::InstallFailed(e)) => assert_eq!(e.step, "HEALTH_CHECKED"),
        other => panic!("the install ends failed, not with {other:?}"),
    }
    assert!(!event_types(&log).contains(&"core.plugin.installed"));

    // A failure at another step stops the saga there.
    app.register(&manifest_with_image(
        "billing",
        "2.0.0",
        "-fail-migrations-applied",
    ))
    .await;
    install(&app, "billing").await;
    let error = eventually("the install failed", || async {
        last_error(&app, "billing").await
    })
    .await;
    assert!(error.contains("MIGRATIONS_APPLIED"), "{error}");
    let log = plugin_log(&app, "billing").await;
    assert_eq!(
        completed_steps(&log),
        ["DEPENDENCIES_CHECKED", "PERMISSIONS_RESERVED"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_replaces_the_version_and_a_failed_one_keeps_it() {
    let app = TestApp::spawn().await;
    installed(&app, &manifest("crm", "1.0.0")).await;

    update(&app, &manifest("crm", "1.1.0")).await;

    eventually("the update completed", || async {
        let plugin = plugin(&app, "crm").await;
        (plugin["version"] == "1.1.0").then_some(())
    })
    .await;
    assert_eq!(plugin(&app, "crm").await["status"], "INSTALLED");

    update(&app, &manifest_with_image("crm", "1.2.0", "-fail-update")).await;

    let error = eventually("the update failed", || async {
        last_error(&app, "crm").await
    })
    .await;
    assert!(error.contains("1.2.0"), "{error}");
    assert_eq!(
        plugin(&app, "crm").await,
        json!({"id": "crm", "version": "1.1.0", "status": "INSTALLED"}),
        "the previous version stays in service"
    );
    let log = plugin_log(&app, "crm").await;
    let types = event_types(&log);
    assert_eq!(
        types[types.len() - 4..],
        [
            "core.plugin.update-requested",
            "core.plugin.updated",
            "core.plugin.update-requested",
            "core.plugin.update-failed",
        ]
    );

    // The plugin is not stuck: the next update goes through.
    update(&app, &manifest("crm", "1.2.1")).await;
    eventually("the next update completed", || async {
        (plugin(&app, "crm").await["version"] == "1.2.1").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_installed_or_disabled_plugin_is_uninstalled() {
    let app = TestApp::spawn().await;
    installed(&app, &manifest("crm", "1.0.0")).await;
    installed(&app, &manifest("billing", "2.0.0")).await;
    request(
        &app,
        reqwest::Method::POST,
        "/api/v1/plugins/billing/enable",
        None,
    )
    .await;
    request(
        &app,
        reqwest::Method::POST,
        "/api/v1/plugins/billing/disable",
        None,
    )
    .await;
    wait_for_status(&app, "billing", "DISABLED").await;

    uninstall(&app, "crm", false).await;
    uninstall(&app, "billing", true).await;

    wait_for_status(&app, "crm", "UNINSTALLED").await;
    wait_for_status(&app, "billing", "UNINSTALLED").await;
    match plugin_log(&app, "billing").await.last().map(|l| &l.event) {
        Some(PluginEvent::Uninstalled(e)) => assert!(e.purge_data),
        other => panic!("the uninstall completed, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_uninstall_leaves_the_plugin_uninstalling() {
    let app = TestApp::spawn().await;
    installed(
        &app,
        &manifest_with_image("crm", "1.0.0", "-fail-uninstall"),
    )
    .await;

    uninstall(&app, "crm", false).await;

    wait_for_status(&app, "crm", "UNINSTALLING").await;
    eventually("the runner read past the request", || async {
        caught_up(&app, "sagas").await.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(plugin(&app, "crm").await["status"], "UNINSTALLING");
    assert_eq!(
        event_types(&plugin_log(&app, "crm").await).last(),
        Some(&"core.plugin.uninstall-requested"),
        "nothing was issued for the failure"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_that_replays_the_whole_log_runs_no_step_again() {
    let app = TestApp::spawn().await;
    installed(&app, &manifest("crm", "1.0.0")).await;
    update(&app, &manifest("crm", "1.1.0")).await;
    app.register(&manifest_with_image(
        "billing",
        "1.0.0",
        "-fail-health-checked",
    ))
    .await;
    install(&app, "billing").await;
    eventually("billing's install failed", || async {
        last_error(&app, "billing").await
    })
    .await;
    eventually("crm's update completed", || async {
        (plugin(&app, "crm").await["version"] == "1.1.0").then_some(())
    })
    .await;
    let crm_before = plugin_log(&app, "crm").await.len();
    let billing_before = plugin_log(&app, "billing").await.len();

    let pool = app.pool.clone();
    let config = app.stop().await;
    sqlx::query("DROP SCHEMA sagas CASCADE")
        .execute(&pool)
        .await
        .expect("the runner's schema is dropped");
    let app = TestApp::spawn_with(config).await;

    eventually("the runner replayed the log", || async {
        caught_up(&app, "sagas").await.then_some(())
    })
    .await;
    // Had the replay issued a command, its events would follow within this time.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let crm = plugin_log(&app, "crm").await;
    assert_eq!(crm.len(), crm_before, "{:?}", event_types(&crm));
    assert_eq!(completed_steps(&crm).len(), 5);
    assert_eq!(plugin(&app, "crm").await["status"], "INSTALLED");
    assert_eq!(plugin(&app, "crm").await["version"], "1.1.0");
    let billing = plugin_log(&app, "billing").await;
    assert_eq!(billing.len(), billing_before, "{:?}", event_types(&billing));
    assert_eq!(plugin(&app, "billing").await["status"], "REGISTERED");
    let manifests: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas.plugins")
        .fetch_one(&app.pool)
        .await
        .expect("the runner's table is back");
    assert_eq!(manifests, 2);
}

/// A runtime that records what it is asked to do and does it.
#[derive(Clone, Default)]
struct RecordingRuntime {
    calls: Arc<Mutex<Vec<String>>>,
}

impl RecordingRuntime {
    fn record(&self, call: String) {
        self.calls.lock().expect("not poisoned").push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("not poisoned").clone()
    }
}

impl PluginRuntime for RecordingRuntime {
    async fn install_step(&self, plugin: &PluginSpec, step: InstallStep) -> Result<(), StepError> {
        self.record(format!("install {} {step}", plugin.id));
        Ok(())
    }

    async fn update(&self, current: &PluginSpec, target: &PluginSpec) -> Result<(), StepError> {
        self.record(format!(
            "update {} {} -> {}",
            current.id, current.version, target.version
        ));
        Ok(())
    }

    async fn uninstall(&self, plugin: &PluginSpec, purge_data: bool) -> Result<(), StepError> {
        self.record(format!("uninstall {} {purge_data}", plugin.id));
        Ok(())
    }

    async fn start(&self, _plugin: &PluginSpec) -> Result<(), StepError> {
        Ok(())
    }

    async fn stop(&self, _plugin: &PluginId) {}
}

/// A second saga runner on `runtime`, reading the log of `app` from the start into schema
/// `sagas_replay`, as the platform's would after its schema was dropped.
async fn replay_runner(
    app: &TestApp,
    runtime: RecordingRuntime,
) -> tokio::task::JoinHandle<Result<(), infra::consumer::RunnerError>> {
    let bus = app.another_process_bus().await;
    let mut spec = command_api::sagas::spec(&app.topics);
    spec.name = "plugin-sagas-replay".to_owned();
    spec.group = app
        .topics
        .group(&format!("replay-{}", Uuid::now_v7().simple()));
    spec.schema = "sagas_replay".to_owned();
    let codec = Arc::new(app.codec());
    let directory = command_api::directory::spawn(
        &app.config.kafka,
        &app.topics,
        codec.clone(),
        "replay.directory",
        Default::default(),
    )
    .await
    .expect("the directory tail starts");
    let (kafka, pool) = (app.config.kafka.clone(), app.pool.clone());
    tokio::spawn(async move {
        command_api::sagas::run(
            spec,
            command_api::sagas::SagaTools {
                runtime,
                bus,
                codec,
                directory,
            },
            &kafka,
            pool.clone(),
            infra::http::Readiness::new(pool),
            Default::default(),
        )
        .await
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_calls_the_runtime_only_for_the_sagas_still_under_way() {
    let app = TestApp::spawn().await;
    installed(&app, &manifest("crm", "1.0.0")).await;
    update(&app, &manifest("crm", "1.1.0")).await;
    eventually("crm's first update completed", || async {
        (plugin(&app, "crm").await["version"] == "1.1.0").then_some(())
    })
    .await;
    update(&app, &manifest_with_image("crm", "1.2.0", "-fail-update")).await;
    installed(
        &app,
        &manifest_with_image("stuck", "3.0.0", "-fail-uninstall"),
    )
    .await;
    uninstall(&app, "stuck", true).await;
    wait_for_status(&app, "stuck", "UNINSTALLING").await;
    eventually("crm's second update failed", || async {
        last_error(&app, "crm").await
    })
    .await;

    // A second runner reads the same log from the start, as the platform's would after its
    // schema was dropped, on a runtime whose uninstall now works.
    let runtime = RecordingRuntime::default();
    let replay = replay_runner(&app, runtime.clone()).await;

    wait_for_status(&app, "stuck", "UNINSTALLED").await;
    eventually("the replay read the whole log", || async {
        caught_up(&app, "sagas_replay").await.then_some(())
    })
    .await;
    replay.abort();
    assert_eq!(runtime.calls(), ["uninstall stuck true"]);
    let stuck = plugin_log(&app, "stuck").await;
    assert_eq!(
        event_types(&stuck)[stuck.len() - 2..],
        ["core.plugin.uninstall-requested", "core.plugin.uninstalled"]
    );
    assert_eq!(
        stuck[stuck.len() - 1].envelope.causation_id,
        Some(command_api::sagas::command_id(
            stuck[stuck.len() - 2].envelope.id
        ))
    );
    assert_eq!(plugin(&app, "crm").await["version"], "1.1.0");
}

/// A runner replaying a long log asks for a partition's end once a batch, not once an event:
/// asking once an event, a runner that replayed 100,000 registrations read about 400 events a
/// second, one broker round trip each, and kept the broker busy under every command sent
/// meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_replay_asks_for_the_end_of_the_log_once_a_batch_not_once_an_event() {
    const PLUGINS: usize = 90;
    let app = TestApp::spawn().await;
    for n in 0..PLUGINS {
        app.register(&manifest(&format!("replayed-{n:02}"), "1.0.0"))
            .await;
    }
    eventually("the platform's runner read every registration", || async {
        caught_up(&app, "sagas").await.then_some(())
    })
    .await;
    let lookups = "plexica_saga_log_end_lookups_total";
    let before = app.metric(lookups).await;
    // As a runner of a process that writes none of the log: the broker is asked.
    infra::own_writes::stopped_writing_all();

    let runtime = RecordingRuntime::default();
    let replay = replay_runner(&app, runtime.clone()).await;
    eventually("the replay read the whole log", || async {
        caught_up(&app, "sagas_replay").await.then_some(())
    })
    .await;
    replay.abort();

    let asked = app.metric(lookups).await - before;
    assert!(asked > 0.0, "the replay asked for the end of the log");
    assert!(
        asked < (PLUGINS / 3) as f64,
        "a replay of {PLUGINS} events asked for the end of the log {asked} times"
    );
    assert_eq!(
        runtime.calls(),
        Vec::<String>::new(),
        "no saga was under way"
    );
}

/// A runner that is caught up asks the broker nothing about the events its own process just
/// wrote: its processor's acknowledgements say that nothing followed them. Asking for the
/// partition's end once an event was the largest cost a command put on tansu after its own
/// records.
#[tokio::test(flavor = "multi_thread")]
async fn a_caught_up_runner_asks_the_broker_nothing_about_its_own_processs_events() {
    const PLUGINS: usize = 20;
    let app = TestApp::spawn().await;
    for n in 0..PLUGINS {
        app.register(&manifest(&format!("fresh-{n:02}"), "1.0.0"))
            .await;
    }
    eventually("the runner read every registration", || async {
        caught_up(&app, "sagas").await.then_some(())
    })
    .await;
    let asked = app.metric("plexica_saga_log_end_lookups_total").await;
    let known = app.metric("plexica_saga_log_ends_known_total").await;
    assert!(
        known >= (PLUGINS - 2) as f64,
        "{known} of {PLUGINS} registrations were known not to be followed"
    );
    assert!(
        asked <= 2.0,
        "the runner asked the broker for the log's end {asked} times for {PLUGINS} registrations"
    );
}

/// tansu 0.6 answers a fetch from inside a record batch with the next batch: a read-ahead
/// that started at the record after the event skipped the rest of the event's batch (an
/// install's last two events are often one), and, with no batch after it, waited until it
/// gave up.
#[tokio::test(flavor = "multi_thread")]
async fn the_look_ahead_sees_what_follows_an_event_in_its_own_record_batch() {
    let config = end_to_end::isolated_config().await;
    let topic = format!("{}look-ahead", config.kafka.topic_prefix);
    infra::kafka::create_topics(
        &config.kafka,
        &[event_schemas::topics::TopicSpec {
            name: topic.clone(),
            partitions: 1,
            retention_ms: None,
            cleanup_policy: None,
        }],
    )
    .await
    .expect("topic");
    let producer: rdkafka::producer::FutureProducer = infra::kafka::producer_config(&config.kafka)
        .set("linger.ms", "200")
        .create()
        .expect("producer");
    let mut envelope = Envelope::new("core.plugin.registered", "/test");
    envelope.writer_epoch = Some(1);
    // Sent together, so that they are one batch.
    let mut sent = Vec::new();
    for key in ["plugin:a", "plugin:b", "plugin:a"] {
        let queued = producer.send_result(
            rdkafka::producer::FutureRecord::to(&topic)
                .partition(0)
                .key(key)
                .payload("{}")
                .headers(envelope.to_headers()),
        );
        sent.push(queued.map_err(|(e, _)| e).expect("queued"));
    }
    for delivery in sent {
        delivery.await.expect("delivered").expect("acknowledged");
    }
    // A batch of its own after them: tansu 0.6 puts a partition's high watermark one past its
    // last batch's first record.
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .partition(0)
                .key("plugin:c")
                .payload("{}")
                .headers(envelope.to_headers()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("acknowledged");

    let mut look_ahead =
        command_api::sagas::look_ahead::LookAhead::new(&config.kafka, "e2e-look-ahead")
            .expect("look-ahead");
    let followed = look_ahead
        .is_followed(&topic, 0, 0, b"plugin:a", 1)
        .await
        .expect("the records after offset 0 are read");
    assert!(followed, "plugin:a at offset 2 follows offset 0");
    let followed = look_ahead
        .is_followed(&topic, 0, 1, b"plugin:b", 1)
        .await
        .expect("read");
    assert!(!followed, "nothing of plugin:b follows offset 1");
}

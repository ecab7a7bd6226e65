//! Chaos (issue 12): mixed commands, many of them emitting two or more events, while the
//! platform is killed with SIGKILL five times, a second command processor joins and leaves,
//! and the schema registry (served by the killed process) is gone while the second processor
//! takes over. Afterwards no request is answered twice with different outcomes, no plugin is
//! stuck between saga steps, and the catalog equals a fresh rebuild from the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use end_to_end::process::{Isolation, Platform};
use infra::auth::{Role, TokenKeys};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

const PLATFORM: &str = env!("CARGO_BIN_EXE_platform-under-test");
const PLUGINS: usize = 60;
const TENANTS: usize = 50;
/// Suspends and reactivations per tenant; enables and disables per plugin. With the sagas'
/// commands and the tenants' slug reservations, about 2,100 commands in all.
const TOGGLES: usize = 14;
const KILLS: usize = 5;

/// Where requests may go: the API instances alive now.
#[derive(Clone, Default)]
struct Bases(Arc<Mutex<Vec<String>>>);

impl Bases {
    fn set(&self, index: usize, base: Option<String>) {
        let mut bases = self.0.lock().expect("bases");
        if bases.len() <= index {
            bases.resize(index + 1, String::new());
        }
        bases[index] = base.unwrap_or_default();
    }

    fn pick(&self, turn: usize) -> Option<String> {
        let bases = self.0.lock().expect("bases");
        let alive: Vec<&String> = bases.iter().filter(|b| !b.is_empty()).collect();
        (!alive.is_empty()).then(|| alive[turn % alive.len()].clone())
    }
}

/// Every definitive answer each request (its Idempotency-Key) got.
type Answers = Arc<Mutex<HashMap<String, Vec<(u16, Value)>>>>;

/// Sends one request until it gets a definitive answer, with the same Idempotency-Key, as a
/// client that lost its connection or was told to come back (202) would.
async fn request(bases: &Bases, token: &str, path: &str, body: &Value, answers: &Answers) -> u16 {
    let client = reqwest::Client::new();
    let key = Uuid::now_v7().to_string();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut turn = 0;
    loop {
        assert!(Instant::now() < deadline, "{path} got no answer in 240 s");
        turn += 1;
        let Some(base) = bases.pick(turn) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let sent = client
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .header("Idempotency-Key", &key)
            .timeout(Duration::from_secs(15))
            .json(body)
            .send()
            .await;
        let Ok(response) = sent else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // 202 answers an accepted install (its saga runs on) and a command not decided yet.
        if (status == 202 && body["status"] != "accepted") || status >= 500 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        answers
            .lock()
            .expect("answers")
            .entry(key.clone())
            .or_default()
            .push((status, body.clone()));
        // Asked again once more: a retry after the answer must get the same one.
        if answers.lock().expect("answers")[&key].len() == 1 && turn % 4 == 0 {
            continue;
        }
        return status;
    }
}

async fn plugin_script(bases: Bases, token: String, id: String, answers: Answers) {
    let manifest = end_to_end::manifest(&id, "1.0.0");
    request(&bases, &token, "/api/v1/plugins", &manifest, &answers).await;
    request(
        &bases,
        &token,
        &format!("/api/v1/plugins/{id}/install"),
        &json!({}),
        &answers,
    )
    .await;
    for i in 0..TOGGLES {
        // Refused while the install saga runs; accepted once the plugin is installed.
        let action = if i % 2 == 0 { "enable" } else { "disable" };
        request(
            &bases,
            &token,
            &format!("/api/v1/plugins/{id}/{action}"),
            &json!({}),
            &answers,
        )
        .await;
    }
}

async fn tenant_script(bases: Bases, token: String, answers: Answers) {
    let id = Uuid::now_v7();
    let body = json!({"id": id, "slug": format!("c-{}", id.simple()), "name": "Chaos"});
    request(&bases, &token, "/api/v1/tenants", &body, &answers).await;
    for i in 0..TOGGLES {
        let action = if i % 2 == 0 { "suspend" } else { "reactivate" };
        request(
            &bases,
            &token,
            &format!("/api/v1/tenants/{id}/{action}"),
            &json!({}),
            &answers,
        )
        .await;
    }
}

/// The catalog's rows as JSON, without the projection's own clock.
async fn catalog(isolation: &Isolation) -> Vec<Value> {
    let mut rows = Vec::new();
    for table in ["plugins", "tenants", "tenant_plugins"] {
        let query = format!(
            "SELECT to_jsonb(t) - 'updated_at' FROM catalog.{table} t ORDER BY to_jsonb(t)::text"
        );
        let mut table_rows: Vec<Value> = sqlx::query_scalar(&query)
            .fetch_all(&isolation.pool)
            .await
            .expect("catalog readable");
        rows.append(&mut table_rows);
    }
    rows
}

/// How many records `topic` holds.
fn records(isolation: &Isolation, topic: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer =
        infra::kafka::consumer_config(&isolation.kafka, "chaos-watermarks")
            .create()
            .expect("consumer");
    (0..isolation.kafka.partitions)
        .map(|partition| {
            tokio::task::block_in_place(|| {
                rdkafka::consumer::Consumer::fetch_watermarks(
                    &consumer,
                    topic,
                    partition,
                    Duration::from_secs(10),
                )
            })
            .map_or(0, |(low, high)| high - low)
        })
        .sum()
}

/// Whether the catalog's checkpoints have reached the end of every event topic.
async fn caught_up(isolation: &Isolation) -> bool {
    let consumer: rdkafka::consumer::BaseConsumer =
        infra::kafka::consumer_config(&isolation.kafka, "chaos-watermarks")
            .create()
            .expect("consumer");
    for topic in isolation.topics.event_topics() {
        for partition in 0..isolation.kafka.partitions {
            let high = tokio::task::block_in_place(|| {
                rdkafka::consumer::Consumer::fetch_watermarks(
                    &consumer,
                    &topic,
                    partition,
                    Duration::from_secs(10),
                )
            })
            .map_or(i64::MAX, |(_, high)| high);
            let next: Option<i64> = sqlx::query_scalar(
                "SELECT next_offset FROM catalog.checkpoints WHERE topic = $1 AND partition = $2",
            )
            .bind(&topic)
            .bind(partition)
            .fetch_optional(&isolation.pool)
            .await
            .ok()
            .flatten();
            if high > 0 && next.unwrap_or(0) < high {
                return false;
            }
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_a_second_processor_and_a_registry_outage_change_no_answer_and_no_read_model() {
    let isolation = Isolation::fresh().await;
    let logs = std::env::temp_dir().join(format!("plexica-chaos-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&logs).expect("a log folder");
    let log = logs.join("platform.log");
    let secret = format!("chaos-{}", Uuid::now_v7());
    let registry = format!("127.0.0.1:{}", end_to_end::broker::free_port());
    let registry_url = format!("http://{registry}");
    // Every instance signs and checks tokens with one secret; the first serves the registry
    // on a fixed address, so that it is the same one after each restart.
    let first_env = [
        ("PLEXICA_JWT_SECRET", secret.as_str()),
        ("SCHEMA_REGISTRY_LISTEN", registry.as_str()),
    ];
    let second_env = [("PLEXICA_JWT_SECRET", secret.as_str())];
    let token = TokenKeys::from_secret(&secret)
        .issue(
            "chaos",
            vec![Role::SuperAdmin],
            None,
            chrono::Duration::hours(1),
        )
        .expect("a token");

    let bases = Bases::default();
    let answers: Answers = Arc::default();
    let mut first = Platform::start_with(PLATFORM, "all", &isolation, None, &log, &first_env).await;
    bases.set(0, Some(first.base.clone()));

    let mut load = tokio::task::JoinSet::new();
    for i in 0..PLUGINS {
        let id = format!("chaos-{i:02}");
        load.spawn(plugin_script(
            bases.clone(),
            token.clone(),
            id,
            answers.clone(),
        ));
    }
    for _ in 0..TENANTS {
        load.spawn(tenant_script(bases.clone(), token.clone(), answers.clone()));
    }

    let started = Instant::now();
    let mut second = None;
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_secs(8)).await;
        if kill == 1 {
            let joined = Platform::start_with(
                PLATFORM,
                "command-api",
                &isolation,
                Some(&registry_url),
                &log,
                &second_env,
            )
            .await;
            bases.set(1, Some(joined.base.clone()));
            second = Some(joined);
        }
        if kill == 3
            && let Some(leaving) = second.take()
        {
            bases.set(1, None);
            leaving.stop().await;
        }
        // The registry dies with the first instance: the second one takes its partitions
        // over while no schema can be fetched.
        bases.set(0, None);
        first.kill().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        first = Platform::start_with(PLATFORM, "all", &isolation, None, &log, &first_env).await;
        bases.set(0, Some(first.base.clone()));
    }
    while let Some(done) = load.join_next().await {
        done.expect("a client script ran to its end");
    }
    let requests: usize = answers.lock().expect("answers").len();
    let commands = records(&isolation, &isolation.topics.commands());
    println!(
        "{requests} client requests answered, {commands} command records, in {:.0} s across \
         {KILLS} kills",
        started.elapsed().as_secs_f64()
    );

    // No request answered twice with different outcomes.
    for (key, answered) in answers.lock().expect("answers").iter() {
        let outcome = |(status, body): &(u16, Value)| {
            (*status, body["commandId"].clone(), body["events"].clone())
        };
        let first_answer = outcome(&answered[0]);
        for other in &answered[1..] {
            assert_eq!(
                outcome(other),
                first_answer,
                "request {key} answered twice differently"
            );
        }
    }

    // No plugin stuck between saga steps.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let moving: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, status FROM catalog.plugins
             WHERE status NOT IN ('REGISTERED', 'INSTALLED', 'ACTIVE', 'DISABLED') ORDER BY id",
        )
        .fetch_all(&isolation.pool)
        .await
        .expect("catalog readable");
        if moving.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plugins stuck between saga steps: {moving:?}; log {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The catalog equals a fresh rebuild from the log.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !caught_up(&isolation).await {
        assert!(Instant::now() < deadline, "the catalog did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let served = catalog(&isolation).await;
    first.stop().await;
    sqlx::query("DROP SCHEMA catalog CASCADE")
        .execute(&isolation.pool)
        .await
        .expect("catalog dropped");
    let first = Platform::start_with(PLATFORM, "all", &isolation, None, &log, &first_env).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !caught_up(&isolation).await {
        assert!(Instant::now() < deadline, "the rebuild did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rebuilt = catalog(&isolation).await;
    assert_eq!(served.len(), rebuilt.len(), "as many rows");
    assert_eq!(served, rebuilt, "the catalog equals a fresh rebuild");
    first.stop().await;
    let _ = std::fs::remove_dir_all(&logs);
}

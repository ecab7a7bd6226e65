//! The platform split into processes, as in production: the command API registers its schemas
//! in a `plexica schema-registry` of another process, which takes writes from super admins only,
//! with the service token it mints from the shared secret (`SCHEMA_REGISTRY_PLEXICA`).

use std::path::Path;

use end_to_end::process::{Isolation, Platform};
use end_to_end::relay::Relay;
use infra::auth::Role;

const PLATFORM: &str = env!("CARGO_BIN_EXE_platform-under-test");

/// A directory for the parts' logs.
fn logs() -> std::path::PathBuf {
    let logs = std::env::temp_dir().join(format!("plexica-apart-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&logs).expect("a log directory");
    logs
}

/// Starts `part` of the platform over `isolation`, with the schema registry at `registry`,
/// its log in `logs`.
async fn start(part: &str, isolation: &Isolation, registry: &str, logs: &Path) -> Platform {
    let log = logs.join(format!("{part}.log"));
    Platform::start(PLATFORM, part, isolation, Some(registry), &log).await
}

/// Registers plugin `id` through `platform`'s command API, which decides it (201).
async fn register(platform: &Platform, id: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/plugins", platform.base))
        .bearer_auth(platform.token(Role::SuperAdmin, None))
        .json(&end_to_end::manifest(id, "1.0.0"))
        .send()
        .await
        .expect("the command API answers");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_part_registers_its_schemas_in_a_plexica_registry_of_another_process() {
    let isolation = Isolation::fresh().await;
    let registry = isolation.schema_registry().await;
    let logs = logs();
    let platform = start("command-api", &isolation, &registry.registry_url, &logs).await;
    register(&platform, "apart").await;
    let subjects: Vec<String> = reqwest::get(format!("{}/subjects", registry.registry_url))
        .await
        .expect("the registry answers")
        .json()
        .await
        .expect("a list of subjects");
    assert!(
        subjects.iter().any(|s| s.ends_with("PluginRegistered")),
        "{subjects:?}"
    );
}

/// Records the consumer writing into `schema` dead-lettered (its ledger).
async fn dead_lettered(pool: &sqlx::PgPool, schema: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.dead_lettered"))
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// The parts started in compose's order, `command-api` before `projections`: the webhooks
/// consumer of `command-api` reads the catalog's tables, which `projections` makes. Until they
/// exist a record waits (its batch is tried again) instead of being dead-lettered, and it is
/// read once they do. Before, every event was dead-lettered until the projections started.
#[tokio::test(flavor = "multi_thread")]
async fn the_command_side_started_before_the_projections_waits_for_the_catalog() {
    let isolation = Isolation::fresh().await;
    let registry = isolation.schema_registry().await;
    let logs = logs();
    let command_api = start("command-api", &isolation, &registry.registry_url, &logs).await;
    register(&command_api, "early").await;
    let waiting = r#"plexica_consumer_batch_failures_total{consumer="webhooks"}"#;
    end_to_end::eventually("the webhooks consumer meets the registration", || async {
        let waited = command_api.metric(waiting).await > 0.0;
        (waited || dead_lettered(&isolation.pool, "webhooks").await > 0).then_some(())
    })
    .await;
    assert_eq!(dead_lettered(&isolation.pool, "webhooks").await, 0);

    let projections = start("projections", &isolation, &registry.registry_url, &logs).await;
    end_to_end::eventually(
        "the webhooks consumer reads past the registration",
        || async {
            let read: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(next_offset), 0)::bigint FROM webhooks.checkpoints
             WHERE topic LIKE '%core.plugins'",
            )
            .fetch_one(&isolation.pool)
            .await
            .ok()?;
            (read >= 1).then_some(())
        },
    )
    .await;
    assert_eq!(dead_lettered(&isolation.pool, "webhooks").await, 0);
    projections.stop().await;
    command_api.stop().await;
}

/// A registry out of reach is not a record's fault: the projections, started while theirs is
/// down (a restart of both, a network cut), wait for it and then apply what they read. Before,
/// the catalog dead-lettered each such record after its in-line attempts and parked its key,
/// and a flaky test caught the platform doing it to its own embedded registry as it started.
#[tokio::test(flavor = "multi_thread")]
async fn projections_whose_registry_is_out_of_reach_wait_for_it_and_dead_letter_nothing() {
    let isolation = Isolation::fresh().await;
    let registry = isolation.schema_registry().await;
    let logs = logs();
    let command_api = start("command-api", &isolation, &registry.registry_url, &logs).await;
    register(&command_api, "unreachable").await;

    let relay = Relay::shut(&registry.registry_url).await;
    let projections = start("projections", &isolation, &relay.url, &logs).await;
    let waiting = r#"plexica_consumer_batch_failures_total{consumer="catalog"}"#;
    end_to_end::eventually("the catalog meets the registration", || async {
        let waited = projections.metric(waiting).await > 0.0;
        (waited || dead_lettered(&isolation.pool, "catalog").await > 0).then_some(())
    })
    .await;
    assert_eq!(dead_lettered(&isolation.pool, "catalog").await, 0);

    relay.open();
    end_to_end::eventually("the catalog applies the registration", || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM catalog.plugins WHERE id = $1")
            .bind("unreachable")
            .fetch_optional(&isolation.pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(dead_lettered(&isolation.pool, "catalog").await, 0);
    projections.stop().await;
    command_api.stop().await;
}

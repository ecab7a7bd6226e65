//! The whole platform killed with -9 while install sagas run, and started again at once:
//! every saga finishes soon after the restart, instead of every consumer group forming with
//! nobody holding its partitions (tansu, a leader whose session expires mid-rebalance).

use std::time::Duration;

use end_to_end::broker::SqliteBroker;
use end_to_end::process::{Isolation, Platform};
use infra::auth::Role;
use tokio::time::Instant;

const PLATFORM: &str = env!("CARGO_BIN_EXE_platform-under-test");
const PLUGINS: usize = 30;

async fn statuses(isolation: &Isolation) -> Vec<(String, String)> {
    sqlx::query_as("SELECT id, status FROM catalog.plugins ORDER BY id")
        .fetch_all(&isolation.pool)
        .await
        .unwrap_or_default()
}

async fn send(platform: &Platform, path: &str, body: &serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}{path}", platform.base))
        .bearer_auth(platform.token(Role::SuperAdmin, None))
        .json(body)
        .send()
        .await
        .expect("the API answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_saga_finishes_soon_after_a_kill_of_the_whole_platform() {
    every_saga_finishes_after_a_kill(&Isolation::fresh().await).await;
}

/// On sqlite, tansu cannot read back the group state it stored and drops the connection of a
/// DescribeGroups: the rejoin must not depend on the group's description.
#[tokio::test(flavor = "multi_thread")]
async fn every_saga_finishes_soon_after_a_kill_of_the_whole_platform_on_durable_tansu() {
    let dir = std::env::temp_dir().join(infra::testing::unique_name("tansu"));
    std::fs::create_dir_all(&dir).expect("a folder for tansu");
    let broker = SqliteBroker::start(&dir);
    let mut isolation = Isolation::fresh().await;
    isolation.kafka.brokers.clone_from(&broker.address);
    isolation.config.kafka.brokers.clone_from(&broker.address);
    every_saga_finishes_after_a_kill(&isolation).await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn every_saga_finishes_after_a_kill(isolation: &Isolation) {
    let logs = std::env::temp_dir().join(format!("plexica-kill-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&logs).expect("a log folder");
    let log = logs.join("platform.log");

    let platform = Platform::start(PLATFORM, "all", isolation, None, &log).await;
    for i in 0..PLUGINS {
        let id = format!("crash-{i:02}");
        let manifest = end_to_end::manifest(&id, "1.0.0");
        assert_eq!(send(&platform, "/api/v1/plugins", &manifest).await, 201);
    }
    for i in 0..PLUGINS {
        let path = format!("/api/v1/plugins/crash-{i:02}/install");
        assert_eq!(send(&platform, &path, &serde_json::json!({})).await, 202);
    }
    platform.kill().await;
    let unfinished = statuses(isolation)
        .await
        .iter()
        .filter(|(_, status)| status != "INSTALLED")
        .count();

    let platform = Platform::start(PLATFORM, "all", isolation, None, &log).await;
    let ready = Instant::now();
    let deadline = ready + Duration::from_secs(30);
    loop {
        let now = statuses(isolation).await;
        let installed = now.iter().filter(|(_, s)| s == "INSTALLED").count();
        if installed == PLUGINS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the restart's readiness only {installed} of {PLUGINS} plugins are installed \
             ({unfinished} were unfinished at the kill); log: {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{unfinished} of {PLUGINS} sagas unfinished at the kill; all installed {:.1} s after the restart's readiness",
        ready.elapsed().as_secs_f64()
    );
    platform.stop().await;
    let _ = std::fs::remove_dir_all(&logs);
}

//! A platform killed with -9 leaves its plugins' process groups behind (they are groups of
//! their own); the next platform on the same state directory kills them and runs each ACTIVE
//! plugin once.

use std::time::Duration;

use end_to_end::eventually_within;
use end_to_end::process::{Isolation, Platform};
use end_to_end::running::{notes_manifest, plugin_pids, unique_id};
use infra::auth::Role;
use serde_json::Value;

const PLATFORM: &str = env!("CARGO_BIN_EXE_platform-under-test");

async fn start(isolation: &Isolation, state: &str, log: &std::path::Path) -> Platform {
    Platform::start_with(
        PLATFORM,
        "all",
        isolation,
        None,
        log,
        &[
            ("PLEXICA_PLUGIN_DRIVER", "process"),
            ("PLEXICA_PLUGIN_STATE_DIR", state),
            ("PLEXICA_PLUGIN_HEALTH_INTERVAL_MS", "200"),
        ],
    )
    .await
}

async fn post(platform: &Platform, path: &str, body: Option<&Value>) {
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("{}{path}", platform.base))
        .bearer_auth(platform.token(Role::SuperAdmin, None));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
}

/// Waits until service discovery says plugin `id` is healthy.
async fn served(platform: &Platform, id: &str) {
    let client = reqwest::Client::new();
    eventually_within(Duration::from_secs(60), "the plugin is served", || async {
        let reply: Value = client
            .get(format!("{}/api/v1/services/{id}", platform.base))
            .bearer_auth(platform.token(Role::SuperAdmin, None))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (reply["instances"][0]["health"]["status"] == "HEALTHY").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_killed_with_9_runs_its_plugins_again_once() {
    let isolation = Isolation::fresh().await;
    let state = std::env::temp_dir().join(infra::testing::unique_name("plexica-crash"));
    let state = state.to_string_lossy().into_owned();
    let log = std::env::temp_dir().join(format!("{}.log", infra::testing::unique_name("crash")));
    let platform = start(&isolation, &state, &log).await;
    let id = unique_id("notes");
    post(
        &platform,
        "/api/v1/plugins",
        Some(&notes_manifest(&id, "1.0.0", &[])),
    )
    .await;
    post(&platform, &format!("/api/v1/plugins/{id}/install"), None).await;
    // The enable is refused until the install is done: retry it.
    let client = reqwest::Client::new();
    eventually_within(Duration::from_secs(60), "the plugin is enabled", || async {
        let response = client
            .post(format!("{}/api/v1/plugins/{id}/enable", platform.base))
            .bearer_auth(platform.token(Role::SuperAdmin, None))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    served(&platform, &id).await;
    let before = plugin_pids(&id);
    assert_eq!(before.len(), 1, "one process");

    platform.kill().await;
    assert_eq!(
        plugin_pids(&id),
        before,
        "the plugin outlives a platform killed with -9"
    );

    let platform = start(&isolation, &state, &log).await;
    served(&platform, &id).await;
    let after = plugin_pids(&id);
    assert_eq!(after.len(), 1, "it runs once: {after:?}");
    assert_ne!(after, before, "the orphan was killed, a new one started");

    platform.stop().await;
    eventually_within(
        Duration::from_secs(20),
        "the plugin stops with the platform",
        || async { plugin_pids(&id).is_empty().then_some(()) },
    )
    .await;
}

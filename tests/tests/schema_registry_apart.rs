//! The platform split into processes, as in production: the command API registers its schemas
//! in a `plexica schema-registry` of another process, which takes writes from super admins only,
//! with the service token it mints from the shared secret (`SCHEMA_REGISTRY_PLEXICA`).

use end_to_end::process::{Isolation, Platform};
use infra::auth::Role;

const PLATFORM: &str = env!("CARGO_BIN_EXE_platform-under-test");

#[tokio::test(flavor = "multi_thread")]
async fn a_part_registers_its_schemas_in_a_plexica_registry_of_another_process() {
    let isolation = Isolation::fresh().await;
    let registry = isolation.schema_registry().await;
    let logs = std::env::temp_dir().join(format!("plexica-apart-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&logs).expect("a log directory");
    let platform = Platform::start(
        PLATFORM,
        "command-api",
        &isolation,
        Some(&registry.registry_url),
        &logs.join("command-api.log"),
    )
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/plugins", platform.base))
        .bearer_auth(platform.token(Role::SuperAdmin, None))
        .json(&end_to_end::manifest("apart", "1.0.0"))
        .send()
        .await
        .expect("the command API answers");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{body}");
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

//! Update (spec 004 NFR-008, edge case 9): the new version's new migrations run, it starts
//! and is healthy before the old one stops; a version that does not start leaves the old one
//! serving.

use end_to_end::plugins::{last_error, update};
use end_to_end::running::{
    active_notes, enable_for_tenant, healthy_endpoint, notes_manifest, spawn_running_plugins,
    tenant_table_exists, tenant_with_schema, through_gateway, unique_id,
};
use end_to_end::{eventually, plugins};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn an_update_swaps_to_the_new_version_and_a_failed_one_keeps_the_old_serving() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let id = unique_id("notes");
    active_notes(&app, &id).await;
    let admin = enable_for_tenant(&app, acme, &id).await;
    let version = || async {
        let response = through_gateway(&app, Method::GET, &id, "/whoami", Some(&admin), &[]).await;
        let reply: Value = response.json().await.ok()?;
        reply["version"].as_str().map(str::to_owned)
    };
    assert_eq!(version().await.as_deref(), Some("1.0.0"));
    assert!(!tenant_table_exists(&app, acme, "tags").await);

    let mut next = notes_manifest(&id, "1.1.0", &[]);
    next["migrations"] = json!({"path": "migrations-v2"});
    update(&app, &next).await;
    eventually("1.1.0 serves", || async {
        (version().await.as_deref() == Some("1.1.0")).then_some(())
    })
    .await;
    assert!(
        tenant_table_exists(&app, acme, "tags").await,
        "its new migration ran"
    );
    // The runtime swaps before the log records it: the catalog follows.
    eventually("the catalog shows 1.1.0", || async {
        (plugins::plugin(&app, &id).await["version"] == "1.1.0").then_some(())
    })
    .await;

    // 1.2.0 lacks /metrics: the update fails, 1.1.0 goes on serving.
    let mut broken = notes_manifest(&id, "1.2.0", &["--without", "/metrics"]);
    broken["migrations"] = json!({"path": "migrations-v2"});
    update(&app, &broken).await;
    let error = eventually("the update failed", || async {
        last_error(&app, &id).await.filter(|e| e.contains("1.2.0"))
    })
    .await;
    assert!(error.contains("/metrics"), "{error}");
    assert_eq!(plugins::plugin(&app, &id).await["version"], "1.1.0");
    assert_eq!(healthy_endpoint(&app, &id).await.version, "1.1.0");
    assert_eq!(version().await.as_deref(), Some("1.1.0"));
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

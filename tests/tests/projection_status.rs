//! The projections' progress through GraphQL: how far each checkpointed consumer is behind
//! the log.

use end_to_end::{TestApp, eventually, manifest};
use infra::auth::Role;
use serde_json::Value;

const QUERY: &str = "{ projections { name lag status updatedAt
                       partitions { topic partition nextOffset highWatermark lag } } }";

#[tokio::test(flavor = "multi_thread")]
async fn each_consumer_reports_its_lag_behind_the_log() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    app.register(&manifest("crm", "1.0.0")).await;
    app.plugin_in_graphql("crm").await;

    let catalog = eventually("the catalog reports itself caught up", || async {
        let reply = app.graphql(&admin, QUERY).await;
        reply["data"]["projections"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "catalog" && p["status"] == "CAUGHT_UP")
            .cloned()
    })
    .await;
    assert_eq!(catalog["lag"], 0);
    assert!(catalog["updatedAt"].is_string(), "{catalog}");
    let partitions = catalog["partitions"].as_array().expect("partitions");
    // Three core topics of three partitions each.
    assert_eq!(partitions.len(), 9, "{catalog}");
    let plugins_topic = app.topics.plugins();
    let applied: i64 = partitions
        .iter()
        .filter(|p| p["topic"] == plugins_topic.as_str())
        .map(|p| {
            assert_eq!(p["nextOffset"], p["highWatermark"], "{p}");
            p["nextOffset"].as_i64().expect("an offset")
        })
        .sum();
    assert!(applied >= 1, "the registration is applied: {catalog}");

    let reply = app.graphql(&admin, QUERY).await;
    let names: Vec<&str> = reply["data"]["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names.len(), 4, "{reply}");
    assert!(names.contains(&"dlq-worker"), "{reply}");
    assert!(names.contains(&"webhooks"), "{reply}");

    let tenant_admin = app.token(Role::TenantAdmin, Some(&uuid::Uuid::now_v7().to_string()));
    let reply: Value = app.graphql(&tenant_admin, QUERY).await;
    assert_eq!(reply["errors"][0]["extensions"]["code"], "FORBIDDEN");
}

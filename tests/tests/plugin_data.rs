//! The plugins' data in the tenants' schemas (spec 004 FR-005, NFR-005, edge case 2): one
//! schema per tenant, the migrations of the Python plugin run in each as the plugin's own
//! role, tracked per tenant, rolled back for a failing tenant alone, dropped by a purge.

use end_to_end::plugins::{install, last_error, request, uninstall, wait_for_status};
use end_to_end::running::{
    notes_manifest, spawn_running_plugins, tenant_table_exists, tenant_with_schema, unique_id,
};
use end_to_end::{TestApp, eventually};
use plugin_runtime::PluginId;
use plugin_runtime::process::{plugin_database_url, plugin_role};
use plugin_runtime::tenant_data::tenant_schema;
use sqlx::{Connection, PgConnection};

async fn as_plugin(app: &TestApp, id: &str) -> PgConnection {
    let url = plugin_database_url(&app.config.postgres.url, &PluginId::parse(id).expect("id"));
    PgConnection::connect(&url)
        .await
        .expect("the plugin's role logs in")
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_run_in_every_tenant_as_the_plugins_role_and_a_purge_drops_them() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let globex = tenant_with_schema(&app, "globex").await;
    let id = unique_id("notes");
    let other = unique_id("other");
    let mut without_tables = notes_manifest(&other, "1.0.0", &[]);
    without_tables
        .as_object_mut()
        .expect("object")
        .remove("migrations");
    for manifest in [notes_manifest(&id, "1.0.0", &[]), without_tables] {
        let plugin = manifest["id"].as_str().expect("id").to_owned();
        app.register(&manifest).await;
        install(&app, &plugin).await;
        wait_for_status(&app, &plugin, "INSTALLED").await;
    }
    for tenant in [acme, globex] {
        assert!(tenant_table_exists(&app, tenant, "notes").await);
    }
    // A tenant created after the install gets the installed plugins' migrations.
    let initech = tenant_with_schema(&app, "initech").await;
    eventually("the new tenant has the plugin's table", || async {
        tenant_table_exists(&app, initech, "notes")
            .await
            .then_some(())
    })
    .await;

    // The plugin's role reaches its own table, and nothing of the platform's.
    let mut plugin = as_plugin(&app, &id).await;
    let acme_notes = format!("{}.notes", tenant_schema(acme));
    sqlx::query(&format!("INSERT INTO {acme_notes} (body) VALUES ('kept')"))
        .execute(&mut plugin)
        .await
        .expect("the plugin writes its own table");
    for forbidden in [
        "SELECT count(*) FROM catalog.plugins",
        "SELECT count(*) FROM sagas.plugins",
    ] {
        let error = sqlx::query(forbidden)
            .execute(&mut plugin)
            .await
            .expect_err("the platform's tables are out of reach");
        assert!(error.to_string().contains("permission denied"), "{error}");
    }
    // Another plugin's role does not reach it.
    let mut intruder = as_plugin(&app, &other).await;
    let error = sqlx::query(&format!("SELECT count(*) FROM {acme_notes}"))
        .execute(&mut intruder)
        .await
        .expect_err("another plugin's table is out of reach");
    assert!(error.to_string().contains("permission denied"), "{error}");
    plugin.close().await.ok();
    intruder.close().await.ok();

    // Disable keeps the data; an uninstall with purge drops the tables in every tenant.
    let path = format!("/api/v1/plugins/{id}/enable");
    request(&app, reqwest::Method::POST, &path, None).await;
    wait_for_status(&app, &id, "ACTIVE").await;
    let path = format!("/api/v1/plugins/{id}/disable");
    request(&app, reqwest::Method::POST, &path, None).await;
    wait_for_status(&app, &id, "DISABLED").await;
    let kept: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {acme_notes}"))
        .fetch_one(&app.pool)
        .await
        .expect("the data is still there");
    assert_eq!(kept, 1);
    uninstall(&app, &id, true).await;
    wait_for_status(&app, &id, "UNINSTALLED").await;
    let role: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(plugin_role(&PluginId::parse(&id).expect("id")))
        .fetch_optional(&app.pool)
        .await
        .expect("answers");
    assert_eq!(role, None, "the purge drops the plugin's role");
    for tenant in [acme, globex, initech] {
        assert!(!tenant_table_exists(&app, tenant, "notes").await, "dropped");
    }
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

/// Edge case 2: the migration fails in one tenant; that tenant alone is rolled back, the
/// error names it, and a retry of the install runs only what is missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_whose_migration_fails_is_rolled_back_alone_and_the_install_retried() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let globex = tenant_with_schema(&app, "globex").await;
    let globex_schema = tenant_schema(globex);
    // Something in globex's schema is in the way of the plugin's first migration.
    sqlx::raw_sql(&format!("CREATE TABLE {globex_schema}.notes (x int)"))
        .execute(&app.pool)
        .await
        .expect("created");
    let id = unique_id("notes");
    app.register(&notes_manifest(&id, "1.0.0", &[])).await;
    install(&app, &id).await;
    let error = eventually("the install failed", || async {
        last_error(&app, &id).await
    })
    .await;
    wait_for_status(&app, &id, "REGISTERED").await;
    assert!(error.contains(&globex_schema), "names the tenant: {error}");
    assert!(
        !error.contains(&tenant_schema(acme)),
        "only that one: {error}"
    );
    assert!(
        tenant_table_exists(&app, acme, "notes").await,
        "acme keeps it"
    );
    let tracked: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!(
            "{globex_schema}.{}_migrations",
            plugin_role(&PluginId::parse(&id).expect("id"))
        ))
        .fetch_one(&app.pool)
        .await
        .expect("answers");
    assert_eq!(tracked, None, "globex's transaction was rolled back whole");

    sqlx::raw_sql(&format!("DROP TABLE {globex_schema}.notes"))
        .execute(&app.pool)
        .await
        .expect("dropped");
    install(&app, &id).await;
    wait_for_status(&app, &id, "INSTALLED").await;
    assert!(tenant_table_exists(&app, globex, "notes").await);
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

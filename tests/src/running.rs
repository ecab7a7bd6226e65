//! Plugins that run for real (the process driver), for the end-to-end tests: the Python
//! plugin bundle of `tests/plugins/notes-py`, the platform that runs it, its processes.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::{TestApp, eventually, isolated_config, process_plugins};

/// The bundle of the Python plugin, checked into the repository.
pub fn notes_bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/notes-py")
}

/// A plugin id no other test uses: the processes of every test share the machine.
pub fn unique_id(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

/// The Python plugin's manifest under id `id`, running `server.py` with `args`.
pub fn notes_manifest(id: &str, version: &str, args: &[&str]) -> Value {
    let mut command = vec!["python3".to_owned(), "server.py".to_owned()];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    json!({
        "id": id,
        "name": "Notes",
        "version": version,
        "description": "A plugin in Python",
        "runtime": {
            "type": "process",
            "command": command,
            "bundle": format!("file://{}", notes_bundle().display()),
            "resources": {"cpu": "500m", "memory": "128Mi"}
        },
        "permissions": [{"key": format!("{id}.notes.read"), "name": "Read notes"}],
        "migrations": {"path": "migrations"}
    })
}

/// A platform whose plugins run as processes, their files in a directory of its own.
pub async fn spawn_running_plugins() -> TestApp {
    let mut config = isolated_config().await;
    let state = std::env::temp_dir().join(crate::infra_unique("plexica-plugins"));
    config.plugins = process_plugins(state);
    TestApp::spawn_with(config).await
}

/// The processes on this machine started for plugin `id` (any platform, any version).
pub fn plugin_pids(id: &str) -> Vec<i32> {
    let wanted = format!("PLEXICA_PLUGIN_ID={id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
                .unwrap_or(false)
        })
        .collect();
    pids.sort();
    pids
}

/// The plugin as the process driver serves it, once it is healthy.
pub async fn healthy_endpoint(app: &TestApp, id: &str) -> plugin_runtime::process::Endpoint {
    let runtime = app.plugins.as_ref().expect("the process driver runs");
    eventually(&format!("plugin {id} is healthy"), || async {
        runtime
            .endpoint(id)
            .filter(|e| e.health.status == plugin_runtime::health::HealthStatus::Healthy)
    })
    .await
}

/// `GET path` straight to the plugin, bypassing the gateway.
pub async fn direct(app: &TestApp, id: &str, path: &str) -> Value {
    let endpoint = healthy_endpoint(app, id).await;
    app.client
        .get(format!("{}{path}", endpoint.url()))
        .send()
        .await
        .expect("the plugin answers")
        .json()
        .await
        .expect("JSON")
}

/// Creates a tenant; returns its id once its schema exists.
pub async fn tenant_with_schema(app: &TestApp, slug: &str) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&app.super_admin()),
            &json!({"id": id, "slug": slug, "name": slug}),
        )
        .await;
    assert_eq!(response.status(), 201, "the tenant is created");
    let schema = plugin_runtime::tenant_data::tenant_schema(id);
    eventually(
        &format!("tenant {slug} has its schema {schema}"),
        || async {
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
            )
            .bind(&schema)
            .fetch_optional(&app.pool)
            .await
            .ok()?;
            found.map(drop)
        },
    )
    .await;
    id
}

/// Whether `table` exists in tenant `tenant`'s schema.
pub async fn tenant_table_exists(app: &TestApp, tenant: uuid::Uuid, table: &str) -> bool {
    let name = format!(
        "{}.{table}",
        plugin_runtime::tenant_data::tenant_schema(tenant)
    );
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(name)
        .fetch_one(&app.pool)
        .await
        .expect("the database answers");
    found.is_some()
}

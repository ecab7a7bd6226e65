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

/// Registers, installs and enables the Python plugin `id`, and waits until it is healthy.
pub async fn active_notes(app: &TestApp, id: &str) {
    active(app, &notes_manifest(id, "1.0.0", &[])).await;
}

/// Registers, installs and enables the plugin of `manifest`, and waits until it serves.
pub async fn active(app: &TestApp, manifest: &Value) {
    let id = manifest["id"]
        .as_str()
        .expect("the manifest names its plugin");
    app.register(manifest).await;
    crate::plugins::install(app, id).await;
    crate::plugins::wait_for_status(app, id, "INSTALLED").await;
    let path = format!("/api/v1/plugins/{id}/enable");
    crate::plugins::request(app, reqwest::Method::POST, &path, None).await;
    crate::plugins::wait_for_status(app, id, "ACTIVE").await;
    healthy_endpoint(app, id).await;
}

/// Tenant `tenant`'s admin enables plugin `id` for it; returns the admin's token.
pub async fn enable_for_tenant(app: &TestApp, tenant: uuid::Uuid, id: &str) -> String {
    let token = app.token(infra::auth::Role::TenantAdmin, Some(&tenant.to_string()));
    let response = app
        .client
        .post(format!("{}/api/v1/tenant/plugins/{id}/enable", app.address))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("the API answers");
    let status = response.status();
    assert!(status.is_success(), "the tenant enables {id}: {status}");
    eventually("the tenant's enablement is in the catalog", || async {
        let enabled: Option<bool> = sqlx::query_scalar(
            "SELECT enabled FROM catalog.tenant_plugins WHERE tenant_id = $1 AND plugin_id = $2",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .ok()?;
        (enabled == Some(true)).then_some(())
    })
    .await;
    token
}

/// `method /api/plugins/{id}{path}` through the gateway as `token`, with extra `headers`.
pub async fn through_gateway(
    app: &TestApp,
    method: reqwest::Method,
    id: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, format!("{}/api/plugins/{id}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the gateway answers")
}

/// The gateway's answer to `POST /api/plugins/{path}` as `token` with a JSON body of
/// `length` bytes declared and none sent: what a refusal by the declared length says. An
/// HTTP client that sends the body while the gateway answers may see the connection closed
/// under its writes instead of the answer, so only the head goes out.
pub async fn answer_to_declared_length(
    app: &TestApp,
    path: &str,
    token: &str,
    length: usize,
) -> String {
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut connection = tokio::net::TcpStream::connect(&address)
        .await
        .expect("the gateway accepts a connection");
    let head = format!(
        "POST /api/plugins/{path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut connection, head.as_bytes())
        .await
        .expect("the head is sent");
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut connection, &mut answer),
    )
    .await
    .expect("the gateway answers without waiting for the body")
    .expect("the answer is readable");
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

//! Plugins that run (spec 004 US-002, FR-009, FR-017, edge cases 1 and 7): the Python plugin
//! of `tests/plugins/notes-py` goes through its lifecycle on the process driver.

use end_to_end::plugins::{install, last_error, request, wait_for_status};
use end_to_end::running::{
    direct, enable_for_tenant, healthy_endpoint, notes_manifest, plugin_pids,
    spawn_running_plugins, tenant_with_schema, unique_id,
};
use end_to_end::{TestApp, eventually};
use plugin_runtime::health::HealthStatus;

async fn enable(app: &TestApp, id: &str) {
    let path = format!("/api/v1/plugins/{id}/enable");
    request(app, reqwest::Method::POST, &path, None).await;
    wait_for_status(app, id, "ACTIVE").await;
}

/// The plugin's health as GraphQL serves it from the log, once `wanted` holds of it.
async fn recorded_health(
    app: &TestApp,
    id: &str,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let token = app.super_admin();
    let query = format!(
        r#"{{ plugin(id: "{id}") {{
            health {{ status since lastError restarts version }}
            instances {{ version address status }}
        }} }}"#
    );
    eventually(what, || async {
        let reply = app.graphql(&token, &query).await;
        let plugin = reply["data"]["plugin"].clone();
        wanted(&plugin).then_some(plugin)
    })
    .await
}

async fn disable(app: &TestApp, id: &str) {
    let path = format!("/api/v1/plugins/{id}/disable");
    request(app, reqwest::Method::POST, &path, None).await;
    wait_for_status(app, id, "DISABLED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_runs_from_its_bundle_restarts_after_kill_9_and_stops_when_disabled() {
    let app = spawn_running_plugins().await;
    let id = unique_id("notes");
    app.register(&notes_manifest(&id, "1.0.0", &[])).await;
    install(&app, &id).await;
    wait_for_status(&app, &id, "INSTALLED").await;
    assert!(
        plugin_pids(&id).is_empty(),
        "an installed plugin that is not enabled does not run"
    );

    enable(&app, &id).await;
    let whoami = direct(&app, &id, "/whoami").await;
    assert_eq!(whoami["plugin"], id.as_str(), "it got its id: {whoami}");
    assert_eq!(whoami["version"], "1.0.0");
    let first = whoami["pid"].as_i64().expect("pid") as i32;
    assert_eq!(plugin_pids(&id), vec![first], "one process");
    let log = std::fs::read_to_string(app.plugins.as_ref().expect("process driver").log_file(&id))
        .expect("the plugin has a log file");
    assert!(log.contains("listening on 127.0.0.1:"), "{log}");
    let endpoint = healthy_endpoint(&app, &id).await;
    let served = recorded_health(&app, &id, "the log records the plugin healthy", |p| {
        p["health"]["status"] == "HEALTHY"
    })
    .await;
    assert_eq!(served["health"]["version"], "1.0.0");
    assert_eq!(served["health"]["restarts"], 0);
    assert_eq!(
        served["instances"],
        serde_json::json!([{"version": "1.0.0", "address": endpoint.url(), "status": "HEALTHY"}])
    );

    // kill -9: the supervisor restarts it.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(first, libc::SIGKILL) };
    let second = eventually("the plugin runs again after kill -9", || async {
        let endpoint = app.plugins.as_ref()?.endpoint(&id)?;
        if endpoint.health.status != HealthStatus::Healthy || endpoint.health.restarts == 0 {
            return None;
        }
        let pids = plugin_pids(&id);
        (pids.len() == 1 && pids[0] != first).then_some(pids[0])
    })
    .await;
    let whoami = direct(&app, &id, "/whoami").await;
    assert_eq!(whoami["pid"], second);
    let restarted = recorded_health(&app, &id, "the log records the restart", |p| {
        p["health"]["status"] == "HEALTHY" && p["health"]["restarts"] == 1
    })
    .await;
    let error = restarted["health"]["lastError"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("signal"), "the crash is named: {error}");

    disable(&app, &id).await;
    eventually("a disabled plugin stops", || async {
        plugin_pids(&id).is_empty().then_some(())
    })
    .await;
    assert!(
        app.plugins
            .as_ref()
            .expect("driver")
            .endpoint(&id)
            .is_none()
    );
    let stopped = recorded_health(&app, &id, "the log records the plugin stopped", |p| {
        p["health"]["status"] == "STOPPED"
    })
    .await;
    assert_eq!(stopped["instances"], serde_json::json!([]));
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_platform_runs_its_active_plugins_again_once() {
    let app = spawn_running_plugins().await;
    let id = unique_id("notes");
    app.register(&notes_manifest(&id, "1.0.0", &[])).await;
    install(&app, &id).await;
    wait_for_status(&app, &id, "INSTALLED").await;
    enable(&app, &id).await;
    healthy_endpoint(&app, &id).await;
    let config = app.stop().await;
    assert!(
        plugin_pids(&id).is_empty(),
        "the plugins stop with the platform"
    );

    let app = TestApp::spawn_with(config).await;
    let endpoint = healthy_endpoint(&app, &id).await;
    assert_eq!(endpoint.version, "1.0.0");
    assert_eq!(plugin_pids(&id).len(), 1, "it runs once");
    app.stop().await;
    assert!(plugin_pids(&id).is_empty(), "they stop with it again");
}

/// Edge case 1 and FR-009: an install fails with an error naming what is missing, the
/// plugin is REGISTERED again, nothing of it runs, and the install can be retried.
#[tokio::test(flavor = "multi_thread")]
async fn an_install_fails_naming_the_missing_endpoint_and_can_be_retried() {
    let app = spawn_running_plugins().await;
    let id = unique_id("notes");
    app.register(&notes_manifest(&id, "1.0.0", &["--without", "/metrics"]))
        .await;
    install(&app, &id).await;
    let error = eventually("the install failed", || async {
        last_error(&app, &id).await
    })
    .await;
    wait_for_status(&app, &id, "REGISTERED").await;
    assert!(error.contains("/metrics answered 404"), "{error}");
    assert!(!error.contains("/health"), "only what is missing: {error}");
    assert!(plugin_pids(&id).is_empty(), "nothing of it runs");

    let broken = unique_id("notes");
    let mut manifest = notes_manifest(&broken, "1.0.0", &[]);
    manifest["runtime"]["command"] = serde_json::json!(["python3", "no-such-file.py"]);
    app.register(&manifest).await;
    install(&app, &broken).await;
    let error = eventually("the install failed", || async {
        last_error(&app, &broken).await
    })
    .await;
    assert!(error.contains("exited"), "{error}");
    assert!(
        error.contains("no-such-file.py"),
        "the log's tail says why: {error}"
    );
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

/// Edge case 7: over its memory limit the plugin is killed, marked unhealthy, restarted.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_over_its_memory_limit_is_killed_and_restarted() {
    let app = spawn_running_plugins().await;
    let id = unique_id("notes");
    app.register(&notes_manifest(&id, "1.0.0", &[])).await;
    install(&app, &id).await;
    wait_for_status(&app, &id, "INSTALLED").await;
    enable(&app, &id).await;
    let endpoint = healthy_endpoint(&app, &id).await;
    if endpoint.limits == "rlimit" {
        // No writable cgroup here: Python meets a MemoryError and lives on.
        eprintln!("no writable cgroup on this machine; the memory kill is not observable");
        return;
    }
    // 128Mi allowed; 200 MB asked.
    let reply = app
        .client
        .get(format!("{}/allocate?mb=200", endpoint.url()))
        .send()
        .await;
    assert!(
        reply.map(|r| !r.status().is_success()).unwrap_or(true),
        "the allocation does not succeed"
    );
    let runtime = app.plugins.as_ref().expect("driver");
    let restarted = eventually("the plugin was restarted", || async {
        runtime
            .endpoint(&id)
            .filter(|e| e.health.restarts > 0 && e.health.status == HealthStatus::Healthy)
    })
    .await;
    let error = restarted.health.last_error.unwrap_or_default();
    assert!(error.contains("memory limit"), "{error}");
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

/// FR-011/012/015: the shell of a tenant mounts the plugins it enabled that serve, and loads
/// the translations of those it enabled.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_shell_mounts_its_enabled_healthy_plugins_with_their_translations() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let other = tenant_with_schema(&app, "globex").await;
    let id = unique_id("notes");
    let mut manifest = notes_manifest(&id, "1.0.0", &[]);
    manifest["frontend"] = serde_json::json!({
        "remoteEntry": "http://localhost:3001/remoteEntry.js",
        "routePrefix": "/notes",
        "exposes": {"./NotesPage": "./src/NotesPage"}
    });
    manifest["translations"] =
        serde_json::json!({"namespaces": ["notes"], "supportedLocales": ["en", "it"]});
    app.register(&manifest).await;
    install(&app, &id).await;
    wait_for_status(&app, &id, "INSTALLED").await;
    enable(&app, &id).await;
    let admin = enable_for_tenant(&app, acme, &id).await;
    let shell = |token: String, locale: &'static str| {
        let app = &app;
        async move {
            app.graphql(
                &token,
                &format!(
                    r#"{{ shell(locale: "{locale}") {{
                        plugins {{ id version remoteEntry routePrefix exposes }}
                        translations {{ pluginId locale namespaces }}
                    }} }}"#
                ),
            )
            .await
        }
    };
    let mounted = eventually("the shell mounts the healthy plugin", || async {
        let reply = shell(admin.clone(), "it").await;
        let plugins = reply["data"]["shell"]["plugins"].as_array()?.clone();
        (!plugins.is_empty()).then_some(reply["data"]["shell"].clone())
    })
    .await;
    assert_eq!(
        mounted,
        serde_json::json!({
            "plugins": [{"id": id, "version": "1.0.0",
                         "remoteEntry": "http://localhost:3001/remoteEntry.js",
                         "routePrefix": "/notes", "exposes": {"./NotesPage": "./src/NotesPage"}}],
            "translations": [{"pluginId": id, "locale": "it", "namespaces": ["notes"]}]
        })
    );

    let outsider = app.token(infra::auth::Role::TenantAdmin, Some(&other.to_string()));
    let theirs = shell(outsider, "en").await;
    assert_eq!(
        theirs["data"]["shell"],
        serde_json::json!({"plugins": [], "translations": []}),
        "a tenant that did not enable it does not see it: {theirs}"
    );
    let bad = shell(admin.clone(), "EN").await;
    assert_eq!(
        bad["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{bad}"
    );

    disable(&app, &id).await;
    eventually("a disabled plugin leaves the shell", || async {
        let reply = shell(admin.clone(), "en").await;
        (reply["data"]["shell"]["plugins"] == serde_json::json!([])).then_some(())
    })
    .await;
    app.stop().await;
}

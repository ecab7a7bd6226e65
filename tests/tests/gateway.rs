//! The issue's end-to-end test (spec 004 FR-010, FR-012, US-004, edge cases 3 and 10): a
//! plugin that is not Rust, from its bundle alone, reached through the gateway.

use std::time::{Duration, Instant};

use end_to_end::eventually;
use end_to_end::plugins::{request, uninstall, wait_for_status};
use end_to_end::running::{
    active_notes, answer_to_declared_length, enable_for_tenant, healthy_endpoint, plugin_pids,
    spawn_running_plugins, tenant_table_exists, tenant_with_schema, through_gateway, unique_id,
};
use plugin_runtime::health::HealthStatus;
use plugin_runtime::tenant_data::tenant_schema;
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_is_installed_reached_through_the_gateway_restarted_disabled_and_purged() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let globex = tenant_with_schema(&app, "globex").await;
    let id = unique_id("notes");
    active_notes(&app, &id).await;
    for tenant in [acme, globex] {
        assert!(
            tenant_table_exists(&app, tenant, "notes").await,
            "its table is in every active tenant's schema"
        );
    }
    let acme_admin = enable_for_tenant(&app, acme, &id).await;

    // The context comes from the verified token, never from the client.
    let spoofed = [
        ("X-Tenant-ID", globex.to_string()),
        ("X-User-ID", "someone-else".to_owned()),
        ("X-Trace-ID", "0".repeat(32)),
        (
            "traceparent",
            format!("00-{}-{}-01", "1".repeat(32), "2".repeat(16)),
        ),
    ];
    let spoofed: Vec<(&str, &str)> = spoofed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = through_gateway(
        &app,
        Method::GET,
        &id,
        "/whoami?page=2",
        Some(&acme_admin),
        &spoofed,
    )
    .await;
    assert_eq!(response.status(), 200);
    let whoami: Value = response.json().await.expect("JSON");
    let headers = &whoami["headers"];
    assert_eq!(whoami["path"], "/whoami");
    assert_eq!(whoami["query"], "page=2");
    assert_eq!(headers["X-Tenant-ID"], acme.to_string());
    assert_eq!(headers["X-User-ID"], "tester");
    assert_eq!(headers["Authorization"], format!("Bearer {acme_admin}"));
    let trace_id = headers["X-Trace-ID"].as_str().expect("a trace id");
    assert_eq!(trace_id.len(), 32);
    assert_ne!(trace_id, "0".repeat(32));
    let traceparent = headers["traceparent"].as_str().expect("a traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );

    // The body goes through both ways.
    let echoed = app
        .client
        .post(format!("{}/api/plugins/{id}/echo", app.address))
        .bearer_auth(&acme_admin)
        .body("a body of bytes")
        .send()
        .await
        .expect("answers");
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.text().await.expect("text"), "a body of bytes");

    // A tenant that has not enabled it: 404; no token: 401.
    let globex_admin = app.token(infra::auth::Role::TenantAdmin, Some(&globex.to_string()));
    let response =
        through_gateway(&app, Method::GET, &id, "/whoami", Some(&globex_admin), &[]).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = through_gateway(&app, Method::GET, &id, "/whoami", None, &[]).await;
    assert_eq!(response.status(), 401);
    // A valid token that grants no role reaches no tenant's plugin, even naming one.
    let no_role = app
        .config
        .auth
        .keys()
        .issue(
            "nobody",
            vec![],
            Some(acme.to_string()),
            chrono::Duration::hours(1),
        )
        .expect("signing works");
    let response = through_gateway(&app, Method::GET, &id, "/whoami", Some(&no_role), &[]).await;
    assert_eq!(response.status(), 403);

    // Service discovery.
    let service: Value = app
        .client
        .get(format!("{}/api/v1/services/{id}", app.address))
        .bearer_auth(&acme_admin)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        service["instances"][0]["health"]["status"], "HEALTHY",
        "{service}"
    );

    // A handler that sleeps: 504 within the gateway's 5 s.
    let started = Instant::now();
    let response = through_gateway(
        &app,
        Method::GET,
        &id,
        "/sleep?seconds=30",
        Some(&acme_admin),
        &[],
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_millis(6500),
        "{waited:?}"
    );

    // kill -9: restarted, and served again.
    let first = healthy_endpoint(&app, &id).await;
    let pids = plugin_pids(&id);
    assert_eq!(pids.len(), 1);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    eventually("the plugin serves again after kill -9", || async {
        let endpoint = app.plugins.as_ref()?.endpoint(&id)?;
        (endpoint.health.restarts > first.health.restarts
            && endpoint.health.status == HealthStatus::Healthy)
            .then_some(())?;
        let response =
            through_gateway(&app, Method::GET, &id, "/whoami", Some(&acme_admin), &[]).await;
        (response.status() == 200).then_some(())
    })
    .await;

    // Disable: it stops, its data stays.
    let notes = format!("{}.notes", tenant_schema(acme));
    sqlx::query(&format!("INSERT INTO {notes} (body) VALUES ('kept')"))
        .execute(&app.pool)
        .await
        .expect("inserted");
    request(
        &app,
        Method::POST,
        &format!("/api/v1/plugins/{id}/disable"),
        None,
    )
    .await;
    wait_for_status(&app, &id, "DISABLED").await;
    eventually("the plugin stopped", || async {
        plugin_pids(&id).is_empty().then_some(())
    })
    .await;
    let response = through_gateway(&app, Method::GET, &id, "/whoami", Some(&acme_admin), &[]).await;
    assert!(
        [404, 503].contains(&response.status().as_u16()),
        "a disabled plugin gets no traffic: {}",
        response.status()
    );
    let kept: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {notes}"))
        .fetch_one(&app.pool)
        .await
        .expect("the table is still there");
    assert_eq!(kept, 1);

    // Uninstall with purge: its tables go.
    uninstall(&app, &id, true).await;
    wait_for_status(&app, &id, "UNINSTALLED").await;
    for tenant in [acme, globex] {
        assert!(!tenant_table_exists(&app, tenant, "notes").await);
    }
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

/// Edge case 3: an unhealthy plugin gets no traffic (503) until it is healthy again.
#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_plugin_gets_503_until_it_recovers() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let id = unique_id("notes");
    active_notes(&app, &id).await;
    let admin = enable_for_tenant(&app, acme, &id).await;
    let pid = plugin_pids(&id)[0];
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let runtime = app.plugins.as_ref().expect("driver");
    eventually("the frozen plugin is unhealthy", || async {
        (runtime.endpoint(&id)?.health.status == HealthStatus::Unhealthy).then_some(())
    })
    .await;
    let response = through_gateway(&app, Method::GET, &id, "/whoami", Some(&admin), &[]).await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.expect("problem JSON");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("unhealthy"),
        "{problem}"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    healthy_endpoint(&app, &id).await;
    let response = through_gateway(&app, Method::GET, &id, "/whoami", Some(&admin), &[]).await;
    assert_eq!(response.status(), 200);
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

/// The gateway keeps the catalog's answer to "has this tenant enabled it?" between the
/// catalog's commits: a tenant that disables the plugin, or is suspended, reaches it no more.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_that_disables_the_plugin_or_is_suspended_reaches_it_no_more() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let id = unique_id("notes");
    active_notes(&app, &id).await;
    let admin = enable_for_tenant(&app, acme, &id).await;
    let status_for = |token: String| {
        let (app, id) = (&app, id.clone());
        move || {
            let (token, id) = (token.clone(), id.clone());
            async move {
                through_gateway(app, Method::GET, &id, "/whoami", Some(&token), &[])
                    .await
                    .status()
                    .as_u16()
            }
        }
    };
    let answer = status_for(admin.clone());
    for _ in 0..3 {
        assert_eq!(answer().await, 200, "served while enabled");
    }

    let disabled = app
        .client
        .post(format!(
            "{}/api/v1/tenant/plugins/{id}/disable",
            app.address
        ))
        .bearer_auth(&admin)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("the API answers");
    assert!(disabled.status().is_success(), "{}", disabled.status());
    eventually(
        "the gateway refuses the tenant that disabled it",
        || async { (answer().await == 404).then_some(()) },
    )
    .await;

    enable_for_tenant(&app, acme, &id).await;
    eventually("the gateway serves the tenant again", || async {
        (answer().await == 200).then_some(())
    })
    .await;
    request(
        &app,
        Method::POST,
        &format!("/api/v1/tenants/{acme}/suspend"),
        Some(&serde_json::json!({"reason": "unpaid"})),
    )
    .await;
    eventually("the gateway refuses a suspended tenant", || async {
        (answer().await == 404).then_some(())
    })
    .await;
    app.stop().await;
}

/// Edge case 10: a disable lets the requests under way finish.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_under_way_completes_when_the_plugin_is_disabled() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let id = unique_id("notes");
    active_notes(&app, &id).await;
    let admin = enable_for_tenant(&app, acme, &id).await;
    let slow = {
        let (client, url, admin) = (
            app.client.clone(),
            format!("{}/api/plugins/{id}/sleep?seconds=1.5", app.address),
            admin.clone(),
        );
        tokio::spawn(async move { client.get(url).bearer_auth(admin).send().await })
    };
    eventually("the slow request is under way", || async {
        (app.plugins.as_ref()?.endpoint(&id)?.in_flight == 1).then_some(())
    })
    .await;
    request(
        &app,
        Method::POST,
        &format!("/api/v1/plugins/{id}/disable"),
        None,
    )
    .await;
    let response = slow.await.expect("joined").expect("the request completes");
    assert_eq!(response.status(), 200, "the request under way was answered");
    wait_for_status(&app, &id, "DISABLED").await;
    eventually("the plugin stopped", || async {
        plugin_pids(&id).is_empty().then_some(())
    })
    .await;
    // The plugins stop with the platform (the test process exiting would orphan them).
    app.stop().await;
}

/// A 10 MB body never reaches a plugin: refused by its declared length before it is sent. (A
/// streamed body is cut at the limit too; the Python test plugin reads no chunked body, so
/// that path has no test here.)
#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_gateways_limit_is_refused_with_413() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let id = unique_id("notes");
    active_notes(&app, &id).await;
    let admin = enable_for_tenant(&app, acme, &id).await;

    // Refused by its declared length: the answer comes before a byte of the body is sent.
    let answer =
        answer_to_declared_length(&app, &format!("{id}/notes"), &admin, 10 * 1024 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload-too-large"), "{answer}");

    let response = through_gateway(&app, Method::GET, &id, "/whoami", Some(&admin), &[]).await;
    assert_eq!(response.status(), 200, "the plugin serves on");
    app.stop().await;
}

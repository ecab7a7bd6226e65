//! Rules that span aggregates, end to end: dependencies checked against the global view
//! (FR-004), dependents disabled when a dependency goes (edge case 5), permission keys and
//! tenant slugs unique through their reservation aggregates (edge case 6).

use end_to_end::plugins::{install, installed, last_error, plugin, request, wait_for_status};
use end_to_end::{TestApp, eventually, manifest};
use futures::future::join_all;
use serde_json::{Value, json};

fn depending_on(id: &str, version: &str, dependencies: Value) -> Value {
    let mut manifest = manifest(id, version);
    manifest["dependencies"] = dependencies;
    manifest
}

async fn enable(app: &TestApp, id: &str) {
    let path = format!("/api/v1/plugins/{id}/enable");
    request(app, reqwest::Method::POST, &path, None).await;
    wait_for_status(app, id, "ACTIVE").await;
}

async fn try_install(app: &TestApp, id: &str) -> (u16, Value) {
    let response = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/plugins/{id}/install"),
            &app.super_admin(),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON reply"))
}

#[tokio::test(flavor = "multi_thread")]
async fn install_is_refused_until_every_dependency_is_installed_in_range() {
    let app = TestApp::spawn().await;
    app.register(&manifest("contacts", "1.4.0")).await;
    app.register(&depending_on(
        "crm",
        "1.0.0",
        json!([
            {"plugin": "contacts", "version": "^2.1"},
            {"plugin": "mail", "version": ">=1.0.0"}
        ]),
    ))
    .await;

    let (status, problem) = try_install(&app, "crm").await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["title"], "Dependencies not installed");
    let missing: Vec<(&str, &str)> = problem["missing"]
        .as_array()
        .expect("the missing dependencies are listed")
        .iter()
        .map(|m| {
            (
                m["plugin"].as_str().unwrap_or_default(),
                m["found"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        missing,
        [("contacts", "REGISTERED 1.4.0"), ("mail", "not registered")]
    );
    // The reply comes from the processor; the read model catches up a moment later.
    wait_for_status(&app, "crm", "REGISTERED").await;

    // A matching contacts (the update saga swaps the version) and a mail, installed.
    install(&app, "contacts").await;
    wait_for_status(&app, "contacts", "INSTALLED").await;
    request(
        &app,
        reqwest::Method::POST,
        "/api/v1/plugins/contacts/update",
        Some(&manifest("contacts", "2.2.0")),
    )
    .await;
    eventually("contacts runs 2.2.0", || async {
        (plugin(&app, "contacts").await["version"] == "2.2.0").then_some(())
    })
    .await;
    installed(&app, &manifest("mail", "1.0.0")).await;

    install(&app, "crm").await;
    wait_for_status(&app, "crm", "INSTALLED").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_cycle_is_refused_with_the_chain() {
    let app = TestApp::spawn().await;
    app.register(&depending_on(
        "billing",
        "1.0.0",
        json!([{"plugin": "crm", "version": "*"}]),
    ))
    .await;
    app.register(&depending_on(
        "crm",
        "1.0.0",
        json!([{"plugin": "billing", "version": "^1"}]),
    ))
    .await;
    let (status, problem) = try_install(&app, "crm").await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["title"], "Dependency cycle");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("crm → billing → crm"), "{detail}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dependents_are_disabled_with_the_reason_when_their_dependency_goes() {
    let app = TestApp::spawn().await;
    installed(&app, &manifest("contacts", "2.0.0")).await;
    enable(&app, "contacts").await;
    for id in ["crm", "helpdesk"] {
        installed(
            &app,
            &depending_on(
                id,
                "1.0.0",
                json!([{"plugin": "contacts", "version": "^2"}]),
            ),
        )
        .await;
        enable(&app, id).await;
    }
    installed(&app, &manifest("mail", "1.0.0")).await;
    enable(&app, "mail").await;

    request(
        &app,
        reqwest::Method::POST,
        "/api/v1/plugins/contacts/disable",
        Some(&json!({"reason": "security patch"})),
    )
    .await;
    for id in ["crm", "helpdesk"] {
        wait_for_status(&app, id, "DISABLED").await;
        let reason: Option<String> =
            sqlx::query_scalar("SELECT status_reason FROM catalog.plugins WHERE id = $1")
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .expect("the catalog answers");
        let reason = reason.expect("the super admin sees why");
        assert!(
            reason.contains("contacts") && reason.contains("security patch"),
            "{reason}"
        );
    }
    assert_eq!(
        plugin(&app, "mail").await["status"],
        "ACTIVE",
        "a plugin that does not depend on contacts is left alone"
    );

    // While contacts is not ACTIVE, its dependents cannot come back.
    let response = app
        .send(
            reqwest::Method::POST,
            "/api/v1/plugins/crm/enable",
            &app.super_admin(),
        )
        .await;
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.expect("problem JSON");
    assert_eq!(problem["title"], "Dependencies not active");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_plugins_declaring_one_permission_key_only_one_installs() {
    let app = TestApp::spawn().await;
    let shared = json!([{"key": "deals.read", "name": "Read deals"}]);
    for id in ["crm", "sales"] {
        let mut manifest = manifest(id, "1.0.0");
        manifest["permissions"] = shared.clone();
        app.register(&manifest).await;
    }
    // Both at once: the reservation aggregate decides which one wins.
    let (crm, sales) = tokio::join!(try_install(&app, "crm"), try_install(&app, "sales"));
    assert_eq!((crm.0, sales.0), (202, 202), "{crm:?} {sales:?}");
    // REGISTERED is also where both start: a failure recorded is what says one lost.
    let (winner, loser, error) = eventually("one install won and the other failed", || async {
        let mut outcome = Vec::new();
        for id in ["crm", "sales"] {
            let status = plugin(&app, id).await["status"].clone();
            outcome.push((id, status, last_error(&app, id).await));
        }
        match outcome.as_slice() {
            [(w, won, None), (l, lost, Some(error))] | [(l, lost, Some(error)), (w, won, None)]
                if won == "INSTALLED" && lost == "REGISTERED" =>
            {
                Some((*w, *l, error.clone()))
            }
            _ => None,
        }
    })
    .await;
    assert!(
        error.contains("deals.read")
            && error.contains(&format!("`{winner}`"))
            && error.contains(&format!("`{loser}`")),
        "the conflict names the key and both plugins: {error}"
    );

    // Once the winner is uninstalled, its keys are free again.
    request(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/plugins/{winner}"),
        None,
    )
    .await;
    wait_for_status(&app, winner, "UNINSTALLED").await;
    eventually("the loser installs once the key is released", || async {
        let (status, _) = try_install(&app, loser).await;
        if status == 202 {
            wait_for_status(&app, loser, "INSTALLED").await;
            return Some(());
        }
        None
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_slug_is_taken_once_even_by_concurrent_requests() {
    let app = TestApp::spawn().await;
    let token = app.super_admin();
    let attempts = join_all((0..8).map(|i| {
        let token = token.clone();
        let app = &app;
        async move {
            let body = json!({"slug": "acme", "name": format!("Acme {i}")});
            let response = app.post("/api/v1/tenants", Some(&token), &body).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or_default())
        }
    }))
    .await;
    let created: Vec<&Value> = attempts
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(created.len(), 1, "{attempts:?}");
    for (status, body) in attempts.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 409, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("`acme`")),
            "{body}"
        );
    }

    // The same request again with its Idempotency-Key is answered, not refused.
    let retry = |key: &'static str| {
        let token = token.clone();
        let app = &app;
        async move {
            app.client
                .post(format!("{}/api/v1/tenants", app.address))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&json!({"slug": "globex", "name": "Globex"}))
                .send()
                .await
                .expect("the API answers")
        }
    };
    let first = retry("create-globex").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("JSON");
    let again = retry("create-globex").await;
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.expect("JSON");
    assert_eq!(first["events"], again["events"]);
    app.stop().await;
}

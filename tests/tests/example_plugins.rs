//! The example plugins of `examples/` as `cargo xtask up` runs them: `crm` keeps each
//! tenant's contacts and deals in its schema and refuses bad input with problems; a deal it
//! wins reaches `billing` on the log, which invoices it once and reads the deal back from
//! `crm` over REST through the gateway, for the caller.

use end_to_end::running::{
    active, answer_to_declared_length, enable_for_tenant, spawn_running_plugins, tenant_with_schema,
};
use end_to_end::{eventually, eventually_within};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// The example's own manifest, run from its source folder (which holds its migrations) with
/// the binary the tests built.
fn manifest(id: &str, binary: &str) -> Value {
    let folder = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(id);
    let text = std::fs::read_to_string(folder.join("manifest.json")).expect("the manifest");
    let mut manifest: Value = serde_json::from_str(&text).expect("JSON");
    let folder = std::fs::canonicalize(folder).expect("the example's folder");
    manifest["runtime"]["command"] = json!([binary]);
    manifest["runtime"]["bundle"] = json!(format!("file://{}", folder.display()));
    manifest
}

#[tokio::test(flavor = "multi_thread")]
async fn crm_keeps_each_tenants_deals_and_billing_invoices_a_won_deal_it_reads_back_from_crm() {
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let globex = tenant_with_schema(&app, "globex").await;
    active(&app, &manifest("crm", env!("CARGO_BIN_EXE_example-crm"))).await;
    active(
        &app,
        &manifest("billing", env!("CARGO_BIN_EXE_example-billing")),
    )
    .await;
    let acme_admin = enable_for_tenant(&app, acme, "crm").await;
    enable_for_tenant(&app, acme, "billing").await;
    let globex_admin = enable_for_tenant(&app, globex, "crm").await;

    // Acme's webhook hears of its won deals: a plugin's event, delivered from its topic.
    let (hooks, mut delivered) = tokio::sync::mpsc::unbounded_channel::<String>();
    let receiver = axum::Router::new().route(
        "/deals",
        axum::routing::post(move |body: String| {
            let hooks = hooks.clone();
            async move {
                let _ = hooks.send(body);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let hook_url = format!("http://{}/deals", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let registered = app
        .post(
            "/api/v1/webhooks",
            Some(&acme_admin),
            &json!({"url": hook_url, "events": ["plugin.crm.deal.won"]}),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);

    let call = |method: Method, path: &str, token: &str, body: Option<Value>| {
        let mut request = app
            .client
            .request(method, format!("{}/api/plugins/{path}", app.address))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("the gateway answers");
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, content_type, body)
        }
    };

    let (status, _, contact) = call(
        Method::POST,
        "crm/contacts",
        &acme_admin,
        Some(json!({"name": " Ada Lovelace ", "email": "ada@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{contact}");
    assert_eq!(contact["name"], "Ada Lovelace");
    let (_, _, theirs) = call(Method::GET, "crm/contacts", &globex_admin, None).await;
    assert_eq!(
        theirs,
        json!([]),
        "another tenant's schema holds none of acme's contacts"
    );

    for (body, wanted) in [
        (json!({"name": "a\u{0}b"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"name": "Ada", "email": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "Ada", "role": "admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, content_type, problem) =
            call(Method::POST, "crm/contacts", &acme_admin, Some(body)).await;
        assert_eq!(status, wanted, "{problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["status"], wanted.as_u16());
    }
    // Refused by the gateway, by its length: a body the gateway streamed to a plugin that
    // refused it would be cut under the gateway's writes, and answered 502.
    let answer =
        answer_to_declared_length(&app, "crm/contacts", &acme_admin, 3 * 1024 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("https://plexica.io/problems/payload-too-large"),
        "{answer}"
    );
    let (status, _, _) = call(Method::GET, "crm/contacts?limit=1000", &acme_admin, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = call(Method::GET, "crm/deals/not-a-uuid", &acme_admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let new_deal = json!({
        "contactId": contact["id"], "title": "Analytical engine",
        "amountCents": 120_000, "currency": "EUR"
    });
    let (status, _, problem) = call(
        Method::POST,
        "crm/deals",
        &globex_admin,
        Some(new_deal.clone()),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "globex cannot use acme's contact: {problem}"
    );
    let (status, _, deal) = call(Method::POST, "crm/deals", &acme_admin, Some(new_deal)).await;
    assert_eq!(status, StatusCode::CREATED, "{deal}");
    let deal_id = deal["id"].as_str().expect("an id").to_owned();
    let (status, _, won) = call(
        Method::POST,
        &format!("crm/deals/{deal_id}/won"),
        &acme_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{won}");
    assert_eq!(won["stage"], "won");
    let (status, _, _) = call(
        Method::POST,
        &format!("crm/deals/{deal_id}/won"),
        &acme_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a deal is won once");

    // The first deal also waits for billing's subscription to find crm's topic, made by this
    // publish (a metadata refresh, then a rebalance of billing's group): seconds, more on a
    // loaded machine.
    let invoices = eventually_within(
        Duration::from_secs(60),
        "billing invoices the won deal",
        || async {
            let (_, _, invoices) = call(Method::GET, "billing/invoices", &acme_admin, None).await;
            (invoices.as_array().is_some_and(|list| !list.is_empty())).then_some(invoices)
        },
    )
    .await;
    let invoices = invoices.as_array().expect("a list");
    assert_eq!(invoices.len(), 1, "one invoice per deal: {invoices:?}");
    assert_eq!(invoices[0]["dealId"], deal_id.as_str());
    assert_eq!(invoices[0]["amountCents"], 120_000);
    let invoice_id = invoices[0]["id"].as_str().expect("an id");
    let (status, _, invoice) = call(
        Method::GET,
        &format!("billing/invoices/{invoice_id}"),
        &acme_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{invoice}");
    assert_eq!(
        invoice["deal"]["stage"], "won",
        "the deal as crm tells it: {invoice}"
    );
    assert_eq!(invoice["deal"]["title"], "Analytical engine");

    let (status, _, _) = call(Method::GET, "billing/invoices", &globex_admin, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "globex has not enabled billing"
    );

    let hook = tokio::time::timeout(std::time::Duration::from_secs(30), delivered.recv())
        .await
        .expect("acme's webhook hears of the won deal in time")
        .expect("a delivery");
    let hook: Value = serde_json::from_str(&hook).expect("JSON");
    assert_eq!(hook["type"], "plugin.crm.deal.won");
    assert_eq!(hook["tenantId"], acme.to_string());
    assert_eq!(hook["data"]["deal_id"], deal_id.as_str());

    // The seeds' own body: no contact, the amount in the currency's main unit.
    for (body, why) in [
        (
            json!({"title": "Engine", "currency": "EUR"}),
            "a deal needs an amount",
        ),
        (
            json!({"title": "Engine", "amount": 12, "amountCents": 1200, "currency": "EUR"}),
            "a deal has one amount",
        ),
        (
            json!({"title": "Engine", "amount": 0.001, "currency": "EUR"}),
            "no amount is rounded to cents",
        ),
    ] {
        let (status, content_type, problem) =
            call(Method::POST, "crm/deals", &acme_admin, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {problem}");
        assert_eq!(content_type, "application/problem+json");
    }
    let (status, _, lead) = call(
        Method::POST,
        "crm/deals",
        &acme_admin,
        Some(json!({"title": "Difference engine", "amount": 1200.5, "currency": "EUR"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{lead}");
    assert_eq!(lead["amountCents"], 120_050);
    assert_eq!(lead["contactId"], Value::Null);
    let lead_id = lead["id"].as_str().expect("an id").to_owned();
    let (status, _, won) = call(
        Method::POST,
        &format!("crm/deals/{lead_id}/won"),
        &acme_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{won}");
    let invoice = eventually("billing invoices the deal with no contact", || async {
        let (_, _, invoices) = call(Method::GET, "billing/invoices", &acme_admin, None).await;
        invoices
            .as_array()?
            .iter()
            .find(|invoice| invoice["dealId"] == lead_id.as_str())
            .cloned()
    })
    .await;
    assert_eq!(invoice["contactId"], Value::Null, "{invoice}");
    assert_eq!(invoice["amountCents"], 120_050);
}

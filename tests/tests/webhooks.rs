//! Webhooks (issue 15, M2.4): endpoints registered through the API are events on the log; the
//! platform POSTs the events they chose, signed as the Standard Webhooks specification says,
//! retried on 5xx after `Retry-After`, in order; a tenant's endpoint hears only of its tenant
//! (and of the catalogue), another tenant's admin cannot see or touch it; a 4xx fails a
//! delivery at once; a rotated secret signs what follows.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use end_to_end::{TestApp, eventually, manifest};
use infra::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;
use webhooks::EndpointSecret;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
}

/// An HTTP server on loopback that records every request; `/flaky` answers 503 with
/// `Retry-After: 0` to the first two, `/gone` answers 400, `/down` 503 until it is up.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    /// Whether `/down` is up again.
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let state = receiver.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    let path = uri.path().to_owned();
                    let mut received = state.received.lock().expect("not poisoned");
                    let earlier = received.iter().filter(|r| r.path == path).count();
                    received.push(Received {
                        path: path.clone(),
                        headers,
                        body,
                    });
                    let up = state.up.load(std::sync::atomic::Ordering::SeqCst);
                    match path.as_str() {
                        "/down" if !up => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                        "/flaky" if earlier < 2 => {
                            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")])
                                .into_response()
                        }
                        "/gone" => StatusCode::BAD_REQUEST.into_response(),
                        _ => StatusCode::NO_CONTENT.into_response(),
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, address)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The bodies delivered to `path` with a 2xx, as JSON.
    fn events_at(&self, path: &str) -> Vec<Value> {
        let mut seen = self.at(path);
        if path == "/flaky" {
            seen = seen.into_iter().skip(2).collect();
        }
        seen.iter()
            .map(|r| serde_json::from_str(&r.body).expect("JSON"))
            .collect()
    }
}

/// Registers an endpoint as `token` and waits until the catalog shows it; its id and secret.
async fn register(app: &TestApp, token: &str, url: String, events: &[&str]) -> (String, String) {
    let response = app
        .post(
            "/api/v1/webhooks",
            Some(token),
            &json!({"url": url, "events": events, "description": "e2e"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "the answer holds a secret"
    );
    let body: Value = response.json().await.expect("JSON");
    let secret = body["secret"].as_str().expect("a secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = body["id"].as_str().expect("an id").to_owned();
    // An endpoint hears of the events read after the catalog shows its registration.
    end_to_end::eventually("the catalog shows the endpoint", || async {
        let shown = app
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/webhooks/{id}"),
                token,
            )
            .await;
        (shown.status() == 200).then_some(())
    })
    .await;
    (id, secret)
}

/// Whether `request` carries a valid Standard Webhooks signature under `secret`.
fn signed_by(request: &Received, secret: &str) -> bool {
    let header = |name: &str| request.headers[name].to_str().expect("text").to_owned();
    let timestamp: i64 = header("webhook-timestamp").parse().expect("seconds");
    let expected = EndpointSecret::from_whsec(secret).expect("a secret").sign(
        &header("webhook-id"),
        timestamp,
        request.body.as_bytes(),
    );
    header("webhook-signature")
        .split(' ')
        .any(|signature| signature == expected)
}

/// `GET path` as `token`, its JSON body.
async fn get_json(app: &TestApp, path: &str, token: &str) -> Option<Value> {
    app.send(reqwest::Method::GET, path, token)
        .await
        .json()
        .await
        .ok()
}

async fn create_tenant(app: &TestApp, id: Uuid, slug: &str) {
    let response = app
        .post(
            "/api/v1/tenants",
            Some(&app.super_admin()),
            &json!({"id": id, "slug": slug, "name": slug}),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_receive_their_events_signed_in_order_and_only_their_tenants() {
    let app = TestApp::spawn().await;
    let (receiver, base) = Receiver::start().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let admin_a = app.token(Role::TenantAdmin, Some(&a.to_string()));
    let admin_b = app.token(Role::TenantAdmin, Some(&b.to_string()));

    let (_, platform_secret) = register(
        &app,
        &app.super_admin(),
        format!("{base}/platform"),
        &["core.tenant.created", "core.plugin.registered"],
    )
    .await;
    let (flaky, flaky_secret) = register(
        &app,
        &admin_a,
        format!("{base}/flaky"),
        &["core.tenant.suspended", "core.plugin.registered"],
    )
    .await;
    let (of_b, _) = register(
        &app,
        &admin_b,
        format!("{base}/b"),
        &["core.tenant.suspended"],
    )
    .await;
    let (gone, _) = register(
        &app,
        &admin_a,
        format!("{base}/gone"),
        &["core.tenant.created"],
    )
    .await;

    // Another tenant's endpoint does not exist for its admin, in reads and in commands.
    let read = app
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/webhooks/{flaky}"),
            &admin_b,
        )
        .await;
    assert_eq!(read.status(), 404);
    let rotate = app
        .post(
            &format!("/api/v1/webhooks/{flaky}/rotate-secret"),
            Some(&admin_b),
            &json!({}),
        )
        .await;
    assert_eq!(rotate.status(), 404);
    let listed: Value = get_json(&app, "/api/v1/webhooks", &admin_a)
        .await
        .expect("JSON");
    let ids: Vec<&str> = listed["webhooks"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|w| w["id"].as_str().expect("an id"))
        .collect();
    assert!(
        ids.contains(&flaky.as_str()) && !ids.contains(&of_b.as_str()),
        "{listed}"
    );
    // Hostile input is refused with the field named.
    let refused = app
        .post(
            "/api/v1/webhooks",
            Some(&admin_a),
            &json!({"url": "ftp://x\u{0}y", "events": ["core.nothing"]}),
        )
        .await;
    assert_eq!(refused.status(), 422);

    create_tenant(&app, a, &format!("wh-a-{}", &a.simple().to_string()[..8])).await;
    create_tenant(&app, b, &format!("wh-b-{}", &b.simple().to_string()[..8])).await;
    app.register(&manifest(&end_to_end::running::unique_id("wh"), "1.0.0"))
        .await;
    for tenant in [a, b] {
        let response = app
            .post(
                &format!("/api/v1/tenants/{tenant}/suspend"),
                Some(&app.super_admin()),
                &json!({}),
            )
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }

    // The platform endpoint hears of both tenants and the plugin.
    let platform = eventually("the platform endpoint gets three events", || async {
        let events = receiver.events_at("/platform");
        (events.len() >= 3).then_some(events)
    })
    .await;
    let mut types: Vec<&str> = platform
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "core.plugin.registered",
            "core.tenant.created",
            "core.tenant.created"
        ]
    );
    assert!(
        receiver
            .at("/platform")
            .iter()
            .all(|r| signed_by(r, &platform_secret))
    );

    // A's endpoint got the catalogue's event and A's suspension, after two 503s.
    let of_a = eventually("A's endpoint gets its two events", || async {
        let events = receiver.events_at("/flaky");
        (events.len() >= 2).then_some(events)
    })
    .await;
    let suspended: Vec<&Value> = of_a
        .iter()
        .filter(|e| e["type"] == "core.tenant.suspended")
        .collect();
    assert_eq!(suspended.len(), 1, "{of_a:?}");
    assert_eq!(suspended[0]["tenantId"], a.to_string());
    assert_eq!(suspended[0]["data"]["tenant_id"], a.to_string());
    assert!(
        receiver
            .at("/flaky")
            .iter()
            .all(|r| signed_by(r, &flaky_secret))
    );
    let webhook_ids: Vec<String> = receiver
        .at("/flaky")
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().expect("text").to_owned())
        .collect();
    assert_eq!(webhook_ids.len(), 4, "two 503s, then the two events");

    // B's endpoint got B's suspension only: A's was enqueued (and delivered to A) before.
    let of_b_events = eventually("B's endpoint gets B's suspension", || async {
        let events = receiver.events_at("/b");
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert!(
        of_b_events.iter().all(|e| e["tenantId"] == b.to_string()),
        "{of_b_events:?}"
    );

    // The deliveries say what happened, to their tenant's admin only. The endpoint saw the
    // last attempt before the platform recorded its answer: wait for both to be delivered.
    let deliveries = eventually("the flaky endpoint's deliveries are recorded", || async {
        let body: Value = get_json(
            &app,
            &format!("/api/v1/webhooks/{flaky}/deliveries"),
            &admin_a,
        )
        .await?;
        let list = body["deliveries"].as_array()?;
        (!list.is_empty() && list.iter().all(|d| d["status"] == "DELIVERED")).then(|| list.clone())
    })
    .await;
    let attempts: i64 = deliveries
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(attempts, 4, "{deliveries:?}");
    let gone_deliveries = eventually("the 400 fails its delivery at once", || async {
        let body: Value = get_json(
            &app,
            &format!("/api/v1/webhooks/{gone}/deliveries"),
            &admin_a,
        )
        .await?;
        let list = body["deliveries"].as_array()?.clone();
        (list.first()?["status"] == "FAILED").then_some(list)
    })
    .await;
    assert_eq!(gone_deliveries[0]["attempts"], 1);
    assert_eq!(gone_deliveries[0]["lastStatus"], 400);

    // It is a dead letter of consumer `webhooks`; an admin's retry delivers it again.
    let admin = app.super_admin();
    let letter = eventually("the failed delivery is in the DLQ", || async {
        let served = app
            .graphql(
                &admin,
                r#"{ deadLetters(filter: {consumer: "webhooks"}, first: 10) { edges { node { id status errorClass errorMessage } } } }"#,
            )
            .await;
        served["data"]["deadLetters"]["edges"]
            .as_array()?
            .iter()
            .map(|edge| edge["node"].clone())
            .find(|node| node["errorMessage"].as_str().is_some_and(|m| m.contains(&gone)))
    })
    .await;
    assert_eq!(letter["errorClass"], "permanent", "{letter}");
    let retry = app
        .retry_dead_letter(letter["id"].as_str().expect("an id"), &admin)
        .await;
    assert!(retry.status().is_success(), "{}", retry.status());
    eventually(
        "the retried delivery reaches the endpoint again",
        || async { (receiver.at("/gone").len() >= 2).then_some(()) },
    )
    .await;

    // A rotated secret signs what follows; the old one no longer does.
    let rotated: Value = app
        .post(
            &format!("/api/v1/webhooks/{flaky}/rotate-secret"),
            Some(&admin_a),
            &json!({}),
        )
        .await
        .json()
        .await
        .expect("JSON");
    let new_secret = rotated["secret"].as_str().expect("a secret").to_owned();
    assert_ne!(new_secret, flaky_secret);
    let response = app
        .post(
            &format!("/api/v1/tenants/{a}/reactivate"),
            Some(&app.super_admin()),
            &json!({}),
        )
        .await;
    assert!(response.status().is_success());
    let suspend = app
        .post(
            &format!("/api/v1/tenants/{a}/suspend"),
            Some(&app.super_admin()),
            &json!({}),
        )
        .await;
    assert!(suspend.status().is_success());
    let last = eventually("A's second suspension is delivered", || async {
        let all = receiver.at("/flaky");
        (all.len() >= 5).then(|| all.last().cloned()).flatten()
    })
    .await;
    assert!(signed_by(&last, &new_secret));
    assert!(!signed_by(&last, &flaky_secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_failing_past_the_limit_is_disabled_and_its_deliveries_wait_until_enabled() {
    let mut config = end_to_end::isolated_config().await;
    // Failing for a millisecond counts as failing for a day here.
    config.webhooks.disable_after_ms = 1;
    config.webhooks.delivery_max_attempts = 50;
    let app = TestApp::spawn_with(config).await;
    let (receiver, base) = Receiver::start().await;
    let tenant = Uuid::now_v7();
    let admin = app.token(Role::TenantAdmin, Some(&tenant.to_string()));
    let (id, _) = register(
        &app,
        &admin,
        format!("{base}/down"),
        &["core.tenant.suspended"],
    )
    .await;
    create_tenant(
        &app,
        tenant,
        &format!("wh-d-{}", &tenant.simple().to_string()[..8]),
    )
    .await;
    let suspended = app
        .post(
            &format!("/api/v1/tenants/{tenant}/suspend"),
            Some(&app.super_admin()),
            &json!({}),
        )
        .await;
    assert!(suspended.status().is_success());

    let endpoint = eventually("the platform disables the failing endpoint", || async {
        let endpoint: Value = get_json(&app, &format!("/api/v1/webhooks/{id}"), &admin).await?;
        endpoint["disabledAt"].is_string().then_some(endpoint)
    })
    .await;
    let reason = endpoint["disabledReason"].as_str().unwrap_or_default();
    assert!(reason.contains("has failed since"), "{endpoint}");
    let failed_attempts = receiver.at("/down").len();
    assert!(failed_attempts >= 2, "{failed_attempts}");

    receiver.up.store(true, std::sync::atomic::Ordering::SeqCst);
    let enabled = app
        .post(
            &format!("/api/v1/webhooks/{id}/enable"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert!(enabled.status().is_success(), "{}", enabled.status());
    let delivered = eventually("the waiting delivery goes out once enabled", || async {
        let body: Value =
            get_json(&app, &format!("/api/v1/webhooks/{id}/deliveries"), &admin).await?;
        let first = body["deliveries"].as_array()?.first()?.clone();
        (first["status"] == "DELIVERED").then_some(first)
    })
    .await;
    assert_eq!(delivered["eventType"], "core.tenant.suspended");
    let endpoint: Value = get_json(&app, &format!("/api/v1/webhooks/{id}"), &admin)
        .await
        .expect("JSON");
    assert!(endpoint["disabledAt"].is_null(), "{endpoint}");
}

/// A record that the webhooks consumer itself dead-lettered (its deliveries could not be
/// written) is delivered when it is retried: the retry enqueues its deliveries. Before
/// 0d28083 a retried record only made the event's failed deliveries pending again, of which
/// it had none, and its dead letter was marked resolved with nothing delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_webhooks_consumer_dead_lettered_is_delivered_when_retried() {
    let app = TestApp::spawn().await;
    let (receiver, base) = Receiver::start().await;
    register(
        &app,
        &app.super_admin(),
        format!("{base}/late"),
        &["core.tenant.created"],
    )
    .await;
    // Every delivery the consumer writes fails with an error that may pass (P0001).
    sqlx::raw_sql(
        "CREATE FUNCTION public.deliveries_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'injected fault'; END $$;
         CREATE TRIGGER deliveries_fault BEFORE INSERT ON webhooks.deliveries
             FOR EACH ROW EXECUTE FUNCTION public.deliveries_fault();",
    )
    .execute(&app.pool)
    .await
    .expect("the fault injection is installed");
    let tenant = Uuid::now_v7();
    create_tenant(
        &app,
        tenant,
        &format!("wh-l-{}", &tenant.simple().to_string()[..8]),
    )
    .await;
    let key = format!("tenant:{tenant}");
    let letter = |status: &'static str| {
        let (pool, key) = (app.pool.clone(), key.clone());
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "SELECT id FROM dlq.dead_letters
                 WHERE consumer = 'webhooks' AND record_key = $1 AND status = $2",
            )
            .bind(key)
            .bind(status)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
        }
    };
    // Its automatic retries fail like the first attempt: the retry wrote deliveries again.
    let id = eventually("the dead letter's retries are spent", || letter("FAILED")).await;
    assert!(receiver.at("/late").is_empty());

    sqlx::raw_sql("DROP TRIGGER deliveries_fault ON webhooks.deliveries")
        .execute(&app.pool)
        .await
        .expect("the fault is gone");
    let retry = app.retry_dead_letter(id, &app.super_admin()).await;
    assert_eq!(retry.status(), 202);
    let delivered = eventually("the retried record is delivered", || async {
        receiver.events_at("/late").into_iter().next()
    })
    .await;
    assert_eq!(delivered["type"], "core.tenant.created", "{delivered}");
    eventually("the dead letter is resolved", || letter("RESOLVED")).await;
}

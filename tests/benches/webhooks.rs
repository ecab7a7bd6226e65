//! Webhooks, measured (issue 15, M2.4): how long an event takes from the log to an endpoint
//! (its `ce_time` to the endpoint's receipt), and how many deliveries a second one deliverer
//! makes, while tenants are created `BENCH_CONCURRENCY` at a time (each one event).
//!
//! `PLEXICA_TEST_KAFKA_BROKERS=… PLEXICA_TEST_DATABASE_URL=… PLEXICA_TEST_REDIS_URL=…
//!  cargo bench -p end-to-end --bench webhooks` (`BENCH_EVENTS`, default 500;
//!  `BENCH_CONCURRENCY`, default 8).

mod common;

use common::{ms, setting};

use std::time::{Duration, Instant};

use end_to_end::TestApp;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() {
    let events = setting("BENCH_EVENTS", 500);
    let concurrency = setting("BENCH_CONCURRENCY", 8);
    let app = TestApp::spawn().await;

    // The endpoint: each delivery's lag, from the event's time to its receipt.
    let (lags, mut received) = mpsc::unbounded_channel::<Duration>();
    let endpoint = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let lags = lags.clone();
            async move {
                let now = chrono::Utc::now();
                let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if let Some(time) = event["timestamp"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                {
                    let _ = lags.send((now - time.to_utc()).to_std().unwrap_or_default());
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, endpoint).await });
    let admin = app.super_admin();
    let registered = app
        .post(
            "/api/v1/webhooks",
            Some(&admin),
            &json!({"url": url, "events": ["core.tenant.created"]}),
        )
        .await;
    assert_eq!(registered.status(), 201, "the endpoint is registered");

    let started = Instant::now();
    let run = infra::testing::unique_name("wh").replace('_', "-");
    futures::stream::iter(0..events)
        .for_each_concurrent(concurrency, |i| {
            let (app, admin, run) = (&app, &admin, &run);
            async move {
                let slug = format!("{run}-{i}");
                let created = app
                    .post(
                        "/api/v1/tenants",
                        Some(admin),
                        &json!({"slug": slug, "name": slug}),
                    )
                    .await;
                assert!(created.status().is_success(), "{}", created.status());
            }
        })
        .await;
    let mut histogram = Histogram::<u64>::new(3).expect("a histogram");
    for _ in 0..events {
        let lag = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .expect("every event is delivered within a minute")
            .expect("a delivery");
        histogram
            .record(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX))
            .expect("in range");
    }
    let elapsed = started.elapsed();
    println!(
        "webhooks: {events} events ({concurrency} commands at a time), event→endpoint p50 {:.1} ms, \
         p95 {:.1} ms, p99 {:.1} ms; {:.0} deliveries/s end to end",
        ms(&histogram, 0.5),
        ms(&histogram, 0.95),
        ms(&histogram, 0.99),
        events as f64 / elapsed.as_secs_f64()
    );
}

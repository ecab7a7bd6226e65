//! Plugins on the log, measured (issue 15; Phase 2 plan M2.1: publish p95 under 10 ms,
//! over 1,000 events/s, consumer lag under 1 s): the SDK's `Publisher` one event at a time and many
//! at once, against a bare idempotent producer on the same topic in the same run, and the lag
//! from an event's publication to the SDK's `Subscription` handing it to its handler.
//!
//! `PLEXICA_TEST_KAFKA_BROKERS=… PLEXICA_TEST_DATABASE_URL=… PLEXICA_TEST_REDIS_URL=…
//!  cargo bench -p end-to-end --bench plugin_events` (`BENCH_EVENTS`, default 2000).

mod common;

use common::{ms, setting};

use std::time::{Duration, Instant};

use end_to_end::TestApp;
use end_to_end::deal_won::DealWon;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use infra::testing::unique_name;
use plexica_plugin_sdk::events::HandlerError;
use plexica_plugin_sdk::{
    EventContext, EventHandler, EventsConfig, Publisher, ReceivedEvent, Subscription,
};
use rdkafka::producer::FutureRecord;
use sqlx::PgConnection;
use tokio::sync::mpsc;

/// Sends each event's lag, from its `ce_time` to its handling, to the bench.
struct Lag(mpsc::UnboundedSender<Duration>);

impl EventHandler for Lag {
    fn handle<'a>(
        &'a mut self,
        _tx: &'a mut PgConnection,
        event: &'a ReceivedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let lag = (chrono::Utc::now() - event.envelope.time)
                .to_std()
                .unwrap_or_default();
            let _ = self.0.send(lag);
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() {
    let events = setting("BENCH_EVENTS", 2000);
    let app = TestApp::spawn().await;
    let id = unique_name("bench").replace('_', "-");
    // The bare producer writes a topic of its own: its records are no events, and on the
    // plugin's topic the subscription would dead-letter them and park their keys.
    let raw_topic = app.topics.plugin(&format!("{id}-raw"));
    infra::kafka::create_topics(
        &app.config.kafka,
        &[
            app.topics.plugin_spec(&id),
            app.topics.plugin_spec(&format!("{id}-raw")),
        ],
    )
    .await
    .expect("the plugin's topic");
    let schema = unique_name("bench_events");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&app.pool)
        .await
        .expect("the consumer's schema");
    let event_type = format!("plugin.{id}.deal.won");
    let token = app
        .config
        .auth
        .keys()
        .issue(
            &format!("plugin:{id}"),
            vec![infra::auth::Role::Plugin],
            None,
            chrono::Duration::hours(1),
        )
        .expect("the plugin's identity");
    let config = EventsConfig {
        plugin_id: id.clone(),
        kafka: app.config.kafka.clone(),
        schema_registry_url: app.registry_url.clone(),
        token: token.into(),
        schema,
        publishes: [event_type.clone()].into(),
        subscribes: [event_type].into(),
    };
    let (lags, mut lag_of) = mpsc::unbounded_channel();
    let stop = tokio_util::sync::CancellationToken::new();
    let subscription = Subscription::new(&config).expect("a subscription");
    let consumer = tokio::spawn(subscription.run(
        Lag(lags),
        app.pool.clone(),
        infra::http::Readiness::new(app.pool.clone()),
        stop.clone(),
    ));
    let publisher = Publisher::new(&config).expect("a publisher");
    let context = EventContext {
        tenant: uuid::Uuid::now_v7(),
        user: Some("bench".into()),
        traceparent: None,
        correlation_id: None,
        causation_id: None,
    };
    let deal = |i: usize| DealWon {
        deal_id: format!("d{i}"),
        amount: i as i64,
    };
    // The schema's registration and the subscription's assignment happen once, before.
    publisher
        .publish(&context, "warm-up", &deal(0))
        .await
        .expect("published");
    tokio::time::timeout(Duration::from_secs(60), lag_of.recv())
        .await
        .expect("the subscription reads within a minute")
        .expect("the subscription runs");

    let mut publish = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..events / 2 {
        let started = Instant::now();
        publisher
            .publish(&context, &format!("d{}", i % 100), &deal(i))
            .await
            .expect("published");
        publish
            .record(started.elapsed().as_micros() as u64)
            .expect("recorded");
    }
    let raw_producer = infra::kafka::producer(&app.config.kafka).expect("a producer");
    let payload = vec![0u8; 40];
    let mut raw = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..events / 2 {
        let key = format!("d{}", i % 100);
        let started = Instant::now();
        raw_producer
            .send(
                FutureRecord::to(&raw_topic).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("produced");
        raw.record(started.elapsed().as_micros() as u64)
            .expect("recorded");
    }

    // Many at once: the rate the SDK sustains with 64 publishes under way.
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut sent = 0;
    let mut done = 0;
    while done < events {
        while sent < events && pending.len() < 64 {
            let (publisher, context, event) = (&publisher, &context, deal(sent));
            pending.push(async move {
                publisher
                    .publish(context, &event.deal_id.clone(), &event)
                    .await
            });
            sent += 1;
        }
        if let Some(result) = futures::StreamExt::next(&mut pending).await {
            result.expect("published");
            done += 1;
        }
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();

    // Every published event reaches the handler; their lag.
    let mut lag = Histogram::<u64>::new(3).expect("histogram");
    while lag.len() < (events / 2 + events) as u64 {
        match tokio::time::timeout(Duration::from_secs(30), lag_of.recv()).await {
            Ok(Some(one)) => lag.record(one.as_micros() as u64).expect("recorded"),
            _ => panic!(
                "the subscription stopped handing over events after {}",
                lag.len()
            ),
        }
    }
    stop.cancel();
    let _ = consumer.await;

    println!("\n| plugin events (issue 15, M2.1) | the SDK | baseline | goal |\n|---|---|---|---|");
    println!(
        "| publish one at a time p50 / p95 ({} events) | {:.2} / {:.2} ms | bare producer {:.2} / {:.2} ms | p95 < 10 ms |",
        events / 2,
        ms(&publish, 0.5),
        ms(&publish, 0.95),
        ms(&raw, 0.5),
        ms(&raw, 0.95)
    );
    println!(
        "| publish, 64 under way ({events} events) | {rate:.0} events/s | — | > 1,000 events/s |"
    );
    println!(
        "| lag, published → handled p50 / p99 / max | {:.1} / {:.1} / {:.1} ms | — | < 1 s |",
        ms(&lag, 0.5),
        ms(&lag, 0.99),
        lag.max() as f64 / 1000.0
    );
    app.stop().await;
}

//! The log on the single-machine broker's durable storage: what `cargo xtask up` runs.

use std::time::Duration;

use end_to_end::broker::{SqliteBroker as Broker, free_port};
use end_to_end::eventually;
use event_schemas::Topics;
use infra::config::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;

/// tansu deletes every record of a topic that names `cleanup.policy=delete` with
/// `retention.ms=-1`; the catalogue's event log must survive the broker's maintenance.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_log_survives_a_restart_of_the_durable_broker() {
    let dir = std::env::temp_dir().join(infra::testing::unique_name("tansu"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let config = KafkaConfig {
        brokers: format!("127.0.0.1:{port}"),
        fetch_wait_max_ms: 5,
        background_fetch_wait_max_ms: 50,
        rest_after_ms: 2_000,
        resting_look_every_ms: 500,
        topic_prefix: String::new(),
        partitions: 1,
        session_timeout_ms: 10_000,
        replication_factor: 1,
    };
    let topics = Topics::new("", 1);

    let broker = Broker::start_on(&dir, port);
    eventually("the catalogue's topics are created", || async {
        infra::kafka::create_topics(&config, &topics.catalogue())
            .await
            .ok()
    })
    .await;
    let producer = infra::kafka::producer(&config).expect("producer");
    producer
        .send(
            FutureRecord::to(&topics.plugins())
                .key("plugin:crm")
                .payload("an event"),
            Duration::from_secs(10),
        )
        .await
        .expect("the event is written");
    drop(producer);
    drop(broker);

    let _broker = Broker::start_on(&dir, port);
    let consumer: StreamConsumer = infra::kafka::consumer_config(&config, "survivor")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topics.plugins()]).expect("subscribe");
    // Errors while the restarted broker comes up are expected; a record is what counts.
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(message) = consumer.recv().await {
                use rdkafka::Message;
                break (message.offset(), message.payload().map(<[u8]>::to_vec));
            }
        }
    })
    .await
    .expect("the event is still in the log after the restart");
    assert_eq!(first, (0, Some(b"an event".to_vec())));
    let _ = std::fs::remove_dir_all(&dir);
}

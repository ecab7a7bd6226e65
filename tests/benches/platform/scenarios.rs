//! The scenarios: each run returns the platform's figures and its baseline's, measured on
//! the same machine in the same run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use event_schemas::topics::TopicSpec;
use futures::future::join_all;
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::Parameters;
use crate::commands::{Api, CommandMix};
use crate::cpu::{CpuShares, CpuSpan};
use crate::load::{Latency, open_loop};
use end_to_end::log::{Entry, LogWriter, plugin_history, tenant_history};
use end_to_end::process::{Isolation, Platform};

use crate::PLATFORM;

/// Named figures of one run.
pub type Figures = BTreeMap<&'static str, f64>;

pub struct Run {
    pub platform: Figures,
    pub baseline: Figures,
}

fn latency_figures(latency: &Latency) -> Figures {
    Figures::from([
        ("p50_ms", latency.p50),
        ("p99_ms", latency.p99),
        ("p99_9_ms", latency.p999),
        ("max_ms", latency.max),
        ("samples", latency.count as f64),
        ("errors", latency.errors as f64),
        ("throughput_per_s", latency.throughput),
    ])
}

/// Size of a command record of the mix on the log, for the raw produce baseline.
fn command_record_size() -> usize {
    end_to_end::manifest("reg-0123456789ab-1234", "1.0.0")
        .to_string()
        .len()
        + 160
}

/// A topic of its own for the raw produce baseline.
async fn raw_topic(isolation: &Isolation) -> String {
    let name = format!("{}bench.raw-produce", isolation.kafka.topic_prefix);
    let spec = TopicSpec {
        name: name.clone(),
        partitions: isolation.kafka.partitions,
        retention_ms: Some(3_600_000),
        cleanup_policy: Some("delete"),
    };
    infra::kafka::create_topics(&isolation.kafka, &[spec])
        .await
        .expect("the raw produce topic is created");
    name
}

/// Command reply latency of the mix at a fixed rate, beside raw produce round trips at the
/// same rate and record size.
pub async fn command_latency(p: &Parameters, mix: &CommandMix, isolation: &Isolation) -> Run {
    let latency = open_loop(p.command_rate, p.warm_up, p.measured, |_| mix.command().0).await;
    let topic = raw_topic(isolation).await;
    let producer = infra::kafka::producer(&isolation.kafka).expect("a producer");
    let payload = vec![b'x'; command_record_size()];
    // The producer's first record also fetches metadata and a producer id: not a round trip.
    let _ = producer
        .send(
            FutureRecord::to(&topic).key("plugin:raw").payload(&payload),
            Duration::from_secs(30),
        )
        .await;
    let raw = open_loop(p.command_rate, p.warm_up, p.measured, |i| {
        let producer = producer.clone();
        let topic = topic.clone();
        let payload = payload.clone();
        async move {
            let key = format!("plugin:raw-{}", i % 64);
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .is_ok()
        }
    })
    .await;
    Run {
        platform: latency_figures(&latency),
        baseline: latency_figures(&raw),
    }
}

/// The highest rate of the ladder at which the mix keeps p99 under the target, beside the
/// broker's raw produce rate (acks=all, as many in flight as the client allows).
pub async fn knee(p: &Parameters, mix: &CommandMix, isolation: &Isolation, api: &Api) -> Run {
    let stages_before = api.command_stages().await;
    let mut knee_rate = 0.0;
    let mut knee_p99 = f64::NAN;
    let mut first_over = f64::NAN;
    for &rate in &p.knee_ladder {
        let latency = open_loop(rate, p.knee_warm_up, p.knee_step, |_| mix.command().0).await;
        println!(
            "    {rate:>6.0}/s: p99 {:>8.1} ms, {} errors",
            latency.p99, latency.errors
        );
        if latency.p99 < p.knee_p99_ms && latency.errors == 0 {
            knee_rate = latency.throughput;
            knee_p99 = latency.p99;
        } else {
            first_over = rate;
            break;
        }
        // Let the queue of the step drain before the next, higher one.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stages_after = api.command_stages().await;
    let topic = raw_topic(isolation).await;
    let producer = infra::kafka::producer(&isolation.kafka).expect("a producer");
    let payload = vec![b'x'; command_record_size()];
    let started = Instant::now();
    let keys: Vec<String> = (0..64).map(|i| format!("plugin:raw-{i}")).collect();
    let sends = (0..p.raw_produce_records).map(|i| {
        let record = FutureRecord::to(&topic)
            .key(&keys[i % keys.len()])
            .payload(&payload);
        producer.send(record, Duration::from_secs(60))
    });
    let delivered = join_all(sends).await.iter().filter(|r| r.is_ok()).count();
    let raw_rate = delivered as f64 / started.elapsed().as_secs_f64();
    let mut platform = Figures::from([
        ("commands_per_s", knee_rate),
        ("p99_ms_at_knee", knee_p99),
        ("first_rate_over", first_over),
    ]);
    // The mean time per command of each processor stage over the ladder: the profile of
    // where a command's time goes.
    for (stage, figure) in [
        ("queued", "stage_queued_ms"),
        ("decided_and_appended", "stage_decided_and_appended_ms"),
        ("lease_checked", "stage_lease_checked_ms"),
        ("outcome_published", "stage_outcome_published_ms"),
    ] {
        let (sum_after, count_after) = stages_after.get(stage).copied().unwrap_or_default();
        let (sum_before, count_before) = stages_before.get(stage).copied().unwrap_or_default();
        let count = count_after - count_before;
        if count > 0.0 {
            platform.insert(figure, (sum_after - sum_before) / count * 1000.0);
        }
    }
    Run {
        platform,
        baseline: Figures::from([("records_per_s", raw_rate)]),
    }
}

/// Command accepted → visible through GraphQL, one command at a time, beside the raw
/// produce → consume round trip.
pub async fn freshness(p: &Parameters, mix: &CommandMix, isolation: &Isolation) -> Run {
    let mut samples = Vec::with_capacity(p.freshness_samples);
    for _ in 0..p.freshness_samples {
        let (sent, change) = mix.command();
        let started = std::time::Instant::now();
        if !sent.await {
            continue;
        }
        mix.visible(&change).await;
        samples.push(started.elapsed());
    }
    let latency = Latency::from_samples(
        &samples,
        (p.freshness_samples - samples.len()) as u64,
        Duration::from_secs(1),
    );
    let raw = raw_round_trips(isolation, p.freshness_samples).await;
    let figures = |latency: &Latency| {
        Figures::from([
            ("p50_ms", latency.p50),
            ("p99_ms", latency.p99),
            ("max_ms", latency.max),
        ])
    };
    Run {
        platform: figures(&latency),
        baseline: figures(&raw),
    }
}

/// One record at a time: produced (acks=all) until a consumer of its partition, fetching as
/// the platform's interactive consumers do (`KAFKA_FETCH_WAIT_MAX_MS`), has it.
async fn raw_round_trips(isolation: &Isolation, samples: usize) -> Latency {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let topic = raw_topic(isolation).await;
    let producer = infra::kafka::producer(&isolation.kafka).expect("a producer");
    let consumer: StreamConsumer =
        infra::kafka::consumer_config(&isolation.kafka, "bench.raw-round-trip")
            .create()
            .expect("a consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, rdkafka::Offset::End)
        .expect("partition 0");
    consumer.assign(&assignment).expect("assigned");
    let payload = vec![b'x'; command_record_size()];
    let round_trip = |marker: String| {
        let (producer, consumer, topic, payload) = (&producer, &consumer, &topic, &payload);
        async move {
            let started = std::time::Instant::now();
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(0)
                        .key(&marker)
                        .payload(payload),
                    Duration::from_secs(30),
                )
                .await
                .ok()?;
            loop {
                let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
                    .await
                    .ok()?
                    .ok()?;
                if message.key() == Some(marker.as_bytes()) {
                    return Some(started.elapsed());
                }
            }
        }
    };
    // The first also waits for the consumer to find the end of the partition: not measured.
    for attempt in 0..10 {
        if round_trip(format!("warm-up-{attempt}")).await.is_some() {
            break;
        }
    }
    let mut measured = Vec::with_capacity(samples);
    for i in 0..samples {
        if let Some(elapsed) = round_trip(format!("round-trip-{i}")).await {
            measured.push(elapsed);
        }
    }
    Latency::from_samples(
        &measured,
        (samples - measured.len()) as u64,
        Duration::from_secs(1),
    )
}

/// A log of `aggregates` plugins with `events` records in all.
fn plugin_log(
    aggregates: usize,
    events: usize,
    poison_every: Option<usize>,
) -> Vec<(String, Vec<Entry>)> {
    let per_aggregate = events.div_ceil(aggregates.max(1));
    (0..aggregates)
        .map(|a| {
            let id = format!("bench-{a:06}");
            let entries = plugin_history(&id, per_aggregate)
                .into_iter()
                .enumerate()
                .map(|(round, event)| match poison_every {
                    Some(every) if (a * per_aggregate + round) % every == every / 2 => {
                        Entry::Poison
                    }
                    _ => Entry::Event(event),
                })
                .collect();
            (format!("plugin:{id}"), entries)
        })
        .collect()
}

/// Sum of the catalog's checkpoints: the records it has read.
async fn catalog_progress(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(next_offset), 0)::bigint FROM catalog.checkpoints")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// How fast the projection workers folded a log, and the most memory they held.
pub struct CatchUp {
    pub events_per_s: f64,
    pub peak_mib: f64,
    /// Where the CPU went while they folded it.
    pub cpu: CpuShares,
    /// The catalog's batches, and the mean milliseconds of each stage of one.
    pub batch_stages: Vec<(&'static str, f64)>,
}

/// The stages of a consumer's batch, as its `/metrics` names them, and as figures.
const BATCH_STAGES: [(&str, &str); 5] = [
    ("locked", "batch_locked_ms"),
    ("handled", "batch_handled_ms"),
    ("written", "batch_written_ms"),
    (
        "dead_letters_acknowledged",
        "batch_dead_letters_acknowledged_ms",
    ),
    ("committed", "batch_committed_ms"),
];

/// The catalog's batches so far and the mean milliseconds of each stage, from `/metrics`.
async fn batch_stages(projections: &Platform) -> Vec<(&'static str, f64)> {
    let series = |stage: &str, part: &str| {
        format!(
            "plexica_consumer_batch_stage_seconds_{part}{{consumer=\"catalog\",stage=\"{stage}\"}}"
        )
    };
    let batches = projections.metric(&series("committed", "count")).await;
    let mut figures = vec![("batches", batches)];
    for (stage, figure) in BATCH_STAGES {
        let seconds = projections.metric(&series(stage, "sum")).await;
        figures.push((figure, seconds * 1000.0 / batches.max(1.0)));
    }
    figures
}

/// Starts the projection workers on a log of `records` and measures, from their first
/// commit to the last record, how fast they fold it.
pub async fn projections_catch_up(
    isolation: &Isolation,
    registry: &str,
    records: usize,
    log: &Path,
) -> CatchUp {
    sqlx::query("DROP SCHEMA IF EXISTS catalog CASCADE")
        .execute(&isolation.pool)
        .await
        .expect("the catalog is dropped");
    let projections =
        Platform::start(PLATFORM, "projections", isolation, Some(registry), log).await;
    let total = i64::try_from(records).unwrap_or(i64::MAX);
    let deadline = Instant::now() + Duration::from_secs(1800);
    let (first_at, first, cpu) = loop {
        let done = catalog_progress(&isolation.pool).await;
        if done > 0 {
            break (Instant::now(), done, CpuSpan::start(projections.pid()));
        }
        assert!(Instant::now() < deadline, "the projections never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    loop {
        let done = catalog_progress(&isolation.pool).await;
        if done >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projections did not catch up: {done}/{total}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = first_at.elapsed();
    let cpu = cpu.end();
    let memory = projections.memory();
    let batch_stages = batch_stages(&projections).await;
    projections.stop().await;
    CatchUp {
        events_per_s: (total - first) as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        peak_mib: memory.peak_mib,
        cpu,
        batch_stages,
    }
}

/// A log for the projection scenarios, written once and folded by every run.
pub struct PreparedLog {
    isolation: Isolation,
    registry: String,
    records: usize,
    healthy_records: usize,
}

impl PreparedLog {
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    pub fn records(&self) -> usize {
        self.records
    }
}

pub async fn prepare_plugin_log(
    registry: &str,
    aggregates: usize,
    events: usize,
    poison_every: Option<usize>,
) -> PreparedLog {
    let isolation = Isolation::fresh().await;
    let log = plugin_log(aggregates, events, poison_every);
    let healthy_records = log
        .iter()
        .filter(|(_, entries)| !entries.iter().any(|e| matches!(e, Entry::Poison)))
        .map(|(_, entries)| entries.len())
        .sum();
    let writer = LogWriter::new(&isolation, registry).await;
    let records = writer.write(log).await;
    PreparedLog {
        isolation,
        registry: registry.to_owned(),
        records,
        healthy_records,
    }
}

/// Projection rebuild from offset 0, beside the same row writes as raw batched upserts.
pub async fn rebuild(log: &PreparedLog, logs: &Path) -> Run {
    let rebuilt = projections_catch_up(
        &log.isolation,
        &log.registry,
        log.records,
        &logs.join("rebuild.log"),
    )
    .await;
    let raw = raw_upserts(&log.isolation.pool, log.records).await;
    let consumed = raw_consume(&log.isolation, log.records).await;
    let mut platform = Figures::from([("events_per_s", rebuilt.events_per_s)]);
    platform.extend(rebuilt.cpu.figures());
    platform.extend(rebuilt.batch_stages);
    Run {
        platform,
        baseline: Figures::from([("rows_per_s", raw), ("consumed_per_s", consumed)]),
    }
}

/// What the broker delivers at best: the same log read from offset 0 by one consumer
/// configured as the projections' are, each record's headers read and nothing written. The
/// rebuild can go no faster; the gap between the two is the platform's.
async fn raw_consume(isolation: &Isolation, records: usize) -> f64 {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    let consumer: StreamConsumer =
        infra::kafka::consumer_config(&isolation.kafka, "bench.raw-consume")
            .create()
            .expect("a consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for topic in isolation.topics.event_topics() {
        for partition in 0..isolation.kafka.partitions {
            assignment
                .add_partition_offset(&topic, partition, rdkafka::Offset::Beginning)
                .expect("a partition of the log");
        }
    }
    consumer.assign(&assignment).expect("assigned");
    let next = || async {
        tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("the broker delivers a record within a minute")
            .expect("a record")
    };
    // Timed from the first record, as the rebuild is from its first commit.
    drop(next().await);
    let started = Instant::now();
    let mut header_bytes = 0;
    for _ in 1..records {
        let message = next().await;
        header_bytes += message.headers().map_or(0, |headers| {
            headers
                .iter()
                .map(|header| header.value.map_or(0, <[u8]>::len))
                .sum::<usize>()
        });
    }
    assert!(header_bytes > 0, "the log's records carry their envelopes");
    records.saturating_sub(1) as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON)
}

/// Healthy-key throughput of the projections with poison records in the log, beside the
/// same load without poison.
pub async fn dead_letters(poisoned: &PreparedLog, clean: &PreparedLog, logs: &Path) -> Run {
    let with_poison = projections_catch_up(
        &poisoned.isolation,
        &poisoned.registry,
        poisoned.records,
        &logs.join("dlq-poison.log"),
    )
    .await;
    let healthy_share = poisoned.healthy_records as f64 / poisoned.records as f64;
    let without = projections_catch_up(
        &clean.isolation,
        &clean.registry,
        clean.records,
        &logs.join("dlq-clean.log"),
    )
    .await;
    let mut platform = Figures::from([
        (
            "healthy_events_per_s",
            with_poison.events_per_s * healthy_share,
        ),
        (
            "poison_records",
            (poisoned.records - poisoned.healthy_records) as f64,
        ),
    ]);
    platform.extend(with_poison.cpu.figures());
    platform.extend(with_poison.batch_stages);
    let mut baseline = Figures::from([("events_per_s", without.events_per_s)]);
    baseline.extend(without.cpu.figures());
    baseline.extend(without.batch_stages);
    Run { platform, baseline }
}

/// Writes, in batches of 500 upserts, as many rows as the projection wrote events, taking
/// the catalog's own rows into a copy of its tables: what Postgres allows at best.
async fn raw_upserts(pool: &PgPool, row_writes: usize) -> f64 {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'catalog' AND table_name <> 'checkpoints'",
    )
    .fetch_all(pool)
    .await
    .expect("the catalog's tables are listed");
    sqlx::raw_sql("DROP SCHEMA IF EXISTS bench_baseline CASCADE; CREATE SCHEMA bench_baseline")
        .execute(pool)
        .await
        .expect("the baseline schema is made");
    let mut batches = Vec::new();
    for table in &tables {
        sqlx::raw_sql(&format!(
            "CREATE TABLE bench_baseline.{table} (LIKE catalog.{table} INCLUDING ALL)"
        ))
        .execute(pool)
        .await
        .expect("the baseline table is made");
        let key: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = $1::regclass AND i.indisprimary",
        )
        .bind(format!("catalog.{table}"))
        .fetch_all(pool)
        .await
        .expect("the primary key is read");
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = 'catalog' AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .expect("the columns are read");
        let rows: Value = sqlx::query_scalar(&format!(
            "SELECT coalesce(jsonb_agg(t), '[]'::jsonb) FROM catalog.{table} t"
        ))
        .fetch_one(pool)
        .await
        .expect("the rows are read");
        let Value::Array(rows) = rows else { continue };
        if rows.is_empty() || key.is_empty() {
            continue;
        }
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !key.contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let conflict = if updates.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let statement = format!(
            "INSERT INTO bench_baseline.{table}
             SELECT * FROM jsonb_populate_recordset(NULL::bench_baseline.{table}, $1)
             ON CONFLICT ({}) {conflict}",
            key.join(", ")
        );
        for chunk in rows.chunks(500) {
            batches.push((statement.clone(), Value::Array(chunk.to_vec()), chunk.len()));
        }
    }
    if batches.is_empty() {
        return f64::NAN;
    }
    let started = Instant::now();
    let mut written = 0;
    let mut tx = pool.begin().await.expect("a transaction");
    'writes: loop {
        for (statement, rows, count) in &batches {
            sqlx::query(statement)
                .bind(rows)
                .execute(&mut *tx)
                .await
                .expect("the upsert runs");
            written += count;
            if written >= row_writes {
                break 'writes;
            }
        }
        // Commit per pass, as the projection commits per batch.
        tx.commit().await.expect("the pass commits");
        tx = pool.begin().await.expect("a transaction");
    }
    tx.commit().await.expect("the last pass commits");
    written as f64 / started.elapsed().as_secs_f64()
}

/// The plugin list query of the GraphQL scenario.
pub const PLUGIN_LIST_QUERY: &str =
    "{ plugins(first: 50) { totalCount edges { node { id name version status } } } }";

/// The read side serving a catalog of `plugins` ACTIVE plugins and `tenants` tenants that
/// each enable ten of them: the projection workers and the query API, each in a process of its
/// own (the command side and its sagas would take the synthesised log for their own).
pub struct ReadSide {
    projections: Platform,
    pub query_api: Platform,
    pub isolation: Isolation,
}

impl ReadSide {
    pub async fn stop(self) {
        self.query_api.stop().await;
        self.projections.stop().await;
    }
}

pub async fn prepare_plugin_list(p: &Parameters, registry: &str, logs: &Path) -> ReadSide {
    let isolation = Isolation::fresh().await;
    let ids: Vec<String> = (0..p.list_plugins)
        .map(|a| format!("listed-{a:05}"))
        .collect();
    let mut histories: Vec<(String, Vec<Entry>)> = ids
        .iter()
        .map(|id| {
            let events = plugin_history(id, 9)
                .into_iter()
                .map(Entry::Event)
                .collect();
            (format!("plugin:{id}"), events)
        })
        .collect();
    for t in 0..p.list_tenants {
        let tenant = uuid::Uuid::now_v7();
        let enabled: Vec<String> = (0..10)
            .map(|j| ids[(t * 7 + j * 13) % ids.len()].clone())
            .collect();
        let events = tenant_history(tenant, &enabled)
            .into_iter()
            .map(Entry::Event)
            .collect();
        histories.push((format!("tenant:{tenant}"), events));
    }
    let writer = LogWriter::new(&isolation, registry).await;
    let records = writer.write(histories).await;
    let projections = Platform::start(
        PLATFORM,
        "projections",
        &isolation,
        Some(registry),
        &logs.join("list-projections.log"),
    )
    .await;
    let query_api = Platform::start(
        PLATFORM,
        "query-api",
        &isolation,
        Some(registry),
        &logs.join("list-query-api.log"),
    )
    .await;
    let total = i64::try_from(records).unwrap_or(i64::MAX);
    let deadline = Instant::now() + Duration::from_secs(600);
    while catalog_progress(&isolation.pool).await < total {
        assert!(
            Instant::now() < deadline,
            "the catalog did not fold the plugin list"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ReadSide {
        projections,
        query_api,
        isolation,
    }
}

/// GraphQL plugin list (50 per page) at a fixed rate, beside the same SQL run directly.
pub async fn plugin_list(p: &Parameters, read_side: &ReadSide) -> Run {
    let api = Api::new(&read_side.query_api);
    let isolation = &read_side.isolation;
    let page = 50.min(p.list_plugins);
    let served = open_loop(p.list_rate, p.warm_up, p.measured, |_| {
        let api = api.clone();
        async move {
            let reply = api.graphql(&api.super_admin, PLUGIN_LIST_QUERY).await;
            reply["data"]["plugins"]["edges"]
                .as_array()
                .is_some_and(|edges| edges.len() == page)
        }
    })
    .await;
    let pool = isolation.pool.clone();
    let direct = open_loop(p.list_rate, p.warm_up, p.measured, |_| {
        let pool = pool.clone();
        async move { plugin_list_sql(&pool).await.is_ok() }
    })
    .await;
    Run {
        platform: latency_figures(&served),
        baseline: latency_figures(&direct),
    }
}

/// The statements the resolver runs for one page.
async fn plugin_list_sql(pool: &PgPool) -> Result<(), sqlx::Error> {
    let _page: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id, name, version, status FROM catalog.plugins
         WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2",
    )
    .bind(Option::<String>::None)
    .bind(51_i64)
    .fetch_all(pool)
    .await?;
    let _total: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog.plugins")
        .fetch_one(pool)
        .await?;
    Ok(())
}

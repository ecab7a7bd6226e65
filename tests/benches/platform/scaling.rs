//! How cost grows with the work: the same scenarios at sizes ten and a hundred times apart,
//! with the resident memory of the process doing the work at each size.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use tokio::time::Instant;

use crate::commands::Api;
use crate::load::open_loop;
use crate::scenarios::{self, Figures};
use crate::{PLATFORM, Parameters, step};
use end_to_end::process::{Isolation, Platform};

/// One row of the scaling table: one kind of work at one size.
#[derive(Debug, Serialize)]
pub struct Row {
    pub work: &'static str,
    pub size: usize,
    /// What `size` counts.
    pub of: &'static str,
    pub figures: Figures,
}

/// Every row, smallest size first within each kind of work.
pub async fn measure(p: &Parameters, registry: &str, logs: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for &events in &p.scale_rebuild_events {
        step(&format!("scaling: projection rebuild of {events} events"));
        let aggregates = (events / 10).max(1);
        let log = scenarios::prepare_plugin_log(registry, aggregates, events, None).await;
        let catch_up = scenarios::projections_catch_up(
            log.isolation(),
            registry,
            log.records(),
            &logs.join("scale-rebuild.log"),
        )
        .await;
        let mut figures = Figures::from([
            ("events_per_s", catch_up.events_per_s),
            ("resident_peak_mib", catch_up.peak_mib),
        ]);
        figures.extend(catch_up.cpu.figures());
        rows.push(Row {
            work: "projection rebuild",
            size: events,
            of: "events",
            figures,
        });
    }
    for &plugins in &p.scale_list_plugins {
        step(&format!(
            "scaling: GraphQL plugin list over {plugins} plugins"
        ));
        let sized = Parameters {
            list_plugins: plugins,
            ..p.clone()
        };
        let read_side = scenarios::prepare_plugin_list(&sized, registry, logs).await;
        let run = scenarios::plugin_list(&sized, &read_side).await;
        let memory = read_side.query_api.memory();
        rows.push(Row {
            work: "GraphQL plugin list",
            size: plugins,
            of: "plugins",
            figures: Figures::from([
                ("p50_ms", run.platform["p50_ms"]),
                ("p99_ms", run.platform["p99_ms"]),
                ("resident_peak_mib", memory.peak_mib),
            ]),
        });
        read_side.stop().await;
    }
    for &aggregates in &p.scale_aggregates {
        step(&format!(
            "scaling: command replies with {aggregates} aggregates owned"
        ));
        rows.push(commands_over(p, registry, aggregates, logs).await);
    }
    for &letters in &p.scale_dead_letters {
        step(&format!(
            "scaling: DLQ admin queries over {letters} dead letters"
        ));
        rows.push(dead_letter_queries(p, registry, letters, logs).await);
    }
    rows
}

/// A command side started on a log of `aggregates` registered plugins: how long it takes from
/// its start until it has taken every partition (the directory read, then for each partition
/// its lease, its fences and the rebuild of its aggregates; no command is sent meanwhile),
/// then until its saga runner has replayed the log, then registrations at the usual rate.
async fn commands_over(p: &Parameters, registry: &str, aggregates: usize, logs: &Path) -> Row {
    // One registration each.
    let log = scenarios::prepare_plugin_log(registry, aggregates, aggregates, None).await;
    let isolation = log.isolation();
    let started = Instant::now();
    let platform = Platform::start(
        PLATFORM,
        "command-api",
        isolation,
        Some(registry),
        &logs.join("scale-commands.log"),
    )
    .await;
    let api = Api::new(&platform);
    let deadline = started + Duration::from_secs(1800);
    let partitions = f64::from(isolation.kafka.partitions);
    // The processor takes (lease, fences, its aggregates rebuilt) each partition it is
    // assigned, before any command.
    while platform
        .metric("plexica_partition_acquisitions_total")
        .await
        < partitions
    {
        assert!(
            Instant::now() < deadline,
            "the processor did not take its partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = started.elapsed();
    // A new command side also replays the log into its saga runner (its schema is new here):
    // replies are measured once that is done, and the replay is its own figure.
    sagas_caught_up(isolation, deadline).await;
    let caught_up = started.elapsed();
    let replies = open_loop(p.command_rate, p.warm_up, p.measured, |n| {
        let api = api.clone();
        async move { register(&api, &format!("new-{n:06}")).await }
    })
    .await;
    let memory = platform.memory();
    // Where a slow reply spent its time: the bus's produce, the processor's stages.
    let metrics = logs.join(format!("scale-commands-{aggregates}.metrics"));
    if let Err(error) = std::fs::write(&metrics, platform.metrics().await) {
        eprintln!("cannot write {}: {error}", metrics.display());
    }
    platform.stop().await;
    Row {
        work: "command reply",
        size: aggregates,
        of: "aggregates owned",
        figures: Figures::from([
            ("takeover_s", takeover.as_secs_f64()),
            ("caught_up_s", caught_up.as_secs_f64()),
            ("p50_ms", replies.p50),
            ("p99_ms", replies.p99),
            ("errors", replies.errors as f64),
            ("resident_peak_mib", memory.peak_mib),
        ]),
    }
}

/// Waits until the saga runner has read the whole plugin topic as it is now.
async fn sagas_caught_up(isolation: &Isolation, deadline: Instant) {
    let topic = isolation.topics.plugins();
    let ends = infra::kafka::LogEnds::new(&isolation.kafka)
        .expect("a client")
        .of(vec![topic.clone()])
        .await
        .expect("the plugin topic's end");
    let end: i64 = ends
        .iter()
        .flat_map(|(_, watermarks)| watermarks)
        .map(|(_, high)| high)
        .sum();
    loop {
        let read: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM sagas.checkpoints WHERE topic = $1",
        )
        .bind(&topic)
        .fetch_one(&isolation.pool)
        .await
        .unwrap_or(0);
        if read >= end {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the saga runner did not read the log: {read}/{end}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers plugin `id`; whether the command was decided (201) within the reply timeout.
async fn register(api: &Api, id: &str) -> bool {
    api.command_status(
        Method::POST,
        "/api/v1/plugins",
        &api.super_admin,
        Some(&end_to_end::manifest(id, "1.0.0")),
    )
    .await
        == Some(201)
}

/// The DLQ's admin queries (the newest page; one key's dead letters) over `letters` stored
/// dead letters, at the usual rate.
async fn dead_letter_queries(p: &Parameters, registry: &str, letters: usize, logs: &Path) -> Row {
    let isolation = Isolation::fresh().await;
    // The DLQ worker makes its tables; the query API serves them.
    let worker = Platform::start(
        PLATFORM,
        "dlq-worker",
        &isolation,
        Some(registry),
        &logs.join("scale-dlq-worker.log"),
    )
    .await;
    worker.stop().await;
    // Stored as the DLQ worker stores them, without going through the log: the query is
    // measured, not the way in (which the DLQ scenario measures).
    sqlx::query(
        "INSERT INTO dlq.dead_letters
             (id, consumer, original_topic, original_partition, original_offset, record_key,
              event_type, error_class, error_message, attempts, status, headers, dlq_partition,
              dlq_offset, fingerprint)
         SELECT gen_random_uuid(), 'catalog', 'core.plugins', n % 3, n, 'plugin:p-' || (n % 1000),
                'core.plugin.enabled', 'permanent', 'undecodable record ' || n, 3, 'FAILED',
                '{}'::jsonb, n % 3, n, 'f' || (n % 20)
         FROM generate_series(1, $1) AS n",
    )
    .bind(i64::try_from(letters).unwrap_or(i64::MAX))
    .execute(&isolation.pool)
    .await
    .expect("the dead letters are stored");
    sqlx::query("ANALYZE dlq.dead_letters")
        .execute(&isolation.pool)
        .await
        .expect("the table is analysed");
    let query_api = Platform::start(
        PLATFORM,
        "query-api",
        &isolation,
        Some(registry),
        &logs.join("scale-dlq-query-api.log"),
    )
    .await;
    let api = Api::new(&query_api);
    let newest =
        "{ deadLetters(first: 50) { totalCount edges { node { id status errorMessage } } } }";
    let of_key = r#"{ deadLetters(filter: {consumer: "catalog", key: "plugin:p-7"}, first: 50) { edges { node { id } } } }"#;
    let queries = open_loop(p.list_rate, p.warm_up, p.measured, |n| {
        let api = api.clone();
        let query = if n % 2 == 0 { newest } else { of_key };
        async move {
            let reply = api.graphql(&api.super_admin, query).await;
            reply["errors"].is_null() && !reply["data"]["deadLetters"].is_null()
        }
    })
    .await;
    let memory = query_api.memory();
    query_api.stop().await;
    Row {
        work: "DLQ admin queries",
        size: letters,
        of: "dead letters",
        figures: Figures::from([
            ("p50_ms", queries.p50),
            ("p99_ms", queries.p99),
            ("errors", queries.errors as f64),
            ("resident_peak_mib", memory.peak_mib),
        ]),
    }
}

/// The scaling table, as the README shows it.
pub fn print(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    println!("\n| work | size | the platform | resident memory (peak) |\n|---|---|---|---|");
    for row in rows {
        let figure = |key: &str| row.figures.get(key).copied().unwrap_or(f64::NAN);
        let shown = match row.work {
            "projection rebuild" => format!(
                "{:.0} events/s (cores: broker {:.2}, Postgres {:.2}, projections {:.2})",
                figure("events_per_s"),
                figure("broker_cores"),
                figure("postgres_cores"),
                figure("platform_cores")
            ),
            "command reply" => format!(
                "takeover {:.1} s, sagas caught up {:.1} s; p50 {:.1} ms, p99 {:.1} ms",
                figure("takeover_s"),
                figure("caught_up_s"),
                figure("p50_ms"),
                figure("p99_ms")
            ),
            _ => format!(
                "p50 {:.1} ms, p99 {:.1} ms",
                figure("p50_ms"),
                figure("p99_ms")
            ),
        };
        println!(
            "| {} | {} {} | {shown} | {:.0} MiB |",
            row.work,
            row.size,
            row.of,
            figure("resident_peak_mib")
        );
    }
}

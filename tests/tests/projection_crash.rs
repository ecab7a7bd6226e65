//! The projections are exactly-once across crashes: killed mid-batch ten times while a
//! stream of 5,000 events arrives, they end with read models equal to a fresh rebuild.

use std::collections::BTreeMap;
use std::time::Duration;

use end_to_end::log::{Entry, LogWriter, plugin_history, tenant_history};
use end_to_end::process::{Isolation, Platform};
use sqlx::PgPool;
use tokio::time::Instant;

const PLATFORM: &str = env!("CARGO_BIN_EXE_platform-under-test");

/// Every table of `schema` but the checkpoints: row count and a digest of its rows.
async fn checksums(pool: &PgPool, schema: &str) -> BTreeMap<String, (i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = $1 AND table_name <> 'checkpoints' ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .expect("the tables are listed");
    let mut sums = BTreeMap::new();
    for table in tables {
        let sum: (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))
             FROM {schema}.{table} t"
        ))
        .fetch_one(pool)
        .await
        .expect("the table is summed");
        sums.insert(table, sum);
    }
    sums
}

/// The rows of each differing table that only one of `catalog_after_kills` (-) and the
/// fresh rebuild `catalog` (+) has, a few of each, to say what went wrong.
async fn differing_rows(
    pool: &PgPool,
    after_kills: &BTreeMap<String, (i64, String)>,
    rebuilt: &BTreeMap<String, (i64, String)>,
) -> String {
    let mut report = String::new();
    for (table, sum) in after_kills {
        if rebuilt.get(table) == Some(sum) {
            continue;
        }
        for (sign, left, right) in [
            ("-", "catalog_after_kills", "catalog"),
            ("+", "catalog", "catalog_after_kills"),
        ] {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "(SELECT t::text FROM {left}.{table} t EXCEPT SELECT t::text FROM {right}.{table} t)
                 ORDER BY 1 LIMIT 5"
            ))
            .fetch_all(pool)
            .await
            .unwrap_or_default();
            for row in rows {
                report.push_str(&format!("{table} {sign} {row}\n"));
            }
        }
    }
    report
}

async fn progress(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(next_offset), 0)::bigint FROM catalog.checkpoints")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

async fn caught_up(pool: &PgPool, records: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress(pool).await < records {
        assert!(
            Instant::now() < deadline,
            "the catalog did not reach {records} records: {}",
            progress(pool).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 400 plugins with 10 events each and 100 tenants that enable 9 plugins each: 5,000 records
/// in 10 waves.
fn waves() -> Vec<Vec<(String, Vec<Entry>)>> {
    let ids: Vec<String> = (0..400).map(|i| format!("crash-{i:03}")).collect();
    (0..10)
        .map(|wave| {
            let mut histories: Vec<(String, Vec<Entry>)> = ids[wave * 40..(wave + 1) * 40]
                .iter()
                .map(|id| {
                    let events = plugin_history(id, 10)
                        .into_iter()
                        .map(Entry::Event)
                        .collect();
                    (format!("plugin:{id}"), events)
                })
                .collect();
            for t in 0..10 {
                let tenant = uuid::Uuid::now_v7();
                let enabled: Vec<String> = (0..9)
                    .map(|j| ids[(wave * 40 + t * 3 + j) % 400].clone())
                    .collect();
                let events = tenant_history(tenant, &enabled)
                    .into_iter()
                    .map(Entry::Event)
                    .collect();
                histories.push((format!("tenant:{tenant}"), events));
            }
            histories
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn projections_killed_mid_batch_ten_times_equal_a_fresh_rebuild() {
    let mut isolation = Isolation::fresh().await;
    // A killed worker's partitions wait for its session to expire before the next one gets
    // them: keep that pause short, ten kills in a row.
    isolation.kafka.session_timeout_ms = 1_500;
    let registry = isolation.schema_registry().await;
    let writer = LogWriter::new(&isolation, &registry.registry_url).await;
    let logs = std::env::temp_dir().join(format!("plexica-crash-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&logs).expect("a log folder");
    let log = logs.join("projections.log");

    let mut written = 0i64;
    let mut kills_with_work_pending = 0;
    for wave in waves() {
        written += i64::try_from(writer.write(wave).await).unwrap_or(0);
        let worker = Platform::start(
            PLATFORM,
            "projections",
            &isolation,
            Some(&registry.registry_url),
            &log,
        )
        .await;
        // Kill it as soon as it has committed a batch of this wave, with the rest to come.
        let before = progress(&isolation.pool).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while progress(&isolation.pool).await == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        worker.kill().await;
        if progress(&isolation.pool).await < written {
            kills_with_work_pending += 1;
        }
    }
    assert_eq!(written, 5_000);
    assert!(
        kills_with_work_pending >= 5,
        "only {kills_with_work_pending} of 10 kills found records still to apply"
    );

    let worker = Platform::start(
        PLATFORM,
        "projections",
        &isolation,
        Some(&registry.registry_url),
        &log,
    )
    .await;
    caught_up(&isolation.pool, written).await;
    worker.stop().await;
    let after_kills = checksums(&isolation.pool, "catalog").await;

    sqlx::query("ALTER SCHEMA catalog RENAME TO catalog_after_kills")
        .execute(&isolation.pool)
        .await
        .expect("the killed generation is set aside");
    let worker = Platform::start(
        PLATFORM,
        "projections",
        &isolation,
        Some(&registry.registry_url),
        &log,
    )
    .await;
    caught_up(&isolation.pool, written).await;
    worker.stop().await;
    let rebuilt = checksums(&isolation.pool, "catalog").await;

    assert_eq!(after_kills.len(), rebuilt.len());
    assert!(
        after_kills
            .get("plugins")
            .is_some_and(|(rows, _)| *rows == 400)
    );
    if after_kills != rebuilt {
        let differences = differing_rows(&isolation.pool, &after_kills, &rebuilt).await;
        panic!("the read models after the kills differ from the fresh rebuild:\n{differences}");
    }
    registry.stop().await;
    let _ = std::fs::remove_dir_all(&logs);
}

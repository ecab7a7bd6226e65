//! The consumer's tables (checkpoints, parked keys, the ledger of their dead letters, resolved
//! dead letters) and the batch's locked reads of them.

use std::collections::{BTreeSet, HashMap, HashSet};

use rdkafka::message::Message;
use sqlx::{PgConnection, PgPool};

use super::admission::{CHECKPOINT_COLUMNS, Checkpoint, CheckpointRow, TopicPartition};
use super::delivered::Delivered;
use super::parking::{ParkedKey, ParkedKeys};
use crate::dead_letter::dead_letter_id;

/// Creates the consumer's schema, checkpoint table and the handler's tables when missing.
pub async fn prepare_schema(pool: &PgPool, schema: &str, ddl: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Several instances may start at once; CREATE ... IF NOT EXISTS is not safe concurrently.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    // The schema is created only when missing: a plugin's consumer runs as a role that may
    // use its own schema but create none (CREATE SCHEMA IF NOT EXISTS checks that right first).
    let statements = format!(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{schema}') THEN
                 CREATE SCHEMA {schema};
             END IF;
         END $$;
         CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
             topic text NOT NULL,
             partition integer NOT NULL,
             next_offset bigint NOT NULL,
             fence_epoch bigint NOT NULL DEFAULT 0,
             updated_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (topic, partition)
         );
         ALTER TABLE {schema}.checkpoints
             ADD COLUMN IF NOT EXISTS rewound boolean NOT NULL DEFAULT false,
             ADD COLUMN IF NOT EXISTS replay_until bigint,
             ADD COLUMN IF NOT EXISTS replay_from_ms bigint,
             ADD COLUMN IF NOT EXISTS replay_fence_epoch bigint;
         -- The fences read, so that a replay from an offset starts under the fence in force
         -- there: a zombie's record after a fence stays void when it is read again.
         CREATE TABLE IF NOT EXISTS {schema}.fences (
             topic text NOT NULL,
             partition integer NOT NULL,
             fence_offset bigint NOT NULL,
             epoch bigint NOT NULL,
             PRIMARY KEY (topic, partition, fence_offset)
         );
         {ddl}"
    );
    // Without bind parameters this is sent as one simple query, so several statements run.
    sqlx::Executor::execute(&mut *tx, statements.as_str()).await?;
    tx.commit().await
}

/// The tables of a consumer that parks keys and takes retries.
pub(super) fn retry_ddl(schema: &str) -> String {
    format!(
        "
         CREATE TABLE IF NOT EXISTS {schema}.parked_keys (
             record_key bytea PRIMARY KEY,
             head_id uuid NOT NULL,
             last_id uuid NOT NULL,
             parked_records integer NOT NULL DEFAULT 1,
             parked_at timestamptz NOT NULL DEFAULT now()
         );
         -- Dead letters of parked keys, `released` once their key is: one that was not resolved
         -- by then was settled without being applied (discarded, or left to an admin), and a
         -- rebuild passes over it too.
         CREATE TABLE IF NOT EXISTS {schema}.dead_lettered (
             dead_letter_id uuid PRIMARY KEY,
             record_key bytea NOT NULL,
             released boolean NOT NULL DEFAULT false
         );
         CREATE INDEX IF NOT EXISTS dead_lettered_parked
             ON {schema}.dead_lettered (record_key) WHERE NOT released;
         -- Dead letters this consumer processed on retry: a retry delivered twice is skipped.
         CREATE TABLE IF NOT EXISTS {schema}.resolved_dead_letters (
             dead_letter_id uuid PRIMARY KEY,
             resolved_at timestamptz NOT NULL DEFAULT now()
         );"
    )
}

pub(super) async fn load_checkpoints(
    pool: &PgPool,
    schema: &str,
) -> Result<HashMap<TopicPartition, i64>, sqlx::Error> {
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(&format!(
        "SELECT topic, partition, next_offset FROM {schema}.checkpoints"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, p, o)| (TopicPartition::new(t, p), o))
        .collect())
}

/// Locks the checkpoint rows of `partitions` in the batch's transaction `tx` and returns
/// them (a partition never read starts at [`Checkpoint::START`]).
pub(super) async fn lock_checkpoints(
    tx: &mut PgConnection,
    schema: &str,
    partitions: &BTreeSet<TopicPartition>,
) -> Result<HashMap<TopicPartition, Checkpoint>, sqlx::Error> {
    let (topics, numbers): (Vec<&str>, Vec<i32>) = partitions
        .iter()
        .map(|tp| (tp.topic.as_str(), tp.partition))
        .unzip();
    // A partition never read has no row, and `FOR UPDATE` of a missing row locks nothing: the
    // partition's old owner, still finishing a batch, and its new one would both apply its
    // first records. So the row is created first (in one order for every instance, so that
    // two batches never wait for each other in a cycle); the second instance waits on it.
    sqlx::query(&format!(
        "INSERT INTO {schema}.checkpoints (topic, partition, next_offset)
         SELECT topic, partition, 0 FROM unnest($1::text[], $2::integer[]) AS p(topic, partition)
         ORDER BY 1, 2
         ON CONFLICT (topic, partition) DO NOTHING"
    ))
    .bind(&topics)
    .bind(&numbers)
    .execute(&mut *tx)
    .await?;
    #[derive(sqlx::FromRow)]
    struct Row {
        topic: String,
        partition: i32,
        #[sqlx(flatten)]
        checkpoint: CheckpointRow,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT topic, partition, {CHECKPOINT_COLUMNS} FROM {schema}.checkpoints
         WHERE (topic, partition) IN (SELECT * FROM unnest($1::text[], $2::integer[]))
         ORDER BY topic, partition FOR UPDATE"
    ))
    .bind(&topics)
    .bind(&numbers)
    .fetch_all(&mut *tx)
    .await?;
    let mut checkpoints: HashMap<TopicPartition, Checkpoint> = partitions
        .iter()
        .map(|tp| (tp.clone(), Checkpoint::START))
        .collect();
    checkpoints.extend(rows.into_iter().map(|row| {
        (
            TopicPartition::new(row.topic, row.partition),
            row.checkpoint.into(),
        )
    }));
    Ok(checkpoints)
}

/// Brings `parked` up to date for a batch's `keys` from the consumer's table, in the batch's
/// transaction `tx` once its checkpoints are locked. What this instance remembers may be
/// stale: the partitions' previous owner may have parked a key after this instance loaded
/// them, and the instance that reads the retry topic may have released one. The rows stay
/// locked until the batch commits, so a release waits for a batch parking behind the same
/// key, and the reverse.
pub(super) async fn lock_parked_keys(
    tx: &mut PgConnection,
    schema: &str,
    keys: &BTreeSet<&[u8]>,
    parked: &mut ParkedKeys,
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let wanted: Vec<&[u8]> = keys.iter().copied().collect();
    // In key order, so that two batches never wait for each other in a cycle.
    let rows: Vec<(Vec<u8>, uuid::Uuid, uuid::Uuid)> = sqlx::query_as(&format!(
        "SELECT record_key, head_id, last_id FROM {schema}.parked_keys
         WHERE record_key = ANY($1) ORDER BY record_key FOR UPDATE"
    ))
    .bind(&wanted)
    .fetch_all(&mut *tx)
    .await?;
    for key in keys {
        parked.remove(*key);
    }
    parked.extend(
        rows.into_iter()
            .map(|(key, head, last)| (key, ParkedKey { head, last })),
    );
    Ok(())
}

/// The records of `batch` that the serving generation in schema `serving` dead-lettered and
/// settled without applying them, by dead letter id (consumer `name`'s).
pub(super) async fn skipped_dead_letters(
    tx: &mut PgConnection,
    serving: &str,
    name: &str,
    batch: &[Delivered<'_>],
) -> Result<HashSet<uuid::Uuid>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = batch
        .iter()
        .map(|m| dead_letter_id(name, m.topic(), m.partition(), m.offset()))
        .collect();
    let skipped: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
        "SELECT d.dead_letter_id FROM {serving}.dead_lettered d
         WHERE d.dead_letter_id = ANY($1) AND d.released
           AND NOT EXISTS (SELECT 1 FROM {serving}.resolved_dead_letters r
                           WHERE r.dead_letter_id = d.dead_letter_id)"
    ))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(skipped.into_iter().collect())
}

pub(super) async fn load_parked_keys(
    pool: &PgPool,
    schema: &str,
) -> Result<ParkedKeys, sqlx::Error> {
    let rows: Vec<(Vec<u8>, uuid::Uuid, uuid::Uuid)> = sqlx::query_as(&format!(
        "SELECT record_key, head_id, last_id FROM {schema}.parked_keys"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, head, last)| (key, ParkedKey { head, last }))
        .collect())
}

/// Records a fence read at `offset` of a partition.
pub(super) async fn record_fence(
    tx: &mut PgConnection,
    schema: &str,
    key: &TopicPartition,
    offset: i64,
    epoch: i64,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.fences (topic, partition, fence_offset, epoch)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
    ))
    .bind(&key.topic)
    .bind(key.partition)
    .bind(offset)
    .bind(epoch)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The epoch of the last fence before `offset` in a partition: the one in force there.
pub(super) async fn fence_in_force(
    tx: &mut PgConnection,
    schema: &str,
    key: &TopicPartition,
    offset: i64,
) -> sqlx::Result<i64> {
    let epoch: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT max(epoch) FROM {schema}.fences
         WHERE topic = $1 AND partition = $2 AND fence_offset < $3"
    ))
    .bind(&key.topic)
    .bind(key.partition)
    .bind(offset)
    .fetch_one(&mut *tx)
    .await?;
    Ok(epoch.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Returns once `task` waits on a lock in Postgres or has ended.
    async fn waits_or_ends<T>(pool: &PgPool, task: &tokio::task::JoinHandle<T>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !task.is_finished() {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(pool)
            .await
            .expect("the activity is read");
            if waiting > 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the second transaction neither waits nor ends"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Two instances of a consumer, the partition's old owner still finishing its batch while
    /// the new one starts: the second batch waits for the first and sees where it ended, even
    /// for a partition that had no checkpoint row yet (`FOR UPDATE` of a missing row locks
    /// nothing, and both applied the partition's first records).
    #[tokio::test(flavor = "multi_thread")]
    async fn two_instances_cannot_both_apply_a_partitions_first_batch() {
        let (_config, pool) = crate::testing::fresh_database("consumer").await;
        prepare_schema(&pool, "firsts", "")
            .await
            .expect("the schema is created");
        let partition = TopicPartition::new("core.plugins", 0);
        let partitions = BTreeSet::from([partition.clone()]);

        let mut first = pool.begin().await.expect("a transaction");
        let seen = lock_checkpoints(&mut first, "firsts", &partitions)
            .await
            .expect("the first batch locks its partition");
        assert_eq!(seen[&partition], Checkpoint::START);

        let second = tokio::spawn({
            let (pool, partitions) = (pool.clone(), partitions.clone());
            async move {
                let mut tx = pool.begin().await.expect("a transaction");
                let seen = lock_checkpoints(&mut tx, "firsts", &partitions).await;
                tx.rollback().await.expect("rolled back");
                seen
            }
        });
        // The second batch either waits on the first one's lock or (the defect) went on.
        waits_or_ends(&pool, &second).await;
        sqlx::query(
            "INSERT INTO firsts.checkpoints (topic, partition, next_offset) VALUES ($1, $2, 7)
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
        )
        .bind(&partition.topic)
        .bind(partition.partition)
        .execute(&mut *first)
        .await
        .expect("the first batch's checkpoint");
        first.commit().await.expect("the first batch commits");

        let seen = second
            .await
            .expect("the second batch ran")
            .expect("the second batch locks its partition");
        assert_eq!(
            seen[&partition].next_offset, 7,
            "the second instance must see the first one's batch, not apply it again"
        );
    }

    /// After a takeover, a key that the partition's old owner parked in its last batch (after
    /// the new owner loaded what was parked) is parked for the new owner's first batch too, so
    /// a later record of the key does not overtake its head (issue 12 item 6).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_key_parked_by_the_old_owner_is_parked_for_the_new_one() {
        let (_config, pool) = crate::testing::fresh_database("consumer").await;
        prepare_schema(&pool, "takeover", &retry_ddl("takeover"))
            .await
            .expect("the schema is created");
        let partitions = BTreeSet::from([TopicPartition::new("core.plugins", 1)]);
        let key: &[u8] = b"plugin:crm";
        // What the new owner knew when it was given the partition: nothing parked.
        let known = load_parked_keys(&pool, "takeover")
            .await
            .expect("the parked keys");
        assert!(known.is_empty());

        let mut old = pool.begin().await.expect("a transaction");
        lock_checkpoints(&mut old, "takeover", &partitions)
            .await
            .expect("the old owner locks the partition");
        let head = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO takeover.parked_keys (record_key, head_id, last_id) VALUES ($1, $2, $2)",
        )
        .bind(key)
        .bind(head)
        .execute(&mut *old)
        .await
        .expect("the old owner parks the key");

        let new = tokio::spawn({
            let (pool, partitions) = (pool.clone(), partitions.clone());
            async move {
                let mut tx = pool.begin().await.expect("a transaction");
                lock_checkpoints(&mut tx, "takeover", &partitions)
                    .await
                    .expect("the new owner locks the partition");
                let mut parked = known;
                lock_parked_keys(&mut tx, "takeover", &BTreeSet::from([key]), &mut parked)
                    .await
                    .expect("the batch's keys are read");
                parked
            }
        });
        waits_or_ends(&pool, &new).await;
        old.commit().await.expect("the old owner's batch commits");
        let parked = new.await.expect("the new owner's batch ran");
        assert_eq!(parked.get(key), Some(&ParkedKey { head, last: head }));
    }

    /// A release, read from the retry topic by one instance, and a batch of another instance
    /// that parks one more record behind the same key take turns: the release then knows of
    /// the newer last dead letter, so one naming the older is seen to be stale.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_release_waits_for_a_batch_parking_behind_the_same_key() {
        let (_config, pool) = crate::testing::fresh_database("consumer").await;
        prepare_schema(&pool, "turns", &retry_ddl("turns"))
            .await
            .expect("the schema is created");
        let key: &[u8] = b"plugin:crm";
        let (head, later) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        sqlx::query(
            "INSERT INTO turns.parked_keys (record_key, head_id, last_id) VALUES ($1, $2, $2)",
        )
        .bind(key)
        .bind(head)
        .execute(&pool)
        .await
        .expect("the key is parked");

        let mut parking = pool.begin().await.expect("a transaction");
        let mut parked = ParkedKeys::new();
        lock_parked_keys(&mut parking, "turns", &BTreeSet::from([key]), &mut parked)
            .await
            .expect("the batch's keys are read");
        assert_eq!(parked.get(key), Some(&ParkedKey { head, last: head }));
        sqlx::query("UPDATE turns.parked_keys SET last_id = $2 WHERE record_key = $1")
            .bind(key)
            .bind(later)
            .execute(&mut *parking)
            .await
            .expect("one more record is parked");

        let release = tokio::spawn({
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await.expect("a transaction");
                let mut parked = ParkedKeys::new();
                lock_parked_keys(&mut tx, "turns", &BTreeSet::from([key]), &mut parked)
                    .await
                    .expect("the release's key is read");
                parked
            }
        });
        waits_or_ends(&pool, &release).await;
        parking.commit().await.expect("the parking batch commits");
        let seen = release.await.expect("the release ran");
        assert_eq!(seen.get(key), Some(&ParkedKey { head, last: later }));
    }
}

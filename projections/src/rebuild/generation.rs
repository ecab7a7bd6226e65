//! A new generation of a projection: its consumer writing into the shadow schema, its
//! progress against the serving generation, and the one transaction that swaps them.

use infra::consumer::{ConsumerSpec, PROGRESS_CHANNEL};
use sqlx::PgPool;

/// How long the swap waits for the consumers' batches and the queries under way to finish.
const SWAP_LOCK_TIMEOUT: &str = "2s";

pub(super) enum Swap {
    Done,
    /// The new generation is behind the serving one again.
    NotYet,
    Refused(String),
    Lost,
}

/// The new generation of a projection: its consumer, writing into the shadow schema.
pub(super) struct Generation {
    pub(super) spec: ConsumerSpec,
}

impl Generation {
    pub(super) fn of(live: &ConsumerSpec, rebuild: uuid::Uuid) -> Self {
        let spec = ConsumerSpec {
            // Its own group, so that it reads from offset 0 beside the serving consumer.
            group: format!("{}.rebuild.{}", live.group, rebuild.simple()),
            schema: format!("{}_rebuild", live.schema),
            // Retries go to the serving generation; its resolved dead letters come over at
            // the swap. The name stays the consumer's, so a record that fails here has the
            // dead letter id it has in the serving generation.
            retry_topic: None,
            // What the serving generation dead-lettered and settled, it passes over.
            serving: Some(live.schema.clone()),
            // What it applies is the log's past, which no consumer follows.
            hands_on: false,
            ..live.clone()
        };
        Self { spec }
    }

    pub(super) fn schema(&self) -> &str {
        &self.spec.schema
    }

    pub(super) async fn clear(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema()))
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Records read of the projection's topics, and records in them.
    pub(super) async fn progress(
        &self,
        pool: &PgPool,
        ends: Option<&[infra::kafka::TopicEnds]>,
    ) -> Result<(i64, i64), sqlx::Error> {
        let checkpoints: Vec<(String, i32, i64)> = match sqlx::query_as(&format!(
            "SELECT topic, partition, next_offset FROM {}.checkpoints",
            self.schema()
        ))
        .fetch_all(pool)
        .await
        {
            Ok(rows) => rows,
            // Its consumer has not created the schema yet.
            Err(error) if infra::postgres::is_undefined_table(&error) => vec![],
            Err(error) => return Err(error),
        };
        let next = |topic: &str, partition: i32| {
            checkpoints
                .iter()
                .find(|c| c.0 == topic && c.1 == partition)
                .map(|c| c.2)
        };
        let Some(ends) = ends else {
            let done = checkpoints
                .iter()
                .filter(|c| self.spec.topics.contains(&c.0))
                .map(|c| c.2)
                .sum();
            return Ok((done, 0));
        };
        let (mut done, mut total) = (0, 0);
        for (topic, watermarks) in ends {
            for (partition, (low, high)) in (0..).zip(watermarks) {
                total += high - low;
                done += next(topic, partition).map_or(0, |n| (n - low).clamp(0, high - low));
            }
        }
        Ok((done, total))
    }

    /// Whether the new generation has read as far as the serving one on every partition.
    pub(super) async fn caught_up(
        &self,
        pool: &PgPool,
        live: &ConsumerSpec,
    ) -> Result<bool, sqlx::Error> {
        Ok(behind(pool, live, self.schema()).await? == Some(0))
    }

    /// Swaps the new generation in, if it has caught up (checked again under the locks).
    pub(super) async fn swap(
        &self,
        pool: &PgPool,
        live: &ConsumerSpec,
        owner: &str,
        id: uuid::Uuid,
        done: i64,
        total: i64,
    ) -> Result<Swap, sqlx::Error> {
        let (serving, shadow) = (live.schema.as_str(), self.schema());
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        // Every batch of either consumer starts by locking its checkpoint rows: with both
        // tables locked, neither commits anything until the swap has.
        sqlx::query(&format!(
            "LOCK TABLE {serving}.checkpoints, {shadow}.checkpoints IN ACCESS EXCLUSIVE MODE"
        ))
        .execute(&mut *tx)
        .await?;
        if behind(&mut *tx, live, shadow).await? != Some(0) {
            return Ok(Swap::NotYet);
        }
        // A record the new generation could not apply is parked there; swapping would lose
        // it from the read model unless the serving generation parks the same key behind the
        // same dead letter (then the DLQ keeps it for both).
        let differing: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT convert_from(record_key, 'UTF8')
             FROM {shadow}.parked_keys n FULL JOIN {serving}.parked_keys o USING (record_key)
             WHERE n.head_id IS DISTINCT FROM o.head_id
             ORDER BY 1 LIMIT 10"
        ))
        .fetch_all(&mut *tx)
        .await?;
        if !differing.is_empty() {
            return Ok(Swap::Refused(format!(
                "the new generation and the serving one do not park the same keys ({}): \
                 the DLQ holds records one of them could not apply; settle them and rebuild again",
                differing.join(", ")
            )));
        }
        // What belongs to the consumer, not to a generation, comes over.
        let topics: Vec<&str> = live.topics.iter().map(String::as_str).collect();
        // Several statements without parameters: sent as one simple query.
        let statements = format!(
            "DELETE FROM {shadow}.parked_keys;
             INSERT INTO {shadow}.parked_keys (record_key, head_id, last_id, parked_records, parked_at)
                 SELECT record_key, head_id, last_id, parked_records, parked_at
                 FROM {serving}.parked_keys;
             DELETE FROM {shadow}.dead_lettered;
             INSERT INTO {shadow}.dead_lettered (dead_letter_id, record_key, released)
                 SELECT dead_letter_id, record_key, released FROM {serving}.dead_lettered;
             INSERT INTO {shadow}.resolved_dead_letters (dead_letter_id, resolved_at)
                 SELECT dead_letter_id, resolved_at FROM {serving}.resolved_dead_letters
                 ON CONFLICT DO NOTHING;"
        );
        sqlx::Executor::execute(&mut *tx, statements.as_str()).await?;
        sqlx::query(&format!(
            "INSERT INTO {shadow}.checkpoints
                 (topic, partition, next_offset, fence_epoch, updated_at, rewound, replay_until,
                  replay_from_ms, replay_fence_epoch)
             SELECT topic, partition, next_offset, fence_epoch, updated_at, rewound, replay_until,
                    replay_from_ms, replay_fence_epoch
             FROM {serving}.checkpoints WHERE NOT (topic = ANY($1))
             ON CONFLICT (topic, partition) DO NOTHING"
        ))
        .bind(&topics)
        .execute(&mut *tx)
        .await?;
        let retired = format!("{serving}_retired");
        let statements = format!(
            "DROP SCHEMA IF EXISTS {retired} CASCADE;
             ALTER SCHEMA {serving} RENAME TO {retired};
             ALTER SCHEMA {shadow} RENAME TO {serving};
             DROP SCHEMA {retired} CASCADE;"
        );
        sqlx::Executor::execute(&mut *tx, statements.as_str()).await?;
        let recorded = sqlx::query(
            "UPDATE projection_rebuilds
             SET status = 'SWAPPED', finished_at = now(), heartbeat_at = now(),
                 events_done = greatest(events_done, $3), events_total = greatest(events_total, $4)
             WHERE id = $1 AND owner = $2 AND status = 'RUNNING'",
        )
        .bind(id)
        .bind(owner)
        .bind(done)
        .bind(total)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() != 1 {
            return Ok(Swap::Lost);
        }
        // Queries waiting for a consistency token look at the new checkpoints.
        let wake = serde_json::json!({"consumer": live.name, "positions": []}).to_string();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PROGRESS_CHANNEL)
            .bind(wake)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Swap::Done)
    }
}

/// Partitions of the projection's topics where the `shadow` generation is behind the serving
/// one; none when the shadow has no checkpoints yet.
async fn behind<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    live: &ConsumerSpec,
    shadow: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let result = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {serving}.checkpoints o
         LEFT JOIN {shadow}.checkpoints n USING (topic, partition)
         WHERE o.topic = ANY($1) AND coalesce(n.next_offset, 0) < o.next_offset",
        serving = live.schema
    ))
    .bind(&live.topics)
    .fetch_one(executor)
    .await;
    match result {
        Ok(count) => Ok(Some(count)),
        Err(error) if infra::postgres::is_undefined_table(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

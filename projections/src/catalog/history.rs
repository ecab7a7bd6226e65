//! The event history the catalog keeps beside its rows: who did what, when, and from which
//! command, written once per batch.

use infra::dead_letter::Origin;
use sqlx::PgConnection;

/// Who did what, when and from which command, one entry per applied event, as columns.
#[derive(Default)]
pub(super) struct History {
    topic: Vec<String>,
    partition: Vec<i32>,
    log_offset: Vec<i64>,
    aggregate_key: Vec<String>,
    aggregate_version: Vec<Option<i64>>,
    event_type: Vec<String>,
    event_id: Vec<uuid::Uuid>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    user_id: Vec<Option<String>>,
    tenant_id: Vec<Option<String>>,
    causation_id: Vec<Option<uuid::Uuid>>,
    correlation_id: Vec<Option<String>>,
}

/// Header text as Postgres `text` takes it: without NUL characters, which would fail the
/// whole batch's history (a header is the writer's, not checked like the event).
fn text(value: &str) -> String {
    value.replace('\0', "")
}

impl History {
    pub(super) fn push(&mut self, origin: &Origin, envelope: &event_schemas::Envelope) {
        let optional = |value: &Option<String>| value.as_deref().map(text);
        self.topic.push(origin.topic.clone());
        self.partition.push(origin.partition);
        self.log_offset.push(origin.offset);
        self.aggregate_key
            .push(text(envelope.subject.as_deref().unwrap_or_default()));
        self.aggregate_version.push(
            envelope
                .aggregate_version
                .and_then(|v| i64::try_from(v).ok()),
        );
        self.event_type.push(text(&envelope.event_type));
        self.event_id.push(envelope.id);
        self.occurred_at.push(envelope.time);
        self.user_id.push(optional(&envelope.user_id));
        self.tenant_id.push(optional(&envelope.tenant_id));
        self.causation_id.push(envelope.causation_id);
        self.correlation_id.push(optional(&envelope.correlation_id));
    }

    /// Keeps the entries: one row per event, keyed by its place in the log, so applying it
    /// again records nothing. Returns the operations (correlation ids) of the new rows.
    pub(super) async fn record(
        self,
        tx: &mut PgConnection,
        schema: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        if self.topic.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(&format!(
            "WITH inserted AS (
                 INSERT INTO {schema}.event_history
                     (topic, partition, log_offset, aggregate_key, aggregate_version, event_type,
                      event_id, occurred_at, user_id, tenant_id, causation_id, correlation_id)
                 SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[],
                     $5::bigint[], $6::text[], $7::uuid[], $8::timestamptz[], $9::text[],
                     $10::text[], $11::uuid[], $12::text[])
                 ON CONFLICT (topic, partition, log_offset) DO NOTHING
                 RETURNING correlation_id
             )
             SELECT DISTINCT correlation_id FROM inserted WHERE correlation_id IS NOT NULL"
        ))
        .bind(self.topic)
        .bind(self.partition)
        .bind(self.log_offset)
        .bind(self.aggregate_key)
        .bind(self.aggregate_version)
        .bind(self.event_type)
        .bind(self.event_id)
        .bind(self.occurred_at)
        .bind(self.user_id)
        .bind(self.tenant_id)
        .bind(self.causation_id)
        .bind(self.correlation_id)
        .fetch_all(tx)
        .await
    }
}

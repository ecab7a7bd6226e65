//! The webhook endpoints as the admin API lists them and the deliverer reads them. A deleted
//! endpoint keeps its row, marked deleted, so that an older event applied again finds a newer
//! version and changes nothing.

use event_schemas::events::WebhookEvent;
use sqlx::PgConnection;
use uuid::Uuid;

pub(super) fn table(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.webhooks (
             id uuid PRIMARY KEY,
             tenant_id uuid,
             url text NOT NULL,
             events text[] NOT NULL,
             description text,
             -- The aggregate version of the event that set its secret (registered or the
             -- last secret-rotated): the secret is derived from it.
             secret_version bigint NOT NULL,
             deleted boolean NOT NULL DEFAULT false,
             -- Set while the endpoint is disabled: nothing is delivered to it meanwhile.
             disabled_at timestamptz,
             disabled_reason text,
             created_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL,
             aggregate_version bigint NOT NULL
         );
         CREATE INDEX IF NOT EXISTS webhooks_by_tenant ON {schema}.webhooks (tenant_id, created_at)
             WHERE NOT deleted;"
    )
}

/// Applies one endpoint event of aggregate version `version`, unless the row is at it or past.
pub(super) async fn apply(
    tx: &mut PgConnection,
    schema: &str,
    event: &WebhookEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    let Ok(id) = Uuid::parse_str(event.webhook_id()) else {
        // The processor writes only ids it parsed: nothing to show for another.
        return Ok(());
    };
    let newer = format!("{schema}.webhooks.aggregate_version < $2");
    match event {
        WebhookEvent::Registered(e) => sqlx::query(&format!(
            "INSERT INTO {schema}.webhooks
                 (id, aggregate_version, secret_version, tenant_id, url, events, description,
                  created_at, updated_at)
             VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (id) DO UPDATE
             SET tenant_id = excluded.tenant_id, url = excluded.url, events = excluded.events,
                 description = excluded.description, secret_version = excluded.secret_version,
                 deleted = false,
                 updated_at = excluded.updated_at, aggregate_version = excluded.aggregate_version
             WHERE {newer}"
        ))
        .bind(id)
        .bind(version)
        .bind(e.tenant_id.as_deref().and_then(|t| Uuid::parse_str(t).ok()))
        .bind(&e.url)
        .bind(&e.events)
        .bind(&e.description)
        .bind(time)
        .execute(&mut *tx)
        .await?,
        WebhookEvent::Updated(e) => sqlx::query(&format!(
            "UPDATE {schema}.webhooks
             SET url = $3, events = $4, description = $5, updated_at = $6, aggregate_version = $2
             WHERE id = $1 AND {newer}"
        ))
        .bind(id)
        .bind(version)
        .bind(&e.url)
        .bind(&e.events)
        .bind(&e.description)
        .bind(time)
        .execute(&mut *tx)
        .await?,
        WebhookEvent::SecretRotated(_) => sqlx::query(&format!(
            "UPDATE {schema}.webhooks SET secret_version = $2, updated_at = $3, aggregate_version = $2
             WHERE id = $1 AND {newer}"
        ))
        .bind(id)
        .bind(version)
        .bind(time)
        .execute(&mut *tx)
        .await?,
        WebhookEvent::Disabled(e) => sqlx::query(&format!(
            "UPDATE {schema}.webhooks
             SET disabled_at = $3, disabled_reason = $4, updated_at = $3, aggregate_version = $2
             WHERE id = $1 AND {newer}"
        ))
        .bind(id)
        .bind(version)
        .bind(time)
        .bind(&e.reason)
        .execute(&mut *tx)
        .await?,
        WebhookEvent::Enabled(_) => sqlx::query(&format!(
            "UPDATE {schema}.webhooks
             SET disabled_at = NULL, disabled_reason = NULL, updated_at = $3, aggregate_version = $2
             WHERE id = $1 AND {newer}"
        ))
        .bind(id)
        .bind(version)
        .bind(time)
        .execute(&mut *tx)
        .await?,
        WebhookEvent::Deleted(_) => sqlx::query(&format!(
            "UPDATE {schema}.webhooks SET deleted = true, updated_at = $3, aggregate_version = $2
             WHERE id = $1 AND {newer}"
        ))
        .bind(id)
        .bind(version)
        .bind(time)
        .execute(&mut *tx)
        .await?,
    };
    Ok(())
}

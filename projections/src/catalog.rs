//! The catalog: plugins, tenants and the plugins each tenant enabled, as the query API
//! serves them (spec 004 section 7), and each plugin's registry entry (published versions,
//! classification, reviews).

use std::sync::Arc;

use event_schemas::events::{
    PluginEvent, PluginRegistered, RegistryEvent, ReviewRevised, ReviewSubmitted, TenantCreated,
    TenantEvent,
};
use event_schemas::{Codec, CoreEvent, Topics};
use futures::future::BoxFuture;
use infra::consumer::{ConsumerSpec, HandlerError, Record, RecordHandler};
use infra::postgres::channels;
use sqlx::PgConnection;

/// Postgres schema of the catalog's tables; the query API reads it.
pub const SCHEMA: &str = "catalog";

pub fn spec(topics: &Topics) -> ConsumerSpec {
    ConsumerSpec {
        name: "catalog".to_owned(),
        group: topics.group("plexica.projection.catalog"),
        schema: SCHEMA.to_owned(),
        topics: vec![topics.plugins(), topics.tenants(), topics.registry()],
        fenced: true,
        dlq_topic: topics.dlq(),
        retry_topic: Some(topics.retry("catalog")),
        park_keys: true,
        serving: None,
    }
}

pub struct Catalog {
    codec: Arc<Codec>,
    /// Where it writes: [`SCHEMA`], or the shadow schema of a rebuild.
    schema: String,
    /// The history of the batch's applied events, written at its end in one statement.
    history: History,
}

impl Catalog {
    /// The catalog written into `schema`: the one the query API reads is [`SCHEMA`].
    pub fn new(codec: Arc<Codec>, schema: impl Into<String>) -> Self {
        Self {
            codec,
            schema: schema.into(),
            history: History::default(),
        }
    }
}

impl RecordHandler for Catalog {
    const TRANSACTIONAL: bool = true;

    fn ddl(&self, schema: &str) -> String {
        ddl(schema)
    }

    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            use rdkafka::Message;
            let event = self.codec.decode_event(record.message.payload()).await?;
            let (time, version) = match &record.envelope {
                Some(envelope) => (
                    envelope.time,
                    envelope
                        .aggregate_version
                        .and_then(|v| i64::try_from(v).ok())
                        .unwrap_or(0),
                ),
                None => (chrono::Utc::now(), 0),
            };
            apply_event(tx, &self.schema, &event, time, version).await?;
            if let Some(envelope) = &record.envelope {
                self.history.push(record.message, envelope);
            }
            Ok(())
        })
    }

    fn begin_batch(&mut self) {
        self.history = History::default();
    }

    fn end_batch<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let history = std::mem::take(&mut self.history);
            history.record(tx, &self.schema).await
        })
    }
}

/// Who did what, when and from which command, one entry per applied event, as columns.
#[derive(Default)]
struct History {
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
    fn push(
        &mut self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        envelope: &event_schemas::Envelope,
    ) {
        use rdkafka::Message;
        let optional = |value: &Option<String>| value.as_deref().map(text);
        self.topic.push(message.topic().to_owned());
        self.partition.push(message.partition());
        self.log_offset.push(message.offset());
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
    /// again records nothing. The operations' subscribers are told, at commit, of new rows.
    async fn record(self, tx: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
        if self.topic.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
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
             SELECT pg_notify('{}', correlation_id) FROM inserted
             WHERE correlation_id IS NOT NULL AND {}",
            channels::OPERATION_PROGRESSED,
            serves_queries(schema)
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
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// The catalog's tables in `schema`. Columns added after the first release come as
/// `ADD COLUMN IF NOT EXISTS`, so an existing catalog gains them without a rebuild.
fn ddl(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.plugins (
             id text PRIMARY KEY,
             name text NOT NULL,
             version text NOT NULL,
             description text,
             status text NOT NULL,
             manifest jsonb NOT NULL,
             aggregate_version bigint NOT NULL,
             created_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL
         );
         CREATE TABLE IF NOT EXISTS {schema}.tenants (
             id uuid PRIMARY KEY,
             slug text NOT NULL,
             name text NOT NULL,
             status text NOT NULL,
             aggregate_version bigint NOT NULL,
             created_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL
         );
         CREATE INDEX IF NOT EXISTS tenants_slug ON {schema}.tenants (slug);
         -- Spec 004's tenant_plugins: a row from the tenant's first enablement on; a
         -- disablement keeps it, configuration included. `aggregate_version` is the tenant's.
         CREATE TABLE IF NOT EXISTS {schema}.tenant_plugins (
             tenant_id uuid NOT NULL,
             plugin_id text NOT NULL,
             enabled boolean NOT NULL,
             configuration jsonb NOT NULL,
             plugin_version text NOT NULL,
             aggregate_version bigint NOT NULL,
             enabled_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL,
             PRIMARY KEY (tenant_id, plugin_id)
         );
         -- The last install step completed, while INSTALLING.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS install_step text;
         -- The version an update is installing, while it runs.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS pending_version text;
         -- Why the last install or update failed, until the next attempt.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS last_error text;
         -- Why the platform disabled the plugin, while DISABLED.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS status_reason text;
         -- A plugin's registry entry, keyed by plugin id but versioned by its own aggregate
         -- (`registry:{{id}}`), and kept apart from `plugins` because its events are on
         -- another topic and may be read before the plugin's registration.
         CREATE TABLE IF NOT EXISTS {schema}.plugin_registry (
             plugin_id text PRIMARY KEY,
             categories text[] NOT NULL DEFAULT '{{}}',
             tags text[] NOT NULL DEFAULT '{{}}',
             aggregate_version bigint NOT NULL,
             updated_at timestamptz NOT NULL
         );
         CREATE INDEX IF NOT EXISTS plugin_registry_categories
             ON {schema}.plugin_registry USING gin (categories);
         CREATE INDEX IF NOT EXISTS plugin_registry_tags
             ON {schema}.plugin_registry USING gin (tags);
         -- A super admin vouches for the plugin in the marketplace.
         ALTER TABLE {schema}.plugin_registry
             ADD COLUMN IF NOT EXISTS verified boolean NOT NULL DEFAULT false;
         CREATE TABLE IF NOT EXISTS {schema}.plugin_versions (
             plugin_id text NOT NULL,
             version text NOT NULL,
             manifest jsonb NOT NULL,
             release_notes text,
             yanked boolean NOT NULL DEFAULT false,
             yank_reason text,
             deprecated boolean NOT NULL DEFAULT false,
             deprecation_message text,
             published_at timestamptz NOT NULL,
             PRIMARY KEY (plugin_id, version)
         );
         -- Every event applied, by aggregate: the history of who did what, when, from which
         -- command, and the steps of an operation (a saga's events share its correlation id).
         CREATE TABLE IF NOT EXISTS {schema}.event_history (
             topic text NOT NULL,
             partition integer NOT NULL,
             log_offset bigint NOT NULL,
             aggregate_key text NOT NULL,
             aggregate_version bigint,
             event_type text NOT NULL,
             event_id uuid NOT NULL,
             occurred_at timestamptz NOT NULL,
             user_id text,
             tenant_id text,
             causation_id uuid,
             correlation_id text,
             PRIMARY KEY (topic, partition, log_offset)
         );
         CREATE INDEX IF NOT EXISTS event_history_aggregate
             ON {schema}.event_history (aggregate_key, aggregate_version);
         CREATE INDEX IF NOT EXISTS event_history_correlation
             ON {schema}.event_history (correlation_id);
         CREATE TABLE IF NOT EXISTS {schema}.plugin_reviews (
             plugin_id text NOT NULL,
             reviewer text NOT NULL,
             rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
             comment text,
             submitted_at timestamptz NOT NULL,
             updated_at timestamptz NOT NULL,
             PRIMARY KEY (plugin_id, reviewer)
         );"
    )
}

/// Applies one event of the `core.*` topics to the catalog. `version` is the event's aggregate
/// version: the guard that makes applying an event twice, or an older one, a no-op.
async fn apply_event(
    tx: &mut PgConnection,
    schema: &str,
    event: &CoreEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), HandlerError> {
    let result = match event {
        CoreEvent::Plugin(event) => plugin_event(tx, schema, event, time, version).await,
        CoreEvent::Registry(event) => match event.plugin_id() {
            Some(plugin_id) => registry_event(tx, schema, plugin_id, event, time, version).await,
            // Reservations have no read model.
            None => return Ok(()),
        },
        CoreEvent::Tenant(event) => {
            let id = uuid::Uuid::parse_str(event.tenant_id())
                .map_err(|err| HandlerError::Permanent(Box::new(err)))?;
            tenant_event(tx, schema, id, event, time, version).await
        }
    };
    result.map_err(HandlerError::from)
}

async fn plugin_registered(
    tx: &mut PgConnection,
    schema: &str,
    e: &PluginRegistered,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    let manifest = logged_json(&e.manifest);
    // The version guard makes applying an event twice a no-op.
    sqlx::query(&announcing_plugin(schema, &format!(
        "INSERT INTO {schema}.plugins
             (id, name, version, description, status, manifest, aggregate_version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'REGISTERED', $5, $6, $7, $7)
         ON CONFLICT (id) DO UPDATE
         SET name = excluded.name, version = excluded.version, description = excluded.description,
             status = excluded.status, manifest = excluded.manifest,
             install_step = NULL, pending_version = NULL, last_error = NULL, status_reason = NULL,
             aggregate_version = excluded.aggregate_version, updated_at = excluded.updated_at
         WHERE {schema}.plugins.aggregate_version < excluded.aggregate_version"
    )))
    .bind(&e.plugin_id)
    .bind(&e.name)
    .bind(&e.version)
    .bind(&e.description)
    .bind(manifest)
    .bind(version)
    .bind(time)
    .execute(tx)
    .await?;
    Ok(())
}

/// `write` (an INSERT or UPDATE of `plugins`) that also tells the query API's subscribers, at
/// commit, which plugin it changed: one round trip, and nothing when the version guard held.
fn announcing_plugin(schema: &str, write: &str) -> String {
    format!(
        "WITH changed AS ({write} RETURNING id)
         SELECT pg_notify('{}', id) FROM changed WHERE {}",
        channels::PLUGIN_CHANGED,
        serves_queries(schema)
    )
}

/// Whether writes to `schema` are what the query API serves, as an SQL literal: a rebuild's
/// shadow generation announces nothing, or subscribers would hear of every event twice.
fn serves_queries(schema: &str) -> &'static str {
    if schema == SCHEMA { "true" } else { "false" }
}

/// JSON carried as text in an event (a manifest, a tenant's configuration) as stored: JSON
/// null for a text that is not JSON.
fn logged_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Applies a plugin event. The registration writes the whole row; every later event changes
/// some of its columns, guarded by the aggregate version like every write of the catalog.
async fn plugin_event(
    tx: &mut PgConnection,
    schema: &str,
    event: &PluginEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    // `$1` is the plugin id, `$2` the aggregate version, `$3` the event time; the event's own
    // values follow from `$4`, all as text.
    let (set, values): (&str, Vec<Option<String>>) = match event {
        PluginEvent::Registered(e) => return plugin_registered(tx, schema, e, time, version).await,
        PluginEvent::InstallRequested(_) => (
            "status = 'INSTALLING', install_step = NULL, last_error = NULL, status_reason = NULL",
            vec![],
        ),
        PluginEvent::InstallStepCompleted(e) => ("install_step = $4", vec![Some(e.step.clone())]),
        PluginEvent::Installed(_) => ("status = 'INSTALLED', install_step = NULL", vec![]),
        PluginEvent::InstallFailed(e) => (
            "status = 'REGISTERED', install_step = NULL, last_error = $4",
            vec![Some(format!("install failed at {}: {}", e.step, e.error))],
        ),
        PluginEvent::Enabled(_) => ("status = 'ACTIVE', status_reason = NULL", vec![]),
        PluginEvent::Disabled(e) => (
            "status = 'DISABLED', status_reason = $4",
            vec![e.reason.clone()],
        ),
        PluginEvent::UpdateRequested(e) => (
            "pending_version = $4, last_error = NULL",
            vec![Some(e.target_version.clone())],
        ),
        PluginEvent::Updated(e) => (
            "version = $4, name = $5, description = $6, manifest = $7::jsonb,
             pending_version = NULL",
            vec![
                Some(e.version.clone()),
                Some(e.name.clone()),
                e.description.clone(),
                Some(logged_json(&e.manifest).to_string()),
            ],
        ),
        PluginEvent::UpdateFailed(e) => (
            "pending_version = NULL, last_error = $4",
            vec![Some(format!(
                "update to {} failed: {}",
                e.target_version, e.error
            ))],
        ),
        PluginEvent::UninstallRequested(_) => ("status = 'UNINSTALLING'", vec![]),
        PluginEvent::Uninstalled(_) => ("status = 'UNINSTALLED', status_reason = NULL", vec![]),
    };
    let sql = announcing_plugin(
        schema,
        &format!(
            "UPDATE {schema}.plugins
         SET {set}, aggregate_version = $2, updated_at = $3
         WHERE id = $1 AND aggregate_version < $2"
        ),
    );
    let mut query = sqlx::query(&sql)
        .bind(event.plugin_id())
        .bind(version)
        .bind(time);
    for value in values {
        query = query.bind(value);
    }
    query.execute(tx).await?;
    Ok(())
}

/// Applies an event of a plugin's registry entry, once: the entry's row carries the registry
/// aggregate's version, raised first, so an event at or below it changes nothing.
async fn registry_event(
    tx: &mut PgConnection,
    schema: &str,
    plugin_id: &str,
    event: &RegistryEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    let raised = sqlx::query(&format!(
        "INSERT INTO {schema}.plugin_registry (plugin_id, aggregate_version, updated_at)
         VALUES ($1, $2, $3)
         ON CONFLICT (plugin_id) DO UPDATE
         SET aggregate_version = excluded.aggregate_version, updated_at = excluded.updated_at
         WHERE {schema}.plugin_registry.aggregate_version < excluded.aggregate_version"
    ))
    .bind(plugin_id)
    .bind(version)
    .bind(time)
    .execute(&mut *tx)
    .await?;
    if raised.rows_affected() == 0 {
        return Ok(());
    }
    match event {
        RegistryEvent::VersionPublished(e) => {
            sqlx::query(&format!(
                "INSERT INTO {schema}.plugin_versions
                 (plugin_id, version, manifest, release_notes, published_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (plugin_id, version) DO NOTHING"
            ))
            .bind(plugin_id)
            .bind(&e.version)
            .bind(logged_json(&e.manifest))
            .bind(&e.release_notes)
            .bind(time)
            .execute(tx)
            .await?
        }
        RegistryEvent::VersionYanked(e) => {
            sqlx::query(&format!(
                "UPDATE {schema}.plugin_versions SET yanked = true, yank_reason = $3
             WHERE plugin_id = $1 AND version = $2"
            ))
            .bind(plugin_id)
            .bind(&e.version)
            .bind(&e.reason)
            .execute(tx)
            .await?
        }
        RegistryEvent::VersionDeprecated(e) => {
            sqlx::query(&format!(
                "UPDATE {schema}.plugin_versions SET deprecated = true, deprecation_message = $3
             WHERE plugin_id = $1 AND version = $2"
            ))
            .bind(plugin_id)
            .bind(&e.version)
            .bind(&e.message)
            .execute(tx)
            .await?
        }
        RegistryEvent::PluginVerificationChanged(e) => {
            sqlx::query(&format!(
                "UPDATE {schema}.plugin_registry SET verified = $2 WHERE plugin_id = $1"
            ))
            .bind(plugin_id)
            .bind(e.verified)
            .execute(tx)
            .await?
        }
        RegistryEvent::PluginClassified(e) => {
            sqlx::query(&format!(
                "UPDATE {schema}.plugin_registry SET categories = $2, tags = $3
             WHERE plugin_id = $1"
            ))
            .bind(plugin_id)
            .bind(&e.categories)
            .bind(&e.tags)
            .execute(tx)
            .await?
        }
        RegistryEvent::ReviewSubmitted(ReviewSubmitted {
            reviewer,
            rating,
            comment,
            ..
        })
        | RegistryEvent::ReviewRevised(ReviewRevised {
            reviewer,
            rating,
            comment,
            ..
        }) => {
            sqlx::query(&format!(
                "INSERT INTO {schema}.plugin_reviews
                 (plugin_id, reviewer, rating, comment, submitted_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (plugin_id, reviewer) DO UPDATE
             SET rating = excluded.rating, comment = excluded.comment,
                 updated_at = excluded.updated_at"
            ))
            .bind(plugin_id)
            .bind(reviewer)
            // A rating out of range fails the CHECK: a data error, so the record is dead-lettered.
            .bind(i16::try_from(*rating).unwrap_or(0))
            .bind(comment)
            .bind(time)
            .execute(tx)
            .await?
        }
        RegistryEvent::NamesReserved(_) | RegistryEvent::NamesReleased(_) => return Ok(()),
    };
    Ok(())
}

/// Applies a tenant event. The creation writes the whole row; every later event sets its
/// status, guarded by the aggregate version like every write of the catalog.
async fn tenant_event(
    tx: &mut PgConnection,
    schema: &str,
    id: uuid::Uuid,
    event: &TenantEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    let status = match event {
        TenantEvent::Created(e) => return tenant_created(tx, schema, id, e, time, version).await,
        TenantEvent::Suspended(_) => "SUSPENDED",
        TenantEvent::Reactivated(_) => "ACTIVE",
        TenantEvent::Deleted(_) => "DELETED",
        TenantEvent::PluginEnabled(_)
        | TenantEvent::PluginDisabled(_)
        | TenantEvent::PluginConfigured(_) => {
            return tenant_plugin_event(tx, schema, id, event, time, version).await;
        }
    };
    sqlx::query(&format!(
        "UPDATE {schema}.tenants
         SET status = $3, aggregate_version = $2, updated_at = $4
         WHERE id = $1 AND aggregate_version < $2"
    ))
    .bind(id)
    .bind(version)
    .bind(status)
    .bind(time)
    .execute(tx)
    .await?;
    Ok(())
}

/// Applies an event about one of a tenant's plugins to its `tenant_plugins` row, guarded by
/// the tenant's aggregate version like every write of the catalog.
async fn tenant_plugin_event(
    tx: &mut PgConnection,
    schema: &str,
    tenant: uuid::Uuid,
    event: &TenantEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    let (plugin_id, set, configuration) = match event {
        TenantEvent::PluginEnabled(e) => {
            // The first enablement inserts the row; a later one enables it again.
            sqlx::query(&format!(
                "INSERT INTO {schema}.tenant_plugins
                     (tenant_id, plugin_id, enabled, configuration, plugin_version,
                      aggregate_version, enabled_at, updated_at)
                 VALUES ($1, $2, true, $3, $4, $5, $6, $6)
                 ON CONFLICT (tenant_id, plugin_id) DO UPDATE
                 SET enabled = true, configuration = excluded.configuration,
                     plugin_version = excluded.plugin_version,
                     aggregate_version = excluded.aggregate_version,
                     enabled_at = excluded.enabled_at, updated_at = excluded.updated_at
                 WHERE {schema}.tenant_plugins.aggregate_version < excluded.aggregate_version"
            ))
            .bind(tenant)
            .bind(&e.plugin_id)
            .bind(logged_json(&e.configuration))
            .bind(&e.plugin_version)
            .bind(version)
            .bind(time)
            .execute(tx)
            .await?;
            return Ok(());
        }
        TenantEvent::PluginDisabled(e) => (&e.plugin_id, "enabled = false", None),
        TenantEvent::PluginConfigured(e) => (
            &e.plugin_id,
            "configuration = $5",
            Some(logged_json(&e.configuration)),
        ),
        _ => return Ok(()),
    };
    let sql = format!(
        "UPDATE {schema}.tenant_plugins
         SET {set}, aggregate_version = $3, updated_at = $4
         WHERE tenant_id = $1 AND plugin_id = $2 AND aggregate_version < $3"
    );
    let mut query = sqlx::query(&sql)
        .bind(tenant)
        .bind(plugin_id)
        .bind(version)
        .bind(time);
    if let Some(configuration) = configuration {
        query = query.bind(configuration);
    }
    query.execute(tx).await?;
    Ok(())
}

async fn tenant_created(
    tx: &mut PgConnection,
    schema: &str,
    id: uuid::Uuid,
    e: &TenantCreated,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.tenants (id, slug, name, status, aggregate_version, created_at, updated_at)
         VALUES ($1, $2, $3, 'ACTIVE', $4, $5, $5)
         ON CONFLICT (id) DO UPDATE
         SET slug = excluded.slug, name = excluded.name, status = excluded.status,
             aggregate_version = excluded.aggregate_version, updated_at = excluded.updated_at
         WHERE {schema}.tenants.aggregate_version < excluded.aggregate_version"
    ))
    .bind(id)
    .bind(&e.slug)
    .bind(&e.name)
    .bind(version)
    .bind(time)
    .execute(tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use event_schemas::events::{
        PluginDisabled, PluginEnabled, PluginInstallFailed, PluginInstallRequested,
        PluginInstallStepCompleted, PluginInstalled, PluginUninstallRequested, PluginUninstalled,
        PluginUpdateFailed, PluginUpdateRequested, PluginUpdated,
    };
    use sqlx::Row;

    use super::*;

    /// The plugin's row, as the query API would read it.
    #[derive(Debug, PartialEq)]
    struct PluginRow {
        status: String,
        version: String,
        name: String,
        manifest_version: Option<String>,
        install_step: Option<String>,
        pending_version: Option<String>,
        last_error: Option<String>,
        status_reason: Option<String>,
        aggregate_version: i64,
    }

    async fn row(conn: &mut PgConnection) -> PluginRow {
        let r = sqlx::query(&format!(
            "SELECT status, version, name, manifest->>'version' AS manifest_version,
                    install_step, pending_version, last_error, status_reason, aggregate_version
             FROM {SCHEMA}.plugins WHERE id = 'crm'"
        ))
        .fetch_one(conn)
        .await
        .expect("the plugin has a row");
        PluginRow {
            status: r.get("status"),
            version: r.get("version"),
            name: r.get("name"),
            manifest_version: r.get("manifest_version"),
            install_step: r.get("install_step"),
            pending_version: r.get("pending_version"),
            last_error: r.get("last_error"),
            status_reason: r.get("status_reason"),
            aggregate_version: r.get("aggregate_version"),
        }
    }

    struct Log<'c> {
        conn: &'c mut PgConnection,
        version: i64,
    }

    impl Log<'_> {
        /// Appends an event at the next aggregate version and applies it.
        async fn apply(&mut self, event: PluginEvent) -> PluginRow {
            self.version += 1;
            apply_event(
                self.conn,
                SCHEMA,
                &CoreEvent::Plugin(event),
                chrono::Utc::now(),
                self.version,
            )
            .await
            .expect("applies");
            row(self.conn).await
        }
    }

    fn registered(version: &str) -> PluginEvent {
        PluginEvent::Registered(PluginRegistered {
            plugin_id: "crm".into(),
            name: "CRM".into(),
            version: version.into(),
            description: None,
            manifest: format!(r#"{{"id":"crm","name":"CRM","version":"{version}"}}"#),
        })
    }

    fn plain<T>(make: impl FnOnce(String, String) -> T) -> T {
        make("crm".into(), "1.2.0".into())
    }

    #[tokio::test]
    async fn the_tenant_lifecycle_shows_in_the_catalog() {
        use event_schemas::events::{TenantDeleted, TenantReactivated, TenantSuspended};

        let (_config, pool) = infra::testing::fresh_database("catalog").await;
        infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
            .await
            .expect("the DDL applies");
        let mut conn = pool.acquire().await.expect("connection");
        let id = uuid::Uuid::now_v7();
        let tenant_id = id.to_string();
        let created = TenantEvent::Created(TenantCreated {
            tenant_id: tenant_id.clone(),
            slug: "acme".into(),
            name: "Acme".into(),
        });
        let suspended = TenantEvent::Suspended(TenantSuspended {
            tenant_id: tenant_id.clone(),
            reason: Some("unpaid".into()),
        });
        let reactivated = TenantEvent::Reactivated(TenantReactivated {
            tenant_id: tenant_id.clone(),
        });
        let deleted = TenantEvent::Deleted(TenantDeleted { tenant_id });

        let mut apply_and_read = async |event: &TenantEvent, version: i64| -> (String, i64) {
            apply_event(
                &mut conn,
                SCHEMA,
                &CoreEvent::Tenant(event.clone()),
                chrono::Utc::now(),
                version,
            )
            .await
            .expect("applies");
            let r = sqlx::query(&format!(
                "SELECT status, aggregate_version FROM {SCHEMA}.tenants WHERE id = $1"
            ))
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .expect("the tenant has a row");
            (r.get("status"), r.get("aggregate_version"))
        };
        assert_eq!(apply_and_read(&created, 1).await, ("ACTIVE".into(), 1));
        assert_eq!(apply_and_read(&suspended, 2).await, ("SUSPENDED".into(), 2));
        assert_eq!(apply_and_read(&reactivated, 3).await, ("ACTIVE".into(), 3));
        // The version guard: a redelivered older event changes nothing.
        assert_eq!(apply_and_read(&suspended, 2).await, ("ACTIVE".into(), 3));
        assert_eq!(apply_and_read(&deleted, 4).await, ("DELETED".into(), 4));
        assert_eq!(apply_and_read(&reactivated, 3).await, ("DELETED".into(), 4));
    }

    #[tokio::test]
    async fn a_registry_entry_shows_in_the_catalog_once_per_event() {
        use event_schemas::events::{
            NamesReserved, PluginClassified, ReviewRevised, ReviewSubmitted, VersionPublished,
            VersionYanked,
        };

        let (_config, pool) = infra::testing::fresh_database("catalog").await;
        infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
            .await
            .expect("the DDL applies");
        let mut conn = pool.acquire().await.expect("connection");
        let classified = |categories: &[&str]| {
            RegistryEvent::PluginClassified(PluginClassified {
                plugin_id: "crm".into(),
                categories: categories.iter().map(|c| (*c).to_owned()).collect(),
                tags: vec!["deals".into()],
            })
        };
        let review = |rating| ReviewSubmitted {
            plugin_id: "crm".into(),
            reviewer: "alice".into(),
            rating,
            comment: None,
        };
        let log = [
            RegistryEvent::VersionPublished(VersionPublished {
                plugin_id: "crm".into(),
                version: "1.1.0".into(),
                manifest: r#"{"id":"crm","name":"CRM","version":"1.1.0"}"#.into(),
                release_notes: Some("Faster".into()),
            }),
            classified(&["crm", "sales"]),
            RegistryEvent::ReviewSubmitted(review(4)),
            RegistryEvent::ReviewRevised(ReviewRevised {
                plugin_id: "crm".into(),
                reviewer: "alice".into(),
                rating: 2,
                comment: Some("slower now".into()),
            }),
            RegistryEvent::VersionYanked(VersionYanked {
                plugin_id: "crm".into(),
                version: "1.1.0".into(),
                reason: "leaks deals".into(),
            }),
        ];
        for (version, event) in (1..).zip(&log) {
            apply_event(
                &mut conn,
                SCHEMA,
                &CoreEvent::Registry(event.clone()),
                chrono::Utc::now(),
                version,
            )
            .await
            .expect("applies");
        }
        // Redelivered older events change nothing, though they would.
        for (event, version) in [
            (classified(&["other"]), 2),
            (RegistryEvent::ReviewSubmitted(review(5)), 3),
        ] {
            apply_event(
                &mut conn,
                SCHEMA,
                &CoreEvent::Registry(event),
                chrono::Utc::now(),
                version,
            )
            .await
            .expect("applies");
        }
        // Reservations share the topic and have no read model.
        apply_event(
            &mut conn,
            SCHEMA,
            &CoreEvent::Registry(RegistryEvent::NamesReserved(NamesReserved {
                scope: "permission-keys".into(),
                owner: "crm".into(),
                names: vec!["crm.deals.read".into()],
            })),
            chrono::Utc::now(),
            1,
        )
        .await
        .expect("ignored");

        let entry = sqlx::query(&format!(
            "SELECT categories, tags, aggregate_version FROM {SCHEMA}.plugin_registry"
        ))
        .fetch_all(&mut *conn)
        .await
        .expect("reads");
        assert_eq!(entry.len(), 1, "one entry, for crm only");
        assert_eq!(
            entry[0].get::<Vec<String>, _>("categories"),
            ["crm", "sales"]
        );
        assert_eq!(entry[0].get::<Vec<String>, _>("tags"), ["deals"]);
        assert_eq!(entry[0].get::<i64, _>("aggregate_version"), 5);
        let version = sqlx::query(&format!(
            "SELECT release_notes, yanked, yank_reason, deprecated FROM {SCHEMA}.plugin_versions
             WHERE plugin_id = 'crm' AND version = '1.1.0'"
        ))
        .fetch_one(&mut *conn)
        .await
        .expect("the version has a row");
        assert_eq!(
            version.get::<Option<String>, _>("release_notes").as_deref(),
            Some("Faster")
        );
        assert!(version.get::<bool, _>("yanked"));
        assert!(!version.get::<bool, _>("deprecated"));
        assert_eq!(
            version.get::<Option<String>, _>("yank_reason").as_deref(),
            Some("leaks deals")
        );
        let reviews = sqlx::query(&format!(
            "SELECT rating, comment FROM {SCHEMA}.plugin_reviews WHERE plugin_id = 'crm'"
        ))
        .fetch_all(&mut *conn)
        .await
        .expect("reads");
        assert_eq!(reviews.len(), 1, "one review per reviewer");
        assert_eq!(reviews[0].get::<i16, _>("rating"), 2);
        assert_eq!(
            reviews[0].get::<Option<String>, _>("comment").as_deref(),
            Some("slower now")
        );
    }

    #[tokio::test]
    async fn a_tenants_plugins_show_in_the_catalog() {
        use event_schemas::events::{
            TenantPluginConfigured, TenantPluginDisabled, TenantPluginEnabled,
        };

        let (_config, pool) = infra::testing::fresh_database("catalog").await;
        infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
            .await
            .expect("the DDL applies");
        let mut conn = pool.acquire().await.expect("connection");
        let id = uuid::Uuid::now_v7();
        let tenant_id = id.to_string();
        let enabled = |configuration: &str| {
            TenantEvent::PluginEnabled(TenantPluginEnabled {
                tenant_id: tenant_id.clone(),
                plugin_id: "crm".into(),
                plugin_version: "1.2.0".into(),
                configuration: configuration.into(),
            })
        };
        let disabled = TenantEvent::PluginDisabled(TenantPluginDisabled {
            tenant_id: tenant_id.clone(),
            plugin_id: "crm".into(),
        });
        let configured = TenantEvent::PluginConfigured(TenantPluginConfigured {
            tenant_id: tenant_id.clone(),
            plugin_id: "crm".into(),
            configuration: r#"{"stages":["won"]}"#.into(),
        });

        let mut apply_and_read =
            async |event: &TenantEvent, version: i64| -> (bool, serde_json::Value, i64) {
                apply_event(
                    &mut conn,
                    SCHEMA,
                    &CoreEvent::Tenant(event.clone()),
                    chrono::Utc::now(),
                    version,
                )
                .await
                .expect("applies");
                let r = sqlx::query(&format!(
                    "SELECT enabled, configuration, aggregate_version
                     FROM {SCHEMA}.tenant_plugins WHERE tenant_id = $1 AND plugin_id = 'crm'"
                ))
                .bind(id)
                .fetch_one(&mut *conn)
                .await
                .expect("the tenant's plugin has a row");
                (
                    r.get("enabled"),
                    r.get("configuration"),
                    r.get("aggregate_version"),
                )
            };
        let lead = serde_json::json!({"stages": ["lead"]});
        let won = serde_json::json!({"stages": ["won"]});
        let first = enabled(r#"{"stages":["lead"]}"#);
        assert_eq!(apply_and_read(&first, 2).await, (true, lead.clone(), 2));
        assert_eq!(apply_and_read(&configured, 3).await, (true, won.clone(), 3));
        // Disabled, the configuration stays.
        assert_eq!(apply_and_read(&disabled, 4).await, (false, won.clone(), 4));
        // The version guard: redelivered older events change nothing.
        assert_eq!(apply_and_read(&first, 2).await, (false, won.clone(), 4));
        assert_eq!(
            apply_and_read(&configured, 3).await,
            (false, won.clone(), 4)
        );
        assert_eq!(
            apply_and_read(&enabled(r#"{"stages":["won"]}"#), 5).await,
            (true, won, 5)
        );
    }

    #[tokio::test]
    async fn the_plugin_lifecycle_shows_in_the_catalog() {
        let (_config, pool) = infra::testing::fresh_database("catalog").await;
        for _ in 0..2 {
            // Twice: a restart runs the DDL on a catalog that already has the new columns.
            infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
                .await
                .expect("the DDL applies");
        }
        let mut conn = pool.acquire().await.expect("connection");
        let mut log = Log {
            conn: &mut conn,
            version: 0,
        };

        let r = log.apply(registered("1.2.0")).await;
        assert_eq!(
            (r.status.as_str(), r.version.as_str()),
            ("REGISTERED", "1.2.0")
        );

        let install = || {
            PluginEvent::InstallRequested(plain(|plugin_id, version| PluginInstallRequested {
                plugin_id,
                version,
            }))
        };
        let step = |step: &str| {
            PluginEvent::InstallStepCompleted(PluginInstallStepCompleted {
                plugin_id: "crm".into(),
                version: "1.2.0".into(),
                step: step.into(),
            })
        };
        assert_eq!(log.apply(install()).await.status, "INSTALLING");
        let r = log.apply(step("DEPENDENCIES_CHECKED")).await;
        assert_eq!(r.install_step.as_deref(), Some("DEPENDENCIES_CHECKED"));

        // Edge case 1: the failure shows, and the plugin is REGISTERED again.
        let r = log
            .apply(PluginEvent::InstallFailed(PluginInstallFailed {
                plugin_id: "crm".into(),
                version: "1.2.0".into(),
                step: "PERMISSIONS_RESERVED".into(),
                error: "permission crm.deals.read is taken".into(),
            }))
            .await;
        assert_eq!(r.status, "REGISTERED");
        assert_eq!(r.install_step, None);
        let error = r.last_error.expect("the error shows");
        assert!(
            error.contains("PERMISSIONS_RESERVED") && error.contains("is taken"),
            "{error}"
        );

        let r = log.apply(install()).await;
        assert_eq!((r.status.as_str(), r.last_error), ("INSTALLING", None));
        for s in [
            "DEPENDENCIES_CHECKED",
            "PERMISSIONS_RESERVED",
            "MIGRATIONS_APPLIED",
            "ROUTES_REGISTERED",
            "HEALTH_CHECKED",
        ] {
            assert_eq!(log.apply(step(s)).await.install_step.as_deref(), Some(s));
        }
        let r = log
            .apply(PluginEvent::Installed(plain(|plugin_id, version| {
                PluginInstalled { plugin_id, version }
            })))
            .await;
        assert_eq!((r.status.as_str(), r.install_step), ("INSTALLED", None));
        let enabled = PluginEvent::Enabled(plain(|plugin_id, version| PluginEnabled {
            plugin_id,
            version,
        }));
        assert_eq!(log.apply(enabled.clone()).await.status, "ACTIVE");

        // An update shows as pending until it completes, then replaces version and manifest.
        let r = log
            .apply(PluginEvent::UpdateRequested(PluginUpdateRequested {
                plugin_id: "crm".into(),
                version: "1.2.0".into(),
                target_version: "1.3.0".into(),
                name: "CRM Pro".into(),
                description: None,
                manifest: r#"{"id":"crm","name":"CRM Pro","version":"1.3.0"}"#.into(),
            }))
            .await;
        assert_eq!(
            (
                r.status.as_str(),
                r.version.as_str(),
                r.pending_version.as_deref()
            ),
            ("ACTIVE", "1.2.0", Some("1.3.0"))
        );
        let r = log
            .apply(PluginEvent::Updated(PluginUpdated {
                plugin_id: "crm".into(),
                previous_version: "1.2.0".into(),
                version: "1.3.0".into(),
                name: "CRM Pro".into(),
                description: None,
                manifest: r#"{"id":"crm","name":"CRM Pro","version":"1.3.0"}"#.into(),
            }))
            .await;
        assert_eq!(r.version, "1.3.0");
        assert_eq!(r.name, "CRM Pro");
        assert_eq!(r.manifest_version.as_deref(), Some("1.3.0"));
        assert_eq!((r.status.as_str(), r.pending_version), ("ACTIVE", None));

        // Edge case 9: a failed update leaves the version in service.
        log.apply(PluginEvent::UpdateRequested(PluginUpdateRequested {
            plugin_id: "crm".into(),
            version: "1.3.0".into(),
            target_version: "2.0.0".into(),
            name: "CRM Pro".into(),
            description: None,
            manifest: r#"{"id":"crm","name":"CRM Pro","version":"2.0.0"}"#.into(),
        }))
        .await;
        let r = log
            .apply(PluginEvent::UpdateFailed(PluginUpdateFailed {
                plugin_id: "crm".into(),
                version: "1.3.0".into(),
                target_version: "2.0.0".into(),
                error: "hot swap failed".into(),
            }))
            .await;
        assert_eq!((r.version.as_str(), r.pending_version), ("1.3.0", None));
        assert_eq!(r.manifest_version.as_deref(), Some("1.3.0"));
        assert!(
            r.last_error
                .is_some_and(|e| e.contains("2.0.0") && e.contains("hot swap"))
        );

        let r = log
            .apply(PluginEvent::Disabled(PluginDisabled {
                plugin_id: "crm".into(),
                version: "1.3.0".into(),
                reason: Some("dependency contacts was uninstalled".into()),
            }))
            .await;
        assert_eq!(r.status, "DISABLED");
        assert_eq!(
            r.status_reason.as_deref(),
            Some("dependency contacts was uninstalled")
        );

        // The version guard: a redelivered older event changes nothing.
        let before = row(log.conn).await;
        apply_event(
            log.conn,
            SCHEMA,
            &CoreEvent::Plugin(enabled),
            chrono::Utc::now(),
            before.aggregate_version - 3,
        )
        .await
        .expect("applies");
        assert_eq!(row(log.conn).await, before);

        let r = log
            .apply(PluginEvent::UninstallRequested(PluginUninstallRequested {
                plugin_id: "crm".into(),
                version: "1.3.0".into(),
                purge_data: true,
            }))
            .await;
        assert_eq!(r.status, "UNINSTALLING");
        let r = log
            .apply(PluginEvent::Uninstalled(PluginUninstalled {
                plugin_id: "crm".into(),
                version: "1.3.0".into(),
                purge_data: true,
            }))
            .await;
        assert_eq!((r.status.as_str(), r.status_reason), ("UNINSTALLED", None));

        // Registered again: the lifecycle starts over with nothing left of the previous one.
        let r = log.apply(registered("1.0.0")).await;
        assert_eq!(
            r,
            PluginRow {
                status: "REGISTERED".into(),
                version: "1.0.0".into(),
                name: "CRM".into(),
                manifest_version: Some("1.0.0".into()),
                install_step: None,
                pending_version: None,
                last_error: None,
                status_reason: None,
                aggregate_version: log.version,
            }
        );
    }
}

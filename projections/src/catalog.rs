//! The catalog: plugins, tenants and the plugins each tenant enabled, as the query API
//! serves them (spec 004 section 7), and each plugin's registry entry (published versions,
//! classification, reviews).

use std::sync::Arc;

use event_schemas::events::{
    RegistryEvent, ReviewRevised, ReviewSubmitted, TenantCreated, TenantEvent,
};
use event_schemas::topics::CATALOG_CONSUMER;
use event_schemas::{Codec, CoreEvent, PluginHealthEvent, Topics};
use futures::future::BoxFuture;
use infra::consumer::{BatchWrites, ConsumerSpec, Fencing, HandlerError, Record, RecordHandler};
use infra::postgres::channels;
use sqlx::PgConnection;

mod history;
mod permissions;
mod plugins;
mod schema;
mod totals;
mod webhooks;

use history::History;
use plugins::PluginWrites;
use schema::ddl;
use totals::StatusTotals;

/// Postgres schema of the catalog's tables; the query API reads it.
pub const SCHEMA: &str = "catalog";

pub fn spec(topics: &Topics) -> ConsumerSpec {
    ConsumerSpec {
        name: CATALOG_CONSUMER.to_owned(),
        group: topics.group("plexica.projection.catalog"),
        schema: SCHEMA.to_owned(),
        topics: vec![topics.plugins(), topics.tenants(), topics.registry()],
        fenced: Fencing::Every,
        dlq_topic: topics.dlq(),
        retry_topic: Some(topics.retry(CATALOG_CONSUMER)),
        park_keys: true,
        pace: infra::kafka::Pace::Interactive,
        serving: None,
        // What it applied, the webhooks, the sagas and the tenant schemas of its process take.
        hands_on: true,
    }
}

pub struct Catalog {
    codec: Arc<Codec>,
    /// Where it writes: [`SCHEMA`], or the shadow schema of a rebuild.
    schema: String,
    /// The history of the batch's applied events, written at its end in one statement.
    history: History,
    /// The batch's changes to the plugins per status, written at its end.
    totals: StatusTotals,
    /// The batch's plugin events, folded into their rows and written together.
    plugins: PluginWrites,
    /// Whether the plugin events wait for the batch's end or are written one by one.
    writes: BatchWrites,
}

impl Catalog {
    /// The catalog written into `schema`: the one the query API reads is [`SCHEMA`].
    pub fn new(codec: Arc<Codec>, schema: impl Into<String>) -> Self {
        Self {
            codec,
            schema: schema.into(),
            history: History::default(),
            totals: StatusTotals::default(),
            plugins: PluginWrites::default(),
            writes: BatchWrites::PerRecord,
        }
    }
}

impl RecordHandler for Catalog {
    const TRANSACTIONAL: bool = true;

    fn ddl(&self, schema: &str) -> String {
        ddl(schema)
    }

    type Decoded = CoreEvent;

    fn decode<'a>(
        &'a mut self,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<CoreEvent, HandlerError>> {
        Box::pin(async move {
            use rdkafka::Message;
            Ok(self.codec.decode_event(record.message.payload()).await?)
        })
    }

    fn apply<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        record: &'a Record<'a>,
        event: CoreEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
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
            apply_event(tx, &self.schema, &mut self.plugins, event, time, version).await?;
            if self.writes == BatchWrites::PerRecord {
                self.plugins
                    .write(tx, &self.schema, &mut self.totals)
                    .await?;
            }
            if let Some(envelope) = &record.envelope {
                self.history.push(&record.origin, envelope);
            }
            Ok(())
        })
    }

    fn begin_batch(&mut self, writes: BatchWrites) {
        self.history = History::default();
        self.totals = StatusTotals::default();
        self.plugins = PluginWrites::default();
        self.writes = writes;
    }

    fn end_batch<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            self.plugins
                .write(tx, &self.schema, &mut self.totals)
                .await?;
            let history = std::mem::take(&mut self.history);
            let operations = history.record(tx, &self.schema).await?;
            std::mem::take(&mut self.totals)
                .record(tx, &self.schema)
                .await?;
            let plugins = self.plugins.take_changed();
            // The query API's subscribers hear of what the catalog it reads changed, at commit;
            // a rebuild's shadow schema announces nothing.
            if serves_queries(&self.schema) {
                channels::announce(tx, channels::PLUGIN_CHANGED, plugins).await?;
                channels::announce(tx, channels::OPERATION_PROGRESSED, operations).await?;
            }
            Ok(())
        })
    }
}

/// Applies one event of the `core.*` topics to the catalog; a plugin event is gathered in
/// `plugins`, to be written with the others of its batch. `version` is the event's aggregate
/// version: the guard that makes applying an event twice, or an older one, a no-op.
async fn apply_event(
    tx: &mut PgConnection,
    schema: &str,
    plugins: &mut PluginWrites,
    event: CoreEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> Result<(), HandlerError> {
    let result = match event {
        CoreEvent::Plugin(event) => {
            plugins.push(event, time, version);
            return Ok(());
        }
        CoreEvent::PluginHealth(event) => {
            plugin_health_event(tx, schema, plugins, &event, version).await
        }
        CoreEvent::Registry(event) => match event.plugin_id() {
            Some(plugin_id) => registry_event(tx, schema, plugin_id, &event, time, version).await,
            // Reservations have no read model.
            None => return Ok(()),
        },
        CoreEvent::Tenant(event) => {
            let id = uuid::Uuid::parse_str(event.tenant_id())
                .map_err(|err| HandlerError::Permanent(Box::new(err)))?;
            tenant_event(tx, schema, id, &event, time, version).await
        }
        CoreEvent::Webhook(event) => webhooks::apply(tx, schema, &event, time, version).await,
    };
    result.map_err(HandlerError::from)
}

/// Whether writes to `schema` are what the query API serves, as an SQL literal: a rebuild's
/// shadow generation announces nothing, or subscribers would hear of every event twice.
fn serves_queries(schema: &str) -> bool {
    schema == SCHEMA
}

/// JSON carried as text in an event (a manifest, a tenant's configuration) as stored: JSON
/// null for a text that is not JSON.
fn logged_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Applies what the runtime observed of a plugin's instance: the last observation is the
/// row, and the plugin's subscribers hear of it like any change of the plugin.
async fn plugin_health_event(
    tx: &mut PgConnection,
    schema: &str,
    plugins: &mut PluginWrites,
    event: &PluginHealthEvent,
    version: i64,
) -> Result<(), sqlx::Error> {
    match event {
        PluginHealthEvent::Changed(e) => {
            let since = chrono::DateTime::from_timestamp_millis(e.since).unwrap_or_default();
            let changed: Option<String> = sqlx::query_scalar(&format!(
                "INSERT INTO {schema}.plugin_health
                         (plugin_id, version, status, since, last_error, restarts, address,
                          aggregate_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (plugin_id) DO UPDATE
                     SET version = excluded.version, status = excluded.status,
                         since = excluded.since, last_error = excluded.last_error,
                         restarts = excluded.restarts, address = excluded.address,
                         aggregate_version = excluded.aggregate_version
                     WHERE {schema}.plugin_health.aggregate_version < excluded.aggregate_version
                     RETURNING plugin_id"
            ))
            .bind(&e.plugin_id)
            .bind(&e.version)
            .bind(&e.status)
            .bind(since)
            .bind(&e.last_error)
            .bind(e.restarts)
            .bind(&e.address)
            .bind(version)
            .fetch_optional(tx)
            .await?;
            if let Some(plugin_id) = changed {
                plugins.changed(plugin_id);
            }
            Ok(())
        }
    }
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
        // The tenant's own rows are the caller's.
        TenantEvent::Created(_)
        | TenantEvent::Suspended(_)
        | TenantEvent::Reactivated(_)
        | TenantEvent::Deleted(_) => return Ok(()),
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
mod tests;

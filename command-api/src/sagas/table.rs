//! The runner's table, `sagas.plugins`: the version in service of every plugin and its
//! manifest (what the runtime acts on), the saga under way, and whether the plugin should run.

use event_schemas::Envelope;
use event_schemas::events::PluginEvent;
use infra::consumer::HandlerError;
use sqlx::PgConnection;
use uuid::Uuid;

use super::steps::parse_manifest;
use super::{PluginId, PluginRuntime, PluginSagas, PluginSpec, SagaError, count_step};

pub(super) fn table_ddl(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.plugins (
             id text PRIMARY KEY,
             -- The version in service and its manifest: what the runtime acts on.
             version text NOT NULL,
             manifest jsonb NOT NULL,
             -- The command that started the saga under way: its correlation id.
             saga_id uuid,
             aggregate_version bigint NOT NULL
         );
         -- Whether the plugin should run (it is ACTIVE): what a restarted platform starts.
         ALTER TABLE {schema}.plugins ADD COLUMN IF NOT EXISTS running boolean NOT NULL DEFAULT false;"
    )
}

impl<R: PluginRuntime> PluginSagas<R> {
    /// Keeps the runner's table up to date with one plugin event.
    pub(super) async fn remember(
        &self,
        tx: &mut PgConnection,
        id: &PluginId,
        event: &PluginEvent,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let schema = &self.schema;
        let version = envelope
            .aggregate_version
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(|| HandlerError::permanent(SagaError::NoAggregateVersion))?;
        // `$1` is the plugin id and `$2` the aggregate version, the guard that makes applying
        // an event twice, or an older one, a no-op.
        let result = match event {
            PluginEvent::Registered(e) => {
                let sql = format!(
                    "INSERT INTO {schema}.plugins (id, version, manifest, saga_id, aggregate_version)
                     VALUES ($1, $3, $4, NULL, $2)
                     ON CONFLICT (id) DO UPDATE
                     SET version = excluded.version, manifest = excluded.manifest, saga_id = NULL,
                         running = false, aggregate_version = excluded.aggregate_version
                     WHERE {schema}.plugins.aggregate_version < excluded.aggregate_version"
                );
                sqlx::query(&sql)
                    .bind(id.as_str())
                    .bind(version)
                    .bind(&e.version)
                    .bind(parse_manifest(id, &e.manifest).map_err(HandlerError::permanent)?)
                    .execute(tx)
                    .await
            }
            PluginEvent::Updated(e) => {
                let sql = format!(
                    "UPDATE {schema}.plugins SET version = $3, manifest = $4, aggregate_version = $2
                     WHERE id = $1 AND aggregate_version < $2"
                );
                sqlx::query(&sql)
                    .bind(id.as_str())
                    .bind(version)
                    .bind(&e.version)
                    .bind(parse_manifest(id, &e.manifest).map_err(HandlerError::permanent)?)
                    .execute(tx)
                    .await
            }
            PluginEvent::Enabled(_) | PluginEvent::Disabled(_) => {
                let sql = format!(
                    "UPDATE {schema}.plugins SET running = $3, aggregate_version = $2
                     WHERE id = $1 AND aggregate_version < $2"
                );
                sqlx::query(&sql)
                    .bind(id.as_str())
                    .bind(version)
                    .bind(matches!(event, PluginEvent::Enabled(_)))
                    .execute(tx)
                    .await
            }
            PluginEvent::InstallRequested(_)
            | PluginEvent::UpdateRequested(_)
            | PluginEvent::UninstallRequested(_) => {
                // An uninstalling plugin stops before its uninstall step.
                let sql = format!(
                    "UPDATE {schema}.plugins SET saga_id = $3, aggregate_version = $2,
                         running = running AND NOT $4
                     WHERE id = $1 AND aggregate_version < $2"
                );
                sqlx::query(&sql)
                    .bind(id.as_str())
                    .bind(version)
                    .bind(envelope.causation_id)
                    .bind(matches!(event, PluginEvent::UninstallRequested(_)))
                    .execute(tx)
                    .await
            }
            // Nothing the runner keeps changes; the version still moves on.
            PluginEvent::InstallStepCompleted(_)
            | PluginEvent::Installed(_)
            | PluginEvent::InstallFailed(_)
            | PluginEvent::UpdateFailed(_)
            | PluginEvent::Uninstalled(_) => {
                let sql = format!(
                    "UPDATE {schema}.plugins SET aggregate_version = $2
                     WHERE id = $1 AND aggregate_version < $2"
                );
                sqlx::query(&sql)
                    .bind(id.as_str())
                    .bind(version)
                    .execute(tx)
                    .await
            }
        };
        result.map_err(HandlerError::from)?;
        Ok(())
    }

    /// The version in service of plugin `id`, as the runtime sees it.
    pub(super) async fn plugin(
        &self,
        tx: &mut PgConnection,
        id: &PluginId,
    ) -> Result<PluginSpec, HandlerError> {
        let row: Option<(String, serde_json::Value)> = sqlx::query_as(&format!(
            "SELECT version, manifest FROM {}.plugins WHERE id = $1",
            self.schema
        ))
        .bind(id.as_str())
        .fetch_optional(tx)
        .await
        .map_err(HandlerError::from)?;
        let (version, manifest) =
            row.ok_or_else(|| HandlerError::permanent(SagaError::UnknownPlugin(id.clone())))?;
        Ok(PluginSpec {
            id: id.clone(),
            version,
            manifest,
        })
    }

    /// Starts or stops the plugin as its row says it should be: a no-op when it already is.
    pub(super) async fn reconcile(
        &self,
        tx: &mut PgConnection,
        id: &PluginId,
    ) -> Result<(), HandlerError> {
        let running: Option<bool> = sqlx::query_scalar(&format!(
            "SELECT running FROM {}.plugins WHERE id = $1",
            self.schema
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(HandlerError::from)?;
        if running == Some(true) {
            let plugin = self.plugin(tx, id).await?;
            // A plugin that does not start is the plugin's failure, not the runner's: it is
            // logged and counted, and the runner reads on (NFR-004).
            if let Err(error) = self.runtime.start(&plugin).await {
                tracing::error!(plugin = %id, version = %plugin.version, %error, "an ACTIVE plugin does not start");
                count_step(id, "run", "START", "failed");
            }
        } else {
            self.runtime.stop(id).await;
        }
        Ok(())
    }

    pub(super) async fn saga_id(
        &self,
        tx: &mut PgConnection,
        id: &PluginId,
    ) -> Result<Option<Uuid>, HandlerError> {
        let saga_id: Option<Option<Uuid>> = sqlx::query_scalar(&format!(
            "SELECT saga_id FROM {}.plugins WHERE id = $1",
            self.schema
        ))
        .bind(id.as_str())
        .fetch_optional(tx)
        .await
        .map_err(HandlerError::from)?;
        Ok(saga_id.flatten())
    }
}

//! A plugin's health and instances as the runtime recorded them in the log (DESIGN.md §8:
//! `core.plugin.health-changed`), loaded in batches like the registry's fields.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::SimpleObject;
use async_graphql::dataloader::Loader;
use chrono::{DateTime, Utc};
use event_schemas::status::HealthStatus;

use crate::registry::RegistryLoader;
use crate::schema::CATALOG;

/// How a plugin's running instance is, as last recorded.
#[derive(Debug, Clone, SimpleObject)]
pub struct PluginHealth {
    pub status: HealthStatus,
    /// When it entered this status.
    pub since: DateTime<Utc>,
    /// The last probe failure or exit, if any.
    pub last_error: Option<String>,
    /// How many times the runtime restarted it.
    pub restarts: i64,
    /// The version of the instance observed.
    pub version: String,
}

/// Where a plugin is served.
#[derive(Debug, Clone, SimpleObject)]
pub struct PluginInstance {
    pub version: String,
    /// `http://host:port`, reached through the gateway only.
    pub address: String,
    pub status: HealthStatus,
}

/// What the catalog holds of a plugin's last observation.
#[derive(Debug, Clone)]
pub struct Observed {
    pub health: PluginHealth,
    pub address: Option<String>,
}

impl Observed {
    /// The process driver runs one instance per plugin; one that is stopped is none.
    pub fn instances(&self) -> Vec<PluginInstance> {
        self.address
            .iter()
            .map(|address| PluginInstance {
                version: self.health.version.clone(),
                address: address.clone(),
                status: self.health.status,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthOf(pub String);

type Row = (
    String,
    String,
    String,
    DateTime<Utc>,
    Option<String>,
    i64,
    Option<String>,
);

impl Loader<HealthOf> for RegistryLoader {
    type Value = Observed;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[HealthOf]) -> Result<HashMap<HealthOf, Observed>, Self::Error> {
        let ids: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT plugin_id, version, status, since, last_error, restarts, address
             FROM {CATALOG}.plugin_health WHERE plugin_id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(id, version, status, since, last_error, restarts, address)| {
                    // A status this build does not know is left out rather than guessed.
                    let status = HealthStatus::parse(&status)?;
                    let health = PluginHealth {
                        status,
                        since,
                        last_error,
                        restarts,
                        version,
                    };
                    Some((HealthOf(id), Observed { health, address }))
                },
            )
            .collect())
    }
}

//! The plugins' rows. A batch's plugin events are folded per plugin in memory, and each
//! changed row is written once a batch: one statement per event was most of a rebuild's
//! time (68 µs an event), where one statement for the batch's rows costs what raw upserts do.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use event_schemas::PluginEvent;
use event_schemas::events::PluginRegistered;
use sqlx::PgConnection;

use super::logged_json;
use super::permissions;
use super::totals::StatusTotals;

/// A plugin's row in the catalog, as the query API reads it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(super) struct PluginRow {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub status: String,
    /// The manifest an event of the batch set; `None` while it is the one stored, which the
    /// fold never reads: it is most of a row, and most events leave it as it is.
    #[sqlx(default)]
    pub manifest: Option<serde_json::Value>,
    pub aggregate_version: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The last install step completed, while INSTALLING.
    pub install_step: Option<String>,
    /// The version an update is installing, while it runs.
    pub pending_version: Option<String>,
    /// Why the last install or update failed, until the next attempt.
    pub last_error: Option<String>,
    /// Why the platform disabled the plugin, while DISABLED.
    pub status_reason: Option<String>,
}

impl PluginRow {
    /// The row a registration makes.
    fn registered(e: &PluginRegistered, time: chrono::DateTime<chrono::Utc>, version: i64) -> Self {
        PluginRow {
            id: e.plugin_id.clone(),
            name: e.name.clone(),
            version: e.version.clone(),
            description: e.description.clone(),
            status: "REGISTERED".to_owned(),
            manifest: Some(logged_json(&e.manifest)),
            aggregate_version: version,
            created_at: time,
            updated_at: time,
            install_step: None,
            pending_version: None,
            last_error: None,
            status_reason: None,
        }
    }
}

/// A plugin event as the log gave it: the event, its time and its aggregate version.
struct Logged {
    event: PluginEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
}

/// What `event` of aggregate version `version` makes of a plugin's row. The version guard
/// makes an event applied twice, or an older one, change nothing: `false`. Every event but
/// the registration changes a row that exists, and changes nothing before it.
pub(super) fn evolve(
    row: &mut Option<PluginRow>,
    event: &PluginEvent,
    time: chrono::DateTime<chrono::Utc>,
    version: i64,
) -> bool {
    let row = match row {
        Some(row) if row.aggregate_version >= version => return false,
        Some(row) => row,
        None => {
            if let PluginEvent::Registered(e) = event {
                *row = Some(PluginRow::registered(e, time, version));
                return true;
            }
            return false;
        }
    };
    let status = |row: &mut PluginRow, status: &str| status.clone_into(&mut row.status);
    match event {
        // Registered again: the lifecycle starts over with nothing left of the previous one.
        PluginEvent::Registered(e) => {
            *row = PluginRow {
                created_at: row.created_at,
                ..PluginRow::registered(e, time, version)
            }
        }
        PluginEvent::InstallRequested(_) => {
            status(row, "INSTALLING");
            row.install_step = None;
            row.last_error = None;
            row.status_reason = None;
        }
        PluginEvent::InstallStepCompleted(e) => row.install_step = Some(e.step.clone()),
        PluginEvent::Installed(_) => {
            status(row, "INSTALLED");
            row.install_step = None;
        }
        PluginEvent::InstallFailed(e) => {
            status(row, "REGISTERED");
            row.install_step = None;
            row.last_error = Some(format!("install failed at {}: {}", e.step, e.error));
        }
        PluginEvent::Enabled(_) => {
            status(row, "ACTIVE");
            row.status_reason = None;
        }
        PluginEvent::Disabled(e) => {
            status(row, "DISABLED");
            row.status_reason = e.reason.clone();
        }
        PluginEvent::UpdateRequested(e) => {
            row.pending_version = Some(e.target_version.clone());
            row.last_error = None;
        }
        PluginEvent::Updated(e) => {
            row.version = e.version.clone();
            row.name = e.name.clone();
            row.description = e.description.clone();
            row.manifest = Some(logged_json(&e.manifest));
            row.pending_version = None;
        }
        PluginEvent::UpdateFailed(e) => {
            row.pending_version = None;
            row.last_error = Some(format!(
                "update to {} failed: {}",
                e.target_version, e.error
            ));
        }
        PluginEvent::UninstallRequested(_) => status(row, "UNINSTALLING"),
        PluginEvent::Uninstalled(_) => {
            status(row, "UNINSTALLED");
            row.status_reason = None;
        }
    }
    row.aggregate_version = version;
    row.updated_at = time;
    true
}

/// One plugin over a batch: its status before the batch (none: no row), its row as the
/// batch's events left it, and its row as it stood after the last event that registers its
/// permissions.
struct Folded {
    was: Option<String>,
    row: Option<PluginRow>,
    changed: bool,
    permissions_from: Option<PluginRow>,
}

/// The plugin events of a batch, gathered to be written together, and the plugins the batch
/// changed, to be announced at its end.
#[derive(Default)]
pub(super) struct PluginWrites {
    events: Vec<Logged>,
    changed: BTreeSet<String>,
}

impl PluginWrites {
    pub(super) fn push(
        &mut self,
        event: PluginEvent,
        time: chrono::DateTime<chrono::Utc>,
        version: i64,
    ) {
        self.events.push(Logged {
            event,
            time,
            version,
        });
    }

    /// A plugin the batch changed outside its rows (its health).
    pub(super) fn changed(&mut self, plugin_id: String) {
        self.changed.insert(plugin_id);
    }

    /// The plugins the batch changed, in id order, once each.
    pub(super) fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// Folds the gathered events into their plugins' rows and writes each changed row once:
    /// the rows, the totals' moves and the permissions of plugins installed, updated or
    /// uninstalled; the plugins written are kept to be announced. The rows are read `FOR UPDATE`, so that
    /// a retried dead letter of the same plugin, applied by another instance, waits.
    pub(super) async fn write(
        &mut self,
        tx: &mut PgConnection,
        schema: &str,
        totals: &mut StatusTotals,
    ) -> Result<(), sqlx::Error> {
        let events = std::mem::take(&mut self.events);
        if events.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<&str> = events.iter().map(|l| l.event.plugin_id()).collect();
        ids.sort_unstable();
        ids.dedup();
        let stored: Vec<PluginRow> = sqlx::query_as(&format!(
            "SELECT id, name, version, description, status, aggregate_version,
                    created_at, updated_at, install_step, pending_version, last_error,
                    status_reason
             FROM {schema}.plugins WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut stored: HashMap<String, PluginRow> =
            stored.into_iter().map(|r| (r.id.clone(), r)).collect();
        // In id order, as they were locked: the writes and their notices go in that order.
        let mut folded: BTreeMap<&str, Folded> = BTreeMap::new();
        for logged in &events {
            let id = logged.event.plugin_id();
            let plugin = folded.entry(id).or_insert_with(|| {
                let row = stored.remove(id);
                Folded {
                    was: row.as_ref().map(|r| r.status.clone()),
                    row,
                    changed: false,
                    permissions_from: None,
                }
            });
            if evolve(&mut plugin.row, &logged.event, logged.time, logged.version) {
                plugin.changed = true;
                if permissions::changes_permissions(&logged.event) {
                    plugin.permissions_from.clone_from(&plugin.row);
                }
            }
        }
        // Rows the batch inserts (no row before it) and rows it updates.
        let (mut inserted, mut updated) = (Rows::default(), Rows::default());
        let mut registering = Vec::new();
        let mut moves = Vec::new();
        for plugin in folded.into_values().filter(|p| p.changed) {
            let Some(row) = plugin.row else { continue };
            if let Some(installed) = plugin.permissions_from {
                registering.push(installed);
            }
            let rows = if plugin.was.is_some() {
                &mut updated
            } else {
                &mut inserted
            };
            moves.push((plugin.was, row.status.clone()));
            rows.push(row);
        }
        // Before the rows: a manifest the batch did not set is read as stored.
        permissions::register(tx, schema, registering).await?;
        self.changed.extend(inserted.insert(tx, schema).await?);
        self.changed.extend(updated.update(tx, schema).await?);
        // Counted once written: a write that fails leaves the totals as they were.
        for (was, now) in moves {
            totals.moved(was.as_deref(), &now);
        }
        Ok(())
    }
}

/// Plugin rows as columns, written in one statement.
#[derive(Default)]
struct Rows {
    id: Vec<String>,
    name: Vec<String>,
    version: Vec<String>,
    description: Vec<Option<String>>,
    status: Vec<String>,
    manifest: Vec<Option<serde_json::Value>>,
    aggregate_version: Vec<i64>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    updated_at: Vec<chrono::DateTime<chrono::Utc>>,
    install_step: Vec<Option<String>>,
    pending_version: Vec<Option<String>>,
    last_error: Vec<Option<String>>,
    status_reason: Vec<Option<String>>,
}

impl Rows {
    fn push(&mut self, row: PluginRow) {
        self.id.push(row.id);
        self.name.push(row.name);
        self.version.push(row.version);
        self.description.push(row.description);
        self.status.push(row.status);
        self.manifest.push(row.manifest);
        self.aggregate_version.push(row.aggregate_version);
        self.created_at.push(row.created_at);
        self.updated_at.push(row.updated_at);
        self.install_step.push(row.install_step);
        self.pending_version.push(row.pending_version);
        self.last_error.push(row.last_error);
        self.status_reason.push(row.status_reason);
    }

    /// Writes rows that were not stored when the batch began: each came with its
    /// registration, manifest included. Returns the ids written.
    async fn insert(self, tx: &mut PgConnection, schema: &str) -> Result<Vec<String>, sqlx::Error> {
        self.write(
            tx,
            &format!(
                "INSERT INTO {schema}.plugins
                     (id, name, version, description, status, manifest, aggregate_version,
                      created_at, updated_at, install_step, pending_version, last_error,
                      status_reason)
                 SELECT * FROM input
                 ON CONFLICT (id) DO UPDATE
                 SET name = excluded.name, version = excluded.version,
                     description = excluded.description, status = excluded.status,
                     manifest = excluded.manifest,
                     aggregate_version = excluded.aggregate_version,
                     updated_at = excluded.updated_at, install_step = excluded.install_step,
                     pending_version = excluded.pending_version,
                     last_error = excluded.last_error, status_reason = excluded.status_reason
                 WHERE {schema}.plugins.aggregate_version < excluded.aggregate_version
                 RETURNING id"
            ),
        )
        .await
    }

    /// Writes rows that were stored when the batch began, keeping the stored manifest where
    /// the batch set none. Returns the ids written.
    async fn update(self, tx: &mut PgConnection, schema: &str) -> Result<Vec<String>, sqlx::Error> {
        self.write(
            tx,
            &format!(
                "UPDATE {schema}.plugins p
                 SET name = u.name, version = u.version, description = u.description,
                     status = u.status, manifest = coalesce(u.manifest, p.manifest),
                     aggregate_version = u.aggregate_version, updated_at = u.updated_at,
                     install_step = u.install_step, pending_version = u.pending_version,
                     last_error = u.last_error, status_reason = u.status_reason
                 FROM input u
                 WHERE p.id = u.id AND p.aggregate_version < u.aggregate_version
                 RETURNING p.id"
            ),
        )
        .await
    }

    /// Runs `write` (of the rows as `input`, answering the ids it wrote) and returns the ids
    /// written. The version guard holds in both writes, against any writer the lock missed.
    async fn write(self, tx: &mut PgConnection, write: &str) -> Result<Vec<String>, sqlx::Error> {
        if self.id.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(&format!(
            "WITH input (id, name, version, description, status, manifest, aggregate_version,
                         created_at, updated_at, install_step, pending_version, last_error,
                         status_reason) AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                     $5::text[], $6::jsonb[], $7::bigint[], $8::timestamptz[],
                     $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[])
             ),
             written AS ({write})
             SELECT id FROM written"
        ))
        .bind(self.id)
        .bind(self.name)
        .bind(self.version)
        .bind(self.description)
        .bind(self.status)
        .bind(self.manifest)
        .bind(self.aggregate_version)
        .bind(self.created_at)
        .bind(self.updated_at)
        .bind(self.install_step)
        .bind(self.pending_version)
        .bind(self.last_error)
        .bind(self.status_reason)
        .fetch_all(tx)
        .await
    }
}

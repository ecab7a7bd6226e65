//! The permissions plugins register (spec 004 FR-014): a plugin's manifest permissions are
//! registered while it is installed, and follow its manifest through updates.

use event_schemas::events::PluginEvent;
use sqlx::PgConnection;

use super::plugins::PluginRow;

/// Whether `event` changes which permissions its plugin has registered.
pub(super) fn changes_permissions(event: &PluginEvent) -> bool {
    match event {
        PluginEvent::Installed(_) | PluginEvent::Updated(_) | PluginEvent::Uninstalled(_) => true,
        PluginEvent::Registered(_)
        | PluginEvent::InstallRequested(_)
        | PluginEvent::InstallStepCompleted(_)
        | PluginEvent::InstallFailed(_)
        | PluginEvent::Enabled(_)
        | PluginEvent::Disabled(_)
        | PluginEvent::UpdateRequested(_)
        | PluginEvent::UpdateFailed(_)
        | PluginEvent::UninstallRequested(_) => false,
    }
}

/// Sets each plugin's registered permissions from its row as the last event that changes
/// them left it (within a batch, a later event may have moved the row on). A row without a
/// manifest has the one stored: this runs before the batch's rows are written.
pub(super) async fn register(
    tx: &mut PgConnection,
    schema: &str,
    rows: Vec<PluginRow>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let (ids, (manifests, statuses)): (Vec<String>, (Vec<_>, Vec<String>)) = rows
        .into_iter()
        .map(|row| (row.id, (row.manifest, row.status)))
        .unzip();
    sqlx::query(&format!(
        "DELETE FROM {schema}.permissions WHERE plugin_id = ANY($1)"
    ))
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {schema}.permissions (plugin_id, key, name, description)
         SELECT p.id, permission->>'key', permission->>'name', permission->>'description'
         FROM unnest($1::text[], $2::jsonb[], $3::text[]) AS p(id, set_manifest, status),
              LATERAL (SELECT coalesce(p.set_manifest,
                                       (SELECT s.manifest FROM {schema}.plugins s
                                        WHERE s.id = p.id)) AS manifest) m,
              jsonb_array_elements(coalesce(m.manifest->'permissions', '[]'::jsonb)) permission
         WHERE p.status IN ('INSTALLED', 'ACTIVE', 'DISABLED', 'UNINSTALLING')
           AND jsonb_typeof(permission) = 'object' AND permission ? 'key' AND permission ? 'name'
         ON CONFLICT DO NOTHING"
    ))
    .bind(ids)
    .bind(manifests)
    .bind(statuses)
    .execute(tx)
    .await?;
    Ok(())
}

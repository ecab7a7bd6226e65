//! The permissions plugins register (spec 004 FR-014): a plugin's manifest permissions are
//! registered while it is installed, and follow its manifest through updates.

use event_schemas::events::PluginEvent;
use sqlx::PgConnection;

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

/// Sets the plugin's registered permissions from its catalog row, once the plugin event of
/// aggregate version `version` was applied to it: an event applied again, or an older one,
/// finds the row at another version and changes nothing.
pub(super) async fn register(
    tx: &mut PgConnection,
    schema: &str,
    plugin_id: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    let applied = format!(
        "SELECT id, manifest, status FROM {schema}.plugins WHERE id = $1 AND aggregate_version = $2"
    );
    sqlx::query(&format!(
        "DELETE FROM {schema}.permissions WHERE plugin_id IN (SELECT id FROM ({applied}) p)"
    ))
    .bind(plugin_id)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {schema}.permissions (plugin_id, key, name, description)
         SELECT p.id, permission->>'key', permission->>'name', permission->>'description'
         FROM ({applied}) p,
              jsonb_array_elements(coalesce(p.manifest->'permissions', '[]'::jsonb)) permission
         WHERE p.status IN ('INSTALLED', 'ACTIVE', 'DISABLED', 'UNINSTALLING')
           AND jsonb_typeof(permission) = 'object' AND permission ? 'key' AND permission ? 'name'
         ON CONFLICT DO NOTHING"
    ))
    .bind(plugin_id)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

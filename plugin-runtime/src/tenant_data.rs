//! The plugins' data in the tenants' schemas (FR-005, NFR-005).
//!
//! - Every tenant has a Postgres schema of its own, `tenant_<uuid without dashes>`, created
//!   when the tenant is (`core.tenant.created`); a deleted tenant's schema is renamed
//!   `archived_tenant_<uuid>`, its data kept for an operator to export or drop.
//! - Every plugin has a role of its own, `plexica_plugin_<id>`, with `USAGE, CREATE` on the
//!   tenant schemas and nothing on the platform's (`catalog`, `sagas`, `dlq`, …).
//! - A plugin's migrations (`NNN_name.sql`, optional `NNN_name.down.sql`) run **as its role**,
//!   over a connection of that role, with `search_path` set to the tenant's schema: its tables
//!   are its own, no other plugin's role reaches them, and no statement of a migration can act
//!   as the platform (a `RESET ROLE` in a file changes nothing). Each tenant is migrated in its
//!   own transaction; the applied files are tracked in that same transaction, per tenant, in
//!   the table `<tenant schema>.<role>_migrations` (so a crash never leaves a file applied and
//!   untracked). A tenant that fails is rolled back alone and named in the error; the others
//!   keep their migrations, and a retry runs only what is missing.
//! - The installed version's files are kept in `plugin_data.plugins`, so that a tenant created
//!   later gets exactly the migrations of every installed plugin.

use std::path::Path;

use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use crate::PluginId;
use crate::process::{plugin_database_url, plugin_role};

/// Longest a single migration statement may run: no plugin's migration holds a tenant's
/// schema forever.
const STATEMENT_TIMEOUT: &str = "60s";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    /// The file name without `.sql`, e.g. `001_notes`: what is tracked.
    pub name: String,
    pub up: String,
    pub down: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("migrations: {0}")]
    Files(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the migrations failed in {} tenant(s), rolled back there: {}", .0.len(), .0.join("; "))]
    Tenants(Vec<String>),
}

/// The migrations of a bundle's `migrations.path`, in file name order.
pub fn read_migrations(dir: &Path) -> Result<Vec<Migration>, DataError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DataError::Files(format!("cannot read {}: {e}", dir.display())))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".sql") && !n.ends_with(".down.sql"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|file| {
            let name = file.trim_end_matches(".sql").to_owned();
            let digits = name.split('_').next().unwrap_or_default();
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(DataError::Files(format!(
                    "{file}: a migration is named NNN_name.sql"
                )));
            }
            let read = |path: &Path| {
                std::fs::read_to_string(path)
                    .map_err(|e| DataError::Files(format!("{}: {e}", path.display())))
            };
            let up = read(&dir.join(&file))?;
            let down_path = dir.join(format!("{name}.down.sql"));
            let down = down_path.exists().then(|| read(&down_path)).transpose()?;
            Ok(Migration { name, up, down })
        })
        .collect()
}

/// The platform's schema of the tenants' and plugins' data (and of the tenant-schemas
/// consumer's checkpoints).
pub const SCHEMA: &str = "plugin_data";

pub const DDL: &str = "
    CREATE TABLE IF NOT EXISTS plugin_data.tenants (
        tenant_id uuid PRIMARY KEY,
        schema_name text NOT NULL,
        archived boolean NOT NULL DEFAULT false
    );
    CREATE TABLE IF NOT EXISTS plugin_data.plugins (
        plugin text PRIMARY KEY,
        version text NOT NULL,
        migrations jsonb NOT NULL
    );";

/// The schema of tenant `tenant` (named by [`domain::TenantSchema`], the one place that knows).
pub fn tenant_schema(tenant: Uuid) -> String {
    domain::TenantSchema::of(tenant).to_string()
}

/// Where the tenant schemas and the plugins' migrations are kept.
#[derive(Clone)]
pub struct TenantData {
    pool: PgPool,
    /// The platform's database URL: the plugins' connections use it with their own role.
    database_url: String,
}

impl TenantData {
    pub async fn new(pool: PgPool, database_url: String) -> Result<Self, DataError> {
        pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}; {DDL}").as_str())
            .await?;
        Ok(Self { pool, database_url })
    }

    /// Creates tenant `tenant`'s schema and runs there the migrations of every installed
    /// plugin. Doing it again is a no-op.
    pub async fn create_tenant(&self, tenant: Uuid) -> Result<(), DataError> {
        let schema = tenant_schema(tenant);
        self.pool
            .execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
            .await?;
        sqlx::query(
            "INSERT INTO plugin_data.tenants (tenant_id, schema_name) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(&schema)
        .execute(&self.pool)
        .await?;
        let plugins: Vec<(String, sqlx::types::Json<Vec<Migration>>)> =
            sqlx::query_as("SELECT plugin, migrations FROM plugin_data.plugins ORDER BY plugin")
                .fetch_all(&self.pool)
                .await?;
        let mut failures = Vec::new();
        for (plugin, migrations) in plugins {
            let Ok(id) = PluginId::parse(&plugin) else {
                continue;
            };
            if let Err(error) = self.migrate_tenant(&id, &schema, &migrations.0).await {
                failures.push(format!("plugin {plugin}: {error}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(DataError::Tenants(failures))
        }
    }

    /// Keeps a deleted tenant's data aside, out of every plugin's reach.
    pub async fn archive_tenant(&self, tenant: Uuid) -> Result<(), DataError> {
        let schema = tenant_schema(tenant);
        let mut tx = self.pool.begin().await?;
        let archived: Option<bool> = sqlx::query_scalar(
            "UPDATE plugin_data.tenants SET archived = true WHERE tenant_id = $1 AND NOT archived
             RETURNING true",
        )
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        if archived.is_some() {
            (&mut *tx)
                .execute(format!("ALTER SCHEMA {schema} RENAME TO archived_{schema}").as_str())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Installs (or updates to) `migrations` of plugin `id`: its role exists, every active
    /// tenant runs the files it has not run yet.
    pub async fn install(
        &self,
        id: &PluginId,
        version: &str,
        migrations: &[Migration],
    ) -> Result<(), DataError> {
        self.ensure_role(id).await?;
        // The plugin's own schema, named as its role so that it is first on the role's default
        // search path: its consumers' checkpoints and whatever it keeps apart from tenants.
        let role = plugin_role(id);
        self.pool
            .execute(format!("CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role}").as_str())
            .await?;
        sqlx::query(
            "INSERT INTO plugin_data.plugins (plugin, version, migrations) VALUES ($1, $2, $3)
             ON CONFLICT (plugin) DO UPDATE SET version = excluded.version, migrations = excluded.migrations",
        )
        .bind(id.as_str())
        .bind(version)
        .bind(sqlx::types::Json(migrations))
        .execute(&self.pool)
        .await?;
        let mut failures = Vec::new();
        for schema in self.active_schemas().await? {
            if let Err(error) = self.migrate_tenant(id, &schema, migrations).await {
                tracing::warn!(plugin = %id, %schema, %error, "a tenant's migrations failed; rolled back for it");
                failures.push(format!("{schema}: {error}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(DataError::Tenants(failures))
        }
    }

    /// The plugin is gone but its data stays: a tenant created from now on gets nothing of it.
    pub async fn forget(&self, id: &PluginId) -> Result<(), DataError> {
        sqlx::query("DELETE FROM plugin_data.plugins WHERE plugin = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs the plugin's down migrations in every tenant, newest first, then drops whatever
    /// its role still owns, and the role.
    pub async fn purge(&self, id: &PluginId) -> Result<(), DataError> {
        let role = plugin_role(id);
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_some() {
            let migrations: Vec<Migration> =
                sqlx::query_scalar::<_, sqlx::types::Json<Vec<Migration>>>(
                    "SELECT migrations FROM plugin_data.plugins WHERE plugin = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?
                .map(|m| m.0)
                .unwrap_or_default();
            let mut failures = Vec::new();
            let mut connection = self.connect_as(id).await?;
            for schema in self.active_schemas().await? {
                if let Err(error) = purge_tenant(&mut connection, &role, &schema, &migrations).await
                {
                    failures.push(format!("{schema}: {error}"));
                }
            }
            connection.close().await.ok();
            if !failures.is_empty() {
                return Err(DataError::Tenants(failures));
            }
            // What no down migration removed goes too: the purge leaves nothing of the plugin.
            self.pool
                .execute(
                    format!("DROP OWNED BY {role} CASCADE; DROP ROLE IF EXISTS {role}").as_str(),
                )
                .await?;
        }
        self.forget(id).await
    }

    async fn active_schemas(&self) -> Result<Vec<String>, DataError> {
        Ok(sqlx::query_scalar(
            "SELECT schema_name FROM plugin_data.tenants WHERE NOT archived ORDER BY schema_name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn ensure_role(&self, id: &PluginId) -> Result<(), DataError> {
        let role = plugin_role(id);
        // Two installs creating the role at once: the loser's error is "already exists".
        let created = self
            .pool
            .execute(
                format!(
                    "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
                 END IF;
             END $$"
                )
                .as_str(),
            )
            .await;
        match created {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => Ok(()),
            other => other.map(drop).map_err(DataError::from),
        }
    }

    async fn connect_as(&self, id: &PluginId) -> Result<PgConnection, DataError> {
        Ok(PgConnection::connect(&plugin_database_url(&self.database_url, id)).await?)
    }

    /// Runs in `schema` the files of `migrations` it has not run, in one transaction.
    async fn migrate_tenant(
        &self,
        id: &PluginId,
        schema: &str,
        migrations: &[Migration],
    ) -> Result<(), DataError> {
        let role = plugin_role(id);
        self.pool
            .execute(format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}").as_str())
            .await?;
        let mut connection = self.connect_as(id).await?;
        let result = migrate(&mut connection, &role, schema, migrations).await;
        connection.close().await.ok();
        result
    }
}

async fn migrate(
    connection: &mut PgConnection,
    role: &str,
    schema: &str,
    migrations: &[Migration],
) -> Result<(), DataError> {
    let mut tx = connection.begin().await?;
    // Installs and tenant creations of the same tenant take turns.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("{schema}/{role}"))
        .execute(&mut *tx)
        .await?;
    (&mut *tx)
        .execute(
            format!(
                "SET LOCAL search_path TO {schema};
         SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}';
         CREATE TABLE IF NOT EXISTS {schema}.{role}_migrations (
             name text PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
            )
            .as_str(),
        )
        .await?;
    let applied: Vec<String> =
        sqlx::query_scalar(&format!("SELECT name FROM {schema}.{role}_migrations"))
            .fetch_all(&mut *tx)
            .await?;
    let pending: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !applied.contains(&m.name))
        .collect();
    for migration in pending {
        (&mut *tx)
            .execute(migration.up.as_str())
            .await
            .map_err(|e| DataError::Files(format!("{}: {e}", migration.name)))?;
        // A file may have moved the search path: the tracking row goes where it belongs.
        sqlx::query(&format!(
            "INSERT INTO {schema}.{role}_migrations (name) VALUES ($1)"
        ))
        .bind(&migration.name)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn purge_tenant(
    connection: &mut PgConnection,
    role: &str,
    schema: &str,
    migrations: &[Migration],
) -> Result<(), DataError> {
    let mut tx = connection.begin().await?;
    let tracked: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{schema}.{role}_migrations"))
        .fetch_one(&mut *tx)
        .await?;
    if tracked.is_none() {
        return Ok(());
    }
    let applied: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT name FROM {schema}.{role}_migrations ORDER BY name DESC"
    ))
    .fetch_all(&mut *tx)
    .await?;
    (&mut *tx).execute(format!(
        "SET LOCAL search_path TO {schema}; SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
    ).as_str())
            .await?;
    for name in applied {
        let down = migrations
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.down.as_deref());
        if let Some(down) = down {
            (&mut *tx)
                .execute(down)
                .await
                .map_err(|e| DataError::Files(format!("{name}.down: {e}")))?;
        }
    }
    (&mut *tx)
        .execute(format!("DROP TABLE {schema}.{role}_migrations").as_str())
        .await?;
    tx.commit().await?;
    Ok(())
}

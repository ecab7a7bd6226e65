//! The GraphQL schema: plugins and tenants from the catalog projection.

use async_graphql::connection::{Connection, Edge, EmptyFields, query};
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, ErrorExtensions, ID, Object, Result, Schema,
    SimpleObject,
};
use chrono::{DateTime, Utc};
use event_schemas::status::PluginStatus;
use infra::auth::{Claims, Role};
use sqlx::PgPool;

pub type PlexicaSchema = Schema<crate::dead_letters::RootQuery, EmptyMutation, EmptySubscription>;

/// Schema of the catalog projection's tables.
const CATALOG: &str = "catalog";

pub fn build_schema(pool: PgPool) -> PlexicaSchema {
    Schema::build(
        crate::dead_letters::root(Query),
        EmptyMutation,
        EmptySubscription,
    )
    .data(pool)
    .limit_depth(12)
    .limit_complexity(2_000)
    .finish()
}

/// Who asks: none for an anonymous request.
pub struct Viewer(pub Option<Claims>);

/// A GraphQL error with `extensions.code`, the field clients branch on.
pub fn coded_error(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

fn viewer<'a>(ctx: &'a Context<'_>) -> Result<&'a Claims> {
    ctx.data::<Viewer>()
        .ok()
        .and_then(|v| v.0.as_ref())
        .ok_or_else(|| coded_error("UNAUTHENTICATED", "send `Authorization: Bearer <token>`"))
}

fn internal(error: sqlx::Error) -> async_graphql::Error {
    tracing::error!(%error, "read model query failed");
    coded_error("INTERNAL", "the read model could not be queried")
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum TenantStatus {
    Active,
    Suspended,
    Deleted,
}

#[derive(SimpleObject, sqlx::FromRow)]
#[graphql(complex)]
pub struct Plugin {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    #[graphql(skip)]
    pub status: String,
    pub manifest: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Plugin {
    /// The REST representation (spec 004's `plugins` table).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "version": self.version,
            "description": self.description, "status": self.status,
            "manifest": self.manifest, "createdAt": self.created_at, "updatedAt": self.updated_at,
        })
    }
}

#[async_graphql::ComplexObject]
impl Plugin {
    async fn status(&self) -> Result<PluginStatus> {
        PluginStatus::parse(&self.status)
            .ok_or_else(|| coded_error("INTERNAL", format!("unknown status `{}`", self.status)))
    }
}

#[derive(SimpleObject, sqlx::FromRow)]
#[graphql(complex)]
pub struct Tenant {
    #[graphql(skip)]
    pub id: uuid::Uuid,
    pub slug: String,
    pub name: String,
    #[graphql(skip)]
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[async_graphql::ComplexObject]
impl Tenant {
    #[graphql(name = "id")]
    async fn graphql_id(&self) -> ID {
        ID(self.id.to_string())
    }

    async fn status(&self) -> TenantStatus {
        match self.status.as_str() {
            "SUSPENDED" => TenantStatus::Suspended,
            "DELETED" => TenantStatus::Deleted,
            _ => TenantStatus::Active,
        }
    }

    /// The plugins the tenant enabled, disabled ones included with their kept configuration.
    async fn plugins(&self, ctx: &Context<'_>) -> Result<Vec<TenantPlugin>> {
        let pool = ctx.data::<PgPool>()?;
        TenantPlugin::of_tenant(pool, self.id)
            .await
            .map_err(internal)
    }
}

/// A plugin as one tenant has it (spec 004's `tenant_plugins`), with the plugin's name,
/// version and status in the registry.
#[derive(SimpleObject, sqlx::FromRow)]
#[graphql(complex)]
pub struct TenantPlugin {
    pub plugin_id: String,
    /// None until the catalog has the plugin itself: the two come from different topics.
    pub name: Option<String>,
    /// The plugin's version in service.
    pub version: Option<String>,
    #[graphql(skip)]
    pub plugin_status: Option<String>,
    pub enabled: bool,
    pub configuration: serde_json::Value,
    pub enabled_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantPlugin {
    /// The REST representation.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "pluginId": self.plugin_id, "name": self.name, "version": self.version,
            "pluginStatus": self.plugin_status, "enabled": self.enabled,
            "configuration": self.configuration, "enabledAt": self.enabled_at,
            "updatedAt": self.updated_at,
        })
    }

    /// The tenant's plugins (`$1`), by plugin id.
    pub(crate) async fn of_tenant(
        pool: &PgPool,
        tenant: uuid::Uuid,
    ) -> Result<Vec<Self>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT tp.plugin_id, p.name, p.version, p.status AS plugin_status, tp.enabled,
                    tp.configuration, tp.enabled_at, tp.updated_at
             FROM {CATALOG}.tenant_plugins tp
             LEFT JOIN {CATALOG}.plugins p ON p.id = tp.plugin_id
             WHERE tp.tenant_id = $1 ORDER BY tp.plugin_id"
        ))
        .bind(tenant)
        .fetch_all(pool)
        .await
    }
}

#[async_graphql::ComplexObject]
impl TenantPlugin {
    /// The plugin's status in the registry, whatever the tenant did.
    async fn plugin_status(&self) -> Result<Option<PluginStatus>> {
        self.plugin_status
            .as_deref()
            .map(|s| {
                PluginStatus::parse(s)
                    .ok_or_else(|| coded_error("INTERNAL", format!("unknown status `{s}`")))
            })
            .transpose()
    }
}

/// May this viewer read this tenant?
fn can_read_tenant(claims: &Claims, tenant: uuid::Uuid) -> bool {
    claims.has_role(Role::SuperAdmin)
        || (claims.has_role(Role::TenantAdmin)
            && claims.tenant_id.as_deref() == Some(tenant.to_string().as_str()))
}

pub struct Query;

pub(crate) const PLUGIN_COLUMNS: &str =
    "id, name, version, description, status, manifest, created_at, updated_at";
const TENANT_COLUMNS: &str = "id, slug, name, status, created_at, updated_at";

#[Object]
impl Query {
    /// A plugin of the registry by id. Any signed-in admin can read the registry.
    async fn plugin(&self, ctx: &Context<'_>, id: String) -> Result<Option<Plugin>> {
        viewer(ctx)?;
        let pool = ctx.data::<PgPool>()?;
        sqlx::query_as(&format!(
            "SELECT {PLUGIN_COLUMNS} FROM {CATALOG}.plugins WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(internal)
    }

    /// Registered plugins ordered by id, as a Relay connection.
    async fn plugins(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Plugin, PluginsTotal, EmptyFields>> {
        viewer(ctx)?;
        let pool = ctx.data::<PgPool>()?.clone();
        query(
            after,
            None,
            first,
            None,
            |after: Option<String>, _, first, _| async move {
                let limit = first.unwrap_or(50).clamp(1, 100);
                let rows: Vec<Plugin> = sqlx::query_as(&format!(
                    "SELECT {PLUGIN_COLUMNS} FROM {CATALOG}.plugins
                 WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2"
                ))
                .bind(after)
                .bind(i64::try_from(limit + 1).unwrap_or(101))
                .fetch_all(&pool)
                .await
                .map_err(internal)?;
                let total: i64 =
                    sqlx::query_scalar(&format!("SELECT count(*) FROM {CATALOG}.plugins"))
                        .fetch_one(&pool)
                        .await
                        .map_err(internal)?;
                let has_next = rows.len() > limit;
                let mut connection = Connection::with_additional_fields(
                    false,
                    has_next,
                    PluginsTotal { total_count: total },
                );
                connection.edges.extend(
                    rows.into_iter()
                        .take(limit)
                        .map(|plugin| Edge::new(plugin.id.clone(), plugin)),
                );
                Ok::<_, async_graphql::Error>(connection)
            },
        )
        .await
    }

    /// A tenant by id: super admins see every tenant, tenant admins their own.
    async fn tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Tenant>> {
        let claims = viewer(ctx)?;
        let Ok(id) = uuid::Uuid::parse_str(&id) else {
            return Ok(None);
        };
        if !can_read_tenant(claims, id) {
            return Err(coded_error("FORBIDDEN", "this tenant is not yours to read"));
        }
        let pool = ctx.data::<PgPool>()?;
        sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM {CATALOG}.tenants WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(internal)
    }

    /// The tenants the viewer may read, by slug.
    async fn tenants(&self, ctx: &Context<'_>) -> Result<Vec<Tenant>> {
        let claims = viewer(ctx)?;
        let pool = ctx.data::<PgPool>()?;
        let rows: Vec<Tenant> = sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM {CATALOG}.tenants ORDER BY slug"
        ))
        .fetch_all(pool)
        .await
        .map_err(internal)?;
        Ok(rows
            .into_iter()
            .filter(|t| can_read_tenant(claims, t.id))
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct PluginsTotal {
    total_count: i64,
}

//! The GraphQL schema: plugins and tenants from the catalog projection.

use async_graphql::dataloader::DataLoader;
use async_graphql::{
    Context, EmptyMutation, Enum, ErrorExtensions, ID, Object, Result, Schema, SimpleObject,
};
use chrono::{DateTime, Utc};
use event_schemas::status::PluginStatus;
use infra::auth::Claims;
use infra::policy::{Access, Principal, authorize};
use sqlx::PgPool;

use crate::edge::{page_size, search_text};
use crate::plugin_health::{HealthOf, Observed, PluginHealth, PluginInstance};
use crate::registry::{
    Labels, LabelsOf, PluginVersion, Rating, RatingOf, RegistryLoader, SEARCH_DOCUMENT,
    TenantCountOf, VersionsOf, prefix_query,
};

pub type PlexicaSchema = Schema<Root, EmptyMutation, crate::subscriptions::SubscriptionRoot>;

/// Every query, from the modules that answer them.
#[derive(async_graphql::MergedObject, Default)]
pub struct Root(
    Query,
    crate::plugin_list::PluginListQuery,
    crate::history::HistoryQuery,
    crate::projections::ProjectionsQuery,
    crate::dead_letters::DeadLetterQuery,
    crate::shell::ShellQuery,
    crate::permissions::PermissionsQuery,
);

/// The complexity of a root field that runs statements: with the limit of 2,000, one request
/// holds at most about twenty, however many aliases it uses.
pub(crate) const EXPENSIVE: usize = 100;

/// Schema of the catalog projection's tables.
pub(crate) const CATALOG: &str = "catalog";

pub fn build_schema(
    pool: PgPool,
    monitor: std::sync::Arc<crate::projections::Monitor>,
    notifications: std::sync::Arc<crate::notifications::Notifications>,
) -> PlexicaSchema {
    let loader = DataLoader::new(RegistryLoader { pool: pool.clone() }, tokio::spawn);
    Schema::build(
        Root::default(),
        EmptyMutation,
        crate::subscriptions::SubscriptionRoot,
    )
    .data(loader)
    .data(monitor)
    .data(notifications)
    .data(pool)
    .extension(crate::edge::StorableTextCheck)
    .extension(crate::edge::ErrorCodesCheck)
    // The standard introspection query (GraphiQL, code generators, schemathesis) nests 13
    // deep through `ofType`; expensive fields are bounded by their complexity instead.
    .limit_depth(16)
    .limit_complexity(2_000)
    .finish()
}

/// Who asks: none for an anonymous request.
pub struct Viewer(pub Option<Claims>);

/// A GraphQL error with `extensions.code`, the field clients branch on.
pub fn coded_error(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

pub(crate) fn viewer<'a>(ctx: &'a Context<'_>) -> Result<&'a Claims> {
    ctx.data::<Viewer>()
        .ok()
        .and_then(|v| v.0.as_ref())
        .ok_or_else(|| coded_error("UNAUTHENTICATED", "send `Authorization: Bearer <token>`"))
}

/// The viewer, when the policy lets them do `access`.
pub(crate) fn authorized<'a>(ctx: &'a Context<'_>, access: Access) -> Result<&'a Claims> {
    let claims = viewer(ctx)?;
    authorize(Principal::of(claims), access)
        .map(|()| claims)
        .map_err(|denied| coded_error("FORBIDDEN", denied.to_string()))
}

/// The viewer, when a super admin: for what spans tenants.
pub(crate) fn super_admin<'a>(ctx: &'a Context<'_>, _what: &str) -> Result<&'a Claims> {
    authorized(ctx, Access::ReadPlatform)
}

pub(crate) fn internal(error: sqlx::Error) -> async_graphql::Error {
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
    /// The last install step completed, while INSTALLING.
    pub install_step: Option<String>,
    /// The version an update is installing, while it runs.
    pub pending_version: Option<String>,
    /// Why the last install or update failed, until the next attempt.
    pub last_error: Option<String>,
    /// Why the platform disabled the plugin, while DISABLED.
    pub status_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn load_error(error: std::sync::Arc<sqlx::Error>) -> async_graphql::Error {
    tracing::error!(%error, "read model query failed");
    coded_error("INTERNAL", "the read model could not be queried")
}

impl Plugin {
    /// The REST representation (spec 004's `plugins` table).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "version": self.version,
            "description": self.description, "status": self.status,
            "manifest": self.manifest, "installStep": self.install_step,
            "pendingVersion": self.pending_version, "lastError": self.last_error,
            "statusReason": self.status_reason,
            "createdAt": self.created_at, "updatedAt": self.updated_at,
        })
    }
}

#[async_graphql::ComplexObject]
impl Plugin {
    async fn status(&self) -> Result<PluginStatus> {
        PluginStatus::parse(&self.status)
            .ok_or_else(|| coded_error("INTERNAL", format!("unknown status `{}`", self.status)))
    }

    async fn categories(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(self.labels(ctx).await?.categories)
    }

    async fn tags(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(self.labels(ctx).await?.tags)
    }

    /// Whether a super admin verified the plugin for the marketplace.
    async fn verified(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.labels(ctx).await?.verified)
    }

    async fn rating(&self, ctx: &Context<'_>) -> Result<Rating> {
        let loader = ctx.data::<DataLoader<RegistryLoader>>()?;
        Ok(loader
            .load_one(RatingOf(self.id.clone()))
            .await
            .map_err(load_error)?
            .unwrap_or_default())
    }

    /// Every published version, oldest first.
    async fn versions(&self, ctx: &Context<'_>) -> Result<Vec<PluginVersion>> {
        let loader = ctx.data::<DataLoader<RegistryLoader>>()?;
        Ok(loader
            .load_one(VersionsOf(self.id.clone()))
            .await
            .map_err(load_error)?
            .unwrap_or_default())
    }

    /// How its running instance is, as the runtime last recorded it in the log; none before
    /// it first ran.
    async fn health(&self, ctx: &Context<'_>) -> Result<Option<PluginHealth>> {
        Ok(self.observed(ctx).await?.map(|observed| observed.health))
    }

    /// Where it is served, while it runs.
    async fn instances(&self, ctx: &Context<'_>) -> Result<Vec<PluginInstance>> {
        Ok(self
            .observed(ctx)
            .await?
            .map(|observed| observed.instances())
            .unwrap_or_default())
    }

    /// How many tenants (not deleted) have the plugin enabled.
    async fn tenant_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let loader = ctx.data::<DataLoader<RegistryLoader>>()?;
        Ok(loader
            .load_one(TenantCountOf(self.id.clone()))
            .await
            .map_err(load_error)?
            .unwrap_or(0))
    }
}

impl Plugin {
    async fn observed(&self, ctx: &Context<'_>) -> Result<Option<Observed>> {
        let loader = ctx.data::<DataLoader<RegistryLoader>>()?;
        loader
            .load_one(HealthOf(self.id.clone()))
            .await
            .map_err(load_error)
    }

    async fn labels(&self, ctx: &Context<'_>) -> Result<Labels> {
        let loader = ctx.data::<DataLoader<RegistryLoader>>()?;
        Ok(loader
            .load_one(LabelsOf(self.id.clone()))
            .await
            .map_err(load_error)?
            .unwrap_or_default())
    }
}

/// Plugin `id` as the catalog has it.
pub(crate) async fn load_plugin(pool: &PgPool, id: &str) -> Result<Option<Plugin>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM {CATALOG}.plugins WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A plugin found by the registry's search, with how well it matches.
#[derive(SimpleObject)]
pub struct SearchHit {
    pub plugin: Plugin,
    pub rank: f32,
}

#[derive(sqlx::FromRow)]
pub(crate) struct RankedPlugin {
    #[sqlx(flatten)]
    pub plugin: Plugin,
    pub rank: f32,
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
pub(crate) fn can_read_tenant(claims: &Claims, tenant: uuid::Uuid) -> bool {
    authorize(Principal::of(claims), Access::ReadTenant(tenant)).is_ok()
}

#[derive(Default)]
pub struct Query;

pub(crate) const PLUGIN_COLUMNS: &str = "id, name, version, description, status, manifest,
     install_step, pending_version, last_error, status_reason, created_at, updated_at";
/// The same columns of the plugin row `p`.
pub(crate) const PLUGIN_COLUMNS_OF_P: &str =
    "p.id, p.name, p.version, p.description, p.status, p.manifest,
     p.install_step, p.pending_version, p.last_error, p.status_reason, p.created_at, p.updated_at";
const TENANT_COLUMNS: &str = "id, slug, name, status, created_at, updated_at";

#[Object]
impl Query {
    /// A plugin of the registry by id. Any signed-in admin can read the registry.
    async fn plugin(&self, ctx: &Context<'_>, id: String) -> Result<Option<Plugin>> {
        authorized(ctx, Access::ReadRegistry)?;
        let pool = ctx.data::<PgPool>()?;
        load_plugin(pool, &id).await.map_err(internal)
    }

    /// The published versions of a plugin, oldest first.
    #[graphql(complexity = "EXPENSIVE + child_complexity")]
    async fn plugin_versions(
        &self,
        ctx: &Context<'_>,
        plugin_id: String,
    ) -> Result<Vec<PluginVersion>> {
        authorized(ctx, Access::ReadRegistry)?;
        let loader = ctx.data::<DataLoader<RegistryLoader>>()?;
        Ok(loader
            .load_one(VersionsOf(plugin_id))
            .await
            .map_err(load_error)?
            .unwrap_or_default())
    }

    /// Full-text search of the registry (name, description, categories, tags), best match
    /// first. The query takes web-search syntax: words, `"a phrase"`, `-excluded`, `or`.
    #[graphql(complexity = "EXPENSIVE + child_complexity")]
    async fn registry_search(
        &self,
        ctx: &Context<'_>,
        query: String,
        first: Option<i32>,
    ) -> Result<Vec<SearchHit>> {
        authorized(ctx, Access::ReadRegistry)?;
        search_text("query", &query)?;
        let pool = ctx.data::<PgPool>()?;
        let limit = page_size(first, 20, 100)?;
        let rows: Vec<RankedPlugin> = sqlx::query_as(&format!(
            "SELECT {PLUGIN_COLUMNS_OF_P},
                    ts_rank({SEARCH_DOCUMENT}, websearch_to_tsquery('simple', $1)) AS rank
             FROM {CATALOG}.plugins p
             LEFT JOIN {CATALOG}.plugin_registry r ON r.plugin_id = p.id
             WHERE {SEARCH_DOCUMENT} @@ websearch_to_tsquery('simple', $1)
             ORDER BY rank DESC, p.id LIMIT $2"
        ))
        .bind(query)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|row| SearchHit {
                plugin: row.plugin,
                rank: row.rank,
            })
            .collect())
    }

    /// Autocomplete: names of plugins, categories and tags that start with the words typed
    /// so far, best first, at most `first` (default 10).
    #[graphql(complexity = "EXPENSIVE + child_complexity")]
    async fn registry_suggest(
        &self,
        ctx: &Context<'_>,
        prefix: String,
        first: Option<i32>,
    ) -> Result<Vec<String>> {
        authorized(ctx, Access::ReadRegistry)?;
        search_text("prefix", &prefix)?;
        let limit = page_size(first, 10, 50)?;
        let Some(words) = prefix_query(&prefix) else {
            return Ok(vec![]);
        };
        let pool = ctx.data::<PgPool>()?;
        sqlx::query_scalar(&format!(
            "WITH candidates AS (
                 SELECT p.name AS suggestion, 0 AS kind FROM {CATALOG}.plugins p
                 UNION SELECT unnest(r.categories), 1 FROM {CATALOG}.plugin_registry r
                 UNION SELECT unnest(r.tags), 2 FROM {CATALOG}.plugin_registry r
             )
             SELECT suggestion FROM (
                 SELECT suggestion, min(kind) AS kind FROM candidates
                 WHERE to_tsvector('simple', suggestion) @@ to_tsquery('simple', $1)
                 GROUP BY suggestion
             ) found
             ORDER BY kind, length(suggestion), suggestion LIMIT $2"
        ))
        .bind(words)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(internal)
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

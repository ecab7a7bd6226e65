//! The permissions installed plugins registered (spec 004 FR-014), for the admin screens that
//! grant them.

use async_graphql::{Context, Object, Result, SimpleObject};
use infra::policy::Access;
use sqlx::PgPool;

use crate::edge::page_size;
use crate::schema::{CATALOG, EXPENSIVE, authorized, internal};

/// A permission a plugin registered when it was installed, as its manifest declares it.
#[derive(Debug, Clone, SimpleObject, sqlx::FromRow)]
pub struct Permission {
    /// Unique across plugins (`crm.deals.read`).
    pub key: String,
    pub plugin_id: String,
    pub name: String,
    pub description: Option<String>,
}

#[derive(Default)]
pub struct PermissionsQuery;

#[Object]
impl PermissionsQuery {
    /// The registered permissions by key, of one plugin or of all; at most `first` (100 by
    /// default, 1,000 at most).
    #[graphql(complexity = "EXPENSIVE + child_complexity")]
    async fn permissions(
        &self,
        ctx: &Context<'_>,
        plugin_id: Option<String>,
        first: Option<i32>,
    ) -> Result<Vec<Permission>> {
        authorized(ctx, Access::ReadRegistry)?;
        let limit = page_size(first, 100, 1_000)?;
        let pool = ctx.data::<PgPool>()?;
        sqlx::query_as(&format!(
            "SELECT key, plugin_id, name, description FROM {CATALOG}.permissions
             WHERE $1::text IS NULL OR plugin_id = $1
             ORDER BY key, plugin_id LIMIT $2"
        ))
        .bind(plugin_id)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(internal)
    }
}

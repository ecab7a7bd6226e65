//! The plugin's database, scoped to a request's tenant: a transaction whose `search_path` is the
//! tenant's schema ([`domain::TenantSchema`]), so the plugin's unqualified tables are the tenant's.

use domain::TenantSchema;
use sqlx::{PgPool, Postgres, Transaction};

use crate::context::RequestContext;

#[derive(Clone)]
pub struct TenantDb {
    pool: PgPool,
}

impl TenantDb {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// A transaction in the schema of the request's tenant; commit it to keep its writes.
    pub async fn begin(
        &self,
        context: &RequestContext,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        // The schema name is `tenant_` and 32 hex digits: a safe identifier.
        let schema = TenantSchema::of(context.tenant);
        sqlx::query(&format!("SET LOCAL search_path TO {schema}"))
            .execute(&mut *transaction)
            .await?;
        Ok(transaction)
    }
}

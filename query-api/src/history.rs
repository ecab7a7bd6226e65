//! Who did what, when and from which command: the event history of an aggregate, and the
//! steps of an operation (the events of one command, or of the saga it started).

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use event_schemas::CoreEvent;
use sqlx::PgPool;

use crate::schema::{CATALOG, can_read_tenant, coded_error, internal, super_admin, viewer};

/// One event as the history shows it.
#[derive(Debug, Clone, SimpleObject, sqlx::FromRow)]
pub struct HistoryEntry {
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// `plugin:crm`, `tenant:{uuid}`, `registry:crm`, …
    pub aggregate_id: String,
    pub aggregate_version: Option<i64>,
    pub occurred_at: DateTime<Utc>,
    /// Who sent the command.
    pub user_id: Option<String>,
    pub tenant_id: Option<String>,
    /// The command that caused the event.
    pub command_id: Option<uuid::Uuid>,
    /// The operation the event belongs to.
    pub operation_id: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

const ENTRY_COLUMNS: &str = "event_id, event_type, aggregate_key AS aggregate_id,
     aggregate_version, occurred_at, user_id, tenant_id, causation_id AS command_id,
     correlation_id AS operation_id, topic, partition, log_offset AS \"offset\"";

pub use event_schemas::status::OperationStatus;

/// What the last event of an operation says of it, as the event's declaration says; an event
/// of no `core.*` type ends nothing it started.
fn status_after(last_event_type: &str) -> OperationStatus {
    CoreEvent::stage_of(last_event_type).unwrap_or(OperationStatus::Succeeded)
}

/// A command and, for install, update and uninstall, the saga it started.
#[derive(SimpleObject)]
pub struct Operation {
    pub id: ID,
    pub status: OperationStatus,
    /// The aggregate the operation's command addressed.
    pub aggregate_id: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every event of the operation, in the order they happened.
    pub steps: Vec<HistoryEntry>,
}

#[derive(Default)]
pub struct HistoryQuery;

#[Object]
impl HistoryQuery {
    /// The events of one aggregate (`plugin:crm`, `tenant:{id}`), oldest first. Super admins
    /// read every history, tenant admins their tenant's.
    #[graphql(complexity = "crate::schema::EXPENSIVE + child_complexity")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        aggregate_id: String,
        first: Option<i32>,
    ) -> Result<Vec<HistoryEntry>> {
        let claims = viewer(ctx)?;
        let own_tenant = aggregate_id
            .strip_prefix("tenant:")
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .is_some_and(|tenant| can_read_tenant(claims, tenant));
        if !(super_admin(ctx, "histories").is_ok() || own_tenant) {
            return Err(coded_error(
                "FORBIDDEN",
                "this history is not yours to read",
            ));
        }
        let limit = crate::edge::page_size(first, 100, 1000)?;
        let pool = ctx.data::<PgPool>()?;
        sqlx::query_as(&format!(
            "SELECT {ENTRY_COLUMNS} FROM {CATALOG}.event_history
             WHERE aggregate_key = $1 ORDER BY aggregate_version, occurred_at LIMIT $2"
        ))
        .bind(aggregate_id)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(internal)
    }

    /// An operation by id (the `commandId` of a command's reply, the id in its `Location`):
    /// none until its first event is projected. Super admins only.
    async fn operation(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Operation>> {
        super_admin(ctx, "operations")?;
        let pool = ctx.data::<PgPool>()?;
        load_operation(pool, id.as_str()).await.map_err(internal)
    }
}

/// The operation `id` as the catalog has it: none before its first event is projected.
pub(crate) async fn load_operation(
    pool: &PgPool,
    id: &str,
) -> Result<Option<Operation>, sqlx::Error> {
    let steps: Vec<HistoryEntry> = sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} FROM {CATALOG}.event_history
         WHERE correlation_id = $1 ORDER BY occurred_at, topic, partition, log_offset"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    let Some(first) = steps.first() else {
        return Ok(None);
    };
    // The addressed aggregate's events tell where the operation is; the reservations a saga
    // makes on the way (`names-reserved`, `names-released`) do not.
    let last = steps
        .iter()
        .rev()
        .find(|step| step.aggregate_id == first.aggregate_id)
        .unwrap_or(first);
    Ok(Some(Operation {
        id: ID(id.to_owned()),
        status: status_after(&last.event_type),
        aggregate_id: first.aggregate_id.clone(),
        started_at: first.occurred_at,
        updated_at: steps
            .last()
            .map_or(last.occurred_at, |step| step.occurred_at),
        steps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_is_as_its_last_event_says() {
        use OperationStatus::*;
        for (last, status) in [
            ("core.plugin.registered", Succeeded),
            ("core.plugin.install-requested", Running),
            ("core.plugin.install-step-completed", Running),
            ("core.plugin.installed", Succeeded),
            ("core.plugin.install-failed", Failed),
            ("core.plugin.update-failed", Failed),
            ("core.tenant.suspended", Succeeded),
            ("plugin.crm.deal-won", Succeeded),
        ] {
            assert_eq!(status_after(last), status, "{last}");
        }
    }
}

//! GraphQL subscriptions (graphql-ws, on `/graphql/ws`), fed by what the catalog announces
//! after each commit: a subscriber only ever sees committed read models.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Context, ID, Result, Subscription};
use futures::Stream;
use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;

use crate::history::{Operation, OperationStatus, load_operation};
use crate::notifications::{Change, Notifications};
use crate::schema::{Plugin, authorized, load_plugin, super_admin};
use infra::policy::Access;

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// A plugin each time its status changes (of plugin `id` only, when given). Any signed-in
    /// admin can follow the registry.
    async fn plugin_status_changed(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
    ) -> Result<impl Stream<Item = Plugin> + use<>> {
        authorized(ctx, Access::ReadRegistry)?;
        let pool = ctx.data::<PgPool>()?.clone();
        let mut changes = ctx.data::<Arc<Notifications>>()?.changes();
        Ok(async_stream::stream! {
            let mut last_status: HashMap<String, String> = HashMap::new();
            loop {
                let changed = match changes.recv().await {
                    Ok(Change::Plugin(changed)) => changed,
                    Ok(Change::Operation(_)) => continue,
                    // Behind the announcements: what was missed is re-read with the next one.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                if id.as_ref().is_some_and(|wanted| *wanted != changed) {
                    continue;
                }
                let plugin = match load_plugin(&pool, &changed).await {
                    Ok(Some(plugin)) => plugin,
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "reading a changed plugin failed");
                        continue;
                    }
                };
                if last_status.get(&plugin.id) != Some(&plugin.status) {
                    last_status.insert(plugin.id.clone(), plugin.status.clone());
                    yield plugin;
                }
            }
        })
    }

    /// Operation `id` as it is now, then after each of its steps, until it succeeds or fails.
    /// Super admins only.
    async fn operation_progress(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<impl Stream<Item = Operation> + use<>> {
        super_admin(ctx, "operations")?;
        let pool = ctx.data::<PgPool>()?.clone();
        // Subscribed before the first read, so no step falls between the two.
        let mut changes = ctx.data::<Arc<Notifications>>()?.changes();
        Ok(async_stream::stream! {
            let mut steps_seen = 0;
            let mut wake = true;
            loop {
                if wake {
                    match load_operation(&pool, id.as_str()).await {
                        Ok(Some(operation)) if operation.steps.len() > steps_seen => {
                            steps_seen = operation.steps.len();
                            let finished = operation.status != OperationStatus::Running;
                            yield operation;
                            if finished {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "reading an operation failed"),
                    }
                }
                wake = match changes.recv().await {
                    Ok(Change::Operation(changed)) => changed == id.as_str(),
                    Ok(Change::Plugin(_)) => false,
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => break,
                };
            }
        })
    }
}

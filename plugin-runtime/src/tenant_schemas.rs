//! The consumer that gives every tenant its schema (`core.tenant.created`) with the
//! migrations of every installed plugin, and archives a deleted tenant's schema.

use std::sync::Arc;

use event_schemas::events::TenantEvent;
use event_schemas::{Codec, CoreEvent, Topics};
use futures::future::BoxFuture;
use infra::config::KafkaConfig;
use infra::consumer::{ConsumerSpec, Fencing, HandlerError, Record, RecordHandler, RunnerError};
use infra::http::Readiness;
use rdkafka::Message;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::tenant_data::{DataError, TenantData};

pub const NAME: &str = event_schemas::topics::TENANT_SCHEMAS_CONSUMER;

pub fn spec(topics: &Topics) -> ConsumerSpec {
    ConsumerSpec {
        name: NAME.to_owned(),
        group: topics.group("plexica.tenant-schemas"),
        schema: crate::tenant_data::SCHEMA.to_owned(),
        topics: vec![topics.tenants()],
        fenced: Fencing::Every,
        dlq_topic: topics.dlq(),
        // A tenant's schema follows its events in order: a failed create holds back its drop.
        retry_topic: Some(topics.retry(NAME)),
        park_keys: true,
        pace: infra::kafka::Pace::Background,
        serving: None,
        hands_on: false,
    }
}

/// Runs the consumer until `shutdown` is cancelled.
pub async fn run(
    data: TenantData,
    codec: Arc<Codec>,
    kafka: &KafkaConfig,
    topics: &Topics,
    pool: PgPool,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let handler = TenantSchemas { data, codec };
    infra::consumer::run(spec(topics), handler, kafka, pool, readiness, shutdown).await
}

struct TenantSchemas {
    data: TenantData,
    codec: Arc<Codec>,
}

#[derive(Debug, thiserror::Error)]
#[error("tenant id `{0}` is not a UUID")]
struct BadTenantId(String);

impl RecordHandler for TenantSchemas {
    fn ddl(&self, _schema: &str) -> String {
        crate::tenant_data::DDL.to_owned()
    }

    type Decoded = CoreEvent;

    fn decode<'a>(
        &'a mut self,
        record: &'a Record<'a>,
    ) -> BoxFuture<'a, Result<CoreEvent, HandlerError>> {
        Box::pin(async move { Ok(self.codec.decode_event(record.message.payload()).await?) })
    }

    fn apply<'a>(
        &'a mut self,
        _tx: &'a mut PgConnection,
        _record: &'a Record<'a>,
        event: CoreEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let CoreEvent::Tenant(event) = event else {
                return Ok(());
            };
            let tenant = event.tenant_id();
            let id = Uuid::parse_str(tenant)
                .map_err(|_| HandlerError::permanent(BadTenantId(tenant.to_owned())))?;
            let created = match event {
                TenantEvent::Created(_) => true,
                TenantEvent::Deleted(_) => false,
                TenantEvent::Suspended(_)
                | TenantEvent::Reactivated(_)
                | TenantEvent::PluginEnabled(_)
                | TenantEvent::PluginDisabled(_)
                | TenantEvent::PluginConfigured(_) => return Ok(()),
            };
            // A task of its own: the migrations' futures are not `Send` for every lifetime,
            // which the runner's boxed future would need.
            let data = self.data.clone();
            let result = tokio::spawn(async move {
                if created {
                    data.create_tenant(id).await
                } else {
                    data.archive_tenant(id).await
                }
            })
            .await
            .map_err(|e| HandlerError::Retryable(Box::new(e)))?;
            match result {
                Ok(()) => Ok(()),
                // The schema is there; a plugin whose migration fails in it is that plugin's
                // failure, for an admin to retry, not a reason to stop reading tenants.
                Err(DataError::Tenants(failures)) => {
                    tracing::error!(tenant = %id, ?failures, "plugin migrations failed in a new tenant");
                    metrics::counter!("plexica_tenant_migration_failures_total").increment(1);
                    Ok(())
                }
                Err(DataError::Database(error)) => Err(HandlerError::from(error)),
                Err(error) => Err(HandlerError::permanent(error)),
            }
        })
    }
}

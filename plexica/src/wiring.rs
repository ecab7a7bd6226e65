//! How the parts are wired: each part adds its routes and starts its components, in one shape
//! (a name, a task, an end that is logged here), from what every part shares.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use command_api::outcomes::{OutcomeStore, OutcomeWaiters};
use event_schemas::{Codec, Topics};
use infra::auth::TokenKeys;
use infra::http::Readiness;
use plugin_runtime::config::{Driver, PlatformEnvironment};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{LaunchError, PlatformConfig, bind};

/// How a component's task ended, for the log: an error it could not recover from, or nothing
/// (it stopped because the platform stops, or of its own accord).
pub(crate) trait ComponentEnd {
    fn report(self, name: &'static str);
}

impl ComponentEnd for () {
    fn report(self, _: &'static str) {}
}

impl<E: Display> ComponentEnd for Result<(), E> {
    fn report(self, name: &'static str) {
        if let Err(error) = self {
            tracing::error!(component = name, %error, "component stopped");
        }
    }
}

/// What every part is started with, and the tasks of the components started so far.
pub(crate) struct Wiring<'a> {
    pub config: &'a PlatformConfig,
    pub pool: PgPool,
    pub readiness: Readiness,
    pub topics: Topics,
    pub keys: TokenKeys,
    pub shutdown: CancellationToken,
    /// Each component's task, which ends with its name.
    pub tasks: JoinSet<&'static str>,
}

/// What a consumer component takes into its task, each its own.
struct ConsumerParts {
    kafka: infra::config::KafkaConfig,
    topics: Topics,
    pool: PgPool,
    readiness: Readiness,
    token: CancellationToken,
}

impl Wiring<'_> {
    fn consumer_parts(&self) -> ConsumerParts {
        ConsumerParts {
            kafka: self.config.kafka.clone(),
            topics: self.topics.clone(),
            pool: self.pool.clone(),
            readiness: self.readiness.clone(),
            token: self.shutdown.clone(),
        }
    }

    /// Runs a component as a task that ends with its name, so that the process knows which one
    /// stopped; how it ended is logged.
    pub fn spawn<F>(&mut self, name: &'static str, component: F)
    where
        F: Future + Send + 'static,
        F::Output: ComponentEnd,
    {
        self.tasks.spawn(async move {
            component.await.report(name);
            name
        });
    }

    /// The embedded schema registry on its own listener, restored from its journal on the log;
    /// returns its URL.
    pub async fn schema_registry(&mut self) -> Result<String, LaunchError> {
        let (kafka, topics, pool) = (&self.config.kafka, &self.topics, &self.pool);
        // Postgres is the registry's cache; the journal on the log is what it knows.
        let restored = schema_registry::journal::restore(kafka, &topics.schemas(), pool)
            .await
            .map_err(LaunchError::SchemaJournal)?;
        tracing::info!(
            entries = restored,
            "schema registry restored from its journal"
        );
        let journal = schema_registry::Journal::new(kafka, topics.schemas())
            .map_err(LaunchError::SchemaJournal)?;
        if restored == 0 {
            let written = schema_registry::journal::backfill(&journal, pool)
                .await
                .map_err(LaunchError::SchemaJournal)?;
            if written > 0 {
                tracing::info!(
                    entries = written,
                    "schema registry journal written from Postgres"
                );
            }
        }
        let listener = bind(self.config.registry.listen).await?;
        let addr = local_addr(&listener, self.config.registry.listen)?;
        let (pool, keys, token) = (self.pool.clone(), self.keys.clone(), self.shutdown.clone());
        let topics = self.topics.clone();
        self.spawn(
            "schema registry",
            schema_registry::serve(listener, pool, keys, topics, Some(journal), async move {
                token.cancelled().await
            }),
        );
        tracing::info!(%addr, "schema registry listening");
        Ok(format!("http://{addr}"))
    }

    /// The command API, the command processor and the plugin sagas, with the plugins' runtime
    /// and gateway when plugins run for real; returns the runtime that runs them.
    pub async fn command_side(
        &mut self,
        codec: &Arc<Codec>,
        registry_url: &str,
        http_addr: SocketAddr,
        router: &mut Router,
    ) -> Result<Option<plugin_runtime::ProcessRuntime>, LaunchError> {
        let config = self.config;
        let redis = infra::redis::connect(&config.redis).await?;
        let waiters = OutcomeWaiters::default();
        let client = infra::redis::client(&config.redis)?;
        self.spawn(
            "command outcome listener",
            waiters.clone().listen(client, self.shutdown.clone()),
        );
        // One global view per process, for the processor's rules and the sagas' policies.
        let directory = command_api::directory::spawn(
            &config.kafka,
            &self.topics,
            codec.clone(),
            "plexica.directory",
            self.shutdown.clone(),
        )
        .await?;
        // The bus hands its commands to this process's processor: no consumer hop for the
        // partitions it owns.
        let (local_commands, local_bus) = command_api::processor::handoff::channel(waiters.clone());
        let processor = command_api::processor::Processor::new(
            &config.kafka,
            self.topics.clone(),
            self.pool.clone(),
            OutcomeStore::new(redis.clone()),
            codec.clone(),
            directory.clone(),
            Some(local_bus),
        )?;
        self.readiness.register("command-processor");
        self.spawn(
            "command processor",
            processor.run(self.readiness.clone(), self.shutdown.clone()),
        );
        let bus = command_api::CommandBus::new(
            infra::kafka::producer(&config.kafka)?,
            codec.clone(),
            self.topics.clone(),
            redis,
            waiters,
            config.command_api.reply_timeout(),
        )
        .handing_off_to(local_commands);
        // The webhooks run beside the bus: the deliverer disables failing endpoints with it.
        self.webhooks(codec, command_api::webhook_disabler::disabler(bus.clone()))?;
        let spec = command_api::sagas::spec(&self.topics);
        let ConsumerParts {
            kafka,
            pool,
            readiness,
            token,
            ..
        } = self.consumer_parts();
        let runtime = match config.plugins.driver {
            Driver::Simulated => {
                let tools = command_api::sagas::SagaTools {
                    runtime: command_api::sagas::SimulatedRuntime,
                    bus: bus.clone(),
                    codec: codec.clone(),
                    directory,
                };
                self.spawn("plugin sagas", async move {
                    command_api::sagas::run(spec, tools, &kafka, pool, readiness, token).await
                });
                None
            }
            Driver::Process => {
                let tenant_data = plugin_runtime::tenant_data::TenantData::new(
                    self.pool.clone(),
                    config.postgres.url.clone(),
                )
                .await?;
                self.tenant_schemas(codec, tenant_data.clone());
                let runtime = plugin_runtime::ProcessRuntime::new(
                    config.plugins.clone(),
                    PlatformEnvironment {
                        database_url: config.postgres.url.clone(),
                        kafka: config.kafka.clone(),
                        schema_registry_url: registry_url.to_owned(),
                        gateway_url: format!("http://{http_addr}"),
                        topics: self.topics.clone(),
                        keys: self.keys.clone(),
                    },
                    Some(tenant_data),
                );
                *router = std::mem::take(router).merge(plugin_runtime::gateway::router(
                    plugin_runtime::gateway::GatewayState::new(
                        runtime.clone(),
                        self.keys.clone(),
                        self.pool.clone(),
                        std::time::Duration::from_millis(config.plugins.gateway_timeout_ms),
                    ),
                ));
                let tools = command_api::sagas::SagaTools {
                    runtime: runtime.clone(),
                    bus: bus.clone(),
                    codec: codec.clone(),
                    directory,
                };
                self.spawn(
                    "plugin health recorder",
                    command_api::health_recorder::run(
                        runtime.clone(),
                        bus.clone(),
                        self.shutdown.clone(),
                    ),
                );
                let running = runtime.clone();
                self.spawn("plugin sagas", async move {
                    let ended = command_api::sagas::run(
                        spec,
                        tools,
                        &kafka,
                        pool,
                        readiness,
                        token.clone(),
                    )
                    .await;
                    // The plugins stop with the platform that runs them.
                    if ended.is_ok() {
                        token.cancelled().await;
                    }
                    running.shutdown().await;
                    ended
                });
                Some(runtime)
            }
        };
        *router = std::mem::take(router).merge(command_api::router(
            bus,
            self.keys.clone(),
            config.webhooks.signing_key(),
        ));
        Ok(runtime)
    }

    /// Gives every tenant its schema and every installed plugin's migrations in it.
    fn tenant_schemas(
        &mut self,
        codec: &Arc<Codec>,
        data: plugin_runtime::tenant_data::TenantData,
    ) {
        let ConsumerParts {
            kafka,
            topics,
            pool,
            readiness,
            token,
        } = self.consumer_parts();
        let codec = codec.clone();
        self.spawn("tenant schemas", async move {
            plugin_runtime::tenant_schemas::run(
                data, codec, &kafka, &topics, pool, readiness, token,
            )
            .await
        });
    }

    /// The projection workers and their admin API (rebuilds); `processor_here`: the command
    /// processor runs in this process, and hands the catalog its events as the broker
    /// acknowledges them, so that the catalog's fetch, which brings only the rest, asks the
    /// broker at the background pace.
    pub fn projections(&mut self, codec: &Arc<Codec>, processor_here: bool) -> Router {
        let ConsumerParts {
            kafka,
            topics,
            pool,
            readiness,
            token,
        } = self.consumer_parts();
        let codec = codec.clone();
        let catalog_pace = if processor_here {
            infra::kafka::Pace::Handed
        } else {
            infra::kafka::Pace::Interactive
        };
        self.spawn("projections", async move {
            projections::run(&kafka, &topics, pool, codec, catalog_pace, readiness, token).await
        });
        projections::admin::router(projections::admin::AdminState {
            pool: self.pool.clone(),
            keys: self.keys.clone(),
        })
    }

    /// The DLQ worker and its admin API.
    pub fn dlq_worker(&mut self, codec: &Arc<Codec>) -> Result<Router, LaunchError> {
        let ConsumerParts {
            kafka,
            topics,
            pool,
            readiness,
            token,
        } = self.consumer_parts();
        let (policy, codec) = (self.config.dlq.clone(), codec.clone());
        self.spawn("DLQ worker", async move {
            dlq_worker::run(&kafka, &policy, codec, &topics, pool, readiness, token).await
        });
        Ok(dlq_worker::admin::router(dlq_worker::admin::AdminState {
            producer: infra::kafka::producer(&self.config.kafka)?,
            topics: self.topics.clone(),
            pool: self.pool.clone(),
            keys: self.keys.clone(),
        }))
    }

    /// Webhooks: the consumer that enqueues the deliveries of the log's events, and the
    /// deliverer that sends them (and disables, with `disable`, an endpoint failing for a day).
    fn webhooks(
        &mut self,
        codec: &Arc<Codec>,
        disable: webhooks::deliver::Disable,
    ) -> Result<(), LaunchError> {
        let ConsumerParts {
            kafka,
            topics,
            pool,
            readiness,
            token,
        } = self.consumer_parts();
        let enqueuer =
            webhooks::Enqueuer::new(codec.clone(), topics.clone(), projections::catalog::SCHEMA);
        let spec = webhooks::spec(&topics);
        self.spawn("webhook consumer", async move {
            infra::consumer::run(spec, enqueuer, &kafka, pool, readiness, token).await
        });
        let deliverer = webhooks::Deliverer::new(
            self.pool.clone(),
            disable,
            infra::kafka::producer(&self.config.kafka)?,
            self.topics.dlq(),
            &self.config.webhooks,
            projections::catalog::SCHEMA,
        )?;
        let token = self.shutdown.clone();
        self.spawn("webhook deliverer", deliverer.run(token));
        Ok(())
    }

    /// The GraphQL query API (and the read-only REST routes), on a pool whose statements
    /// time out.
    pub async fn query_api(&self) -> Result<Router, LaunchError> {
        let catalog = projections::catalog::spec(&self.topics);
        let consumers = vec![
            catalog.clone(),
            command_api::sagas::spec(&self.topics),
            dlq_worker::spec(&self.topics),
            webhooks::spec(&self.topics),
        ];
        let reads = infra::postgres::connect_for_reads(
            &self.config.postgres,
            infra::postgres::READ_STATEMENT_TIMEOUT,
        )
        .await?;
        Ok(query_api::router(
            reads,
            self.keys.clone(),
            &self.config.kafka,
            &catalog,
            consumers,
        ))
    }
}

pub(crate) fn local_addr(
    listener: &tokio::net::TcpListener,
    asked: SocketAddr,
) -> Result<SocketAddr, LaunchError> {
    listener.local_addr().map_err(|source| LaunchError::Listen {
        addr: asked,
        source,
    })
}

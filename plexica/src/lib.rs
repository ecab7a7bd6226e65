//! Starts the parts of Plexica: all of them in one process on a single machine, or one of
//! them alone in production. Every part reads the same typed configuration.

pub mod openapi;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
pub use command_api::CommandApiConfig;
use command_api::outcomes::{OutcomeStore, OutcomeWaiters};
use event_schemas::{Codec, Topics};
use infra::config::{
    AuthConfig, DlqConfig, HttpConfig, KafkaConfig, PostgresConfig, RedisConfig,
    SchemaRegistryConfig,
};
use infra::http::Readiness;
use plugin_runtime::config::{Driver, PlatformEnvironment};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Parser)]
#[command(
    name = "plexica",
    about = "The event-sourced core of the Plexica platform"
)]
pub struct Cli {
    #[command(subcommand)]
    pub part: Part,
    #[command(flatten)]
    pub config: PlatformConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Part {
    /// Every part in one process, serving everything on HTTP_LISTEN.
    All,
    /// The command API and the command processor.
    CommandApi,
    /// The projection workers.
    Projections,
    /// The GraphQL query API.
    QueryApi,
    /// The DLQ worker.
    DlqWorker,
    /// The embedded schema registry alone.
    SchemaRegistry,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlatformConfig {
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub postgres: PostgresConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub registry: SchemaRegistryConfig,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub command_api: CommandApiConfig,
    #[command(flatten)]
    pub dlq: DlqConfig,
    #[command(flatten)]
    pub plugins: plugin_runtime::RuntimeConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Postgres(#[from] infra::postgres::PostgresError),
    #[error(transparent)]
    Redis(#[from] infra::redis::RedisError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("tenant data: {0}")]
    TenantData(#[from] plugin_runtime::tenant_data::DataError),
    #[error("command processor: {0}")]
    Processor(#[from] command_api::processor::ProcessorError),
    #[error("{0} stopped; the process stops with it so that its supervisor starts it again")]
    ComponentStopped(String),
    #[error("schema registry: {0}")]
    SchemaJournal(schema_registry::journal::JournalError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("schema registry client: {0}")]
    Codec(#[from] event_schemas::CodecError),
    #[error("the service token for the schema registry: {0}")]
    Token(#[from] infra::auth::TokenError),
    #[error("the broker at {brokers} did not answer in time ({source}); is it running?")]
    Broker {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
}

/// The running platform; `stop` shuts it down in order.
pub struct RunningPlatform {
    pub http_addr: SocketAddr,
    pub registry_url: String,
    /// The process driver running this platform's plugins, when it runs them.
    pub plugins: Option<plugin_runtime::ProcessRuntime>,
    shutdown: CancellationToken,
    /// Each component's task, which ends with its name.
    tasks: JoinSet<&'static str>,
}

impl RunningPlatform {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until a component stops of its own accord (an error it could not recover from,
    /// a panic), and names it.
    pub async fn component_stopped(&mut self) -> String {
        match self.tasks.join_next().await {
            Some(Ok(name)) => name.to_owned(),
            Some(Err(error)) => format!("a component that panicked ({error})"),
            // Nothing runs: wait for the signal instead.
            None => std::future::pending().await,
        }
    }
}

/// Runs a component as a task that ends with its name, so that the process knows which one
/// stopped.
fn spawn_component(
    tasks: &mut JoinSet<&'static str>,
    name: &'static str,
    component: impl Future<Output = ()> + Send + 'static,
) {
    tasks.spawn(async move {
        component.await;
        name
    });
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, LaunchError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| LaunchError::Listen { addr, source })
}

/// Runs `part` until SIGTERM or Ctrl-C, then stops it in order: the `main` of every process
/// that runs the platform.
pub async fn serve(config: PlatformConfig, part: Part) -> Result<(), LaunchError> {
    let mut platform = start(config, part).await?;
    tracing::info!(http = %platform.http_addr, "Plexica is up");
    let stopped = tokio::select! {
        () = shutdown_signal() => None,
        component = platform.component_stopped() => Some(component),
    };
    tracing::info!("shutting down");
    platform.stop().await;
    match stopped {
        // Never silently gone: the process ends, and its supervisor starts it again.
        Some(component) => Err(LaunchError::ComponentStopped(component)),
        None => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "no SIGTERM handler; only Ctrl-C stops the platform");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn start(config: PlatformConfig, part: Part) -> Result<RunningPlatform, LaunchError> {
    // Before any part records a metric: until the recorder exists, metrics go nowhere.
    infra::http::metrics_handle();
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let pool = infra::postgres::connect_and_migrate(&config.postgres).await?;
    let readiness = Readiness::new(pool.clone());
    let topics = Topics::new(config.kafka.topic_prefix.clone(), config.kafka.partitions);

    create_topics(&config.kafka, &topics).await?;
    let keys = config.auth.keys();
    let embedded_registry =
        config.registry.url.is_none() && matches!(part, Part::All | Part::SchemaRegistry);
    let registry_url = if embedded_registry {
        // Postgres is the registry's cache; the journal on the log is what it knows.
        let restored = schema_registry::journal::restore(&config.kafka, &topics.schemas(), &pool)
            .await
            .map_err(LaunchError::SchemaJournal)?;
        tracing::info!(
            entries = restored,
            "schema registry restored from its journal"
        );
        let journal = schema_registry::Journal::new(&config.kafka, topics.schemas())
            .map_err(LaunchError::SchemaJournal)?;
        if restored == 0 {
            let written = schema_registry::journal::backfill(&journal, &pool)
                .await
                .map_err(LaunchError::SchemaJournal)?;
            if written > 0 {
                tracing::info!(
                    entries = written,
                    "schema registry journal written from Postgres"
                );
            }
        }
        let listener = bind(config.registry.listen).await?;
        let addr = listener
            .local_addr()
            .map_err(|source| LaunchError::Listen {
                addr: config.registry.listen,
                source,
            })?;
        let (pool, keys, token) = (pool.clone(), keys.clone(), shutdown.clone());
        spawn_component(&mut tasks, "schema registry", async move {
            if let Err(error) =
                schema_registry::serve(listener, pool, keys, Some(journal), async move {
                    token.cancelled().await
                })
                .await
            {
                tracing::error!(%error, "schema registry stopped");
            }
        });
        tracing::info!(%addr, "schema registry listening");
        format!("http://{addr}")
    } else {
        config.registry.client_url()
    };
    if part == Part::SchemaRegistry {
        return Ok(RunningPlatform {
            http_addr: config.registry.listen,
            registry_url,
            plugins: None,
            shutdown,
            tasks,
        });
    }

    let registry_token = config.registry.service_token(&keys)?;
    let codec = Arc::new(Codec::new(&registry_url, registry_token.as_deref())?);
    let mut router = Router::new();
    // Bound first: the plugins are told where the gateway is.
    let listener = bind(config.http.listen).await?;
    let http_addr = listener
        .local_addr()
        .map_err(|source| LaunchError::Listen {
            addr: config.http.listen,
            source,
        })?;
    let mut plugins: Option<plugin_runtime::ProcessRuntime> = None;

    if matches!(part, Part::All | Part::CommandApi) {
        let redis = infra::redis::connect(&config.redis).await?;
        let waiters = OutcomeWaiters::default();
        let client = infra::redis::client(&config.redis)?;
        spawn_component(
            &mut tasks,
            "command outcome listener",
            waiters.clone().listen(client, shutdown.clone()),
        );
        // One global view per process, for the processor's rules and the sagas' policies.
        let directory = command_api::directory::spawn(
            &config.kafka,
            &topics,
            codec.clone(),
            "plexica.directory",
            shutdown.clone(),
        )
        .await?;
        let processor = command_api::processor::Processor::new(
            &config.kafka,
            topics.clone(),
            pool.clone(),
            OutcomeStore::new(redis.clone()),
            codec.clone(),
            directory.clone(),
        )?;
        readiness.register("command-processor");
        spawn_component(
            &mut tasks,
            "command processor",
            processor.run(readiness.clone(), shutdown.clone()),
        );
        let producer = infra::kafka::producer(&config.kafka)?;
        let bus = command_api::CommandBus::new(
            producer,
            codec.clone(),
            topics.clone(),
            redis,
            waiters,
            config.command_api.reply_timeout(),
        );
        let (kafka, sagas_topics, sagas_pool, sagas_codec, sagas_bus) = (
            config.kafka.clone(),
            topics.clone(),
            pool.clone(),
            codec.clone(),
            bus.clone(),
        );
        let (sagas_readiness, token) = (readiness.clone(), shutdown.clone());
        let spec = command_api::sagas::spec(&sagas_topics);
        match config.plugins.driver {
            Driver::Simulated => {
                spawn_component(&mut tasks, "plugin sagas", async move {
                    let runtime = command_api::sagas::SimulatedRuntime;
                    if let Err(error) = command_api::sagas::run(
                        spec,
                        command_api::sagas::SagaTools {
                            runtime,
                            bus: sagas_bus,
                            codec: sagas_codec,
                            directory,
                        },
                        &kafka,
                        sagas_pool,
                        sagas_readiness,
                        token,
                    )
                    .await
                    {
                        tracing::error!(%error, "plugin sagas stopped");
                    }
                });
            }
            Driver::Process => {
                let tenant_data = plugin_runtime::tenant_data::TenantData::new(
                    pool.clone(),
                    config.postgres.url.clone(),
                )
                .await?;
                {
                    let (kafka, topics, pool, codec) = (
                        config.kafka.clone(),
                        topics.clone(),
                        pool.clone(),
                        codec.clone(),
                    );
                    let (data, readiness, token) =
                        (tenant_data.clone(), readiness.clone(), shutdown.clone());
                    spawn_component(&mut tasks, "tenant schemas", async move {
                        if let Err(error) = plugin_runtime::tenant_schemas::run(
                            data, codec, &kafka, &topics, pool, readiness, token,
                        )
                        .await
                        {
                            tracing::error!(%error, "tenant schemas stopped");
                        }
                    });
                }
                let runtime = plugin_runtime::ProcessRuntime::new(
                    config.plugins.clone(),
                    PlatformEnvironment {
                        database_url: config.postgres.url.clone(),
                        kafka_brokers: config.kafka.brokers.clone(),
                        schema_registry_url: registry_url.clone(),
                        gateway_url: format!("http://{http_addr}"),
                    },
                    Some(tenant_data),
                );
                plugins = Some(runtime.clone());
                router = router.merge(plugin_runtime::gateway::router(
                    plugin_runtime::gateway::GatewayState::new(
                        runtime.clone(),
                        keys.clone(),
                        pool.clone(),
                        std::time::Duration::from_millis(config.plugins.gateway_timeout_ms),
                    ),
                ));
                spawn_component(&mut tasks, "plugin sagas", async move {
                    if let Err(error) = command_api::sagas::run(
                        spec,
                        command_api::sagas::SagaTools {
                            runtime: runtime.clone(),
                            bus: sagas_bus,
                            codec: sagas_codec,
                            directory,
                        },
                        &kafka,
                        sagas_pool,
                        sagas_readiness,
                        token.clone(),
                    )
                    .await
                    {
                        tracing::error!(%error, "plugin sagas stopped");
                    }
                    // The plugins stop with the platform that runs them.
                    token.cancelled().await;
                    runtime.shutdown().await;
                });
            }
        }
        router = router.merge(command_api::router(bus, keys.clone()));
    }
    if matches!(part, Part::All | Part::Projections) {
        router = router.merge(projections::admin::router(projections::admin::AdminState {
            pool: pool.clone(),
            keys: keys.clone(),
        }));
        let (kafka, topics, pool, codec) = (
            config.kafka.clone(),
            topics.clone(),
            pool.clone(),
            codec.clone(),
        );
        let (readiness, token) = (readiness.clone(), shutdown.clone());
        spawn_component(&mut tasks, "projections", async move {
            if let Err(error) =
                projections::run(&kafka, &topics, pool, codec, readiness, token).await
            {
                tracing::error!(%error, "projections stopped");
            }
        });
    }
    if matches!(part, Part::All | Part::DlqWorker) {
        router = router.merge(dlq_worker::admin::router(dlq_worker::admin::AdminState {
            producer: infra::kafka::producer(&config.kafka)?,
            topics: topics.clone(),
            pool: pool.clone(),
            keys: keys.clone(),
        }));
        let (kafka, topics, pool) = (config.kafka.clone(), topics.clone(), pool.clone());
        let (policy, codec) = (config.dlq.clone(), codec.clone());
        let (readiness, token) = (readiness.clone(), shutdown.clone());
        spawn_component(&mut tasks, "DLQ worker", async move {
            if let Err(error) =
                dlq_worker::run(&kafka, &policy, codec, &topics, pool, readiness, token).await
            {
                tracing::error!(%error, "DLQ worker stopped");
            }
        });
    }
    if matches!(part, Part::All | Part::QueryApi) {
        let catalog = projections::catalog::spec(&topics);
        let consumers = vec![
            catalog.clone(),
            command_api::sagas::spec(&topics),
            dlq_worker::spec(&topics),
        ];
        let reads = infra::postgres::connect_for_reads(
            &config.postgres,
            infra::postgres::READ_STATEMENT_TIMEOUT,
        )
        .await?;
        router = router.merge(query_api::router(
            reads,
            keys.clone(),
            &config.kafka,
            &catalog,
            consumers,
        ));
    }

    let router = router.merge(openapi::routes());
    let router = infra::edge::guarded(router.merge(infra::http::operational_routes(readiness)))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let token = shutdown.clone();
    spawn_component(&mut tasks, "HTTP server", async move {
        if let Err(error) =
            infra::http::serve(listener, router, async move { token.cancelled().await }).await
        {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
    tracing::info!(%http_addr, ?part, "serving HTTP");
    Ok(RunningPlatform {
        http_addr,
        registry_url,
        plugins,
        shutdown,
        tasks,
    })
}

/// Creates the catalogue's topics, waiting for a broker that is still starting.
async fn create_topics(kafka: &KafkaConfig, topics: &Topics) -> Result<(), LaunchError> {
    let mut attempt = 0;
    loop {
        match infra::kafka::create_topics(kafka, &topics.catalogue()).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < 30 => {
                attempt += 1;
                tracing::info!(%error, brokers = %kafka.brokers, "waiting for the broker");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                return Err(LaunchError::Broker {
                    brokers: kafka.brokers.clone(),
                    source: error,
                });
            }
        }
    }
}

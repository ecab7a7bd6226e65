//! Starts the parts of Plexica: all of them in one process on a single machine, or one of
//! them alone in production. Every part reads the same typed configuration.

pub mod openapi;
mod wiring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
pub use command_api::CommandApiConfig;
use event_schemas::{Codec, Topics};
use infra::config::{
    AuthConfig, DlqConfig, HttpConfig, KafkaConfig, PostgresConfig, RedisConfig,
    SchemaRegistryConfig,
};
use infra::http::Readiness;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wiring::Wiring;

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
    /// The command API and the command processor, the plugin sagas and runtime, and the
    /// webhooks' consumer and deliverer.
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
    #[command(flatten)]
    pub webhooks: webhooks::WebhookConfig,
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
    #[error("webhooks: {0}")]
    Webhooks(#[from] webhooks::deliver::DeliverError),
    #[error(
        "the log's topic {topic} has {on_the_log} partitions and KAFKA_PARTITIONS is {configured}: \
         a topic's partitions cannot change under its keys (an aggregate's events would be \
         split); set KAFKA_PARTITIONS={on_the_log}"
    )]
    Partitions {
        topic: String,
        on_the_log: usize,
        configured: i32,
    },
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

pub(crate) async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, LaunchError> {
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

/// Starts `part`: the components it runs and the HTTP server of its routes.
pub async fn start(config: PlatformConfig, part: Part) -> Result<RunningPlatform, LaunchError> {
    // Before any part records a metric: until the recorder exists, metrics go nowhere.
    infra::http::metrics_handle();
    let pool = infra::postgres::connect_and_migrate(&config.postgres).await?;
    let topics = Topics::new(config.kafka.topic_prefix.clone(), config.kafka.partitions);
    create_topics(&config.kafka, &topics).await?;
    let mut wiring = Wiring {
        config: &config,
        readiness: Readiness::new(pool.clone()),
        pool,
        topics,
        keys: config.auth.keys(),
        shutdown: CancellationToken::new(),
        tasks: JoinSet::new(),
    };
    let embedded_registry =
        config.registry.url.is_none() && matches!(part, Part::All | Part::SchemaRegistry);
    let registry_url = if embedded_registry {
        wiring.schema_registry().await?
    } else {
        config.registry.client_url()
    };
    if part == Part::SchemaRegistry {
        return Ok(RunningPlatform {
            http_addr: config.registry.listen,
            registry_url,
            plugins: None,
            shutdown: wiring.shutdown,
            tasks: wiring.tasks,
        });
    }

    let registry_token = config.registry.service_token(&wiring.keys)?;
    let codec = Arc::new(Codec::new(&registry_url, registry_token.as_deref())?);
    // Bound first: the plugins are told where the gateway is.
    let listener = bind(config.http.listen).await?;
    let http_addr = wiring::local_addr(&listener, config.http.listen)?;
    let mut router = Router::new();
    let mut plugins = None;
    if matches!(part, Part::All | Part::CommandApi) {
        plugins = wiring
            .command_side(&codec, &registry_url, http_addr, &mut router)
            .await?;
    }
    if matches!(part, Part::All | Part::Projections) {
        router = router.merge(wiring.projections(&codec, part == Part::All));
    }
    if matches!(part, Part::All | Part::DlqWorker) {
        router = router.merge(wiring.dlq_worker(&codec)?);
    }
    if matches!(part, Part::All | Part::QueryApi) {
        router = router.merge(wiring.query_api().await?);
    }

    let router = router.merge(openapi::routes());
    let router = infra::edge::guarded(
        router.merge(infra::http::operational_routes(wiring.readiness.clone())),
    )
    .layer(tower_http::trace::TraceLayer::new_for_http());
    let token = wiring.shutdown.clone();
    wiring.spawn(
        "HTTP server",
        infra::http::serve(listener, router, async move { token.cancelled().await }),
    );
    tracing::info!(%http_addr, ?part, "serving HTTP");
    Ok(RunningPlatform {
        http_addr,
        registry_url,
        plugins,
        shutdown: wiring.shutdown,
        tasks: wiring.tasks,
    })
}

/// Creates the catalogue's topics, waiting for a broker that is still starting, and checks
/// that those that were there have the partitions the platform is configured with.
async fn create_topics(kafka: &KafkaConfig, topics: &Topics) -> Result<(), LaunchError> {
    let mut attempt = 0;
    loop {
        match infra::kafka::create_topics(kafka, &topics.catalogue()).await {
            Ok(()) => return check_partitions(kafka, topics).await,
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

/// The topics whose partitions `KAFKA_PARTITIONS` sets must have them on the log: a topic's
/// partitions cannot change under its keys. A topic just created may not be in the metadata
/// yet; it has the configured count.
async fn check_partitions(kafka: &KafkaConfig, topics: &Topics) -> Result<(), LaunchError> {
    let governed: Vec<String> = topics
        .catalogue()
        .into_iter()
        .filter(|spec| spec.partitions == kafka.partitions)
        .map(|spec| spec.name)
        .collect();
    let on_the_log = infra::kafka::partition_counts(&kafka.brokers, governed.clone()).await?;
    let configured = usize::try_from(kafka.partitions).unwrap_or(0);
    // In the catalogue's order, so that the error names the same topic every time.
    let differing = governed.into_iter().find_map(|topic| {
        let count = *on_the_log.get(&topic)?;
        (count != configured).then_some((topic, count))
    });
    match differing {
        Some((topic, on_the_log)) => Err(LaunchError::Partitions {
            topic,
            on_the_log,
            configured: kafka.partitions,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    /// Every part's settings flatten into one command line: two settings of one name would
    /// make `plexica` panic at start.
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}

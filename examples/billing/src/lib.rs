//! `billing`, an example plugin on the Rust SDK. Its subscription issues an invoice, in the
//! tenant's schema and the consumer's transaction, for each `plugin.crm.deal.won`; its REST
//! API lists the invoices and shows one with its deal, read from `crm` over REST through the
//! gateway, for the caller.
//!
//! The library holds the plugin whole so that the end-to-end tests can run it as a process
//! of their own; `src/main.rs` is its binary, `billing`.

mod invoicing;
mod routes;

use plexica_plugin_sdk::{
    EventsConfig, PluginConfig, Services, Subscription, TenantDb, serve_subscribed, standard_routes,
};
use tokio_util::sync::CancellationToken;

/// Runs the plugin from the environment the platform gives it, until SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    // To the plugin's log file: its consumer's joins and assignments included.
    infra::telemetry::init();
    let config = PluginConfig::from_env()?;
    let events = EventsConfig::from_env()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect(&config.database_url)
        .await?;
    let readiness = infra::http::Readiness::new(pool.clone());
    let shutdown = CancellationToken::new();
    let subscription = Subscription::new(&events)?;
    let consumer = tokio::spawn(subscription.run(
        invoicing::Invoicing,
        pool.clone(),
        readiness.clone(),
        shutdown.clone(),
    ));
    let app = routes::App {
        db: TenantDb::new(pool),
        services: Services::new(&config),
    };
    let router = routes::router(app).merge(standard_routes(openapi(), readiness));
    serve_subscribed(&config, router, consumer, shutdown).await?;
    Ok(())
}

fn openapi() -> serde_json::Value {
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Billing", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/invoices": {"get": {"summary": "The tenant's invoices, newest first (?limit=1..100)"}},
            "/invoices/{id}": {"get": {"summary": "One invoice, with its deal as crm tells it"}}
        }
    })
}

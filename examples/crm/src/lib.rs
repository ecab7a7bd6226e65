//! `crm`, an example plugin on the Rust SDK: contacts and deals in each tenant's schema
//! (`migrations/`), served through the platform's gateway; a won deal is published as
//! `plugin.crm.deal.won` ([`events::DealWon`]), which `billing` subscribes to.
//!
//! The library holds the plugin whole so that the end-to-end tests can run it as a process
//! of their own; `src/main.rs` is its binary, `crm`.

pub mod events;
pub mod input;
mod routes;

use plexica_plugin_sdk::{EventsConfig, PluginConfig, Publisher, TenantDb, serve, standard_routes};
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
    let app = routes::App {
        db: TenantDb::new(pool),
        publisher: Publisher::new(&events)?,
    };
    let router = routes::router(app).merge(standard_routes(openapi(), readiness));
    serve(&config, router, CancellationToken::new()).await?;
    Ok(())
}

fn openapi() -> serde_json::Value {
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "CRM", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/contacts": {
                "get": {"summary": "The tenant's contacts, newest first (?limit=1..100)"},
                "post": {"summary": "Create a contact: {name, email?}"}
            },
            "/contacts/{id}": {"get": {"summary": "One contact"}},
            "/deals": {
                "get": {"summary": "The tenant's deals, newest first (?limit=1..100)"},
                "post": {"summary": "Open a deal: {contactId, title, amountCents, currency}"}
            },
            "/deals/{id}": {"get": {"summary": "One deal"}},
            "/deals/{id}/won": {"post": {"summary": "Win the deal; publishes plugin.crm.deal.won"}}
        }
    })
}

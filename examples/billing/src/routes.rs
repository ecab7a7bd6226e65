//! Billing's REST API, each request in the schema of the caller's tenant.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use plexica_example_crm::input::{Page, id_of};
use plexica_plugin_sdk::{Problem, RequestContext, Services, TenantDb};
use serde::Serialize;
use uuid::Uuid;

/// The plugin whose deals are invoiced.
const CRM: &str = "crm";

pub struct App {
    pub db: TenantDb,
    pub services: Services,
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/invoices", get(list_invoices))
        .route("/invoices/{id}", get(invoice))
        .with_state(Arc::new(app))
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct Invoice {
    id: Uuid,
    deal_id: Uuid,
    contact_id: Option<Uuid>,
    title: String,
    amount_cents: i64,
    currency: String,
    status: String,
    issued_for: Uuid,
    issued_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, deal_id, contact_id, title, amount_cents, currency, status, issued_for, issued_at";

fn unavailable(error: sqlx::Error) -> Problem {
    eprintln!("database: {error}");
    Problem::unavailable("billing's database did not answer; try again")
}

async fn list_invoices(
    State(app): State<Arc<App>>,
    context: RequestContext,
    Query(page): Query<Page>,
) -> Result<Json<Vec<Invoice>>, Problem> {
    let limit = page.limit()?;
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    let invoices = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM invoices ORDER BY issued_at DESC, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .map_err(unavailable)?;
    Ok(Json(invoices))
}

/// The invoice with `deal`, as crm answers the caller for it now; when crm cannot say,
/// `deal` is null and `dealUnavailable` says why: the invoice is billing's own and stays
/// readable.
async fn invoice(
    State(app): State<Arc<App>>,
    context: RequestContext,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let id = id_of("invoice", &id)?;
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    let invoice: Invoice = sqlx::query_as(&format!("SELECT {COLUMNS} FROM invoices WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Problem::not_found(format!("no invoice has the id `{id}`")))?;
    drop(tx);
    let deal = app
        .services
        .call(
            &context,
            reqwest::Method::GET,
            CRM,
            &format!("/deals/{}", invoice.deal_id),
            None,
        )
        .await;
    let (deal, unavailable) = match deal {
        Ok(answer) if answer.status().is_success() => match answer.json().await {
            Ok(deal) => (deal, None),
            Err(error) => (serde_json::Value::Null, Some(error.to_string())),
        },
        Ok(answer) => (
            serde_json::Value::Null,
            Some(format!("crm answered {}", answer.status())),
        ),
        Err(error) => (serde_json::Value::Null, Some(error.to_string())),
    };
    let mut body = serde_json::to_value(&invoice).map_err(|e| Problem::internal(e.to_string()))?;
    body["deal"] = deal;
    if let Some(reason) = unavailable {
        body["dealUnavailable"] = serde_json::Value::String(reason);
    }
    Ok(Json(body))
}

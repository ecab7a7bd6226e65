//! The CRM's REST API, each request in the schema of the caller's tenant.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use plexica_plugin_sdk::{EventContext, JsonBody, Problem, Publisher, RequestContext, TenantDb};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::DealWon;
use crate::input::{Amount, Cents, Currency, Email, Name, Page, id_of};

pub struct App {
    pub db: TenantDb,
    pub publisher: Publisher,
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/contacts", get(list_contacts).post(create_contact))
        .route("/contacts/{id}", get(contact))
        .route("/deals", get(list_deals).post(create_deal))
        .route("/deals/{id}", get(deal))
        .route("/deals/{id}/won", post(win_deal))
        .with_state(Arc::new(app))
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct Contact {
    id: Uuid,
    name: String,
    email: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewContact {
    name: Name,
    email: Option<Email>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct Deal {
    id: Uuid,
    contact_id: Option<Uuid>,
    title: String,
    amount_cents: i64,
    currency: String,
    stage: String,
    won_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

/// A deal: its amount as `amount` in the currency's main unit or as `amountCents`; a contact
/// when the deal is with someone the CRM knows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewDeal {
    contact_id: Option<Uuid>,
    title: Name,
    amount: Option<Amount>,
    amount_cents: Option<Cents>,
    currency: Currency,
}

impl NewDeal {
    fn cents(&self) -> Result<Cents, Problem> {
        match (self.amount, self.amount_cents) {
            (Some(Amount(cents)), None) | (None, Some(cents)) => Ok(cents),
            (None, None) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a deal needs its `amount` (or its `amountCents`)",
            )),
            (Some(_), Some(_)) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a deal has one amount: `amount` or `amountCents`, not both",
            )),
        }
    }
}

const DEAL_COLUMNS: &str =
    "id, contact_id, title, amount_cents, currency, stage, won_at, created_at";

/// The database failed: the client may try again; what failed goes to the plugin's log only.
fn unavailable(error: sqlx::Error) -> Problem {
    eprintln!("database: {error}");
    Problem::unavailable("the CRM's database did not answer; try again")
}

async fn create_contact(
    State(app): State<Arc<App>>,
    context: RequestContext,
    JsonBody(new): JsonBody<NewContact>,
) -> Result<(StatusCode, Json<Contact>), Problem> {
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    let contact: Contact = sqlx::query_as(
        "INSERT INTO contacts (id, name, email) VALUES ($1, $2, $3)
         RETURNING id, name, email, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(new.name.0)
    .bind(new.email.map(|email| email.0))
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok((StatusCode::CREATED, Json(contact)))
}

async fn list_contacts(
    State(app): State<Arc<App>>,
    context: RequestContext,
    Query(page): Query<Page>,
) -> Result<Json<Vec<Contact>>, Problem> {
    let limit = page.limit()?;
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    let contacts = sqlx::query_as(
        "SELECT id, name, email, created_at FROM contacts
         ORDER BY created_at DESC, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .map_err(unavailable)?;
    Ok(Json(contacts))
}

async fn contact(
    State(app): State<Arc<App>>,
    context: RequestContext,
    Path(id): Path<String>,
) -> Result<Json<Contact>, Problem> {
    let id = id_of("contact", &id)?;
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    sqlx::query_as("SELECT id, name, email, created_at FROM contacts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no contact has the id `{id}`")))
}

async fn create_deal(
    State(app): State<Arc<App>>,
    context: RequestContext,
    JsonBody(new): JsonBody<NewDeal>,
) -> Result<(StatusCode, Json<Deal>), Problem> {
    let cents = new.cents()?;
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    if let Some(contact_id) = new.contact_id {
        // The contact is locked so that it stays while the deal refers to it.
        let contact: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM contacts WHERE id = $1 FOR KEY SHARE")
                .bind(contact_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        if contact.is_none() {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("no contact has the id `{contact_id}`"),
            ));
        }
    }
    let deal: Deal = sqlx::query_as(&format!(
        "INSERT INTO deals (id, contact_id, title, amount_cents, currency)
         VALUES ($1, $2, $3, $4, $5) RETURNING {DEAL_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(new.contact_id)
    .bind(new.title.0)
    .bind(cents.0)
    .bind(new.currency.0)
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok((StatusCode::CREATED, Json(deal)))
}

async fn list_deals(
    State(app): State<Arc<App>>,
    context: RequestContext,
    Query(page): Query<Page>,
) -> Result<Json<Vec<Deal>>, Problem> {
    let limit = page.limit()?;
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    let deals = sqlx::query_as(&format!(
        "SELECT {DEAL_COLUMNS} FROM deals ORDER BY created_at DESC, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .map_err(unavailable)?;
    Ok(Json(deals))
}

async fn deal(
    State(app): State<Arc<App>>,
    context: RequestContext,
    Path(id): Path<String>,
) -> Result<Json<Deal>, Problem> {
    let id = id_of("deal", &id)?;
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    sqlx::query_as(&format!("SELECT {DEAL_COLUMNS} FROM deals WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no deal has the id `{id}`")))
}

/// Marks the deal won and publishes `plugin.crm.deal.won` before the change commits: a deal
/// is never won without its event. Should the commit fail after the publish, the deal stays
/// open and winning it again publishes a second event for it; subscribers key their work by
/// the deal (billing issues one invoice per deal).
async fn win_deal(
    State(app): State<Arc<App>>,
    context: RequestContext,
    Path(id): Path<String>,
) -> Result<Json<Deal>, Problem> {
    let id = id_of("deal", &id)?;
    let mut tx = app.db.begin(&context).await.map_err(unavailable)?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT stage FROM deals WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
    match current.as_deref() {
        None => return Err(Problem::not_found(format!("no deal has the id `{id}`"))),
        Some("won") => return Err(Problem::conflict(format!("the deal `{id}` is won already"))),
        Some(_) => {}
    }
    let deal: Deal = sqlx::query_as(&format!(
        "UPDATE deals SET stage = 'won', won_at = now() WHERE id = $1 RETURNING {DEAL_COLUMNS}"
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(unavailable)?;
    let event = DealWon {
        deal_id: deal.id.to_string(),
        contact_id: deal.contact_id.map(|id| id.to_string()).unwrap_or_default(),
        title: deal.title.clone(),
        amount_cents: deal.amount_cents,
        currency: deal.currency.clone(),
    };
    app.publisher
        .publish(&EventContext::from(&context), &event.deal_id, &event)
        .await
        .map_err(|error| {
            eprintln!("publishing deal.won: {error}");
            Problem::unavailable("the deal could not be published; it is still open, try again")
        })?;
    tx.commit().await.map_err(unavailable)?;
    Ok(Json(deal))
}

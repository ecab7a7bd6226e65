//! The subscription's handler: one invoice per won deal, written in the consumer's
//! transaction, so that it commits with the checkpoint; a deal delivered again (at least
//! once) finds its invoice there and adds nothing.

use futures::future::BoxFuture;
use plexica_example_crm::events::DealWon;
use plexica_plugin_sdk::events::HandlerError;
use plexica_plugin_sdk::{EventHandler, ReceivedEvent};
use sqlx::PgConnection;
use uuid::Uuid;

pub struct Invoicing;

impl EventHandler for Invoicing {
    fn handle<'a>(
        &'a mut self,
        tx: &'a mut PgConnection,
        event: &'a ReceivedEvent,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let deal: DealWon = event.record()?;
            let permanent = |what: &str, value: &str| {
                HandlerError::Permanent(format!("the {what} `{value}` is not a UUID").into())
            };
            let deal_id =
                Uuid::parse_str(&deal.deal_id).map_err(|_| permanent("deal id", &deal.deal_id))?;
            let contact_id = match deal.contact_id.as_str() {
                "" => None,
                id => Some(Uuid::parse_str(id).map_err(|_| permanent("contact id", id))?),
            };
            event.enter_tenant(tx).await?;
            sqlx::query(
                "INSERT INTO invoices
                     (id, deal_id, contact_id, title, amount_cents, currency, issued_for)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (deal_id) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(deal_id)
            .bind(contact_id)
            .bind(&deal.title)
            .bind(deal.amount_cents)
            .bind(&deal.currency)
            .bind(event.envelope.id)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }
}

//! The events `crm` publishes: its contract with its subscribers (billing reads this type).

use plexica_plugin_sdk::{AvroRecord, PluginEvent};
use serde::{Deserialize, Serialize};

/// A deal was won: `plugin.crm.deal.won`, keyed by the deal id, so that a deal's events stay
/// in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealWon {
    pub deal_id: String,
    /// Empty when the deal names no contact.
    pub contact_id: String,
    pub title: String,
    pub amount_cents: i64,
    pub currency: String,
}

impl AvroRecord for DealWon {
    const FULL_NAME: &'static str = "com.plexica.crm.DealWon";
    const SCHEMA: &'static str = r#"{"type": "record", "name": "DealWon", "namespace": "com.plexica.crm",
        "doc": "A deal of the CRM was won.",
        "fields": [
            {"name": "deal_id", "type": "string"},
            {"name": "contact_id", "type": "string", "default": "",
             "doc": "The contact's id; empty when the deal names no contact."},
            {"name": "title", "type": "string"},
            {"name": "amount_cents", "type": "long"},
            {"name": "currency", "type": "string"}
        ]}"#;
}

impl PluginEvent for DealWon {
    const NAME: &'static str = "deal.won";
}

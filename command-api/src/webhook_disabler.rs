//! How the webhook deliverer disables an endpoint that has failed every delivery for a day:
//! a `webhook.disable` command of the platform's own, whose id follows from the endpoint and
//! the moment it started failing, so that asking again is the same command.

use std::sync::Arc;

use domain::Command;
use domain::webhook::{Description, Manager, WebhookCommand, WebhookId};
use uuid::Uuid;

use crate::bus::{CommandBus, system_actor};

/// Namespaces the ids of the disable commands.
const DISABLES: Uuid = Uuid::from_u128(0x7a2e_91c4_0d5b_4f63_8e17_c3a9_5b02_d6f1);

pub fn disabler(bus: CommandBus) -> webhooks::deliver::Disable {
    Arc::new(move |webhook, since, reason| {
        let bus = bus.clone();
        Box::pin(async move {
            let command = Command::Webhook {
                id: WebhookId(webhook),
                command: WebhookCommand::Disable {
                    by: Manager::Platform,
                    reason: Description::parse(printable(&reason)).ok(),
                },
            };
            let id = Uuid::new_v5(
                &DISABLES,
                format!("{webhook}\n{}", since.timestamp_millis()).as_bytes(),
            );
            bus.send(
                &system_actor("webhooks"),
                &command,
                id,
                None,
                infra::telemetry::new_traceparent(),
            )
            .await
            .map_err(|error| error.to_string())
        })
    })
}

/// `text` as a description takes it: no control characters, at most 500 characters.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_text_becomes_a_description() {
        let text = format!("a\nb\0{}", "x".repeat(600));
        let printable = super::printable(&text);
        assert!(super::Description::parse(printable.clone()).is_ok());
        assert!(printable.starts_with("a b "));
    }
}

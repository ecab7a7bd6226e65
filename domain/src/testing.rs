//! given(past events) → when(command) → then(events | rejection), as in cqrs-es's
//! TestFramework.

use event_schemas::CoreEvent;

use crate::{AggregateState, Command, Directory, Reason, Rejection, decide, evolve};

pub struct Given {
    state: AggregateState,
    directory: Directory,
}

/// The aggregate that `command_for_key` addresses, after its `past` events.
pub fn given(command_for_key: &Command, past: Vec<CoreEvent>) -> Given {
    let initial = AggregateState::initial(&command_for_key.aggregate_key());
    let mut directory = Directory::default();
    for event in &past {
        directory.apply(None, event);
    }
    Given {
        state: past.iter().fold(initial, evolve),
        directory,
    }
}

impl Given {
    /// Events of other aggregates, as the global view has them.
    pub fn elsewhere(mut self, events: Vec<CoreEvent>) -> Self {
        for event in &events {
            self.directory.apply(None, event);
        }
        self
    }

    pub fn when(self, command: &Command) -> Result<Vec<CoreEvent>, Rejection> {
        decide(&self.state, command, &self.directory)
    }
}

/// The `then` of a test: what a decision must have been.
pub trait Then {
    /// Accepted, with exactly these events in this order.
    fn then_expect_events(self, expected: Vec<CoreEvent>);
    /// Refused for this reason; the rejection, for what else the test checks.
    fn then_rejected(self, reason: Reason) -> Rejection;
}

impl Then for Result<Vec<CoreEvent>, Rejection> {
    #[track_caller]
    fn then_expect_events(self, expected: Vec<CoreEvent>) {
        match self {
            Ok(events) => assert_eq!(events, expected, "the events of the decision"),
            Err(rejection) => {
                panic!("expected {expected:?}, the command was refused: {rejection:?}")
            }
        }
    }

    #[track_caller]
    fn then_rejected(self, reason: Reason) -> Rejection {
        match self {
            Ok(events) => {
                panic!("expected a refusal for {reason:?}, the command was accepted: {events:?}")
            }
            Err(rejection) => {
                assert_eq!(rejection.reason, reason, "{rejection:?}");
                rejection
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use event_schemas::events::{PluginEvent, TenantCreated, TenantEvent};
    use serde_json::json;

    use super::*;
    use crate::plugin::{Manifest, PluginCommand, PluginId};
    use crate::tenant::{TenantCommand, TenantId, TenantName, TenantSlug};

    fn register(document: serde_json::Value) -> Command {
        let manifest = Manifest::parse(document).expect("valid manifest");
        Command::Plugin {
            id: manifest.id.clone(),
            command: PluginCommand::Register { manifest },
        }
    }

    fn crm() -> serde_json::Value {
        json!({"id": "crm", "name": "CRM", "version": "1.2.0"})
    }

    #[test]
    fn registering_a_new_plugin_records_it_with_its_manifest() {
        let command = register(crm());
        let events = given(&command, vec![]).when(&command).expect("accepted");
        match events.as_slice() {
            [CoreEvent::Plugin(PluginEvent::Registered(e))] => {
                assert_eq!(e.plugin_id, "crm");
                assert_eq!(e.version, "1.2.0");
                let stored: serde_json::Value = serde_json::from_str(&e.manifest).expect("JSON");
                assert_eq!(stored, crm());
            }
            other => panic!("expected one registration, got {other:?}"),
        }
    }

    #[test]
    fn registering_a_plugin_twice_is_a_conflict() {
        let command = register(crm());
        let past = given(&command, vec![])
            .when(&command)
            .expect("first is accepted");
        let rejection = given(&command, past)
            .when(&command)
            .then_rejected(Reason::PluginAlreadyRegistered);
        assert!(rejection.detail.contains("1.2.0"), "{rejection:?}");
    }

    #[test]
    fn creating_a_tenant_twice_is_a_conflict() {
        let id = TenantId(uuid::Uuid::now_v7());
        let command = Command::Tenant {
            id,
            command: TenantCommand::Create {
                slug: TenantSlug::parse("acme").expect("slug"),
                name: TenantName::parse("Acme").expect("name"),
            },
        };
        let created = CoreEvent::Tenant(TenantEvent::Created(TenantCreated {
            tenant_id: id.to_string(),
            slug: "acme".to_owned(),
            name: "Acme".to_owned(),
        }));
        given(&command, vec![])
            .when(&command)
            .then_expect_events(vec![created.clone()]);
        given(&command, vec![created])
            .when(&command)
            .then_rejected(Reason::TenantAlreadyExists);
    }

    #[test]
    fn a_command_survives_its_record() {
        let command = register(crm());
        let back = Command::from_record(&command.aggregate_key().to_string(), &command.payload())
            .expect("parses");
        assert_eq!(back, command);
        assert!(Command::from_record("plugin:crm", "{\"command\":\"explode\"}").is_err());
        assert!(Command::from_record("martian:x", "{}").is_err());
        assert_eq!(
            "plugin:crm".parse::<crate::AggregateKey>().ok(),
            Some(crate::AggregateKey::Plugin(
                PluginId::parse("crm").expect("id")
            ))
        );
    }
}

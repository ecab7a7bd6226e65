use event_schemas::CoreEvent;
use uuid::Uuid;

use super::*;
use crate::testing::{Then, given};
use crate::{Command, Reason};

fn id() -> WebhookId {
    WebhookId(Uuid::from_u128(0xaa))
}

fn acme() -> TenantId {
    TenantId(Uuid::from_u128(0xac3e))
}

fn globex() -> TenantId {
    TenantId(Uuid::from_u128(0x61ab))
}

fn command(command: WebhookCommand) -> Command {
    Command::Webhook { id: id(), command }
}

fn types(types: &[&str]) -> EventTypes {
    EventTypes::parse(types.iter().map(|t| (*t).to_owned()).collect()).unwrap()
}

fn register(by: Manager) -> Command {
    command(WebhookCommand::Register {
        by,
        url: WebhookUrl::parse("https://hooks.example.com/plexica").unwrap(),
        events: types(&["plugin.crm.deal.won", "core.plugin.installed"]),
        description: None,
    })
}

fn registered(tenant: Option<TenantId>) -> CoreEvent {
    CoreEvent::Webhook(WebhookEvent::Registered(WebhookRegistered {
        webhook_id: id().to_string(),
        tenant_id: tenant.map(|t| t.0.to_string()),
        url: "https://hooks.example.com/plexica".into(),
        events: vec!["core.plugin.installed".into(), "plugin.crm.deal.won".into()],
        description: None,
    }))
}

#[test]
fn a_tenant_admin_registers_an_endpoint_of_its_tenant_with_its_types_sorted() {
    let register = register(Manager::Tenant(acme()));
    given(&register, vec![])
        .when(&register)
        .then_expect_events(vec![registered(Some(acme()))]);
}

#[test]
fn an_id_is_registered_once() {
    let register = register(Manager::Platform);
    given(&register, vec![registered(None)])
        .when(&register)
        .then_rejected(Reason::WebhookAlreadyRegistered);
}

#[test]
fn another_tenants_admin_is_told_the_endpoint_does_not_exist() {
    for when in [
        WebhookCommand::RotateSecret {
            by: Manager::Tenant(globex()),
        },
        WebhookCommand::Delete {
            by: Manager::Tenant(globex()),
        },
    ] {
        let when = command(when);
        given(&when, vec![registered(Some(acme()))])
            .when(&when)
            .then_rejected(Reason::WebhookNotFound);
    }
    let platform_endpoint = command(WebhookCommand::Delete {
        by: Manager::Tenant(acme()),
    });
    given(&platform_endpoint, vec![registered(None)])
        .when(&platform_endpoint)
        .then_rejected(Reason::WebhookNotFound);
}

#[test]
fn a_super_admin_manages_a_tenants_endpoint() {
    let delete = command(WebhookCommand::Delete {
        by: Manager::Platform,
    });
    given(&delete, vec![registered(Some(acme()))])
        .when(&delete)
        .then_expect_events(vec![CoreEvent::Webhook(WebhookEvent::Deleted(
            WebhookDeleted {
                webhook_id: id().to_string(),
                tenant_id: Some(acme().0.to_string()),
            },
        ))]);
}

#[test]
fn every_rotation_is_recorded() {
    let rotate = command(WebhookCommand::RotateSecret {
        by: Manager::Tenant(acme()),
    });
    let rotated = CoreEvent::Webhook(WebhookEvent::SecretRotated(WebhookSecretRotated {
        webhook_id: id().to_string(),
        tenant_id: Some(acme().0.to_string()),
    }));
    given(&rotate, vec![registered(Some(acme())), rotated.clone()])
        .when(&rotate)
        .then_expect_events(vec![rotated]);
}

#[test]
fn an_update_keeps_what_it_does_not_name_and_records_nothing_when_nothing_changes() {
    let update = |url: Option<&str>, description: Option<Option<&str>>| {
        command(WebhookCommand::Update {
            by: Manager::Tenant(acme()),
            url: url.map(|u| WebhookUrl::parse(u).unwrap()),
            events: None,
            description: description.map(|d| d.map(|d| Description::parse(d.to_owned()).unwrap())),
        })
    };
    let moved = update(Some("https://hooks.example.com/v2"), None);
    given(&moved, vec![registered(Some(acme()))])
        .when(&moved)
        .then_expect_events(vec![CoreEvent::Webhook(WebhookEvent::Updated(
            WebhookUpdated {
                webhook_id: id().to_string(),
                tenant_id: Some(acme().0.to_string()),
                url: "https://hooks.example.com/v2".into(),
                events: vec!["core.plugin.installed".into(), "plugin.crm.deal.won".into()],
                description: None,
            },
        ))]);
    let same = update(Some("https://hooks.example.com/plexica"), Some(None));
    given(&same, vec![registered(Some(acme()))])
        .when(&same)
        .then_expect_events(vec![]);
}

#[test]
fn a_deleted_endpoint_takes_no_more_commands() {
    let rotate = command(WebhookCommand::RotateSecret {
        by: Manager::Platform,
    });
    let deleted = CoreEvent::Webhook(WebhookEvent::Deleted(WebhookDeleted {
        webhook_id: id().to_string(),
        tenant_id: None,
    }));
    given(&rotate, vec![registered(None), deleted])
        .when(&rotate)
        .then_rejected(Reason::WebhookNotFound);
}

#[test]
fn urls_are_http_with_a_host_and_no_credentials() {
    for good in [
        "https://hooks.example.com/x?y=1",
        "http://127.0.0.1:9000/hook",
    ] {
        assert!(WebhookUrl::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "ftp://example.com/",
        "https://user:pw@example.com/",
        "https://example.com/#frag",
        "/relative",
        "file:///etc/passwd",
        "https://exa\0mple.com/",
    ] {
        assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
    }
    assert!(WebhookUrl::parse(&format!("https://e.com/{}", "a".repeat(2100))).is_err());
}

#[test]
fn event_types_are_known_core_types_or_plugin_types() {
    assert!(EventTypes::parse(vec!["core.registry.version-published".into()]).is_ok());
    assert!(EventTypes::parse(vec!["plugin.crm.deal.won".into()]).is_ok());
    for bad in [
        vec![],
        vec!["core.nothing".to_owned()],
        vec!["plugin.crm".to_owned()],
        vec!["plugin.CRM.x".to_owned()],
        vec!["plugin.crm.deal\0won".to_owned()],
        vec!["core.plugin.installed".to_owned(); 51],
    ] {
        assert!(EventTypes::parse(bad.clone()).is_err(), "{bad:?}");
    }
    let deduplicated = types(&["core.plugin.installed", "core.plugin.installed"]);
    assert_eq!(deduplicated.as_slice().len(), 1);
    assert!(deduplicated.contains("core.plugin.installed"));
}

#[test]
fn a_tenant_endpoint_hears_of_the_catalogue_but_not_of_names_or_other_endpoints() {
    assert!(is_public_platform_event("core.plugin.installed"));
    assert!(is_public_platform_event("core.registry.version-published"));
    assert!(!is_public_platform_event("core.registry.names-reserved"));
    assert!(!is_public_platform_event("core.webhook.registered"));
    assert!(!is_public_platform_event("core.tenant.created"));
}

#[test]
fn a_disabled_endpoint_is_disabled_once_and_enabled_once() {
    let disable = command(WebhookCommand::Disable {
        by: Manager::Platform,
        reason: Some(Description::parse("failing for a day".into()).unwrap()),
    });
    let disabled = CoreEvent::Webhook(WebhookEvent::Disabled(WebhookDisabled {
        webhook_id: id().to_string(),
        tenant_id: Some(acme().0.to_string()),
        reason: Some("failing for a day".into()),
    }));
    given(&disable, vec![registered(Some(acme()))])
        .when(&disable)
        .then_expect_events(vec![disabled.clone()]);
    given(&disable, vec![registered(Some(acme())), disabled.clone()])
        .when(&disable)
        .then_expect_events(vec![]);
    let enable = command(WebhookCommand::Enable {
        by: Manager::Tenant(acme()),
    });
    given(&enable, vec![registered(Some(acme())), disabled.clone()])
        .when(&enable)
        .then_expect_events(vec![CoreEvent::Webhook(WebhookEvent::Enabled(
            WebhookEnabled {
                webhook_id: id().to_string(),
                tenant_id: Some(acme().0.to_string()),
            },
        ))]);
    given(&enable, vec![registered(Some(acme()))])
        .when(&enable)
        .then_expect_events(vec![]);
    let theirs = command(WebhookCommand::Enable {
        by: Manager::Tenant(globex()),
    });
    given(&theirs, vec![registered(Some(acme())), disabled])
        .when(&theirs)
        .then_rejected(Reason::WebhookNotFound);
}

#[test]
fn the_marketplace_plans_short_names_register_the_event_types_they_stand_for() {
    let register = command(WebhookCommand::Register {
        by: Manager::Platform,
        url: WebhookUrl::parse("https://hooks.example.com/plexica").unwrap(),
        events: types(&[
            "plugin.published",
            "plugin.updated",
            "plugin.installed",
            "plugin.reviewed",
            "core.plugin.installed",
        ]),
        description: None,
    });
    given(&register, vec![])
        .when(&register)
        .then_expect_events(vec![CoreEvent::Webhook(WebhookEvent::Registered(
            WebhookRegistered {
                webhook_id: id().to_string(),
                tenant_id: None,
                url: "https://hooks.example.com/plexica".into(),
                events: vec![
                    "core.plugin.installed".into(),
                    "core.plugin.updated".into(),
                    "core.registry.review-submitted".into(),
                    "core.registry.version-published".into(),
                ],
                description: None,
            },
        ))]);
}

#[test]
fn every_short_name_stands_for_a_core_event_type() {
    for (short, canonical) in SHORT_NAMES {
        assert!(
            CoreEvent::types().any(|known| known == canonical),
            "{short} → {canonical}"
        );
    }
}

#[test]
fn a_short_name_that_is_not_the_plans_is_refused() {
    for unknown in ["plugin.deleted", "plugin.", "plugin.crm"] {
        let refused = EventTypes::parse(vec![unknown.to_owned()]);
        assert!(refused.is_err(), "{unknown}");
    }
}

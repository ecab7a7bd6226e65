use event_schemas::CoreEvent;
use event_schemas::events::{PluginEvent, PluginRegistered};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::aggregate::{AggregateState, Command, evolve};
use crate::rejection::RejectionKind;
use crate::testing::given;

fn crm() -> PluginId {
    PluginId::parse("crm").expect("id")
}

fn version(s: &str) -> semver::Version {
    semver::Version::parse(s).expect("version")
}

/// `crm` registered in 1.0.0, as the global view has it.
fn registered() -> Vec<CoreEvent> {
    vec![CoreEvent::Plugin(PluginEvent::Registered(
        PluginRegistered {
            plugin_id: "crm".into(),
            name: "CRM".into(),
            version: "1.0.0".into(),
            description: None,
            manifest: json!({"id": "crm", "name": "CRM", "version": "1.0.0"}).to_string(),
        },
    ))]
}

fn command(command: RegistryCommand) -> Command {
    Command::Registry { id: crm(), command }
}

fn publish(id: &str, v: &str) -> Command {
    let manifest =
        Manifest::parse(json!({"id": id, "name": "CRM", "version": v})).expect("manifest");
    command(RegistryCommand::PublishVersion {
        manifest,
        release_notes: Some("  Faster deals  ".into()),
    })
}

fn yank(v: &str) -> Command {
    command(RegistryCommand::YankVersion {
        version: version(v),
        reason: "leaks deals".into(),
    })
}

fn deprecate(v: &str) -> Command {
    command(RegistryCommand::DeprecateVersion {
        version: version(v),
        message: "use 2.x".into(),
    })
}

fn classify(categories: &[&str], tags: &[&str]) -> Command {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    command(RegistryCommand::Classify {
        classification: Classification::parse(&owned(categories), &owned(tags))
            .expect("valid labels"),
    })
}

fn review(reviewer: &str, stars: i64, comment: Option<&str>) -> Command {
    command(RegistryCommand::SubmitReview {
        reviewer: reviewer.into(),
        reviewer_tenant: None,
        rating: Rating::parse(stars).expect("rating"),
        comment: comment.map(|c| ReviewComment::parse(c).expect("comment")),
    })
}

/// The events that `commands` record, decided one after the other against `crm` registered in
/// 1.0.0; each must be accepted.
fn history(commands: &[Command]) -> Vec<CoreEvent> {
    let mut past = Vec::new();
    for c in commands {
        let events = given(c, past.clone())
            .elsewhere(registered())
            .when(c)
            .expect("accepted");
        past.extend(events);
    }
    past
}

fn when(past: &[Command], c: &Command) -> Result<Vec<CoreEvent>, Rejection> {
    given(c, history(past)).elsewhere(registered()).when(c)
}

fn rejection_kind(past: &[Command], c: &Command) -> RejectionKind {
    when(past, c).expect_err("refused").kind()
}

#[test]
fn publishing_a_version_records_its_manifest_and_trimmed_notes() {
    let events = when(&[], &publish("crm", "1.1.0")).expect("accepted");
    match events.as_slice() {
        [CoreEvent::Registry(RegistryEvent::VersionPublished(e))] => {
            assert_eq!((e.plugin_id.as_str(), e.version.as_str()), ("crm", "1.1.0"));
            assert_eq!(e.release_notes.as_deref(), Some("Faster deals"));
            let manifest: serde_json::Value = serde_json::from_str(&e.manifest).expect("JSON");
            assert_eq!(manifest["version"], "1.1.0");
        }
        other => panic!("expected one publication, got {other:?}"),
    }
}

#[test]
fn publishing_for_an_unregistered_plugin_is_not_found() {
    let c = publish("crm", "1.1.0");
    let rejection = given(&c, vec![]).when(&c).expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::NotFound);
}

#[test]
fn publishing_another_plugins_manifest_is_invalid_at_its_id() {
    let rejection = when(&[], &publish("billing", "1.1.0")).expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::Invalid);
    assert_eq!(rejection.errors[0].pointer, "/manifest/id");
}

#[test]
fn a_version_is_published_once_and_the_registered_one_not_again() {
    let published = [publish("crm", "1.1.0")];
    assert_eq!(
        rejection_kind(&published, &publish("crm", "1.1.0")),
        RejectionKind::Conflict
    );
    assert_eq!(
        rejection_kind(&published, &publish("crm", "1.1.0+build.7")),
        RejectionKind::Conflict,
        "build metadata does not make another version"
    );
    let rejection = when(&[], &publish("crm", "1.0.0")).expect_err("refused");
    assert_eq!(rejection.kind(), RejectionKind::Conflict);
    assert!(rejection.detail.contains("registered"), "{rejection:?}");
}

#[test]
fn a_published_version_can_be_yanked_once() {
    let published = [publish("crm", "1.1.0")];
    let events = when(&published, &yank("1.1.0")).expect("accepted");
    assert!(
        matches!(events.as_slice(), [CoreEvent::Registry(RegistryEvent::VersionYanked(e))] if e.reason == "leaks deals")
    );
    assert_eq!(
        rejection_kind(&[publish("crm", "1.1.0"), yank("1.1.0")], &yank("1.1.0")),
        RejectionKind::Conflict
    );
    assert_eq!(
        rejection_kind(&published, &yank("9.9.9")),
        RejectionKind::NotFound
    );
}

#[test]
fn a_blank_yank_reason_is_invalid() {
    let c = command(RegistryCommand::YankVersion {
        version: version("1.1.0"),
        reason: "  ".into(),
    });
    assert_eq!(
        rejection_kind(&[publish("crm", "1.1.0")], &c),
        RejectionKind::Invalid
    );
}

#[test]
fn deprecation_needs_a_live_version_and_happens_once() {
    let published = [publish("crm", "1.1.0")];
    let events = when(&published, &deprecate("1.1.0")).expect("accepted");
    assert!(
        matches!(events.as_slice(), [CoreEvent::Registry(RegistryEvent::VersionDeprecated(e))] if e.message == "use 2.x")
    );
    assert_eq!(
        rejection_kind(
            &[publish("crm", "1.1.0"), deprecate("1.1.0")],
            &deprecate("1.1.0")
        ),
        RejectionKind::Conflict
    );
    assert_eq!(
        rejection_kind(
            &[publish("crm", "1.1.0"), yank("1.1.0")],
            &deprecate("1.1.0")
        ),
        RejectionKind::Conflict
    );
    assert_eq!(
        rejection_kind(&published, &deprecate("2.0.0")),
        RejectionKind::NotFound
    );
    // A deprecated version can still be withdrawn.
    assert!(
        when(
            &[publish("crm", "1.1.0"), deprecate("1.1.0")],
            &yank("1.1.0")
        )
        .is_ok()
    );
}

#[test]
fn classifying_records_the_full_sets_and_the_same_sets_again_record_nothing() {
    let first = classify(&["sales", "crm", "sales"], &["deals"]);
    let events = when(&[], &first).expect("accepted");
    match events.as_slice() {
        [CoreEvent::Registry(RegistryEvent::PluginClassified(e))] => {
            assert_eq!(e.categories, ["crm", "sales"], "sorted and deduplicated");
            assert_eq!(e.tags, ["deals"]);
        }
        other => panic!("expected one classification, got {other:?}"),
    }
    assert_eq!(
        when(
            std::slice::from_ref(&first),
            &classify(&["crm", "sales"], &["deals"])
        ),
        Ok(vec![])
    );
    let changed = when(&[first], &classify(&["crm"], &[])).expect("accepted");
    assert!(
        matches!(changed.as_slice(), [CoreEvent::Registry(RegistryEvent::PluginClassified(e))] if e.categories == ["crm"] && e.tags.is_empty())
    );
}

#[test]
fn labels_are_kebab_case_and_limited_in_number() {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let errors =
        Classification::parse(&owned(&["Sales", "ok"]), &owned(&["a b"])).expect_err("refused");
    let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/categories/0", "/tags/0"]);
    let six: Vec<String> = (0..6).map(|i| format!("cat-{i}")).collect();
    let errors = Classification::parse(&six, &[]).expect_err("too many");
    assert_eq!(errors[0].pointer, "/categories");
    let repeated = vec!["crm".to_owned(); 6];
    assert!(
        Classification::parse(&repeated, &[]).is_ok(),
        "repeats count once"
    );
}

#[test]
fn classifying_an_unregistered_plugin_is_not_found() {
    let c = classify(&["crm"], &[]);
    assert_eq!(
        given(&c, vec![]).when(&c).expect_err("refused").kind(),
        RejectionKind::NotFound
    );
}

fn verify(verified: bool, note: Option<&str>) -> Command {
    command(RegistryCommand::SetVerification {
        verified,
        note: note.map(str::to_owned),
    })
}

#[test]
fn verifying_records_the_change_and_repeating_it_records_nothing() {
    let verified = when(&[], &verify(true, Some("  security review passed "))).expect("accepted");
    assert_eq!(
        verified,
        [CoreEvent::Registry(
            RegistryEvent::PluginVerificationChanged(PluginVerificationChanged {
                plugin_id: "crm".into(),
                verified: true,
                note: Some("security review passed".into()),
            })
        )]
    );
    let past = [verify(true, None)];
    assert_eq!(when(&past, &verify(true, Some("again"))), Ok(vec![]));
    // Never verified: withdrawing the verification changes nothing either.
    assert_eq!(when(&[], &verify(false, None)), Ok(vec![]));
    let withdrawn = when(&past, &verify(false, Some(""))).expect("accepted");
    assert!(matches!(
        withdrawn.as_slice(),
        [CoreEvent::Registry(RegistryEvent::PluginVerificationChanged(e))] if !e.verified && e.note.is_none()
    ));
}

#[test]
fn verifying_an_unregistered_plugin_is_not_found() {
    let c = verify(true, None);
    assert_eq!(
        given(&c, vec![]).when(&c).expect_err("refused").kind(),
        RejectionKind::NotFound
    );
}

#[test]
fn a_reviewers_second_review_revises_the_first() {
    let first = review("alice", 4, Some("good"));
    let events = when(&[], &first).expect("accepted");
    assert!(matches!(
        events.as_slice(),
        [CoreEvent::Registry(RegistryEvent::ReviewSubmitted(e))] if e.reviewer == "alice" && e.rating == 4
    ));
    let events = when(std::slice::from_ref(&first), &review("alice", 2, None)).expect("accepted");
    assert!(matches!(
        events.as_slice(),
        [CoreEvent::Registry(RegistryEvent::ReviewRevised(e))] if e.rating == 2 && e.comment.is_none()
    ));
    assert_eq!(
        when(
            std::slice::from_ref(&first),
            &review("alice", 4, Some("good"))
        ),
        Ok(vec![]),
        "the same review again records nothing"
    );
    let events = when(&[first], &review("bob", 5, None)).expect("accepted");
    assert!(matches!(
        events.as_slice(),
        [CoreEvent::Registry(RegistryEvent::ReviewSubmitted(e))] if e.reviewer == "bob"
    ));
}

#[test]
fn admins_of_a_suspended_or_deleted_tenant_do_not_review() {
    use event_schemas::events::{TenantCreated, TenantDeleted, TenantEvent, TenantSuspended};
    let tenant = crate::tenant::TenantId(uuid::Uuid::from_u128(7));
    let c = command(RegistryCommand::SubmitReview {
        reviewer: "alice".into(),
        reviewer_tenant: Some(tenant),
        rating: Rating::parse(3).expect("rating"),
        comment: None,
    });
    let tenant_id = tenant.to_string();
    let created = CoreEvent::Tenant(TenantEvent::Created(TenantCreated {
        tenant_id: tenant_id.clone(),
        slug: "acme".into(),
        name: "Acme".into(),
    }));
    let suspended = CoreEvent::Tenant(TenantEvent::Suspended(TenantSuspended {
        tenant_id: tenant_id.clone(),
        reason: None,
    }));
    let deleted = CoreEvent::Tenant(TenantEvent::Deleted(TenantDeleted { tenant_id }));
    let review_in = |tenant_events: Vec<CoreEvent>| {
        given(&c, vec![])
            .elsewhere(registered())
            .elsewhere(tenant_events)
            .when(&c)
    };
    assert!(review_in(vec![created.clone()]).is_ok(), "an active tenant");
    assert!(review_in(vec![]).is_ok(), "a tenant the log does not know");
    for (status, events) in [
        ("SUSPENDED", vec![created.clone(), suspended]),
        ("DELETED", vec![created, deleted]),
    ] {
        let rejection = review_in(events).expect_err("refused");
        assert_eq!(rejection.kind(), RejectionKind::Conflict);
        assert!(rejection.detail.contains(status), "{rejection}");
    }
}

#[test]
fn reviewing_an_unregistered_plugin_is_not_found() {
    let c = review("alice", 5, None);
    assert_eq!(
        given(&c, vec![]).when(&c).expect_err("refused").kind(),
        RejectionKind::NotFound
    );
}

#[test]
fn ratings_are_one_to_five_stars() {
    for stars in [0, 6, -1, 256] {
        let error = Rating::parse(stars).expect_err("out of range");
        assert_eq!(error.pointer, "/rating");
    }
    let all: Vec<u8> = (1..=5)
        .map(|s| Rating::parse(s).expect("in range").stars())
        .collect();
    assert_eq!(all, [1, 2, 3, 4, 5]);
    assert!(serde_json::from_str::<Rating>("6").is_err());
}

#[test]
fn a_registry_command_survives_its_record() {
    for c in [
        publish("crm", "1.1.0"),
        yank("1.1.0"),
        deprecate("1.1.0"),
        classify(&["crm"], &["deals", "pipeline"]),
        review("alice", 3, Some("fine")),
    ] {
        let key = c.aggregate_key().to_string();
        assert_eq!(key, "registry:crm");
        let back = Command::from_record(&key, &c.payload()).expect("parses");
        assert_eq!(back, c);
    }
}

/// The entry after `events`, as the command processor folds them.
fn entry_after(events: &[CoreEvent]) -> RegistryEntry {
    let key = crate::AggregateKey::Registry(crm());
    match events.iter().fold(AggregateState::initial(&key), evolve) {
        AggregateState::Registry(entry) => entry,
        other => panic!("not a registry entry: {other:?}"),
    }
}

proptest! {
    /// Whatever order reviews come in, each reviewer is submitted once and revised after,
    /// the count is the number of reviewers and the average is the mean of their last
    /// ratings.
    #[test]
    fn one_review_per_reviewer_and_the_average_of_their_last_ratings(
        reviews in proptest::collection::vec((0usize..4, 1i64..=5), 1..30)
    ) {
        let reviewers = ["alice", "bob", "carol", "dave"];
        let mut past: Vec<CoreEvent> = Vec::new();
        let mut last = BTreeMap::new();
        let mut submitted = BTreeMap::new();
        for (who, stars) in reviews {
            let c = review(reviewers[who], stars, None);
            let events = given(&c, past.clone()).elsewhere(registered()).when(&c);
            let events = events.expect("a review of a registered plugin is accepted");
            for event in &events {
                if let CoreEvent::Registry(RegistryEvent::ReviewSubmitted(e)) = event {
                    *submitted.entry(e.reviewer.clone()).or_insert(0) += 1;
                }
            }
            past.extend(events);
            last.insert(reviewers[who], stars);
        }
        prop_assert!(submitted.values().all(|n| *n == 1), "{submitted:?}");
        prop_assert_eq!(submitted.len(), last.len());
        let summary = entry_after(&past).rating().expect("reviewed");
        prop_assert_eq!(summary.count, last.len());
        let mean = last.values().sum::<i64>() as f64 / last.len() as f64;
        prop_assert!((summary.average - mean).abs() < 1e-9);
        prop_assert!((1.0..=5.0).contains(&summary.average));
    }
}

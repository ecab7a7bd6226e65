//! Properties of the plugin lifecycle over any sequence of commands: the status moves only
//! along the edges of spec 004 FR-003, the log replays to the state the decisions built, and a
//! refused command changes nothing.

use event_schemas::CoreEvent;
use event_schemas::events::PluginEvent;
use event_schemas::record::AvroRecord;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use super::*;
use crate::{AggregateKey, AggregateState, Command, Directory, RejectionKind, decide, evolve};

/// The edges of FR-003, written out from the spec rather than from the code under test.
const EDGES: &[(Option<PluginStatus>, PluginStatus)] = {
    use PluginStatus::*;
    &[
        (None, Registered),
        (Some(Registered), Installing),
        (Some(Installing), Installed),
        // Edge case 1: a failed install leaves the plugin REGISTERED.
        (Some(Installing), Registered),
        (Some(Installed), Active),
        (Some(Active), Disabled),
        (Some(Disabled), Active),
        (Some(Installed), Uninstalling),
        (Some(Disabled), Uninstalling),
        (Some(Uninstalling), Uninstalled),
        (Some(Uninstalled), Registered),
    ]
};

fn crm() -> PluginId {
    PluginId::parse("crm").expect("id")
}

/// What the generated sequences do. Completing an install step is mostly "the step that is
/// due", since five ordered steps drawn at random would almost never install anything.
#[derive(Debug, Clone)]
enum Action {
    Command(Box<PluginCommand>),
    DueInstallStep,
}

/// Manifests of `crm` in versions that compare every way: patch, minor and major steps, a
/// pre-release below its release, and build metadata that does not count.
static MANIFESTS: LazyLock<Vec<Manifest>> = LazyLock::new(|| {
    let mut versions = Vec::new();
    for a in 0..3 {
        for b in 0..3 {
            for c in 0..3 {
                versions.push(format!("{a}.{b}.{c}"));
            }
        }
        versions.push(format!("{a}.1.0-rc.1"));
        versions.push(format!("{a}.1.0+build.5"));
    }
    versions
        .into_iter()
        .map(|version| {
            Manifest::parse(json!({"id": "crm", "name": "CRM", "version": version}))
                .expect("manifest")
        })
        .collect()
});

fn manifest() -> impl Strategy<Value = Manifest> {
    proptest::sample::select(MANIFESTS.as_slice())
}

fn reason() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z ]{1,20}",
        1 => Just("  ".to_owned()),
    ]
}

fn install_step() -> impl Strategy<Value = InstallStep> {
    proptest::sample::select(InstallStep::ALL.to_vec())
}

fn action() -> impl Strategy<Value = Action> {
    let command = prop_oneof![
        manifest().prop_map(|manifest| PluginCommand::Register { manifest }),
        Just(PluginCommand::Install),
        install_step().prop_map(|step| PluginCommand::CompleteInstallStep { step }),
        (install_step(), reason())
            .prop_map(|(step, reason)| PluginCommand::FailInstall { step, reason }),
        Just(PluginCommand::Enable),
        proptest::option::of(reason()).prop_map(|reason| PluginCommand::Disable { reason }),
        manifest().prop_map(|manifest| PluginCommand::Update { manifest }),
        Just(PluginCommand::CompleteUpdate),
        reason().prop_map(|reason| PluginCommand::FailUpdate { reason }),
        any::<bool>().prop_map(|purge_data| PluginCommand::Uninstall { purge_data }),
        Just(PluginCommand::CompleteUninstall),
    ];
    prop_oneof![
        11 => command.prop_map(|c| Action::Command(Box::new(c))),
        4 => Just(Action::DueInstallStep),
    ]
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    proptest::collection::vec(action(), 0..80)
}

fn plugin(state: &AggregateState) -> &Plugin {
    match state {
        AggregateState::Plugin(plugin) => plugin,
        _ => panic!("a plugin key gives a plugin state"),
    }
}

fn resolve(action: &Action, state: &AggregateState) -> PluginCommand {
    match action {
        Action::Command(command) => (**command).clone(),
        Action::DueInstallStep => {
            let completed = match plugin(state) {
                Plugin::Known(KnownPlugin {
                    stage: Stage::Installing { completed },
                    ..
                }) => completed.as_slice(),
                _ => &[],
            };
            PluginCommand::CompleteInstallStep {
                step: InstallStep::next_after(completed).unwrap_or(InstallStep::HealthChecked),
            }
        }
    }
}

/// An event as a reader of the topic gets it: written with its Avro schema and read back.
fn through_the_wire(event: &CoreEvent) -> CoreEvent {
    fn wire<T: AvroRecord>(record: &T) -> T {
        let schema = T::parsed_schema().expect("schema parses");
        let value = apache_avro::to_value(record)
            .and_then(|v| v.resolve(&schema))
            .expect("the record fits its schema");
        let bytes = apache_avro::to_avro_datum(&schema, value).expect("encodes");
        let read =
            apache_avro::from_avro_datum(&schema, &mut bytes.as_slice(), None).expect("decodes");
        apache_avro::from_value(&read).expect("deserialises")
    }
    let CoreEvent::Plugin(event) = event else {
        panic!("a plugin command emits plugin events: {event:?}");
    };
    CoreEvent::Plugin(match event {
        PluginEvent::Registered(e) => PluginEvent::Registered(wire(e)),
        PluginEvent::InstallRequested(e) => PluginEvent::InstallRequested(wire(e)),
        PluginEvent::InstallStepCompleted(e) => PluginEvent::InstallStepCompleted(wire(e)),
        PluginEvent::Installed(e) => PluginEvent::Installed(wire(e)),
        PluginEvent::InstallFailed(e) => PluginEvent::InstallFailed(wire(e)),
        PluginEvent::Enabled(e) => PluginEvent::Enabled(wire(e)),
        PluginEvent::Disabled(e) => PluginEvent::Disabled(wire(e)),
        PluginEvent::UpdateRequested(e) => PluginEvent::UpdateRequested(wire(e)),
        PluginEvent::Updated(e) => PluginEvent::Updated(wire(e)),
        PluginEvent::UpdateFailed(e) => PluginEvent::UpdateFailed(wire(e)),
        PluginEvent::UninstallRequested(e) => PluginEvent::UninstallRequested(wire(e)),
        PluginEvent::Uninstalled(e) => PluginEvent::Uninstalled(wire(e)),
    })
}

/// What a run went through, so that a test can tell the generator reaches the whole machine.
#[derive(Default)]
struct Seen {
    statuses: std::collections::HashSet<PluginStatus>,
    accepted: std::collections::HashSet<PluginCommandKind>,
}

/// Runs `actions` from a new plugin, checking every property at every step.
fn run(actions: &[Action], seen: &mut Seen) -> Result<(), TestCaseError> {
    let key = AggregateKey::Plugin(crm());
    let mut state = AggregateState::initial(&key);
    // The log as a reader of the topic has it.
    let mut log: Vec<CoreEvent> = Vec::new();

    for action in actions {
        let command = resolve(action, &state);
        let kind = command.kind();
        let allowed = plugin(&state).allowed_commands();
        let before = state.clone();
        match decide(
            &state,
            &Command::Plugin { id: crm(), command },
            &Directory::default(),
        ) {
            Ok(events) => {
                prop_assert!(
                    allowed.contains(&kind),
                    "{kind:?} accepted outside {allowed:?}"
                );
                prop_assert!(!events.is_empty(), "an accepted command records something");
                seen.accepted.insert(kind);
                for event in events {
                    let from = plugin(&state).status();
                    state = evolve(state, &event);
                    let to = plugin(&state)
                        .status()
                        .ok_or_else(|| TestCaseError::fail("known after an event"))?;
                    seen.statuses.insert(to);
                    prop_assert!(
                        from == Some(to) || EDGES.contains(&(from, to)),
                        "{} moved {from:?} to {to:?}, not an edge of FR-003",
                        event.event_type()
                    );
                    log.push(through_the_wire(&event));
                }
            }
            Err(rejection) => {
                // Refused: the aggregate is as it was, and deciding again refuses alike, so a
                // redelivered command gets the same answer.
                prop_assert_eq!(&state, &before);
                let again = decide(
                    &state,
                    &Command::Plugin {
                        id: crm(),
                        command: resolve(action, &state),
                    },
                    &Directory::default(),
                );
                prop_assert_eq!(again.as_ref().err(), Some(&rejection));
                if !allowed.contains(&kind) {
                    let expected: Vec<&str> = allowed.iter().map(|k| k.command_type()).collect();
                    prop_assert_eq!(&rejection.allowed, &expected);
                    let expected_kind = match plugin(&state) {
                        Plugin::Unknown => RejectionKind::NotFound,
                        Plugin::Known(_) => RejectionKind::Conflict,
                    };
                    prop_assert_eq!(rejection.kind(), expected_kind);
                }
            }
        }

        if let Plugin::Known(known) = plugin(&state) {
            // An update keeps a status from which one may be requested.
            if known.pending_update.is_some() {
                prop_assert!(matches!(
                    known.stage,
                    Stage::Installed | Stage::Active | Stage::Disabled
                ));
            }
            // Install steps are done in order: always a prefix of the saga.
            if let Stage::Installing { completed } = &known.stage {
                prop_assert_eq!(completed.as_slice(), &InstallStep::ALL[..completed.len()]);
            }
        }
    }
    // Replay: the log, read back from the wire, rebuilds exactly the state decided on. (Every
    // prefix of a sequence is a sequence too, so checking at the end is enough.)
    let replayed = log.iter().fold(AggregateState::initial(&key), evolve);
    prop_assert_eq!(&replayed, &state);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_command_sequence_respects_the_lifecycle(actions in actions()) {
        run(&actions, &mut Seen::default())?;
    }
}

/// The properties above only mean something if the sequences visit the whole machine.
#[test]
fn the_generated_sequences_reach_every_status_and_accept_every_command() {
    let mut runner = TestRunner::new_with_rng(
        Config::with_cases(256),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let mut seen = Seen::default();
    let strategy = actions();
    for _ in 0..256 {
        let actions = strategy.new_tree(&mut runner).expect("generates").current();
        run(&actions, &mut seen).expect("the properties hold");
    }
    for status in [
        PluginStatus::Registered,
        PluginStatus::Installing,
        PluginStatus::Installed,
        PluginStatus::Active,
        PluginStatus::Disabled,
        PluginStatus::Uninstalling,
        PluginStatus::Uninstalled,
    ] {
        assert!(seen.statuses.contains(&status), "never reached {status:?}");
    }
    for kind in PluginCommandKind::ALL {
        assert!(seen.accepted.contains(&kind), "never accepted {kind:?}");
    }
}

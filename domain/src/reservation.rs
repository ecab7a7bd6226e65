//! Reservations of names that must be unique across aggregates: permission keys across
//! plugins (spec 004 edge case 6) and tenant slugs across tenants. Each scope is one
//! aggregate with one key (`reservation:permission-keys`, `reservation:tenant-slugs`), so the
//! log serialises every reservation of a scope through its single writer: of two concurrent
//! claims on a name, exactly one wins.
//!
//! ```text
//! command                   accepted when                              event
//! reserve(owner, names)     no name is held by another owner           names-reserved (the new ones)
//! release(owner)            always                                     names-released (what it held)
//! ```
//! Reserving names the owner already holds, or releasing when it holds none, records nothing:
//! sagas repeat their steps, and a repeat must succeed.

use std::collections::BTreeMap;
use std::fmt;

use event_schemas::events::{NamesReleased, NamesReserved, RegistryEvent};
use serde::{Deserialize, Serialize};

use crate::rejection::{FieldError, Reason, Rejection};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReservationScope {
    PermissionKeys,
    TenantSlugs,
}

impl ReservationScope {
    pub const ALL: [ReservationScope; 2] = [
        ReservationScope::PermissionKeys,
        ReservationScope::TenantSlugs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReservationScope::PermissionKeys => "permission-keys",
            ReservationScope::TenantSlugs => "tenant-slugs",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| FieldError::new("", format!("`{s}` is not a reservation scope")))
    }

    /// What one name of the scope is called, and what owns it, in refusals.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            ReservationScope::PermissionKeys => ("permission key", "plugin"),
            ReservationScope::TenantSlugs => ("slug", "tenant"),
        }
    }
}

impl fmt::Display for ReservationScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum ReservationCommand {
    Reserve {
        owner: String,
        names: Vec<String>,
    },
    Release {
        owner: String,
    },
    /// Gives back some of `owner`'s names: those a refused claim reserved for nothing.
    Unreserve {
        owner: String,
        names: Vec<String>,
    },
}

impl ReservationCommand {
    pub fn command_type(&self) -> &'static str {
        match self {
            ReservationCommand::Reserve { .. } => "reservation.reserve",
            ReservationCommand::Release { .. } => "reservation.release",
            ReservationCommand::Unreserve { .. } => "reservation.unreserve",
        }
    }
}

/// Who holds each name of one scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservations {
    holders: BTreeMap<String, String>,
}

impl Reservations {
    pub fn holder(&self, name: &str) -> Option<&str> {
        self.holders.get(name).map(String::as_str)
    }

    pub fn decide(
        &self,
        scope: ReservationScope,
        command: &ReservationCommand,
    ) -> Result<Vec<RegistryEvent>, Rejection> {
        let (name_word, owner_word) = scope.words();
        match command {
            ReservationCommand::Reserve { owner, names } => {
                let taken: Vec<String> = names
                    .iter()
                    .filter_map(|name| {
                        self.holder(name)
                            .filter(|holder| holder != owner)
                            .map(|holder| {
                                format!("{name_word} `{name}` is held by {owner_word} `{holder}`")
                            })
                    })
                    .collect();
                if !taken.is_empty() {
                    let reason = match scope {
                        ReservationScope::PermissionKeys => Reason::PermissionKeyTaken,
                        ReservationScope::TenantSlugs => Reason::TenantSlugTaken,
                    };
                    return Err(Rejection::new(
                        reason,
                        format!(
                            "{owner_word} `{owner}` cannot have what another {owner_word} holds: {}",
                            taken.join("; ")
                        ),
                    ));
                }
                let mut new: Vec<String> = names
                    .iter()
                    .filter(|name| self.holder(name).is_none())
                    .cloned()
                    .collect();
                new.sort();
                new.dedup();
                if new.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![RegistryEvent::NamesReserved(NamesReserved {
                    scope: scope.as_str().to_owned(),
                    owner: owner.clone(),
                    names: new,
                })])
            }
            ReservationCommand::Release { owner } | ReservationCommand::Unreserve { owner, .. } => {
                let only = match command {
                    ReservationCommand::Unreserve { names, .. } => Some(names),
                    _ => None,
                };
                let held: Vec<String> = self
                    .holders
                    .iter()
                    .filter(|(name, holder)| {
                        *holder == owner && only.is_none_or(|names| names.contains(name))
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                if held.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![RegistryEvent::NamesReleased(NamesReleased {
                    scope: scope.as_str().to_owned(),
                    owner: owner.clone(),
                    names: held,
                })])
            }
        }
    }

    pub fn evolve(mut self, event: &RegistryEvent) -> Self {
        match event {
            RegistryEvent::NamesReserved(e) => {
                for name in &e.names {
                    self.holders.insert(name.clone(), e.owner.clone());
                }
            }
            RegistryEvent::NamesReleased(e) => {
                for name in &e.names {
                    if self.holders.get(name) == Some(&e.owner) {
                        self.holders.remove(name);
                    }
                }
            }
            // Registry entries share the topic but are other aggregates.
            RegistryEvent::VersionPublished(_)
            | RegistryEvent::VersionYanked(_)
            | RegistryEvent::VersionDeprecated(_)
            | RegistryEvent::PluginClassified(_)
            | RegistryEvent::PluginVerificationChanged(_)
            | RegistryEvent::ReviewSubmitted(_)
            | RegistryEvent::ReviewRevised(_) => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use event_schemas::CoreEvent;

    use crate::aggregate::Command;
    use crate::rejection::RejectionKind;
    use crate::testing::given;

    use super::*;

    fn reserve(owner: &str, names: &[&str]) -> Command {
        Command::Reservation {
            scope: ReservationScope::PermissionKeys,
            command: ReservationCommand::Reserve {
                owner: owner.to_owned(),
                names: names.iter().map(|n| (*n).to_owned()).collect(),
            },
        }
    }

    fn release(owner: &str) -> Command {
        Command::Reservation {
            scope: ReservationScope::PermissionKeys,
            command: ReservationCommand::Release {
                owner: owner.to_owned(),
            },
        }
    }

    fn reserved(owner: &str, names: &[&str]) -> CoreEvent {
        CoreEvent::Registry(RegistryEvent::NamesReserved(NamesReserved {
            scope: "permission-keys".into(),
            owner: owner.into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }))
    }

    #[test]
    fn unreserving_gives_back_only_the_names_named() {
        let command = Command::Reservation {
            scope: ReservationScope::PermissionKeys,
            command: ReservationCommand::Unreserve {
                owner: "crm".into(),
                names: vec!["crm.b".into(), "other".into()],
            },
        };
        let events = given(&command, vec![reserved("crm", &["crm.a", "crm.b"])])
            .when(&command)
            .expect("accepted");
        assert_eq!(
            events,
            [CoreEvent::Registry(RegistryEvent::NamesReleased(
                NamesReleased {
                    scope: "permission-keys".into(),
                    owner: "crm".into(),
                    names: vec!["crm.b".into()],
                }
            ))]
        );
    }

    #[test]
    fn free_names_are_reserved_for_their_owner() {
        let command = reserve("crm", &["crm.deals.write", "crm.deals.read"]);
        let events = given(&command, vec![]).when(&command).expect("accepted");
        assert_eq!(
            events,
            [reserved("crm", &["crm.deals.read", "crm.deals.write"])]
        );
    }

    #[test]
    fn a_name_held_by_another_owner_is_a_conflict_naming_both() {
        let command = reserve("sales", &["crm.deals.read", "sales.leads.read"]);
        let rejection = given(&command, vec![reserved("crm", &["crm.deals.read"])])
            .when(&command)
            .expect_err("refused");
        assert_eq!(rejection.kind(), RejectionKind::Conflict);
        assert!(rejection.detail.contains("`crm`"), "{rejection:?}");
        assert!(rejection.detail.contains("`sales`"), "{rejection:?}");
        assert!(rejection.detail.contains("crm.deals.read"), "{rejection:?}");
    }

    #[test]
    fn reserving_again_what_the_owner_holds_records_only_what_is_new() {
        let past = vec![reserved("crm", &["crm.deals.read"])];
        let again = reserve("crm", &["crm.deals.read"]);
        assert_eq!(given(&again, past.clone()).when(&again), Ok(vec![]));
        let more = reserve("crm", &["crm.deals.read", "crm.deals.write"]);
        assert_eq!(
            given(&more, past).when(&more),
            Ok(vec![reserved("crm", &["crm.deals.write"])])
        );
    }

    #[test]
    fn released_names_can_be_taken_by_another_owner() {
        let past = vec![reserved("crm", &["crm.deals.read"])];
        let events = given(&release("crm"), past.clone())
            .when(&release("crm"))
            .expect("released");
        assert_eq!(events.len(), 1);
        let history: Vec<CoreEvent> = past.into_iter().chain(events).collect();
        let command = reserve("sales", &["crm.deals.read"]);
        assert!(given(&command, history.clone()).when(&command).is_ok());
        assert_eq!(
            given(&release("nobody"), history).when(&release("nobody")),
            Ok(vec![])
        );
    }
}

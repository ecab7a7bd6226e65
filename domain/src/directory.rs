//! The global, read-only view of every plugin and tenant that cross-aggregate rules read
//! (DESIGN.md §4.4, Kafka Streams' GlobalKTable idea): whether a dependency is installed in a
//! matching version, whether a plugin is ACTIVE before a tenant enables it, which manifest's
//! configuration schema applies, which plugins depend on one being disabled.
//!
//! Every command processor keeps one by tailing all partitions of the event topics and
//! folding them here. It is eventually consistent: a rule that must hold under concurrency
//! (unique permission keys, unique tenant slugs) goes through a reservation aggregate, never
//! through this view alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use event_schemas::CoreEvent;
use event_schemas::events::{PluginEvent, TenantEvent};
use event_schemas::status::PluginStatus;

use crate::aggregate::AggregateKey;
use crate::plugin::{Dependency, Manifest, PluginId};
use crate::tenant::{TenantId, TenantStatus};

/// What the view knows of one plugin: its status and the manifest of the version in service.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub status: PluginStatus,
    /// Absent when the logged manifest no longer parses under today's rules: the plugin is
    /// then known but has no dependencies or settings the view could vouch for.
    pub manifest: Option<Manifest>,
    pub version: semver::Version,
}

impl Listing {
    /// Installed, whatever it does now: INSTALLED, ACTIVE or DISABLED (an update under way
    /// keeps the status, so it counts too).
    pub fn is_installed(&self) -> bool {
        matches!(
            self.status,
            PluginStatus::Installed | PluginStatus::Active | PluginStatus::Disabled
        )
    }

    pub fn dependencies(&self) -> &[Dependency] {
        self.manifest.as_ref().map_or(&[], |m| &m.dependencies)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantListing {
    pub slug: String,
    pub status: TenantStatus,
}

/// A dependency that is not there in a matching version, as a refusal lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnmetDependency {
    pub plugin: PluginId,
    pub requirement: String,
    /// What the view has instead: `not registered`, `REGISTERED 2.0.0`, …
    pub found: String,
}

impl std::fmt::Display for UnmetDependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (found: {})",
            self.plugin, self.requirement, self.found
        )
    }
}

/// How far along a dependency must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// To install a plugin, its dependencies must be installed.
    Installed,
    /// To enable it, they must be ACTIVE.
    Active,
}

#[derive(Debug, Clone, Default)]
pub struct Directory {
    plugins: HashMap<PluginId, Listing>,
    tenants: HashMap<TenantId, TenantListing>,
    /// The aggregate version last folded, per aggregate: the tail and the processor's own
    /// writes both feed the view, so an event may arrive twice or after a later one.
    versions: HashMap<AggregateKey, u64>,
}

impl Directory {
    pub fn plugin(&self, id: &PluginId) -> Option<&Listing> {
        self.plugins.get(id)
    }

    /// Every plugin the log has seen, in no particular order.
    pub fn plugins(&self) -> impl Iterator<Item = (&PluginId, &Listing)> {
        self.plugins.iter()
    }

    pub fn tenant(&self, id: TenantId) -> Option<&TenantListing> {
        self.tenants.get(&id)
    }

    /// The tenant, not deleted, that goes by `slug`.
    pub fn tenant_with_slug(&self, slug: &str) -> Option<TenantId> {
        self.tenants
            .iter()
            .find(|(_, t)| t.slug == slug && t.status != TenantStatus::Deleted)
            .map(|(id, _)| *id)
    }

    /// Folds one event of the log. `version` is its `aggregate-version` header; an event at
    /// or below the version already folded for its aggregate changes nothing.
    pub fn apply(&mut self, version: Option<u64>, event: &CoreEvent) {
        let Ok(key) = AggregateKey::of_event(event) else {
            return;
        };
        if let Some(version) = version {
            let seen = self.versions.entry(key).or_default();
            if version <= *seen {
                return;
            }
            *seen = version;
        }
        match event {
            CoreEvent::Plugin(event) => self.apply_plugin(event),
            CoreEvent::Tenant(event) => self.apply_tenant(event),
            // No decision reads the registry, what runs or where events go: only lifecycles
            // and tenants.
            CoreEvent::PluginHealth(_) | CoreEvent::Registry(_) | CoreEvent::Webhook(_) => {}
        }
    }

    fn apply_plugin(&mut self, event: &PluginEvent) {
        let Ok(id) = PluginId::parse(event.plugin_id()) else {
            return;
        };
        let listed = |version: &str, manifest: &str, status| {
            let manifest = serde_json::from_str(manifest)
                .ok()
                .and_then(|document| Manifest::parse(document).ok());
            let version = manifest
                .as_ref()
                .map(|m: &Manifest| m.version.clone())
                .or_else(|| semver::Version::parse(version).ok())?;
            Some(Listing {
                status,
                manifest,
                version,
            })
        };
        match event {
            PluginEvent::Registered(e) => {
                if let Some(listing) = listed(&e.version, &e.manifest, PluginStatus::Registered) {
                    self.plugins.insert(id, listing);
                }
            }
            PluginEvent::Updated(e) => {
                let status = self.plugins.get(&id).map(|l| l.status);
                if let Some(status) = status
                    && let Some(listing) = listed(&e.version, &e.manifest, status)
                {
                    self.plugins.insert(id, listing);
                }
            }
            event => {
                let status = match event {
                    PluginEvent::InstallRequested(_) | PluginEvent::InstallStepCompleted(_) => {
                        PluginStatus::Installing
                    }
                    PluginEvent::Installed(_) => PluginStatus::Installed,
                    PluginEvent::InstallFailed(_) => PluginStatus::Registered,
                    PluginEvent::Enabled(_) => PluginStatus::Active,
                    PluginEvent::Disabled(_) => PluginStatus::Disabled,
                    PluginEvent::UninstallRequested(_) => PluginStatus::Uninstalling,
                    PluginEvent::Uninstalled(_) => PluginStatus::Uninstalled,
                    // An update keeps the status; the version changes with `Updated`.
                    PluginEvent::Registered(_)
                    | PluginEvent::UpdateRequested(_)
                    | PluginEvent::Updated(_)
                    | PluginEvent::UpdateFailed(_) => return,
                };
                if let Some(listing) = self.plugins.get_mut(&id) {
                    listing.status = status;
                }
            }
        }
    }

    fn apply_tenant(&mut self, event: &TenantEvent) {
        let Ok(id) = uuid::Uuid::parse_str(event.tenant_id()).map(TenantId) else {
            return;
        };
        match event {
            TenantEvent::Created(e) => {
                self.tenants.insert(
                    id,
                    TenantListing {
                        slug: e.slug.clone(),
                        status: TenantStatus::Active,
                    },
                );
            }
            event => {
                let Some(tenant) = self.tenants.get_mut(&id) else {
                    return;
                };
                tenant.status = match event {
                    TenantEvent::Suspended(_) => TenantStatus::Suspended,
                    TenantEvent::Deleted(_) => TenantStatus::Deleted,
                    TenantEvent::Created(_) | TenantEvent::Reactivated(_) => TenantStatus::Active,
                    // The view keeps no tenant's plugins: only the tenant aggregate rules on them.
                    TenantEvent::PluginEnabled(_)
                    | TenantEvent::PluginDisabled(_)
                    | TenantEvent::PluginConfigured(_) => return,
                };
            }
        }
    }

    /// The dependencies of `manifest` that are not there in a matching version, `needed`
    /// far along; empty when all are.
    pub fn unmet_dependencies(
        &self,
        dependencies: &[Dependency],
        needed: Needed,
    ) -> Vec<UnmetDependency> {
        dependencies
            .iter()
            .filter_map(|dependency| {
                let found = match self.plugins.get(&dependency.plugin) {
                    None => "not registered".to_owned(),
                    Some(listing) => {
                        let far_enough = match needed {
                            Needed::Installed => listing.is_installed(),
                            Needed::Active => listing.status == PluginStatus::Active,
                        };
                        if far_enough && dependency.requirement.matches(&listing.version) {
                            return None;
                        }
                        format!("{} {}", listing.status.as_str(), listing.version)
                    }
                };
                Some(UnmetDependency {
                    plugin: dependency.plugin.clone(),
                    requirement: dependency.requirement.to_string(),
                    found,
                })
            })
            .collect()
    }

    /// A chain of dependencies from plugin `id`, which has `dependencies`, back to itself
    /// through the registered manifests, if there is one: `[a, b, c, a]`.
    pub fn dependency_cycle(
        &self,
        id: &PluginId,
        dependencies: &[Dependency],
    ) -> Option<Vec<PluginId>> {
        let mut path = vec![id.clone()];
        let mut finished = BTreeSet::new();
        self.cycle_from(id, dependencies, &mut path, &mut finished)
    }

    fn cycle_from(
        &self,
        start: &PluginId,
        dependencies: &[Dependency],
        path: &mut Vec<PluginId>,
        finished: &mut BTreeSet<PluginId>,
    ) -> Option<Vec<PluginId>> {
        for dependency in dependencies {
            let next = &dependency.plugin;
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.clone());
                return Some(cycle);
            }
            if finished.contains(next) || path.contains(next) {
                continue;
            }
            let Some(listing) = self.plugins.get(next) else {
                continue;
            };
            path.push(next.clone());
            if let Some(cycle) = self.cycle_from(start, listing.dependencies(), path, finished) {
                return Some(cycle);
            }
            path.pop();
            finished.insert(next.clone());
        }
        None
    }

    /// The plugins whose manifest in service depends on `id`, by id.
    pub fn dependents_of(&self, id: &PluginId) -> BTreeMap<PluginId, &Listing> {
        self.plugins
            .iter()
            .filter(|(_, listing)| listing.dependencies().iter().any(|d| d.plugin == *id))
            .map(|(dependent, listing)| (dependent.clone(), listing))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use event_schemas::events::{PluginEnabled, PluginInstalled, PluginRegistered};
    use serde_json::json;

    use super::*;

    fn registered(id: &str, version: &str, dependencies: serde_json::Value) -> CoreEvent {
        let manifest =
            json!({"id": id, "name": id, "version": version, "dependencies": dependencies});
        CoreEvent::Plugin(PluginEvent::Registered(PluginRegistered {
            plugin_id: id.to_owned(),
            name: id.to_owned(),
            version: version.to_owned(),
            description: None,
            manifest: manifest.to_string(),
        }))
    }

    fn installed(id: &str, version: &str) -> CoreEvent {
        CoreEvent::Plugin(PluginEvent::Installed(PluginInstalled {
            plugin_id: id.to_owned(),
            version: version.to_owned(),
        }))
    }

    fn enabled(id: &str, version: &str) -> CoreEvent {
        CoreEvent::Plugin(PluginEvent::Enabled(PluginEnabled {
            plugin_id: id.to_owned(),
            version: version.to_owned(),
        }))
    }

    fn manifest(id: &str, dependencies: serde_json::Value) -> Manifest {
        Manifest::parse(
            json!({"id": id, "name": id, "version": "1.0.0", "dependencies": dependencies}),
        )
        .expect("valid manifest")
    }

    fn id(s: &str) -> PluginId {
        PluginId::parse(s).expect("plugin id")
    }

    #[test]
    fn lists_every_dependency_that_is_missing_or_out_of_range() {
        let mut directory = Directory::default();
        directory.apply(None, &registered("contacts", "2.3.0", json!([])));
        directory.apply(None, &installed("contacts", "2.3.0"));
        directory.apply(None, &registered("billing", "1.0.0", json!([])));
        let crm = manifest(
            "crm",
            json!([
                {"plugin": "contacts", "version": "^2.1"},
                {"plugin": "billing", "version": "^1"},
                {"plugin": "mail", "version": ">=3"}
            ]),
        );
        let unmet = directory.unmet_dependencies(&crm.dependencies, Needed::Installed);
        let names: Vec<(&str, &str)> = unmet
            .iter()
            .map(|u| (u.plugin.as_str(), u.found.as_str()))
            .collect();
        assert_eq!(
            names,
            [("billing", "REGISTERED 1.0.0"), ("mail", "not registered")]
        );
        assert_eq!(
            directory
                .unmet_dependencies(&crm.dependencies, Needed::Active)
                .len(),
            3,
            "installed is not active"
        );
    }

    #[test]
    fn a_version_outside_the_range_is_unmet() {
        let mut directory = Directory::default();
        directory.apply(None, &registered("contacts", "1.9.0", json!([])));
        directory.apply(None, &installed("contacts", "1.9.0"));
        directory.apply(None, &enabled("contacts", "1.9.0"));
        let crm = manifest("crm", json!([{"plugin": "contacts", "version": "^2.1"}]));
        let unmet = directory.unmet_dependencies(&crm.dependencies, Needed::Installed);
        assert_eq!(unmet.len(), 1);
        assert_eq!(unmet[0].found, "ACTIVE 1.9.0");
    }

    #[test]
    fn finds_a_cycle_through_registered_manifests() {
        let mut directory = Directory::default();
        directory.apply(
            None,
            &registered("bb", "1.0.0", json!([{"plugin": "cc", "version": "*"}])),
        );
        directory.apply(
            None,
            &registered("cc", "1.0.0", json!([{"plugin": "aa", "version": "*"}])),
        );
        let a = manifest("aa", json!([{"plugin": "bb", "version": "*"}]));
        let cycle = directory
            .dependency_cycle(&a.id, &a.dependencies)
            .expect("a cycle");
        let names: Vec<&str> = cycle.iter().map(PluginId::as_str).collect();
        assert_eq!(names, ["aa", "bb", "cc", "aa"]);
        let no_cycle = manifest("dd", json!([{"plugin": "bb", "version": "*"}]));
        assert_eq!(
            directory.dependency_cycle(&no_cycle.id, &no_cycle.dependencies),
            None
        );
    }

    #[test]
    fn an_event_folded_twice_or_late_changes_nothing() {
        let mut directory = Directory::default();
        directory.apply(Some(1), &registered("contacts", "2.3.0", json!([])));
        directory.apply(Some(2), &installed("contacts", "2.3.0"));
        directory.apply(Some(3), &enabled("contacts", "2.3.0"));
        directory.apply(Some(2), &installed("contacts", "2.3.0"));
        let status = directory.plugin(&id("contacts")).map(|l| l.status);
        assert_eq!(status, Some(PluginStatus::Active));
    }

    #[test]
    fn knows_who_depends_on_a_plugin() {
        let mut directory = Directory::default();
        directory.apply(None, &registered("contacts", "2.3.0", json!([])));
        directory.apply(
            None,
            &registered(
                "crm",
                "1.0.0",
                json!([{"plugin": "contacts", "version": "^2"}]),
            ),
        );
        directory.apply(None, &registered("mail", "1.0.0", json!([])));
        let dependents: Vec<PluginId> = directory
            .dependents_of(&id("contacts"))
            .into_keys()
            .collect();
        assert_eq!(dependents, [id("crm")]);
    }
}

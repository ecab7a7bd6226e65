//! A plugin's entry in the registry (milestone M2.4, the marketplace): the versions published
//! for it, how it is classified, and what its users think of it. One aggregate per plugin,
//! `registry:{pluginId}`, on `core.registry`, apart from the plugin's lifecycle aggregate so
//! that marketplace traffic (reviews above all) never queues behind an install saga.
//!
//! ```text
//! command              accepted when                                           event
//! publish-version      the plugin is registered, the manifest is its own, the   version-published
//!                      version is neither published nor the registered one
//! yank-version         the version is published and not yanked                 version-yanked
//! deprecate-version    the version is published, neither yanked nor deprecated version-deprecated
//! classify             the plugin is registered                                plugin-classified
//! set-verification     the plugin is registered                                plugin-verification-changed
//! submit-review        the plugin is registered, the reviewer's tenant (if any)  review-submitted, then
//!                      is neither suspended nor deleted                         review-revised
//! ```
//! Classifying with the sets the entry has, verifying a verified plugin (or withdrawing the
//! verification of one that has none), or submitting the review a reviewer already gave,
//! records nothing: a client retrying a PUT must get the same answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use event_schemas::events::{
    PluginClassified, PluginVerificationChanged, RegistryEvent, ReviewRevised, ReviewSubmitted,
    VersionDeprecated, VersionPublished, VersionYanked,
};
use serde::{Deserialize, Serialize};

use crate::directory::Directory;
use crate::plugin::{Manifest, PluginId};
use crate::rejection::{FieldError, Reason, Rejection, required_text};
use crate::tenant::{TenantId, TenantStatus};

/// A review's stars: 1 to 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Rating(u8);

impl Rating {
    pub fn parse(stars: i64) -> Result<Self, FieldError> {
        u8::try_from(stars)
            .ok()
            .filter(|s| (1..=5).contains(s))
            .map(Self)
            .ok_or_else(|| {
                FieldError::new("/rating", format!("a rating is 1 to 5 stars, not {stars}"))
            })
    }

    pub fn stars(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Rating {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stars = i64::deserialize(deserializer)?;
        Rating::parse(stars).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// What a review says besides its rating: trimmed, 1 to 2000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewComment(String);

impl ReviewComment {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let trimmed = s.trim();
        if (1..=Self::MAX_CHARS).contains(&trimmed.chars().count()) {
            Ok(Self(trimmed.to_owned()))
        } else {
            Err(FieldError::new(
                "/comment",
                format!(
                    "a comment has 1 to {} characters; leave it out to say nothing",
                    Self::MAX_CHARS
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ReviewComment {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ReviewComment::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// A kebab-case marketplace label (a category or a tag), 2 to 40 characters starting with a
/// letter: labels are filters in URLs, so they are kept to what needs no escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Label(String);

impl Label {
    pub fn parse(s: &str) -> Result<Self, String> {
        if crate::rejection::is_kebab_case(s, 2..=40) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a label: 2-40 characters of kebab-case (a-z, 0-9, -) starting with a letter"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plugin's categories (at most 5) and tags (at most 20), each a set of labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Classification {
    categories: BTreeSet<Label>,
    tags: BTreeSet<Label>,
}

impl Classification {
    pub const MAX_CATEGORIES: usize = 5;
    pub const MAX_TAGS: usize = 20;

    /// Parses both lists, reporting every bad label at its pointer. Repeats count once.
    pub fn parse(categories: &[String], tags: &[String]) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut labels = |field: &str, values: &[String], max: usize| {
            let mut set = BTreeSet::new();
            for (i, value) in values.iter().enumerate() {
                match Label::parse(value) {
                    Ok(label) => {
                        set.insert(label);
                    }
                    Err(message) => errors.push(FieldError::new(format!("/{field}/{i}"), message)),
                }
            }
            if set.len() > max {
                errors.push(FieldError::new(
                    format!("/{field}"),
                    format!("at most {max} {field}, not {}", set.len()),
                ));
            }
            set
        };
        let categories = labels("categories", categories, Self::MAX_CATEGORIES);
        let tags = labels("tags", tags, Self::MAX_TAGS);
        if errors.is_empty() {
            Ok(Self { categories, tags })
        } else {
            Err(errors)
        }
    }

    pub fn categories(&self) -> impl Iterator<Item = &str> {
        self.categories.iter().map(Label::as_str)
    }

    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(Label::as_str)
    }
}

impl<'de> Deserialize<'de> for Classification {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            categories: Vec<String>,
            tags: Vec<String>,
        }
        let raw = Raw::deserialize(deserializer)?;
        Classification::parse(&raw.categories, &raw.tags).map_err(|errors| {
            let detail: Vec<String> = errors.iter().map(ToString::to_string).collect();
            serde::de::Error::custom(format!("invalid classification: {}", detail.join("; ")))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum RegistryCommand {
    PublishVersion {
        manifest: Manifest,
        #[serde(default)]
        release_notes: Option<String>,
    },
    /// Withdraws a version from the marketplace; nothing installed is touched.
    YankVersion {
        version: semver::Version,
        reason: String,
    },
    DeprecateVersion {
        version: semver::Version,
        message: String,
    },
    Classify {
        classification: Classification,
    },
    /// Shows the plugin as verified in the marketplace, or stops showing it so.
    SetVerification {
        verified: bool,
        #[serde(default)]
        note: Option<String>,
    },
    /// One review per reviewer and plugin: a second one replaces the first.
    SubmitReview {
        /// The subject of the reviewer's token.
        reviewer: String,
        /// The tenant whose admin the reviewer is; none for a super admin.
        #[serde(default)]
        reviewer_tenant: Option<TenantId>,
        rating: Rating,
        #[serde(default)]
        comment: Option<ReviewComment>,
    },
}

impl RegistryCommand {
    /// The command's stable name in records, logs, metrics and rejections.
    pub fn command_type(&self) -> &'static str {
        match self {
            RegistryCommand::PublishVersion { .. } => "registry.publish-version",
            RegistryCommand::YankVersion { .. } => "registry.yank-version",
            RegistryCommand::DeprecateVersion { .. } => "registry.deprecate-version",
            RegistryCommand::Classify { .. } => "registry.classify",
            RegistryCommand::SetVerification { .. } => "registry.set-verification",
            RegistryCommand::SubmitReview { .. } => "registry.submit-review",
        }
    }
}

/// What became of a published version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishedVersion {
    pub yanked: bool,
    pub deprecated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub rating: u8,
    pub comment: Option<String>,
}

/// The average of the reviews' ratings, and how many there are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatingSummary {
    pub average: f64,
    pub count: usize,
}

/// What the command side knows of a plugin's registry entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryEntry {
    /// Published versions; two versions that differ only in build metadata are one.
    versions: BTreeMap<semver::Version, PublishedVersion>,
    categories: Vec<String>,
    tags: Vec<String>,
    /// A super admin vouches for the plugin in the marketplace.
    verified: bool,
    /// The current review of each reviewer.
    reviews: BTreeMap<String, Review>,
}

impl RegistryEntry {
    /// The published version that `version` names, by semver precedence.
    pub fn version(&self, version: &semver::Version) -> Option<&PublishedVersion> {
        self.versions
            .iter()
            .find(|(published, _)| published.cmp_precedence(version).is_eq())
            .map(|(_, state)| state)
    }

    pub fn rating(&self) -> Option<RatingSummary> {
        let count = self.reviews.len();
        if count == 0 {
            return None;
        }
        let total: u32 = self.reviews.values().map(|r| u32::from(r.rating)).sum();
        Some(RatingSummary {
            average: f64::from(total) / count as f64,
            count,
        })
    }

    pub fn decide(
        &self,
        id: &PluginId,
        command: &RegistryCommand,
        directory: &Directory,
    ) -> Result<Vec<RegistryEvent>, Rejection> {
        let plugin_id = id.as_str().to_owned();
        let not_registered = || {
            Rejection::new(
                Reason::PluginNotFound,
                format!("no plugin `{id}` is registered"),
            )
        };
        match command {
            RegistryCommand::PublishVersion {
                manifest,
                release_notes,
            } => {
                let listing = directory.plugin(id).ok_or_else(not_registered)?;
                if manifest.id != *id {
                    return Err(Rejection::invalid(
                        Reason::InvalidCommand,
                        vec![FieldError::new(
                            "/manifest/id",
                            format!("the manifest is for `{}`, not `{id}`", manifest.id),
                        )],
                    ));
                }
                let version = &manifest.version;
                if self.version(version).is_some() {
                    return Err(Rejection::new(
                        Reason::VersionAlreadyPublished,
                        format!("`{id}` {version} is published already"),
                    ));
                }
                // The registered version came with its manifest at registration; a second
                // manifest for it would make the version mean two things.
                if listing.version.cmp_precedence(version).is_eq() {
                    return Err(Rejection::new(
                        Reason::VersionAlreadyRegistered,
                        format!("`{id}` was registered in version {version}"),
                    ));
                }
                Ok(vec![RegistryEvent::VersionPublished(VersionPublished {
                    plugin_id,
                    version: version.to_string(),
                    manifest: manifest.document().to_string(),
                    release_notes: release_notes
                        .as_deref()
                        .map(str::trim)
                        .filter(|notes| !notes.is_empty())
                        .map(str::to_owned),
                })])
            }
            RegistryCommand::YankVersion { version, reason } => {
                let (version, published) = self.published(id, version)?;
                if published.yanked {
                    return Err(Rejection::new(
                        Reason::VersionAlreadyYanked,
                        format!("`{id}` {version} is yanked already"),
                    ));
                }
                Ok(vec![RegistryEvent::VersionYanked(VersionYanked {
                    plugin_id,
                    version: version.to_string(),
                    reason: required_text("/reason", reason)?,
                })])
            }
            RegistryCommand::DeprecateVersion { version, message } => {
                let (version, published) = self.published(id, version)?;
                if published.yanked {
                    return Err(Rejection::new(
                        Reason::VersionYanked,
                        format!("`{id}` {version} is yanked: there is nothing left to deprecate"),
                    ));
                }
                if published.deprecated {
                    return Err(Rejection::new(
                        Reason::VersionAlreadyDeprecated,
                        format!("`{id}` {version} is deprecated already"),
                    ));
                }
                Ok(vec![RegistryEvent::VersionDeprecated(VersionDeprecated {
                    plugin_id,
                    version: version.to_string(),
                    message: required_text("/message", message)?,
                })])
            }
            RegistryCommand::Classify { classification } => {
                directory.plugin(id).ok_or_else(not_registered)?;
                let categories: Vec<String> =
                    classification.categories().map(str::to_owned).collect();
                let tags: Vec<String> = classification.tags().map(str::to_owned).collect();
                if categories == self.categories && tags == self.tags {
                    return Ok(vec![]);
                }
                Ok(vec![RegistryEvent::PluginClassified(PluginClassified {
                    plugin_id,
                    categories,
                    tags,
                })])
            }
            RegistryCommand::SetVerification { verified, note } => {
                directory.plugin(id).ok_or_else(not_registered)?;
                if *verified == self.verified {
                    return Ok(vec![]);
                }
                Ok(vec![RegistryEvent::PluginVerificationChanged(
                    PluginVerificationChanged {
                        plugin_id,
                        verified: *verified,
                        note: note
                            .as_deref()
                            .map(str::trim)
                            .filter(|note| !note.is_empty())
                            .map(str::to_owned),
                    },
                )])
            }
            RegistryCommand::SubmitReview {
                reviewer,
                reviewer_tenant,
                rating,
                comment,
            } => {
                // A tenant that is not active changes nothing, its admins' reviews included;
                // a tenant the log does not know is managed elsewhere and not ours to judge.
                let status = reviewer_tenant
                    .and_then(|tenant| directory.tenant(tenant))
                    .map(|listing| listing.status);
                if let Some(status @ (TenantStatus::Suspended | TenantStatus::Deleted)) = status {
                    return Err(Rejection::new(
                        Reason::TenantNotActive,
                        format!(
                            "the reviewer's tenant is {}: its admins review nothing until it is active",
                            status.as_str()
                        ),
                    ));
                }
                directory.plugin(id).ok_or_else(not_registered)?;
                let reviewer = required_text("/reviewer", reviewer)?;
                let review = Review {
                    rating: rating.stars(),
                    comment: comment.as_ref().map(|c| c.as_str().to_owned()),
                };
                let rating = i32::from(review.rating);
                Ok(match self.reviews.get(&reviewer) {
                    Some(given) if *given == review => vec![],
                    Some(_) => vec![RegistryEvent::ReviewRevised(ReviewRevised {
                        plugin_id,
                        reviewer,
                        rating,
                        comment: review.comment,
                    })],
                    None => vec![RegistryEvent::ReviewSubmitted(ReviewSubmitted {
                        plugin_id,
                        reviewer,
                        rating,
                        comment: review.comment,
                    })],
                })
            }
        }
    }

    /// The published version that `version` names, spelt as it was published (build metadata
    /// included), so that events about it name the same version as its publication.
    fn published(
        &self,
        id: &PluginId,
        version: &semver::Version,
    ) -> Result<(&semver::Version, &PublishedVersion), Rejection> {
        self.versions
            .iter()
            .find(|(published, _)| published.cmp_precedence(version).is_eq())
            .ok_or_else(|| {
                Rejection::new(
                    Reason::VersionNotFound,
                    format!("`{id}` {version} was never published"),
                )
            })
    }

    fn version_mut(&mut self, version: &str) -> Option<&mut PublishedVersion> {
        let version = semver::Version::parse(version).ok()?;
        self.versions
            .iter_mut()
            .find(|(published, _)| published.cmp_precedence(&version).is_eq())
            .map(|(_, state)| state)
    }

    pub fn evolve(mut self, event: &RegistryEvent) -> Self {
        match event {
            RegistryEvent::VersionPublished(e) => {
                // The log is an edge: a version that does not parse is skipped, not trusted.
                if let Ok(version) = semver::Version::parse(&e.version) {
                    self.versions.insert(version, PublishedVersion::default());
                }
            }
            RegistryEvent::VersionYanked(e) => {
                if let Some(published) = self.version_mut(&e.version) {
                    published.yanked = true;
                }
            }
            RegistryEvent::VersionDeprecated(e) => {
                if let Some(published) = self.version_mut(&e.version) {
                    published.deprecated = true;
                }
            }
            RegistryEvent::PluginClassified(e) => {
                self.categories = e.categories.clone();
                self.tags = e.tags.clone();
            }
            RegistryEvent::PluginVerificationChanged(e) => self.verified = e.verified,
            RegistryEvent::ReviewSubmitted(ReviewSubmitted {
                reviewer,
                rating,
                comment,
                ..
            })
            | RegistryEvent::ReviewRevised(ReviewRevised {
                reviewer,
                rating,
                comment,
                ..
            }) => {
                if let Ok(rating) = Rating::parse(i64::from(*rating)) {
                    self.reviews.insert(
                        reviewer.clone(),
                        Review {
                            rating: rating.stars(),
                            comment: comment.clone(),
                        },
                    );
                }
            }
            // Reservations share the topic but are other aggregates.
            RegistryEvent::NamesReserved(_) | RegistryEvent::NamesReleased(_) => {}
        }
        self
    }
}

#[cfg(test)]
mod tests;

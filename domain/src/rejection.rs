//! Why a command was refused, in terms an API can turn into an RFC 7807 problem.

use serde::{Deserialize, Serialize};

use crate::directory::UnmetDependency;

/// One problem with one field of the input, located by JSON pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// What a refusal means to a caller; HTTP maps each kind to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectionKind {
    /// The input is malformed or breaks a rule about its own content.
    Invalid,
    /// The aggregate the command addresses does not exist.
    NotFound,
    /// The aggregate exists, or its state does not allow the command.
    Conflict,
}

/// Declares every reason once: its kind, its slug (the problem type is
/// `https://plexica.io/problems/{slug}`) and its title, the same for every occurrence.
macro_rules! reasons {
    ( $( $kind:ident { $( $(#[$doc:meta])* $reason:ident = $slug:literal, $title:literal; )* } )* ) => {
        /// Why a command was refused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Reason {
            $( $( $(#[$doc])* $reason, )* )*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$( $( Reason::$reason, )* )*];

            pub fn kind(self) -> RejectionKind {
                match self {
                    $( $( Reason::$reason => RejectionKind::$kind, )* )*
                }
            }

            /// Names the problem type: `https://plexica.io/problems/{slug}`.
            pub fn slug(self) -> &'static str {
                match self {
                    $( $( Reason::$reason => $slug, )* )*
                }
            }

            pub fn title(self) -> &'static str {
                match self {
                    $( $( Reason::$reason => $title, )* )*
                }
            }
        }
    };
}

reasons! {
    Invalid {
        InvalidCommand = "invalid-command", "Invalid command";
        /// The command record on the log does not parse: not a client's doing.
        MalformedCommandRecord = "malformed-command-record", "Malformed command record";
        ManifestForAnotherPlugin = "manifest-for-another-plugin", "Manifest is for another plugin";
        UpdateForAnotherPlugin = "update-for-another-plugin", "Update is for another plugin";
        InvalidPluginConfiguration = "invalid-plugin-configuration", "Invalid plugin configuration";
    }
    NotFound {
        PluginNotFound = "plugin-not-found", "Plugin not found";
        /// A lifecycle command for a plugin id the log has never registered.
        PluginNotRegistered = "plugin-not-registered", "Plugin not registered";
        TenantNotFound = "tenant-not-found", "Tenant not found";
        VersionNotFound = "version-not-found", "Version not found";
        /// Also what a tenant admin is told of another tenant's endpoint.
        WebhookNotFound = "webhook-not-found", "Webhook not found";
    }
    Conflict {
        PluginAlreadyRegistered = "plugin-already-registered", "Plugin already registered";
        /// The plugin's lifecycle does not allow the command now; `allowed` says what would be.
        NotAllowedInPluginStatus = "not-allowed-in-plugin-status", "Command not allowed in the plugin's status";
        RecordedVersionNotSemantic = "recorded-version-not-semantic", "Recorded version is not semantic";
        UpdateDoesNotRaiseVersion = "update-does-not-raise-version", "Update does not raise the version";
        InstallStepAlreadyCompleted = "install-step-already-completed", "Install step already completed";
        InstallStepOutOfOrder = "install-step-out-of-order", "Install step out of order";
        InstallAlreadyComplete = "install-already-complete", "Install already complete";
        DependencyCycle = "dependency-cycle", "Dependency cycle";
        /// `missing` lists them.
        DependenciesNotInstalled = "dependencies-not-installed", "Dependencies not installed";
        /// `missing` lists them.
        DependenciesNotActive = "dependencies-not-active", "Dependencies not active";
        TenantAlreadyExists = "tenant-already-exists", "Tenant already exists";
        /// The tenant's lifecycle does not allow the command now; `allowed` says what would be.
        NotAllowedInTenantStatus = "not-allowed-in-tenant-status", "Command not allowed in the tenant's status";
        TenantNotActive = "tenant-not-active", "Tenant not active";
        PluginNotActive = "plugin-not-active", "Plugin not active";
        PluginAlreadyEnabled = "plugin-already-enabled", "Plugin already enabled";
        PluginNotEnabled = "plugin-not-enabled", "Plugin not enabled";
        PluginConfigurationSchemaUnusable = "plugin-configuration-schema-unusable", "Plugin configuration schema unusable";
        PermissionKeyTaken = "permission-key-taken", "Permission key already taken";
        TenantSlugTaken = "tenant-slug-taken", "Slug already taken";
        VersionAlreadyPublished = "version-already-published", "Version already published";
        VersionAlreadyRegistered = "version-already-registered", "Version already registered";
        VersionAlreadyYanked = "version-already-yanked", "Version already yanked";
        VersionYanked = "version-yanked", "Version yanked";
        VersionAlreadyDeprecated = "version-already-deprecated", "Version already deprecated";
        WebhookAlreadyRegistered = "webhook-already-registered", "Webhook already registered";
        WrongAggregate = "wrong-aggregate", "Command sent to the wrong aggregate";
        /// Sent longer ago than decisions are remembered: deciding it could contradict what
        /// its client was told.
        CommandExpired = "command-expired", "Command expired";
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {detail}", reason.title())]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The commands the aggregate accepts in its current state, when the command was refused
    /// for arriving in the wrong one, so that a client can tell what it may do instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// The dependencies that kept the command from being accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<UnmetDependency>,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            errors: Vec::new(),
            allowed: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// A refusal of the input's content, field by field.
    pub fn invalid(reason: Reason, errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(reason, detail)
        }
    }

    pub fn kind(&self) -> RejectionKind {
        self.reason.kind()
    }

    pub fn title(&self) -> &'static str {
        self.reason.title()
    }

    /// Lists the dependencies that are not there.
    pub fn with_missing(mut self, missing: Vec<UnmetDependency>) -> Self {
        self.missing = missing;
        self
    }

    /// Names the commands that the aggregate's state would have accepted.
    pub fn with_allowed<S: Into<String>>(mut self, allowed: impl IntoIterator<Item = S>) -> Self {
        self.allowed = allowed.into_iter().map(Into::into).collect();
        self
    }
}

/// A reason or error text: trimmed, and not blank, since a reader has nothing else to go by.
pub(crate) fn required_text(pointer: &str, text: &str) -> Result<String, Rejection> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err(Rejection::invalid(
            Reason::InvalidCommand,
            vec![FieldError::new(pointer, "must not be blank")],
        ))
    } else {
        Ok(trimmed.to_owned())
    }
}

/// Whether `s` is kebab-case (a-z, 0-9, single dashes) starting with a letter, with a length in
/// `lengths`: the shape of every name that also serves as a route, topic or schema name.
pub(crate) fn is_kebab_case(s: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    let parts_are_words = s.split('-').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    let starts_with_letter = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    lengths.contains(&s.len()) && parts_are_words && starts_with_letter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slug_and_title() {
        let mut slugs: Vec<&str> = Reason::ALL.iter().map(|r| r.slug()).collect();
        let mut titles: Vec<&str> = Reason::ALL.iter().map(|r| r.title()).collect();
        for list in [&mut slugs, &mut titles] {
            list.sort_unstable();
            list.dedup();
            assert_eq!(list.len(), Reason::ALL.len(), "{list:?}");
        }
        for reason in Reason::ALL {
            assert!(is_kebab_case(reason.slug(), 3..=64), "{reason:?}");
            // The slug is the reason's serialised name: one name in logs and in problems.
            let json = serde_json::to_string(reason).expect("serialises");
            assert_eq!(json, format!("\"{}\"", reason.slug()));
        }
    }
}

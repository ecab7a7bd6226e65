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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{title}: {detail}")]
pub struct Rejection {
    pub kind: RejectionKind,
    pub title: String,
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
    pub fn conflict(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: RejectionKind::Conflict,
            title: title.into(),
            detail: detail.into(),
            errors: Vec::new(),
            allowed: Vec::new(),
            missing: Vec::new(),
        }
    }

    pub fn not_found(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: RejectionKind::NotFound,
            title: title.into(),
            detail: detail.into(),
            errors: Vec::new(),
            allowed: Vec::new(),
            missing: Vec::new(),
        }
    }

    pub fn invalid(title: impl Into<String>, errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            kind: RejectionKind::Invalid,
            title: title.into(),
            detail,
            errors,
            allowed: Vec::new(),
            missing: Vec::new(),
        }
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
            "Invalid command",
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

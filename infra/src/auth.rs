//! Bearer tokens: HS256 JWTs with the claims `sub`, `roles` and `tenant_id`.
//!
//! The platform trusts a token it can verify with the shared secret; issuing tokens belongs to
//! an identity provider in production, and to `cargo xtask token` on a developer machine.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The secret used when `PLEXICA_JWT_SECRET` is not set. Anyone can read it here, so a service
/// started with it says so loudly at start-up.
pub const DEV_JWT_SECRET: &str = "plexica-dev-secret-do-not-use-in-production";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    SuperAdmin,
    TenantAdmin,
    /// A plugin's own identity (`sub` = `plugin:{id}`), which the platform gives each plugin it
    /// runs: it registers the schemas of the plugin's own topic and grants nothing else.
    Plugin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "super_admin" => Ok(Role::SuperAdmin),
            "tenant_admin" => Ok(Role::TenantAdmin),
            "plugin" => Ok(Role::Plugin),
            other => Err(format!(
                "unknown role `{other}`; expected super_admin, tenant_admin or plugin"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub exp: i64,
    pub iat: i64,
}

impl Claims {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The plugin whose own identity this is, if it is a plugin's.
    pub fn plugin(&self) -> Option<&str> {
        self.has_role(Role::Plugin)
            .then(|| self.sub.strip_prefix(PLUGIN_SUBJECT_PREFIX))
            .flatten()
            .filter(|id| !id.is_empty())
    }
}

/// A plugin's identity is `sub` = `plugin:{id}` with the `plugin` role.
pub const PLUGIN_SUBJECT_PREFIX: &str = "plugin:";

/// How far the issuer's clock may run ahead of or behind ours: a minute covers the drift of
/// NTP-synchronised hosts without letting an expired token live on.
pub const CLOCK_LEEWAY_SECONDS: u64 = 60;

/// Why a token was refused. The messages name the fault, never the parser's internals.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid yet (`nbf` or `iat` is in the future)")]
    Premature,
    #[error("the bearer token's signature does not verify")]
    BadSignature,
    #[error("the bearer token is not a Plexica token (malformed, or claims missing or unknown)")]
    Malformed,
    #[error(
        "the bearer token's `sub` or `tenant_id` holds text that cannot be stored (NUL, U+0000)"
    )]
    Unstorable,
    #[error("the token could not be signed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match error.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::Premature,
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::BadSignature,
            _ => TokenError::Malformed,
        }
    }
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(<secret>)")
    }
}

impl TokenKeys {
    pub fn from_secret(secret: &str) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// Issues a token valid for `ttl` from now.
    pub fn issue(
        &self,
        subject: &str,
        roles: Vec<Role>,
        tenant_id: Option<String>,
        ttl: chrono::Duration,
    ) -> Result<String, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            roles,
            tenant_id,
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims: for tests that present tokens an identity provider might send.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(TokenError::Signing)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_nbf = true;
        validation.leeway = CLOCK_LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?.claims;
        let leeway = i64::try_from(CLOCK_LEEWAY_SECONDS).unwrap_or(i64::MAX);
        if claims.iat > chrono::Utc::now().timestamp().saturating_add(leeway) {
            return Err(TokenError::Premature);
        }
        // Both travel into the log (an event's `user-id` and `tenant-id` headers, the
        // history's actor, a review's reviewer): text Postgres cannot store would be accepted
        // and then lost by every read model.
        let storable = |text: &str| crate::edge::storable(text);
        if !storable(&claims.sub) || !claims.tenant_id.as_deref().is_none_or(storable) {
            return Err(TokenError::Unstorable);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_with_the_secret_that_signed_it_only() {
        let keys = TokenKeys::from_secret("one");
        let token = keys
            .issue(
                "alice",
                vec![Role::TenantAdmin],
                Some("t-1".into()),
                chrono::Duration::hours(1),
            )
            .expect("signing works");
        let claims = keys.verify(&token).expect("own token verifies");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.roles, vec![Role::TenantAdmin]);
        assert_eq!(claims.tenant_id.as_deref(), Some("t-1"));
        assert!(TokenKeys::from_secret("two").verify(&token).is_err());
    }

    #[test]
    fn claims_postgres_cannot_store_are_rejected() {
        let keys = TokenKeys::from_secret("one");
        for (subject, tenant) in [("a\u{0}", None), ("a", Some("t\u{0}".to_owned()))] {
            let token = keys
                .issue(
                    subject,
                    vec![Role::SuperAdmin],
                    tenant,
                    chrono::Duration::hours(1),
                )
                .expect("signing works");
            assert!(matches!(keys.verify(&token), Err(TokenError::Unstorable)));
        }
    }

    #[test]
    fn an_expired_token_is_rejected() {
        let keys = TokenKeys::from_secret("one");
        let token = keys
            .issue(
                "bob",
                vec![Role::SuperAdmin],
                None,
                chrono::Duration::hours(-2),
            )
            .expect("signing works");
        assert!(keys.verify(&token).is_err());
    }
}

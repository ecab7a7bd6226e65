//! Where a tenant's plugin data lives: the Postgres schema `tenant_<uuid without dashes>`.
//!
//! Computed here once, for the platform (plugin-runtime creates and migrates the schema) and for
//! the plugins' SDK (a request's transaction sets its `search_path` to it).

use std::fmt;

use uuid::Uuid;

/// The name of tenant's schema of plugin data: `tenant_` and the tenant id's 32 hex digits.
/// Only hex digits and `_`, so it is a safe SQL identifier without quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantSchema(Uuid);

impl TenantSchema {
    /// The schema of tenant `tenant`.
    pub fn of(tenant: Uuid) -> Self {
        Self(tenant)
    }

    /// The tenant whose schema this is.
    pub fn tenant(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TenantSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant_{}", self.0.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_tenant_and_the_id_without_dashes() {
        let tenant = Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(
            TenantSchema::of(tenant).to_string(),
            "tenant_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"
        );
        assert_eq!(TenantSchema::of(tenant).tenant(), tenant);
    }
}

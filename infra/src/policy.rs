//! Who may read and write what: the one policy that REST, GraphQL, subscriptions and the
//! admin routes all ask, so that no two of them can disagree.

use uuid::Uuid;

use crate::auth::{Claims, Role};

/// The caller as the policies see it, parsed once from a verified token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    SuperAdmin,
    /// A tenant admin whose token names the tenant (`tenant_id`, any letter case).
    TenantAdmin {
        tenant: Uuid,
    },
    /// A valid token that grants none of these accesses: no role, a plugin's own identity
    /// (see [`may_register_schema`]), or a tenant admin without a tenant.
    Nobody,
}

impl Principal {
    pub fn of(claims: &Claims) -> Self {
        if claims.has_role(Role::SuperAdmin) {
            return Principal::SuperAdmin;
        }
        let tenant = claims
            .tenant_id
            .as_deref()
            .and_then(|id| Uuid::parse_str(id).ok());
        match tenant {
            Some(tenant) if claims.has_role(Role::TenantAdmin) => Principal::TenantAdmin { tenant },
            _ => Principal::Nobody,
        }
    }

    /// The tenant whose admin this is, if any.
    pub fn tenant(self) -> Option<Uuid> {
        match self {
            Principal::TenantAdmin { tenant } => Some(tenant),
            _ => None,
        }
    }
}

/// What a request does, in the terms the policy decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read the plugin catalogue and registry (plugins, versions, reviews, search, their
    /// change feeds): every admin.
    ReadRegistry,
    /// Read what spans tenants: the tenant list, command outcomes, event history of the
    /// platform, dead letters, projections: super admins.
    ReadPlatform,
    /// Read one tenant and what belongs to it: super admins and that tenant's admins.
    ReadTenant(Uuid),
    /// Change the platform: plugins, tenants, registry curation, schemas: super admins.
    AdministerPlatform,
    /// Change the caller's own tenant (its plugins and their configuration): its admins.
    AdministerOwnTenant,
    /// Write the caller's own review of a plugin: every admin.
    Review,
    /// Register and manage webhook endpoints: super admins (platform endpoints, and any
    /// tenant's) and tenant admins (their own tenant's; which endpoint is whose is the
    /// endpoint aggregate's to decide).
    ManageWebhooks,
}

/// Whether `claims` may register a schema under `subject`: a super admin under any; a plugin
/// only under its own topic's subjects (`{topic}-{record}`, the topic-record name strategy),
/// `plugin_topic` naming a plugin's topic.
pub fn may_register_schema(
    claims: &crate::auth::Claims,
    subject: &str,
    plugin_topic: impl Fn(&str) -> String,
) -> Result<(), Denied> {
    if authorize(Principal::of(claims), Access::AdministerPlatform).is_ok() {
        return Ok(());
    }
    let own = claims.plugin().is_some_and(|id| {
        subject
            .strip_prefix(&plugin_topic(id))
            .is_some_and(|record| record.len() > 1 && record.starts_with('-'))
    });
    if own {
        Ok(())
    } else {
        Err(Denied(
            "registering a schema needs the `super_admin` role; a plugin registers only the subjects of its own topic (`plugin.{id}-<record>`)",
        ))
    }
}

/// Why a request was refused, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub &'static str);

/// Whether `principal` may do `access`.
pub fn authorize(principal: Principal, access: Access) -> Result<(), Denied> {
    use Access::*;
    use Principal::*;
    let allowed = match (access, principal) {
        // A super admin administers no tenant of their own.
        (AdministerOwnTenant, SuperAdmin) => false,
        (_, SuperAdmin) => true,
        (ReadRegistry | Review | AdministerOwnTenant | ManageWebhooks, TenantAdmin { .. }) => true,
        (ReadTenant(id), TenantAdmin { tenant }) => id == tenant,
        (ReadPlatform | AdministerPlatform, TenantAdmin { .. }) => false,
        (_, Nobody) => false,
    };
    if allowed {
        return Ok(());
    }
    Err(Denied(match access {
        ReadRegistry | Review | ManageWebhooks => {
            "this needs the `super_admin` role, or `tenant_admin` with a `tenant_id`"
        }
        ReadPlatform | AdministerPlatform => "this action needs the `super_admin` role",
        ReadTenant(_) => "this tenant is not yours to read",
        AdministerOwnTenant => {
            "this action needs a `tenant_admin` token naming the tenant (`tenant_id`)"
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy table: every access under every kind of principal.
    #[test]
    fn the_policy_table() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let principals = [
            Principal::SuperAdmin,
            Principal::TenantAdmin { tenant: a },
            Principal::TenantAdmin { tenant: b },
            Principal::Nobody,
        ];
        // Rows: access; columns: super admin, admin of A, admin of B, nobody.
        let table = [
            (Access::ReadRegistry, [true, true, true, false]),
            (Access::ReadPlatform, [true, false, false, false]),
            (Access::ReadTenant(a), [true, true, false, false]),
            (Access::AdministerPlatform, [true, false, false, false]),
            (Access::AdministerOwnTenant, [false, true, true, false]),
            (Access::Review, [true, true, true, false]),
            (Access::ManageWebhooks, [true, true, true, false]),
        ];
        for (access, expected) in table {
            for (principal, allowed) in principals.iter().zip(expected) {
                assert_eq!(
                    authorize(*principal, access).is_ok(),
                    allowed,
                    "{access:?} by {principal:?}"
                );
            }
        }
    }

    #[test]
    fn a_plugin_registers_schemas_only_under_its_own_topic() {
        let claims = |sub: &str, roles: Vec<Role>| Claims {
            sub: sub.into(),
            roles,
            tenant_id: None,
            exp: 0,
            iat: 0,
        };
        let topic = |id: &str| format!("t1.plugin.{id}");
        let crm = claims("plugin:crm", vec![Role::Plugin]);
        assert!(may_register_schema(&crm, "t1.plugin.crm-com.acme.DealWon", topic).is_ok());
        for subject in [
            "t1.plugin.crm-",
            "t1.plugin.crmx-com.acme.DealWon",
            "t1.plugin.billing-com.acme.Invoice",
            "t1.core.plugins-com.plexica.events.plugin.PluginInstalled",
            "plugin.crm-com.acme.DealWon",
        ] {
            assert!(
                may_register_schema(&crm, subject, topic).is_err(),
                "{subject}"
            );
        }
        let pretender = claims("plugin:crm", vec![Role::TenantAdmin]);
        assert!(may_register_schema(&pretender, "t1.plugin.crm-x.Y", topic).is_err());
        let admin = claims("alice", vec![Role::SuperAdmin]);
        assert!(may_register_schema(&admin, "anything-x.Y", topic).is_ok());
        assert_eq!(
            Principal::of(&crm),
            Principal::Nobody,
            "a plugin administers nothing"
        );
    }

    #[test]
    fn a_tenant_id_is_read_in_any_letter_case() {
        let claims = Claims {
            sub: "x".into(),
            roles: vec![Role::TenantAdmin],
            tenant_id: Some("0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B".into()),
            exp: 0,
            iat: 0,
        };
        assert_eq!(
            Principal::of(&claims).tenant(),
            Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").ok()
        );
        let without_tenant = Claims {
            tenant_id: None,
            ..claims
        };
        assert_eq!(Principal::of(&without_tenant), Principal::Nobody);
    }
}

//! Creating a tenant is a small process across two aggregates: its slug, unique across
//! tenants, is reserved first on `reservation:tenant-slugs` (the one aggregate that
//! serialises every claim on a slug); then the tenant is created; and if the tenant is
//! refused, the slug this request reserved for it goes back.

use axum::http::HeaderMap;
use domain::Command;
use domain::reservation::{ReservationCommand, ReservationScope};
use domain::tenant::{TenantCommand, TenantId, TenantName, TenantSlug};
use event_schemas::commands::CommandOutcome;
use infra::actor::Actor;
use infra::http::Problem;
use uuid::Uuid;

use super::replies::submit_command;
use crate::bus::{CommandBus, Submission};

/// Namespace of the tenant ids derived from an Idempotency-Key (UUID v5).
const TENANT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8a1f_6c2e_52d4_4f0e_9b7a_1d3c_5e6f_7a80);

/// The id of the tenant a request creates: the one it names, else one derived from its
/// Idempotency-Key, so that a retry names the same tenant (its slug, reserved by the first
/// attempt, would look taken otherwise), else a new one.
pub(super) fn tenant_id(actor: &Actor, named: Option<Uuid>, key: Option<&str>) -> TenantId {
    TenantId(match (named, key) {
        (Some(id), _) => id,
        (None, Some(key)) => Uuid::new_v5(
            &TENANT_ID_NAMESPACE,
            format!("{}\n{key}", actor.0.sub).as_bytes(),
        ),
        (None, None) => Uuid::now_v7(),
    })
}

/// What became of a creation.
pub(super) enum Creation {
    /// The slug is another tenant's: nothing was created.
    SlugTaken(CommandOutcome),
    /// The slug's reservation is in the log but was not decided in time.
    SlugPending,
    /// The tenant's own command, decided or pending.
    Submitted(Submission),
}

pub(super) async fn create(
    bus: &CommandBus,
    actor: &Actor,
    headers: &HeaderMap,
    id: TenantId,
    slug: TenantSlug,
    name: TenantName,
) -> Result<Creation, Problem> {
    let reserve = Command::Reservation {
        scope: ReservationScope::TenantSlugs,
        command: ReservationCommand::Reserve {
            owner: id.to_string(),
            names: vec![slug.as_str().to_owned()],
        },
    };
    let newly_reserved = match submit_command(bus, actor, headers, &reserve, Some("slug")).await? {
        Submission::Decided(outcome) if outcome.accepted => !outcome.events.is_empty(),
        Submission::Decided(refused) => return Ok(Creation::SlugTaken(refused)),
        Submission::Pending { .. } => return Ok(Creation::SlugPending),
    };
    let slug_name = slug.as_str().to_owned();
    let command = Command::Tenant {
        id,
        command: TenantCommand::Create { slug, name },
    };
    let submission = submit_command(bus, actor, headers, &command, None).await?;
    if let Submission::Decided(refused) = &submission
        && !refused.accepted
        && newly_reserved
    {
        // The tenant was not created (its id exists): the slug this request reserved for it
        // goes back, or it would be held for good by a tenant that never took it.
        let unreserve = Command::Reservation {
            scope: ReservationScope::TenantSlugs,
            command: ReservationCommand::Unreserve {
                owner: id.to_string(),
                names: vec![slug_name],
            },
        };
        submit_command(bus, actor, headers, &unreserve, Some("unreserve")).await?;
    }
    Ok(Creation::Submitted(submission))
}

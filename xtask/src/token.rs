//! `cargo xtask token`: a development bearer token, signed like the platform verifies it.

use anyhow::{Context, Result, bail};
use infra::auth::{Role, TokenKeys};

use crate::settings::jwt_secret;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The role the token grants
    #[arg(long, value_name = "super_admin|tenant_admin")]
    role: Role,
    /// The tenant a tenant_admin acts for (required with tenant_admin)
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// The token's subject (the user it stands for)
    #[arg(long, value_name = "NAME", default_value = "developer")]
    subject: String,
    /// Validity in hours
    #[arg(long, value_name = "N", default_value_t = 12)]
    hours: i64,
}

pub fn run(args: &Args) -> Result<()> {
    if args.role == Role::TenantAdmin && args.tenant.is_none() {
        bail!("a tenant_admin token needs the tenant it acts for: add --tenant ID");
    }
    if args.hours <= 0 {
        bail!("--hours must be at least 1");
    }
    let (secret, is_default) = jwt_secret();
    if is_default {
        warn_default_secret();
    }
    let token = issue(
        &secret,
        &args.subject,
        args.role,
        args.tenant.clone(),
        args.hours,
    )?;
    println!("{token}");
    Ok(())
}

/// A signed token for `role`.
pub fn issue(
    secret: &str,
    subject: &str,
    role: Role,
    tenant: Option<String>,
    hours: i64,
) -> Result<String> {
    TokenKeys::from_secret(secret)
        .issue(subject, vec![role], tenant, chrono::Duration::hours(hours))
        .context("cannot sign the token")
}

pub fn warn_default_secret() {
    eprintln!(
        "!!! WARNING: PLEXICA_JWT_SECRET is not set: this token is signed with the PUBLIC\n\
         !!! development secret. Anyone can mint such tokens: never let a deployment accept\n\
         !!! them. Set PLEXICA_JWT_SECRET to the secret the platform you call uses."
    );
}

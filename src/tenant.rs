//! The session's tenant, the setting `fractality.user_id`: read from the setting directly, and
//! through `fractality.current_user_id()` (`sql/queries/session_tenant.sql`) only when it does
//! not parse as a uuid in its common forms, so that PostgreSQL's own `uuid` input accepts its
//! other forms and rejects the rest (22P02), as row-level security's policy reads it.

use pgrx::Uuid;

use crate::errors::FractalityError;
use crate::graph::input::parse_uuid;
use crate::spi::{self, query, Query};

const SESSION_TENANT: Query<'static> = query!("session_tenant", []);

/// The tenant of the session, or None when `fractality.user_id` is unset or empty.
pub fn current() -> Result<Option<Uuid>, FractalityError> {
    let setting = crate::gucs::user_id();
    match setting.as_ref().map(|c| c.to_string_lossy()) {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => match parse_uuid(&text) {
            Some(bytes) => Ok(Some(Uuid::from_bytes(bytes))),
            // read only (a standby has no transaction id to give)
            None => spi::connect(|| spi::one::<Uuid>(&SESSION_TENANT, &[], true)),
        },
    }
}

/// The tenant of the session, or 22004 when it is unset.
pub fn required() -> Result<Uuid, FractalityError> {
    current()?.ok_or(FractalityError::NoTenant)
}

/// The tenant of a call that reads every row the caller may see when the session has none
/// (`search_nodes`, `apply_consciousness_decay`): None for a caller whom row-level security does
/// not restrict on `fractality.<table>` (its owner, a superuser, a BYPASSRLS role), which sees
/// every tenant; 22004 for any other caller without a tenant, which would see nothing, so that
/// an empty answer does not hide a missing setting. PostgreSQL itself says whether the policy
/// applies (`check_enable_rls`, what `row_security_active()` asks).
pub fn required_where_restricted(table: &std::ffi::CStr) -> Result<Option<Uuid>, FractalityError> {
    if let Some(t) = current()? {
        return Ok(Some(t));
    }
    if restricted(table) {
        Err(FractalityError::NoTenant)
    } else {
        Ok(None)
    }
}

/// Whether row-level security restricts the caller on `fractality.<table>`, as PostgreSQL
/// decides it (`check_enable_rls`): false for its owner, a superuser, a BYPASSRLS role.
pub fn restricted(table: &std::ffi::CStr) -> bool {
    let rel = spi::relation_oid(table);
    // SAFETY: PostgreSQL's own check of a relation, inside a transaction
    rel != pgrx::pg_sys::InvalidOid
        && unsafe { pgrx::pg_sys::check_enable_rls(rel, pgrx::pg_sys::InvalidOid, true) }
            == pgrx::pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
}

/// The tenant whose rows of `fractality.<table>` a call that may be given one (`named`) writes:
/// for a caller row-level security restricts, its session's tenant, which `named` must then be
/// (22004 without a tenant; 22023 naming another, whose rows it could not write, so that the
/// call does not answer "nothing" for a wrong id); for any other caller `named` (None: every
/// tenant it sees).
pub fn scope(table: &std::ffi::CStr, named: Option<Uuid>) -> Result<Option<Uuid>, FractalityError> {
    if !restricted(table) {
        return Ok(named);
    }
    let own = required()?;
    match named {
        Some(n) if n != own => Err(FractalityError::invalid(
            "p_user_id",
            n,
            "Row-level security limits this role to the session's tenant (fractality.user_id): pass that id, or NULL.",
        )),
        _ => Ok(Some(own)),
    }
}

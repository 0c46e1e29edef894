//! Settings (`fractality.*` GUCs). Versioned application configuration belongs in
//! `fractality.configuration_store`, not here.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// `fractality.user_id`: the tenant of the session, a uuid. Row-level security shows a role that
/// is neither owner nor BYPASSRLS only the rows whose `user_id` equals it; unset, it sees nothing.
/// Applications set it per request or per transaction (`SET LOCAL fractality.user_id = '…'`).
pub static USER_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `fractality.notify`: whether changes to nodes send `pg_notify('consciousness_update', …)`.
/// On by default; bulk loads turn it off for their transaction with `SET LOCAL fractality.notify = off`.
pub static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);

pub fn init() {
    GucRegistry::define_string_guc(
        c"fractality.user_id",
        c"The tenant (user_id uuid) of this session.",
        c"Row-level security on fractality's tenant tables shows only the rows whose user_id equals this setting.",
        &USER_ID,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"fractality.notify",
        c"Send consciousness_update notifications for changes to nodes.",
        c"Turn off (SET LOCAL fractality.notify = off) for bulk loads that should not send one notification per row.",
        &NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    // Unknown fractality.* settings are typos: refuse them once the library is loaded.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"fractality".as_ptr()) };
}

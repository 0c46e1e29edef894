//! Plans kept per tenant: a query whose `$1` (the tenant) is bound into its plan as a constant,
//! so that the plan reaches the tenant's partition of `node_embeddings` alone (a generic plan
//! locks every partition when it runs) and can use a tenant's own graph (a partial HNSW index
//! whose predicate names the tenant, which only a plan made for that value can use). The query
//! is parsed through a parser hook that turns `$1` into a constant, as PL/pgSQL's hook turns its
//! variables into parameters: no value is written into the text. PostgreSQL keeps the plan
//! valid as it does any kept plan: it analyses the query again, through the same hook, when an
//! index is built or dropped or the role changes.
//!
//! The plans are kept within `fractality.tenant_plan_memory` (16 MB), the least recently used
//! going first: each holds its query tree and its plan, 20-70 KB for most queries here (a
//! search's path, its scan, recall's words), about 300 KB for `thaw`'s document. A plan made
//! again costs a little more than planning the query once for the tenant's value (the parse and
//! the analysis too), 0.1-0.2 ms for a search.

use std::cell::RefCell;

use pgrx::prelude::*;
use pgrx::Uuid;

use super::{c_text, keep, Query};
use crate::errors::FractalityError;

/// The most recently used plans are kept whatever their size: those of the call that is running
/// (a search keeps its cursor open while its call runs other queries).
const KEEP_RECENT: usize = 8;

thread_local! {
    /// Kept plans with their `$1` bound to a tenant ([`super::Query::per_tenant`]), the most
    /// recently used last.
    static TENANT_BOUND: RefCell<Vec<TenantPlan>> = const { RefCell::new(Vec::new()) };
}

/// A kept plan whose `$1` is a tenant's id, bound into the query as a constant.
struct TenantPlan {
    text: String,
    plan: pg_sys::SPIPlanPtr,
    /// The parser hook's state, the tenant with it. PostgreSQL analyses the query again with it
    /// when the plan is invalidated, so it lives as long as the plan.
    hook: Box<TenantHook>,
}

/// What the parser hook binds: the tenant for `$1`, and the type of every parameter.
struct TenantHook {
    tenant: Uuid,
    types: Vec<pg_sys::Oid>,
}

/// The parser set-up of a query bound to a tenant: its parameter references go to
/// [`tenant_param`].
#[pg_guard]
unsafe extern "C-unwind" fn tenant_parser_setup(
    pstate: *mut pg_sys::ParseState,
    arg: *mut std::ffi::c_void,
) {
    // SAFETY: the parse state being set up; arg is the plan's TenantHook
    unsafe {
        (*pstate).p_paramref_hook = Some(tenant_param);
        (*pstate).p_ref_hook_state = arg;
    }
}

/// `$1` as a constant uuid (the tenant), any other `$n` as a parameter of its type (what
/// PostgreSQL's own hook for fixed parameter types makes); NULL for a `$n` past them, which the
/// parser reports as "there is no parameter $n".
#[pg_guard]
unsafe extern "C-unwind" fn tenant_param(
    pstate: *mut pg_sys::ParseState,
    pref: *mut pg_sys::ParamRef,
) -> *mut pg_sys::Node {
    // SAFETY: the hook state tenant_parser_setup installed, alive as long as the plan; the nodes
    // are made in the parser's memory context, as the parser's own are (and copied with the
    // query tree into the plan's)
    unsafe {
        let hook = &*((*pstate).p_ref_hook_state as *const TenantHook);
        let n = (*pref).number;
        if n == 1 {
            let bytes = pg_sys::palloc(16) as *mut u8;
            std::ptr::copy_nonoverlapping(hook.tenant.as_bytes().as_ptr(), bytes, 16);
            let c = pg_sys::makeConst(
                pg_sys::UUIDOID,
                -1,
                pg_sys::InvalidOid,
                16,
                pg_sys::Datum::from(bytes),
                false,
                false,
            );
            (*c).location = (*pref).location;
            return c.cast();
        }
        let Some(&ty) = usize::try_from(n - 1).ok().and_then(|i| hook.types.get(i)) else {
            return std::ptr::null_mut();
        };
        let param: *mut pg_sys::Param =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::Param>()).cast();
        (*param).xpr.type_ = pg_sys::NodeTag::T_Param;
        (*param).paramkind = pg_sys::ParamKind::PARAM_EXTERN;
        (*param).paramid = n;
        (*param).paramtype = ty;
        (*param).paramtypmod = -1;
        (*param).paramcollid = pg_sys::get_typcollation(ty);
        (*param).location = (*pref).location;
        param.cast()
    }
}

/// The memory `plan` holds: its query's source, query trees and generic plan (once made).
///
/// # Safety
/// A kept plan of this backend.
unsafe fn plan_bytes(plan: pg_sys::SPIPlanPtr) -> usize {
    unsafe {
        let sources = pg_sys::SPI_plan_get_plan_sources(plan);
        if sources.is_null() {
            return 0;
        }
        let mut bytes = 0;
        for i in 0..(*sources).length.max(0) as usize {
            let source = (*(*sources).elements.add(i)).ptr_value as *mut pg_sys::CachedPlanSource;
            // the query trees' context is the source's child
            bytes += pg_sys::MemoryContextMemAllocated((*source).context, true);
            let gplan = (*source).gplan;
            if !gplan.is_null() {
                bytes += pg_sys::MemoryContextMemAllocated((*gplan).context, true);
            }
        }
        bytes
    }
}

/// The kept plan of `q` with its `$1` bound to `tenant`, made on first use (the least recently
/// used freed while the plans hold more than `fractality.tenant_plan_memory`).
pub(super) fn tenant_plan(
    q: &Query<'_>,
    tenant: Uuid,
) -> Result<pg_sys::SPIPlanPtr, FractalityError> {
    let found = TENANT_BOUND.with(|b| {
        let mut b = b.borrow_mut();
        let i = b
            .iter()
            .position(|p| p.hook.tenant == tenant && p.text == q.text && p.hook.types == q.types)?;
        let p = b.remove(i);
        let plan = p.plan;
        b.push(p);
        Some(plan)
    });
    if let Some(plan) = found {
        return Ok(plan);
    }
    let text = c_text(q)?;
    let mut hook = Box::new(TenantHook {
        tenant,
        types: q.types.to_vec(),
    });
    let arg: *mut TenantHook = &mut *hook;
    // SAFETY: SPI is connected (the module's contract); the hook's state is boxed and kept with
    // the plan
    let plan = keep(q, unsafe {
        pg_sys::SPI_prepare_params(
            text.as_ptr(),
            Some(tenant_parser_setup),
            arg.cast(),
            pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
        )
    })?;
    TENANT_BOUND.with(|b| {
        let mut b = b.borrow_mut();
        // SAFETY: kept plans of this backend
        let mut bytes: usize = b.iter().map(|p| unsafe { plan_bytes(p.plan) }).sum();
        let budget = crate::gucs::tenant_plan_memory();
        while bytes > budget && b.len() > KEEP_RECENT {
            let old = b.remove(0);
            // SAFETY: a kept plan of this backend; a portal still running it holds its own
            // reference to the plan it runs. The hook's state goes with it.
            unsafe {
                bytes = bytes.saturating_sub(plan_bytes(old.plan));
                pg_sys::SPI_freeplan(old.plan);
            }
        }
        b.push(TenantPlan {
            text: q.text.to_string(),
            plan,
            hook,
        });
    });
    Ok(plan)
}

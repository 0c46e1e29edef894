//! Memory the allocator keeps after a large call. The Rust side of a call holds its working data
//! (a JSON tree of a batch, a walk's paths, a sample's draws) in the process's heap, many small
//! allocations; freed, glibc keeps them in the backend for the next malloc rather than returning
//! them to the system, so a pooled backend kept several hundred MB after one large call
//! (`freeze` of a 27 MB document left 694 MB, `write_events_json` of 300 000 events 130 MB).
//! [`Trim`], held by such a call, gives the free memory back when it drops (at the call's end,
//! or as an error unwinds), once more than [`KEPT`] lies free.

/// Free heap a backend keeps without trimming it.
const KEPT: usize = 32 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// glibc's `struct mallinfo2` (2.33 on).
    #[repr(C)]
    pub struct Mallinfo2 {
        pub arena: usize,
        pub ordblks: usize,
        pub smblks: usize,
        pub hblks: usize,
        pub hblkhd: usize,
        pub usmblks: usize,
        pub fsmblks: usize,
        pub uordblks: usize,
        pub fordblks: usize,
        pub keepcost: usize,
    }
    extern "C" {
        pub fn mallinfo2() -> Mallinfo2;
        pub fn malloc_trim(pad: usize) -> core::ffi::c_int;
        pub fn mallopt(param: core::ffi::c_int, value: core::ffi::c_int) -> core::ffi::c_int;
    }
    /// glibc's M_MMAP_THRESHOLD.
    pub const M_MMAP_THRESHOLD: core::ffi::c_int = -3;
}

/// Allocations of at least this many bytes get pages of their own, returned when freed.
const MMAP_AT: core::ffi::c_int = 1 << 20;

/// Once per backend, as the library loads: glibc serves an allocation of at least [`MMAP_AT`]
/// from pages of its own, returned to the system when freed. Left to itself, glibc raises that
/// threshold to the largest block freed (up to 32 MB): after one large call, blocks of that size
/// (a large document's text, PostgreSQL's own buffers growing for it) come from the heap and stay
/// in the backend once freed, beyond what [`release`] can give back when the call ends.
pub fn init() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a setting of the allocator, made while the backend loads the library
    unsafe {
        glibc::mallopt(glibc::M_MMAP_THRESHOLD, MMAP_AT);
    }
}

/// Returns the allocator's free memory to the system when more than [`KEPT`] lies free.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: both only read and rearrange the allocator's own state; the process is single-threaded
    unsafe {
        if glibc::mallinfo2().fordblks > KEPT {
            glibc::malloc_trim(0);
        }
    }
}

/// Held by a call that may allocate much: [`release`] when dropped.
pub struct Trim;

impl Drop for Trim {
    fn drop(&mut self) {
        release();
    }
}

impl Trim {
    /// A [`Trim`] for a call of `n` items where `n` passes `large` (a learner's usual batch of a
    /// few hundred draws does not check the allocator at all).
    pub fn when(n: usize, large: usize) -> Option<Trim> {
        (n > large).then_some(Trim)
    }

    /// The rows of a set-returning call, releasing the memory once they are all returned (and
    /// the rows themselves freed).
    pub fn rows<I: IntoIterator>(self, rows: I) -> Trimmed<I::IntoIter> {
        rows_then(Some(self), rows)
    }
}

/// `rows`, then [`release`] if `trim` is held ([`Trim::rows`]).
pub fn rows_then<I: IntoIterator>(trim: Option<Trim>, rows: I) -> Trimmed<I::IntoIter> {
    Trimmed {
        rows: rows.into_iter(),
        _trim: trim,
    }
}

/// Rows that release the memory after them ([`Trim::rows`]).
pub struct Trimmed<I> {
    rows: I,
    _trim: Option<Trim>,
}

impl<I: Iterator> Iterator for Trimmed<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        self.rows.next()
    }
}

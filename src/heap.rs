//! Memory the allocator keeps after a large call. The Rust side of a call holds its working data
//! (a JSON tree of a batch, a walk's paths, a sample's draws) in the process's heap, many small
//! allocations; freed, glibc keeps them in the backend for the next malloc rather than returning
//! them to the system, so a pooled backend kept several hundred MB after one large call
//! (`freeze` of a 27 MB document left 694 MB, `write_events_json` of 300 000 events 130 MB).
//! [`Trim`], held by such a call, gives the free memory back when it drops (at the call's end,
//! or as an error unwinds), once more than [`KEPT`] lies free. What PostgreSQL itself frees after
//! the call (a large argument's text, the statement's executor memory) goes back at the next call
//! that holds one. (glibc's dynamic mmap threshold is left alone: fixing it at 1 MB made every
//! large allocation of the backend a fresh mapping, and a sort of 200 000 rows 12 % slower.)

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

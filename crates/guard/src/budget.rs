//! A memory budget for a guard decision.
//!
//! The shell parser has had inputs it loops on (the deadline answers those)
//! and inputs it allocates on without bound: gigabytes in seconds, until the
//! allocation fails and the process aborts, or a cgroup's OOM killer ends it.
//! A hook or shim that dies gives no decision, and the harnesses run the
//! command then. So a decision's thread gets a byte budget: an allocation past
//! it never returns (the thread sleeps for good, holding nothing of the
//! caller's), and [`crate::cli::within`] answers at once with its denial.
//!
//! The budget is kept by [`Budgeted`], the system allocator plus a per-thread
//! count that only decision threads set; a binary opts in with
//! `#[global_allocator] static A: errand_guard::budget::Budgeted = errand_guard::budget::Budgeted;`.
//! Without it the budget is not enforced (only the deadline is).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The system allocator, with a byte budget on the threads that set one.
pub struct Budgeted;

/// Bytes one decision may hold at once.
pub const BYTES: usize = 256 << 20;

thread_local! {
    /// Bytes this thread may still allocate, and its decision's id; `None`
    /// on every thread but a decision's.
    static LEFT: Cell<Option<(isize, u64)>> = const { Cell::new(None) };
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static NEXT: AtomicU64 = AtomicU64::new(1);
/// The id of the last decision that went over its budget.
static OVER: AtomicU64 = AtomicU64::new(0);

/// Whether the running binary uses [`Budgeted`] (so budgets are enforced).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// A new decision's id, for [`limit`] in its thread and [`went_over`] outside it.
pub(crate) fn new_id() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Gives the calling thread `bytes` to allocate from now on, as decision `id`.
pub(crate) fn limit(bytes: usize, id: u64) {
    let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
    let _ = LEFT.try_with(|l| l.set(Some((bytes, id))));
}

/// Whether decision `id` went over its budget.
pub(crate) fn went_over(id: u64) -> bool {
    OVER.load(Ordering::SeqCst) == id
}

/// Counts `n` more bytes against the thread's budget; never returns when it
/// is spent.
fn take(n: usize) {
    let over = LEFT
        .try_with(|l| match l.get() {
            None => None,
            Some((left, id)) => {
                let left = left.saturating_sub(isize::try_from(n).unwrap_or(isize::MAX));
                l.set(Some((left, id)));
                (left < 0).then_some(id)
            }
        })
        .ok()
        .flatten();
    if let Some(id) = over {
        OVER.store(id, Ordering::SeqCst);
        // No allocation, no lock: the thread stays here until the process
        // exits (the decision was answered without it).
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn mark_installed() {
    // A read on every allocation, a write once: no line bounced between cores.
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
}

fn give(n: usize) {
    let _ = LEFT.try_with(|l| {
        if let Some((left, id)) = l.get() {
            let n = isize::try_from(n).unwrap_or(isize::MAX);
            l.set(Some((left.saturating_add(n), id)));
        }
    });
}

// SAFETY: every call goes to `System` with the caller's arguments; the
// bookkeeping around it touches only a const-initialised thread-local `Cell`
// and atomics, and allocates nothing.
unsafe impl GlobalAlloc for Budgeted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        mark_installed();
        take(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        mark_installed();
        take(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        give(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            take(new_size - layout.size());
        } else {
            give(layout.size() - new_size);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

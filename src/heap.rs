//! A counting allocator: live heap bytes, measured rather than estimated.
//!
//! The `vaultstore` binary (and the memory tests) install [`CountingAlloc`]
//! as the global allocator; `vaultstore bench` reads [`live_bytes`] around
//! building the index and opening a store to report heap per saveset. It
//! wraps the system allocator and adds one relaxed atomic add per call.
//! Where it is not installed (the library in someone else's program),
//! [`live_bytes`] is `None` and figures fall back to estimates.
//! It must not import anything of the crate: every layer may use it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static LIVE: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting the bytes it holds out.
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters only observe sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
            if !INSTALLED.load(Ordering::Relaxed) {
                INSTALLED.store(true, Ordering::Relaxed);
            }
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

/// Heap bytes held right now, when [`CountingAlloc`] is the global allocator.
pub fn live_bytes() -> Option<u64> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| LIVE.load(Ordering::Relaxed))
}

/// The heap `f`'s result holds: live bytes after it returns, less before
/// (the caller keeps the result alive while reading this). `None` when the
/// counter is not installed.
pub fn held_by<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let before = live_bytes();
    let value = f();
    let after = live_bytes();
    let held = before.zip(after).map(|(b, a)| a.saturating_sub(b));
    (value, held)
}

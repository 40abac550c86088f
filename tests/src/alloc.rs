//! A global allocator that counts live heap bytes, for the tests and benchmarks that measure
//! memory (`measure/tests/memory.rs`, the agent's receiver and the collector's render
//! benchmarks). Install it in the test or bench binary:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: CountingAllocator = CountingAllocator;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

/// The system allocator, counting the bytes it has handed out and not yet been given back.
pub struct CountingAllocator;

static LIVE: AtomicI64 = AtomicI64::new(0);

impl CountingAllocator {
    /// Heap bytes live now, counted since the process started (compare two readings).
    pub fn live_bytes() -> i64 {
        LIVE.load(Ordering::Relaxed)
    }
}

#[allow(unsafe_code, reason = "a counting global allocator needs `unsafe impl GlobalAlloc`")]
// SAFETY: every call is passed on unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above, that is from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

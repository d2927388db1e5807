//! The `driftline` binary: the command line lives in `driftline::cli`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether new blocks come from mimalloc; set once, before the runtime
/// starts, and never unset.
static MIMALLOC: AtomicBool = AtomicBool::new(false);

/// mimalloc for the request servers (`serve`, `gateway`), glibc's malloc
/// for every other command. A server answering thousands of small requests
/// a second spent about a fifth of its CPU in glibc's arena locks and
/// consolidation, and mimalloc takes that away; the operator, on mimalloc,
/// held 133 MiB at 1,000 Models against 113 MiB on glibc (more partly
/// used pages), so it stays on glibc (bench/serving/RESULTS.md).
///
/// The choice is made after the arguments are parsed, so blocks made
/// before it stay glibc's: each block is freed or grown by the allocator
/// that made it, which mimalloc tells for its own (`mi_is_in_heap_region`,
/// the test its own malloc override relies on).
struct Allocator;

/// Whether `ptr` is a mimalloc block. Before the switch none is, and the
/// lookup is skipped.
fn mimalloc_owns(ptr: *mut u8) -> bool {
    // SAFETY: a lookup in mimalloc's own page map; any address may be asked.
    MIMALLOC.load(Ordering::Relaxed)
        && unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr.cast_const().cast()) }
}

/// The alignment every mimalloc block has (a machine word): a layout that
/// asks no more takes mimalloc's plain `malloc`. `MiMalloc` always calls
/// the aligned entry, whose fast path takes only blocks up to 1 KiB; a
/// larger one (a request's body, an answer's buffer) went through its
/// generic aligned path, ~200 instructions, about five times a request
/// (`valgrind --tool=callgrind`, 2026-12-06).
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: every call goes to one of two sound allocators unchanged (a
// layout aligned to at most a word is any mimalloc block's alignment); a
// block is only ever freed or grown by the allocator that made it (above).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if MIMALLOC.load(Ordering::Relaxed) {
            if layout.align() <= WORD {
                unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
            } else {
                unsafe { mimalloc::MiMalloc.alloc(layout) }
            }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if MIMALLOC.load(Ordering::Relaxed) {
            if layout.align() <= WORD {
                unsafe { libmimalloc_sys::mi_zalloc(layout.size()).cast() }
            } else {
                unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
            }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mimalloc_owns(ptr) {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if mimalloc_owns(ptr) {
            if layout.align() <= WORD {
                unsafe { libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast() }
            } else {
                unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
            }
        } else {
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fn main() -> std::process::ExitCode {
    driftline::cli::main_with(|serves_requests| {
        if serves_requests {
            MIMALLOC.store(true, Ordering::SeqCst);
        }
    })
}

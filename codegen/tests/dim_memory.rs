//! What a decoded `Dim` costs in memory, against its size in the binary wire format.
//!
//! Measured with a counting allocator (bytes requested, per thread), so the numbers are exact and
//! the same on every run: a constant decodes into the 16 bytes of the `Dim` itself and nothing
//! on the heap; a symbolic dim into a small multiple of its encoded bytes. (When every dim was a
//! `BTreeMap`, one constant cost a ~400-byte tree node: 8 MB of small dims became 1.6 GB.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use genie_codegen::binary;
use genie_ir::Dim;

struct Counting;

thread_local! {
    /// Bytes this thread has allocated and not freed (const-initialised: no allocation).
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: the thread's TLS may already be gone while it exits.
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Encoded bytes, and the bytes the decoded dims hold: their heap plus their 16 inline bytes
/// (the vector's spare capacity is not the dims' cost, so it is left out).
fn cost(dims: &[Dim]) -> (usize, usize) {
    let bytes = binary::to_bytes(dims).unwrap();
    let before = live();
    let decoded: Vec<Dim> = binary::from_bytes(&bytes).unwrap();
    let heap = live() - before - (decoded.capacity() * size_of::<Dim>()) as isize;
    assert_eq!(decoded, dims);
    (bytes.len(), heap as usize + decoded.len() * size_of::<Dim>())
}

#[test]
fn decoded_dims_cost_a_small_multiple_of_their_encoding() {
    assert_eq!(size_of::<Dim>(), 16, "a constant is inline");

    // Constants: 2 to 10 encoded bytes each, exactly 16 decoded, none of them on the heap.
    let constants: Vec<Dim> = (0..10_000).map(|i| Dim::constant(i % 50)).collect();
    let (encoded, decoded) = cost(&constants);
    assert_eq!(decoded, 16 * constants.len(), "constants allocate nothing");
    assert!(decoded <= 8 * encoded, "{decoded} bytes from {encoded}");

    // The worst case for a symbolic dim: one-letter symbols, 3 encoded bytes each (tag, length,
    // letter), decode to the dim, one term, one atom and the name.
    let letters: Vec<Dim> = (0..10_000).map(|i| Dim::symbol(((b'a' + (i % 26) as u8) as char).to_string())).collect();
    let (encoded, decoded) = cost(&letters);
    assert!(decoded <= 24 * encoded, "{decoded} bytes from {encoded}");

    // Typical dims.
    let typical: Vec<Dim> = ["s0 + 1", "2*s0", "(s0 - 1)//2 + 1", "s0*s1 - 3", "768*s0"]
        .iter()
        .cycle()
        .take(10_000)
        .map(|t| Dim::parse(t).unwrap())
        .collect();
    let (encoded, decoded) = cost(&typical);
    assert!(decoded <= 12 * encoded, "{decoded} bytes from {encoded}");
}

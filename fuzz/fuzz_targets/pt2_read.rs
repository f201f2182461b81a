//! Arbitrary bytes as a `.pt2` archive: the reader returns a program or an error, never panics.
//!
//! `cargo +nightly fuzz run pt2_read` (or `RUSTC_BOOTSTRAP=1 cargo fuzz run pt2_read` on
//! stable); seed it with the fixtures: `mkdir -p corpus/pt2_read && cp
//! ../testsuite/fixtures/*/*.pt2 corpus/pt2_read/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(program) = genie_frontends::pt2::read_bytes("fuzz", data) {
        // Whatever imports must not make the verifier panic either.
        let _ = genie_ir::verify_program(&program);
    }
});

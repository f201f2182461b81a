//! Binary plans (`genie_codegen::from_binary`: the `GENIEPLN` header, then the tagged encoding):
//! any bytes give a plan or a typed error; never a panic, an abort or an allocation beyond the
//! bytes given. A plan that decodes re-encodes to bytes that decode to the same encoding.
//!
//! The bytes are also decoded without the header, so mutations need not keep it intact.
//! `cargo xtask fuzz plan_binary 600` (seeds: binary plans of the bundled example).
#![no_main]

use genie_codegen::{binary, from_binary, to_binary, ProgramPlan};
use libfuzzer_sys::fuzz_target;

fn stable(plan: &ProgramPlan) {
    // Compared as bytes: a plan may carry NaN floats, which are not equal to themselves.
    let bytes = to_binary(plan).expect("a decoded plan encodes");
    let again = from_binary(&bytes).expect("an encoded plan decodes");
    assert_eq!(to_binary(&again).expect("encodes"), bytes, "re-encoding changed the plan");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = from_binary(data) {
        stable(&plan);
    }
    if let Ok(plan) = binary::from_bytes::<ProgramPlan>(data) {
        stable(&plan);
    }
});

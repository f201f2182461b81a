//! `Dim::parse`, which every dim read from a file or the wire goes through: any text gives a dim
//! within the limits or a typed error, in time and memory bounded by the limits; never a panic
//! or a stack overflow. A parsed dim's canonical text fits the length limit and parses back to
//! the same dim, and the dim evaluates, substitutes and compares without panicking.
//!
//! `cargo xtask fuzz dim_parse 600` (seeds: typical dims).
#![no_main]

use std::collections::BTreeMap;

use genie_ir::dim::MAX_DIM_TEXT;
use genie_ir::Dim;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(dim) = Dim::parse(text) else { return };
    assert!(dim.fits_limits(), "`{text}` parsed beyond the limits");
    let canonical = dim.to_string();
    assert!(canonical.len() <= MAX_DIM_TEXT, "`{text}` prints longer than the limit");
    match Dim::parse(&canonical) {
        Ok(back) => assert_eq!(back, dim, "`{text}` printed as `{canonical}`"),
        Err(e) => panic!("`{text}` printed as `{canonical}`, which does not parse: {e}"),
    }
    let bindings: BTreeMap<String, i64> = dim.symbols().into_iter().enumerate().map(|(i, s)| (s, i as i64 - 2)).collect();
    let _ = dim.eval(&bindings);
    let two: BTreeMap<String, Dim> = dim.symbols().into_iter().map(|s| (s, Dim::constant(2))).collect();
    let _ = dim.substitute(&two);
    let _ = dim.cmp(&Dim::symbol("s0"));
    let _ = dim.floor_div(&dim).modulo(&Dim::constant(3));
});

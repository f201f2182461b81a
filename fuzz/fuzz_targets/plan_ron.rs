//! RON plans (`genie_codegen::from_ron`) and RON programs (`genie_ir::Program::from_ron`, then
//! the verifier, as `genie inspect` reads them): any text gives a value or a typed error; never
//! a panic or an abort. What parses writes RON that parses to the same RON.
//!
//! `cargo xtask fuzz plan_ron 600` (seeds: a RON plan and RON programs).
#![no_main]

use genie_ir::Program;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(plan) = genie_codegen::from_ron(text) {
        let ron = genie_codegen::to_ron(&plan).expect("a parsed plan writes");
        let again = genie_codegen::from_ron(&ron).expect("a written plan parses");
        assert_eq!(genie_codegen::to_ron(&again).expect("writes"), ron, "rewriting changed the plan");
    }
    if let Ok(program) = Program::from_ron(text) {
        let _ = genie_ir::verify_program(&program);
        let ron = program.to_ron().expect("a parsed program writes");
        let again = Program::from_ron(&ron).expect("a written program parses");
        assert_eq!(again.to_ron().expect("writes"), ron, "rewriting changed the program");
    }
});

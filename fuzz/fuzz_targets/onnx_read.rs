//! Fuzz the ONNX reader: any bytes must give a program that verifies, or a typed error; never a
//! panic, an abort or an unbounded allocation.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run onnx_read fuzz/corpus/onnx_read -- -max_total_time=600`
//! (seed the corpus with small models, e.g. `frontends/tests/onnx_cases/*/model.onnx`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // External data is looked up in a folder that does not exist: those models fail typed.
    let dir = std::path::Path::new("/nonexistent/genie-fuzz");
    if let Ok(program) = genie_frontends::onnx::read_bytes(data, "fuzz", dir) {
        if let Err(e) = genie_ir::verify_program(&program) {
            panic!("an imported program does not verify: {e}");
        }
    }
});

//! The safetensors reader behind `genie run --inputs` (`genie_wire::tensor_file`): any bytes
//! give tensors whose bytes are exactly their shape × dtype size, or a typed error naming the
//! problem; never a panic or an allocation beyond the bytes given.
//!
//! `cargo xtask fuzz safetensors_inputs 600` (seeds: the fixtures' inputs files).
#![no_main]

use genie_wire::tensor_file::parse_safetensors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = parse_safetensors(data) else { return };
    let mut total = 0usize;
    for (name, t) in &file.tensors {
        let numel: u64 = t.shape.iter().map(|&d| d as u64).product();
        assert_eq!(numel * t.dtype.size_bytes(), t.data.len() as u64, "{name}");
        total += t.data.len();
    }
    assert!(total <= data.len());
});

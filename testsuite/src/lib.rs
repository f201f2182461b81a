//! End-to-end tests, fixtures and snapshot tests live under `tests/`; this library holds what
//! several of them share: where the fixtures are.

use std::path::{Path, PathBuf};

/// A file of the committed fixtures (`testsuite/fixtures/<rel>`).
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

/// Every decoder fixture with a prefill and a decode file, in each export form it has
/// (`family/pt2`, `family/_corept2`, `family/onnx`).
pub fn decoders() -> Vec<(String, [PathBuf; 2])> {
    let mut out = Vec::new();
    for family in ["gpt2", "llama", "hf-gpt2", "hf-llama", "hf-mistral"] {
        for (suffix, ext) in [("", "pt2"), ("_core", "pt2"), ("", "onnx")] {
            let files = [
                fixture(&format!("{family}/prefill{suffix}.{ext}")),
                fixture(&format!("{family}/decode{suffix}.{ext}")),
            ];
            if files.iter().all(|f| f.exists()) {
                out.push((format!("{family}/{suffix}{ext}"), files));
            }
        }
    }
    assert!(out.len() >= 9, "the decoder fixtures are missing: {out:?}");
    out
}

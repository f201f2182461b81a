//! Every ATen op name written in the passes (rule tables included) is a registered op: a typo in
//! a pattern or a comparison would otherwise never match, and nothing would notice.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `aten.<name>.<overload>` tokens in a text, with the line each is on.
fn op_names(text: &str) -> Vec<(usize, String)> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("aten.") {
            let before = rest[..at].chars().last();
            let tail = &rest[at + "aten.".len()..];
            rest = tail;
            if before.is_some_and(ident) {
                continue;
            }
            let name_len = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
            let after_name = &tail[name_len..];
            let Some(overload) = after_name.strip_prefix('.') else { continue };
            let overload_len = overload.find(|c: char| !ident(c)).unwrap_or(overload.len());
            if name_len > 0 && overload_len > 0 {
                found.push((line_no + 1, format!("aten.{}.{}", &tail[..name_len], &overload[..overload_len])));
            }
        }
    }
    found
}

#[test]
fn every_op_name_in_the_passes_is_registered() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let registry = genie_ir::registry::registry();
    let mut checked = 0;
    let mut unknown = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source reads");
        for (line, name) in op_names(&text) {
            checked += 1;
            if registry.get(&name).is_none() {
                unknown.push(format!("{}:{line}: {name}", file.display()));
            }
        }
    }
    assert!(checked > 100, "found only {checked} op names in {}: is the scan broken?", src.display());
    assert!(unknown.is_empty(), "op names the registry does not know:\n{}", unknown.join("\n"));
}

#[test]
fn the_scan_finds_names_and_skips_other_text() {
    let text = "rw!(\"x\"; \"(aten.mm.default ?a ?b)\" => \"(aten.matmul.default ?a ?b)\")\n\
                // aten.relu_.default#0 and maten.not.this, aten.incomplete";
    let names: Vec<String> = op_names(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["aten.mm.default", "aten.matmul.default", "aten.relu_.default"]);
}

//! RON programs built to hurt the reader: every one is refused with an error naming the problem,
//! on a test thread's 2 MiB stack, instead of overflowing it.

use genie_ir::example::tiny_decoder;
use genie_ir::{Program, ProgramIoError};

/// The bundled program with its first symbolic dim replaced by `dim` (RON string contents).
fn with_dim(dim: &str) -> String {
    let text = tiny_decoder().unwrap().to_ron().unwrap();
    assert!(text.contains("\"s0\","), "the example has a symbolic dim");
    text.replacen("\"s0\",", &format!("\"{dim}\","), 1)
}

fn ron_error(text: &str) -> String {
    match Program::from_ron(text) {
        Err(ProgramIoError::Ron(e)) => e.to_string(),
        other => panic!("expected a RON error, got {other:?}"),
    }
}

#[test]
fn a_dim_of_100000_nested_parentheses_is_refused() {
    let dim = format!("{}s0{}", "(".repeat(100_000), ")".repeat(100_000));
    let err = ron_error(&with_dim(&dim));
    assert!(err.contains("dim expression of 200002 bytes exceeds the 4096-byte limit"), "{err}");
}

#[test]
fn a_dim_nested_past_the_limit_names_where() {
    let dim = format!("{}s0{}", "(".repeat(1000), ")".repeat(1000));
    let err = ron_error(&with_dim(&dim));
    assert!(err.contains("nests deeper than 64 levels at byte 64"), "{err}");
    // Ten thousand minus signs within the length limit are a loop, not a recursion: they parse.
    let p = Program::from_ron(&with_dim(&format!("{}s0", "-".repeat(4000)))).unwrap();
    assert_eq!(p.entries[0].values[0].ty.shape[1].to_string(), "s0");
    let err = ron_error(&with_dim(&format!("s0{}", "//s0".repeat(40))));
    assert!(err.contains("nests deeper than 32 levels"), "{err}");
}

/// Structure nested deeper than the limit, in a field the reader ignores.
#[test]
fn deep_ron_nesting_is_refused() {
    let text = tiny_decoder().unwrap().to_ron().unwrap();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let hostile = text.replacen("version: 1,", &format!("version: 1, junk: {deep},"), 1);
    let err = ron_error(&hostile);
    assert!(err.contains("recursion limit"), "{err}");
    // Modest nesting in an unknown field is still ignored.
    let fits = format!("{}{}", "[".repeat(10), "]".repeat(10));
    assert!(Program::from_ron(&text.replacen("version: 1,", &format!("version: 1, junk: {fits},"), 1)).is_ok());
}

//! `genie inspect` on files built to hurt its readers: each prints a typed error and exits with
//! status 1, instead of aborting on a stack overflow or running out of memory.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genie-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Run `genie inspect FILE`; it must fail with exit status 1 (not a signal) and an `error:`
/// line. Returns stderr.
fn inspect_fails(file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_genie")).arg("inspect").arg(file).output().expect("genie runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "genie inspect {} should fail cleanly: {stderr}", file.display());
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

fn nested(levels: usize) -> String {
    format!("{}s0{}", "(".repeat(levels), ")".repeat(levels))
}

/// The bundled example program, its first symbolic dim replaced.
fn program_with_dim(dim: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny_decoder.ron");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("\"s0\","));
    text.replacen("\"s0\",", &format!("\"{dim}\","), 1)
}

/// A RON plan of the bundled example, compiled by the binary, its first symbolic dim replaced.
fn plan_with_dim(dim: &str) -> String {
    let plan = tmp("example.plan.ron");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny_decoder.ron");
    let out = Command::new(env!("CARGO_BIN_EXE_genie"))
        .arg("compile")
        .arg(example)
        .args(["--workers", "2", "-o"])
        .arg(&plan)
        .output()
        .expect("genie runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.contains("\"s0\""));
    text.replacen("\"s0\"", &format!("\"{dim}\""), 1)
}

#[test]
fn a_program_with_100000_nested_parentheses_in_a_dim_is_a_typed_error() {
    let file = tmp("deep.ron");
    std::fs::write(&file, program_with_dim(&nested(100_000))).unwrap();
    let err = inspect_fails(&file);
    assert!(err.contains("dim expression of 200002 bytes exceeds the 4096-byte limit"), "{err}");
    // Within the length limit, the nesting limit names where it was crossed.
    std::fs::write(&file, program_with_dim(&nested(1000))).unwrap();
    let err = inspect_fails(&file);
    assert!(err.contains("nests deeper than 64 levels at byte 64"), "{err}");
    // And what fits is read: the example itself.
    std::fs::write(&file, program_with_dim("s0")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_genie")).arg("inspect").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_plan_with_100000_nested_parentheses_in_a_dim_is_a_typed_error() {
    let file = tmp("deep.plan.ron");
    std::fs::write(&file, plan_with_dim(&nested(100_000))).unwrap();
    let err = inspect_fails(&file);
    assert!(err.contains("reading plan"), "{err}");
    assert!(err.contains("dim expression of 200002 bytes exceeds the 4096-byte limit"), "{err}");
    std::fs::write(&file, plan_with_dim(&format!("s0{}", "//s1".repeat(3000)))).unwrap();
    let err = inspect_fails(&file);
    assert!(err.contains("exceeds the 4096-byte limit"), "{err}");
    std::fs::write(&file, plan_with_dim(&format!("s0{}", "//s1".repeat(100)))).unwrap();
    let err = inspect_fails(&file);
    assert!(err.contains("nests deeper than 32 levels"), "{err}");
}

/// A binary plan whose body nests ten thousand sequences (refused at the second: a plan's
/// first field is its version), and one claiming 2^60 elements.
#[test]
fn hostile_binary_plans_are_typed_errors() {
    let header = |body: &[u8]| {
        let mut bytes = b"GENIEPLN".to_vec();
        bytes.extend_from_slice(&genie_codegen::PLAN_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(body);
        bytes
    };
    let file = tmp("deep.plan");
    std::fs::write(&file, header(&[9, 1].repeat(10_000))).unwrap();
    let err = inspect_fails(&file);
    assert!(err.contains("plan binary: invalid type: sequence, expected u32"), "{err}");
    std::fs::write(&file, header(&[9, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10])).unwrap();
    let err = inspect_fails(&file);
    assert!(err.contains("exceeds the 0 bytes left"), "{err}");
}

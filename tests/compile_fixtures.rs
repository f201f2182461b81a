//! `genie compile` end to end on the real GPT-2 fixtures: a prefill + decode program on two
//! workers that cannot each hold all the weights. One decode step moves only the token ids in,
//! the logits out and one activation per cut, one position wide; no weight and no KV cache.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testsuite/fixtures").join(rel)
}

fn genie(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_genie")).args(args).output().expect("genie runs");
    assert!(out.status.success(), "genie {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_decode_step(prefill: &str, decode: &str, decode_entry: &str, memory: &str) {
    let tag = prefill.replace(['/', '.'], "_");
    let dir = std::env::temp_dir().join(format!("genie-compile-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("model.plan");
    let (p, d) = (fixture(prefill), fixture(decode));
    genie(&[
        "compile",
        p.to_str().unwrap(),
        d.to_str().unwrap(),
        "--workers",
        "2",
        "--worker-memory",
        memory,
        "--max-seq",
        "16",
        "-o",
        plan.to_str().unwrap(),
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&genie(&["inspect", plan.to_str().unwrap(), "--summary", "--format", "json"])).unwrap();

    // Neither worker can hold every weight, and both do work.
    let devices = json["devices"].as_array().unwrap();
    let all_weights = genie_frontends_weight_bytes(&[&p, &d]);
    assert_eq!(devices.len(), 2);
    for dev in devices {
        assert!(dev["nodes"].as_u64().unwrap() > 0, "{dev}");
        assert!(dev["memory_bytes"].as_u64().unwrap() < all_weights, "{dev} could hold all {all_weights} B of weights");
        assert!(dev["peak_bytes"].as_u64().unwrap() <= dev["memory_bytes"].as_u64().unwrap(), "{dev}");
    }

    let entry = &json["entries"][decode_entry];
    let transfers = entry["transfers"].as_array().unwrap();
    let hidden_row = 32 * 4; // one position of the 32-wide residual stream, f32
    let mut ids_in = 0;
    let mut logits_out = 0;
    let mut cuts = 0;
    for t in transfers {
        let (from, to) = (t["from"].as_str().unwrap(), t["to"].as_str().unwrap());
        let residency = t["residency"].as_str().unwrap();
        assert!(residency != "persistent_weight" && residency != "stateful_kv_cache", "{decode_entry}: moved {t}");
        match (from, to) {
            ("client", _) => {
                assert_eq!(t["value"], "input_ids", "{t}");
                ids_in += 1;
            }
            (_, "client") => {
                assert_eq!(t["bytes"].as_u64(), Some(128 * 4), "the logits of one position: {t}");
                logits_out += 1;
            }
            _ => {
                assert_eq!(t["bytes"].as_u64(), Some(hidden_row), "one activation one position wide: {t}");
                cuts += 1;
            }
        }
    }
    assert_eq!((ids_in, logits_out), (1, 1), "{transfers:?}");
    assert!(cuts >= 1, "the program is split: {transfers:?}");
    let total: u64 = transfers.iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
    assert_eq!(entry["bytes_per_call"].as_u64(), Some(total));
    std::fs::remove_dir_all(&dir).ok();
}

/// Total weight bytes of the program, from `genie inspect --summary`.
fn genie_frontends_weight_bytes(files: &[&Path]) -> u64 {
    let mut args = vec!["inspect", "--pass", "import", "--summary", "--format", "json"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let json: serde_json::Value = serde_json::from_str(&genie(&args)).unwrap();
    json["weights"]["bytes"].as_u64().unwrap()
}

#[test]
fn gpt2_pt2_decode_step_moves_only_ids_logits_and_cuts() {
    check_decode_step("gpt2/prefill.pt2", "gpt2/decode.pt2", "decode", "80KB");
}

#[test]
fn gpt2_onnx_decode_step_moves_only_ids_logits_and_cuts() {
    // The ONNX exporter adds a folded 16 KiB causal mask, so a little more room is needed.
    check_decode_step("gpt2/prefill.onnx", "gpt2/decode.onnx", "decode", "96KB");
}

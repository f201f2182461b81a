//! RON round-trips exactly; the text dump and DOT are stable (insta snapshots).

use genie_ir::example::{tiny_decoder, tiny_decoder_pair};
use genie_ir::render::{dot_program, dump_program, summary, DotColoring, SummaryOptions};
use genie_ir::{Program, Residency, Tag};

#[test]
fn ron_round_trips_exactly() {
    let p = tiny_decoder().unwrap();
    let text = p.to_ron().unwrap();
    let back = Program::from_ron(&text).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.to_ron().unwrap(), text, "writing the parse gives the same text");
}

#[test]
fn ron_round_trips_annotations() {
    let mut p = tiny_decoder().unwrap();
    let g = &mut p.entries[0];
    g.phase = genie_ir::Phase::LlmPrefill;
    g.nodes[3].ann.module_path = Some("transformer.h.0".into());
    g.nodes[3].ann.source = Some("model.py:12".into());
    g.nodes[3].ann.cost = Some(genie_ir::CostHints::new(1000, 64, 32));
    g.nodes[3].ann.device = Some("w0".into());
    g.nodes[3].ann.regions = vec![genie_ir::RegionId(0)];
    let out = g.nodes[3].outputs[0];
    g.regions.push(genie_ir::Region {
        tag: Tag::Residual,
        nodes: vec![genie_ir::NodeId(3)],
        entries: vec![],
        exits: vec![out],
    });
    g.value_mut(out).ann.residency = Some(Residency::EphemeralActivation);
    let text = p.to_ron().unwrap();
    let back = Program::from_ron(&text).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.to_ron().unwrap(), text);
    genie_ir::verify_program(&back).unwrap();
}

#[test]
fn ron_rejects_garbage_and_other_versions() {
    assert!(Program::from_ron("(not a program)").is_err());
    let p = tiny_decoder().unwrap();
    let text = p.to_ron().unwrap().replacen("version: 1", "version: 99", 1);
    let err = Program::from_ron(&text).unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
}

#[test]
fn bundled_example_file_is_current() {
    // examples/tiny_decoder.ron (prefill + decode) is what `cargo xtask run` inspects; regenerate with GENIE_BLESS=1.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tiny_decoder.ron");
    let want = tiny_decoder_pair().unwrap().to_ron().unwrap();
    if std::env::var_os("GENIE_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "{} is stale; rerun with GENIE_BLESS=1", path.display());
}

#[test]
fn text_dump_snapshot() {
    let mut p = tiny_decoder().unwrap();
    // Keep the weight store out of the snapshot's way: hashes are covered by the RON test.
    p.entries[0].nodes[5].ann.module_path = Some("h.0.attn".into());
    insta::assert_snapshot!(dump_program(&p));
}

#[test]
fn dot_snapshot() {
    let p = tiny_decoder().unwrap();
    let dot = dot_program(&p, DotColoring::Auto);
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("B\"]"), "edges carry byte labels");
    insta::assert_snapshot!(dot);
}

#[test]
fn summary_lists_ports_in_order() {
    let p = tiny_decoder().unwrap();
    let s = summary(&p, &SummaryOptions::default());
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["name"], "tiny_decoder");
    assert_eq!(json["inputs"][0]["name"], "input_ids");
    assert_eq!(json["inputs"][0]["dtype"], "int64");
    assert_eq!(json["inputs"][0]["shape"], serde_json::json!([1, "s0"]));
    let outs: Vec<&str> = s.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outs, ["logits", "present_key_0", "present_value_0"]);
    assert_eq!(json["weights"]["count"], p.weights.len());
    assert_eq!(json["ops"]["aten.linear.default"], 5);
    assert_eq!(json["nodes"], p.entries[0].nodes.len());
}

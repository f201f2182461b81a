//! The op census (`testsuite/data/op_census.json`, written by `testsuite/scripts/op_census.py`):
//! every op that `torch.export` emitted, default and core-ATen, for the transformers,
//! torchvision and diffusers models the script could build and export. The `.pt2` importer must
//! take every one of them: as a registry op, the in-place form of one, a decomposition into
//! registry ops, or a supported library op.

use std::collections::BTreeMap;

use serde_json::Value;

fn census() -> BTreeMap<String, Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testsuite/data/op_census.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).expect("op_census.json is a JSON object")
}

/// `op_census_unsupported.txt`: op → why the importer refuses it.
fn unsupported() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testsuite/data/op_census_unsupported.txt");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, why) = l.split_once('\t').unwrap_or_else(|| panic!("{path}: `{l}` has no reason"));
            assert!(!why.trim().is_empty(), "{path}: {op} has an empty reason");
            (op.to_string(), why.to_string())
        })
        .collect()
}

#[test]
fn the_importer_takes_every_census_op_but_those_listed_with_a_reason() {
    let census = census();
    let unsupported = unsupported();
    assert!(census.len() > 150, "the census lists only {} ops: was it cut short?", census.len());
    for op in unsupported.keys() {
        assert!(census.contains_key(op), "{op} is listed as unsupported but is not in the census");
        assert!(!genie_frontends::pt2::supports(op), "{op} is listed as unsupported but the importer takes it");
    }
    let missing: Vec<String> = census
        .iter()
        // Importers remove `getitem`: tuple outputs become separate values.
        .filter(|(op, _)| op.as_str() != "_operator.getitem" && !genie_frontends::pt2::supports(op))
        .filter(|(op, _)| !unsupported.contains_key(op.as_str()))
        .map(|(op, entry)| {
            let users = entry["models"].as_u64().unwrap_or(0);
            let first = entry["used_by"][0].as_str().unwrap_or("?");
            format!("{op} ({users} models, first {first})")
        })
        .collect();
    assert!(missing.is_empty(), "{} census ops the .pt2 importer refuses:\n  {}", missing.len(), missing.join("\n  "));
}

/// The census covers the zoos, not a hand-picked few: most models of each zoo were exported.
#[test]
fn the_census_covers_the_zoos() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testsuite/data/op_census.models.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let models: BTreeMap<String, String> = serde_json::from_str(&text).expect("model → status");
    for (zoo, least) in [("transformers:", 250), ("torchvision:", 60), ("diffusers:", 3)] {
        let ok = models.iter().filter(|(m, s)| m.starts_with(zoo) && s.as_str() == "ok").count();
        assert!(ok >= least, "only {ok} {zoo} models in the census (want at least {least})");
    }
}

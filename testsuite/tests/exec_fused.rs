//! Fused element-wise regions (`genie_codegen::fusion`, run by the CPU executor as cranelift
//! loops) give what the same plan gives op by op through libtorch: every fixture family in every
//! form, each graph run with its fixture inputs on one worker and on two, fused and unfused
//! (`fusion::clear`), every output equal within fp32 rtol 1e-5, atol 1e-6. The loops must really
//! run: the plans have regions, the executor's counter of loop calls grows by at least one per
//! region per call, and nothing falls back. The zoo's single graphs (`fixtures/zoo/`: CNNs, a
//! UNet, encoders, audio) are compared the same way. (The onnx suites do the same comparison per
//! model in `exec_onnx_suite.rs`.)

mod exec_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use exec_common::{compare, compile, read_safetensors, test_device};
use genie_runtime::exec::fused_counts;
use genie_runtime::local::LocalCluster;
use tch::{Device, Tensor};

const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

/// Every output of one call, user outputs and the state it saved, by name.
fn run(
    c: &mut LocalCluster,
    entry: &genie_codegen::EntryPlan,
    inputs: &BTreeMap<String, Tensor>,
) -> BTreeMap<String, Tensor> {
    let mut outs = c.run(&entry.name, inputs).unwrap_or_else(|e| panic!("{}: {e}", entry.name));
    for port in entry.outputs.iter().filter(|p| p.slot.is_some()) {
        let t =
            c.state_output(&entry.name, &port.name).unwrap_or_else(|| panic!("{}: no state {}", entry.name, port.name));
        outs.insert(format!("state {}", port.name), t.shallow_clone());
    }
    outs
}

#[test]
fn fused_regions_equal_the_unfused_plan_on_every_fixture() {
    if test_device() != Device::Cpu {
        // The loops are the CPU executor's; elsewhere plans run op by op, which the other
        // executor tests cover.
        return;
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).expect("manifest")).expect("json");
    let families = manifest.as_object().expect("families");
    let mut problems = Vec::new();
    let mut total_regions = 0;
    for (family, spec) in families {
        let graphs: Vec<String> = spec["graphs"].as_object().expect("graphs").keys().cloned().collect();
        for (suffix, entry_suffix) in [(".pt2", ""), ("_core.pt2", "_core"), (".onnx", "")] {
            let files: Vec<PathBuf> = graphs.iter().map(|g| fixture(&format!("{family}/{g}{suffix}"))).collect();
            if files.iter().any(|f| !f.is_file()) {
                // A family without this form (the manifest says which; `edge` has no ONNX).
                assert!(suffix == ".onnx", "{family}: missing {suffix} form");
                continue;
            }
            let program = genie_frontends::load(&files).unwrap_or_else(|e| panic!("{files:?}: {e}"));
            // `edge` is one layer, placement's unit: nothing to split (as in exec_fixtures.rs).
            let worker_counts: &[usize] = if family == "edge" { &[1] } else { &[1, 2] };
            for &workers in worker_counts {
                let fused = compile(&program, workers).unwrap_or_else(|e| panic!("{family}{suffix}: {e}"));
                let mut unfused = fused.clone();
                genie_codegen::fusion::clear(&mut unfused);
                let (regions, _) = genie_codegen::fusion::counts(&fused);
                total_regions += regions;
                let load = |plan| LocalCluster::load(plan, &program.weights, Device::Cpu).expect("load");
                let (mut a, mut b) = (load(&fused), load(&unfused));
                for graph in &graphs {
                    let entry = format!("{graph}{entry_suffix}");
                    let Some(plan_entry) = fused.entry(&entry) else { continue };
                    let in_entry: usize = plan_entry.plans.iter().map(|p| p.fused.len()).sum();
                    let inputs_file = fixture(&format!("{family}/{graph}.inputs.safetensors"));
                    let reference = read_safetensors(&inputs_file);
                    // Inputs by the plan's names, in signature order (forms rename them).
                    let inputs: BTreeMap<String, Tensor> = plan_entry
                        .inputs
                        .iter()
                        .zip(reference_order(&manifest, family, graph, &reference))
                        .map(|(port, t)| (port.name.clone(), t))
                        .collect();
                    a.reset_state();
                    b.reset_state();
                    let before = fused_counts();
                    let got = run(&mut a, plan_entry, &inputs);
                    let after = fused_counts();
                    let want = run(&mut b, plan_entry, &inputs);
                    let at = format!("{family}/{graph}{suffix} on {workers} worker(s)");
                    if after.1 != before.1 {
                        problems.push(format!("{at}: {} region(s) fell back to libtorch", after.1 - before.1));
                    }
                    if after.0 < before.0 + in_entry as u64 {
                        problems.push(format!("{at}: {in_entry} regions but {} loop calls", after.0 - before.0));
                    }
                    for (name, w) in &want {
                        match got.get(name) {
                            Some(g) => {
                                if let Err(e) = compare(&format!("{at}: {name}"), g, w, RTOL, ATOL) {
                                    problems.push(e);
                                }
                            }
                            None => problems.push(format!("{at}: fused run has no `{name}`")),
                        }
                    }
                }
            }
        }
    }
    assert!(total_regions > 0, "no fixture plan has a fused region");
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// The fixture's inputs of `graph` in signature order (the manifest's order of the default
/// export, which every form keeps).
fn reference_order(
    manifest: &serde_json::Value,
    family: &str,
    graph: &str,
    reference: &BTreeMap<String, Tensor>,
) -> Vec<Tensor> {
    let list = manifest[family]["graphs"][graph]["inputs"].as_array().expect("inputs");
    list.iter().map(|i| reference[i["name"].as_str().expect("name")].shallow_clone()).collect()
}

/// The same comparison on the model zoo's single-graph families (`fixtures/zoo/`: torchvision
/// CNNs, a UNet, encoders, audio; each form it has), one worker.
#[test]
fn fused_regions_equal_the_unfused_plan_on_the_zoo() {
    if test_device() != Device::Cpu {
        return;
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("zoo/manifest.json")).expect("manifest")).expect("json");
    let mut problems = Vec::new();
    let mut total_regions = 0;
    let mut checked = 0;
    for (family, spec) in manifest.as_object().expect("families") {
        if spec["kind"] == "decoder" {
            continue;
        }
        let inputs_file = fixture(&format!("zoo/{family}/model.inputs.safetensors"));
        let reference = read_safetensors(&inputs_file);
        for (form, file, names_key) in [
            ("pt2", "model.pt2", "inputs"),
            ("core", "model_core.pt2", "inputs"),
            ("onnx", "model.onnx", "onnx_inputs"),
        ] {
            let forms = spec["forms"].as_array().expect("forms");
            if !forms.iter().any(|f| f == form) {
                continue;
            }
            let program = genie_frontends::load(&[fixture(&format!("zoo/{family}/{file}"))])
                .unwrap_or_else(|e| panic!("{family} {form}: {e}"));
            let fused = compile(&program, 1).unwrap_or_else(|e| panic!("{family} {form}: {e}"));
            let mut unfused = fused.clone();
            genie_codegen::fusion::clear(&mut unfused);
            total_regions += genie_codegen::fusion::counts(&fused).0;
            let entry = &fused.entries[0];
            let names = spec[names_key].as_array().expect("input names");
            let by_reference = spec["inputs"].as_array().expect("inputs");
            let inputs: BTreeMap<String, Tensor> = names
                .iter()
                .zip(by_reference)
                .map(|(n, r)| {
                    (n.as_str().expect("name").to_string(), reference[r.as_str().expect("name")].shallow_clone())
                })
                .collect();
            let load = |plan| LocalCluster::load(plan, &program.weights, Device::Cpu).expect("load");
            let (mut a, mut b) = (load(&fused), load(&unfused));
            let before = fused_counts();
            let got = run(&mut a, entry, &inputs);
            let after = fused_counts();
            let want = run(&mut b, entry, &inputs);
            let at = format!("zoo/{family}/{file}");
            if after.1 != before.1 {
                problems.push(format!("{at}: {} region(s) fell back to libtorch", after.1 - before.1));
            }
            for (name, w) in &want {
                if let Err(e) = compare(&format!("{at}: {name}"), &got[name], w, RTOL, ATOL) {
                    problems.push(e);
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} zoo graphs compared");
    assert!(total_regions > 0, "no zoo plan has a fused region");
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

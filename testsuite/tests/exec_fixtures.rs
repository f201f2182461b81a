//! The executor end to end on every fixture family (`fixtures/`, see its README): each graph in
//! its three forms (default `.pt2`, core-ATen `_core.pt2`, `.onnx`; `edge` has no ONNX form),
//! compiled for one worker and split across two, run with [`LocalCluster`] and compared with the
//! eager PyTorch outputs (`<g>.outputs.safetensors`) to fp32 rtol 1e-4, atol 1e-5.
//!
//! Also: prefill → decode chained through the state slots (gpt2, llama), and one plan with
//! symbolic dims run at several prompt lengths, with out-of-range and inconsistent inputs
//! giving typed errors.

mod exec_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use exec_common::{compare, compile, read_safetensors, test_device, working_devices, ATOL, RTOL};
use genie_codegen::ProgramPlan;
use genie_ir::Program;
use genie_runtime::exec::ExecError;
use genie_runtime::local::LocalCluster;
use serde_json::Value;
use tch::Tensor;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixture("manifest.json")).expect("fixtures/manifest.json");
    serde_json::from_str(&text).expect("manifest.json parses")
}

/// The three export forms.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    Pt2,
    Core,
    Onnx,
}

impl Form {
    fn file(self, graph: &str) -> String {
        match self {
            Form::Pt2 => format!("{graph}.pt2"),
            Form::Core => format!("{graph}_core.pt2"),
            Form::Onnx => format!("{graph}.onnx"),
        }
    }

    fn entry(self, graph: &str) -> String {
        match self {
            Form::Core => format!("{graph}_core"),
            _ => graph.to_string(),
        }
    }
}

/// A graph's names in one form: reference name (default export) → the form's name, for inputs
/// and outputs, in signature order.
struct Names {
    inputs: Vec<(String, String)>,
    outputs: Vec<(String, String)>,
}

fn names(family: &str, graph: &str, form: Form) -> Names {
    let m = manifest();
    let g = &m[family]["graphs"][graph];
    let list = |v: &Value| -> Vec<String> {
        v.as_array().unwrap_or(&Vec::new()).iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect()
    };
    let default_in: Vec<String> =
        g["inputs"].as_array().expect("inputs").iter().map(|i| i["name"].as_str().unwrap().to_string()).collect();
    let default_out: Vec<String> =
        g["outputs"].as_array().expect("outputs").iter().map(|i| i["name"].as_str().unwrap().to_string()).collect();
    let (ins, outs) = match form {
        Form::Pt2 => (default_in.clone(), default_out.clone()),
        Form::Core => (default_in.clone(), list(&g["core_outputs"])),
        Form::Onnx => (list(&g["onnx_inputs"]), list(&g["onnx_outputs"])),
    };
    assert_eq!(ins.len(), default_in.len(), "{family}/{graph} {form:?}: manifest inputs");
    assert_eq!(outs.len(), default_out.len(), "{family}/{graph} {form:?}: manifest outputs");
    Names { inputs: default_in.into_iter().zip(ins).collect(), outputs: default_out.into_iter().zip(outs).collect() }
}

fn load(files: &[String]) -> Program {
    let paths: Vec<PathBuf> = files.iter().map(|f| fixture(f)).collect();
    genie_frontends::load(&paths).unwrap_or_else(|e| panic!("{files:?}: {e}"))
}

fn cluster(program: &Program, plan: &ProgramPlan) -> LocalCluster {
    LocalCluster::load(plan, &program.weights, test_device()).unwrap_or_else(|e| panic!("{}: load: {e}", program.name))
}

/// Run one call of `graph` with the fixture's inputs (state inputs passed by name) and compare
/// every output (user outputs as returned, state outputs from their slots).
fn run_and_check(c: &mut LocalCluster, family: &str, graph: &str, form: Form) -> Result<(), String> {
    let n = names(family, graph, form);
    let entry = form.entry(graph);
    let ref_in = read_safetensors(&fixture(&format!("{family}/{graph}.inputs.safetensors")));
    let ref_out = read_safetensors(&fixture(&format!("{family}/{graph}.outputs.safetensors")));
    let inputs: BTreeMap<String, Tensor> =
        n.inputs.iter().map(|(r, name)| (name.clone(), ref_in[r].shallow_clone())).collect();
    let outs = c.run(&entry, &inputs).map_err(|e| format!("{entry}: {e}"))?;
    check_outputs(c, &entry, &n, &outs, &ref_out)
}

fn check_outputs(
    c: &LocalCluster,
    entry: &str,
    n: &Names,
    outs: &BTreeMap<String, Tensor>,
    ref_out: &BTreeMap<String, Tensor>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (r, name) in &n.outputs {
        let got = outs.get(name).or_else(|| c.state_output(entry, name));
        match got {
            Some(t) => {
                if let Err(e) = compare(&format!("{entry}.{name} (reference `{r}`)"), t, &ref_out[r], RTOL, ATOL) {
                    problems.push(e);
                }
            }
            None => problems.push(format!("{entry}: no output `{name}` (got {:?})", outs.keys().collect::<Vec<_>>())),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Every graph of a family in every form, on each worker count (more than one: split).
fn check_family(family: &str, graphs: &[&str], forms: &[Form], worker_counts: &[usize]) {
    let mut problems = Vec::new();
    for &form in forms {
        let files: Vec<String> = graphs.iter().map(|g| format!("{family}/{}", form.file(g))).collect();
        let program = load(&files);
        for &workers in worker_counts {
            let plan = match compile(&program, workers) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{files:?} on {workers} worker(s): {e}"));
                    continue;
                }
            };
            let devices = working_devices(&plan);
            if devices.len() != workers {
                problems.push(format!("{files:?}: {workers} worker(s) but work on {devices:?}"));
            }
            let mut c = cluster(&program, &plan);
            for graph in graphs {
                c.reset_state();
                if let Err(e) = run_and_check(&mut c, family, graph, form) {
                    problems.push(format!("{family}/{} on {workers} worker(s):\n{e}", form.file(graph)));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n\n"));
}

const ALL_FORMS: [Form; 3] = [Form::Pt2, Form::Core, Form::Onnx];

#[test]
fn gpt2_every_form_matches_eager() {
    check_family("gpt2", &["prefill", "decode"], &ALL_FORMS, &[1, 2]);
}

#[test]
fn llama_every_form_matches_eager() {
    check_family("llama", &["prefill", "decode"], &ALL_FORMS, &[1, 2]);
}

#[test]
fn bert_every_form_matches_eager() {
    check_family("bert", &["model"], &ALL_FORMS, &[1, 2]);
}

#[test]
fn vit_every_form_matches_eager() {
    check_family("vit", &["model"], &ALL_FORMS, &[1, 2]);
}

#[test]
fn resnet_every_form_matches_eager() {
    check_family("resnet", &["model"], &ALL_FORMS, &[1, 2]);
}

#[test]
fn edge_every_form_matches_eager() {
    // One layer (`lin`), and a layer is placement's unit: there is nothing to split.
    check_family("edge", &["model"], &[Form::Pt2, Form::Core], &[1]);
}

/// Prefill, then decode with the KV cache kept in the slots: decode's inputs in the fixture are
/// the prefill outputs for the prompt, so its reference outputs apply to the chained run.
fn check_chain(family: &str) {
    let mut problems = Vec::new();
    for form in ALL_FORMS {
        let program =
            load(&[format!("{family}/{}", form.file("prefill")), format!("{family}/{}", form.file("decode"))]);
        for workers in [1, 2] {
            let plan = compile(&program, workers).unwrap_or_else(|e| panic!("{family} {form:?}: {e}"));
            let mut c = cluster(&program, &plan);
            let prefill = names(family, "prefill", form);
            let decode = names(family, "decode", form);
            let ids = read_safetensors(&fixture(&format!("{family}/prefill.inputs.safetensors")));
            let inputs: BTreeMap<String, Tensor> =
                prefill.inputs.iter().map(|(r, n)| (n.clone(), ids[r].shallow_clone())).collect();
            let pre_ref = read_safetensors(&fixture(&format!("{family}/prefill.outputs.safetensors")));
            let outs = c.run(&form.entry("prefill"), &inputs).unwrap_or_else(|e| panic!("{family} {form:?}: {e}"));
            if let Err(e) = check_outputs(&c, &form.entry("prefill"), &prefill, &outs, &pre_ref) {
                problems.push(format!("{family} {form:?} {workers}w prefill: {e}"));
            }
            // Decode: only the new token; the past comes from the slots prefill wrote.
            let dec_in = read_safetensors(&fixture(&format!("{family}/decode.inputs.safetensors")));
            let (r, token) = &decode.inputs[0];
            let inputs: BTreeMap<String, Tensor> = [(token.clone(), dec_in[r].shallow_clone())].into();
            let dec_ref = read_safetensors(&fixture(&format!("{family}/decode.outputs.safetensors")));
            match c.run(&form.entry("decode"), &inputs) {
                Ok(outs) => {
                    if let Err(e) = check_outputs(&c, &form.entry("decode"), &decode, &outs, &dec_ref) {
                        problems.push(format!("{family} {form:?} {workers}w decode after prefill: {e}"));
                    }
                }
                Err(e) => problems.push(format!("{family} {form:?} {workers}w decode after prefill: {e}")),
            }
            // A second decode step runs on the grown cache (one longer).
            match c.run(&form.entry("decode"), &inputs) {
                Ok(_) => {
                    let (_, present) = &decode.outputs[1];
                    let len = c.state_output(&form.entry("decode"), present).map(|t| t.size()[2]);
                    if len != Some(7) {
                        problems.push(format!("{family} {form:?}: second decode step's cache length {len:?}"));
                    }
                }
                Err(e) => problems.push(format!("{family} {form:?} {workers}w second decode step: {e}")),
            }
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n\n"));
}

#[test]
fn gpt2_prefill_then_decode_through_the_slots() {
    check_chain("gpt2");
}

#[test]
fn llama_prefill_then_decode_through_the_slots() {
    check_chain("llama");
}

/// One gpt2 prefill plan (symbolic prompt length) at several lengths: each prefix of the prompt
/// gives the reference's first rows (a causal model's position i sees only positions ≤ i).
/// Out-of-range and inconsistent shapes are typed errors.
#[test]
fn symbolic_prompt_lengths_run_on_one_plan() {
    let program = load(&["gpt2/prefill.pt2".to_string(), "gpt2/decode.pt2".to_string()]);
    let plan = compile(&program, 2).unwrap();
    let mut c = cluster(&program, &plan);
    let ids = &read_safetensors(&fixture("gpt2/prefill.inputs.safetensors"))["input_ids"];
    let reference = read_safetensors(&fixture("gpt2/prefill.outputs.safetensors"));
    for len in [2, 3, 4, 5] {
        let prompt = ids.narrow(1, 0, len);
        let outs = c.run("prefill", &[("input_ids".to_string(), prompt)].into()).unwrap();
        let logits = &outs["linear_8"];
        assert_eq!(logits.size(), [1, len, 128]);
        compare(&format!("logits at length {len}"), logits, &reference["linear_8"].narrow(1, 0, len), RTOL, ATOL)
            .unwrap();
        let k = c.state_output("prefill", "transpose_1").unwrap();
        compare(&format!("K at length {len}"), k, &reference["transpose_1"].narrow(2, 0, len), RTOL, ATOL).unwrap();
    }
    // Longer than the reference prompt: runs, with the right shapes.
    let long = Tensor::cat(&[ids, ids, ids], 1);
    let outs = c.run("prefill", &[("input_ids".to_string(), long)].into()).unwrap();
    assert_eq!(outs["linear_8"].size(), [1, 15, 128]);

    // s70 ∈ [2, inf]: a one-token prompt is out of range.
    let err = c.run("prefill", &[("input_ids".to_string(), ids.narrow(1, 0, 1))].into()).unwrap_err();
    assert!(matches!(err, ExecError::SymbolOutOfRange { value: 1, min: 2, .. }), "{err}");
    // A static dim that does not match: batch 2 where the plan says 1.
    let err = c.run("prefill", &[("input_ids".to_string(), Tensor::cat(&[ids, ids], 0))].into()).unwrap_err();
    assert!(matches!(err, ExecError::ShapeMismatch { .. }), "{err}");
    // Wrong rank, wrong dtype.
    let err = c.run("prefill", &[("input_ids".to_string(), ids.flatten(0, -1))].into()).unwrap_err();
    assert!(matches!(err, ExecError::ShapeMismatch { .. }), "{err}");
    let err = c.run("prefill", &[("input_ids".to_string(), ids.to_kind(tch::Kind::Float))].into()).unwrap_err();
    assert!(matches!(err, ExecError::ShapeMismatch { .. }), "{err}");
    // An undefined tensor, missing and unknown inputs.
    let err = c.run("prefill", &[("input_ids".to_string(), Tensor::new())].into()).unwrap_err();
    assert!(matches!(err, ExecError::Input { .. }), "{err}");
    let err = c.run("prefill", &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, ExecError::Input { .. }), "{err}");
    let err = c.run("prefill", &[("nope".to_string(), ids.shallow_clone())].into()).unwrap_err();
    assert!(matches!(err, ExecError::Input { .. }), "{err}");
    // Decode with an empty session: no cache yet.
    c.reset_state();
    let err = c.run("decode", &[("input_ids".to_string(), ids.narrow(1, 0, 1))].into()).unwrap_err();
    assert!(matches!(err, ExecError::Input { .. }), "{err}");
    // Decode with past caches whose lengths disagree (s15 read from one, checked on the others).
    let past = read_safetensors(&fixture("gpt2/decode.inputs.safetensors"));
    let mut inputs: BTreeMap<String, Tensor> = past.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    inputs.insert("past_value_1".into(), past["past_value_1"].narrow(2, 0, 4));
    let err = c.run("decode", &inputs).unwrap_err();
    assert!(matches!(err, ExecError::ShapeMismatch { ref name, .. } if name == "past_value_1"), "{err}");
}

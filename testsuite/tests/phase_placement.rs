//! Placement of an LLM's phases on every decoder fixture: with a compute-rich and a
//! bandwidth-rich device and a fast link, prefill runs on the first, decode on the second, and
//! the KV cache is handed over once (its bytes at the request's prompt length); with a 1 MB/s
//! link between them the phases stay together.

use std::path::{Path, PathBuf};

use genie_codegen::summary::summary;
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_ir::{Phase, Program, RequestShape};
use genie_passes::placement::{ClusterSpec, LinkSpec, PhaseChoice, Policy};
use genie_testsuite::decoders;

fn unlike_devices() -> ClusterSpec {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/prefill_decode_cluster.ron"))
            .expect("the example cluster");
    ClusterSpec::from_ron(&text).expect("the example cluster parses")
}

fn slow_link(mut cluster: ClusterSpec) -> ClusterSpec {
    cluster.links.push(LinkSpec { from: "compute".into(), to: "bandwidth".into(), bandwidth: 1e6, latency: 1e-5 });
    cluster
}

const REQUEST: RequestShape = RequestShape { prompt_len: 512, new_tokens: 64 };

/// The names of the prefill and the decode entry (file stems).
fn phases(plan: &genie_codegen::ProgramPlan) -> (String, String) {
    let named = |phase: Phase| plan.entries.iter().find(|e| e.phase == phase).expect("both phases").name.clone();
    (named(Phase::LlmPrefill), named(Phase::LlmDecode))
}

fn compile(files: &[PathBuf], cluster: &ClusterSpec, policy: Policy) -> (genie_codegen::ProgramPlan, Program) {
    let mut program = genie_frontends::load(files).expect("fixture loads");
    let options = CompileOptions { request: Some(REQUEST), policy, ..CompileOptions::default() };
    let plan = compile_program(&mut program, cluster, &options).unwrap_or_else(|e| panic!("{files:?}: {e:#}"));
    (plan, program)
}

/// Bytes of the KV cache prefill writes, at the prompt length (each symbol clamped to its range).
fn kv_bytes_at_prompt(program: &Program) -> u64 {
    let slots = program.state_slots();
    let prefill = program.entries.iter().find(|g| g.phase == Phase::LlmPrefill).expect("a prefill entry");
    let bindings = prefill
        .symbols
        .iter()
        .map(|(s, r)| (s.clone(), REQUEST.prompt_len.max(r.min).min(r.max.unwrap_or(i64::MAX))))
        .collect();
    prefill
        .outputs
        .iter()
        .filter(|o| slots.of_output(&prefill.name, &o.name).is_some())
        .map(|o| prefill.value(o.value).ty.bytes().eval(&bindings).unwrap() as u64)
        .sum()
}

#[test]
fn prefill_on_the_compute_device_and_decode_on_the_bandwidth_device_with_one_handoff() {
    for (name, files) in decoders() {
        let (plan, program) = compile(&files, &unlike_devices(), Policy::MinLatency);
        let s = summary(&plan);
        let (prefill, decode) = phases(&plan);
        assert_eq!(s.entries[&prefill].devices, ["compute"], "{name}");
        assert_eq!(s.entries[&decode].devices, ["bandwidth"], "{name}");
        assert_eq!(s.state_handoffs.len(), 1, "{name}: {:?}", s.state_handoffs);
        let h = &s.state_handoffs[0];
        assert_eq!(
            (h.from_entry.as_str(), h.to_entry.as_str(), h.from_device.as_str(), h.to_device.as_str()),
            (prefill.as_str(), decode.as_str(), "compute", "bandwidth"),
            "{name}"
        );
        assert_eq!(h.bytes, kv_bytes_at_prompt(&program), "{name}: the whole KV cache at the prompt length");
        assert_eq!(h.tensors, plan.state_slots.len(), "{name}: every slot once");
        assert!(h.layerwise, "{name}: the first layer's KV is sent while later layers compute");
        // Every KV slot lives on decode's device; decode's calls move no state.
        assert!(plan.state_slots.iter().all(|slot| slot.device == "bandwidth"), "{name}");
        let decode = plan.entry(&decode).unwrap();
        assert!(decode.handoffs.is_empty() && decode.transfers.iter().all(|t| t.from == "client" || t.to == "client"));
        let e = s.estimates.as_ref().expect("a phase decision");
        assert!(e.disaggregated, "{name}: {}", e.reason);
        let together = e.co_located.as_ref().expect("the phases fit together too");
        assert!(e.chosen.request_s(&REQUEST) < together.request_s(&REQUEST), "{name}: {}", e.reason);
        assert!(e.reason.starts_with("apart"), "{name}: {}", e.reason);
        // `genie inspect PLAN --format dot` draws each handed-over tensor as a bold edge from
        // prefill's output to decode's input.
        let dot = genie_codegen::summary::dot(&plan);
        assert_eq!(dot.matches("handoff ").count(), h.tensors, "{name}");
        assert!(dot.contains("compute→bandwidth, layer by layer") && dot.trim_end().ends_with('}'), "{name}");
    }
}

#[test]
fn over_a_one_megabyte_per_second_link_the_phases_stay_together() {
    for (name, files) in decoders() {
        let (plan, _) = compile(&files, &slow_link(unlike_devices()), Policy::MinLatency);
        let s = summary(&plan);
        let (prefill, decode) = phases(&plan);
        assert!(s.state_handoffs.is_empty(), "{name}: {:?}", s.state_handoffs);
        assert!(plan.entries.iter().all(|e| e.handoffs.is_empty()));
        assert_eq!(s.entries[&prefill].devices, s.entries[&decode].devices, "{name}");
        let e = s.estimates.as_ref().expect("a phase decision");
        assert!(!e.disaggregated, "{name}: {}", e.reason);
        assert_eq!(e.co_located.as_ref(), Some(&e.chosen), "{name}");
        // The best split was found and lost on the handoff's cost.
        let apart = e.disaggregated_alternative.as_ref().expect("a placement apart fits");
        assert!(apart.ttft_s > e.chosen.ttft_s, "{name}: {}", e.reason);
        assert!(e.reason.starts_with("together"), "{name}: {}", e.reason);
    }
}

/// `--disaggregate never` and `always` override the decision; `min-ttft` and `min-tpot` judge
/// by their own goal.
#[test]
fn the_choice_can_be_forced_and_the_goal_changed() {
    let (_, files) = decoders().into_iter().next().unwrap();
    let forced = |cluster: &ClusterSpec, phases: PhaseChoice| {
        let mut program = genie_frontends::load(&files).unwrap();
        let options = CompileOptions { request: Some(REQUEST), phases, ..CompileOptions::default() };
        summary(&compile_program(&mut program, cluster, &options).unwrap())
    };
    let never = forced(&unlike_devices(), PhaseChoice::Never);
    assert!(never.state_handoffs.is_empty() && !never.estimates.unwrap().disaggregated);
    let always = forced(&slow_link(unlike_devices()), PhaseChoice::Always);
    assert_eq!(always.state_handoffs.len(), 1);
    assert!(always.estimates.unwrap().reason.contains("--disaggregate always"));
    let one = ClusterSpec::local_workers(1, 1 << 30);
    let mut program = genie_frontends::load(&files).unwrap();
    let options = CompileOptions { request: Some(REQUEST), phases: PhaseChoice::Always, ..CompileOptions::default() };
    let err = compile_program(&mut program, &one, &options).unwrap_err();
    assert!(anyhow_chain(&err).contains("at least two devices"), "{err}");
    for policy in [Policy::MinTtft, Policy::MinTpot] {
        let (plan, _) = compile(&files, &unlike_devices(), policy);
        let e = summary(&plan).estimates.unwrap();
        let together = e.co_located.unwrap();
        match policy {
            Policy::MinTtft => assert!(e.chosen.ttft_s <= together.ttft_s, "{}", e.reason),
            _ => assert!(e.chosen.tpot_s <= together.tpot_s, "{}", e.reason),
        }
    }
}

fn anyhow_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}

//! Placement on programs built in code: purity, `ann.device` on every node, shared layers
//! across entries, region-based units when names say nothing, policies.

use genie_ir::example::tiny_decoder_pair;
use genie_ir::synthetic::{synthetic_llama, ExportForm, LlamaShape};
use genie_ir::{Program, ValueDef};
use genie_passes::placement::{schedule, ClusterSpec, PlacementError, PlacementOptions, Policy};
use genie_passes::PassManager;

fn passes(mut p: Program) -> Program {
    PassManager::standard().run(&mut p, None).expect("passes run");
    p
}

#[test]
fn schedule_is_pure_and_deterministic() {
    let program = passes(tiny_decoder_pair().unwrap());
    let before = program.clone();
    let cluster = ClusterSpec::local_workers(2, 30_000);
    let options = PlacementOptions { max_seq: Some(8), ..Default::default() };
    let a = schedule(&program, &cluster, &options).unwrap();
    let b = schedule(&program, &cluster, &options).unwrap();
    assert_eq!(a, b);
    assert_eq!(program, before, "schedule does not touch the program");
    assert!(a.memory.iter().all(|m| m.peak_bytes <= m.memory_bytes));
    assert_eq!(a.memory.iter().filter(|m| m.nodes > 0).count(), 2, "30 kB each cannot hold it all: {:?}", a.memory);
}

#[test]
fn apply_writes_a_device_on_every_node_and_layers_match_across_entries() {
    let mut program = passes(tiny_decoder_pair().unwrap());
    let placement = schedule(
        &program,
        &ClusterSpec::local_workers(2, 30_000),
        &PlacementOptions { max_seq: Some(8), ..Default::default() },
    )
    .unwrap();
    placement.apply(&mut program);
    let mut by_weight: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for g in &program.entries {
        for n in &g.nodes {
            let d = n.ann.device.clone().expect("every node placed");
            for v in n.inputs() {
                if matches!(g.value(v).def, ValueDef::Weight(_)) {
                    by_weight.entry(g.value(v).name.clone()).or_default().insert(d.clone());
                }
            }
        }
    }
    for (w, devices) in by_weight {
        assert_eq!(devices.len(), 1, "prefill and decode read {w} on {devices:?}");
    }
}

#[test]
fn units_come_from_regions_when_weight_names_say_nothing() {
    let mut program = synthetic_llama(LlamaShape::small(3), ExportForm::Default).unwrap();
    for g in &mut program.entries {
        for (i, v) in g.values.iter_mut().enumerate() {
            if matches!(v.def, ValueDef::Weight(_)) {
                v.name = format!("val_{i}");
            }
        }
    }
    let program = passes(program);
    let placement = schedule(&program, &ClusterSpec::local_workers(2, 1 << 30), &PlacementOptions::default()).unwrap();
    let keys: Vec<&str> = placement.units.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["embedding", "block.0", "block.1", "block.2", "lm_head"]);
}

#[test]
fn policies_parse_and_a_program_too_large_is_refused() {
    assert_eq!("balance-memory".parse::<Policy>(), Ok(Policy::BalanceMemory));
    assert_eq!("min-latency".parse::<Policy>(), Ok(Policy::MinLatency));
    assert!("fastest".parse::<Policy>().unwrap_err().contains("min-latency"));
    let program = passes(tiny_decoder_pair().unwrap());
    let err = schedule(&program, &ClusterSpec::local_workers(2, 4_000), &PlacementOptions::default()).unwrap_err();
    assert!(matches!(err, PlacementError::DoesNotFit { .. }));
    assert!(err.to_string().contains("largest consumers: "), "{err}");
    let bad = ClusterSpec::local_workers(0, 1);
    assert!(matches!(schedule(&program, &bad, &PlacementOptions::default()), Err(PlacementError::Cluster(_))));
}

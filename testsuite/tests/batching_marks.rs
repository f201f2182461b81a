//! `mark-batching` on every decoder fixture, in every export form: the decode entry's nodes
//! are all marked; whatever reads a state input runs per call; every dense layer (a contraction
//! with a weight: the projections, the MLP, the LM head) and every embedding lookup runs once on
//! the stacked rows; prefill, which reads no state, is not marked.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use genie_ir::registry;
use genie_ir::{Batching, Program, ValueDef, ValueId};
use genie_passes::PassManager;
use genie_testsuite::decoders;

fn compiled(files: &[PathBuf]) -> Program {
    let mut program = genie_frontends::load(files).expect("the fixture loads");
    PassManager::standard().run(&mut program, None).expect("the passes run");
    program
}

#[test]
fn decode_steps_batch_dense_layers_and_run_state_per_call() {
    for (name, files) in decoders() {
        let program = compiled(&files);
        let reader = &program.state_bindings.first().unwrap_or_else(|| panic!("{name}: no state binding")).to.entry;
        let decode = program.entries.iter().find(|g| &g.name == reader).expect("decode");
        let prefill = program.entries.iter().find(|g| &g.name != reader).expect("prefill");
        assert!(prefill.nodes.iter().all(|n| n.ann.batching.is_none()), "{name}: prefill is not marked");
        let state: HashSet<ValueId> = program
            .state_bindings
            .iter()
            .filter(|b| &b.to.entry == reader)
            .filter_map(|b| decode.inputs.iter().copied().find(|&v| decode.value(v).name == b.to.name))
            .collect();
        assert!(!state.is_empty(), "{name}: decode reads state");
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut per_call: BTreeMap<String, usize> = BTreeMap::new();
        for n in &decode.nodes {
            let mode = n.ann.batching.unwrap_or_else(|| panic!("{name}: {} is not marked", n.op));
            let reads = n.inputs();
            if reads.iter().any(|v| state.contains(v)) {
                assert_eq!(mode, Batching::PerCall, "{name}: {} reads state", n.op);
            }
            let reads_weight = reads.iter().any(|&v| matches!(decode.value(v).def, ValueDef::Weight(_)));
            let facts = registry::facts(&n.op);
            let dense = facts.contraction.is_some() && reads_weight;
            if dense || facts.lookup.is_some() {
                assert!(
                    matches!(mode, Batching::Rows { .. }),
                    "{name}: {} {} (a dense layer or lookup) runs {mode:?}",
                    n.op,
                    n.outputs[0]
                );
            }
            let key = match mode {
                Batching::Rows { .. } => "rows",
                Batching::PerCall => "per call",
                Batching::Shared => "shared",
            };
            *counts.entry(key.to_string()).or_default() += 1;
            if mode == Batching::PerCall {
                *per_call.entry(n.op.clone()).or_default() += 1;
            }
        }
        eprintln!("{name}: {counts:?}; per call: {per_call:?}");
    }
}

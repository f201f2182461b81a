//! Shared test helpers: a multi-layer GPT-2-style prefill + decode program, the compile pipeline
//! (passes → placement → codegen) and the plan invariants.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use genie_codegen::{ProgramPlan, Step, CLIENT};
use genie_ir::{Arg, Program, Residency, ValueId};
use genie_passes::placement::{schedule, ClusterSpec, Placement, PlacementError, PlacementOptions};
use genie_passes::PassManager;

/// Shape of the GPT-2-style test model (the IR's example builder).
pub use genie_ir::example::GptShape as Gpt;

/// A GPT-2-style prefill + decode program with `shape.layers` layers, before any pass.
pub fn gpt_pair(shape: Gpt) -> Program {
    genie_ir::example::gpt_pair(shape).expect("the example program builds")
}

/// Run the standard passes.
pub fn passes(mut p: Program) -> Program {
    PassManager::standard().run(&mut p, None).expect("passes run");
    p
}

/// Place and generate (the program has been through the passes).
pub fn compile(
    program: &Program,
    cluster: &ClusterSpec,
    options: &PlacementOptions,
) -> Result<(Program, Placement, ProgramPlan), PlacementError> {
    let placement = schedule(program, cluster, options)?;
    let mut placed = program.clone();
    placement.apply(&mut placed);
    let plan = genie_codegen::generate(&placed).expect("codegen succeeds");
    Ok((placed, placement, plan))
}

/// Check every invariant a plan must hold; panics with a message naming the breakage.
pub fn check_plan(program: &Program, placement: &Placement, plan: &ProgramPlan) {
    check_fused(plan);
    assert_eq!(program.entries.len(), plan.entries.len(), "one entry plan per entry");
    assert_eq!(plan.devices.len(), placement.memory.len(), "one device use per device");
    for (g, ep) in program.entries.iter().zip(&plan.entries) {
        assert_eq!(g.name, ep.name);
        // Every node is executed exactly once, on its placed device.
        let mut execs: HashMap<u32, Vec<&str>> = HashMap::new();
        for dp in &ep.plans {
            for s in &dp.steps {
                if let Step::Exec { node, .. } = s {
                    execs.entry(node.0).or_default().push(dp.device.as_str());
                }
            }
        }
        for (ni, node) in g.nodes.iter().enumerate() {
            let on = execs.get(&(ni as u32)).unwrap_or_else(|| panic!("{}: n{ni} never executed", g.name));
            assert_eq!(on.len(), 1, "{}: n{ni} executed {} times", g.name, on.len());
            assert_eq!(Some(on[0]), node.ann.device.as_deref(), "{}: n{ni} on the wrong device", g.name);
        }
        assert_eq!(execs.len(), g.nodes.len());
        // Every transfer has exactly one Send (on `from`) and one Recv (on `to`).
        let mut sends: HashMap<u32, usize> = HashMap::new();
        let mut recvs: HashMap<u32, usize> = HashMap::new();
        for dp in &ep.plans {
            for s in &dp.steps {
                match s {
                    Step::Send { transfer, tensor, to } => {
                        let t = &ep.transfers[*transfer as usize];
                        assert_eq!((&t.from, &t.to, t.tensor), (&dp.device, to, *tensor), "send t{transfer}");
                        *sends.entry(*transfer).or_default() += 1;
                    }
                    Step::Recv { transfer, tensor, from } => {
                        let t = &ep.transfers[*transfer as usize];
                        assert_eq!((&t.from, &t.to, t.tensor), (from, &dp.device, *tensor), "recv t{transfer}");
                        *recvs.entry(*transfer).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
        for t in &ep.transfers {
            assert_eq!(sends.get(&t.id), Some(&1), "{}: t{} sends", g.name, t.id);
            assert_eq!(recvs.get(&t.id), Some(&1), "{}: t{} recvs", g.name, t.id);
            assert_ne!(t.from, t.to);
            assert_ne!(t.residency, Some(Residency::PersistentWeight), "{}: weight {} travels", g.name, t.name);
        }
        // Every cross-device edge is a transfer.
        let dev = |n: genie_ir::NodeId| g.node(n).ann.device.clone().unwrap();
        let slot_of: BTreeMap<(String, String), String> = plan
            .state_slots
            .iter()
            .flat_map(|s| s.reads.iter().map(move |p| ((p.entry.clone(), p.name.clone()), s.device.clone())))
            .collect();
        for e in g.edges() {
            let to = dev(e.consumer);
            let from = match e.producer {
                Some(p) => dev(p),
                None => match &g.value(e.value).def {
                    genie_ir::ValueDef::Input(_) => slot_of
                        .get(&(g.name.clone(), g.value(e.value).name.clone()))
                        .cloned()
                        .unwrap_or_else(|| CLIENT.to_string()),
                    _ => continue,
                },
            };
            if from != to {
                let n = ep.transfers.iter().filter(|t| t.tensor == e.value && t.to == to && t.from == from).count();
                assert_eq!(
                    n, 1,
                    "{}: edge {} -> {} crosses {from} -> {to} without one transfer",
                    g.name, e.value, e.consumer
                );
            }
        }
        // No tensor is used after it is freed, nor freed twice; nothing is used before it exists.
        for dp in &ep.plans {
            let mut freed: BTreeSet<ValueId> = BTreeSet::new();
            let mut have: BTreeSet<ValueId> = BTreeSet::new();
            for s in &dp.steps {
                for t in s.tensors() {
                    assert!(!freed.contains(&t), "{}: {} uses {t} after its Free", g.name, dp.device);
                }
                match s {
                    Step::Free { tensor } => {
                        freed.insert(*tensor);
                    }
                    Step::Recv { tensor, .. } => {
                        have.insert(*tensor);
                    }
                    Step::Exec { args, outputs, .. } => {
                        for v in args.iter().flat_map(Arg::values) {
                            let info = &ep.tensors[&v];
                            let resident = matches!(
                                info.kind,
                                genie_codegen::TensorKind::Weight { .. }
                                    | genie_codegen::TensorKind::Const { .. }
                                    | genie_codegen::TensorKind::State { .. }
                            );
                            assert!(
                                resident || have.contains(&v),
                                "{}: {} uses {v} before it has it",
                                g.name,
                                dp.device
                            );
                        }
                        have.extend(outputs.iter().copied());
                    }
                    _ => {}
                }
            }
        }
    }
    // State co-location: every slot's readers run on the slot's device, and so do its writers,
    // except an entry that does not read the slot, which hands its output over (one handoff).
    for slot in &plan.state_slots {
        for port in slot.writes.iter() {
            let g = program.entry(&port.entry).unwrap();
            let v = g.outputs.iter().find(|o| o.name == port.name).unwrap().value;
            let Some(p) = g.producer(v) else { continue };
            let ep = plan.entry(&port.entry).unwrap();
            let handed: Vec<_> = ep.handoffs.iter().filter(|h| h.slot == slot.id && h.output == port.name).collect();
            if g.node(p).ann.device.as_ref() == Some(&slot.device) {
                assert!(handed.is_empty(), "slot {} written in place and handed over", slot.name);
                continue;
            }
            assert!(!slot.reads.iter().any(|r| r.entry == port.entry), "slot {} read and written apart", slot.name);
            assert_eq!(handed.len(), 1, "slot {} written on another device without one handoff", slot.name);
            let t = ep.transfers.iter().find(|t| t.id == handed[0].transfer).unwrap();
            assert_eq!((&t.from, &t.to, t.tensor), (g.node(p).ann.device.as_ref().unwrap(), &slot.device, v));
            let receiver = ep.plan(&slot.device).unwrap();
            let recv =
                receiver.steps.iter().position(|s| matches!(s, Step::Recv { transfer, .. } if *transfer == t.id));
            let save = receiver
                .steps
                .iter()
                .position(|s| matches!(s, Step::SaveState { tensor, slot: id } if *tensor == v && *id == slot.id));
            assert!(recv.is_some() && save > recv, "slot {}: the handoff is received, then saved", slot.name);
        }
        for port in slot.reads.iter() {
            let g = program.entry(&port.entry).unwrap();
            let v = g.inputs.iter().copied().find(|v| g.value(*v).name == port.name).unwrap();
            for n in &g.users()[v.index()] {
                assert_eq!(g.node(*n).ann.device.as_ref(), Some(&slot.device), "slot {} reader", slot.name);
            }
        }
    }
    // KV-cache values: producer and consumers on one device.
    for g in &program.entries {
        let users = g.users();
        for (vi, val) in g.values.iter().enumerate() {
            if val.ann.residency != Some(Residency::StatefulKvCache) {
                continue;
            }
            let mut devs: BTreeSet<String> = users[vi].iter().map(|n| g.node(*n).ann.device.clone().unwrap()).collect();
            if let Some(p) = g.producer(ValueId(vi as u32)) {
                devs.insert(g.node(p).ann.device.clone().unwrap());
            }
            assert!(devs.len() <= 1, "{}: KV value {} spans {devs:?}", g.name, val.name);
        }
    }
    // Memory: within capacity, and placement's model agrees with the plan's.
    for (d, use_) in plan.devices.iter().zip(&placement.memory) {
        assert!(d.peak_bytes <= d.memory_bytes, "{} peak {} > {}", d.name, d.peak_bytes, d.memory_bytes);
        assert_eq!(d.weight_bytes, use_.weight_bytes, "{} weights", d.name);
        assert_eq!(d.kv_bytes, use_.kv_bytes, "{} kv", d.name);
        assert_eq!(d.activation_bytes, use_.activation_bytes, "{} activations", d.name);
    }
}

/// Sizes for tests.
pub fn total_weight_bytes(p: &Program) -> u64 {
    p.weights.total_bytes()
}

/// Options with a sequence length.
pub fn opts(max_seq: Option<i64>) -> PlacementOptions {
    PlacementOptions { max_seq, ..PlacementOptions::default() }
}

/// Symbol bindings helper.
pub fn bindings(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Fused regions: each region's nodes are `Exec` steps of its device plan with only `Free` steps
/// between them, each with a registry scalar form; its outputs are computed inside, read outside
/// and of one shape; nothing inside that is read outside is missing from the outputs; a bias
/// given to a region belongs to a dense layer of the same device whose output only the region
/// reads.
pub fn check_fused(plan: &ProgramPlan) {
    for e in &plan.entries {
        for dp in &e.plans {
            let exec_at: HashMap<genie_ir::NodeId, usize> = dp
                .steps
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    Step::Exec { node, .. } => Some((*node, i)),
                    _ => None,
                })
                .collect();
            let reads = |i: usize| -> Vec<ValueId> {
                match &dp.steps[i] {
                    Step::Exec { args, .. } => args
                        .iter()
                        .flat_map(|a| match a {
                            Arg::Tensor(v) => vec![*v],
                            Arg::Tensors(vs) => vs.clone(),
                            _ => vec![],
                        })
                        .collect(),
                    Step::Send { tensor, .. } | Step::SaveState { tensor, .. } => vec![*tensor],
                    _ => vec![],
                }
            };
            for r in &dp.fused {
                let at: Vec<usize> = r.nodes.iter().map(|n| exec_at[n]).collect();
                let (first, last) = (at[0], *at.last().expect("a region has nodes"));
                let inside: BTreeSet<usize> = at.iter().copied().collect();
                for i in first..=last {
                    assert!(
                        inside.contains(&i) || matches!(dp.steps[i], Step::Free { .. }),
                        "{} on {}: step {i} inside region {:?} is not free",
                        e.name,
                        dp.device,
                        r.nodes
                    );
                }
                let mut produced = Vec::new();
                for &i in &at {
                    let Step::Exec { op, outputs, .. } = &dp.steps[i] else { unreachable!() };
                    assert!(genie_ir::registry::facts(op).scalar.is_some(), "{op} fused without a scalar form");
                    produced.extend(outputs.iter().copied());
                }
                let read_outside =
                    |v: &ValueId| (0..dp.steps.len()).any(|i| !inside.contains(&i) && reads(i).contains(v));
                for v in &produced {
                    assert_eq!(r.outputs.contains(v), read_outside(v), "{}: {v} output iff read outside", e.name);
                }
                let shape = &e.tensors[&r.outputs[0]].ty.shape;
                for v in &r.outputs {
                    assert_eq!(&e.tensors[v].ty.shape, shape, "{}: region outputs of one shape", e.name);
                }
                for b in &r.biases {
                    let layer = exec_at[&b.node];
                    let Step::Exec { op, args, outputs, .. } = &dp.steps[layer] else { unreachable!() };
                    assert_eq!(op, "aten.linear.default");
                    assert_eq!(outputs, &vec![b.value]);
                    assert_eq!(args.get(b.arg as usize), Some(&Arg::Tensor(b.bias)));
                    let readers: Vec<usize> = (0..dp.steps.len()).filter(|&i| reads(i).contains(&b.value)).collect();
                    assert!(
                        readers.iter().all(|i| inside.contains(i)),
                        "{}: a biased layer read outside its region",
                        e.name
                    );
                }
            }
        }
    }
}

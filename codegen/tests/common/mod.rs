//! Shared test helpers: a multi-layer GPT-2-style prefill + decode program, the compile pipeline
//! (passes → placement → codegen) and the plan invariants.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use genie_codegen::{ProgramPlan, Step, Target, TargetDevice, CLIENT};
use genie_ir::{Arg, DType, Dim, Graph, Program, Residency, SymRange, TensorType, ValueId, WeightStore};
use genie_passes::placement::{schedule, ClusterSpec, Placement, PlacementError, PlacementOptions};
use genie_passes::PassManager;

/// Shape of the GPT-2-style test model.
#[derive(Clone, Copy, Debug)]
pub struct Gpt {
    pub layers: usize,
    pub width: i64,
    pub heads: i64,
    pub vocab: i64,
    pub positions: i64,
}

impl Gpt {
    pub fn small(layers: usize) -> Gpt {
        Gpt { layers, width: 32, heads: 4, vocab: 64, positions: 64 }
    }
}

fn pseudo_random_f32(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

struct B<'a> {
    g: Graph,
    store: &'a mut WeightStore,
    seed: u64,
    shape: Gpt,
}

impl B<'_> {
    fn weight(&mut self, name: &str, shape: &[i64]) -> ValueId {
        // Seeded by name so that prefill and decode get the same bytes (one stored weight).
        let seed = name.bytes().fold(self.seed, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let ty = TensorType::new(DType::Float32, shape);
        let n = shape.iter().product::<i64>() as usize;
        let hash = self.store.insert_inline(ty.clone(), pseudo_random_f32(seed, n));
        self.g.add_weight(name, ty, hash)
    }
    fn op(&mut self, op: &str, args: Vec<Arg>) -> ValueId {
        self.g.add_op(op, args).unwrap_or_else(|e| panic!("{op}: {e}"))
    }
    fn linear(&mut self, x: ValueId, name: &str, out: i64, inp: i64) -> ValueId {
        let w = self.weight(&format!("{name}.weight"), &[out, inp]);
        let b = self.weight(&format!("{name}.bias"), &[out]);
        self.op("aten.linear.default", vec![Arg::Tensor(x), Arg::Tensor(w), Arg::Tensor(b)])
    }
    fn layer_norm(&mut self, x: ValueId, name: &str) -> ValueId {
        let w = self.shape.width;
        let wt = self.weight(&format!("{name}.weight"), &[w]);
        let b = self.weight(&format!("{name}.bias"), &[w]);
        self.op(
            "aten.layer_norm.default",
            vec![
                Arg::Tensor(x),
                Arg::Ints(vec![w]),
                Arg::Tensor(wt),
                Arg::Tensor(b),
                Arg::Float(1e-5),
                Arg::Bool(true),
            ],
        )
    }
    fn heads(&mut self, x: ValueId, s: &Dim) -> ValueId {
        let (w, h) = (self.shape.width, self.shape.heads);
        let shape = vec![Dim::constant(1), s.clone(), Dim::constant(h), Dim::constant(w / h)];
        let v = self.op("aten.view.default", vec![Arg::Tensor(x), Arg::sym_ints(shape)]);
        self.op("aten.transpose.int", vec![Arg::Tensor(v), Arg::Int(1), Arg::Int(2)])
    }
}

fn entry(name: &str, decode: bool, store: &mut WeightStore, shape: Gpt) -> Graph {
    let mut g = Graph::new(name);
    g.add_symbol("s0", SymRange { min: 1, max: Some(shape.positions - 1) });
    let past_len = Dim::symbol("s0");
    let s = if decode { Dim::constant(1) } else { past_len.clone() };
    let (w, h) = (shape.width, shape.heads);
    let ids = g.add_input("input_ids", TensorType::with_dims(DType::Int64, vec![Dim::constant(1), s.clone()]));
    let head_shape = |len: Dim| vec![Dim::constant(1), Dim::constant(h), len, Dim::constant(w / h)];
    let mut past = Vec::new();
    if decode {
        for l in 0..shape.layers {
            let k = g.add_input(
                format!("past_key_{l}"),
                TensorType::with_dims(DType::Float32, head_shape(past_len.clone())),
            );
            let v = g.add_input(
                format!("past_value_{l}"),
                TensorType::with_dims(DType::Float32, head_shape(past_len.clone())),
            );
            past.push((k, v));
        }
    }
    let mut b = B { g, store, seed: 7, shape };
    let wte = b.weight("transformer.wte.weight", &[shape.vocab, w]);
    let wpe = b.weight("transformer.wpe.weight", &[shape.positions, w]);
    let positions = if decode {
        let end = past_len.add(&Dim::constant(1));
        b.op(
            "aten.arange.start",
            vec![
                Arg::sym_int(past_len.clone()),
                Arg::sym_int(end),
                Arg::DType(DType::Int64),
                Arg::None,
                Arg::None,
                Arg::None,
            ],
        )
    } else {
        b.op(
            "aten.arange.default",
            vec![Arg::sym_int(s.clone()), Arg::DType(DType::Int64), Arg::None, Arg::None, Arg::None],
        )
    };
    let emb = |b: &mut B, t: ValueId, i: ValueId| {
        b.op(
            "aten.embedding.default",
            vec![Arg::Tensor(t), Arg::Tensor(i), Arg::Int(-1), Arg::Bool(false), Arg::Bool(false)],
        )
    };
    let tok = emb(&mut b, wte, ids);
    let pos = emb(&mut b, wpe, positions);
    let mut x = b.op("aten.add.Tensor", vec![Arg::Tensor(tok), Arg::Tensor(pos), Arg::Int(1)]);
    let mut presents = Vec::new();
    for l in 0..shape.layers {
        let p = format!("transformer.h.{l}");
        let y = b.layer_norm(x, &format!("{p}.ln_1"));
        let qkv = b.linear(y, &format!("{p}.attn.c_attn"), 3 * w, w);
        let (_, parts) = b.g.add_node("aten.split.Tensor", vec![Arg::Tensor(qkv), Arg::Int(w), Arg::Int(2)]).unwrap();
        let (q, mut k, mut v) = (b.heads(parts[0], &s), b.heads(parts[1], &s), b.heads(parts[2], &s));
        if let Some(&(pk, pv)) = past.get(l) {
            k = b.op("aten.cat.default", vec![Arg::Tensors(vec![pk, k]), Arg::Int(2)]);
            v = b.op("aten.cat.default", vec![Arg::Tensors(vec![pv, v]), Arg::Int(2)]);
        }
        presents.push((k, v));
        let att = b.op(
            "aten.scaled_dot_product_attention.default",
            vec![
                Arg::Tensor(q),
                Arg::Tensor(k),
                Arg::Tensor(v),
                Arg::None,
                Arg::Float(0.0),
                Arg::Bool(!decode),
                Arg::None,
                Arg::Bool(false),
            ],
        );
        let att = b.op("aten.transpose.int", vec![Arg::Tensor(att), Arg::Int(1), Arg::Int(2)]);
        let att = b.op(
            "aten.reshape.default",
            vec![Arg::Tensor(att), Arg::sym_ints(vec![Dim::constant(1), s.clone(), Dim::constant(w)])],
        );
        let proj = b.linear(att, &format!("{p}.attn.c_proj"), w, w);
        x = b.op("aten.add.Tensor", vec![Arg::Tensor(x), Arg::Tensor(proj), Arg::Int(1)]);
        let y = b.layer_norm(x, &format!("{p}.ln_2"));
        let up = b.linear(y, &format!("{p}.mlp.c_fc"), 4 * w, w);
        let act = b.op("aten.gelu.default", vec![Arg::Tensor(up), Arg::Str("tanh".into())]);
        let down = b.linear(act, &format!("{p}.mlp.c_proj"), w, 4 * w);
        x = b.op("aten.add.Tensor", vec![Arg::Tensor(x), Arg::Tensor(down), Arg::Int(1)]);
    }
    let y = b.layer_norm(x, "transformer.ln_f");
    // Tied LM head: the token embedding's bytes under another name, one stored weight.
    let wte_val = b.g.value(wte).clone();
    let genie_ir::ValueDef::Weight(hash) = wte_val.def else { unreachable!() };
    let head = b.g.add_weight("lm_head.weight", wte_val.ty, hash);
    let logits = b.op("aten.linear.default", vec![Arg::Tensor(y), Arg::Tensor(head), Arg::None]);
    let mut g = b.g;
    g.add_output("logits", logits);
    for (l, (k, v)) in presents.into_iter().enumerate() {
        g.add_output(format!("present_key_{l}"), k);
        g.add_output(format!("present_value_{l}"), v);
    }
    g
}

/// A GPT-2-style prefill + decode program with `shape.layers` layers, before any pass.
pub fn gpt_pair(shape: Gpt) -> Program {
    let mut program = Program::new(format!("gpt{}", shape.layers));
    let prefill = entry("prefill", false, &mut program.weights, shape);
    let decode = entry("decode", true, &mut program.weights, shape);
    program.entries.push(prefill);
    program.entries.push(decode);
    genie_ir::verify_program(&program).expect("test program verifies");
    program
}

/// Run the standard passes.
pub fn passes(mut p: Program) -> Program {
    PassManager::standard().run(&mut p, None).expect("passes run");
    p
}

/// The codegen target for a placement.
pub fn target_of(placement: &Placement, cluster: &ClusterSpec, options: &PlacementOptions) -> Target {
    Target {
        devices: cluster
            .devices
            .iter()
            .map(|d| TargetDevice {
                name: d.name.clone(),
                kind: d.kind.name().to_string(),
                memory_bytes: d.memory,
                address: d.address.clone(),
            })
            .collect(),
        cost_bindings: placement.cost_bindings.clone(),
        memory_bindings: placement.memory_bindings.clone(),
        estimates: placement
            .estimates
            .iter()
            .map(|e| {
                (
                    e.entry.clone(),
                    genie_codegen::Estimate {
                        latency_s: e.latency_s,
                        compute_s: e.compute_s,
                        transfer_s: e.transfer_s,
                        network_latency_s: e.network_latency_s,
                    },
                )
            })
            .collect(),
        policy: Some(placement.policy.name().to_string()),
        max_seq: options.max_seq,
    }
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
    let plan = genie_codegen::generate(&placed, &target_of(&placement, cluster, options)).expect("codegen succeeds");
    Ok((placed, placement, plan))
}

/// Check every invariant a plan must hold; panics with a message naming the breakage.
pub fn check_plan(program: &Program, placement: &Placement, plan: &ProgramPlan) {
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
    // State co-location: every slot's readers and writers run on the slot's device.
    for slot in &plan.state_slots {
        for port in slot.writes.iter() {
            let g = program.entry(&port.entry).unwrap();
            let v = g.outputs.iter().find(|o| o.name == port.name).unwrap().value;
            if let Some(p) = g.producer(v) {
                assert_eq!(g.node(p).ann.device.as_ref(), Some(&slot.device), "slot {} writer", slot.name);
            }
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

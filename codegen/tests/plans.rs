//! Plans for fixture programs: the GPT-2-style two-worker split, snapshots on 1, 2 and 4
//! devices, randomised property checks, memory errors, determinism and serialisation.

mod common;

use common::*;
use genie_codegen::{summary, to_binary, to_ron, Step, CLIENT};
use genie_ir::example::tiny_decoder_pair;
use genie_ir::synthetic::{synthetic_llama, ExportForm, LlamaShape};
use genie_ir::{Arg, DType, Dim, Graph, Program, Residency, SymRange, TensorType};
use genie_passes::placement::{
    ClusterSpec, DeviceKind, DeviceSpec, LinkParams, PlacementError, PlacementOptions, Policy,
};

/// The done-criterion: two workers, neither holding all weights; one decode step moves the token
/// ids in, the logits out and one activation one position wide per cut, and nothing else.
#[test]
fn gpt_decode_on_two_workers_moves_only_ids_logits_and_cut_activations() {
    let shape = Gpt::small(4);
    let program = passes(gpt_pair(shape));
    let weights = total_weight_bytes(&program);
    // 180 kB per worker: a straight cut; 150 kB: the tied embedding moves next to the LM head.
    for memory in [180_000u64, 150_000] {
        assert!(memory < weights, "neither worker can hold all {weights} weight bytes");
        let cluster = ClusterSpec::local_workers(2, memory);
        let (placed, placement, plan) = compile(&program, &cluster, &opts(Some(16))).expect("fits on two workers");
        check_plan(&placed, &placement, &plan);
        assert!(plan.devices.iter().all(|d| d.weight_bytes > 0), "both workers hold weights");
        let s = summary(&plan);
        let decode = &s.entries["decode"];
        let token = 4 * shape.width as u64;
        let ins: Vec<_> = decode.transfers.iter().filter(|t| t.from == CLIENT).collect();
        let outs: Vec<_> = decode.transfers.iter().filter(|t| t.to == CLIENT).collect();
        let cuts: Vec<_> = decode.transfers.iter().filter(|t| t.from != CLIENT && t.to != CLIENT).collect();
        assert_eq!(ins.len(), 1, "only the token ids go in: {ins:?}");
        assert_eq!((ins[0].value.as_str(), ins[0].bytes), ("input_ids", 8));
        assert_eq!(outs.len(), 1, "only the logits come out: {outs:?}");
        assert_eq!(outs[0].bytes, 4 * shape.vocab as u64);
        assert!(!cuts.is_empty(), "the model is split");
        for t in &cuts {
            assert_eq!(t.residency, "ephemeral_activation", "{t:?}");
            assert_eq!(t.bytes, token, "one position wide: {t:?}");
        }
        let mut pairs: Vec<_> = cuts.iter().map(|t| (&t.from, &t.to)).collect();
        pairs.dedup();
        assert_eq!(pairs.len(), cuts.len(), "one activation per cut: {cuts:?}");
        assert_eq!(decode.bytes_per_call, 8 + 4 * shape.vocab as u64 + token * cuts.len() as u64);
        assert!(decode.est_latency_s.unwrap() > 0.0);
        // Every KV slot sits with the layer that reads and writes it; nothing stateful travels.
        for e in s.entries.values() {
            assert!(e
                .transfers
                .iter()
                .all(|t| t.residency != "stateful_kv_cache" && t.residency != "persistent_weight"));
        }
        assert_eq!(plan.state_slots.len(), 2 * shape.layers);
    }
}

fn cluster_of(memories: &[u64]) -> ClusterSpec {
    let mut c = ClusterSpec::local_workers(memories.len(), 1);
    for (d, m) in c.devices.iter_mut().zip(memories) {
        d.memory = *m;
    }
    c
}

fn snapshot_text(placement: &genie_passes::placement::Placement, plan: &genie_codegen::ProgramPlan) -> String {
    let mut s = String::new();
    for (unit, d) in &placement.units {
        s.push_str(&format!("unit {unit} -> {}\n", placement.devices[*d]));
    }
    s.push_str(&genie_codegen::summary::dump(plan));
    s
}

#[test]
fn snapshot_tiny_decoder_on_one_two_and_four_devices() {
    let program = passes(tiny_decoder_pair().unwrap());
    let cases: [(&str, Vec<u64>, Policy); 3] = [
        ("tiny_1", vec![1 << 30], Policy::MinLatency),
        ("tiny_2", vec![30_000, 30_000], Policy::MinLatency),
        ("tiny_4", vec![40_000; 4], Policy::BalanceMemory),
    ];
    for (name, mem, policy) in cases {
        let options = PlacementOptions { policy, max_seq: Some(8), ..PlacementOptions::default() };
        let (placed, placement, plan) = compile(&program, &cluster_of(&mem), &options).unwrap();
        check_plan(&placed, &placement, &plan);
        insta::assert_snapshot!(name, snapshot_text(&placement, &plan));
    }
}

#[test]
fn snapshot_synthetic_llama_on_one_two_and_four_devices() {
    let program = passes(synthetic_llama(LlamaShape::small(4), ExportForm::Default).unwrap());
    let cases: [(&str, Vec<u64>, Policy); 3] = [
        ("llama4_1", vec![1 << 30], Policy::MinLatency),
        ("llama4_2", vec![260_000, 260_000], Policy::MinLatency),
        ("llama4_4", vec![1_000_000; 4], Policy::BalanceMemory),
    ];
    for (name, mem, policy) in cases {
        let options = PlacementOptions { policy, max_seq: Some(64), ..PlacementOptions::default() };
        let (placed, placement, plan) = compile(&program, &cluster_of(&mem), &options).unwrap();
        check_plan(&placed, &placement, &plan);
        // Identical zero-filled weights share one hash, so splitting saves only activations.
        let used = plan.devices.iter().filter(|d| d.nodes > 0).count();
        assert_eq!(used > 1, mem.len() > 1, "{name}: split when there is more than one device");
        let units: Vec<String> =
            placement.units.iter().map(|(u, d)| format!("{u} -> {}", placement.devices[*d])).collect();
        insta::assert_ron_snapshot!(name, (units, summary(&plan)));
    }
}

/// xorshift64*, fixed seeds: the same cases every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_clusters_and_programs_keep_every_invariant() {
    let programs: Vec<Program> = vec![
        passes(tiny_decoder_pair().unwrap()),
        passes(gpt_pair(Gpt::small(1))),
        passes(gpt_pair(Gpt::small(3))),
        passes(synthetic_llama(LlamaShape::small(2), ExportForm::Default).unwrap()),
        passes(synthetic_llama(LlamaShape::small(1), ExportForm::CoreAten).unwrap()),
    ];
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let (mut placed_ok, mut refused) = (0, 0);
    for case in 0..60 {
        let program = &programs[rng.below(programs.len() as u64) as usize];
        let max_seq = [None, Some(8), Some(32)][rng.below(3) as usize];
        let policy = if rng.below(2) == 0 { Policy::MinLatency } else { Policy::BalanceMemory };
        let options = PlacementOptions { policy, max_seq, ..PlacementOptions::default() };
        // What one device would need.
        let single =
            compile(program, &ClusterSpec::local_workers(1, 1 << 40), &options).unwrap().1.memory[0].peak_bytes;
        let k = 1 + rng.below(5) as usize;
        let mut cluster = ClusterSpec::local_workers(k, 1);
        for d in cluster.devices.iter_mut() {
            d.memory = single * (20 + rng.below(140)) / 100;
            d.flops = Some(1e10 * (1 + rng.below(100)) as f64);
            if rng.below(4) == 0 {
                d.kind = DeviceKind::Cuda;
            }
        }
        cluster.default_link =
            LinkParams { bandwidth: 1e8 * (1 + rng.below(100)) as f64, latency: 1e-5 * rng.below(50) as f64 };
        match compile(program, &cluster, &options) {
            Ok((placed, placement, plan)) => {
                check_plan(&placed, &placement, &plan);
                placed_ok += 1;
            }
            Err(PlacementError::DoesNotFit { largest, .. }) => {
                assert!(!largest.is_empty(), "case {case}: the error names the largest consumers");
                assert!(
                    cluster.devices.iter().any(|d| d.memory < single),
                    "case {case}: a device that holds everything was refused"
                );
                refused += 1;
            }
            Err(e) => panic!("case {case}: {e}"),
        }
    }
    assert!(placed_ok > 20 && refused > 3, "{placed_ok} placed, {refused} refused");
}

#[test]
fn too_big_for_one_device_is_split_and_fitting_nowhere_is_a_clear_error() {
    let program = passes(gpt_pair(Gpt::small(4)));
    let options = opts(Some(16));
    let single = compile(&program, &ClusterSpec::local_workers(1, 1 << 40), &options).unwrap().1.memory[0].peak_bytes;
    // One device too small: refused, naming what is large.
    let err = compile(&program, &ClusterSpec::local_workers(1, single / 2), &options).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("the program does not fit on the cluster"), "{text}");
    assert!(text.contains("largest consumers:") && text.contains("transformer.h."), "{text}");
    // Three such devices: split.
    let (placed, placement, plan) =
        compile(&program, &ClusterSpec::local_workers(3, single * 6 / 10), &options).unwrap();
    check_plan(&placed, &placement, &plan);
    assert!(plan.devices.iter().filter(|d| d.nodes > 0).count() >= 2);
    // Far too small everywhere: the total is named.
    let err = compile(&program, &ClusterSpec::local_workers(4, 10_000), &options).unwrap_err();
    assert!(err.to_string().contains("needs at least"), "{err}");
}

#[test]
fn min_latency_keeps_a_small_model_on_one_device_and_balance_memory_spreads_it() {
    let program = passes(gpt_pair(Gpt::small(2)));
    let cluster = ClusterSpec::local_workers(2, 1 << 30);
    let (_, _, plan) = compile(&program, &cluster, &opts(None)).unwrap();
    assert_eq!(plan.devices.iter().filter(|d| d.nodes > 0).count(), 1);
    let s = summary(&plan);
    assert_eq!(s.entries["decode"].round_trips, 1, "client → worker → client");
    let balanced = PlacementOptions { policy: Policy::BalanceMemory, ..opts(None) };
    let (placed, placement, plan) = compile(&program, &cluster, &balanced).unwrap();
    check_plan(&placed, &placement, &plan);
    assert_eq!(plan.devices.iter().filter(|d| d.nodes > 0).count(), 2);
}

#[test]
fn a_faster_device_gets_the_work() {
    let program = passes(gpt_pair(Gpt::small(2)));
    let mut cluster = ClusterSpec::local_workers(2, 1 << 30);
    cluster.devices[1] = DeviceSpec {
        name: "gpu0".into(),
        kind: DeviceKind::Cuda,
        memory: 1 << 30,
        flops: Some(1e14),
        mem_bandwidth: Some(1e12),
        op_overhead: Some(0.0),
        spare: false,
    };
    let (_, placement, _) =
        compile(&program, &cluster, &PlacementOptions { max_seq: Some(16), ..Default::default() }).unwrap();
    assert!(placement.units.iter().all(|(_, d)| *d == 1), "{:?}", placement.units);
}

#[test]
fn plans_are_deterministic_and_round_trip() {
    let program = passes(gpt_pair(Gpt::small(3)));
    let cluster = ClusterSpec::local_workers(2, 160_000);
    let (_, _, a) = compile(&program, &cluster, &opts(Some(16))).unwrap();
    let (_, _, b) = compile(&program.clone(), &cluster, &opts(Some(16))).unwrap();
    let (bin_a, bin_b) = (to_binary(&a).unwrap(), to_binary(&b).unwrap());
    assert_eq!(bin_a, bin_b, "byte-identical binary");
    assert_eq!(to_ron(&a).unwrap(), to_ron(&b).unwrap(), "identical RON");
    assert_eq!(&bin_a[..8], b"GENIEPLN");
    assert_eq!(genie_codegen::from_binary(&bin_a).unwrap(), a);
    assert_eq!(genie_codegen::from_ron(&to_ron(&a).unwrap()).unwrap(), a);
    let ron_len = to_ron(&a).unwrap().len();
    assert!(bin_a.len() * 3 < ron_len, "binary {} vs RON {ron_len}", bin_a.len());
    let mut bad = bin_a.clone();
    bad[8] = 99;
    assert!(genie_codegen::from_binary(&bad).unwrap_err().to_string().contains("version 99"));
    assert!(genie_codegen::from_binary(b"not a plan at all").is_err());
    assert!(genie_codegen::from_binary(&bin_a[..bin_a.len() / 2]).is_err());
}

#[test]
fn dot_of_a_plan_colours_nodes_by_device() {
    let program = passes(gpt_pair(Gpt::small(2)));
    let (_, _, plan) = compile(&program, &ClusterSpec::local_workers(2, 100_000), &opts(Some(8))).unwrap();
    let rebuilt = genie_codegen::summary::to_program(&plan);
    assert_eq!(rebuilt.entries.len(), 2);
    assert_eq!(rebuilt.entries[1].nodes.len(), program.entries[1].nodes.len());
    let dot = genie_ir::render::dot_program(&rebuilt, genie_ir::render::DotColoring::Device);
    assert!(dot.contains("@worker0") && dot.contains("@worker1"));
}

#[test]
fn codegen_refuses_unplaced_and_split_state() {
    let program = passes(tiny_decoder_pair().unwrap());
    let device = |name: &str| genie_ir::PlacedDevice { name: name.into(), kind: "cpu".into(), memory_bytes: 1 };
    let record = genie_ir::PlacementRecord {
        policy: "min-latency".into(),
        max_seq: None,
        devices: vec![device("w")],
        cost_bindings: Default::default(),
        memory_bindings: Default::default(),
        estimates: Default::default(),
        phases: None,
        replicas: Vec::new(),
    };
    assert!(matches!(genie_codegen::generate(&program), Err(genie_codegen::CodegenError::NotPlaced)));
    let mut recorded = program.clone();
    recorded.placement = Some(record.clone());
    assert!(matches!(genie_codegen::generate(&recorded), Err(genie_codegen::CodegenError::Unplaced { .. })));
    // Put decode's KV-cache update on another device than its attention.
    let mut placed = program.clone();
    for g in &mut placed.entries {
        for n in &mut g.nodes {
            n.ann.device = Some("w".into());
        }
    }
    let decode = placed.entry_mut("decode").unwrap();
    let cat = decode.nodes.iter().position(|n| n.op == "aten.cat.default").unwrap();
    decode.nodes[cat].ann.device = Some("v".into());
    let mut two = record.clone();
    two.devices.push(device("v"));
    placed.placement = Some(two);
    let err = genie_codegen::generate(&placed).unwrap_err();
    assert!(matches!(err, genie_codegen::CodegenError::StateSplit { .. }), "{err}");
}

/// A small CNN: a stem and `stages` conv stages (conv, relu, conv, relu, residual add), pooled.
fn cnn(stages: usize, channels: i64) -> Program {
    let mut p = Program::new("cnn");
    let mut g = Graph::new("model");
    let hw = 8;
    let x = g.add_input("pixel_values", TensorType::new(DType::Float32, &[1, 3, hw, hw]));
    let mut seed = 0u8;
    let mut weight = |g: &mut Graph, store: &mut genie_ir::WeightStore, name: String, shape: &[i64]| {
        seed = seed.wrapping_add(1);
        let ty = TensorType::new(DType::Float32, shape);
        let n = shape.iter().product::<i64>() as usize;
        let h = store.insert_inline(ty.clone(), vec![seed; n * 4]);
        g.add_weight(name, ty, h)
    };
    let conv = |g: &mut Graph, x, w, b| {
        g.add_op(
            "aten.conv2d.default",
            vec![
                Arg::Tensor(x),
                Arg::Tensor(w),
                Arg::Tensor(b),
                Arg::Ints(vec![1, 1]),
                Arg::Ints(vec![1, 1]),
                Arg::Ints(vec![1, 1]),
                Arg::Int(1),
            ],
        )
        .unwrap()
    };
    let relu = |g: &mut Graph, x| g.add_op("aten.relu.default", vec![Arg::Tensor(x)]).unwrap();
    let w = weight(&mut g, &mut p.weights, "conv1.weight".into(), &[channels, 3, 3, 3]);
    let b = weight(&mut g, &mut p.weights, "conv1.bias".into(), &[channels]);
    let mut h = conv(&mut g, x, w, b);
    h = relu(&mut g, h);
    for s in 0..stages {
        let name = format!("layer{}.0", s + 1);
        let w1 = weight(&mut g, &mut p.weights, format!("{name}.conv1.weight"), &[channels, channels, 3, 3]);
        let b1 = weight(&mut g, &mut p.weights, format!("{name}.conv1.bias"), &[channels]);
        let w2 = weight(&mut g, &mut p.weights, format!("{name}.conv2.weight"), &[channels, channels, 3, 3]);
        let b2 = weight(&mut g, &mut p.weights, format!("{name}.conv2.bias"), &[channels]);
        let y = conv(&mut g, h, w1, b1);
        let y = relu(&mut g, y);
        let y = conv(&mut g, y, w2, b2);
        let y = g.add_op("aten.add.Tensor", vec![Arg::Tensor(h), Arg::Tensor(y), Arg::Int(1)]).unwrap();
        h = relu(&mut g, y);
    }
    let pooled = g.add_op("aten.adaptive_avg_pool2d.default", vec![Arg::Tensor(h), Arg::Ints(vec![1, 1])]).unwrap();
    g.add_output("features", pooled);
    let _ = (Dim::constant(0), SymRange { min: 1, max: None });
    p.entries.push(g);
    p
}

#[test]
fn cnn_stages_become_pipeline_stages_when_one_device_is_too_small() {
    let program = passes(cnn(6, 64));
    let options = opts(None);
    let single = compile(&program, &ClusterSpec::local_workers(1, 1 << 40), &options).unwrap().1.memory[0].peak_bytes;
    let (placed, placement, plan) =
        compile(&program, &ClusterSpec::local_workers(3, single * 45 / 100), &options).unwrap();
    check_plan(&placed, &placement, &plan);
    // Consecutive stages on each device, devices in pipeline order.
    let devs: Vec<usize> = placement.units.iter().map(|(_, d)| *d).collect();
    let mut runs = devs.clone();
    runs.dedup();
    assert_eq!(runs.len(), 3, "three pipeline stages: {:?}", placement.units);
    let mut sorted = runs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "each device one contiguous run: {:?}", placement.units);
    let s = summary(&plan);
    let model = &s.entries["model"];
    assert_eq!(
        model.transfers.iter().filter(|t| t.from != CLIENT && t.to != CLIENT).count(),
        2,
        "{:?}",
        model.transfers
    );
    for t in &model.transfers {
        assert_ne!(t.residency, Residency::PersistentWeight.name());
    }
    // Steps are in order on every device: no Exec before its Recvs.
    for dp in &plan.entries[0].plans {
        assert!(dp.steps.iter().any(|s| matches!(s, Step::Exec { .. })) || dp.device == CLIENT);
    }
}

/// Prefill and decode apart: every invariant holds (the handoff received and saved on the slot's
/// device, placement's memory model equal to the plan's, each weight resident on both devices
/// and counted on each), a layer is on one device per side, and decode's plan names one device.
#[test]
fn disaggregated_plans_keep_every_invariant() {
    use genie_passes::placement::PhaseChoice;
    for program in [passes(tiny_decoder_pair().unwrap()), passes(gpt_pair(Gpt::small(3)))] {
        let options = PlacementOptions {
            max_seq: Some(16),
            phases: PhaseChoice::Always,
            request: Some(genie_ir::RequestShape { prompt_len: 8, new_tokens: 16 }),
            ..PlacementOptions::default()
        };
        let (placed, placement, plan) = compile(&program, &cluster_of(&[1 << 30, 1 << 30]), &options).unwrap();
        check_plan(&placed, &placement, &plan);
        assert!(plan.phases.as_ref().unwrap().disaggregated);
        let handoffs: Vec<_> = plan.entries.iter().flat_map(|e| &e.handoffs).collect();
        assert_eq!(handoffs.len(), plan.state_slots.len(), "{}: one handoff per slot", program.name);
        let weights = total_weight_bytes(&program);
        for d in &plan.devices {
            assert!(d.weight_bytes >= weights, "{}: {} holds every weight once", program.name, d.name);
        }
        let sides: Vec<Vec<usize>> =
            [&placement.units, &placement.decode_units].iter().map(|u| u.iter().map(|(_, d)| *d).collect()).collect();
        assert!(sides[0].iter().all(|d| !sides[1].contains(d)), "{}: disjoint pools {sides:?}", program.name);
    }
}

//! `genie compile` of the synthetic 96-layer LLaMA-style program on the default cluster (two
//! local workers): RON load ("import"), the pass pipeline, placement, codegen and the binary
//! plan. Target: under 1 s in all. Prints the per-stage split once (median of 5 runs, one JSON
//! object per line), then criterion measures the whole pipeline.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use genie_ir::synthetic::{synthetic_llama, ExportForm, LlamaShape};
use genie_ir::Program;
use genie_passes::placement::{schedule, ClusterSpec, PlacementOptions};
use genie_passes::PassManager;

#[path = "../tests/common/mod.rs"]
mod common;

fn compile(mut program: Program, cluster: &ClusterSpec, options: &PlacementOptions) -> [Duration; 4] {
    let t0 = Instant::now();
    PassManager::standard().run(&mut program, None).expect("passes run");
    let t1 = Instant::now();
    let placement = schedule(&program, cluster, options).expect("placement");
    placement.apply(&mut program);
    let t2 = Instant::now();
    let plan = genie_codegen::generate(&program).expect("codegen");
    let t3 = Instant::now();
    let bytes = genie_codegen::to_binary(&plan).expect("binary plan");
    let t4 = Instant::now();
    std::hint::black_box(bytes);
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3]
}

fn bench_compile(c: &mut Criterion) {
    let program = synthetic_llama(LlamaShape::small(96), ExportForm::Default).expect("synthetic program builds");
    let ron = program.to_ron().expect("RON");
    let cluster = ClusterSpec::local_workers(2, genie_passes::placement::cluster::DEFAULT_WORKER_MEMORY);
    let options = PlacementOptions::default();
    let mut runs: Vec<[f64; 6]> = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let loaded = Program::from_ron(&ron).expect("RON loads");
        let import = t.elapsed();
        let [passes, place, codegen, binary] = compile(loaded, &cluster, &options);
        let total = passes + place + codegen + binary;
        runs.push([import, passes, place, codegen, binary, total].map(|d| d.as_secs_f64() * 1e3));
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let names = ["import_ron", "passes", "placement", "codegen", "plan_binary", "compile_total"];
    println!("llama96_default: {} nodes, {} bytes of RON", program.entries[0].nodes.len(), ron.len());
    for (i, n) in names.iter().enumerate() {
        println!("{{\"bench\":\"compile/llama96_default\",\"stage\":\"{n}\",\"median_ms\":{:.2}}}", median(i));
    }
    // A split: a 96-layer GPT-2-style prefill + decode pair (distinct weights) on four workers
    // that each hold 30% of what one device would need.
    let gpt = common::passes(common::gpt_pair(common::Gpt::small(96)));
    let short = PlacementOptions { max_seq: Some(32), ..PlacementOptions::default() };
    let single = schedule(&gpt, &cluster, &short).expect("placement").memory[0].peak_bytes;
    let tight = ClusterSpec::local_workers(4, single * 30 / 100);
    let t = Instant::now();
    let placement = schedule(&gpt, &tight, &short).expect("the split fits");
    let place_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut placed = gpt.clone();
    placement.apply(&mut placed);
    let t = Instant::now();
    let plan = genie_codegen::generate(&placed).expect("codegen");
    let codegen_ms = t.elapsed().as_secs_f64() * 1e3;
    let used = placement.memory.iter().filter(|m| m.nodes > 0).count();
    let decode = genie_codegen::summary(&plan).entries["decode"].clone();
    println!(
        "{{\"bench\":\"compile/gpt96_pair_split4\",\"nodes\":{},\"placement_ms\":{place_ms:.2},\"codegen_ms\":{codegen_ms:.2},\"devices_used\":{used},\"decode_bytes_per_call\":{},\"decode_transfers\":{}}}",
        gpt.entries.iter().map(|g| g.nodes.len()).sum::<usize>(),
        decode.bytes_per_call,
        decode.transfers.len()
    );
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("llama96_default", |b| {
        b.iter_batched(|| program.clone(), |p| compile(p, &cluster, &options), BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group!(benches, bench_compile);
criterion_main!(benches);

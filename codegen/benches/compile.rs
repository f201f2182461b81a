//! `genie compile` of the synthetic 96-layer LLaMA-style program on the default cluster (two
//! local workers): RON load ("import"), the pass pipeline, placement, codegen and the binary
//! plan. Target: under 1 s in all. Prints the per-stage split once (median of 5 runs, one JSON
//! object per line), then criterion measures the whole pipeline.
//!
//! Then the same split for the GPT-2-small export (`target/bench-models/gpt2s/prefill.pt2` and
//! `decode.pt2`, about 500 MB of weights each) on one local worker, where the import (reading
//! and hashing the weights) dominates; skipped with one line when the files are missing.

use std::path::{Path, PathBuf};
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
    let mut runs: Vec<[f64; 7]> = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let loaded = Program::from_ron(&ron).expect("RON loads");
        let import = t.elapsed();
        let [passes, place, codegen, binary] = compile(loaded, &cluster, &options);
        let total = passes + place + codegen + binary;
        // The target: a loaded program through to per-device plans.
        let to_codegen = import + passes + place + codegen;
        runs.push([import, passes, place, codegen, binary, total, to_codegen].map(|d| d.as_secs_f64() * 1e3));
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let names = ["import_ron", "passes", "placement", "codegen", "plan_binary", "compile_total", "import_to_codegen"];
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
    bench_gpt2_export(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-models/gpt2s"));
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("llama96_default", |b| {
        b.iter_batched(|| program.clone(), |p| compile(p, &cluster, &options), BatchSize::LargeInput)
    });
    group.finish();
}

/// The stage split of compiling the GPT-2-small export (median of 3 runs: each reads about 1 GB).
fn bench_gpt2_export(dir: &Path) {
    let files: Vec<PathBuf> = ["prefill.pt2", "decode.pt2"].iter().map(|f| dir.join(f)).collect();
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        println!("gpt2s_pt2: skipped, {} is missing (export it with the bench-models script)", missing.display());
        return;
    }
    let cluster = ClusterSpec::local_workers(1, genie_passes::placement::cluster::DEFAULT_WORKER_MEMORY);
    let options = PlacementOptions::default();
    let mut runs: Vec<[f64; 6]> = Vec::new();
    let mut nodes = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let program = genie_frontends::load(&files).expect("the export loads");
        let import = t.elapsed();
        nodes = program.entries.iter().map(|g| g.nodes.len()).sum::<usize>();
        let [passes, place, codegen, binary] = compile(program, &cluster, &options);
        let total = import + passes + place + codegen;
        runs.push([import, passes, place, codegen, binary, total].map(|d| d.as_secs_f64() * 1e3));
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = runs.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("gpt2s_pt2: {nodes} nodes in prefill + decode");
    let names = ["import_pt2", "passes", "placement", "codegen", "plan_binary", "import_to_codegen"];
    for (i, n) in names.iter().enumerate() {
        println!("{{\"bench\":\"compile/gpt2s_pt2\",\"stage\":\"{n}\",\"median_ms\":{:.2}}}", median(i));
    }
}

criterion_group!(benches, bench_compile);
criterion_main!(benches);

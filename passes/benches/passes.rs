//! All passes on a synthetic 96-layer LLaMA-style program, as `torch.export` writes it and in
//! core-ATen form. Target: under 1 s on one core. Per-pass times are printed once per form.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use genie_ir::synthetic::{synthetic_llama, ExportForm, LlamaShape};
use genie_passes::PassManager;

fn bench_passes(c: &mut Criterion) {
    let mut group = c.benchmark_group("passes");
    group.sample_size(10);
    for (label, form) in [("llama96_default", ExportForm::Default), ("llama96_core_aten", ExportForm::CoreAten)] {
        let program = synthetic_llama(LlamaShape::small(96), form).expect("synthetic program builds");
        let nodes = program.entries[0].nodes.len();
        let mut once = program.clone();
        let reports = PassManager::standard().run(&mut once, None).expect("passes run");
        let total: f64 = reports.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        println!("{label}: {nodes} nodes, all passes {:.1} ms", total * 1e3);
        for r in &reports {
            println!("  {:<16} {:>8.1} ms  {}", r.pass, r.elapsed.as_secs_f64() * 1e3, r.summary);
        }
        group.bench_function(label, |b| {
            b.iter_batched(
                || program.clone(),
                |mut p| PassManager::standard().run(&mut p, None).expect("passes run"),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_passes);
criterion_main!(benches);

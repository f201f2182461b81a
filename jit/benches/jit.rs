//! Fused element-wise kernels against plain Rust scalar loops: bias-add + GELU-tanh over
//! [512, 3072] (the MLP activation of a GPT-2-sized layer, bias broadcast over rows) and a
//! residual add over [1, 768] (one decode step's hidden state, where call overhead dominates).
//! Also the one-off compile time of a fresh region.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use genie_ir::registry::{BinaryFn, UnaryFn};
use genie_ir::DType;
use genie_jit::{compile, Instr, Kernel, Operand, Region};

fn bias_gelu() -> Kernel {
    let mut r = Region::new(vec![DType::Float32, DType::Float32]);
    let x = r.input(0);
    let b = r.input(1);
    let s = r.push(Instr::Binary(BinaryFn::Add, x, b));
    let g = r.push(Instr::Unary(UnaryFn::GeluTanh, s));
    r.output(g, DType::Float32);
    compile(&r).expect("compile")
}

fn residual_add() -> Kernel {
    let mut r = Region::new(vec![DType::Float32, DType::Float32]);
    let x = r.input(0);
    let y = r.input(1);
    let s = r.push(Instr::Binary(BinaryFn::Add, x, y));
    r.output(s, DType::Float32);
    compile(&r).expect("compile")
}

/// The scalar loop a hand-written Rust kernel would be: PyTorch's formula with `f32::tanh`.
fn gelu_tanh_rust(x: &[f32], bias: &[f32], out: &mut [f32]) {
    let cols = bias.len();
    let k = (2.0f32 / std::f32::consts::PI).sqrt();
    for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        let s = v + bias[i % cols];
        *o = 0.5 * s * (1.0 + (k * (s + 0.044715 * s * s * s)).tanh());
    }
}

fn bench(c: &mut Criterion) {
    let (rows, cols) = (512usize, 3072usize);
    let x: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 2001) as f32 / 250.0 - 4.0).collect();
    let bias: Vec<f32> = (0..cols).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
    let mut out = vec![0f32; rows * cols];
    let k = bias_gelu();
    let shape = [rows, cols];
    let ins = [
        Operand { ptr: x.as_ptr().cast(), strides: &[cols as isize, 1] },
        Operand { ptr: bias.as_ptr().cast(), strides: &[0, 1] },
    ];

    let mut g = c.benchmark_group("bias_gelu_tanh_512x3072");
    g.bench_function("rust_scalar_loop", |b| b.iter(|| gelu_tanh_rust(black_box(&x), black_box(&bias), &mut out)));
    g.bench_function("jit_run", |b| {
        b.iter(|| {
            let outs = [out.as_mut_ptr().cast::<u8>()];
            // SAFETY: x covers [rows, cols], bias [cols]; out holds rows·cols floats.
            unsafe { k.run(black_box(&shape), &ins, &outs) }.expect("run")
        })
    });
    g.bench_function("jit_run_parallel", |b| {
        b.iter(|| {
            let outs = [out.as_mut_ptr().cast::<u8>()];
            // SAFETY: as above.
            unsafe { k.run_parallel(black_box(&shape), &ins, &outs) }.expect("run")
        })
    });
    g.finish();

    let n = 768usize;
    let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
    let r: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.003).collect();
    let mut o = vec![0f32; n];
    let k = residual_add();
    let ins = [
        Operand { ptr: a.as_ptr().cast(), strides: &[768, 1] },
        Operand { ptr: r.as_ptr().cast(), strides: &[768, 1] },
    ];
    let mut g = c.benchmark_group("residual_add_1x768");
    g.bench_function("rust_scalar_loop", |b| {
        b.iter(|| {
            for ((o, &x), &y) in o.iter_mut().zip(black_box(&a)).zip(black_box(&r)) {
                *o = x + y;
            }
        })
    });
    g.bench_function("jit_run", |b| {
        b.iter(|| {
            let outs = [o.as_mut_ptr().cast::<u8>()];
            // SAFETY: a and r hold 768 floats; o holds 768.
            unsafe { k.run(black_box(&[1, 768]), &ins, &outs) }.expect("run")
        })
    });
    g.finish();

    // Compile time of a region not seen before (distinct literal each iteration, so the cache
    // never hits).
    let mut lit = 0.0f64;
    c.bench_function("compile_fresh_bias_gelu_region", |b| {
        b.iter(|| {
            lit += 1.0;
            let mut r = Region::new(vec![DType::Float32, DType::Float32]);
            let x = r.input(0);
            let y = r.input(1);
            let s = r.push(Instr::Binary(BinaryFn::Add, x, y));
            let c = r.push(Instr::Const(lit));
            let s = r.push(Instr::Binary(BinaryFn::Mul, s, c));
            let g = r.push(Instr::Unary(UnaryFn::GeluTanh, s));
            r.output(g, DType::Float32);
            compile(&r).expect("compile")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);

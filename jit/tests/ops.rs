//! Every unary and binary function, select and round, against f64 references.

mod common;

use common::*;
use genie_ir::registry::{BinaryFn, UnaryFn};
use genie_ir::DType;
use genie_jit::{Instr, Region};

/// Runs `f` over `xs` and checks every element; returns the largest relative error seen where
/// the result is above the absolute tolerance's reach (at least 1e-4 for the functions checked
/// absolutely in their tails, at least the smallest normal f32 otherwise).
fn check_unary(f: UnaryFn, xs: &[f32]) -> f64 {
    let k = kernel(&unary_region(f, DType::Float32, DType::Float32));
    let got = k.run_f32(&[xs.len()], &[(xs, &[1])]).expect("run");
    let rtol = unary_rtol(f);
    let atol = unary_atol(f);
    let floor = if atol > ATOL { 1e-4 } else { f64::from(f32::MIN_POSITIVE) };
    let mut worst = 0.0f64;
    for (&x, &g) in xs.iter().zip(&got[0]) {
        let want = ref_unary(f, f64::from(x));
        assert!(close_abs(g, want, rtol, atol), "{f:?}({x:e} = {:#x}) = {g:e}, want {want:e}", x.to_bits());
        worst = worst.max(rel_err(g, want, floor));
    }
    worst
}

#[test]
fn every_unary_on_the_sweep() {
    let xs = sweep();
    for f in UNARY {
        let worst = check_unary(f, &xs);
        println!("{f:?}: max rel err {worst:.3e} on the sweep");
    }
}

/// Dense sweeps over each transcendental's interesting range; the maxima are this crate's
/// accuracy statement (run with `--nocapture` to see them).
#[test]
fn transcendental_accuracy_dense() {
    let dense = |lo: f32, hi: f32, n: usize| -> Vec<f32> {
        (0..n).map(|i| lo + (hi - lo) * (i as f64 / (n - 1) as f64) as f32).collect()
    };
    let mut rng = Rng(12345);
    let positive: Vec<f32> = (0..1_000_000).map(|_| f32::from_bits(rng.next_u32() & 0x7fff_ffff)).collect();
    let cases: Vec<(UnaryFn, Vec<f32>)> = vec![
        (UnaryFn::Exp, dense(-104.0, 89.0, 2_000_000)),
        (UnaryFn::Log, positive.clone()),
        (UnaryFn::Log, dense(0.5, 2.0, 1_000_000)),
        (UnaryFn::Tanh, dense(-10.0, 10.0, 2_000_000)),
        (UnaryFn::Tanh, dense(-0.01, 0.01, 200_000)),
        (UnaryFn::Sigmoid, dense(-100.0, 100.0, 2_000_000)),
        (UnaryFn::Erf, dense(-6.0, 6.0, 2_000_000)),
        (UnaryFn::Erf, dense(-0.01, 0.01, 200_000)),
        (UnaryFn::Silu, dense(-100.0, 100.0, 2_000_000)),
        (UnaryFn::GeluTanh, dense(-12.0, 12.0, 2_000_000)),
        (UnaryFn::GeluErf, dense(-12.0, 12.0, 2_000_000)),
    ];
    for (f, xs) in cases {
        let worst = check_unary(f, &xs);
        println!("{f:?}: max rel err {worst:.3e} over {} points in [{:e}, {:e}]", xs.len(), xs[0], xs[xs.len() - 1]);
        assert!(worst <= 2e-6, "{f:?}: {worst:e}");
    }
}

/// GELU-erf far into the negative tail: tiny results, checked absolutely too.
#[test]
fn gelu_erf_negative_tail() {
    let xs: Vec<f32> = (0..100_000).map(|i| -3.0 - 12.0 * i as f32 / 100_000.0).collect();
    let k = kernel(&unary_region(UnaryFn::GeluErf, DType::Float32, DType::Float32));
    let got = k.run_f32(&[xs.len()], &[(&xs, &[1])]).expect("run");
    let mut worst = 0.0f64;
    for (&x, &g) in xs.iter().zip(&got[0]) {
        let want = ref_unary(UnaryFn::GeluErf, f64::from(x));
        worst = worst.max((f64::from(g) - want).abs());
    }
    println!("GeluErf on [-15, -3]: max abs err {worst:.3e}");
    assert!(worst <= 1e-7);
}

/// Operand values for binary ops: specials and a spread of magnitudes (kept small so that all
/// pairs stay cheap).
fn binary_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        3.0,
        -3.0,
        f32::MIN_POSITIVE,
        f32::from_bits(3),
        f32::MAX,
        -f32::MAX,
        1e-20,
        1e20,
    ];
    let mut rng = Rng(7);
    for _ in 0..120 {
        v.push(rng.uniform(-10.0, 10.0));
    }
    for _ in 0..60 {
        v.push(f32::from_bits(rng.next_u32()));
    }
    v
}

#[test]
fn every_binary_on_all_pairs() {
    let vals = binary_values();
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for &x in &vals {
        for &y in &vals {
            xs.push(x);
            ys.push(y);
        }
    }
    for f in BINARY {
        let k = kernel(&binary_region(f));
        let got = k.run_f32(&[xs.len()], &[(&xs, &[1]), (&ys, &[1])]).expect("run");
        // `powf` is within 1 ulp; everything else is correctly rounded or exact.
        let rtol = if f == BinaryFn::Pow { 2e-7 } else { 0.0 };
        for ((&x, &y), &g) in xs.iter().zip(&ys).zip(&got[0]) {
            let want = if f == BinaryFn::Pow && (is_snan(x) || is_snan(y)) {
                f64::NAN
            } else {
                ref_binary(f, f64::from(x), f64::from(y))
            };
            assert!(close(g, want, rtol), "{f:?}({x:e}, {y:e}) = {g:e}, want {want:e}");
        }
    }
}

/// PyTorch's `pow(tensor, scalar)` arithmetic for the exponents it special-cases; `powf` else.
fn ref_pow_const(x: f64, c: f64) -> f64 {
    match c {
        2.0 => x * x,
        3.0 => x * x * x,
        0.5 => x.sqrt(),
        -0.5 => 1.0 / x.sqrt(),
        -1.0 => 1.0 / x,
        -2.0 => 1.0 / (x * x),
        _ => x.powf(c),
    }
}

#[test]
fn pow_with_literal_exponents() {
    let xs = sweep();
    for c in [2.0, 3.0, 0.5, -0.5, -1.0, -2.0, 1.5, 0.0, 1.0, -3.25] {
        let mut r = Region::new(vec![DType::Float32]);
        let x = r.input(0);
        let e = r.push(Instr::Const(c));
        let y = r.push(Instr::Binary(BinaryFn::Pow, x, e));
        r.output(y, DType::Float32);
        let k = kernel(&r);
        let got = k.run_f32(&[xs.len()], &[(&xs, &[1])]).expect("run");
        for (&x, &g) in xs.iter().zip(&got[0]) {
            let want = if is_snan(x) { f64::NAN } else { ref_pow_const(f64::from(x), c) };
            // x·x·x and 1/(x·x) round twice.
            assert!(close(g, want, 4e-7), "pow({x:e}, {c}) = {g:e}, want {want:e}");
        }
    }
}

#[test]
fn select_treats_nan_as_true() {
    let conds = [0.0f32, -0.0, 1.0, -2.5, f32::NAN, f32::INFINITY, f32::from_bits(1)];
    let mut r = Region::new(vec![DType::Float32, DType::Float32, DType::Float32]);
    let c = r.input(0);
    let a = r.input(1);
    let b = r.input(2);
    let y = r.push(Instr::Select(c, a, b));
    r.output(y, DType::Float32);
    let k = kernel(&r);
    let n = conds.len();
    let av: Vec<f32> = (0..n).map(|i| i as f32 + 10.0).collect();
    let bv: Vec<f32> = (0..n).map(|i| -(i as f32) - 10.0).collect();
    let got = k.run_f32(&[n], &[(&conds, &[1]), (&av, &[1]), (&bv, &[1])]).expect("run");
    for i in 0..n {
        let want = if conds[i] != 0.0 { av[i] } else { bv[i] };
        assert_eq!(got[0][i], want, "select({})", conds[i]);
    }
}

#[test]
fn round_to_each_dtype() {
    let xs = sweep();
    for d in [
        DType::Float32,
        DType::Float16,
        DType::Bfloat16,
        DType::Bool,
        DType::Int64,
        DType::Int32,
        DType::Int16,
        DType::Int8,
        DType::Uint8,
    ] {
        let mut r = Region::new(vec![DType::Float32]);
        let x = r.input(0);
        let y = r.push(Instr::Round(d, x));
        r.output(y, DType::Float32);
        let k = kernel(&r);
        let got = k.run_f32(&[xs.len()], &[(&xs, &[1])]).expect("run");
        for (&x, &g) in xs.iter().zip(&got[0]) {
            let want = match d {
                DType::Float32 => x,
                DType::Float16 => half::f16::from_f32(x).to_f32(),
                DType::Bfloat16 => half::bf16::from_f32(x).to_f32(),
                DType::Bool => f32::from(u8::from(x != 0.0)),
                _ => x.trunc(),
            };
            let same = g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan());
            assert!(same, "round({x:e} = {:#x}) to {d:?} = {g:e} ({:#x}), want {want:e}", x.to_bits(), g.to_bits());
        }
    }
}

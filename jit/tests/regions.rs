//! Multi-op regions, layouts (broadcast, strided, transposed, tails, empty, rank 0), the
//! parallel runner, the compile cache and error cases.

mod common;

use common::*;
use genie_ir::registry::{BinaryFn, ScalarExpr, UnaryFn};
use genie_ir::DType;
use genie_jit::{cache_len, compile, Input, Instr, JitError, Kernel, Operand, Region};

/// The f64 reference of a whole region at one index (values already widened to f64).
fn eval_ref(r: &Region, inputs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = Vec::with_capacity(r.instrs.len());
    for instr in &r.instrs {
        let x = match *instr {
            Instr::Input(i) => inputs[i],
            Instr::Const(c) => f64::from(c as f32),
            Instr::Unary(f, a) => ref_unary(f, v[a]),
            Instr::Binary(f, a, b) => ref_binary(f, v[a], v[b]),
            Instr::Select(c, a, b) => {
                if v[c] != 0.0 {
                    v[a]
                } else {
                    v[b]
                }
            }
            Instr::Round(d, a) => {
                let x = v[a] as f32;
                f64::from(match d {
                    DType::Float16 => half::f16::from_f32(x).to_f32(),
                    DType::Bfloat16 => half::bf16::from_f32(x).to_f32(),
                    DType::Bool => f32::from(u8::from(x != 0.0)),
                    DType::Float32 => x,
                    _ => x.trunc(),
                })
            }
        };
        v.push(x);
    }
    r.outputs.iter().map(|&(i, _)| v[i]).collect()
}

/// An f32 input laid out in `data` at element `offset` with `strides`.
struct Laid {
    data: Vec<f32>,
    offset: usize,
    strides: Vec<isize>,
}

impl Laid {
    fn at(&self, idx: &[usize]) -> f32 {
        let off = self.offset as isize + idx.iter().zip(&self.strides).map(|(&i, &s)| i as isize * s).sum::<isize>();
        self.data[off as usize]
    }
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// Runs an all-f32 region over laid-out inputs (checked API) and compares every output element
/// with the f64 reference.
#[allow(clippy::needless_range_loop, reason = "the index addresses every output and the inputs")]
fn check_region(k: &Kernel, shape: &[usize], ins: &[Laid], rtol: f64, atol: f64) -> Vec<Vec<f32>> {
    let bytes: Vec<Vec<u8>> = ins.iter().map(|l| f32_bytes(&l.data)).collect();
    let inputs: Vec<Input<'_>> =
        ins.iter().zip(&bytes).map(|(l, b)| Input { bytes: b, offset: l.offset, strides: &l.strides }).collect();
    let numel: usize = shape.iter().product();
    let mut outs: Vec<Vec<u8>> = k.region().outputs.iter().map(|_| vec![0u8; numel * 4]).collect();
    let mut refs: Vec<&mut [u8]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
    k.run_checked(shape, &inputs, &mut refs).expect("run");
    let got: Vec<Vec<f32>> = outs.iter().map(|o| bytes_f32(o)).collect();
    for i in 0..numel {
        let idx = unravel(i, shape);
        let vals: Vec<f64> = ins.iter().map(|l| f64::from(l.at(&idx))).collect();
        let want = eval_ref(k.region(), &vals);
        for (o, w) in want.iter().enumerate() {
            let g = got[o][i];
            assert!(
                close_abs(g, *w, rtol, atol),
                "output {o} at {idx:?} of {shape:?}: {g:e}, want {w:e} (inputs {vals:?})"
            );
        }
    }
    got
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..n).map(|_| rng.uniform(-3.0, 3.0)).collect()
}

/// `y0 = a + b`, `y1 = tanh(a)·b`: exact and transcendental paths, two outputs.
fn two_output_region() -> Region {
    let mut r = Region::new(vec![DType::Float32, DType::Float32]);
    let a = r.input(0);
    let b = r.input(1);
    let s = r.push(Instr::Binary(BinaryFn::Add, a, b));
    let t = r.push(Instr::Unary(UnaryFn::Tanh, a));
    let p = r.push(Instr::Binary(BinaryFn::Mul, t, b));
    r.output(s, DType::Float32);
    r.output(p, DType::Float32);
    r
}

#[test]
fn layouts_with_tails() {
    let k = kernel(&two_output_region());
    for rows in [1usize, 3] {
        for cols in [1usize, 3, 4, 5, 17, 1000] {
            let shape = [rows, cols];
            let n = rows * cols;
            let (r, c) = (rows as isize, cols as isize);
            let dense = |seed| Laid { data: values(n, seed), offset: 0, strides: vec![c, 1] };
            let cases: Vec<(&str, Laid, Laid)> = vec![
                ("contiguous", dense(1), dense(2)),
                ("b broadcast along columns", dense(3), Laid { data: values(rows, 4), offset: 0, strides: vec![1, 0] }),
                ("b broadcast along rows", dense(5), Laid { data: values(cols, 6), offset: 0, strides: vec![0, 1] }),
                ("b scalar", dense(7), Laid { data: values(1, 8), offset: 0, strides: vec![0, 0] }),
                (
                    "a strided",
                    Laid { data: values((2 * cols + 1) * rows, 9), offset: 0, strides: vec![2 * c + 1, 2] },
                    dense(10),
                ),
                ("a transposed", Laid { data: values(n, 11), offset: 0, strides: vec![1, r] }, dense(12)),
                ("a reversed", Laid { data: values(n, 13), offset: cols - 1, strides: vec![c, -1] }, dense(14)),
            ];
            for (name, a, b) in cases {
                let _ = name;
                check_region(&k, &shape, &[a, b], 4e-6, ATOL);
            }
        }
    }
}

#[test]
fn one_dimensional_tails_and_higher_ranks() {
    let k = kernel(&two_output_region());
    for n in [1usize, 3, 4, 5, 17, 1000] {
        let a = Laid { data: values(n, 20), offset: 0, strides: vec![1] };
        let b = Laid { data: values(n, 21), offset: 0, strides: vec![1] };
        check_region(&k, &[n], &[a, b], 4e-6, ATOL);
    }
    // Rank 4 with a broadcast middle dimension: collapses to fewer dimensions.
    let shape = [2usize, 3, 4, 5];
    let a = Laid { data: values(120, 22), offset: 0, strides: vec![60, 20, 5, 1] };
    let b = Laid { data: values(40, 23), offset: 0, strides: vec![20, 0, 5, 1] };
    check_region(&k, &shape, &[a, b], 4e-6, ATOL);
}

#[test]
fn empty_shapes_do_nothing_and_rank_zero_works() {
    let k = kernel(&two_output_region());
    for shape in [vec![0usize], vec![3, 0], vec![0, 5, 2]] {
        let strides = vec![0isize; shape.len()];
        let mut o0: Vec<u8> = Vec::new();
        let mut o1: Vec<u8> = Vec::new();
        k.run_checked(
            &shape,
            &[Input { bytes: &[], offset: 0, strides: &strides }, Input { bytes: &[], offset: 0, strides: &strides }],
            &mut [&mut o0, &mut o1],
        )
        .expect("empty runs");
        // The unsafe entry point must not touch anything either.
        // SAFETY: numel is 0; nothing is dereferenced.
        unsafe {
            k.run(
                &shape,
                &[
                    Operand { ptr: std::ptr::null(), strides: &strides },
                    Operand { ptr: std::ptr::null(), strides: &strides },
                ],
                &[std::ptr::null_mut(), std::ptr::null_mut()],
            )
        }
        .expect("empty runs");
    }
    let got = k.run_f32(&[], &[(&[0.5], &[]), (&[2.0], &[])]).expect("rank 0");
    assert_eq!(got[0], vec![2.5]);
    assert!(close(got[1][0], 0.5f64.tanh() * 2.0, 2e-6));
}

#[test]
fn bias_add_gelu_tanh() {
    let mut r = Region::new(vec![DType::Float32, DType::Float32]);
    let x = r.input(0);
    let bias = r.input(1);
    let add = ScalarExpr::Binary(BinaryFn::Add, Box::new(ScalarExpr::Arg(0)), Box::new(ScalarExpr::Arg(1)));
    let s = r.push_expr(&add, &[Some(x), Some(bias)]).expect("push");
    let g = r.push_expr(&ScalarExpr::Unary(UnaryFn::GeluTanh, Box::new(ScalarExpr::Arg(0))), &[Some(s)]).expect("push");
    r.output(g, DType::Float32);
    assert_eq!(r.ops(), 2);
    let k = kernel(&r);
    let (rows, cols) = (8usize, 300usize);
    let xs = Laid { data: values(rows * cols, 30), offset: 0, strides: vec![cols as isize, 1] };
    let b = Laid { data: values(cols, 31), offset: 0, strides: vec![0, 1] };
    check_region(&k, &[rows, cols], &[xs, b], 1e-5, 1e-6);
}

/// The same in bf16 as PyTorch computes it: bf16 storage, rounding after each op.
#[test]
fn bias_add_gelu_tanh_bf16() {
    let mut r = Region::new(vec![DType::Bfloat16, DType::Bfloat16]);
    let x = r.input(0);
    let bias = r.input(1);
    let s = r.push(Instr::Binary(BinaryFn::Add, x, bias));
    let s = r.push(Instr::Round(DType::Bfloat16, s));
    let g = r.push(Instr::Unary(UnaryFn::GeluTanh, s));
    r.output(g, DType::Bfloat16);
    let k = kernel(&r);
    let xs: Vec<u16> = values(1000, 32).iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
    let bs: Vec<u16> = values(1000, 33).iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
    let xb = u16_bytes(&xs);
    let bb = u16_bytes(&bs);
    let mut out = vec![0u8; 2000];
    k.run_checked(
        &[1000],
        &[Input { bytes: &xb, offset: 0, strides: &[1] }, Input { bytes: &bb, offset: 0, strides: &[1] }],
        &mut [&mut out],
    )
    .expect("run");
    let got = bytes_u16(&out);
    for i in 0..1000 {
        let s = half::bf16::from_f32(half::bf16::from_bits(xs[i]).to_f32() + half::bf16::from_bits(bs[i]).to_f32());
        let want = ref_unary(UnaryFn::GeluTanh, f64::from(s.to_f32())) as f32;
        let g = half::bf16::from_bits(got[i]).to_f32();
        // One bf16 ulp (2^-8 relative) covers a reference on the other side of a rounding tie.
        assert!((g - want).abs() <= want.abs() * 2f32.powi(-8) + 1e-6, "{i}: {g} vs {want}");
    }
}

#[test]
fn residual_add_and_scale() {
    let mut r = Region::new(vec![DType::Float32, DType::Float32]);
    let e = ScalarExpr::Binary(
        BinaryFn::Mul,
        Box::new(ScalarExpr::Binary(BinaryFn::Add, Box::new(ScalarExpr::Arg(0)), Box::new(ScalarExpr::Arg(1)))),
        Box::new(ScalarExpr::Const(0.125)),
    );
    let (a, b) = (r.input(0), r.input(1));
    let y = r.push_expr(&e, &[Some(a), Some(b)]).expect("push");
    r.output(y, DType::Float32);
    let k = kernel(&r);
    let xs = Laid { data: values(768, 40), offset: 0, strides: vec![768, 1] };
    let ys = Laid { data: values(768, 41), offset: 0, strides: vec![768, 1] };
    check_region(&k, &[1, 768], &[xs, ys], 0.0, 0.0);
}

#[test]
fn rotary_embedding_with_broadcast_cos_sin() {
    // out = x·cos + rot·sin, x and rot [heads, seq, dim], cos/sin [seq, dim] broadcast over heads.
    let mut r = Region::new(vec![DType::Float32; 4]);
    let (x, rot, cos, sin) = (r.input(0), r.input(1), r.input(2), r.input(3));
    let a = r.push(Instr::Binary(BinaryFn::Mul, x, cos));
    let b = r.push(Instr::Binary(BinaryFn::Mul, rot, sin));
    let y = r.push(Instr::Binary(BinaryFn::Add, a, b));
    r.output(y, DType::Float32);
    let k = kernel(&r);
    let (h, s, d) = (3usize, 5usize, 8usize);
    let st = vec![(s * d) as isize, d as isize, 1];
    let x = Laid { data: values(h * s * d, 50), offset: 0, strides: st.clone() };
    let rot = Laid { data: values(h * s * d, 51), offset: 0, strides: st };
    let cos = Laid { data: values(s * d, 52), offset: 0, strides: vec![0, d as isize, 1] };
    let sin = Laid { data: values(s * d, 53), offset: 0, strides: vec![0, d as isize, 1] };
    // Three roundings: within a few ulp of the f64 result unless the two products cancel.
    check_region(&k, &[h, s, d], &[x, rot, cos, sin], 1e-6, 1e-6);
}

#[test]
fn softmax_scale_and_mask_with_select() {
    // where(mask, x·scale, -inf), the mask a bool tensor broadcast over rows.
    let mut r = Region::new(vec![DType::Float32, DType::Bool]);
    let x = r.input(0);
    let m = r.input(1);
    let e = ScalarExpr::Select(
        Box::new(ScalarExpr::Arg(1)),
        Box::new(ScalarExpr::Binary(BinaryFn::Mul, Box::new(ScalarExpr::Arg(0)), Box::new(ScalarExpr::Const(0.125)))),
        Box::new(ScalarExpr::Const(f64::NEG_INFINITY)),
    );
    let y = r.push_expr(&e, &[Some(x), Some(m)]).expect("push");
    r.output(y, DType::Float32);
    let k = kernel(&r);
    let (rows, cols) = (4usize, 37usize);
    let xs = values(rows * cols, 60);
    let mask: Vec<u8> = (0..cols).map(|j| u8::from(j % 3 != 0)).collect();
    let xb = f32_bytes(&xs);
    let mut out = vec![0u8; rows * cols * 4];
    k.run_checked(
        &[rows, cols],
        &[
            Input { bytes: &xb, offset: 0, strides: &[cols as isize, 1] },
            Input { bytes: &mask, offset: 0, strides: &[0, 1] },
        ],
        &mut [&mut out],
    )
    .expect("run");
    let got = bytes_f32(&out);
    for i in 0..rows {
        for j in 0..cols {
            let want = if mask[j] != 0 { xs[i * cols + j] * 0.125 } else { f32::NEG_INFINITY };
            assert_eq!(got[i * cols + j], want);
        }
    }
}

#[test]
fn hash_consing_computes_shared_values_once() {
    let mut r = Region::new(vec![DType::Float32]);
    let x = r.input(0);
    assert_eq!(r.input(0), x);
    let exp = ScalarExpr::Unary(UnaryFn::Exp, Box::new(ScalarExpr::Arg(0)));
    let e1 = r.push_expr(&exp, &[Some(x)]).expect("push");
    let e2 = r.push_expr(&exp, &[Some(x)]).expect("push");
    assert_eq!(e1, e2);
    let sq = ScalarExpr::Binary(BinaryFn::Mul, Box::new(exp.clone()), Box::new(exp));
    let y = r.push_expr(&sq, &[Some(x)]).expect("push");
    // input, exp, mul: the two exps of the product are the one already there.
    assert_eq!(r.instrs.len(), 3);
    assert_eq!(r.ops(), 2);
    // Literals hash-cons by bits: 0.0 and -0.0 stay apart, NaN matches itself.
    let z = r.push(Instr::Const(0.0));
    let nz = r.push(Instr::Const(-0.0));
    assert_ne!(z, nz);
    assert_eq!(r.push(Instr::Const(f64::NAN)), r.push(Instr::Const(f64::NAN)));
    r.output(y, DType::Float32);
    let k = kernel(&r);
    assert_eq!(k.ops(), 2);
    let got = k.run_f32(&[2], &[(&[1.0, 2.0], &[1])]).expect("run");
    assert!(close(got[0][0], 1f64.exp().powi(2), 2e-6));
}

#[test]
fn compile_cache_shares_code() {
    let build = || {
        let mut r = Region::new(vec![DType::Float32]);
        let x = r.input(0);
        let y = r.push(Instr::Unary(UnaryFn::Erf, x));
        let c = r.push(Instr::Const(1.0e-3));
        let z = r.push(Instr::Binary(BinaryFn::Add, y, c));
        r.output(z, DType::Float16);
        r
    };
    let k1 = compile(&build()).expect("compile");
    let after_first = cache_len();
    let t = std::time::Instant::now();
    let k2 = compile(&build()).expect("compile");
    let second = t.elapsed();
    assert!(k1.same_code(&k2));
    assert!(cache_len() >= after_first);
    assert!(second < std::time::Duration::from_millis(50), "a cache hit took {second:?}");
    // A structurally different region is a different kernel.
    let mut other = build();
    other.outputs[0].1 = DType::Float32;
    assert!(!compile(&other).expect("compile").same_code(&k1));
    // Variants: contiguous exists; a broadcast input adds one, once.
    assert_eq!(k1.variants(), 1);
    let mut out = [0u8; 8];
    let one = 0.5f32.to_le_bytes();
    k1.run_checked(&[4], &[Input { bytes: &one, offset: 0, strides: &[0] }], &mut [&mut out]).expect("run");
    k2.run_checked(&[4], &[Input { bytes: &one, offset: 0, strides: &[0] }], &mut [&mut out]).expect("run");
    assert_eq!(k1.variants(), 2);
}

#[test]
fn run_parallel_matches_run_bit_for_bit() {
    let mut r = Region::new(vec![DType::Float32, DType::Float32]);
    let x = r.input(0);
    let b = r.input(1);
    let s = r.push(Instr::Binary(BinaryFn::Add, x, b));
    let g = r.push(Instr::Unary(UnaryFn::GeluErf, s));
    let h = r.push(Instr::Unary(UnaryFn::Sigmoid, s));
    r.output(g, DType::Float32);
    r.output(h, DType::Bfloat16);
    let k = kernel(&r);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().expect("pool");
    for (rows, cols) in [(300usize, 1000usize), (1, 200_003), (70_001, 1), (3, 40_000), (1000, 7)] {
        let xs = values(rows * cols, 70);
        let bs = values(cols, 71);
        let in_strides: [&[isize]; 2] = [&[cols as isize, 1], &[0, 1]];
        let run = |parallel: bool| {
            let mut o0 = vec![0f32; rows * cols];
            let mut o1 = vec![0u16; rows * cols];
            // Addresses, not pointers, cross into the pool (raw pointers are not Send).
            let addrs =
                [xs.as_ptr() as usize, bs.as_ptr() as usize, o0.as_mut_ptr() as usize, o1.as_mut_ptr() as usize];
            let go = || {
                let ins = [
                    Operand { ptr: addrs[0] as *const u8, strides: in_strides[0] },
                    Operand { ptr: addrs[1] as *const u8, strides: in_strides[1] },
                ];
                let outs = [addrs[2] as *mut u8, addrs[3] as *mut u8];
                // SAFETY: inputs cover every offset their strides reach; outputs hold numel
                // elements and outlive the call.
                unsafe {
                    if parallel {
                        k.run_parallel(&[rows, cols], &ins, &outs)
                    } else {
                        k.run(&[rows, cols], &ins, &outs)
                    }
                }
            };
            pool.install(go).expect("run");
            (o0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), o1)
        };
        assert!(run(false) == run(true), "[{rows}, {cols}]");
    }
}

#[test]
fn validation_errors_are_typed() {
    let base = || Region::new(vec![DType::Float32]);
    let mut r = base();
    r.instrs.push(Instr::Unary(UnaryFn::Exp, 0));
    r.output(0, DType::Float32);
    assert_eq!(r.validate(), Err(JitError::BadOperand { instr: 0, operand: 0 }));

    let mut r = base();
    let x = r.input(3);
    r.output(x, DType::Float32);
    assert_eq!(r.validate(), Err(JitError::BadInput { instr: 0, input: 3, inputs: 1 }));

    let mut r = Region::new(vec![DType::Float64]);
    let x = r.input(0);
    r.output(x, DType::Float32);
    assert_eq!(compile(&r).err(), Some(JitError::UnsupportedInput { input: 0, dtype: DType::Float64 }));

    let mut r = base();
    let x = r.input(0);
    r.output(x, DType::Int64);
    assert_eq!(r.validate(), Err(JitError::UnsupportedOutput { output: 0, dtype: DType::Int64 }));

    let mut r = Region::new(vec![DType::Complex64]);
    let x = r.input(0);
    r.output(x, DType::Float32);
    assert!(matches!(r.validate(), Err(JitError::UnsupportedInput { .. })));

    let mut r = base();
    let x = r.input(0);
    let y = r.push(Instr::Round(DType::Float64, x));
    r.output(y, DType::Float32);
    assert_eq!(r.validate(), Err(JitError::UnsupportedRound { instr: 1, dtype: DType::Float64 }));

    let mut r = base();
    r.input(0);
    assert_eq!(r.validate(), Err(JitError::NoOutputs));

    let mut r = base();
    r.input(0);
    r.output(5, DType::Float32);
    assert_eq!(r.validate(), Err(JitError::BadOutput { output: 0, instr: 5, len: 1 }));

    let mut r = base();
    let x = r.input(0);
    let e = ScalarExpr::Binary(BinaryFn::Add, Box::new(ScalarExpr::Arg(0)), Box::new(ScalarExpr::Arg(1)));
    assert_eq!(r.push_expr(&e, &[Some(x), None]), Err(JitError::UnboundArg { arg: 1 }));
    assert_eq!(r.push_expr(&e, &[Some(x)]), Err(JitError::UnboundArg { arg: 1 }));
    assert_eq!(r.push_expr(&e, &[Some(x), Some(9)]), Err(JitError::BadArg { arg: 1, instr: 9, len: 1 }));
}

#[test]
fn run_errors_are_typed() {
    let k = kernel(&two_output_region());
    let a = [1.0f32; 4];
    assert_eq!(
        k.run_f32(&[4], &[(&a, &[1])]).err(),
        Some(JitError::OperandCount { what: "inputs", expected: 2, got: 1 })
    );
    assert_eq!(
        k.run_f32(&[4], &[(&a, &[1]), (&a, &[1, 1])]).err(),
        Some(JitError::RankMismatch { input: 1, expected: 1, got: 2 })
    );
    assert_eq!(
        k.run_f32(&[5], &[(&a, &[1]), (&a, &[1])]).err(),
        Some(JitError::OutOfBounds { operand: "input 0".into() })
    );
    assert_eq!(
        k.run_f32(&[2, 2], &[(&a, &[-1, 1]), (&a, &[2, 1])]).err(),
        Some(JitError::OutOfBounds { operand: "input 0".into() })
    );
    let mut small = [0u8; 4];
    let mut fine = [0u8; 16];
    let ab = f32_bytes(&a);
    let ins = [Input { bytes: &ab, offset: 0, strides: &[1] }, Input { bytes: &ab, offset: 0, strides: &[1] }];
    assert_eq!(
        k.run_checked(&[4], &ins, &mut [&mut fine, &mut small]).err(),
        Some(JitError::OutOfBounds { operand: "output 1".into() })
    );
    assert_eq!(
        k.run_checked(&[4], &ins, &mut [&mut fine]).err(),
        Some(JitError::OperandCount { what: "outputs", expected: 2, got: 1 })
    );
    // SAFETY: refused before any pointer is used.
    let e = unsafe { k.run(&[4], &[Operand { ptr: std::ptr::null(), strides: &[1] }], &[]) };
    assert_eq!(e.err(), Some(JitError::OperandCount { what: "inputs", expected: 2, got: 1 }));
    let bf = kernel(&unary_region(UnaryFn::Exp, DType::Bfloat16, DType::Float32));
    assert_eq!(bf.run_f32(&[1], &[(&a, &[1])]).err(), Some(JitError::NotFloat32));
}

//! Loads and stores of every storage dtype, bit-exact against the `half` crate.

mod common;

use common::*;
use genie_ir::registry::UnaryFn;
use genie_ir::DType;
use genie_jit::{Input, Region};

/// A region storing its input unchanged: a pure load/store round trip.
fn copy(input: DType, output: DType) -> Region {
    let mut r = Region::new(vec![input]);
    let x = r.input(0);
    r.output(x, output);
    r
}

#[test]
fn f16_and_bf16_loads_are_exact_for_every_bit_pattern() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let bytes = u16_bytes(&all);
    for dtype in [DType::Float16, DType::Bfloat16] {
        let k = kernel(&copy(dtype, DType::Float32));
        let got = bytes_f32(&run_bytes(&k, &bytes, all.len(), 4));
        for (&h, &g) in all.iter().zip(&got) {
            let want = if dtype == DType::Float16 {
                half::f16::from_bits(h).to_f32().to_bits()
            } else if half::bf16::from_bits(h).is_nan() {
                // bf16 widens by a plain shift, as PyTorch does; `half` would also quiet a
                // signaling NaN. The NaN keeps its sign and payload.
                u32::from(h) << 16
            } else {
                half::bf16::from_bits(h).to_f32().to_bits()
            };
            assert_eq!(g.to_bits(), want, "{dtype:?} {h:#06x}: {g:e}");
        }
    }
}

/// f32 values around every rounding boundary of a 16-bit format with `shift` dropped bits: each
/// representable value, the midpoints to its neighbour and one f32 ulp either side, plus a
/// coarse walk over all bit patterns.
fn boundary_values(shift: u32, lo: u32, hi: u32) -> Vec<f32> {
    let mut v = Vec::new();
    let half_step = 1u32 << (shift - 1);
    for base in (lo..hi).step_by(1 << shift) {
        for d in [0, 1, half_step - 1, half_step, half_step + 1] {
            v.push(f32::from_bits(base.wrapping_add(d)));
            v.push(f32::from_bits(base.wrapping_add(d) | 0x8000_0000));
        }
    }
    let mut u = 0u32;
    while let Some(next) = u.checked_add(4099) {
        v.push(f32::from_bits(u));
        u = next;
    }
    v
}

#[test]
fn bf16_stores_round_to_nearest_even_like_half() {
    let xs = boundary_values(16, 0, 0x7fff_ffff);
    let k = kernel(&copy(DType::Float32, DType::Bfloat16));
    let got = bytes_u16(&run_bytes(&k, &f32_bytes(&xs), xs.len(), 2));
    for (&x, &g) in xs.iter().zip(&got) {
        let want = half::bf16::from_f32(x).to_bits();
        assert_eq!(g, want, "bf16({x:e} = {:#x})", x.to_bits());
    }
}

#[test]
fn f16_stores_round_to_nearest_even_like_half() {
    // Normal f16 values are the f32 bit patterns with 13 zero low bits between the smallest
    // normal (0x3880_0000) and the overflow threshold; walk a little beyond both ends.
    // Subnormal boundaries have their own test below.
    let xs = boundary_values(13, 0x3800_0000, 0x4800_0000);
    let k = kernel(&copy(DType::Float32, DType::Float16));
    let got = bytes_u16(&run_bytes(&k, &f32_bytes(&xs), xs.len(), 2));
    for (&x, &g) in xs.iter().zip(&got) {
        let want = half::f16::from_f32(x).to_bits();
        assert_eq!(g, want, "f16({x:e} = {:#x})", x.to_bits());
    }
}

#[test]
fn f16_subnormal_boundaries() {
    // Midpoints between f16 subnormals (k·2^-24 and (k+1)·2^-24) and their f32 neighbours.
    let mut xs = Vec::new();
    for k in 0..1100u32 {
        let mid = (k as f32 + 0.5) * 2f32.powi(-24);
        for x in [mid, f32::from_bits(mid.to_bits() - 1), f32::from_bits(mid.to_bits() + 1), k as f32 * 2f32.powi(-24)]
        {
            xs.push(x);
            xs.push(-x);
        }
    }
    let k = kernel(&copy(DType::Float32, DType::Float16));
    let got = bytes_u16(&run_bytes(&k, &f32_bytes(&xs), xs.len(), 2));
    for (&x, &g) in xs.iter().zip(&got) {
        assert_eq!(g, half::f16::from_f32(x).to_bits(), "f16({x:e})");
    }
}

#[test]
fn bool_loads_and_stores() {
    let k = kernel(&copy(DType::Bool, DType::Float32));
    let bytes: Vec<u8> = (0..=255).collect();
    let got = bytes_f32(&run_bytes(&k, &bytes, bytes.len(), 4));
    for (&b, &g) in bytes.iter().zip(&got) {
        assert_eq!(g, f32::from(u8::from(b != 0)));
    }
    let xs = sweep();
    let k = kernel(&copy(DType::Float32, DType::Bool));
    let got = run_bytes(&k, &f32_bytes(&xs), xs.len(), 1);
    for (&x, &g) in xs.iter().zip(&got) {
        assert_eq!(g, u8::from(x != 0.0), "bool({x:e})");
    }
}

#[test]
fn integer_loads_convert_to_f32() {
    let mut rng = Rng(99);
    let n = 1003;
    let i64s: Vec<i64> = (0..n)
        .map(|i| match i % 4 {
            0 => i64::from(rng.next_u32() as i32),
            1 => (i64::from(rng.next_u32()) << 32) | i64::from(rng.next_u32()),
            2 => i64::MIN + i as i64,
            _ => i as i64 - 500,
        })
        .collect();
    let check = |dtype: DType, bytes: Vec<u8>, want: Vec<f32>| {
        let k = kernel(&copy(dtype, DType::Float32));
        let got = bytes_f32(&run_bytes(&k, &bytes, want.len(), 4));
        assert_eq!(got, want, "{dtype:?}");
    };
    check(DType::Int64, i64s.iter().flat_map(|x| x.to_le_bytes()).collect(), i64s.iter().map(|&x| x as f32).collect());
    let i32s: Vec<i32> = i64s.iter().map(|&x| x as i32).collect();
    check(DType::Int32, i32s.iter().flat_map(|x| x.to_le_bytes()).collect(), i32s.iter().map(|&x| x as f32).collect());
    let i16s: Vec<i16> = i64s.iter().map(|&x| x as i16).collect();
    check(
        DType::Int16,
        i16s.iter().flat_map(|x| x.to_le_bytes()).collect(),
        i16s.iter().map(|&x| f32::from(x)).collect(),
    );
    let i8s: Vec<i8> = i64s.iter().map(|&x| x as i8).collect();
    check(DType::Int8, i8s.iter().map(|&x| x as u8).collect(), i8s.iter().map(|&x| f32::from(x)).collect());
    let u8s: Vec<u8> = i64s.iter().map(|&x| x as u8).collect();
    check(DType::Uint8, u8s.clone(), u8s.iter().map(|&x| f32::from(x)).collect());
}

/// An op in f16: widen, compute, narrow; against the f32 result narrowed by `half`.
#[test]
fn f16_op_with_f16_io() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let k = kernel(&unary_region(UnaryFn::Sqrt, DType::Float16, DType::Float16));
    let got = bytes_u16(&run_bytes(&k, &u16_bytes(&all), all.len(), 2));
    for (&h, &g) in all.iter().zip(&got) {
        let want = half::f16::from_f32(half::f16::from_bits(h).to_f32().sqrt());
        assert!(g == want.to_bits() || (want.is_nan() && half::f16::from_bits(g).is_nan()), "sqrt({h:#06x})");
    }
}

/// Broadcast and strided reads of 16-bit inputs go through the scalar load path.
#[test]
fn bf16_broadcast_and_strided_inputs() {
    let vals: Vec<u16> = (0..64).map(|i| half::bf16::from_f32(i as f32 * 0.75 - 9.0).to_bits()).collect();
    let bytes = u16_bytes(&vals);
    let mut r = Region::new(vec![DType::Bfloat16, DType::Bfloat16]);
    let a = r.input(0);
    let b = r.input(1);
    let y = r.push(genie_jit::Instr::Binary(genie_ir::registry::BinaryFn::Mul, a, b));
    r.output(y, DType::Float32);
    let k = kernel(&r);
    // a: [4, 7] read transposed from an [7, 4]-ish layout (strides [1, 4]); b: broadcast row [7].
    let shape = [4usize, 7];
    let mut out = vec![0u8; 28 * 4];
    k.run_checked(
        &shape,
        &[Input { bytes: &bytes, offset: 0, strides: &[1, 4] }, Input { bytes: &bytes, offset: 3, strides: &[0, 2] }],
        &mut [&mut out],
    )
    .expect("run");
    let got = bytes_f32(&out);
    let f = |i: usize| half::bf16::from_bits(vals[i]).to_f32();
    for i in 0..4 {
        for j in 0..7 {
            assert_eq!(got[i * 7 + j], f(i + 4 * j) * f(3 + 2 * j), "[{i}, {j}]");
        }
    }
}

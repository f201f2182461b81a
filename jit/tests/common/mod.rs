//! Shared helpers of the JIT's tests: f64 references, value sweeps, comparison.

#![allow(dead_code)]

use genie_ir::registry::{BinaryFn, Comparison, UnaryFn};
use genie_ir::DType;
use genie_jit::{compile, Input, Kernel, Region};

pub const UNARY: [UnaryFn; 19] = [
    UnaryFn::Neg,
    UnaryFn::Abs,
    UnaryFn::Square,
    UnaryFn::Reciprocal,
    UnaryFn::Sqrt,
    UnaryFn::Rsqrt,
    UnaryFn::Exp,
    UnaryFn::Log,
    UnaryFn::Tanh,
    UnaryFn::Erf,
    UnaryFn::Sigmoid,
    UnaryFn::Relu,
    UnaryFn::Silu,
    UnaryFn::GeluTanh,
    UnaryFn::GeluErf,
    UnaryFn::Floor,
    UnaryFn::Ceil,
    UnaryFn::Trunc,
    UnaryFn::LogicalNot,
];

pub const BINARY: [BinaryFn; 15] = [
    BinaryFn::Add,
    BinaryFn::Sub,
    BinaryFn::Mul,
    BinaryFn::Div,
    BinaryFn::Max,
    BinaryFn::Min,
    BinaryFn::Pow,
    BinaryFn::Compare(Comparison::Eq),
    BinaryFn::Compare(Comparison::Ne),
    BinaryFn::Compare(Comparison::Lt),
    BinaryFn::Compare(Comparison::Le),
    BinaryFn::Compare(Comparison::Gt),
    BinaryFn::Compare(Comparison::Ge),
    BinaryFn::And,
    BinaryFn::Or,
];

/// The straightforward f64 reference of a unary function.
pub fn ref_unary(f: UnaryFn, x: f64) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    match f {
        UnaryFn::Neg => -x,
        UnaryFn::Abs => x.abs(),
        UnaryFn::Square => x * x,
        UnaryFn::Reciprocal => 1.0 / x,
        UnaryFn::Sqrt => x.sqrt(),
        UnaryFn::Rsqrt => 1.0 / x.sqrt(),
        UnaryFn::Exp => x.exp(),
        UnaryFn::Log => x.ln(),
        UnaryFn::Tanh => x.tanh(),
        UnaryFn::Erf => libm::erf(x),
        UnaryFn::Sigmoid => sigmoid(x),
        UnaryFn::Relu => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        UnaryFn::Silu => x / (1.0 + (-x).exp()),
        // 0.5·x·(1 + tanh(u)) written as x·sigmoid(2u), the same value without cancellation.
        UnaryFn::GeluTanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            x / (1.0 + (-2.0 * u).exp())
        }
        // 0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(−x/√2).
        UnaryFn::GeluErf => 0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2),
        UnaryFn::Floor => x.floor(),
        UnaryFn::Ceil => x.ceil(),
        UnaryFn::Trunc => x.trunc(),
        UnaryFn::LogicalNot => b(x == 0.0),
    }
}

/// A signaling NaN: C's `powf` returns NaN for it even where a quiet NaN gives 1 (`pow(1, y)`,
/// `pow(x, 0)`), and widening to f64 would quiet it, so references check the f32 bits.
pub fn is_snan(x: f32) -> bool {
    x.is_nan() && x.to_bits() & 0x0040_0000 == 0
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// The f64 reference of a binary function.
pub fn ref_binary(f: BinaryFn, x: f64, y: f64) -> f64 {
    match f {
        BinaryFn::Add => x + y,
        BinaryFn::Sub => x - y,
        BinaryFn::Mul => x * y,
        BinaryFn::Div => x / y,
        BinaryFn::Max => {
            if x.is_nan() || y.is_nan() {
                f64::NAN
            } else {
                x.max(y)
            }
        }
        BinaryFn::Min => {
            if x.is_nan() || y.is_nan() {
                f64::NAN
            } else {
                x.min(y)
            }
        }
        BinaryFn::Pow => x.powf(y),
        BinaryFn::Compare(Comparison::Eq) => b(x == y),
        BinaryFn::Compare(Comparison::Ne) => b(x != y),
        BinaryFn::Compare(Comparison::Lt) => b(x < y),
        BinaryFn::Compare(Comparison::Le) => b(x <= y),
        BinaryFn::Compare(Comparison::Gt) => b(x > y),
        BinaryFn::Compare(Comparison::Ge) => b(x >= y),
        BinaryFn::And => b(x != 0.0 && y != 0.0),
        BinaryFn::Or => b(x != 0.0 || y != 0.0),
    }
}

/// Relative tolerance of each unary function against its f64 reference.
pub fn unary_rtol(f: UnaryFn) -> f64 {
    match f {
        UnaryFn::Neg
        | UnaryFn::Abs
        | UnaryFn::Square
        | UnaryFn::Reciprocal
        | UnaryFn::Sqrt
        | UnaryFn::Relu
        | UnaryFn::Floor
        | UnaryFn::Ceil
        | UnaryFn::Trunc
        | UnaryFn::LogicalNot => 0.0,
        // Two roundings: sqrt, then the division.
        UnaryFn::Rsqrt => 2e-7,
        _ => 2e-6,
    }
}

/// Absolute tolerance: results in f32's subnormal range carry no relative accuracy.
pub const ATOL: f64 = 1e-37;

/// Absolute tolerance of each unary function. The GELUs and SiLU of very negative inputs are
/// tiny values of an ill-conditioned expression (an error of one ulp in the f32 intermediate
/// `x³` or `x²` moves `exp` of it by |2u|·ulp), so their far tail is checked absolutely, far
/// below the 1e-6 the runtime's comparison against libtorch allows.
pub fn unary_atol(f: UnaryFn) -> f64 {
    match f {
        UnaryFn::GeluTanh | UnaryFn::GeluErf | UnaryFn::Silu => 1e-10,
        _ => ATOL,
    }
}

/// Whether `got` (f32) agrees with the f64 reference `want`: both NaN, equal after rounding
/// `want` to f32 (so ±inf and exact results match exactly), or within `rtol·|want| + ATOL`.
pub fn close(got: f32, want: f64, rtol: f64) -> bool {
    close_abs(got, want, rtol, ATOL)
}

/// [`close`] with an explicit absolute tolerance.
pub fn close_abs(got: f32, want: f64, rtol: f64, atol: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    let want32 = want as f32;
    if got == want32 {
        return true;
    }
    if want32.is_infinite() || got.is_infinite() {
        return false;
    }
    (f64::from(got) - want).abs() <= rtol * want.abs() + atol
}

/// Relative error of `got` against `want`, counted only where `|want|` is at least `floor`.
pub fn rel_err(got: f32, want: f64, floor: f64) -> f64 {
    if !want.is_finite() || want.abs() < floor || (want as f32).is_infinite() {
        return 0.0;
    }
    (f64::from(got) - want).abs() / want.abs()
}

/// A deterministic pseudo-random stream (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
}

/// Values every op is checked on: specials, every binade of both signs, subnormals, random bit
/// patterns and a dense sweep of the interesting range.
pub fn sweep() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        f32::from_bits(0x007f_ffff),
        f32::MAX,
        f32::MIN,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        88.72,
        88.73,
        -87.3,
        -103.0,
        -104.0,
        0.55,
        -0.55,
        0.549_999_95,
        1.0 - f32::EPSILON / 2.0,
        1.0 + f32::EPSILON,
    ];
    for e in -149..128 {
        let p = 2f32.powi(e);
        v.extend([p, -p, p * 1.3, -p * 1.7]);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        v.push(f32::from_bits(rng.next_u32()));
    }
    for i in 0..40_001 {
        v.push(-20.0 + 40.0 * i as f32 / 40_000.0);
    }
    for _ in 0..20_000 {
        v.push(rng.uniform(-2.0, 2.0));
    }
    v
}

/// A region computing `f(input 0)` with the given storage dtypes.
pub fn unary_region(f: UnaryFn, input: DType, output: DType) -> Region {
    let mut r = Region::new(vec![input]);
    let x = r.input(0);
    let y = r.push(genie_jit::Instr::Unary(f, x));
    r.output(y, output);
    r
}

/// A region computing `f(input 0, input 1)` in f32.
pub fn binary_region(f: BinaryFn) -> Region {
    let mut r = Region::new(vec![DType::Float32, DType::Float32]);
    let a = r.input(0);
    let b = r.input(1);
    let y = r.push(genie_jit::Instr::Binary(f, a, b));
    r.output(y, DType::Float32);
    r
}

/// Compiles, panicking with the error (tests only).
pub fn kernel(r: &Region) -> Kernel {
    compile(r).unwrap_or_else(|e| panic!("compile failed: {e}"))
}

/// Runs a one-input, one-output kernel over a contiguous 1-D input of raw bytes.
pub fn run_bytes(k: &Kernel, input: &[u8], n: usize, out_size: usize) -> Vec<u8> {
    let mut out = vec![0u8; n * out_size];
    k.run_checked(&[n], &[Input { bytes: input, offset: 0, strides: &[1] }], &mut [&mut out])
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    out
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bytes_f32(v: &[u8]) -> Vec<f32> {
    v.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

pub fn u16_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bytes_u16(v: &[u8]) -> Vec<u16> {
    v.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

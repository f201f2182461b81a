//! Genie's element-wise JIT: compiles fused element-wise regions into native loops with
//! cranelift.
//!
//! **What.** A fusion pass strings the scalar expressions of neighbouring element-wise ops
//! ([`genie_ir::registry::ScalarExpr`]) into a [`Region`]: the storage dtypes of its inputs, a flat
//! program of [`Instr`]s (hash-consed, so a value used twice is computed once) and the
//! instructions stored as outputs. [`compile`] turns a region into a [`Kernel`] that computes all
//! outputs in one pass over memory, instead of one pass (and one temporary) per op.
//!
//! **How.** The Rust side collapses the iteration shape (dropping size-1 dimensions, merging
//! neighbours that every operand walks as one), so most calls loop over one or two dimensions,
//! and walks the outer indices itself (on one thread, or split across the rayon pool by
//! [`Kernel::run_parallel`]). Native code handles one innermost row:
//! `extern "C" fn(args: *const usize, n: i64)` with a base pointer per operand in `args`. A row
//! function is compiled per *shape class*: the inner stride of each input is 1 (contiguous,
//! vector loads), 0 (broadcast, loaded once before the loop) or anything else (strided, the stride
//! read from `args`, so one variant serves every stride). Variants are compiled lazily and cached
//! per kernel; kernels are cached process-wide by region structure.
//!
//! **Vectorisation.** The row loop runs four elements at a time in f32x4 lanes, then a scalar
//! tail; both are generated from the same op emitters, so they compute the same bits. f16/bf16
//! are widened on load and narrowed with round-to-nearest-even on store by integer bit
//! manipulation in the generated code (bit-exact with the `half` crate, except that a signaling
//! bf16 NaN widens unquieted, by a plain shift as in PyTorch); bool loads give 1.0/0.0 and bool
//! stores `value ≠ 0`. Transcendentals (exp, log, tanh, sigmoid, erf, the GELUs) are
//! polynomial approximations in the generated code, vectorised like everything else; only a
//! general `pow` calls out to `powf`, once per lane.
//!
//! **Accuracy.** All arithmetic is f32, matching PyTorch's CPU kernels for f32/f16/bf16 tensors.
//! Against f64 references on dense sweeps (tests/ops.rs) the maximum relative errors are about
//! 1.1e-7 (exp), 8e-8 (log), 1.7e-7 (tanh), 1.9e-7 (sigmoid), 1.7e-7 (erf), 2.2e-7 (silu) and
//! 1.6e-6 (the GELUs, limited by the f32 rounding of `x³`/`x²` inside `exp` for negative inputs;
//! their tails are within 1e-10 absolutely); 0, ±inf and NaN come out exact. GELU-erf of negative
//! inputs goes through `erfc` directly, and GELU-tanh is `x·sigmoid(2u)`, so neither cancels
//! against 1.

mod codegen;
mod kernel;
mod region;

pub use kernel::{cache_len, compile, Input, Kernel, Operand, MAX_INPUTS, PARALLEL_MIN_ELEMENTS};
pub use region::{Instr, Region};

use genie_ir::DType;

/// Why a region was refused or a kernel could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JitError {
    #[error("instruction {instr} reads instruction {operand}, which does not precede it")]
    BadOperand { instr: usize, operand: usize },
    #[error("instruction {instr} reads input {input}, but the region has {inputs} inputs")]
    BadInput { instr: usize, input: usize, inputs: usize },
    #[error("input {input} has dtype {dtype:?}, which the JIT cannot load")]
    UnsupportedInput { input: usize, dtype: DType },
    #[error("instruction {instr} rounds to {dtype:?}, which the JIT does not support")]
    UnsupportedRound { instr: usize, dtype: DType },
    #[error("output {output} names instruction {instr}, but the region has {len} instructions")]
    BadOutput { output: usize, instr: usize, len: usize },
    #[error("output {output} has dtype {dtype:?}, which the JIT cannot store")]
    UnsupportedOutput { output: usize, dtype: DType },
    #[error("the region has {inputs} inputs, more than the {max} supported")]
    TooManyInputs { inputs: usize, max: usize },
    #[error("the region has no outputs")]
    NoOutputs,
    #[error("expression argument {arg} is not bound to an instruction")]
    UnboundArg { arg: usize },
    #[error("expression argument {arg} is bound to instruction {instr}, but the region has {len}")]
    BadArg { arg: usize, instr: usize, len: usize },
    #[error("expected {expected} {what}, got {got}")]
    OperandCount { what: &'static str, expected: usize, got: usize },
    #[error("input {input} has {got} strides for a shape of rank {expected}")]
    RankMismatch { input: usize, expected: usize, got: usize },
    #[error("the shape's element count overflows")]
    ShapeOverflow,
    #[error("{operand} is too small for the elements the shape reaches")]
    OutOfBounds { operand: String },
    #[error("run_f32 needs a region whose inputs and outputs are all Float32")]
    NotFloat32,
    #[error("code generation failed: {0}")]
    Codegen(String),
}

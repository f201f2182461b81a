//! Cranelift code for one row of a region: `extern "C" fn(args: *const usize, n: i64)`.
//!
//! `args` holds one base pointer per operand (inputs, then outputs) followed by one inner stride
//! (in elements) per operand; only strided inputs read theirs. The function loops `i` over
//! `0..n`: four elements at a time in f32x4 lanes where the host has the SIMD the lowering needs,
//! then a scalar tail. Every value op is written once over an [`Em`] that is either scalar (f32)
//! or vector (f32x4), so both loops compute the same bits.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, I16X8, I32, I32X4, I64, I64X2};
use cranelift_codegen::ir::{AbiParam, Endianness, FuncRef, InstBuilder, MemFlagsData, Type, UserFuncName, Value};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use genie_ir::registry::{BinaryFn, Comparison, UnaryFn};
use genie_ir::DType;

use crate::region::{Instr, Region};
use crate::JitError;

/// The compiled row function.
pub(crate) type RowFn = unsafe extern "C" fn(*const usize, i64);

/// How an input is laid out along the innermost (looped) dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    /// Stride 1: vector loads.
    Contig,
    /// Stride 0: loaded once before the loop.
    Bcast,
    /// Any other stride, read from `args` at run time (so one variant serves every stride).
    Strided,
}

/// `powf` for the generated code: PyTorch's CPU `pow` on f32 is C's `powf`, as is Rust's.
extern "C" fn genie_jit_powf(a: f32, b: f32) -> f32 {
    a.powf(b)
}

const POWF: &str = "genie_jit_powf";

/// The host ISA, built once. An error string when cranelift does not support the host.
fn isa() -> Result<OwnedTargetIsa, JitError> {
    static ISA: OnceLock<Result<OwnedTargetIsa, String>> = OnceLock::new();
    ISA.get_or_init(|| {
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").map_err(|e| e.to_string())?;
        // The JIT's code and its helpers live anywhere in the address space.
        flags.set("use_colocated_libcalls", "false").map_err(|e| e.to_string())?;
        flags.set("is_pic", "false").map_err(|e| e.to_string())?;
        let builder = cranelift_native::builder().map_err(|e| e.to_string())?;
        builder.finish(settings::Flags::new(flags)).map_err(|e| e.to_string())
    })
    .clone()
    .map_err(JitError::Codegen)
}

/// Whether the vector loop may be emitted: the x86-64 lowering of the f32x4 ops used here
/// (rounding, unsigned narrowing) needs SSE4.1; aarch64 always has NEON.
fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Every module ever compiled. Modules are never freed, so a row function pointer handed out once
/// stays valid for the life of the process (kernels are cached process-wide anyway).
fn modules() -> &'static Mutex<Vec<JITModule>> {
    static MODULES: OnceLock<Mutex<Vec<JITModule>>> = OnceLock::new();
    MODULES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Compiles the row function of `region` (validated) for the inner-stride classes `classes` (one
/// per input). A fresh module per variant: a cranelift failure (or panic) leaves no half-built
/// state behind in a shared module.
pub(crate) fn compile_row(region: &Region, classes: &[Class]) -> Result<RowFn, JitError> {
    let isa = isa()?;
    let vector = simd();
    let built = catch_unwind(AssertUnwindSafe(|| -> Result<(JITModule, *const u8), JitError> {
        let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
        jb.symbol(POWF, genie_jit_powf as *const u8);
        let mut module = JITModule::new(jb);
        let ptr = define(&mut module, region, classes, vector)?;
        Ok((module, ptr))
    }));
    let (module, ptr) = match built {
        Ok(r) => r?,
        Err(_) => return Err(JitError::Codegen("cranelift panicked while compiling the region".into())),
    };
    modules().lock().unwrap_or_else(|e| e.into_inner()).push(module);
    // SAFETY: `ptr` is the finalized code of a function declared with this exact signature, and
    // its module is kept alive forever above.
    Ok(unsafe { std::mem::transmute::<*const u8, RowFn>(ptr) })
}

fn cg<E: std::fmt::Display>(e: E) -> JitError {
    JitError::Codegen(e.to_string())
}

fn define(module: &mut JITModule, region: &Region, classes: &[Class], vector: bool) -> Result<*const u8, JitError> {
    let ptr_ty = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(ptr_ty));
    sig.params.push(AbiParam::new(I64));
    let mut pow_sig = module.make_signature();
    pow_sig.params.push(AbiParam::new(F32));
    pow_sig.params.push(AbiParam::new(F32));
    pow_sig.returns.push(AbiParam::new(F32));
    let row_id = module.declare_function("row", Linkage::Local, &sig).map_err(cg)?;
    let pow_id = module.declare_function(POWF, Linkage::Import, &pow_sig).map_err(cg)?;

    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, row_id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let pow = module.declare_func_in_func(pow_id, b.func);
        build(&mut b, region, classes, vector, ptr_ty, pow);
        b.seal_all_blocks();
        b.finalize(module.target_config());
    }
    module.define_function(row_id, &mut ctx).map_err(cg)?;
    module.clear_context(&mut ctx);
    module.finalize_definitions().map_err(cg)?;
    Ok(module.get_finalized_function(row_id))
}

/// Loads are plain (possibly unaligned) accesses; the caller vouches for their validity.
fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Per input, what the loop bodies need: its base pointer and stride in bytes, or its hoisted
/// value when broadcast.
#[derive(Clone, Copy)]
struct In {
    dtype: DType,
    class: Class,
    base: Value,
    /// Byte stride of a strided input.
    stride: Option<Value>,
    /// Hoisted scalar and splat of a broadcast input.
    scalar: Option<Value>,
    splat: Option<Value>,
}

fn size_of(d: DType) -> i64 {
    d.size_bytes() as i64
}

fn build(b: &mut FunctionBuilder, region: &Region, classes: &[Class], vector: bool, ptr_ty: Type, pow: FuncRef) {
    let live = region.live();
    let mut used = vec![false; region.inputs.len()];
    for (i, x) in region.instrs.iter().enumerate() {
        if let (true, Instr::Input(k)) = (live[i], x) {
            used[*k] = true;
        }
    }
    let nops = region.inputs.len() + region.outputs.len();

    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let args = b.block_params(entry)[0];
    let n = b.block_params(entry)[1];

    // Base pointers, strides and hoisted broadcast values.
    let mut ins: Vec<Option<In>> = Vec::new();
    for (k, &dtype) in region.inputs.iter().enumerate() {
        if !used[k] {
            ins.push(None);
            continue;
        }
        let class = classes.get(k).copied().unwrap_or(Class::Strided);
        let base = b.ins().load(ptr_ty, mem(), args, (8 * k) as i32);
        let mut input = In { dtype, class, base, stride: None, scalar: None, splat: None };
        match class {
            Class::Contig => {}
            Class::Strided => {
                let s = b.ins().load(I64, mem(), args, (8 * (nops + k)) as i32);
                input.stride = Some(b.ins().imul_imm_s(s, size_of(dtype)));
            }
            Class::Bcast => {
                let mut em = Em { b: &mut *b, vector: false, pow };
                let v = em.load_scalar(dtype, base);
                input.scalar = Some(v);
                if vector {
                    input.splat = Some(b.ins().splat(F32X4, v));
                }
            }
        }
        ins.push(Some(input));
    }
    let outs: Vec<(Value, DType)> = region
        .outputs
        .iter()
        .enumerate()
        .map(|(j, &(_, dtype))| {
            let k = region.inputs.len() + j;
            (b.ins().load(ptr_ty, mem(), args, (8 * k) as i32), dtype)
        })
        .collect();

    let vhead = b.create_block();
    let vbody = b.create_block();
    let shead = b.create_block();
    let sbody = b.create_block();
    let exit = b.create_block();
    for block in [vhead, vbody, shead, sbody] {
        b.append_block_param(block, I64);
    }
    let zero = b.ins().iconst(I64, 0);
    if vector {
        b.ins().jump(vhead, &[zero.into()]);
    } else {
        b.ins().jump(shead, &[zero.into()]);
    }

    if vector {
        b.switch_to_block(vhead);
        let i = b.block_params(vhead)[0];
        let end = b.ins().iadd_imm_s(i, 4);
        let fits = b.ins().icmp(IntCC::SignedLessThanOrEqual, end, n);
        b.ins().brif(fits, vbody, &[i.into()], shead, &[i.into()]);

        b.switch_to_block(vbody);
        let i = b.block_params(vbody)[0];
        let mut em = Em { b: &mut *b, vector: true, pow };
        em.body(region, &live, &ins, &outs, i);
        let next = b.ins().iadd_imm_s(i, 4);
        b.ins().jump(vhead, &[next.into()]);
    }

    b.switch_to_block(shead);
    let i = b.block_params(shead)[0];
    let more = b.ins().icmp(IntCC::SignedLessThan, i, n);
    b.ins().brif(more, sbody, &[i.into()], exit, &[]);

    b.switch_to_block(sbody);
    let i = b.block_params(sbody)[0];
    let mut em = Em { b: &mut *b, vector: false, pow };
    em.body(region, &live, &ins, &outs, i);
    let next = b.ins().iadd_imm_s(i, 1);
    b.ins().jump(shead, &[next.into()]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
}

// Polynomial coefficients, highest degree first. Fitted for this crate with mpmath's `chebyfit`
// (near-minimax Chebyshev fits); the comment on each states the function, interval and error.

/// `exp(r)` on `[-ln2/2, ln2/2]`, relative error 2.8e-9.
#[allow(clippy::excessive_precision, reason = "coefficients as the fit printed them")]
const EXP: [f64; 7] = [
    0.0013941108433972675,
    0.0083751263981533357,
    0.041666352896775157,
    0.16666415514653275,
    0.50000000471177577,
    1.0000000377162138,
    1.0,
];
/// `(log((1+s)/(1-s)) - 2s) / s³` as a function of `z = s²` on `[0, 0.0295]`, error 1.2e-9.
#[allow(clippy::excessive_precision, reason = "coefficients as the fit printed them")]
const LOG: [f64; 4] = [0.23330496757819825, 0.28550819730294095, 0.4000012184937583, 0.6666666655448539];
/// `(tanh(x)/x - 1) / x²` as a function of `s = x²` on `[0, 0.3025]` (|x| ≤ 0.55), error 9.4e-10
/// (the fit of `tanh(x)/x` less its constant term, which is 1 to 9e-10).
#[allow(clippy::excessive_precision, reason = "coefficients as the fit printed them")]
const TANH: [f64; 5] =
    [-0.0062336334879549586, 0.021038214806276563, -0.053842319246817241, 0.13332456536433137, -0.33333310797748948];
/// `erf(x)/x` as a function of `s = x²` on `[0, 1]`, error 1.2e-9.
#[allow(clippy::excessive_precision, reason = "coefficients as the fit printed them")]
const ERF_SMALL: [f64; 7] = [
    7.8758750626854883e-5,
    -0.00080168642871658695,
    0.005189087423433974,
    -0.026854212010626412,
    0.11283594715160218,
    -0.37612626666720331,
    1.1283791658483509,
];
/// `erfc(z)·exp(z²)·z` as a function of `t = 1/z − 0.5` on `[-0.5, 0.5]` (z ≥ 1), error 1.1e-8
/// (relative 2.5e-8). Centred so that the terms do not cancel: Σ|c_k|·0.5^k = 0.63 against values
/// of at least 0.43.
#[allow(clippy::excessive_precision, reason = "coefficients as the fit printed them")]
const ERFC_LARGE: [f64; 13] = [
    -0.13805923765301812,
    0.20322575216881381,
    -0.055648363955520094,
    -0.092439224305916626,
    0.13180807214141713,
    -0.1044635527410736,
    0.039828739506318016,
    0.042558724885297719,
    -0.10872880853528861,
    0.1189597382011681,
    -0.036633510646613012,
    -0.16721098072991482,
    0.51079135262101149,
];

/// `ln 2` in two parts: the high part has few bits, so `n·LN2_HI` is exact for |n| < 2^15.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// An emitter of value ops over f32 (`vector == false`) or f32x4 lanes. Masks are the result of
/// a comparison: an `i8` in scalar mode, all-ones/all-zeros `i32x4` lanes in vector mode.
struct Em<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    vector: bool,
    pow: FuncRef,
}

impl Em<'_, '_> {
    fn fty(&self) -> Type {
        if self.vector {
            F32X4
        } else {
            F32
        }
    }

    fn ity(&self) -> Type {
        if self.vector {
            I32X4
        } else {
            I32
        }
    }

    fn f(&mut self, c: f32) -> Value {
        let s = self.b.ins().f32const(c);
        if self.vector {
            self.b.ins().splat(F32X4, s)
        } else {
            s
        }
    }

    fn i(&mut self, c: u32) -> Value {
        let s = self.b.ins().iconst(I32, i64::from(c));
        if self.vector {
            self.b.ins().splat(I32X4, s)
        } else {
            s
        }
    }

    fn bitcast(&mut self, ty: Type, v: Value) -> Value {
        let flags = if self.b.func.dfg.value_type(v).is_vector() {
            MemFlagsData::new().with_endianness(Endianness::Little)
        } else {
            MemFlagsData::new()
        };
        self.b.ins().bitcast(ty, flags, v)
    }

    /// Float bits as integers.
    fn bits(&mut self, v: Value) -> Value {
        let t = self.ity();
        self.bitcast(t, v)
    }

    /// Integer bits as floats.
    fn float(&mut self, v: Value) -> Value {
        let t = self.fty();
        self.bitcast(t, v)
    }

    fn fcmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(cc, a, b)
    }

    fn icmp(&mut self, cc: IntCC, a: Value, b: Value) -> Value {
        self.b.ins().icmp(cc, a, b)
    }

    /// `mask ? a : b`, lane-wise.
    fn sel(&mut self, mask: Value, a: Value, b: Value) -> Value {
        if self.vector {
            let ty = self.b.func.dfg.value_type(a);
            let m = if self.b.func.dfg.value_type(mask) == ty { mask } else { self.bitcast(ty, mask) };
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(mask, a, b)
        }
    }

    /// 1.0 where the mask is set, else 0.0.
    fn mask_f(&mut self, mask: Value) -> Value {
        let one = self.f(1.0);
        let zero = self.f(0.0);
        self.sel(mask, one, zero)
    }

    /// `v ≠ 0` (NaN counts as ≠ 0).
    fn nonzero(&mut self, v: Value) -> Value {
        let zero = self.f(0.0);
        self.fcmp(FloatCC::NotEqual, v, zero)
    }

    fn fadd(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn fsub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn fmul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn fdiv(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    fn mulc(&mut self, a: Value, c: f32) -> Value {
        let c = self.f(c);
        self.fmul(a, c)
    }
    fn addc(&mut self, a: Value, c: f32) -> Value {
        let c = self.f(c);
        self.fadd(a, c)
    }
    fn band_c(&mut self, a: Value, c: u32) -> Value {
        let c = self.i(c);
        self.b.ins().band(a, c)
    }
    /// Shifts by a scalar amount (the form both scalar and vector shifts take).
    fn shl(&mut self, a: Value, n: i64) -> Value {
        let n = self.b.ins().iconst(I32, n);
        self.b.ins().ishl(a, n)
    }
    fn ushr(&mut self, a: Value, n: i64) -> Value {
        let n = self.b.ins().iconst(I32, n);
        self.b.ins().ushr(a, n)
    }
    fn sshr(&mut self, a: Value, n: i64) -> Value {
        let n = self.b.ins().iconst(I32, n);
        self.b.ins().sshr(a, n)
    }
    fn bor_c(&mut self, a: Value, c: u32) -> Value {
        let c = self.i(c);
        self.b.ins().bor(a, c)
    }

    /// `coeffs[0]·x^d + … + coeffs[d]` by Horner's rule.
    fn horner(&mut self, x: Value, coeffs: &[f64]) -> Value {
        let mut acc = self.f(coeffs[0] as f32);
        for &c in &coeffs[1..] {
            acc = self.fmul(acc, x);
            acc = self.addc(acc, c as f32);
        }
        acc
    }

    /// The magnitude of `t` with the sign bit of `x`.
    fn copysign(&mut self, t: Value, x: Value) -> Value {
        let tb = self.bits(t);
        let tb = self.band_c(tb, 0x7fff_ffff);
        let xb = self.bits(x);
        let xb = self.band_c(xb, 0x8000_0000);
        let r = self.b.ins().bor(tb, xb);
        self.float(r)
    }

    // --- Transcendentals -----------------------------------------------------------------------

    /// `exp(x)`: `x = n·ln2 + r` with `n = round(x·log2 e)`, a polynomial for `exp(r)`, scaled by
    /// `2^n` built in the exponent bits (in two halves, so that `n` down to -152 and up to 128
    /// needs no special case: overflow gives inf and underflow 0 or a subnormal by the final
    /// multiply's rounding). NaN flows through the arithmetic.
    fn exp(&mut self, x: Value) -> Value {
        let hi = self.f(89.0);
        let lo = self.f(-105.0);
        let x = self.b.ins().fmin(x, hi);
        let x = self.b.ins().fmax(x, lo);
        let t = self.mulc(x, std::f32::consts::LOG2_E);
        let n = self.b.ins().nearest(t);
        let a = self.mulc(n, LN2_HI);
        let r = self.fsub(x, a);
        let a = self.mulc(n, LN2_LO);
        let r = self.fsub(r, a);
        let p = self.horner(r, &EXP);
        // Saturating: NaN lanes convert to 0 instead of trapping.
        let ty = self.ity();
        let ni = self.b.ins().fcvt_to_sint_sat(ty, n);
        let n1 = self.sshr(ni, 1);
        let n2 = self.b.ins().isub(ni, n1);
        let s1 = self.pow2(n1);
        let s2 = self.pow2(n2);
        let p = self.fmul(p, s1);
        self.fmul(p, s2)
    }

    /// `2^k` for integer lanes `k` in `[-126, 127]`.
    fn pow2(&mut self, k: Value) -> Value {
        let bias = self.i(127);
        let e = self.b.ins().iadd(k, bias);
        let e = self.shl(e, 23);
        self.float(e)
    }

    /// `log(x)`: `x = 2^e·m` with `m` in `[√½, √2)`, `log(m) = f − s·(f − z·P(z))` with
    /// `f = m − 1`, `s = f/(2+f)`, `z = s²`; then `e·ln2` added in two parts. Subnormals are
    /// scaled up first; 0, negatives, inf and NaN are selected at the end.
    fn log(&mut self, x: Value) -> Value {
        let tiny = self.f(f32::MIN_POSITIVE);
        let is_sub = self.fcmp(FloatCC::LessThan, x, tiny);
        let scaled = self.mulc(x, 8_388_608.0); // 2^23
        let y = self.sel(is_sub, scaled, x);
        let m23 = self.f(-23.0);
        let z0 = self.f(0.0);
        let eadj = self.sel(is_sub, m23, z0);

        let yb = self.bits(y);
        let eb = self.ushr(yb, 23);
        let ty = self.fty();
        let e = self.b.ins().fcvt_from_sint(ty, eb);
        let e = self.addc(e, -127.0);
        let e = self.fadd(e, eadj);
        let mb = self.band_c(yb, 0x007f_ffff);
        let mb = self.bor_c(mb, 0x3f80_0000);
        let m = self.float(mb);
        let sqrt2 = self.f(std::f32::consts::SQRT_2);
        let big = self.fcmp(FloatCC::GreaterThan, m, sqrt2);
        let half_m = self.mulc(m, 0.5);
        let m = self.sel(big, half_m, m);
        let e1 = self.addc(e, 1.0);
        let e = self.sel(big, e1, e);

        let f = self.addc(m, -1.0);
        let d = self.addc(f, 2.0);
        let s = self.fdiv(f, d);
        let z = self.fmul(s, s);
        let p = self.horner(z, &LOG);
        let zp = self.fmul(z, p);
        let c = self.fsub(f, zp);
        let c = self.fmul(s, c);
        let l = self.fsub(f, c);
        let elo = self.mulc(e, LN2_LO);
        let l = self.fadd(l, elo);
        let ehi = self.mulc(e, LN2_HI);
        let r = self.fadd(ehi, l);

        let inf = self.f(f32::INFINITY);
        let is_inf = self.fcmp(FloatCC::Equal, x, inf);
        let r = self.sel(is_inf, inf, r);
        let zero = self.f(0.0);
        let is_zero = self.fcmp(FloatCC::Equal, x, zero);
        let ninf = self.f(f32::NEG_INFINITY);
        let r = self.sel(is_zero, ninf, r);
        let neg = self.fcmp(FloatCC::LessThan, x, zero);
        let nan = self.f(f32::NAN);
        let r = self.sel(neg, nan, r);
        let is_nan = self.fcmp(FloatCC::Unordered, x, x);
        self.sel(is_nan, x, r)
    }

    /// `tanh(x)`: an odd polynomial for |x| < 0.55, else `1 − 2/(exp(2|x|)+1)`; sign copied.
    fn tanh(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let s = self.fmul(a, a);
        let p = self.horner(s, &TANH);
        let sp = self.fmul(s, p);
        let asp = self.fmul(a, sp);
        let small = self.fadd(a, asp);
        let a2 = self.fadd(a, a);
        let e = self.exp(a2);
        let e1 = self.addc(e, 1.0);
        let two = self.f(2.0);
        let q = self.fdiv(two, e1);
        let one = self.f(1.0);
        let large = self.fsub(one, q);
        let lim = self.f(0.55);
        let is_small = self.fcmp(FloatCC::LessThan, a, lim);
        let t = self.sel(is_small, small, large);
        self.copysign(t, x)
    }

    /// `sigmoid(x)` with `e = exp(−|x|)` (never overflows): `1/(1+e)` for x ≥ 0, `e/(1+e)` below.
    fn sigmoid(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let na = self.b.ins().fneg(a);
        let e = self.exp(na);
        let d = self.addc(e, 1.0);
        let one = self.f(1.0);
        let pos = self.fdiv(one, d);
        let neg = self.fdiv(e, d);
        let zero = self.f(0.0);
        let is_neg = self.fcmp(FloatCC::LessThan, x, zero);
        self.sel(is_neg, neg, pos)
    }

    /// `(erf(a) for a < 1 by polynomial, erfc(a) for a ≥ 1 as exp(−a²)·h(1/a)/a)` for `a = |x|`,
    /// both computed for all lanes; the callers select.
    fn erf_parts(&mut self, a: Value) -> (Value, Value) {
        let s = self.fmul(a, a);
        let p = self.horner(s, &ERF_SMALL);
        let small = self.fmul(a, p);
        let one = self.f(1.0);
        let w = self.fdiv(one, a);
        let t = self.addc(w, -0.5);
        let h = self.horner(t, &ERFC_LARGE);
        let ns = self.b.ins().fneg(s);
        let e = self.exp(ns);
        let hw = self.fmul(h, w);
        let erfc = self.fmul(e, hw);
        (small, erfc)
    }

    fn erf(&mut self, x: Value) -> Value {
        let a = self.b.ins().fabs(x);
        let (small, erfc) = self.erf_parts(a);
        let one = self.f(1.0);
        let large = self.fsub(one, erfc);
        let is_small = self.fcmp(FloatCC::LessThan, a, one);
        let t = self.sel(is_small, small, large);
        self.copysign(t, x)
    }

    /// `0.5·x·(1 + erf(x/√2))`; for x < 0 the bracket is `erfc(|x|/√2)`, computed directly so that
    /// the tail keeps its relative accuracy instead of cancelling against 1.
    fn gelu_erf(&mut self, x: Value) -> Value {
        let z = self.mulc(x, std::f32::consts::FRAC_1_SQRT_2);
        let a = self.b.ins().fabs(z);
        let (small, erfc_large) = self.erf_parts(a);
        let one = self.f(1.0);
        let is_small = self.fcmp(FloatCC::LessThan, a, one);
        let erfc_small = self.fsub(one, small);
        let erfc = self.sel(is_small, erfc_small, erfc_large);
        let erf_large = self.fsub(one, erfc_large);
        let erf = self.sel(is_small, small, erf_large);
        let pos = self.fadd(one, erf);
        let zero = self.f(0.0);
        let is_neg = self.fcmp(FloatCC::LessThan, x, zero);
        let bracket = self.sel(is_neg, erfc, pos);
        let hx = self.mulc(x, 0.5);
        self.fmul(hx, bracket)
    }

    /// `0.5·x·(1 + tanh(u))` with `u = √(2/π)(x + 0.044715x³)`, as `x·sigmoid(2u)` (the same
    /// value; no cancellation of `1 + tanh(u)` for negative x).
    fn gelu_tanh(&mut self, x: Value) -> Value {
        let x2 = self.fmul(x, x);
        let x3 = self.fmul(x2, x);
        let c = self.mulc(x3, 0.044715);
        let inner = self.fadd(x, c);
        let k = (2.0 * (2.0 / std::f64::consts::PI).sqrt()) as f32;
        let u2 = self.mulc(inner, k);
        let s = self.sigmoid(u2);
        self.fmul(x, s)
    }

    fn pow(&mut self, a: Value, b: Value, exponent: Option<f64>) -> Value {
        // PyTorch's `pow(tensor, scalar)` takes these exponents through plain arithmetic rather
        // than `powf`; match its bits.
        match exponent {
            Some(2.0) => return self.fmul(a, a),
            Some(3.0) => {
                let a2 = self.fmul(a, a);
                return self.fmul(a2, a);
            }
            Some(0.5) => return self.b.ins().sqrt(a),
            Some(-0.5) => {
                let one = self.f(1.0);
                let s = self.b.ins().sqrt(a);
                return self.fdiv(one, s);
            }
            Some(-1.0) => {
                let one = self.f(1.0);
                return self.fdiv(one, a);
            }
            Some(-2.0) => {
                let one = self.f(1.0);
                let a2 = self.fmul(a, a);
                return self.fdiv(one, a2);
            }
            _ => {}
        }
        if !self.vector {
            let call = self.b.ins().call(self.pow, &[a, b]);
            return self.b.inst_results(call)[0];
        }
        let mut r = a;
        for lane in 0..4u8 {
            let x = self.b.ins().extractlane(a, lane);
            let y = self.b.ins().extractlane(b, lane);
            let call = self.b.ins().call(self.pow, &[x, y]);
            let v = self.b.inst_results(call)[0];
            r = self.b.ins().insertlane(r, v, lane);
        }
        r
    }

    // --- Conversions ---------------------------------------------------------------------------

    /// f16 bits (zero-extended in i32 lanes) to f32. Finite values: the 15 magnitude bits moved
    /// into f32 position and scaled by 2^112, exact for normals and subnormals alike. Inf/NaN:
    /// all-ones exponent, NaN quieted (as the `half` crate and F16C do).
    fn f16_to_f32(&mut self, h: Value) -> Value {
        let em = self.band_c(h, 0x7fff);
        let sign = self.band_c(h, 0x8000);
        let sign = self.shl(sign, 16);
        let shifted = self.shl(em, 13);
        let f = self.float(shifted);
        let f = self.mulc(f, f32::from_bits(0x7780_0000)); // 2^112
        let finite = self.bits(f);
        let special = self.bor_c(shifted, 0x7f80_0000);
        let quiet = self.bor_c(special, 0x0040_0000);
        let inf_bits = self.i(0x7c00);
        let is_nan = self.icmp(IntCC::SignedGreaterThan, em, inf_bits);
        let special = self.sel(is_nan, quiet, special);
        let is_special = self.icmp(IntCC::SignedGreaterThanOrEqual, em, inf_bits);
        let r = self.sel(is_special, special, finite);
        let r = self.b.ins().bor(r, sign);
        self.float(r)
    }

    /// f32 to f16 bits (in i32 lanes), rounding to nearest even. Normals round with the usual
    /// add-half-ulp-plus-odd-bit trick (a carry into the exponent is the right answer, up to inf);
    /// results below 2^-14 come from an f32 addition of 0.5, whose ulp is the f16 subnormal step,
    /// so the FPU does the rounding. NaN keeps its top payload bits and is quieted.
    fn f32_to_f16(&mut self, v: Value) -> Value {
        let u = self.bits(v);
        let sign = self.ushr(u, 16);
        let sign = self.band_c(sign, 0x8000);
        let a = self.band_c(u, 0x7fff_ffff);

        let odd = self.ushr(a, 13);
        let odd = self.band_c(odd, 1);
        let bias = self.i(0xfff_u32.wrapping_sub(112 << 23));
        let norm = self.b.ins().iadd(a, bias);
        let norm = self.b.ins().iadd(norm, odd);
        let norm = self.ushr(norm, 13);

        let af = self.float(a);
        let half = self.f(0.5);
        let sf = self.fadd(af, half);
        let sb = self.bits(sf);
        let half_bits = self.i(0x3f00_0000);
        let sub = self.b.ins().isub(sb, half_bits);

        let man = self.ushr(a, 13);
        let man = self.band_c(man, 0x3ff);
        let nan = self.bor_c(man, 0x7e00);

        let min_normal = self.i(0x3880_0000);
        let is_sub = self.icmp(IntCC::SignedLessThan, a, min_normal);
        let r = self.sel(is_sub, sub, norm);
        let overflow = self.i(0x4780_0000);
        let is_big = self.icmp(IntCC::SignedGreaterThanOrEqual, a, overflow);
        let inf = self.i(0x7c00);
        let r = self.sel(is_big, inf, r);
        let inf32 = self.i(0x7f80_0000);
        let is_nan = self.icmp(IntCC::SignedGreaterThan, a, inf32);
        let r = self.sel(is_nan, nan, r);
        self.b.ins().bor(r, sign)
    }

    /// f32 to bf16 bits (in i32 lanes), rounding to nearest even; NaN keeps its top bits, quieted.
    fn f32_to_bf16(&mut self, v: Value) -> Value {
        let u = self.bits(v);
        let odd = self.ushr(u, 16);
        let odd = self.band_c(odd, 1);
        let r = self.b.ins().iadd(u, odd);
        let bias = self.i(0x7fff);
        let r = self.b.ins().iadd(r, bias);
        let r = self.ushr(r, 16);
        let top = self.ushr(u, 16);
        let nan = self.bor_c(top, 0x40);
        let a = self.band_c(u, 0x7fff_ffff);
        let inf32 = self.i(0x7f80_0000);
        let is_nan = self.icmp(IntCC::SignedGreaterThan, a, inf32);
        self.sel(is_nan, nan, r)
    }

    fn bf16_to_f32(&mut self, h: Value) -> Value {
        let s = self.shl(h, 16);
        self.float(s)
    }

    fn round(&mut self, dtype: DType, v: Value) -> Value {
        match dtype {
            DType::Float16 => {
                let h = self.f32_to_f16(v);
                self.f16_to_f32(h)
            }
            DType::Bfloat16 => {
                let h = self.f32_to_bf16(v);
                self.bf16_to_f32(h)
            }
            DType::Bool => {
                let m = self.nonzero(v);
                self.mask_f(m)
            }
            DType::Int64 | DType::Int32 | DType::Int16 | DType::Int8 | DType::Uint8 => self.b.ins().trunc(v),
            // Float32, and nothing else passes validation.
            _ => v,
        }
    }

    // --- Memory --------------------------------------------------------------------------------

    /// One element at `addr` as f32 (scalar mode regardless of `self.vector`).
    fn load_scalar(&mut self, dtype: DType, addr: Value) -> Value {
        let saved = self.vector;
        self.vector = false;
        let b = &mut *self.b;
        let v = match dtype {
            DType::Float32 => b.ins().load(F32, mem(), addr, 0),
            DType::Float16 => {
                let h = b.ins().uload16(I32, mem(), addr, 0);
                self.f16_to_f32(h)
            }
            DType::Bfloat16 => {
                let h = b.ins().uload16(I32, mem(), addr, 0);
                self.bf16_to_f32(h)
            }
            DType::Bool => {
                let x = b.ins().uload8(I32, mem(), addr, 0);
                let zero = b.ins().iconst(I32, 0);
                let m = b.ins().icmp(IntCC::NotEqual, x, zero);
                self.mask_f(m)
            }
            DType::Uint8 => {
                let x = b.ins().uload8(I32, mem(), addr, 0);
                b.ins().fcvt_from_sint(F32, x)
            }
            DType::Int8 => {
                let x = b.ins().sload8(I32, mem(), addr, 0);
                b.ins().fcvt_from_sint(F32, x)
            }
            DType::Int16 => {
                let x = b.ins().sload16(I32, mem(), addr, 0);
                b.ins().fcvt_from_sint(F32, x)
            }
            DType::Int32 => {
                let x = b.ins().load(I32, mem(), addr, 0);
                b.ins().fcvt_from_sint(F32, x)
            }
            // Int64; validation admits nothing else.
            _ => {
                let x = b.ins().load(I64, mem(), addr, 0);
                b.ins().fcvt_from_sint(F32, x)
            }
        };
        self.vector = saved;
        v
    }

    /// Four elements at `addrs` gathered into f32x4 lanes.
    fn load_lanes(&mut self, dtype: DType, addrs: [Value; 4]) -> Value {
        let first = self.load_scalar(dtype, addrs[0]);
        let mut r = self.b.ins().splat(F32X4, first);
        for (lane, &addr) in addrs.iter().enumerate().skip(1) {
            let x = self.load_scalar(dtype, addr);
            r = self.b.ins().insertlane(r, x, lane as u8);
        }
        r
    }

    /// Four consecutive elements at `addr` as f32x4.
    fn load_contig4(&mut self, dtype: DType, addr: Value) -> Value {
        match dtype {
            DType::Float32 => self.b.ins().load(F32X4, mem(), addr, 0),
            DType::Float16 => {
                let h = self.b.ins().uload16x4(mem(), addr, 0);
                self.f16_to_f32(h)
            }
            DType::Bfloat16 => {
                let h = self.b.ins().uload16x4(mem(), addr, 0);
                self.bf16_to_f32(h)
            }
            DType::Int32 => {
                let x = self.b.ins().load(I32X4, mem(), addr, 0);
                self.b.ins().fcvt_from_sint(F32X4, x)
            }
            DType::Int16 => {
                let x = self.b.ins().sload16x4(mem(), addr, 0);
                self.b.ins().fcvt_from_sint(F32X4, x)
            }
            _ => {
                let size = size_of(dtype);
                let addrs = [0, 1, 2, 3].map(|l| self.b.ins().iadd_imm_s(addr, l * size));
                self.load_lanes(dtype, addrs)
            }
        }
    }

    fn store(&mut self, dtype: DType, v: Value, addr: Value) {
        let vector = self.vector;
        match dtype {
            DType::Float32 => {
                self.b.ins().store(mem(), v, addr, 0);
            }
            DType::Float16 | DType::Bfloat16 => {
                let h = if dtype == DType::Float16 { self.f32_to_f16(v) } else { self.f32_to_bf16(v) };
                if vector {
                    // Lanes hold 0..=0xffff, so the saturating narrow is exact.
                    let n = self.b.ins().unarrow(h, h);
                    let q = self.bitcast(I64X2, n);
                    let q = self.b.ins().extractlane(q, 0);
                    self.b.ins().store(mem(), q, addr, 0);
                } else {
                    self.b.ins().istore16(mem(), h, addr, 0);
                }
            }
            // Bool, as validated.
            _ => {
                let m = self.nonzero(v);
                if vector {
                    let m = self.bitcast(I32X4, m);
                    let one = self.i(1);
                    let ones = self.b.ins().band(m, one);
                    let n16 = self.b.ins().unarrow(ones, ones);
                    debug_assert_eq!(self.b.func.dfg.value_type(n16), I16X8);
                    let n8 = self.b.ins().unarrow(n16, n16);
                    let w = self.bitcast(I32X4, n8);
                    let w = self.b.ins().extractlane(w, 0);
                    self.b.ins().store(mem(), w, addr, 0);
                } else {
                    let one = self.b.ins().iconst(I32, 1);
                    let zero = self.b.ins().iconst(I32, 0);
                    let x = self.b.ins().select(m, one, zero);
                    self.b.ins().istore8(mem(), x, addr, 0);
                }
            }
        }
    }

    // --- The loop body -------------------------------------------------------------------------

    /// Computes every live instruction at index `i` (4 lanes from `i` in vector mode) and stores
    /// the outputs.
    fn body(&mut self, region: &Region, live: &[bool], ins: &[Option<In>], outs: &[(Value, DType)], i: Value) {
        let mut vals: Vec<Option<Value>> = vec![None; region.instrs.len()];
        for (idx, instr) in region.instrs.iter().enumerate() {
            if !live[idx] {
                continue;
            }
            // Validation guarantees operands name earlier, hence computed, live instructions.
            let get = |j: usize| vals[j].expect("operand computed before use");
            let v = match *instr {
                Instr::Input(k) => match ins[k] {
                    Some(input) => self.load_input(&input, i),
                    None => unreachable!("live inputs are loaded"),
                },
                Instr::Const(c) => self.f(c as f32),
                Instr::Unary(f, a) => self.unary(f, get(a)),
                Instr::Binary(f, a, b) => {
                    let exponent = match region.instrs[b] {
                        Instr::Const(c) => Some(c),
                        _ => None,
                    };
                    self.binary(f, get(a), get(b), exponent)
                }
                Instr::Select(c, a, b) => {
                    let m = self.nonzero(get(c));
                    self.sel(m, get(a), get(b))
                }
                Instr::Round(d, a) => self.round(d, get(a)),
            };
            vals[idx] = Some(v);
        }
        for (&(instr, _), &(base, dtype)) in region.outputs.iter().zip(outs) {
            let v = vals[instr].expect("outputs are live");
            let off = self.scaled(i, size_of(dtype));
            let addr = self.b.ins().iadd(base, off);
            self.store(dtype, v, addr);
        }
    }

    /// `i·size` for a power-of-two element size, as a shift: x86-64 folds `base + (i << k)` into
    /// the load's or store's addressing mode.
    fn scaled(&mut self, i: Value, size: i64) -> Value {
        let k = self.b.ins().iconst(I64, i64::from(size.trailing_zeros()));
        self.b.ins().ishl(i, k)
    }

    fn load_input(&mut self, input: &In, i: Value) -> Value {
        let size = size_of(input.dtype);
        match input.class {
            Class::Bcast => {
                let v = if self.vector { input.splat } else { input.scalar };
                v.expect("broadcast inputs are hoisted")
            }
            Class::Contig => {
                let off = self.scaled(i, size);
                let addr = self.b.ins().iadd(input.base, off);
                if self.vector {
                    self.load_contig4(input.dtype, addr)
                } else {
                    self.load_scalar(input.dtype, addr)
                }
            }
            Class::Strided => {
                let stride = input.stride.expect("strided inputs have a stride");
                let off = self.b.ins().imul(i, stride);
                let addr = self.b.ins().iadd(input.base, off);
                if self.vector {
                    let mut addrs = [addr; 4];
                    let mut a = addr;
                    for slot in addrs.iter_mut().skip(1) {
                        a = self.b.ins().iadd(a, stride);
                        *slot = a;
                    }
                    self.load_lanes(input.dtype, addrs)
                } else {
                    self.load_scalar(input.dtype, addr)
                }
            }
        }
    }

    fn unary(&mut self, f: UnaryFn, x: Value) -> Value {
        match f {
            UnaryFn::Neg => self.b.ins().fneg(x),
            UnaryFn::Abs => self.b.ins().fabs(x),
            UnaryFn::Square => self.fmul(x, x),
            UnaryFn::Reciprocal => {
                let one = self.f(1.0);
                self.fdiv(one, x)
            }
            UnaryFn::Sqrt => self.b.ins().sqrt(x),
            UnaryFn::Rsqrt => {
                let one = self.f(1.0);
                let s = self.b.ins().sqrt(x);
                self.fdiv(one, s)
            }
            UnaryFn::Exp => self.exp(x),
            UnaryFn::Log => self.log(x),
            UnaryFn::Tanh => self.tanh(x),
            UnaryFn::Erf => self.erf(x),
            UnaryFn::Sigmoid => self.sigmoid(x),
            // `fmax` propagates NaN, as PyTorch's relu does.
            UnaryFn::Relu => {
                let zero = self.f(0.0);
                self.b.ins().fmax(x, zero)
            }
            UnaryFn::Silu => {
                let s = self.sigmoid(x);
                self.fmul(x, s)
            }
            UnaryFn::GeluTanh => self.gelu_tanh(x),
            UnaryFn::GeluErf => self.gelu_erf(x),
            UnaryFn::Floor => self.b.ins().floor(x),
            UnaryFn::Ceil => self.b.ins().ceil(x),
            UnaryFn::Trunc => self.b.ins().trunc(x),
            UnaryFn::LogicalNot => {
                let zero = self.f(0.0);
                let m = self.fcmp(FloatCC::Equal, x, zero);
                self.mask_f(m)
            }
        }
    }

    fn binary(&mut self, f: BinaryFn, a: Value, b: Value, exponent: Option<f64>) -> Value {
        let cmp = |cc: FloatCC| Some(cc);
        let cc = match f {
            BinaryFn::Compare(Comparison::Eq) => cmp(FloatCC::Equal),
            BinaryFn::Compare(Comparison::Ne) => cmp(FloatCC::NotEqual),
            BinaryFn::Compare(Comparison::Lt) => cmp(FloatCC::LessThan),
            BinaryFn::Compare(Comparison::Le) => cmp(FloatCC::LessThanOrEqual),
            BinaryFn::Compare(Comparison::Gt) => cmp(FloatCC::GreaterThan),
            BinaryFn::Compare(Comparison::Ge) => cmp(FloatCC::GreaterThanOrEqual),
            _ => None,
        };
        if let Some(cc) = cc {
            let m = self.fcmp(cc, a, b);
            return self.mask_f(m);
        }
        match f {
            BinaryFn::Add => self.fadd(a, b),
            BinaryFn::Sub => self.fsub(a, b),
            BinaryFn::Mul => self.fmul(a, b),
            BinaryFn::Div => self.fdiv(a, b),
            BinaryFn::Max => self.b.ins().fmax(a, b),
            BinaryFn::Min => self.b.ins().fmin(a, b),
            BinaryFn::Pow => self.pow(a, b, exponent),
            BinaryFn::And | BinaryFn::Or => {
                let ma = self.nonzero(a);
                let mb = self.nonzero(b);
                let m = if f == BinaryFn::And { self.b.ins().band(ma, mb) } else { self.b.ins().bor(ma, mb) };
                self.mask_f(m)
            }
            // Comparisons returned above.
            _ => a,
        }
    }
}

//! Element-wise ops as scalar expressions: what a fused loop computes at one index.
//!
//! An element-wise op's row may state, with `.scalar(...)`, how its output element follows from
//! the elements of its tensor arguments and its scalar arguments ([`Scalar`]). [`lower`] turns one
//! call of such an op into a [`ScalarExpr`] over its tensor arguments; a fusion pass strings the
//! expressions of neighbouring ops into one region and a JIT (`genie-jit`) compiles the region into
//! one loop. The arithmetic is f32 (f16/bf16 values widened on load and rounded on store, and
//! after each op whose result PyTorch rounds: [`ScalarExpr::Round`]); comparisons give 1.0/0.0.

use serde::{Deserialize, Serialize};

use super::facts::Comparison;
use crate::graph::Arg;
use crate::types::DType;

/// A function of one scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryFn {
    Neg,
    Abs,
    Square,
    Reciprocal,
    Sqrt,
    Rsqrt,
    Exp,
    Log,
    Tanh,
    Erf,
    Sigmoid,
    Relu,
    /// `x * sigmoid(x)`.
    Silu,
    /// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    GeluTanh,
    /// `0.5 x (1 + erf(x / √2))`.
    GeluErf,
    Floor,
    Ceil,
    Trunc,
    /// 1.0 where the value is 0.0, else 0.0.
    LogicalNot,
}

/// A function of two scalars. Comparisons and logical ops give 1.0 or 0.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryFn {
    Add,
    Sub,
    Mul,
    Div,
    /// NaN if either is NaN (PyTorch's `maximum`, `clamp`).
    Max,
    /// NaN if either is NaN.
    Min,
    Pow,
    Compare(Comparison),
    And,
    Or,
}

/// One output element of an element-wise op as a function of its arguments' elements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScalarExpr {
    /// The element of the op's tensor argument at this (positional) argument index.
    Arg(usize),
    /// A literal.
    Const(f64),
    Unary(UnaryFn, Box<ScalarExpr>),
    Binary(BinaryFn, Box<ScalarExpr>, Box<ScalarExpr>),
    /// `if cond ≠ 0 { a } else { b }`.
    Select(Box<ScalarExpr>, Box<ScalarExpr>, Box<ScalarExpr>),
    /// The value rounded to a dtype's precision and range (a cast, or the rounding PyTorch does
    /// after an op in f16/bf16): to bool is `≠ 0`, to an integer type truncation toward zero.
    Round(DType, Box<ScalarExpr>),
}

/// How an element-wise op's output follows from its arguments, stated on its registry row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// `f(arg0)`.
    Unary(UnaryFn),
    /// `f(arg0, arg1)`, arg1 a tensor or a number.
    Binary(BinaryFn),
    /// `f(arg1, arg0)` (`rsub`-like, without alpha).
    Reversed(BinaryFn),
    /// `arg0 ± alpha·arg1`, alpha at argument 2 (`add`, `sub`).
    WithAlpha(BinaryFn),
    /// `arg1 - alpha·arg0`, alpha at argument 2 (`rsub`).
    ReversedWithAlpha,
    /// `f(arg0, c)` with a constant `c` fixed by the op (`clamp_min(x, 0)`-like rows).
    WithConst(BinaryFn, i32),
    /// `clamp(arg0, min = arg1, max = arg2)`, either bound optional.
    Clamp,
    /// `gelu(arg0, approximate = arg1)`: `"none"` (erf) or `"tanh"`.
    Gelu,
    /// `where(arg0, arg1, arg2)`.
    Where,
    /// `where(arg1, arg2, arg0)` (`masked_fill`).
    MaskedFill,
    /// The first argument converted to the output's dtype (casts; identities at inference).
    Convert,
}

/// A number argument's value.
fn number(arg: &Arg) -> Option<f64> {
    match arg {
        Arg::Int(i) => Some(*i as f64),
        Arg::Float(f) => Some(*f),
        Arg::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// A tensor argument as a leaf, a number as a literal.
fn operand(args: &[Arg], index: usize) -> Option<ScalarExpr> {
    match args.get(index)? {
        Arg::Tensor(_) => Some(ScalarExpr::Arg(index)),
        other => number(other).map(ScalarExpr::Const),
    }
}

/// `alpha` (argument 2, default 1).
fn alpha(args: &[Arg]) -> Option<f64> {
    match args.get(2) {
        None | Some(Arg::None) => Some(1.0),
        Some(a) => number(a),
    }
}

fn unary(f: UnaryFn, e: ScalarExpr) -> ScalarExpr {
    ScalarExpr::Unary(f, Box::new(e))
}

fn binary(f: BinaryFn, a: ScalarExpr, b: ScalarExpr) -> ScalarExpr {
    ScalarExpr::Binary(f, Box::new(a), Box::new(b))
}

fn scaled(alpha: f64, e: ScalarExpr) -> ScalarExpr {
    if alpha == 1.0 {
        e
    } else {
        binary(BinaryFn::Mul, ScalarExpr::Const(alpha), e)
    }
}

/// The scalar expression of one call of an element-wise op whose row states `scalar`, over the
/// call's (positional, schema-bound) arguments; `None` when the arguments are not what the form
/// expects (a string `approximate` other than the two known, a tensor where a number belongs).
/// The caller adds the rounding to the output's dtype.
pub fn lower(scalar: Scalar, args: &[Arg]) -> Option<ScalarExpr> {
    let tensor = |i: usize| matches!(args.get(i), Some(Arg::Tensor(_))).then_some(ScalarExpr::Arg(i));
    Some(match scalar {
        Scalar::Unary(f) => unary(f, tensor(0)?),
        Scalar::Binary(f) => binary(f, operand(args, 0)?, operand(args, 1)?),
        Scalar::Reversed(f) => binary(f, operand(args, 1)?, operand(args, 0)?),
        Scalar::WithAlpha(f) => binary(f, operand(args, 0)?, scaled(alpha(args)?, operand(args, 1)?)),
        Scalar::ReversedWithAlpha => binary(BinaryFn::Sub, operand(args, 1)?, scaled(alpha(args)?, operand(args, 0)?)),
        Scalar::WithConst(f, c) => binary(f, tensor(0)?, ScalarExpr::Const(f64::from(c))),
        Scalar::Clamp => {
            let mut e = tensor(0)?;
            for (index, f) in [(1, BinaryFn::Max), (2, BinaryFn::Min)] {
                match args.get(index) {
                    None | Some(Arg::None) => {}
                    Some(_) => e = binary(f, e, operand(args, index)?),
                }
            }
            e
        }
        Scalar::Gelu => {
            let f = match args.get(1) {
                None | Some(Arg::None) => UnaryFn::GeluErf,
                Some(Arg::Str(s)) if s == "none" => UnaryFn::GeluErf,
                Some(Arg::Str(s)) if s == "tanh" => UnaryFn::GeluTanh,
                Some(_) => return None,
            };
            unary(f, tensor(0)?)
        }
        Scalar::Where => {
            ScalarExpr::Select(Box::new(operand(args, 0)?), Box::new(operand(args, 1)?), Box::new(operand(args, 2)?))
        }
        Scalar::MaskedFill => {
            ScalarExpr::Select(Box::new(operand(args, 1)?), Box::new(operand(args, 2)?), Box::new(operand(args, 0)?))
        }
        Scalar::Convert => tensor(0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ValueId;

    fn t(i: u32) -> Arg {
        Arg::Tensor(ValueId(i))
    }

    fn c(x: f64) -> Box<ScalarExpr> {
        Box::new(ScalarExpr::Const(x))
    }

    fn a(i: usize) -> Box<ScalarExpr> {
        Box::new(ScalarExpr::Arg(i))
    }

    #[test]
    fn forms_lower_their_arguments() {
        use ScalarExpr::{Binary, Select, Unary};
        // add(x, y, alpha=2) = x + 2·y; the default alpha adds no product.
        assert_eq!(
            lower(Scalar::WithAlpha(BinaryFn::Add), &[t(0), t(1), Arg::Int(2)]),
            Some(Binary(BinaryFn::Add, a(0), Box::new(Binary(BinaryFn::Mul, c(2.0), a(1)))))
        );
        assert_eq!(
            lower(Scalar::WithAlpha(BinaryFn::Add), &[t(0), Arg::Float(0.5)]),
            Some(Binary(BinaryFn::Add, a(0), c(0.5)))
        );
        // rsub(x, 1.0) = 1 - x.
        assert_eq!(
            lower(Scalar::ReversedWithAlpha, &[t(0), Arg::Float(1.0)]),
            Some(Binary(BinaryFn::Sub, c(1.0), a(0)))
        );
        assert_eq!(lower(Scalar::Gelu, &[t(0), Arg::Str("tanh".into())]), Some(Unary(UnaryFn::GeluTanh, a(0))));
        assert_eq!(lower(Scalar::Gelu, &[t(0)]), Some(Unary(UnaryFn::GeluErf, a(0))));
        assert_eq!(lower(Scalar::Gelu, &[t(0), Arg::Str("cubic".into())]), None);
        // clamp with only a max; masked_fill as a select.
        assert_eq!(lower(Scalar::Clamp, &[t(0), Arg::None, Arg::Int(6)]), Some(Binary(BinaryFn::Min, a(0), c(6.0))));
        assert_eq!(lower(Scalar::MaskedFill, &[t(0), t(1), Arg::Float(-1e4)]), Some(Select(a(1), c(-1e4), a(0))));
        // A unary form needs a tensor; a list is never an operand.
        assert_eq!(lower(Scalar::Unary(UnaryFn::Exp), &[Arg::Float(1.0)]), None);
        assert_eq!(lower(Scalar::Binary(BinaryFn::Mul), &[t(0), Arg::Tensors(vec![ValueId(1)])]), None);
    }

    #[test]
    fn every_op_with_a_scalar_form_is_element_wise_and_lowers_its_plain_call() {
        let registry = super::super::registry();
        let mut with_form = 0;
        for (name, def) in registry.ops() {
            let Some(form) = def.facts.scalar else { continue };
            with_form += 1;
            assert!(def.facts.elementwise || def.facts.cast, "{name} has a scalar form but is not element-wise");
            // Every tensor argument a tensor, every other argument absent: the plain call lowers.
            let args: Vec<Arg> = def
                .schema
                .args
                .iter()
                .enumerate()
                .map(|(i, spec)| if spec.kind == crate::registry::ArgKind::Tensor { t(i as u32) } else { Arg::None })
                .collect();
            let lowered = lower(form, &args);
            let needs_number = matches!(form, Scalar::Binary(_) | Scalar::WithAlpha(_) | Scalar::ReversedWithAlpha)
                && def.schema.args.iter().filter(|s| s.kind == crate::registry::ArgKind::Tensor).count() < 2;
            let needs_mask_value = matches!(form, Scalar::MaskedFill | Scalar::Where)
                && def.schema.args.iter().filter(|s| s.kind == crate::registry::ArgKind::Tensor).count() < 3;
            assert!(lowered.is_some() || needs_number || needs_mask_value, "{name}: {form:?} does not lower");
        }
        assert!(with_form >= 50, "only {with_form} ops have a scalar form");
    }
}

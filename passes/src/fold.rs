//! Constant folding of small static computations: shape arithmetic and constant creation
//! (`arange`, `full`, `scalar_tensor`, integer math, comparisons, views, `cat`, casts) whose
//! inputs are all inline constants become inline constants.
//!
//! Only small tensors are folded ([`MAX_FOLD_ELEMENTS`]): the point is to remove the plumbing
//! exporters leave around shapes, not to precompute activations.

use std::collections::{BTreeSet, HashMap};

use genie_ir::registry::{self, Comparison, Fold};
use genie_ir::{Arg, DType, Graph, NodeId, Program, TensorType, ValueDef, ValueId};

use crate::manager::{for_each_entry, Pass, PassError};

/// The largest constant this pass creates.
pub const MAX_FOLD_ELEMENTS: i64 = 256;

/// The folding pass.
pub struct FoldConstants;

/// A small dense tensor; integers and bools in `ints`, floats in `floats` (exactly one is used).
#[derive(Clone, Debug)]
struct Lit {
    dtype: DType,
    shape: Vec<i64>,
    ints: Vec<i64>,
    floats: Vec<f64>,
}

impl Lit {
    fn is_float(&self) -> bool {
        self.dtype.is_floating()
    }

    fn len(&self) -> usize {
        if self.is_float() {
            self.floats.len()
        } else {
            self.ints.len()
        }
    }

    fn get_f(&self, i: usize) -> f64 {
        if self.is_float() {
            self.floats[i]
        } else {
            self.ints[i] as f64
        }
    }

    fn get_i(&self, i: usize) -> i64 {
        if self.is_float() {
            self.floats[i] as i64
        } else {
            self.ints[i]
        }
    }

    /// Decode little-endian bytes of a static tensor type.
    fn decode(ty: &TensorType, bytes: &[u8]) -> Option<Lit> {
        let shape = ty.static_shape()?;
        let n: i64 = shape.iter().product();
        if n > MAX_FOLD_ELEMENTS || bytes.len() as u64 != n as u64 * ty.dtype.size_bytes() {
            return None;
        }
        let w = ty.dtype.size_bytes() as usize;
        let mut lit = Lit { dtype: ty.dtype, shape, ints: Vec::new(), floats: Vec::new() };
        for c in bytes.chunks_exact(w) {
            match ty.dtype {
                DType::Bool | DType::Uint8 => lit.ints.push(c[0] as i64),
                DType::Int8 => lit.ints.push(c[0] as i8 as i64),
                DType::Int16 => lit.ints.push(i16::from_le_bytes([c[0], c[1]]) as i64),
                DType::Int32 => lit.ints.push(i32::from_le_bytes(c.try_into().ok()?) as i64),
                DType::Int64 => lit.ints.push(i64::from_le_bytes(c.try_into().ok()?)),
                DType::Float32 => lit.floats.push(f32::from_le_bytes(c.try_into().ok()?) as f64),
                DType::Float64 => lit.floats.push(f64::from_le_bytes(c.try_into().ok()?)),
                _ => return None,
            }
        }
        Some(lit)
    }

    /// Encode as the given static type (converting element types).
    fn encode(&self, ty: &TensorType) -> Option<Vec<u8>> {
        let n: i64 = ty.static_shape()?.iter().product();
        if n as usize != self.len() {
            return None;
        }
        let mut out = Vec::with_capacity(n as usize * ty.dtype.size_bytes() as usize);
        for i in 0..self.len() {
            match ty.dtype {
                DType::Bool => out.push((self.get_f(i) != 0.0) as u8),
                DType::Uint8 => out.push(self.get_i(i) as u8),
                DType::Int8 => out.push(self.get_i(i) as i8 as u8),
                DType::Int16 => out.extend_from_slice(&(self.get_i(i) as i16).to_le_bytes()),
                DType::Int32 => out.extend_from_slice(&(self.get_i(i) as i32).to_le_bytes()),
                DType::Int64 => out.extend_from_slice(&self.get_i(i).to_le_bytes()),
                DType::Float32 => out.extend_from_slice(&(self.get_f(i) as f32).to_le_bytes()),
                DType::Float64 => out.extend_from_slice(&self.get_f(i).to_le_bytes()),
                _ => return None,
            }
        }
        Some(out)
    }
}

fn scalar_arg(a: &Arg) -> Option<Lit> {
    match a {
        Arg::Int(v) => Some(Lit { dtype: DType::Int64, shape: vec![], ints: vec![*v], floats: vec![] }),
        Arg::Bool(v) => Some(Lit { dtype: DType::Bool, shape: vec![], ints: vec![*v as i64], floats: vec![] }),
        Arg::Float(v) => Some(Lit { dtype: DType::Float64, shape: vec![], ints: vec![], floats: vec![*v] }),
        _ => None,
    }
}

/// Element index into `shape` (broadcast) of a flat index into `out`.
fn broadcast_index(out: &[i64], shape: &[i64], flat: usize) -> usize {
    let mut rem = flat as i64;
    let mut idx = 0i64;
    let mut stride = 1i64;
    for d in (0..out.len()).rev() {
        let coord = rem % out[d].max(1);
        rem /= out[d].max(1);
        let sd = d as i64 - (out.len() as i64 - shape.len() as i64);
        if sd >= 0 {
            let size = shape[sd as usize];
            if size != 1 {
                idx += coord * stride;
            }
            stride *= size;
        }
    }
    idx as usize
}

/// Apply an element-wise function over broadcast operands into the output type.
fn elementwise(out: &TensorType, ops: &[Lit], float: bool, f: impl Fn(&[f64]) -> Option<f64>) -> Option<Lit> {
    let shape = out.static_shape()?;
    let n: i64 = shape.iter().product();
    let mut vals = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let args: Vec<f64> = ops.iter().map(|o| o.get_f(broadcast_index(&shape, &o.shape, i))).collect();
        vals.push(f(&args)?);
    }
    Some(if float {
        Lit { dtype: out.dtype, shape, ints: vec![], floats: vals }
    } else {
        Lit { dtype: out.dtype, shape, ints: vals.into_iter().map(|v| v as i64).collect(), floats: vec![] }
    })
}

/// Fold one node whose tensor inputs are all known literals.
fn fold_node(g: &Graph, n: NodeId, known: &[Option<Lit>]) -> Option<Lit> {
    let node = g.node(n);
    let [out] = node.outputs[..] else { return None };
    let out_ty = &g.value(out).ty;
    let count: i64 = out_ty.static_shape()?.iter().product();
    if count > MAX_FOLD_ELEMENTS {
        return None;
    }
    let lit = |i: usize| -> Option<Lit> {
        match node.args.get(i)? {
            Arg::Tensor(v) => known[v.index()].clone(),
            a => scalar_arg(a),
        }
    };
    let float = out_ty.dtype.is_floating();
    let reshaped = |l: Lit| Some(Lit { dtype: out_ty.dtype, shape: out_ty.static_shape()?, ..l });
    let compare = |f: fn(f64, f64) -> bool| {
        Some(elementwise(out_ty, &[lit(0)?, lit(1)?], false, |a| Some(f(a[0], a[1]) as i64 as f64)))
    };
    match registry::facts(&node.op).fold? {
        Fold::Add => {
            let alpha = lit(2).map(|a| a.get_f(0)).unwrap_or(1.0);
            elementwise(out_ty, &[lit(0)?, lit(1)?], float, |a| Some(a[0] + alpha * a[1]))
        }
        Fold::Sub => {
            let alpha = lit(2).map(|a| a.get_f(0)).unwrap_or(1.0);
            elementwise(out_ty, &[lit(0)?, lit(1)?], float, |a| Some(a[0] - alpha * a[1]))
        }
        Fold::Mul => elementwise(out_ty, &[lit(0)?, lit(1)?], float, |a| Some(a[0] * a[1])),
        Fold::Div if float => elementwise(out_ty, &[lit(0)?, lit(1)?], true, |a| (a[1] != 0.0).then(|| a[0] / a[1])),
        Fold::Div => None,
        Fold::FloorDiv => {
            elementwise(out_ty, &[lit(0)?, lit(1)?], float, |a| (a[1] != 0.0).then(|| (a[0] / a[1]).floor()))
        }
        Fold::Neg => elementwise(out_ty, &[lit(0)?], float, |a| Some(-a[0])),
        Fold::Compare(c) => compare(match c {
            Comparison::Eq => |a, b| a == b,
            Comparison::Ne => |a, b| a != b,
            Comparison::Lt => |a, b| a < b,
            Comparison::Le => |a, b| a <= b,
            Comparison::Gt => |a, b| a > b,
            Comparison::Ge => |a, b| a >= b,
        })?,
        Fold::LogicalNot => elementwise(out_ty, &[lit(0)?], false, |a| Some((a[0] == 0.0) as i64 as f64)),
        Fold::Where => {
            elementwise(out_ty, &[lit(0)?, lit(1)?, lit(2)?], float, |a| Some(if a[0] != 0.0 { a[1] } else { a[2] }))
        }
        // Same elements, another shape or dtype.
        Fold::SameElements => {
            let l = lit(0)?;
            let shape = out_ty.static_shape()?;
            if l.is_float() == float {
                reshaped(l)
            } else if float {
                Some(Lit {
                    dtype: out_ty.dtype,
                    shape,
                    floats: l.ints.iter().map(|&v| v as f64).collect(),
                    ints: vec![],
                })
            } else {
                Some(Lit {
                    dtype: out_ty.dtype,
                    shape,
                    ints: l.floats.iter().map(|&v| v as i64).collect(),
                    floats: vec![],
                })
            }
        }
        Fold::Expand => {
            let l = lit(0)?;
            elementwise(out_ty, &[l], float, |a| Some(a[0]))
        }
        Fold::Fill { value } => {
            let v = lit(value)?.get_f(0);
            let shape = out_ty.static_shape()?;
            let l = Lit {
                dtype: out_ty.dtype,
                shape,
                ints: vec![v as i64; count as usize],
                floats: vec![v; count as usize],
            };
            Some(if float { Lit { ints: vec![], ..l } } else { Lit { floats: vec![], ..l } })
        }
        Fold::Arange { start, step } => {
            let start = match start {
                Some(i) => lit(i)?.get_f(0),
                None => 0.0,
            };
            let step = match step {
                Some(i) => lit(i)?.get_f(0),
                None => 1.0,
            };
            let vals: Vec<f64> = (0..count).map(|i| start + step * i as f64).collect();
            let shape = out_ty.static_shape()?;
            Some(if float {
                Lit { dtype: out_ty.dtype, shape, ints: vec![], floats: vals }
            } else {
                Lit { dtype: out_ty.dtype, shape, ints: vals.into_iter().map(|v| v as i64).collect(), floats: vec![] }
            })
        }
        Fold::Cat => {
            // Only 1-D concatenation of shape vectors.
            let Some(Arg::Tensors(vs)) = node.args.first() else { return None };
            if out_ty.rank() != 1 {
                return None;
            }
            let parts: Vec<Lit> = vs.iter().map(|v| known[v.index()].clone()).collect::<Option<_>>()?;
            let shape = out_ty.static_shape()?;
            if float {
                Some(Lit {
                    dtype: out_ty.dtype,
                    shape,
                    ints: vec![],
                    floats: parts.iter().flat_map(|p| (0..p.len()).map(|i| p.get_f(i))).collect(),
                })
            } else {
                Some(Lit {
                    dtype: out_ty.dtype,
                    shape,
                    floats: vec![],
                    ints: parts.iter().flat_map(|p| (0..p.len()).map(|i| p.get_i(i))).collect(),
                })
            }
        }
    }
}

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        let folded: usize = for_each_entry(program, |g| {
            let order =
                g.topo_order().map_err(|e| PassError::Failed { pass: "fold-constants", reason: e.to_string() })?;
            let mut known: Vec<Option<Lit>> = g
                .values
                .iter()
                .map(|v| match &v.def {
                    ValueDef::Const(b) => Lit::decode(&v.ty, &b.0),
                    _ => None,
                })
                .collect();
            let mut dead = BTreeSet::new();
            let mut replacements: Vec<(ValueId, Vec<u8>)> = Vec::new();
            for n in order {
                let node = g.node(n);
                if node.inputs().iter().any(|v| known[v.index()].is_none()) {
                    continue;
                }
                let Some(l) = fold_node(g, n, &known) else { continue };
                let out = node.outputs[0];
                let Some(bytes) = l.encode(&g.value(out).ty) else { continue };
                known[out.index()] = Some(l);
                replacements.push((out, bytes));
                dead.insert(n);
            }
            let mut redirect = HashMap::new();
            for (out, bytes) in replacements {
                let (name, ty) = (g.value(out).name.clone(), g.value(out).ty.clone());
                redirect.insert(out, g.add_const(name, ty, bytes));
            }
            g.replace_uses(&redirect);
            g.remove_nodes(&dead);
            Ok(dead.len())
        })?
        .into_iter()
        .sum();
        Ok(format!("folded {folded} nodes into constants"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_arithmetic_folds_to_a_constant() {
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::new(DType::Float32, &[6]));
        let a = g
            .add_op("aten.arange.default", vec![Arg::Int(3), Arg::DType(DType::Int64), Arg::None, Arg::None, Arg::None])
            .unwrap();
        let b = g.add_op("aten.mul.Scalar", vec![Arg::Tensor(a), Arg::Int(2)]).unwrap();
        let c = g.add_op("aten.add.Scalar", vec![Arg::Tensor(b), Arg::Int(1), Arg::Int(1)]).unwrap();
        let idx = g.add_op("aten.index_select.default", vec![Arg::Tensor(x), Arg::Int(0), Arg::Tensor(c)]).unwrap();
        g.add_output("y", idx);
        let mut p = Program::new("p");
        p.entries.push(g);
        FoldConstants.run(&mut p).unwrap();
        genie_ir::verify_program(&p).unwrap();
        let g = &p.entries[0];
        assert_eq!(g.nodes.len(), 1, "only the data-dependent op is left");
        let Arg::Tensor(ix) = g.nodes[0].args[2] else { panic!("index is a tensor") };
        let ValueDef::Const(bytes) = &g.value(ix).def else { panic!("index became a constant") };
        let vals: Vec<i64> = bytes.0.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(vals, [1, 3, 5]);
    }
}

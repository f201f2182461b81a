//! `einsum(equation, tensors, *, path)`: the equation read as ATen reads it (`Linear.cpp`), the
//! output's shape from the labels' sizes, and its dtype from the steps ATen takes.
//!
//! The dtype is not a plain promotion: ATen aligns every operand to `output dims + contracted
//! dims`, sums a contracted dim that only one operand still has (`sum`: integers and bool become
//! int64), multiplies a pair with nothing left to contract (`mul`: promotes) and contracts the
//! rest with `bmm` (same dtype, no bool; on empty operands it checks nothing and takes the
//! second's dtype). A single operand is summed over its contracted dims. The inference replays
//! those steps on dtypes and on which dims are 1, in ATen's pair order (left to right, or `path`).

use std::collections::VecDeque;

use super::shape::{bytes_of, out_bytes, product};
use super::{Call, InferError, OpCost};
use crate::dim::Dim;
use crate::types::{promote, DType, TensorType};

/// Labels `A`–`Z` are 0–25, `a`–`z` 26–51 (ATen's order: implicit outputs list them so).
const LABELS: usize = 52;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Term {
    Label(usize),
    Ellipsis,
}

fn label_index(c: u8) -> usize {
    if c.is_ascii_uppercase() {
        (c - b'A') as usize
    } else {
        (c - b'a') as usize + 26
    }
}

fn label_char(l: usize) -> char {
    if l < 26 {
        (b'A' + l as u8) as char
    } else {
        (b'a' + (l - 26) as u8) as char
    }
}

fn is_one(d: &Dim) -> bool {
    d.as_const() == Some(1)
}

/// Parse the terms of one side, starting at byte `base` of the equation (for messages). A `,`
/// starts the next operand; the output side has one term list.
fn parse_side(c: &Call, side: &[u8], base: usize, operands: bool) -> Result<Vec<Vec<Term>>, InferError> {
    let what = |n: usize| if operands { format!("operand {n}") } else { "the output".to_string() };
    let mut terms: Vec<Vec<Term>> = vec![Vec::new()];
    let mut i = 0;
    while i < side.len() {
        let current = terms.len() - 1;
        match side[i] {
            b' ' => {}
            b',' if operands => terms.push(Vec::new()),
            b'.' => {
                if terms[current].contains(&Term::Ellipsis) {
                    return Err(c.err(format!("einsum: {} has a second ellipsis", what(current))));
                }
                if !(i + 2 < side.len() && side[i + 1] == b'.' && side[i + 2] == b'.') {
                    return Err(c.err(format!("einsum: a '.' in {} that is not part of an ellipsis", what(current))));
                }
                terms[current].push(Term::Ellipsis);
                i += 2;
            }
            ch if ch.is_ascii_alphabetic() => terms[current].push(Term::Label(label_index(ch))),
            _ => {
                return Err(c.err(format!(
                    "einsum: invalid subscript at index {} of the equation, subscripts must be in [a-zA-Z]",
                    base + i
                )))
            }
        }
        i += 1;
    }
    Ok(terms)
}

/// One operand while the contraction is replayed: its dtype and its aligned dims.
struct Operand {
    dtype: DType,
    dims: Vec<Dim>,
}

/// `sum` keeps floating and complex dtypes; integers and bool accumulate in int64.
fn sum_dtype(d: DType) -> DType {
    if d.is_integral() || d == DType::Bool {
        DType::Int64
    } else {
        d
    }
}

/// The first known size of a label or ellipsis dim, with size 1 broadcasting.
fn merge_size(c: &Call, slot: &mut Option<Dim>, size: &Dim, what: impl FnOnce() -> String) -> Result<(), InferError> {
    match slot {
        None => *slot = Some(size.clone()),
        Some(prev) => match (prev.as_const(), size.as_const()) {
            (Some(a), Some(b)) if a != b => {
                return Err(c.err(format!("einsum: {} has size {b}, which does not broadcast with {a}", what())))
            }
            // A symbolic size against a constant: the exporter guarded them equal; keep the constant.
            (None, Some(_)) => *slot = Some(size.clone()),
            _ => {}
        },
    }
    Ok(())
}

/// What the equation says once checked against the operands.
struct Plan {
    /// Each operand's dims aligned to the output dims then the contracted dims (1 where absent).
    aligned: Vec<Vec<Dim>>,
    /// How many of the aligned dims are the output's.
    out_num_dim: usize,
    /// The output's shape.
    out_shape: Vec<Dim>,
    /// Per aligned dim, how many operands have it with a size other than 1.
    dim_counts: Vec<usize>,
}

fn plan(c: &Call, equation: &str, ops: &[&TensorType]) -> Result<Plan, InferError> {
    if ops.is_empty() {
        return Err(c.err("einsum: must provide at least one operand"));
    }
    let eq = equation.as_bytes();
    let arrow = equation.find("->");
    let lhs = &eq[..arrow.unwrap_or(eq.len())];
    let op_terms = parse_side(c, lhs, 0, true)?;
    if op_terms.len() > ops.len() {
        return Err(c.err(format!(
            "einsum: the equation has {} operands, {} tensors were given",
            op_terms.len(),
            ops.len()
        )));
    }
    if op_terms.len() < ops.len() {
        return Err(c.err(format!(
            "einsum: {} tensors were given, the equation has {} operands",
            ops.len(),
            op_terms.len()
        )));
    }

    // How often each label occurs, and how many dims the widest ellipsis covers.
    let mut label_count = [0usize; LABELS];
    let mut ell_num_dim = 0usize;
    for (i, (terms, op)) in op_terms.iter().zip(ops).enumerate() {
        let has_ellipsis = terms.contains(&Term::Ellipsis);
        let nlabels = terms.len() - usize::from(has_ellipsis);
        for t in terms {
            if let Term::Label(l) = t {
                label_count[*l] += 1;
            }
        }
        let fits = if has_ellipsis { nlabels <= op.rank() } else { nlabels == op.rank() };
        if !fits {
            return Err(c.err(format!(
                "einsum: {nlabels} subscripts for operand {i} of rank {}{}",
                op.rank(),
                if has_ellipsis { "" } else { " and no ellipsis" }
            )));
        }
        if has_ellipsis {
            ell_num_dim = ell_num_dim.max(op.rank() - nlabels);
        }
    }

    // Where each label goes in the aligned order: output dims, then contracted dims.
    let mut perm: [Option<usize>; LABELS] = [None; LABELS];
    let mut perm_index = 0;
    let mut ell_index = 0;
    let mut ell_in_output = false;
    match arrow {
        None => {
            // Implicit output: the ellipsis dims, then the labels used once, in label order.
            perm_index = ell_num_dim;
            ell_in_output = true;
            for l in 0..LABELS {
                if label_count[l] == 1 {
                    perm[l] = Some(perm_index);
                    perm_index += 1;
                }
            }
        }
        Some(at) => {
            let rhs = parse_side(c, &eq[at + 2..], at + 2, false)?;
            for t in rhs.into_iter().flatten() {
                match t {
                    Term::Ellipsis => {
                        ell_index = perm_index;
                        perm_index += ell_num_dim;
                        ell_in_output = true;
                    }
                    Term::Label(l) => {
                        if perm[l].is_some() {
                            return Err(c.err(format!(
                                "einsum: output subscript {} appears more than once in the output",
                                label_char(l)
                            )));
                        }
                        if label_count[l] == 0 {
                            return Err(c.err(format!(
                                "einsum: output subscript {} does not appear in the equation for any input operand",
                                label_char(l)
                            )));
                        }
                        perm[l] = Some(perm_index);
                        perm_index += 1;
                    }
                }
            }
        }
    }
    let out_num_dim = perm_index;
    if !ell_in_output {
        ell_index = perm_index;
        perm_index += ell_num_dim;
    }
    for l in 0..LABELS {
        if label_count[l] > 0 && perm[l].is_none() {
            perm[l] = Some(perm_index);
            perm_index += 1;
        }
    }

    // Check the sizes and align every operand.
    let mut label_size: Vec<Option<Dim>> = vec![None; LABELS];
    let mut ell_sizes: Vec<Option<Dim>> = vec![None; ell_num_dim];
    let mut dim_counts = vec![0usize; perm_index];
    let mut aligned = Vec::with_capacity(ops.len());
    for (i, (terms, op)) in op_terms.iter().zip(ops).enumerate() {
        let mut dims: Vec<Option<Dim>> = vec![None; perm_index];
        let mut next = op.shape.iter();
        for t in terms {
            match *t {
                Term::Ellipsis => {
                    let covered = op.rank() + 1 - terms.len();
                    for j in ell_num_dim - covered..ell_num_dim {
                        let size = next.next().ok_or_else(|| c.err("einsum: operand dims run out"))?;
                        if !is_one(size) {
                            merge_size(c, &mut ell_sizes[j], size, || format!("ellipsis dim {j} of operand {i}"))?;
                            dim_counts[ell_index + j] += 1;
                        }
                        dims[ell_index + j] = Some(size.clone());
                    }
                }
                Term::Label(l) => {
                    let size = next.next().ok_or_else(|| c.err("einsum: operand dims run out"))?;
                    let at = perm[l].ok_or_else(|| c.err("einsum: a label without a place"))?;
                    match &dims[at] {
                        None => {
                            if !is_one(size) {
                                let what = || format!("subscript {} of operand {i}", label_char(l));
                                merge_size(c, &mut label_size[l], size, what)?;
                                dim_counts[at] += 1;
                            }
                            dims[at] = Some(size.clone());
                        }
                        // A repeated label takes the diagonal: the sizes must be equal, not broadcast.
                        Some(prev) => {
                            if let (Some(a), Some(b)) = (prev.as_const(), size.as_const()) {
                                if a != b {
                                    return Err(c.err(format!(
                                        "einsum: subscript {} is repeated for operand {i} but the sizes don't match, {b} != {a}",
                                        label_char(l)
                                    )));
                                }
                            }
                        }
                    }
                }
            }
        }
        aligned.push(dims.into_iter().map(|d| d.unwrap_or(Dim::constant(1))).collect::<Vec<_>>());
    }

    let mut out_shape = vec![Dim::constant(1); out_num_dim];
    for l in 0..LABELS {
        if let (Some(at), Some(size)) = (perm[l], &label_size[l]) {
            if at < out_num_dim {
                out_shape[at] = size.clone();
            }
        }
    }
    if ell_in_output {
        for (j, size) in ell_sizes.iter().enumerate() {
            if let Some(size) = size {
                out_shape[ell_index + j] = size.clone();
            }
        }
    }
    Ok(Plan { aligned, out_num_dim, out_shape, dim_counts })
}

/// The dtype ATen's contraction ends with (see the module's comment).
fn contract_dtype(c: &Call, plan: Plan, ops: &[&TensorType]) -> Result<DType, InferError> {
    let Plan { aligned, out_num_dim, mut dim_counts, .. } = plan;
    let perm_index = dim_counts.len();
    let path = c.opt_ints(2)?;
    if let Some(p) = &path {
        // ATen wants one entry (unread) for a single operand, a pair per contraction otherwise.
        let want = if ops.len() == 1 { 1 } else { 2 * (ops.len() - 1) };
        if p.len() != want {
            return Err(c.err(format!("einsum: expected a contraction path of {want} entries, got {}", p.len())));
        }
    }
    if ops.len() == 1 {
        return Ok(if perm_index > out_num_dim { sum_dtype(ops[0].dtype) } else { ops[0].dtype });
    }
    let mut queue: VecDeque<Operand> =
        ops.iter().zip(aligned).map(|(t, dims)| Operand { dtype: t.dtype, dims }).collect();
    let mut step = 0;
    while queue.len() > 1 {
        let (mut i, mut j) = match &path {
            Some(p) => (p[2 * step], p[2 * step + 1]),
            None => (0, 1),
        };
        step += 1;
        if i > j {
            std::mem::swap(&mut i, &mut j);
        }
        if i == j || i < 0 || j >= queue.len() as i64 {
            return Err(c.err(format!("einsum: invalid contraction ({i}, {j}) in path")));
        }
        let (i, j) = (i as usize, j as usize);
        let mut b = queue.remove(j).ok_or_else(|| c.err("einsum: path index"))?;
        let mut a = queue.remove(i).ok_or_else(|| c.err("einsum: path index"))?;
        let mut contracted = Vec::new();
        let (mut a_sums, mut b_sums) = (false, false);
        for (dim, count) in dim_counts.iter_mut().enumerate().skip(out_num_dim) {
            let (in_a, in_b) = (!is_one(&a.dims[dim]), !is_one(&b.dims[dim]));
            if in_a && in_b {
                *count = count.saturating_sub(1);
                if *count == 1 {
                    contracted.push(dim);
                    *count = 0;
                }
            } else if *count == 1 {
                // Only this operand has the dim now: it is summed out of it alone (kept as 1).
                let side = if in_a {
                    a_sums = true;
                    &mut a
                } else if in_b {
                    b_sums = true;
                    &mut b
                } else {
                    continue;
                };
                side.dims[dim] = Dim::constant(1);
                *count = 0;
            }
        }
        if a_sums {
            a.dtype = sum_dtype(a.dtype);
        }
        if b_sums {
            b.dtype = sum_dtype(b.dtype);
        }
        let dtype = if contracted.is_empty() {
            promote(a.dtype, b.dtype)
        } else if a.dims.iter().chain(&b.dims).any(|d| d.as_const() == Some(0)) {
            // `bmm` of empty operands returns at once, with the second operand's dtype.
            b.dtype
        } else if a.dtype != b.dtype {
            return Err(c.err(format!("einsum: contracting {} with {} (bmm needs one dtype)", a.dtype, b.dtype)));
        } else if a.dtype == DType::Bool {
            return Err(c.err("einsum: contracting bool operands (bmm has no bool kernel)"));
        } else {
            a.dtype
        };
        // The product broadcasts; contracted dims are kept as 1.
        let dims = a
            .dims
            .iter()
            .zip(&b.dims)
            .enumerate()
            .map(|(d, (x, y))| match () {
                _ if contracted.contains(&d) => Dim::constant(1),
                _ if is_one(x) => y.clone(),
                _ => x.clone(),
            })
            .collect();
        let merged = Operand { dtype, dims };
        if path.is_some() {
            queue.push_back(merged);
        } else {
            queue.push_front(merged);
        }
    }
    queue.pop_front().map(|o| o.dtype).ok_or_else(|| c.err("einsum: nothing left after contraction"))
}

/// `einsum(equation, tensors, *, path=None)`.
pub(super) fn einsum(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let ops = c.tensors(1)?;
    let plan = plan(c, c.str(0)?, &ops)?;
    let shape = plan.out_shape.clone();
    let dtype = contract_dtype(c, plan, &ops)?;
    Ok(vec![TensorType::with_dims(dtype, shape)])
}

/// Two FLOPs per combination of label values per pair product (`ij,jk->ik`: 2·i·j·k); one per
/// element read for a single operand.
pub(super) fn cost_einsum(c: &Call, outs: &[TensorType]) -> OpCost {
    let inputs = c.all_tensor_inputs();
    let flops = match (c.str(0), c.tensors(1)) {
        (Ok(eq), Ok(ops)) if ops.len() > 1 => match plan(c, eq, &ops) {
            Ok(p) => {
                // Every aligned dim's size, from whichever operand has it other than 1.
                let mut all = vec![Dim::constant(1); p.dim_counts.len()];
                for dims in &p.aligned {
                    for (slot, d) in all.iter_mut().zip(dims) {
                        if !is_one(d) {
                            *slot = d.clone();
                        }
                    }
                }
                product(&all).scale(2 * (ops.len() as i64 - 1))
            }
            Err(_) => Dim::constant(0),
        },
        _ => inputs.first().map(|t| t.numel()).unwrap_or_default(),
    };
    OpCost { flops, bytes_read: bytes_of(&inputs), bytes_written: out_bytes(outs) }
}

//! Constant folding at import: a node whose inputs are all known ([`HostTensor`]s) and whose op
//! has a folder here is evaluated instead of lowered, so shape arithmetic (`Shape` → `Gather` →
//! `Concat` → `Reshape`) leaves no nodes in the graph. Integer elements are [`Dim`]s, so shapes
//! of symbolic inputs fold into symbolic shape vectors.
//!
//! Floats fold only through operations IEEE arithmetic rounds exactly (`+ - * /`, `sqrt`,
//! comparisons, min/max, floor/ceil); transcendental functions are lowered and run by the
//! executor. Results larger than [`FOLD_LIMIT`] elements are not folded.

use std::rc::Rc;

use genie_ir::{DType, Dim};

use super::host::{compare_dims, fits_host, kind, round_float, strides, wrap_int, HostData, HostTensor, Kind};
use super::import::FOLD_LIMIT;
use super::lower::shape as spec;
use super::lower::{math as mspec, Ctx};
use super::OnnxError;

/// The inputs of a node (absent optional inputs are `None`).
type Inputs = [Option<Rc<HostTensor>>];
/// A folder: `Ok(None)` when this instance cannot be folded (symbolic floats, too large, ...).
type FoldFn = fn(&Ctx, &Inputs) -> Result<Option<Vec<HostTensor>>, OnnxError>;

/// The folding table, keyed by ONNX op type.
fn folder(op: &str) -> Option<FoldFn> {
    Some(match op {
        "Identity" => |_, i| Ok(Some(vec![(*need(i, 0)?).clone()])),
        "Cast" => |c, i| Ok(need(i, 0)?.cast(spec::cast_target(c)?).map(|h| vec![h])),
        "CastLike" => |_, i| Ok(need(i, 0)?.cast(need(i, 1)?.dtype).map(|h| vec![h])),
        "Add" => |_, i| binary(i, same, |a, b| arith(a, b, Ar::Add)),
        "Sub" => |_, i| binary(i, same, |a, b| arith(a, b, Ar::Sub)),
        "Mul" => |_, i| binary(i, same, |a, b| arith(a, b, Ar::Mul)),
        "Div" => |_, i| binary(i, same, div),
        "Mod" => |c, i| {
            let fmod = c.int("fmod", 0)? != 0;
            binary(i, same, if fmod { fmod_el } else { pymod_el })
        },
        "Max" => |_, i| variadic(i, |a, b| extreme(a, b, true)),
        "Min" => |_, i| variadic(i, |a, b| extreme(a, b, false)),
        "Sum" => |_, i| variadic(i, |a, b| arith(a, b, Ar::Add)),
        "Equal" => |_, i| binary(i, boolean, |a, b| compare(a, b, |o| o == std::cmp::Ordering::Equal)),
        "Less" => |_, i| binary(i, boolean, |a, b| compare(a, b, |o| o == std::cmp::Ordering::Less)),
        "LessOrEqual" => |_, i| binary(i, boolean, |a, b| compare(a, b, |o| o != std::cmp::Ordering::Greater)),
        "Greater" => |_, i| binary(i, boolean, |a, b| compare(a, b, |o| o == std::cmp::Ordering::Greater)),
        "GreaterOrEqual" => |_, i| binary(i, boolean, |a, b| compare(a, b, |o| o != std::cmp::Ordering::Less)),
        "And" => |_, i| binary(i, boolean, |a, b| logic(a, b, |x, y| x && y)),
        "Or" => |_, i| binary(i, boolean, |a, b| logic(a, b, |x, y| x || y)),
        "Xor" => |_, i| binary(i, boolean, |a, b| logic(a, b, |x, y| x != y)),
        "Not" => |_, i| unary(i, |e| if let El::B(b) = e { Some(El::B(!b)) } else { None }),
        "Neg" => |_, i| {
            unary(i, |e| {
                Some(match e {
                    El::I(d) => El::I(d.scale(-1)),
                    El::F(f) => El::F(-f),
                    El::B(_) => return None,
                })
            })
        },
        "Abs" => |_, i| {
            unary(i, |e| {
                Some(match e {
                    El::I(d) => El::I(Dim::constant(d.as_const()?.checked_abs()?)),
                    El::F(f) => El::F(f.abs()),
                    El::B(_) => return None,
                })
            })
        },
        "Sign" => |_, i| {
            unary(i, |e| {
                Some(match e {
                    El::I(d) => El::I(Dim::constant(d.as_const()?.signum())),
                    El::F(f) => El::F(if f.is_nan() || f == 0.0 { f } else { f.signum() }),
                    El::B(_) => return None,
                })
            })
        },
        "Sqrt" => |_, i| unary(i, |e| float_el(e, f64::sqrt)),
        "Floor" => |_, i| unary(i, |e| float_el(e, f64::floor)),
        "Ceil" => |_, i| unary(i, |e| float_el(e, f64::ceil)),
        "Reciprocal" => |_, i| unary(i, |e| float_el(e, |x| 1.0 / x)),
        "Where" => |_, i| where_(i),
        "Reshape" => |c, i| {
            let x = need(i, 0)?;
            let target = spec::reshape_spec(c, &static_dims(x))?;
            Ok(resolve_reshape(x, target).map(|s| vec![x.reshaped(s)]))
        },
        "Flatten" => |c, i| {
            let x = need(i, 0)?;
            let target = spec::flatten_spec(c, &static_dims(x))?;
            Ok(to_static(&target).map(|s| vec![x.reshaped(s)]))
        },
        "Squeeze" => |c, i| {
            let x = need(i, 0)?;
            let (_, target) = spec::squeeze_spec(c, &static_dims(x))?;
            Ok(to_static(&target).map(|s| vec![x.reshaped(s)]))
        },
        "Unsqueeze" => |c, i| {
            let x = need(i, 0)?;
            let (_, target) = spec::unsqueeze_spec(c, &static_dims(x))?;
            Ok(to_static(&target).map(|s| vec![x.reshaped(s)]))
        },
        "Transpose" => |c, i| {
            let x = need(i, 0)?;
            let perm = spec::perm_spec(c, x.rank())?;
            Ok(Some(vec![transpose(x, &perm)]))
        },
        "Concat" => concat,
        "Gather" => gather,
        "Slice" => |c, i| {
            let x = need(i, 0)?;
            let mut lists: Vec<Vec<usize>> = x.shape.iter().map(|&n| (0..n).collect()).collect();
            for s in spec::slice_spec(c, &static_dims(x))? {
                let (Some(start), Some(end)) = (s.start.as_const(), s.end.as_ref().and_then(Dim::as_const)) else {
                    return Ok(None);
                };
                lists[s.axis] = stepped(start, end, s.step);
            }
            Ok(Some(vec![select_axes(x, &lists)]))
        },
        "Split" => |c, i| {
            let x = need(i, 0)?;
            let (axis, sizes) = spec::split_spec(c, &static_dims(x))?;
            let Some(sizes) = to_static(&sizes) else { return Ok(None) };
            let mut outs = Vec::with_capacity(sizes.len());
            let mut at = 0usize;
            for s in sizes {
                let mut lists: Vec<Vec<usize>> = x.shape.iter().map(|&n| (0..n).collect()).collect();
                lists[axis] = (at..at + s).collect();
                if at + s > x.shape[axis] {
                    return Err(c.err("split sizes exceed the dim"));
                }
                at += s;
                outs.push(select_axes(x, &lists));
            }
            Ok(Some(outs))
        },
        "Expand" => |c, i| {
            let x = need(i, 0)?;
            let shape = need(i, 1)?.dims().map(<[Dim]>::to_vec).ok_or_else(|| c.err("shape must be integers"))?;
            let Some(out) = spec::broadcast_dims(&static_dims(x), &shape).and_then(|o| to_static(&o)) else {
                return Ok(None);
            };
            Ok(broadcast_to(x, &out).map(|h| vec![h]))
        },
        "Tile" => |_, i| {
            let x = need(i, 0)?;
            let Some(reps) = need(i, 1)?.static_ints() else { return Ok(None) };
            if reps.len() != x.rank() || reps.iter().any(|&r| r < 0) {
                return Ok(None);
            }
            let out: Option<Vec<usize>> = x.shape.iter().zip(&reps).map(|(&n, &r)| n.checked_mul(r as usize)).collect();
            let Some(out) = out.filter(|o| numel(o).is_some_and(|n| n <= FOLD_LIMIT)) else { return Ok(None) };
            let lists =
                out.iter().zip(&x.shape).map(|(&o, &n)| (0..o).map(|j| j % n.max(1)).collect()).collect::<Vec<_>>();
            Ok(Some(vec![select_axes(x, &lists)]))
        },
        "ReduceSum" => |c, i| reduce_ints(c, i, 13, |a, b| a.add(b)),
        "ReduceProd" => |c, i| reduce_ints(c, i, 18, |a, b| a.mul(b)),
        _ => return None,
    })
}

/// Fold a node if its op has a folder and all its inputs are known.
pub(crate) fn try_fold(c: &mut Ctx) -> Result<Option<Vec<HostTensor>>, OnnxError> {
    let Some(f) = folder(&c.node.op_type) else { return Ok(None) };
    let mut inputs = Vec::with_capacity(c.n_inputs());
    for i in 0..c.n_inputs() {
        if !c.has(i) {
            inputs.push(None);
            continue;
        }
        match c.host(i) {
            Some(h) => inputs.push(Some(h)),
            None => return Ok(None),
        }
    }
    if inputs.iter().all(Option::is_none) {
        return Ok(None);
    }
    Ok(f(c, &inputs)?.filter(|outs| outs.iter().all(|h| h.numel() <= FOLD_LIMIT && fits_host(&h.shape))))
}

fn need(i: &Inputs, k: usize) -> Result<&HostTensor, OnnxError> {
    i.get(k).and_then(|h| h.as_deref()).ok_or_else(|| OnnxError::Lowering {
        node: String::new(),
        op: String::new(),
        reason: format!("input #{k} is required"),
    })
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn static_dims(h: &HostTensor) -> Vec<Dim> {
    h.shape.iter().map(|&d| Dim::constant(d as i64)).collect()
}

fn to_static(ds: &[Dim]) -> Option<Vec<usize>> {
    ds.iter().map(|d| d.as_const().and_then(|v| usize::try_from(v).ok())).collect()
}

/// Resolve `-1` in a reshape target against the element count.
fn resolve_reshape(x: &HostTensor, target: Vec<Dim>) -> Option<Vec<usize>> {
    let vals: Vec<i64> = target.iter().map(Dim::as_const).collect::<Option<_>>()?;
    let known: i64 = vals.iter().filter(|&&v| v != -1).try_fold(1i64, |a, &v| a.checked_mul(v))?;
    let n = x.numel() as i64;
    let out: Vec<i64> = vals
        .iter()
        .map(|&v| {
            if v == -1 {
                if known == 0 {
                    -1
                } else {
                    n / known
                }
            } else {
                v
            }
        })
        .collect();
    let shape = out.iter().map(|&v| usize::try_from(v).ok()).collect::<Option<Vec<_>>>()?;
    (numel(&shape)? == x.numel()).then_some(shape)
}

/// One element, for generic element-wise folding.
#[derive(Clone, Debug)]
enum El {
    I(Dim),
    F(f64),
    B(bool),
}

fn elems(h: &HostTensor) -> Vec<El> {
    match &h.data {
        HostData::Int(v) => v.iter().cloned().map(El::I).collect(),
        HostData::Float(v) => v.iter().copied().map(El::F).collect(),
        HostData::Bool(v) => v.iter().copied().map(El::B).collect(),
    }
}

/// Build a tensor of `dtype` from elements (wrapping/rounding to the dtype); `None` when an
/// element does not fit the dtype's family.
fn from_elems(dtype: DType, shape: Vec<usize>, v: Vec<El>) -> Option<HostTensor> {
    let data = match kind(dtype) {
        Kind::Int => HostData::Int(
            v.into_iter()
                .map(|e| match e {
                    El::I(d) => Some(d.as_const().map_or(d.clone(), |c| Dim::constant(wrap_int(c, dtype)))),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        Kind::Float => HostData::Float(
            v.into_iter()
                .map(|e| match e {
                    El::F(f) => Some(round_float(f, dtype)),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        Kind::Bool => HostData::Bool(
            v.into_iter()
                .map(|e| match e {
                    El::B(b) => Some(b),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        Kind::Other => return None,
    };
    Some(HostTensor { dtype, shape, data })
}

/// Static numpy broadcasting.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let y = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (x, y) {
                (1, y) => Some(y),
                (x, 1) => Some(x),
                (x, y) if x == y => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// For every element of `out`, the flat index of the element of `inp` broadcast to it.
fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let n = out.len();
    let off = n - inp.len();
    let st = strides(inp);
    let total = numel(out).unwrap_or(0);
    let mut res = Vec::with_capacity(total);
    let mut idx = vec![0usize; n];
    for _ in 0..total {
        let mut flat = 0;
        for d in off..n {
            if inp[d - off] != 1 {
                flat += idx[d] * st[d - off];
            }
        }
        res.push(flat);
        for d in (0..n).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}

/// Broadcast a tensor to a larger static shape (`None` if too large or incompatible).
fn broadcast_to(x: &HostTensor, out: &[usize]) -> Option<HostTensor> {
    if out.len() < x.rank() || numel(out)? > FOLD_LIMIT {
        return None;
    }
    let b = broadcast_shape(&x.shape, out)?;
    if b != out {
        return None;
    }
    let idx = broadcast_index(out, &x.shape);
    Some(x.take(out.to_vec(), &idx))
}

/// The output dtype rule of an element-wise op: same as the first input, or bool.
type DtypeRule = fn(DType) -> DType;

fn same(d: DType) -> DType {
    d
}

fn boolean(_: DType) -> DType {
    DType::Bool
}

fn binary(i: &Inputs, rule: DtypeRule, f: fn(&El, &El) -> Option<El>) -> Result<Option<Vec<HostTensor>>, OnnxError> {
    let (a, b) = (need(i, 0)?, need(i, 1)?);
    if a.dtype != b.dtype {
        return Ok(None);
    }
    let Some(out) = broadcast_shape(&a.shape, &b.shape).filter(|o| numel(o).is_some_and(|n| n <= FOLD_LIMIT)) else {
        return Ok(None);
    };
    let (ea, eb) = (elems(a), elems(b));
    let (ia, ib) = (broadcast_index(&out, &a.shape), broadcast_index(&out, &b.shape));
    let v: Option<Vec<El>> = ia.iter().zip(&ib).map(|(&x, &y)| f(&ea[x], &eb[y])).collect();
    Ok(v.and_then(|v| from_elems(rule(a.dtype), out, v)).map(|h| vec![h]))
}

fn variadic(i: &Inputs, f: fn(&El, &El) -> Option<El>) -> Result<Option<Vec<HostTensor>>, OnnxError> {
    let mut acc = (*need(i, 0)?).clone();
    for next in i.iter().skip(1) {
        let pair = [Some(Rc::new(acc)), next.clone()];
        match binary(&pair, same, f)? {
            Some(mut v) if v.len() == 1 => acc = v.remove(0),
            _ => return Ok(None),
        }
    }
    Ok(Some(vec![acc]))
}

fn unary(i: &Inputs, f: fn(El) -> Option<El>) -> Result<Option<Vec<HostTensor>>, OnnxError> {
    let x = need(i, 0)?;
    let v: Option<Vec<El>> = elems(x).into_iter().map(f).collect();
    Ok(v.and_then(|v| from_elems(x.dtype, x.shape.clone(), v)).map(|h| vec![h]))
}

/// Ring operations on integers (symbolic or not) and floats.
#[derive(Clone, Copy)]
enum Ar {
    Add,
    Sub,
    Mul,
}

fn arith(a: &El, b: &El, op: Ar) -> Option<El> {
    match (a, b) {
        (El::I(x), El::I(y)) => match (x.as_const(), y.as_const()) {
            (Some(p), Some(q)) => match op {
                Ar::Add => p.checked_add(q),
                Ar::Sub => p.checked_sub(q),
                Ar::Mul => p.checked_mul(q),
            }
            .map(|v| El::I(Dim::constant(v))),
            _ => Some(El::I(match op {
                Ar::Add => x.add(y),
                Ar::Sub => x.sub(y),
                Ar::Mul => x.mul(y),
            })),
        },
        (El::F(x), El::F(y)) => Some(El::F(match op {
            Ar::Add => x + y,
            Ar::Sub => x - y,
            Ar::Mul => x * y,
        })),
        _ => None,
    }
}

/// ONNX `Div`: integers truncate toward zero; symbolic dividends (sizes, non-negative) floor.
fn div(a: &El, b: &El) -> Option<El> {
    match (a, b) {
        (El::I(x), El::I(y)) => match (x.as_const(), y.as_const()) {
            (Some(p), Some(q)) => p.checked_div(q).map(|v| El::I(Dim::constant(v))),
            (None, Some(q)) if q > 0 => Some(El::I(x.floor_div(y))),
            _ => None,
        },
        (El::F(x), El::F(y)) => Some(El::F(x / y)),
        _ => None,
    }
}

fn fmod_el(a: &El, b: &El) -> Option<El> {
    match (a, b) {
        (El::I(x), El::I(y)) => x.as_const()?.checked_rem(y.as_const()?).map(|v| El::I(Dim::constant(v))),
        (El::F(x), El::F(y)) => Some(El::F(x % y)),
        _ => None,
    }
}

fn pymod_el(a: &El, b: &El) -> Option<El> {
    match (a, b) {
        (El::I(x), El::I(y)) => {
            let q = y.as_const()?;
            if q == 0 {
                return None;
            }
            Some(El::I(x.modulo(y)))
        }
        _ => None,
    }
}

/// Compare two elements; symbolic integers compare when their difference is constant or has a
/// known sign (every symbol is at least 1).
fn order(a: &El, b: &El) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (El::I(x), El::I(y)) => compare_dims(x, y),
        (El::F(x), El::F(y)) => x.partial_cmp(y),
        (El::B(x), El::B(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare(a: &El, b: &El, f: fn(std::cmp::Ordering) -> bool) -> Option<El> {
    if let (El::F(x), El::F(y)) = (a, b) {
        if x.is_nan() || y.is_nan() {
            return Some(El::B(false));
        }
    }
    Some(El::B(f(order(a, b)?)))
}

fn extreme(a: &El, b: &El, max: bool) -> Option<El> {
    if let (El::F(x), El::F(y)) = (a, b) {
        if x.is_nan() || y.is_nan() {
            return Some(El::F(f64::NAN));
        }
    }
    let o = order(a, b)?;
    let first = if max { o != std::cmp::Ordering::Less } else { o != std::cmp::Ordering::Greater };
    Some(if first { a.clone() } else { b.clone() })
}

fn logic(a: &El, b: &El, f: fn(bool, bool) -> bool) -> Option<El> {
    match (a, b) {
        (El::B(x), El::B(y)) => Some(El::B(f(*x, *y))),
        _ => None,
    }
}

fn float_el(e: El, f: fn(f64) -> f64) -> Option<El> {
    match e {
        El::F(x) => Some(El::F(f(x))),
        _ => None,
    }
}

fn where_(i: &Inputs) -> Result<Option<Vec<HostTensor>>, OnnxError> {
    let (c, a, b) = (need(i, 0)?, need(i, 1)?, need(i, 2)?);
    if a.dtype != b.dtype {
        return Ok(None);
    }
    let Some(out) = broadcast_shape(&c.shape, &a.shape)
        .and_then(|s| broadcast_shape(&s, &b.shape))
        .filter(|o| numel(o).is_some_and(|n| n <= FOLD_LIMIT))
    else {
        return Ok(None);
    };
    let HostData::Bool(cv) = &c.data else { return Ok(None) };
    let (ea, eb) = (elems(a), elems(b));
    let (ic, ia, ib) =
        (broadcast_index(&out, &c.shape), broadcast_index(&out, &a.shape), broadcast_index(&out, &b.shape));
    let v: Vec<El> = (0..ic.len()).map(|k| if cv[ic[k]] { ea[ia[k]].clone() } else { eb[ib[k]].clone() }).collect();
    Ok(from_elems(a.dtype, out, v).map(|h| vec![h]))
}

/// Elements at the cartesian product of per-axis index lists.
fn select_axes(x: &HostTensor, lists: &[Vec<usize>]) -> HostTensor {
    let shape: Vec<usize> = lists.iter().map(Vec::len).collect();
    let st = strides(&x.shape);
    let total = numel(&shape).unwrap_or(0);
    let mut idx = Vec::with_capacity(total);
    let mut pos = vec![0usize; shape.len()];
    for _ in 0..total {
        idx.push(pos.iter().enumerate().map(|(d, &p)| lists[d][p] * st[d]).sum());
        for d in (0..shape.len()).rev() {
            pos[d] += 1;
            if pos[d] < shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    x.take(shape, &idx)
}

/// The indices `start, start+step, ...` before `end` (already clamped).
fn stepped(start: i64, end: i64, step: i64) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        out.push(i as usize);
        i += step;
    }
    out
}

fn transpose(x: &HostTensor, perm: &[usize]) -> HostTensor {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let st = strides(&x.shape);
    let total = x.numel();
    let mut idx = Vec::with_capacity(total);
    let mut pos = vec![0usize; shape.len()];
    for _ in 0..total {
        idx.push(pos.iter().enumerate().map(|(d, &p)| p * st[perm[d]]).sum());
        for d in (0..shape.len()).rev() {
            pos[d] += 1;
            if pos[d] < shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    x.take(shape, &idx)
}

fn concat(c: &Ctx, i: &Inputs) -> Result<Option<Vec<HostTensor>>, OnnxError> {
    let xs: Vec<&HostTensor> = i.iter().map(|h| h.as_deref()).collect::<Option<_>>().unwrap_or_default();
    let Some(first) = xs.first() else { return Ok(None) };
    // Before the axis is used: a scalar has no axis 0 to index (the fuzzer's crash).
    if first.rank() == 0 {
        return Err(c.err("cannot concatenate scalars"));
    }
    let axis = c.axis(c.opt_int("axis")?.unwrap_or(0), first.rank(), "axis")?;
    let mut shape = first.shape.clone();
    let mut total = 0usize;
    for x in &xs {
        if x.dtype != first.dtype || x.rank() != first.rank() {
            return Ok(None);
        }
        if (0..x.rank()).any(|d| d != axis && x.shape[d] != first.shape[d]) {
            return Err(c.err("concatenated shapes differ outside the axis"));
        }
        total += x.shape[axis];
    }
    shape[axis] = total;
    // The output's size first: inputs with no elements can still have axes whose product
    // overflows, and walking the outer positions of an empty result would take forever.
    let Some(n_out) = numel(&shape).filter(|&n| n <= FOLD_LIMIT) else { return Ok(None) };
    if n_out == 0 {
        return Ok(from_elems(first.dtype, shape, Vec::new()).map(|h| vec![h]));
    }
    // Every dim is now at least 1 and every product at most `n_out`.
    let outer: usize = first.shape[..axis].iter().product();
    let mut v = Vec::with_capacity(n_out);
    let parts: Vec<(Vec<El>, usize)> = xs.iter().map(|x| (elems(x), x.shape[axis..].iter().product())).collect();
    for o in 0..outer {
        for (e, block) in &parts {
            v.extend_from_slice(&e[o * block..(o + 1) * block]);
        }
    }
    Ok(from_elems(first.dtype, shape, v).map(|h| vec![h]))
}

fn gather(c: &Ctx, i: &Inputs) -> Result<Option<Vec<HostTensor>>, OnnxError> {
    let (x, idx) = (need(i, 0)?, need(i, 1)?);
    let axis = c.dim_axis(c.int("axis", 0)?, x.rank(), "axis")?;
    let Some(iv) = idx.static_ints() else { return Ok(None) };
    let n = x.shape[axis] as i64;
    let mut list = Vec::with_capacity(iv.len());
    for j in iv {
        let j = if j < 0 { j + n } else { j };
        if j < 0 || j >= n {
            return Err(c.err(format!("index {j} out of range for a dim of size {n}")));
        }
        list.push(j as usize);
    }
    let mut lists: Vec<Vec<usize>> = x.shape.iter().map(|&d| (0..d).collect()).collect();
    lists[axis] = list;
    if lists.iter().try_fold(1usize, |a, l| a.checked_mul(l.len())).is_none_or(|n| n > FOLD_LIMIT) {
        return Ok(None);
    }
    let picked = select_axes(x, &lists);
    let mut shape = x.shape[..axis].to_vec();
    shape.extend_from_slice(&idx.shape);
    shape.extend_from_slice(&x.shape[axis + 1..]);
    Ok(Some(vec![picked.reshaped(shape)]))
}

/// Integer reductions (shape arithmetic such as the product of some dims).
fn reduce_ints(
    c: &Ctx,
    i: &Inputs,
    input_from: i64,
    f: fn(&Dim, &Dim) -> Dim,
) -> Result<Option<Vec<HostTensor>>, OnnxError> {
    let x = need(i, 0)?;
    let Some(v) = x.dims() else { return Ok(None) };
    let keep = c.int("keepdims", 1)? != 0;
    let Some(axes) = mspec::reduce_axes(c, input_from, x.rank())? else {
        return Ok(Some(vec![x.clone()]));
    };
    let axes: Vec<usize> = axes.into_iter().map(|a| a as usize).collect();
    let out_shape: Vec<usize> = (0..x.rank()).map(|d| if axes.contains(&d) { 1 } else { x.shape[d] }).collect();
    // Reducing an empty axis gives one element per position of the others: of an empty input
    // of shape [0, 4000, 4000, 4000] that is 64 billion, from no data. Larger than folding
    // takes: lowered instead.
    let Some(n_out) = numel(&out_shape).filter(|&n| n <= FOLD_LIMIT) else { return Ok(None) };
    let st_out = strides(&out_shape);
    let st_in = strides(&x.shape);
    let mut acc: Vec<Option<Dim>> = vec![None; n_out];
    for (flat, d) in v.iter().enumerate() {
        let o: usize =
            (0..x.rank()).map(|k| if axes.contains(&k) { 0 } else { (flat / st_in[k]) % x.shape[k] * st_out[k] }).sum();
        acc[o] = Some(match &acc[o] {
            None => d.clone(),
            Some(a) => f(a, d),
        });
    }
    let vals: Option<Vec<Dim>> = acc.into_iter().collect();
    let Some(vals) = vals else { return Ok(None) };
    let shape =
        if keep { out_shape } else { (0..x.rank()).filter(|d| !axes.contains(d)).map(|d| x.shape[d]).collect() };
    Ok(Some(vec![HostTensor::ints(x.dtype, shape, vals)]))
}

/// `Range(start, limit, delta)` when every bound is static and the result small; `Ok(None)`
/// leaves it to `aten.arange`.
pub(crate) fn range(start: &HostTensor, limit: &HostTensor, delta: &HostTensor) -> Result<Option<HostTensor>, String> {
    let dtype = start.dtype;
    match kind(dtype) {
        Kind::Int => {
            let (Some(s), Some(l), Some(d)) = (start.static_ints(), limit.static_ints(), delta.static_ints()) else {
                return Ok(None);
            };
            let (s, l, d) = (s[0], l[0], d[0]);
            if d == 0 {
                return Err("Range delta is 0".into());
            }
            let n = ((l as i128 - s as i128 + d as i128 - d.signum() as i128) / d as i128).max(0);
            if n > FOLD_LIMIT as i128 {
                return Ok(None);
            }
            let v = (0..n as i64).map(|k| Dim::constant(s + k * d)).collect();
            Ok(Some(HostTensor::ints(dtype, vec![n as usize], v)))
        }
        Kind::Float => {
            let (Some(s), Some(l), Some(d)) = (start.as_f64(), limit.as_f64(), delta.as_f64()) else {
                return Ok(None);
            };
            let (s, l, d) = (s[0], l[0], d[0]);
            if d == 0.0 || !(s.is_finite() && l.is_finite() && d.is_finite()) {
                return Err("Range bounds must be finite with a nonzero delta".into());
            }
            let n = ((l - s) / d).ceil().max(0.0);
            if n > FOLD_LIMIT as f64 {
                return Ok(None);
            }
            let v = (0..n as usize).map(|k| s + k as f64 * d).collect();
            Ok(Some(HostTensor::floats(dtype, vec![n as usize], v)))
        }
        _ => Ok(None),
    }
}

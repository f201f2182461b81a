//! How an op that `torch.export` emits becomes SRG: as itself (a registry op), as the
//! functional form of an in-place op, or lowered into registry ops by a decomposition.
//!
//! Exports leave composite and alias ops in the default graph (`x.T` is `aten.numpy_T`,
//! `x.mT` is `aten.mT`), and in-place variants of element-wise ops (`hardswish_`,
//! `dropout_`) in modules written with `inplace=True`. Rather than a registry row and a kernel
//! for each, they are rewritten here at import: **adding a decomposition is one row** of
//! [`DECOMPOSITIONS`].

use genie_ir::registry::schema::dims_arg;
use genie_ir::registry::{self, OpDef, Schema};
use genie_ir::{Arg, DType, Dim, Graph, InferError, TensorType, ValueId};

/// How the importer turns one exported op into SRG nodes.
pub(crate) enum ImportAs {
    /// A registry op, imported as it is.
    Registered(&'static OpDef),
    /// `op_` whose functional `op` is supported: the functional op, its result written back
    /// into `self` (cast to `self`'s dtype, as an in-place op keeps it).
    InPlace(Functional),
    /// Lowered into registry ops.
    Decomposed(&'static Decomposition, &'static Schema),
}

/// The functional form of an in-place op.
pub(crate) enum Functional {
    Registered(&'static OpDef),
    Decomposed(&'static Decomposition, &'static Schema),
}

impl Functional {
    pub(crate) fn schema(&self) -> &'static Schema {
        match self {
            Functional::Registered(def) => &def.schema,
            Functional::Decomposed(_, schema) => schema,
        }
    }
}

/// A composite or alias op lowered into registry ops at import.
pub(crate) struct Decomposition {
    /// PyTorch's schema of the op, to bind the exported arguments.
    pub schema: &'static str,
    /// Emits the registry ops computing the op; returns its outputs.
    pub lower: fn(&mut Graph, &[Arg]) -> Result<Vec<ValueId>, InferError>,
}

/// One row per op: PyTorch's schema, then its lowering.
static DECOMPOSITIONS: &[Decomposition] = &[
    // `x.T`: all dims reversed.
    Decomposition { schema: "aten::numpy_T(Tensor(a) self) -> Tensor(a)", lower: reverse_dims },
    // `x.mT`, `x.mH`, `x.H`, `x.adjoint()`: the last two dims swapped (conjugation is the
    // identity on the real dtypes the SRG has).
    Decomposition { schema: "aten::mT(Tensor(a) self) -> Tensor(a)", lower: swap_last_two },
    Decomposition { schema: "aten::mH(Tensor(a) self) -> Tensor(a)", lower: swap_last_two },
    Decomposition { schema: "aten::matrix_H(Tensor(a) self) -> Tensor(a)", lower: swap_last_two },
    Decomposition { schema: "aten::adjoint(Tensor(a) self) -> Tensor(a)", lower: swap_last_two },
    // NumPy's names for `transpose`.
    Decomposition { schema: "aten::swapaxes(Tensor(a) self, int axis0, int axis1) -> Tensor(a)", lower: transpose },
    Decomposition { schema: "aten::swapdims(Tensor(a) self, int dim0, int dim1) -> Tensor(a)", lower: transpose },
    // `movedim`/`moveaxis`: a permutation.
    Decomposition {
        schema: "aten::movedim.int(Tensor(a) self, int source, int destination) -> Tensor(a)",
        lower: move_dims,
    },
    Decomposition {
        schema: "aten::moveaxis.int(Tensor(a) self, int source, int destination) -> Tensor(a)",
        lower: move_dims,
    },
    Decomposition {
        schema: "aten::movedim.intlist(Tensor(a) self, int[] source, int[] destination) -> Tensor(a)",
        lower: move_dims,
    },
    // Aliases of registered element-wise ops.
    Decomposition { schema: "aten::multiply.Tensor(Tensor self, Tensor other) -> Tensor", lower: multiply },
    // `where(c, 1.0, 0.0)`: both branches numbers, as zero-dim tensors of PyTorch's dtypes.
    Decomposition {
        schema: "aten::where.Scalar(Tensor condition, Scalar self, Scalar other) -> Tensor",
        lower: where_scalars,
    },
    // `log σ(x) = min(x, 0) − log1p(exp(−|x|))`, stable for large |x|.
    Decomposition { schema: "aten::log_sigmoid(Tensor self) -> Tensor", lower: log_sigmoid },
    // `tile`: `repeat` with the repeats padded with leading ones to the tensor's rank.
    Decomposition { schema: "aten::tile(Tensor self, SymInt[] dims) -> Tensor", lower: tile },
    // The functional `copy_`: `src` in `self`'s dtype, broadcast to its shape.
    Decomposition {
        schema: "aten::copy(Tensor self, Tensor src, bool non_blocking=False) -> Tensor",
        lower: functional_copy,
    },
    // A fresh tensor whose memory layout is permuted: the SRG has no layouts.
    Decomposition {
        schema: "aten::empty_permuted(SymInt[] size, int[] physical_layout, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
        lower: empty_permuted,
    },
    // Weight normalisation (`weight_norm` parametrisation): `v · g / ‖v‖`, the norm over every
    // dim but `dim`.
    Decomposition { schema: "aten::_weight_norm(Tensor v, Tensor g, int dim=0) -> Tensor", lower: weight_norm },
    // Coordinate grids: each 1-D input viewed along its own dim and broadcast.
    Decomposition {
        schema: "aten::meshgrid.indexing(Tensor[] tensors, *, str indexing) -> Tensor[]",
        lower: meshgrid,
    },
    // `fill_(x, v)` and `zero_(x)` made functional: `v` (a zero-dim tensor) or zeros in `x`'s
    // dtype and shape.
    Decomposition { schema: "aten::fill.Tensor(Tensor self, Tensor value) -> Tensor", lower: functional_copy },
    Decomposition { schema: "aten::zero(Tensor self) -> Tensor", lower: zeros_like },
    // Aliases of `expand` and `cat`.
    Decomposition { schema: "aten::broadcast_to(Tensor(a) self, SymInt[] size) -> Tensor(a)", lower: broadcast_to },
    Decomposition { schema: "aten::concat(Tensor[] tensors, int dim=0) -> Tensor", lower: concat },
    // `steps` evenly spaced values from `start` to `end`.
    Decomposition {
        schema: "aten::linspace(Scalar start, Scalar end, int steps, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
        lower: linspace,
    },
    // Slices between the given indices.
    Decomposition {
        schema: "aten::tensor_split.indices(Tensor(a -> *) self, SymInt[] indices, int dim=0) -> Tensor(a)[]",
        lower: tensor_split,
    },
];

/// How `op` (an exported target without `torch.ops.`) is imported, if Genie supports it.
pub(crate) fn import_as(op: &str) -> Option<ImportAs> {
    if let Ok(def) = registry::lookup(op) {
        return Some(ImportAs::Registered(def));
    }
    if let Some((d, s)) = decomposition(op) {
        return Some(ImportAs::Decomposed(d, s));
    }
    functional_of_in_place(op).map(ImportAs::InPlace)
}

/// Whether the `.pt2` importer supports `op` (an exported target name such as
/// `aten.hardswish_.default`): registered, the in-place form of a registered op, decomposed,
/// or symbolic-int arithmetic and shape asserts folded into dims.
pub fn supports(op: &str) -> bool {
    let target = format!("torch.ops.{op}");
    import_as(op).is_some() || is_sym_target(op) || is_sym_target(&target) || is_shape_assert(&target)
}

/// Sym-int ops folded into dim expressions instead of becoming nodes.
pub(crate) fn is_sym_target(target: &str) -> bool {
    const PREFIXES: [&str; 5] = ["_operator.", "operator.", "torch.sym_", "torch._sym_", "math."];
    const ATEN: [&str; 5] = [
        "torch.ops.aten.sym_size.int",
        "torch.ops.aten.sym_size.default",
        "torch.ops.aten.sym_numel.default",
        "torch.ops.aten.sym_stride.int",
        "torch.ops.aten.sym_storage_offset.default",
    ];
    PREFIXES.iter().any(|p| target.starts_with(p)) || ATEN.contains(&target)
}

/// Runtime asserts on symbolic shapes: the range constraints already say what they check.
pub(crate) fn is_shape_assert(target: &str) -> bool {
    matches!(
        target,
        "torch.ops.aten._assert_scalar.default"
            | "torch.ops.aten.sym_constrain_range.default"
            | "torch.ops.aten.sym_constrain_range_for_size.default"
    )
}

/// `aten.X_.overload` → the supported `aten.X.overload` (the same arguments, `self` read, not
/// written): registered or decomposed.
fn functional_of_in_place(op: &str) -> Option<Functional> {
    let (namespace, rest) = op.split_once('.')?;
    let (name, overload) = rest.split_once('.')?;
    let base = name.strip_suffix('_').filter(|b| !b.is_empty() && !b.ends_with('_'))?;
    let functional = format!("{namespace}.{base}.{overload}");
    let f = match registry::lookup(&functional) {
        Ok(def) => Functional::Registered(def),
        Err(_) => decomposition(&functional).map(|(d, s)| Functional::Decomposed(d, s))?,
    };
    let schema = f.schema();
    let first_is_tensor = schema.args.first().is_some_and(|a| a.kind == registry::ArgKind::Tensor);
    (schema.mutated_arg().is_none() && first_is_tensor).then_some(f)
}

fn decomposition(op: &str) -> Option<(&'static Decomposition, &'static Schema)> {
    static PARSED: std::sync::OnceLock<Vec<Schema>> = std::sync::OnceLock::new();
    let parsed = PARSED.get_or_init(|| DECOMPOSITIONS.iter().map(parsed_schema).collect());
    DECOMPOSITIONS.iter().zip(parsed).find(|(_, s)| s.name == op)
}

/// The parsed schema of a decomposition (the table's text is checked by a test).
fn parsed_schema(d: &Decomposition) -> Schema {
    Schema::parse(d.schema).expect("decomposition schemas parse (tested)")
}

fn one(v: Result<ValueId, InferError>) -> Result<Vec<ValueId>, InferError> {
    v.map(|v| vec![v])
}

/// Add registry op `op` with these positional and keyword arguments, bound to its schema
/// (defaults filled in).
pub(crate) fn emit(
    g: &mut Graph,
    op: &str,
    positional: Vec<Arg>,
    keywords: Vec<(&str, Arg)>,
) -> Result<ValueId, InferError> {
    let def = registry::lookup(op)?;
    let keywords = keywords.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let args = def.schema.bind(positional, keywords).map_err(|e| InferError::new(op, e.to_string()))?;
    g.add_op(op, args)
}

/// A zero-dim constant holding a Python number, in the dtype PyTorch gives it.
fn number(g: &mut Graph, name: &str, a: &Arg) -> Result<ValueId, InferError> {
    let (dtype, bytes) = match *a {
        Arg::Int(v) => (DType::Int64, v.to_le_bytes().to_vec()),
        Arg::Float(v) => (DType::Float32, (v as f32).to_le_bytes().to_vec()),
        Arg::Bool(b) => (DType::Bool, vec![b as u8]),
        ref other => return Err(InferError::new(name, format!("expected a number, got {other:?}"))),
    };
    Ok(g.add_const(name, TensorType::new(dtype, &[]), bytes))
}

fn tensor(args: &[Arg], i: usize, op: &str) -> Result<ValueId, InferError> {
    match args.get(i) {
        Some(Arg::Tensor(v)) => Ok(*v),
        _ => Err(InferError::new(op, format!("argument {i} is not a tensor"))),
    }
}

fn rank(g: &Graph, v: ValueId) -> i64 {
    g.value(v).ty.shape.len() as i64
}

fn reverse_dims(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    let x = tensor(args, 0, "aten.numpy_T")?;
    let dims = (0..rank(g, x)).rev().collect();
    one(g.add_op("aten.permute.default", vec![Arg::Tensor(x), Arg::Ints(dims)]))
}

fn swap_last_two(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    let x = tensor(args, 0, "aten.mT")?;
    if rank(g, x) < 2 {
        return Err(InferError::new("aten.mT", "needs a tensor of at least two dims"));
    }
    one(g.add_op("aten.transpose.int", vec![Arg::Tensor(x), Arg::Int(-2), Arg::Int(-1)]))
}

fn transpose(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    let x = tensor(args, 0, "aten.swapaxes")?;
    one(g.add_op("aten.transpose.int", vec![Arg::Tensor(x), args[1].clone(), args[2].clone()]))
}

/// `movedim(x, source, destination)`: the dims in `source` go to `destination`, the others keep
/// their order in the remaining places.
fn move_dims(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    const OP: &str = "aten.movedim";
    let x = tensor(args, 0, OP)?;
    let n = rank(g, x);
    let list = |a: &Arg| match a {
        Arg::Int(v) => Ok(vec![*v]),
        Arg::Ints(v) => Ok(v.clone()),
        other => Err(InferError::new(OP, format!("expected dims, got {other:?}"))),
    };
    let norm = |d: i64| {
        let d = if d < 0 { d + n } else { d };
        (0..n.max(1)).contains(&d).then_some(d).ok_or_else(|| InferError::new(OP, format!("dim {d} out of range")))
    };
    let source = list(&args[1])?.into_iter().map(norm).collect::<Result<Vec<_>, _>>()?;
    let destination = list(&args[2])?.into_iter().map(norm).collect::<Result<Vec<_>, _>>()?;
    if source.len() != destination.len() {
        return Err(InferError::new(OP, "source and destination differ in length"));
    }
    let mut perm = vec![-1i64; n as usize];
    for (&s, &d) in source.iter().zip(&destination) {
        if perm[d as usize] != -1 {
            return Err(InferError::new(OP, format!("destination dim {d} repeated")));
        }
        perm[d as usize] = s;
    }
    let mut rest = (0..n).filter(|d| !source.contains(d));
    for slot in perm.iter_mut().filter(|p| **p == -1) {
        *slot = rest.next().ok_or_else(|| InferError::new(OP, "source dims repeated"))?;
    }
    one(g.add_op("aten.permute.default", vec![Arg::Tensor(x), Arg::Ints(perm)]))
}

fn multiply(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    one(g.add_op("aten.mul.Tensor", args.to_vec()))
}

fn where_scalars(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    let condition = tensor(args, 0, "aten.where.Scalar")?;
    // Two numbers of different kinds promote as PyTorch promotes them (int and float: float).
    let promote = |a: &Arg, other: &Arg| match (a, other) {
        (Arg::Int(v), Arg::Float(_)) => Arg::Float(*v as f64),
        (Arg::Bool(b), Arg::Float(_)) => Arg::Float(*b as i64 as f64),
        (Arg::Bool(b), Arg::Int(_)) => Arg::Int(*b as i64),
        _ => a.clone(),
    };
    let yes = number(g, "where_self", &promote(&args[1], &args[2]))?;
    let no = number(g, "where_other", &promote(&args[2], &args[1]))?;
    one(g.add_op("aten.where.self", vec![Arg::Tensor(condition), Arg::Tensor(yes), Arg::Tensor(no)]))
}

fn log_sigmoid(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    let x = Arg::Tensor(tensor(args, 0, "aten.log_sigmoid")?);
    let negative_part = g.add_op("aten.clamp_max.default", vec![x.clone(), Arg::Int(0)])?;
    let magnitude = g.add_op("aten.abs.default", vec![x])?;
    let negated = g.add_op("aten.neg.default", vec![Arg::Tensor(magnitude)])?;
    let exp = g.add_op("aten.exp.default", vec![Arg::Tensor(negated)])?;
    let log1p = g.add_op("aten.log1p.default", vec![Arg::Tensor(exp)])?;
    one(emit(g, "aten.sub.Tensor", vec![Arg::Tensor(negative_part), Arg::Tensor(log1p)], vec![]))
}

fn tile(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    let x = tensor(args, 0, "aten.tile")?;
    let mut repeats: Vec<Dim> = match &args[1] {
        Arg::Ints(v) => v.iter().map(|&d| Dim::constant(d)).collect(),
        Arg::SymInts(v) => v.clone(),
        other => return Err(InferError::new("aten.tile", format!("expected dims, got {other:?}"))),
    };
    let r = rank(g, x) as usize;
    if repeats.len() < r {
        let mut padded = vec![Dim::constant(1); r - repeats.len()];
        padded.append(&mut repeats);
        repeats = padded;
    }
    one(g.add_op("aten.repeat.default", vec![Arg::Tensor(x), dims_arg(repeats)]))
}

fn functional_copy(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    let (target, src) = (tensor(args, 0, "aten.copy")?, tensor(args, 1, "aten.copy")?);
    let ty = g.value(target).ty.clone();
    let mut v = src;
    if g.value(v).ty.dtype != ty.dtype {
        v = emit(g, "aten.to.dtype", vec![Arg::Tensor(v), Arg::DType(ty.dtype)], vec![])?;
    }
    if g.value(v).ty.shape != ty.shape {
        v = emit(g, "aten.expand.default", vec![Arg::Tensor(v), dims_arg(ty.shape.clone())], vec![])?;
    }
    // A copy, not the source itself: the output is a value of its own.
    one(emit(g, "aten.clone.default", vec![Arg::Tensor(v)], vec![]))
}

fn zeros_like(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    one(emit(g, "aten.zeros_like.default", vec![args[0].clone()], vec![]))
}

fn broadcast_to(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    one(emit(g, "aten.expand.default", args.to_vec(), vec![]))
}

fn concat(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    one(emit(g, "aten.cat.default", args.to_vec(), vec![]))
}

/// `start + i · (end − start) / (steps − 1)` for `i` in `0..steps`, in float32 unless a dtype
/// is given (PyTorch computes the upper half from `end` downwards; the values agree to
/// float32's rounding).
fn linspace(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    const OP: &str = "aten.linspace";
    let number = |a: &Arg| match a {
        Arg::Int(v) => Ok(*v as f64),
        Arg::Float(v) => Ok(*v),
        other => Err(InferError::new(OP, format!("expected a number, got {other:?}"))),
    };
    let (start, end) = (number(&args[0])?, number(&args[1])?);
    let Arg::Int(steps) = args[2] else { return Err(InferError::new(OP, "steps is not an int")) };
    if steps < 0 {
        return Err(InferError::new(OP, format!("steps {steps} is negative")));
    }
    let step = if steps > 1 { (end - start) / (steps - 1) as f64 } else { 0.0 };
    let index = emit(g, "aten.arange.default", vec![Arg::Int(steps)], vec![("dtype", Arg::DType(DType::Float32))])?;
    let scaled = emit(g, "aten.mul.Scalar", vec![Arg::Tensor(index), Arg::Float(step)], vec![])?;
    let mut out = emit(g, "aten.add.Scalar", vec![Arg::Tensor(scaled), Arg::Float(start)], vec![])?;
    if let Arg::DType(dtype) = args[3] {
        if dtype != DType::Float32 {
            out = emit(g, "aten.to.dtype", vec![Arg::Tensor(out), Arg::DType(dtype)], vec![])?;
        }
    }
    one(Ok(out))
}

fn empty_permuted(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    let keywords = vec![("dtype", args[2].clone()), ("device", args[4].clone())];
    one(emit(g, "aten.empty.memory_format", vec![args[0].clone()], keywords))
}

fn weight_norm(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    const OP: &str = "aten._weight_norm";
    let (v, gain) = (tensor(args, 0, OP)?, tensor(args, 1, OP)?);
    let n = rank(g, v);
    let Arg::Int(dim) = args[2] else { return Err(InferError::new(OP, "dim is not an int")) };
    // `dim = -1` normalises over the whole tensor, as PyTorch's `norm_except_dim` does.
    let dims: Vec<i64> = if dim == -1 { (0..n).collect() } else { (0..n).filter(|&d| d != dim).collect() };
    let norm = emit(
        g,
        "aten.linalg_vector_norm.default",
        vec![Arg::Tensor(v), Arg::Int(2), Arg::Ints(dims), Arg::Bool(true)],
        vec![],
    )?;
    let scale = emit(g, "aten.div.Tensor", vec![Arg::Tensor(gain), Arg::Tensor(norm)], vec![])?;
    one(emit(g, "aten.mul.Tensor", vec![Arg::Tensor(v), Arg::Tensor(scale)], vec![]))
}

fn meshgrid(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    const OP: &str = "aten.meshgrid";
    let Arg::Tensors(inputs) = &args[0] else { return Err(InferError::new(OP, "expected a tensor list")) };
    let xy = match &args[1] {
        Arg::Str(s) if s == "xy" => true,
        Arg::Str(s) if s == "ij" => false,
        other => return Err(InferError::new(OP, format!("indexing must be \"ij\" or \"xy\", got {other:?}"))),
    };
    let mut order = inputs.clone();
    if xy && order.len() >= 2 {
        order.swap(0, 1);
    }
    let mut sizes = Vec::new();
    for &t in &order {
        match g.value(t).ty.shape.as_slice() {
            [n] => sizes.push(n.clone()),
            [] => sizes.push(Dim::constant(1)),
            _ => return Err(InferError::new(OP, "every input must be 0-D or 1-D")),
        }
    }
    let mut outs = Vec::new();
    for (i, &t) in order.iter().enumerate() {
        let along: Vec<Dim> =
            (0..sizes.len()).map(|d| if d == i { sizes[i].clone() } else { Dim::constant(1) }).collect();
        let viewed = emit(g, "aten.view.default", vec![Arg::Tensor(t), dims_arg(along)], vec![])?;
        outs.push(emit(g, "aten.expand.default", vec![Arg::Tensor(viewed), dims_arg(sizes.clone())], vec![])?);
    }
    if xy && outs.len() >= 2 {
        outs.swap(0, 1);
    }
    Ok(outs)
}

fn tensor_split(g: &mut Graph, args: &[Arg]) -> Result<Vec<ValueId>, InferError> {
    const OP: &str = "aten.tensor_split";
    let x = tensor(args, 0, OP)?;
    let indices: Vec<Arg> = match &args[1] {
        Arg::Ints(v) => v.iter().map(|&i| Arg::Int(i)).collect(),
        Arg::SymInts(v) => v.iter().cloned().map(Arg::sym_int).collect(),
        other => return Err(InferError::new(OP, format!("expected indices, got {other:?}"))),
    };
    let dim = args[2].clone();
    let mut outs = Vec::new();
    let mut start = Arg::Int(0);
    for end in indices.into_iter().map(Some).chain([None]) {
        let stop = end.clone().unwrap_or(Arg::None);
        let slice = vec![Arg::Tensor(x), dim.clone(), start.clone(), stop, Arg::Int(1)];
        outs.push(g.add_op("aten.slice.Tensor", slice)?);
        if let Some(e) = end {
            start = e;
        }
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decomposition_schema_parses_to_its_name() {
        for d in DECOMPOSITIONS {
            let s = parsed_schema(d);
            assert!(matches!(import_as(&s.name), Some(ImportAs::Decomposed(..))), "{}", d.schema);
            assert!(registry::lookup(&s.name).is_err(), "{} is registered: no decomposition needed", s.name);
        }
    }

    #[test]
    fn in_place_names_map_to_their_functional_op() {
        let functional = |op| match import_as(op) {
            Some(ImportAs::InPlace(f)) => Some(f.schema().name.clone()),
            _ => None,
        };
        assert_eq!(functional("aten.hardswish_.default").as_deref(), Some("aten.hardswish.default"));
        // `dropout_` names its tensor `self`, `dropout` names it `input`.
        assert_eq!(functional("aten.dropout_.default").as_deref(), Some("aten.dropout.default"));
        // The functional form decomposed.
        assert_eq!(functional("aten.zero_.default").as_deref(), Some("aten.zero.default"));
        assert!(matches!(import_as("aten.relu.default"), Some(ImportAs::Registered(_))));
        assert!(import_as("aten.no_such_op_.default").is_none());
        assert!(import_as("aten.__iand__.Tensor").is_none());
    }
}

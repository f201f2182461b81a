//! The op registry: every SRG op, keyed by its ATen overload name.
//!
//! An entry is one line in a table (`elementwise.rs`, `tensor.rs`, `nn.rs`, `misc.rs`): PyTorch's
//! schema string, a shape/dtype inference function, a cost function, the op's class and the
//! [`OpFacts`] passes rely on (element-wise, layout, cast, identity at inference, how to fold).
//! Adding an op touches one entry. The executor's tch binding lives in `runtime` (only it links
//! libtorch) and is keyed by the same name.

mod einsum;
mod elementwise;
pub mod facts;
mod misc;
mod nn;
pub mod scalar;
pub mod schema;
mod shape;
mod tensor;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::dim::Dim;
use crate::graph::{Arg, ValueId};
use crate::types::{DType, TensorType};
pub use facts::{Comparison, Contraction, EvalIdentity, Fold, Layout, OpFacts, Reorder};
pub use scalar::{BinaryFn, Scalar, ScalarExpr, UnaryFn};
pub use schema::{ArgError, ArgKind, ArgSpec, Returns, Schema};

/// How an op treats data, which passes and the cost model rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// Computes new data.
    Compute,
    /// Reinterprets its input's memory (`view`, `permute`, `expand`); moves no bytes.
    View,
    /// The identity at inference (`dropout` in eval, `alias`, `detach`, `clone`).
    Identity,
    /// A check with no outputs (`_assert_tensor_metadata`).
    Assert,
    /// Creates a tensor from attributes only (`arange`, `full`).
    Creation,
}

/// Symbolic cost of one node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OpCost {
    pub flops: Dim,
    pub bytes_read: Dim,
    pub bytes_written: Dim,
}

/// Shape/dtype inference failed: the arguments do not make sense for the op.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InferError {
    /// No registry entry under this name.
    #[error("unknown op `{0}`")]
    UnknownOp(String),
    /// The arguments do not fit the op's schema.
    #[error(transparent)]
    Args(#[from] ArgError),
    /// An argument references a value that does not exist.
    #[error("{op}: argument #{index} references undefined value {value}")]
    UndefinedValue { op: String, index: usize, value: ValueId },
    /// The arguments fit the schema but not each other (incompatible shapes, bad dims).
    #[error("{op}: {reason}")]
    Invalid { op: String, reason: String },
}

impl InferError {
    pub fn new(op: &str, reason: impl Into<String>) -> InferError {
        InferError::Invalid { op: op.to_string(), reason: reason.into() }
    }
}

/// Shape and dtype inference for one op.
pub type InferFn = fn(&Call) -> Result<Vec<TensorType>, InferError>;
/// Cost of one op given its call and inferred outputs.
pub type CostFn = fn(&Call, &[TensorType]) -> OpCost;

/// A registry entry.
pub struct OpDef {
    /// The schema exactly as declared: PyTorch's `str(torch.ops.<ns>.<op>.<overload>._schema)`
    /// (`aten`, or a library's namespace such as `transformers`).
    pub schema_text: &'static str,
    pub schema: Schema,
    pub class: OpClass,
    pub facts: OpFacts,
    pub infer: InferFn,
    pub cost: CostFn,
}

impl OpDef {
    /// The output shares the first tensor argument's storage (views and identities).
    pub fn aliases_input(&self) -> bool {
        matches!(self.class, OpClass::View | OpClass::Identity)
    }

    /// How many arguments are single tensors (`Tensor` or `Tensor?`).
    pub fn tensor_arity(&self) -> usize {
        self.schema.args.iter().filter(|a| a.kind == ArgKind::Tensor).count()
    }
}

/// A declaration in a table, before its schema is parsed.
pub(crate) struct OpDecl {
    pub schema: &'static str,
    pub class: OpClass,
    pub facts: OpFacts,
    pub infer: InferFn,
    pub cost: CostFn,
}

/// Shorthand for table rows; facts are added with the builder methods below.
pub(crate) const fn op(schema: &'static str, class: OpClass, infer: InferFn, cost: CostFn) -> OpDecl {
    OpDecl { schema, class, facts: OpFacts::NONE, infer, cost }
}

impl OpDecl {
    pub(crate) const fn elementwise(mut self) -> OpDecl {
        self.facts.elementwise = true;
        self
    }

    pub(crate) const fn layout(mut self, layout: Layout) -> OpDecl {
        self.facts.layout = Some(layout);
        self
    }

    pub(crate) const fn cast(mut self) -> OpDecl {
        self.facts.cast = true;
        self
    }

    pub(crate) const fn eval_identity(mut self, when: EvalIdentity) -> OpDecl {
        self.facts.eval_identity = Some(when);
        self
    }

    pub(crate) const fn fold(mut self, fold: Fold) -> OpDecl {
        self.facts.fold = Some(fold);
        self
    }

    pub(crate) const fn lookup(mut self, table: usize, index: usize) -> OpDecl {
        self.facts.lookup = Some((table, index));
        self
    }

    pub(crate) const fn contraction(mut self, kind: Contraction) -> OpDecl {
        self.facts.contraction = Some(kind);
        self
    }

    pub(crate) const fn per_sample(mut self) -> OpDecl {
        self.facts.per_sample = true;
        self
    }

    pub(crate) const fn scalar(mut self, scalar: Scalar) -> OpDecl {
        self.facts.scalar = Some(scalar);
        self
    }
}

/// True when `op` is registered and its output shares its first tensor argument's storage.
pub fn aliases_input(op: &str) -> bool {
    registry().get(op).is_some_and(OpDef::aliases_input)
}

/// The facts of `op` (none for an unknown op).
pub fn facts(op: &str) -> OpFacts {
    registry().get(op).map_or(OpFacts::NONE, |d| d.facts)
}

/// All registered ops.
pub struct Registry {
    ops: BTreeMap<String, OpDef>,
}

impl Registry {
    fn build() -> Registry {
        let mut ops = BTreeMap::new();
        // Every op of the element-wise table is element-wise; that table states it once.
        for (table, elementwise_table) in
            [(elementwise::OPS, true), (tensor::OPS, false), (nn::OPS, false), (misc::OPS, false)]
        {
            for decl in table {
                // Schemas are constants checked by `every_schema_parses`; a bad one is skipped
                // here rather than taking the process down.
                let Ok(schema) = Schema::parse(decl.schema) else { continue };
                let name = schema.name.clone();
                let mut facts = decl.facts;
                facts.elementwise |= elementwise_table;
                let def = OpDef {
                    schema_text: decl.schema,
                    schema,
                    class: decl.class,
                    facts,
                    infer: decl.infer,
                    cost: decl.cost,
                };
                ops.insert(name, def);
            }
        }
        Registry { ops }
    }

    /// Look up an op by ATen overload name.
    pub fn get(&self, name: &str) -> Option<&OpDef> {
        self.ops.get(name)
    }

    /// Every op name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ops.keys().map(String::as_str)
    }

    /// Every op with its definition, sorted by name.
    pub fn ops(&self) -> impl Iterator<Item = (&str, &OpDef)> {
        self.ops.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::build)
}

/// Look up an op.
pub fn lookup(name: &str) -> Result<&'static OpDef, InferError> {
    registry().get(name).ok_or_else(|| InferError::UnknownOp(name.to_string()))
}

/// Infer the output types of `op` applied to `args`; `types` resolves tensor arguments.
pub fn infer<'a>(
    op: &str,
    args: &'a [Arg],
    types: &'a dyn Fn(ValueId) -> Option<&'a TensorType>,
) -> Result<Vec<TensorType>, InferError> {
    let def = lookup(op)?;
    def.schema.check(args)?;
    let call = Call::new(def, args, types)?;
    let out = (def.infer)(&call)?;
    if let Returns::Fixed(n) = def.schema.returns {
        if out.len() != n {
            return Err(InferError::new(op, format!("inference gave {} outputs, schema says {n}", out.len())));
        }
    }
    // Every dim a graph holds comes from a file (parsed within the limits) or from here, so
    // holding inferred dims to the same limits stops a chain of ops (a thousand `slice`s with
    // step 2) from nesting floor divisions deeper than any walk over a dim can recurse.
    if let Some(d) = out.iter().flat_map(|t| &t.shape).find(|d| !d.fits_limits()) {
        return Err(InferError::new(
            op,
            format!(
                "output dim `{d}` nests floor divisions deeper than {} or has more than {} nodes",
                crate::dim::MAX_DIM_ATOM_DEPTH,
                crate::dim::MAX_DIM_NODES
            ),
        ));
    }
    Ok(out)
}

/// The symbolic cost of `op` applied to `args` with the given output types.
pub fn cost<'a>(
    op: &str,
    args: &'a [Arg],
    types: &'a dyn Fn(ValueId) -> Option<&'a TensorType>,
    outputs: &[TensorType],
) -> Result<OpCost, InferError> {
    let def = lookup(op)?;
    let call = Call::new(def, args, types)?;
    Ok((def.cost)(&call, outputs))
}

/// An op applied to arguments, with typed accessors used by inference and cost functions.
pub struct Call<'a> {
    pub op: &'a str,
    pub args: &'a [Arg],
    tensor_types: Vec<Option<Vec<&'a TensorType>>>,
}

/// A Scalar argument's kind, for type promotion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalarArg {
    Int(i64),
    Float(f64),
    Bool(bool),
    Sym,
}

impl<'a> Call<'a> {
    fn new(
        def: &'a OpDef,
        args: &'a [Arg],
        types: &'a dyn Fn(ValueId) -> Option<&'a TensorType>,
    ) -> Result<Call<'a>, InferError> {
        let op = def.schema.name.as_str();
        let mut tensor_types = Vec::with_capacity(args.len());
        for (index, a) in args.iter().enumerate() {
            let resolve =
                |v: ValueId| types(v).ok_or_else(|| InferError::UndefinedValue { op: op.to_string(), index, value: v });
            tensor_types.push(match a {
                Arg::Tensor(v) => Some(vec![resolve(*v)?]),
                Arg::Tensors(vs) => Some(vs.iter().map(|v| resolve(*v)).collect::<Result<_, _>>()?),
                Arg::OptTensors(vs) => Some(vs.iter().flatten().map(|v| resolve(*v)).collect::<Result<_, _>>()?),
                _ => None,
            });
        }
        Ok(Call { op, args, tensor_types })
    }

    /// An error naming this op.
    pub fn err(&self, reason: impl Into<String>) -> InferError {
        InferError::new(self.op, reason)
    }

    fn arg(&self, i: usize) -> Result<&'a Arg, InferError> {
        self.args.get(i).ok_or_else(|| self.err(format!("missing argument #{i}")))
    }

    /// The tensor argument at `i`.
    pub fn tensor(&self, i: usize) -> Result<&'a TensorType, InferError> {
        match self.tensor_types.get(i) {
            Some(Some(ts)) if matches!(self.args[i], Arg::Tensor(_)) => Ok(ts[0]),
            _ => Err(self.err(format!("argument #{i} is not a tensor"))),
        }
    }

    /// An optional tensor argument.
    pub fn opt_tensor(&self, i: usize) -> Result<Option<&'a TensorType>, InferError> {
        match self.arg(i)? {
            Arg::None => Ok(None),
            _ => self.tensor(i).map(Some),
        }
    }

    /// A tensor list (`Tensor[]`, or the present elements of `Tensor?[]`).
    pub fn tensors(&self, i: usize) -> Result<Vec<&'a TensorType>, InferError> {
        match self.tensor_types.get(i) {
            Some(Some(ts)) => Ok(ts.clone()),
            _ => Err(self.err(format!("argument #{i} is not a tensor list"))),
        }
    }

    /// `Tensor?[]` with its holes.
    pub fn opt_tensors(&self, i: usize) -> Result<Vec<Option<&'a TensorType>>, InferError> {
        let present = self.tensors(i)?;
        match self.arg(i)? {
            Arg::OptTensors(vs) => {
                let mut it = present.into_iter();
                Ok(vs.iter().map(|v| v.and_then(|_| it.next())).collect())
            }
            Arg::Tensors(_) => Ok(present.into_iter().map(Some).collect()),
            _ => Err(self.err(format!("argument #{i} is not a tensor list"))),
        }
    }

    /// A static int.
    pub fn int(&self, i: usize) -> Result<i64, InferError> {
        match self.arg(i)? {
            Arg::Int(v) => Ok(*v),
            Arg::Bool(b) => Ok(*b as i64),
            other => Err(self.err(format!("argument #{i} should be a static int, got {other:?}"))),
        }
    }

    /// An int that may be symbolic.
    pub fn sym_int(&self, i: usize) -> Result<Dim, InferError> {
        match self.arg(i)? {
            Arg::Int(v) => Ok(Dim::constant(*v)),
            Arg::SymInt(d) => Ok(d.clone()),
            other => Err(self.err(format!("argument #{i} should be an int, got {other:?}"))),
        }
    }

    /// An optional int that may be symbolic.
    pub fn opt_sym_int(&self, i: usize) -> Result<Option<Dim>, InferError> {
        match self.arg(i)? {
            Arg::None => Ok(None),
            _ => self.sym_int(i).map(Some),
        }
    }

    /// An optional static int.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, InferError> {
        match self.arg(i)? {
            Arg::None => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// A static int list.
    pub fn ints(&self, i: usize) -> Result<Vec<i64>, InferError> {
        match self.arg(i)? {
            Arg::Ints(v) => Ok(v.clone()),
            Arg::Int(v) => Ok(vec![*v]),
            other => Err(self.err(format!("argument #{i} should be a static int list, got {other:?}"))),
        }
    }

    /// An optional static int list.
    pub fn opt_ints(&self, i: usize) -> Result<Option<Vec<i64>>, InferError> {
        match self.arg(i)? {
            Arg::None => Ok(None),
            _ => self.ints(i).map(Some),
        }
    }

    /// An int list whose elements may be symbolic.
    pub fn sym_ints(&self, i: usize) -> Result<Vec<Dim>, InferError> {
        match self.arg(i)? {
            Arg::Ints(v) => Ok(v.iter().map(|&x| Dim::constant(x)).collect()),
            Arg::SymInts(v) => Ok(v.clone()),
            Arg::Int(v) => Ok(vec![Dim::constant(*v)]),
            Arg::SymInt(d) => Ok(vec![d.clone()]),
            other => Err(self.err(format!("argument #{i} should be an int list, got {other:?}"))),
        }
    }

    /// A float (ints accepted).
    pub fn float(&self, i: usize) -> Result<f64, InferError> {
        match self.arg(i)? {
            Arg::Float(v) => Ok(*v),
            Arg::Int(v) => Ok(*v as f64),
            other => Err(self.err(format!("argument #{i} should be a float, got {other:?}"))),
        }
    }

    /// A bool.
    pub fn bool(&self, i: usize) -> Result<bool, InferError> {
        match self.arg(i)? {
            Arg::Bool(v) => Ok(*v),
            other => Err(self.err(format!("argument #{i} should be a bool, got {other:?}"))),
        }
    }

    /// An optional bool.
    pub fn opt_bool(&self, i: usize) -> Result<Option<bool>, InferError> {
        match self.arg(i)? {
            Arg::None => Ok(None),
            _ => self.bool(i).map(Some),
        }
    }

    /// A string.
    pub fn str(&self, i: usize) -> Result<&'a str, InferError> {
        match self.arg(i)? {
            Arg::Str(s) => Ok(s),
            other => Err(self.err(format!("argument #{i} should be a string, got {other:?}"))),
        }
    }

    /// An optional dtype.
    pub fn opt_dtype(&self, i: usize) -> Result<Option<DType>, InferError> {
        match self.arg(i)? {
            Arg::None => Ok(None),
            Arg::DType(d) => Ok(Some(*d)),
            other => Err(self.err(format!("argument #{i} should be a dtype, got {other:?}"))),
        }
    }

    /// A Scalar argument.
    pub fn scalar(&self, i: usize) -> Result<ScalarArg, InferError> {
        match self.arg(i)? {
            Arg::Int(v) => Ok(ScalarArg::Int(*v)),
            Arg::Float(v) => Ok(ScalarArg::Float(*v)),
            Arg::Bool(v) => Ok(ScalarArg::Bool(*v)),
            Arg::SymInt(_) => Ok(ScalarArg::Sym),
            other => Err(self.err(format!("argument #{i} should be a scalar, got {other:?}"))),
        }
    }

    /// Every tensor type among the arguments, in order.
    pub fn all_tensor_inputs(&self) -> Vec<&'a TensorType> {
        self.tensor_types.iter().flatten().flatten().copied().collect()
    }

    /// Normalise a dim that indexes one of a tensor's `rank` dims: a 0-dim tensor has none.
    pub fn size_dim(&self, dim: i64, rank: usize) -> Result<usize, InferError> {
        if rank == 0 {
            return Err(self.err(format!("dim {dim} given for a 0-dim tensor")));
        }
        self.dim_index(dim, rank)
    }

    /// Normalise a possibly negative dim index against `rank` (a 0-dim tensor accepts 0 and -1).
    pub fn dim_index(&self, dim: i64, rank: usize) -> Result<usize, InferError> {
        let r = rank.max(1) as i64;
        let d = if dim < 0 { dim + r } else { dim };
        if d < 0 || d >= r {
            return Err(self.err(format!("dim {dim} out of range for rank {rank}")));
        }
        Ok(d as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for table in [elementwise::OPS, tensor::OPS, nn::OPS, misc::OPS] {
            for decl in table {
                let schema = Schema::parse(decl.schema).unwrap_or_else(|e| panic!("{e}"));
                assert!(seen.insert(schema.name.clone()), "{} registered twice", schema.name);
            }
        }
        assert_eq!(registry().len(), seen.len());
    }

    /// The facts agree with the classes: views have a layout, identities say when they are the
    /// identity, casts compute; ops that keep their input's data take one data tensor (two for
    /// `type_as`/`view_as`/`expand_as`, which take the second's shape or dtype).
    #[test]
    fn facts_agree_with_classes() {
        for (name, def) in registry().ops() {
            let f = def.facts;
            assert_eq!(def.class == OpClass::View, f.layout.is_some(), "{name}: views and layouts");
            assert_eq!(def.class == OpClass::Identity, f.eval_identity.is_some(), "{name}: identities");
            if f.cast {
                assert_eq!(def.class, OpClass::Compute, "{name}: a cast computes");
            }
            if f.same_data() {
                assert!(matches!(def.tensor_arity(), 1 | 2), "{name}: same-data ops take one data tensor");
            }
            if let Some((table, index)) = f.lookup {
                let kinds: Vec<&ArgKind> = def.schema.args.iter().map(|a| &a.kind).collect();
                assert_eq!((kinds.get(table), kinds.get(index)), (Some(&&ArgKind::Tensor), Some(&&ArgKind::Tensor)));
            }
        }
        let f = |op: &str| registry().get(op).map(|d| d.facts).unwrap_or_else(|| panic!("{op} is registered"));
        assert!(f("aten.add.Tensor").elementwise && f("aten.gelu.default").elementwise);
        assert!(!f("aten.mm.default").elementwise && f("aten.mm.default").contraction == Some(Contraction::MatMul));
        assert!(f("aten.view.default").same_data() && f("aten._to_copy.default").same_data());
        assert!(!f("aten.permute.default").same_data(), "a permute reorders the data");
        assert_eq!(f("aten.embedding.default").lookup, Some((0, 1)));
        assert_eq!(f("aten.add.Tensor").fold, Some(Fold::Add));
        assert!(aliases_input("aten.view.default") && !aliases_input("aten.add.Tensor"));
    }

    /// Each `x[::2]` of a symbolic dim nests one more floor division (`((s0 + 1)//(2) + 1)//(2)`):
    /// inference refuses the first output past the depth limit instead of letting a long chain
    /// of ops build a dim that deep walks cannot print or drop without overflowing the stack.
    #[test]
    fn inferred_dims_stay_within_the_dim_limits() {
        let mut g = crate::Graph::new("g");
        let mut x = g.add_input("x", TensorType::with_dims(DType::Float32, vec![crate::Dim::symbol("s0")]));
        let mut sliced = 0;
        let err = loop {
            let args = vec![Arg::Tensor(x), Arg::Int(0), Arg::None, Arg::None, Arg::Int(2)];
            match g.add_op("aten.slice.Tensor", args) {
                Ok(v) => {
                    x = v;
                    sliced += 1;
                }
                Err(e) => break e,
            }
            assert!(sliced <= 1000, "never refused");
        };
        assert_eq!(sliced, crate::dim::MAX_DIM_ATOM_DEPTH);
        assert!(
            matches!(&err, InferError::Invalid { op, reason } if op == "aten.slice.Tensor" && reason.contains("nests"))
        );
    }

    #[test]
    fn unknown_op_is_a_typed_error() {
        let types = |_: ValueId| None;
        assert_eq!(infer("aten.nope.default", &[], &types), Err(InferError::UnknownOp("aten.nope.default".into())));
    }
}

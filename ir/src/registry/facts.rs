//! What passes may assume about an op beyond its shape rule and cost: stated once, on the op's
//! table row (`op(...).cast()`, `.layout(...)`, `.fold(...)`), so no pass keeps its own list of
//! op names.

/// Facts about one op. The default states nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpFacts {
    /// Each output element depends only on the elements at the same (broadcast) index of the
    /// tensor inputs: arithmetic, activations, comparisons, casts. Every row of the element-wise
    /// table has it.
    pub elementwise: bool,
    /// How an op that moves data without computing relates its output to its first tensor
    /// argument.
    pub layout: Option<Layout>,
    /// Changes only the dtype or device: the identity when the output's type is the input's.
    pub cast: bool,
    /// The identity at inference.
    pub eval_identity: Option<EvalIdentity>,
    /// How constant folding computes the op from literal inputs.
    pub fold: Option<Fold>,
    /// A row lookup into a table: (the table's argument index, the indices' argument index).
    pub lookup: Option<(usize, usize)>,
    /// A contraction: a product that sums over a dimension, where a model's FLOPs are.
    pub contraction: Option<Contraction>,
    /// Each slice of the output along dim 0 depends only on the same slice of the tensor
    /// arguments, unless an argument names dim 0 (`dim`, `dims`, `dim0`, `start_dim`, …) or
    /// `normalized_shape` covers every dim: norms, softmax, reductions and scans over a named
    /// dim, joins, pooling. With the element-wise, layout, lookup and contraction facts, what
    /// `mark-batching` needs to run an op once on the rows of several calls stacked along dim 0.
    pub per_sample: bool,
    /// The output element as a scalar expression of the arguments' elements
    /// ([`super::scalar::lower`]): what lets a fusion pass put the op into a compiled loop.
    pub scalar: Option<super::scalar::Scalar>,
}

/// How a layout op's output relates to its first tensor argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The same elements in the same row-major order, another shape (`view`, `reshape`,
    /// `squeeze`, `flatten`, `view_as`).
    Reshape,
    /// The elements repeated along size-1 dims without copying (`expand`, `expand_as`).
    Broadcast,
    /// The same elements with the dims reordered.
    Reorder(Reorder),
    /// A sub-range of the elements (`slice`, `narrow`, `select`, `split`).
    Select,
}

/// Which arguments say how a reorder permutes the dims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reorder {
    /// The `int[]` argument at this index is the permutation (`permute`).
    Permutation { dims: usize },
    /// The two `int` arguments at these indices are the dims swapped (`transpose.int`).
    Swap { a: usize, b: usize },
    /// Swaps the two dims of a matrix; a vector is unchanged (`t`).
    Matrix,
}

/// When an op is the identity at inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalIdentity {
    /// Always (`alias`, `detach`, `clone`, `contiguous`).
    Always,
    /// Dropout: when the `train` flag (argument index) is false, or the probability is 0.
    Dropout { p: usize, train: usize },
}

/// How constant folding computes an op on literal inputs (broadcast element-wise unless said).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// `a + alpha * b` (alpha the third argument, default 1).
    Add,
    /// `a - alpha * b`.
    Sub,
    Mul,
    /// True division; folded for floating results only.
    Div,
    FloorDiv,
    Neg,
    Compare(Comparison),
    LogicalNot,
    /// `where(condition, a, b)`.
    Where,
    /// The first argument's elements unchanged, in the output's shape and dtype.
    SameElements,
    /// The first argument broadcast to the output's shape.
    Expand,
    /// Every element the scalar at this argument index.
    Fill {
        value: usize,
    },
    /// `start + step * i`: start and step argument indices (`None`: 0 and 1).
    Arange {
        start: Option<usize>,
        step: Option<usize>,
    },
    /// Concatenation of 1-D literals.
    Cat,
}

/// A comparison: how constant folding ([`Fold::Compare`]) and a scalar form
/// ([`super::scalar::BinaryFn::Compare`]) compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Kinds of contraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contraction {
    /// Matrix products and dense layers (`mm`, `matmul`, `linear`, `addmm`, `baddbmm`).
    MatMul,
    /// Convolutions of any rank.
    Convolution,
    /// Fused attention (`scaled_dot_product_attention`).
    Attention,
}

impl OpFacts {
    /// No facts.
    pub const NONE: OpFacts = OpFacts {
        elementwise: false,
        layout: None,
        cast: false,
        eval_identity: None,
        fold: None,
        lookup: None,
        contraction: None,
        per_sample: false,
        scalar: None,
    };

    /// The output holds the first tensor argument's elements in the same order, at most
    /// reshaped, broadcast or converted (reshapes, expands, casts, identities at inference):
    /// the same data, for patterns that look through layout.
    pub fn same_data(&self) -> bool {
        matches!(self.layout, Some(Layout::Reshape | Layout::Broadcast)) || self.cast || self.eval_identity.is_some()
    }
}

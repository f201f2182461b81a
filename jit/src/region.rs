//! A region's program: a flat list of instructions, each naming earlier ones by index.

use genie_ir::registry::{BinaryFn, ScalarExpr, UnaryFn};
use genie_ir::DType;

use crate::JitError;

/// A value in a region's program: an input element, a literal, or a function of earlier values.
/// Operands (`usize`) index earlier instructions of the same region.
#[derive(Clone, Copy, Debug)]
pub enum Instr {
    /// The element of input `i` at this index, converted to f32.
    Input(usize),
    /// A literal, used as f32.
    Const(f64),
    Unary(UnaryFn, usize),
    Binary(BinaryFn, usize, usize),
    /// `if cond ≠ 0 { a } else { b }` (NaN counts as ≠ 0).
    Select(usize, usize, usize),
    /// The value rounded to a dtype's precision (see [`ScalarExpr::Round`]).
    Round(DType, usize),
}

impl Instr {
    /// Structural equality; literals compare by their bits, so that `NaN` matches itself and
    /// `-0.0` stays apart from `0.0` (hash-consing must not merge values that differ).
    pub(crate) fn same(&self, other: &Instr) -> bool {
        self.key() == other.key()
    }

    pub(crate) fn key(&self) -> InstrKey {
        match *self {
            Instr::Input(i) => InstrKey::Input(i),
            Instr::Const(c) => InstrKey::Const(c.to_bits()),
            Instr::Unary(f, a) => InstrKey::Unary(f, a),
            Instr::Binary(f, a, b) => InstrKey::Binary(f, a, b),
            Instr::Select(c, a, b) => InstrKey::Select(c, a, b),
            Instr::Round(d, a) => InstrKey::Round(d, a),
        }
    }

    /// The instructions this one reads.
    pub(crate) fn operands(&self) -> Vec<usize> {
        match *self {
            Instr::Input(_) | Instr::Const(_) => Vec::new(),
            Instr::Unary(_, a) | Instr::Round(_, a) => vec![a],
            Instr::Binary(_, a, b) => vec![a, b],
            Instr::Select(c, a, b) => vec![c, a, b],
        }
    }
}

/// [`Instr`] with hashable literals: the compile cache's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum InstrKey {
    Input(usize),
    Const(u64),
    Unary(UnaryFn, usize),
    Binary(BinaryFn, usize, usize),
    Select(usize, usize, usize),
    Round(DType, usize),
}

/// The structure of a region, as the compile cache compares it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RegionKey {
    inputs: Vec<DType>,
    instrs: Vec<InstrKey>,
    outputs: Vec<(usize, DType)>,
}

/// Storage types a region may read.
pub(crate) fn input_dtype_supported(d: DType) -> bool {
    matches!(
        d,
        DType::Float32
            | DType::Float16
            | DType::Bfloat16
            | DType::Bool
            | DType::Int64
            | DType::Int32
            | DType::Int16
            | DType::Uint8
            | DType::Int8
    )
}

/// Storage types a region may write.
pub(crate) fn output_dtype_supported(d: DType) -> bool {
    matches!(d, DType::Float32 | DType::Float16 | DType::Bfloat16 | DType::Bool)
}

/// Dtypes a value can be rounded to in f32 arithmetic. Float64 is refused: computing in f32 and
/// calling the result f64 would silently lose precision the graph asked for.
pub(crate) fn round_dtype_supported(d: DType) -> bool {
    input_dtype_supported(d)
}

/// A fused element-wise region: the dtypes of its inputs, a program over their elements and the
/// instructions stored as outputs (with their storage dtypes).
#[derive(Clone, Debug)]
pub struct Region {
    pub inputs: Vec<DType>,
    pub instrs: Vec<Instr>,
    pub outputs: Vec<(usize, DType)>,
}

impl Region {
    pub fn new(inputs: Vec<DType>) -> Region {
        Region { inputs, instrs: Vec::new(), outputs: Vec::new() }
    }

    /// Appends `instr` unless an identical one exists (hash-consing, so a value used twice is
    /// computed once); returns its index. Regions are small (tens to hundreds of instructions),
    /// so a linear scan keeps `Region` a plain struct without a side table to go stale.
    pub fn push(&mut self, instr: Instr) -> usize {
        if let Some(i) = self.instrs.iter().position(|x| x.same(&instr)) {
            return i;
        }
        self.instrs.push(instr);
        self.instrs.len() - 1
    }

    /// The instruction index of input `i` (hash-consed).
    pub fn input(&mut self, i: usize) -> usize {
        self.push(Instr::Input(i))
    }

    /// Appends a scalar expression whose `Arg(i)` leaves are the existing instructions `args[i]`;
    /// returns the index of its result.
    pub fn push_expr(&mut self, e: &ScalarExpr, args: &[Option<usize>]) -> Result<usize, JitError> {
        Ok(match e {
            ScalarExpr::Arg(i) => {
                let instr = args.get(*i).copied().flatten().ok_or(JitError::UnboundArg { arg: *i })?;
                if instr >= self.instrs.len() {
                    return Err(JitError::BadArg { arg: *i, instr, len: self.instrs.len() });
                }
                instr
            }
            ScalarExpr::Const(c) => self.push(Instr::Const(*c)),
            ScalarExpr::Unary(f, a) => {
                let a = self.push_expr(a, args)?;
                self.push(Instr::Unary(*f, a))
            }
            ScalarExpr::Binary(f, a, b) => {
                let a = self.push_expr(a, args)?;
                let b = self.push_expr(b, args)?;
                self.push(Instr::Binary(*f, a, b))
            }
            ScalarExpr::Select(c, a, b) => {
                let c = self.push_expr(c, args)?;
                let a = self.push_expr(a, args)?;
                let b = self.push_expr(b, args)?;
                self.push(Instr::Select(c, a, b))
            }
            ScalarExpr::Round(d, a) => {
                let a = self.push_expr(a, args)?;
                self.push(Instr::Round(*d, a))
            }
        })
    }

    /// Stores instruction `instr` as an output of storage dtype `dtype`.
    pub fn output(&mut self, instr: usize, dtype: DType) {
        self.outputs.push((instr, dtype));
    }

    /// Refuses what the code generator cannot compile safely: operands that do not name an
    /// earlier instruction, inputs out of range, dtypes it cannot load, round to or store.
    pub fn validate(&self) -> Result<(), JitError> {
        if self.inputs.len() > crate::MAX_INPUTS {
            return Err(JitError::TooManyInputs { inputs: self.inputs.len(), max: crate::MAX_INPUTS });
        }
        for (input, &dtype) in self.inputs.iter().enumerate() {
            if !input_dtype_supported(dtype) {
                return Err(JitError::UnsupportedInput { input, dtype });
            }
        }
        for (instr, x) in self.instrs.iter().enumerate() {
            for operand in x.operands() {
                if operand >= instr {
                    return Err(JitError::BadOperand { instr, operand });
                }
            }
            match *x {
                Instr::Input(input) if input >= self.inputs.len() => {
                    return Err(JitError::BadInput { instr, input, inputs: self.inputs.len() });
                }
                Instr::Round(dtype, _) if !round_dtype_supported(dtype) => {
                    return Err(JitError::UnsupportedRound { instr, dtype });
                }
                _ => {}
            }
        }
        if self.outputs.is_empty() {
            return Err(JitError::NoOutputs);
        }
        for (output, &(instr, dtype)) in self.outputs.iter().enumerate() {
            if instr >= self.instrs.len() {
                return Err(JitError::BadOutput { output, instr, len: self.instrs.len() });
            }
            if !output_dtype_supported(dtype) {
                return Err(JitError::UnsupportedOutput { output, dtype });
            }
        }
        Ok(())
    }

    /// Number of non-leaf instructions (neither inputs nor literals).
    pub fn ops(&self) -> usize {
        self.instrs.iter().filter(|x| !matches!(x, Instr::Input(_) | Instr::Const(_))).count()
    }

    pub(crate) fn key(&self) -> RegionKey {
        RegionKey {
            inputs: self.inputs.clone(),
            instrs: self.instrs.iter().map(Instr::key).collect(),
            outputs: self.outputs.clone(),
        }
    }

    /// Which instructions some output depends on (the rest need no code).
    pub(crate) fn live(&self) -> Vec<bool> {
        let mut live = vec![false; self.instrs.len()];
        for &(i, _) in &self.outputs {
            if let Some(l) = live.get_mut(i) {
                *l = true;
            }
        }
        for i in (0..self.instrs.len()).rev() {
            if live[i] {
                for o in self.instrs[i].operands() {
                    if let Some(l) = live.get_mut(o) {
                        *l = true;
                    }
                }
            }
        }
        live
    }
}

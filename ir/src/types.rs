//! Element types and tensor types (the "fact" every value carries).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dim::Dim;

/// A tensor element type. Names follow PyTorch (`float32`, `int64`, `bool`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    Bool,
    Uint8,
    Int8,
    Int16,
    Int32,
    Int64,
    Float16,
    Bfloat16,
    Float32,
    Float64,
    Complex64,
    Complex128,
    Float8E4m3fn,
    Float8E5m2,
}

impl DType {
    /// Every dtype, in a stable order.
    pub const ALL: [DType; 14] = [
        DType::Bool,
        DType::Uint8,
        DType::Int8,
        DType::Int16,
        DType::Int32,
        DType::Int64,
        DType::Float16,
        DType::Bfloat16,
        DType::Float32,
        DType::Float64,
        DType::Complex64,
        DType::Complex128,
        DType::Float8E4m3fn,
        DType::Float8E5m2,
    ];

    /// Bytes per element.
    pub fn size_bytes(self) -> u64 {
        match self {
            DType::Bool | DType::Uint8 | DType::Int8 | DType::Float8E4m3fn | DType::Float8E5m2 => 1,
            DType::Int16 | DType::Float16 | DType::Bfloat16 => 2,
            DType::Int32 | DType::Float32 => 4,
            DType::Int64 | DType::Float64 | DType::Complex64 => 8,
            DType::Complex128 => 16,
        }
    }

    /// PyTorch's name (`torch.float32` without the prefix).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::Uint8 => "uint8",
            DType::Int8 => "int8",
            DType::Int16 => "int16",
            DType::Int32 => "int32",
            DType::Int64 => "int64",
            DType::Float16 => "float16",
            DType::Bfloat16 => "bfloat16",
            DType::Float32 => "float32",
            DType::Float64 => "float64",
            DType::Complex64 => "complex64",
            DType::Complex128 => "complex128",
            DType::Float8E4m3fn => "float8_e4m3fn",
            DType::Float8E5m2 => "float8_e5m2",
        }
    }

    /// Short name for the text dump (`f32`, `i64`, ...).
    pub fn short_name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::Uint8 => "u8",
            DType::Int8 => "i8",
            DType::Int16 => "i16",
            DType::Int32 => "i32",
            DType::Int64 => "i64",
            DType::Float16 => "f16",
            DType::Bfloat16 => "bf16",
            DType::Float32 => "f32",
            DType::Float64 => "f64",
            DType::Complex64 => "c64",
            DType::Complex128 => "c128",
            DType::Float8E4m3fn => "f8e4m3",
            DType::Float8E5m2 => "f8e5m2",
        }
    }

    /// Parse a PyTorch name, with or without `torch.` (also accepts the short names).
    pub fn from_name(name: &str) -> Option<DType> {
        let name = name.strip_prefix("torch.").unwrap_or(name);
        let alias = match name {
            "float" => "float32",
            "double" => "float64",
            "half" => "float16",
            "long" => "int64",
            "int" => "int32",
            "short" => "int16",
            "byte" => "uint8",
            "char" => "int8",
            "cfloat" => "complex64",
            "cdouble" => "complex128",
            other => other,
        };
        DType::ALL.into_iter().find(|d| d.torch_name() == alias || d.short_name() == alias)
    }

    /// True for floating-point and complex types.
    pub fn is_floating(self) -> bool {
        matches!(
            self,
            DType::Float16
                | DType::Bfloat16
                | DType::Float32
                | DType::Float64
                | DType::Float8E4m3fn
                | DType::Float8E5m2
        )
    }

    /// True for complex types.
    pub fn is_complex(self) -> bool {
        matches!(self, DType::Complex64 | DType::Complex128)
    }

    /// True for signed and unsigned integers (not bool).
    pub fn is_integral(self) -> bool {
        matches!(self, DType::Uint8 | DType::Int8 | DType::Int16 | DType::Int32 | DType::Int64)
    }

    /// PyTorch's ScalarType enum index (as written in `.pt2` JSON and used by libtorch).
    pub fn scalar_type_index(self) -> i64 {
        match self {
            DType::Uint8 => 0,
            DType::Int8 => 1,
            DType::Int16 => 2,
            DType::Int32 => 3,
            DType::Int64 => 4,
            DType::Float16 => 5,
            DType::Float32 => 6,
            DType::Float64 => 7,
            DType::Complex64 => 9,
            DType::Complex128 => 10,
            DType::Bool => 11,
            DType::Bfloat16 => 15,
            DType::Float8E5m2 => 23,
            DType::Float8E4m3fn => 24,
        }
    }

    /// Type promotion category rank used by [`promote`]: bool < integral < floating < complex.
    fn category(self) -> u8 {
        if self == DType::Bool {
            0
        } else if self.is_integral() {
            1
        } else if self.is_floating() {
            2
        } else {
            3
        }
    }
}

/// PyTorch's type promotion for two tensors of the same "dimension class".
pub fn promote(a: DType, b: DType) -> DType {
    if a == b {
        return a;
    }
    let (ca, cb) = (a.category(), b.category());
    if ca != cb {
        return if ca > cb { a } else { b };
    }
    use DType::*;
    match (a, b) {
        (Float16, Bfloat16) | (Bfloat16, Float16) => Float32,
        (Uint8, Int8) | (Int8, Uint8) => Int16,
        _ => {
            if a.size_bytes() >= b.size_bytes() {
                a
            } else {
                b
            }
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.torch_name())
    }
}

/// The fact every value carries: element type and shape (static or symbolic dims).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

impl TensorType {
    /// A tensor type with static dims.
    pub fn new(dtype: DType, shape: &[i64]) -> TensorType {
        TensorType { dtype, shape: shape.iter().map(|&d| Dim::constant(d)).collect() }
    }

    /// A tensor type from dims.
    pub fn with_dims(dtype: DType, shape: Vec<Dim>) -> TensorType {
        TensorType { dtype, shape }
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Element count as a dim expression.
    pub fn numel(&self) -> Dim {
        self.shape.iter().fold(Dim::constant(1), |acc, d| acc.mul(d))
    }

    /// Size in bytes as a dim expression.
    pub fn bytes(&self) -> Dim {
        self.numel().scale(self.dtype.size_bytes() as i64)
    }

    /// Static shape, when every dim is static.
    pub fn static_shape(&self) -> Option<Vec<i64>> {
        self.shape.iter().map(Dim::as_const).collect()
    }

    /// The same shape with another dtype.
    pub fn with_dtype(&self, dtype: DType) -> TensorType {
        TensorType { dtype, shape: self.shape.clone() }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype.short_name())?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.torch_name()), Some(d));
            assert_eq!(DType::from_name(&format!("torch.{}", d.torch_name())), Some(d));
            assert_eq!(DType::from_name(d.short_name()), Some(d));
        }
        assert_eq!(DType::from_name("long"), Some(DType::Int64));
        assert_eq!(DType::from_name("nope"), None);
    }

    #[test]
    fn promotion_matches_torch_rules() {
        assert_eq!(promote(DType::Int64, DType::Float32), DType::Float32);
        assert_eq!(promote(DType::Float16, DType::Float32), DType::Float32);
        assert_eq!(promote(DType::Float16, DType::Bfloat16), DType::Float32);
        assert_eq!(promote(DType::Bool, DType::Int64), DType::Int64);
        assert_eq!(promote(DType::Uint8, DType::Int8), DType::Int16);
    }

    #[test]
    fn bytes_are_symbolic() {
        let t = TensorType::with_dims(DType::Float32, vec![Dim::symbol("s0"), Dim::constant(768)]);
        assert_eq!(t.bytes().to_string(), "3072*s0");
        assert_eq!(t.to_string(), "f32[s0, 768]");
    }
}

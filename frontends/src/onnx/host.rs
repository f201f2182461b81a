//! Small tensors known at import time (constants, shape vectors), used for constant folding.
//!
//! Integers are kept as [`Dim`]s, so a shape vector may hold symbolic sizes (`[s0, 8, 64]`) and
//! shape arithmetic over it stays exact. Floats are kept as `f64` and rounded to their dtype after
//! every operation, so a folded `float32` value is what `float32` arithmetic gives.

use genie_ir::{DType, Dim, TensorType};

/// The elements of a host tensor, in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum HostData {
    /// Every integer dtype.
    Int(Vec<Dim>),
    /// `float16`, `bfloat16`, `float32`, `float64`.
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

/// The element family of a dtype, for host arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Float,
    Bool,
    /// Complex and 8-bit floats: never held on the host.
    Other,
}

pub(crate) fn kind(d: DType) -> Kind {
    match d {
        DType::Bool => Kind::Bool,
        DType::Uint8 | DType::Int8 | DType::Int16 | DType::Int32 | DType::Int64 => Kind::Int,
        DType::Float16 | DType::Bfloat16 | DType::Float32 | DType::Float64 => Kind::Float,
        DType::Complex64 | DType::Complex128 | DType::Float8E4m3fn | DType::Float8E5m2 => Kind::Other,
    }
}

/// Wrap a constant integer to the range of an integer dtype (two's complement), as a cast does.
pub(crate) fn wrap_int(v: i64, d: DType) -> i64 {
    match d {
        DType::Uint8 => v as u8 as i64,
        DType::Int8 => v as i8 as i64,
        DType::Int16 => v as i16 as i64,
        DType::Int32 => v as i32 as i64,
        _ => v,
    }
}

/// Round a value to the precision of a float dtype.
pub(crate) fn round_float(v: f64, d: DType) -> f64 {
    match d {
        DType::Float32 => v as f32 as f64,
        DType::Float16 => half::f16::from_f64(v).to_f64(),
        DType::Bfloat16 => half::bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// A tensor whose value is known while importing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HostTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    /// A tensor from integer dims (`int64` unless the dtype says otherwise).
    pub fn ints(dtype: DType, shape: Vec<usize>, v: Vec<Dim>) -> HostTensor {
        let v = v
            .into_iter()
            .map(|d| match d.as_const() {
                Some(c) => Dim::constant(wrap_int(c, dtype)),
                None => d,
            })
            .collect();
        HostTensor { dtype, shape, data: HostData::Int(v) }
    }

    /// A 1-D `int64` tensor.
    pub fn i64_vec(v: Vec<Dim>) -> HostTensor {
        HostTensor { dtype: DType::Int64, shape: vec![v.len()], data: HostData::Int(v) }
    }

    /// A float tensor; values are rounded to the dtype.
    pub fn floats(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> HostTensor {
        HostTensor { dtype, shape, data: HostData::Float(v.into_iter().map(|x| round_float(x, dtype)).collect()) }
    }

    pub fn bools(shape: Vec<usize>, v: Vec<bool>) -> HostTensor {
        HostTensor { dtype: DType::Bool, shape, data: HostData::Bool(v) }
    }

    pub fn numel(&self) -> usize {
        match &self.data {
            HostData::Int(v) => v.len(),
            HostData::Float(v) => v.len(),
            HostData::Bool(v) => v.len(),
        }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The tensor type of this value.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype, &self.shape.iter().map(|&d| d as i64).collect::<Vec<_>>())
    }

    /// The same data under another shape (same element count).
    pub fn reshaped(&self, shape: Vec<usize>) -> HostTensor {
        HostTensor { dtype: self.dtype, shape, data: self.data.clone() }
    }

    /// Decode little-endian bytes of `dtype` (`None` for dtypes the host does not hold, or a
    /// byte count that does not match).
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Option<HostTensor> {
        if !fits_host(&shape) {
            return None;
        }
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        let size = dtype.size_bytes() as usize;
        if bytes.len() != n.checked_mul(size)? {
            return None;
        }
        let chunks = bytes.chunks_exact(size.max(1));
        let data = match kind(dtype) {
            Kind::Other => return None,
            Kind::Bool => HostData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            Kind::Int => HostData::Int(
                chunks
                    .map(|c| {
                        Dim::constant(match dtype {
                            DType::Uint8 => c[0] as i64,
                            DType::Int8 => c[0] as i8 as i64,
                            DType::Int16 => i16::from_le_bytes([c[0], c[1]]) as i64,
                            DType::Int32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
                            _ => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                        })
                    })
                    .collect(),
            ),
            Kind::Float => HostData::Float(
                chunks
                    .map(|c| match dtype {
                        DType::Float16 => half::f16::from_le_bytes([c[0], c[1]]).to_f64(),
                        DType::Bfloat16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f64(),
                        DType::Float32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                        _ => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                    })
                    .collect(),
            ),
        };
        Some(HostTensor { dtype, shape, data })
    }

    /// Little-endian bytes of the value; `None` when an integer is symbolic or the dtype has no
    /// host encoding (float8, complex).
    pub fn to_le_bytes(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.numel() * self.dtype.size_bytes() as usize);
        match &self.data {
            HostData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            HostData::Int(v) => {
                for d in v {
                    let x = d.as_const()?;
                    match self.dtype {
                        DType::Uint8 | DType::Int8 => out.push(x as u8),
                        DType::Int16 => out.extend((x as i16).to_le_bytes()),
                        DType::Int32 => out.extend((x as i32).to_le_bytes()),
                        DType::Int64 => out.extend(x.to_le_bytes()),
                        _ => return None,
                    }
                }
            }
            HostData::Float(v) => {
                for &x in v {
                    match self.dtype {
                        DType::Float16 => out.extend(half::f16::from_f64(x).to_le_bytes()),
                        DType::Bfloat16 => out.extend(half::bf16::from_f64(x).to_le_bytes()),
                        DType::Float32 => out.extend((x as f32).to_le_bytes()),
                        DType::Float64 => out.extend(x.to_le_bytes()),
                        // float8 and complex have no host encoding: 8 bytes of f64 would not be
                        // a value of them (the fuzzer's `f8e4m3` constant of 8 bytes).
                        _ => return None,
                    }
                }
            }
        }
        Some(out)
    }

    /// Integer elements as dims (`None` for floats and bools).
    pub fn dims(&self) -> Option<&[Dim]> {
        match &self.data {
            HostData::Int(v) => Some(v),
            _ => None,
        }
    }

    /// Integer elements as static values (`None` for floats, bools or symbolic elements).
    pub fn static_ints(&self) -> Option<Vec<i64>> {
        self.dims()?.iter().map(Dim::as_const).collect()
    }

    /// Elements as `f64` (`None` when an integer is symbolic).
    pub fn as_f64(&self) -> Option<Vec<f64>> {
        match &self.data {
            HostData::Float(v) => Some(v.clone()),
            HostData::Int(v) => v.iter().map(|d| d.as_const().map(|x| x as f64)).collect(),
            HostData::Bool(v) => Some(v.iter().map(|&b| b as u8 as f64).collect()),
        }
    }

    /// ONNX `Cast`: floats to integers truncate toward zero, anything to bool is `!= 0`.
    pub fn cast(&self, to: DType) -> Option<HostTensor> {
        let shape = self.shape.clone();
        Some(match (&self.data, kind(to)) {
            (_, Kind::Other) => return None,
            (HostData::Int(v), Kind::Int) => HostTensor::ints(to, shape, v.clone()),
            (HostData::Int(v), Kind::Float) => {
                HostTensor::floats(to, shape, v.iter().map(|d| d.as_const().map(|x| x as f64)).collect::<Option<_>>()?)
            }
            (HostData::Int(v), Kind::Bool) => {
                HostTensor::bools(shape, v.iter().map(|d| d.as_const().map(|x| x != 0)).collect::<Option<_>>()?)
            }
            (HostData::Float(v), Kind::Int) => HostTensor::ints(
                to,
                shape,
                v.iter()
                    .map(|&x| (x.is_finite() && x.abs() < 9.2e18).then(|| Dim::constant(x.trunc() as i64)))
                    .collect::<Option<_>>()?,
            ),
            (HostData::Float(v), Kind::Float) => HostTensor::floats(to, shape, v.clone()),
            (HostData::Float(v), Kind::Bool) => HostTensor::bools(shape, v.iter().map(|&x| x != 0.0).collect()),
            (HostData::Bool(v), Kind::Int) => {
                HostTensor::ints(to, shape, v.iter().map(|&b| Dim::constant(b as i64)).collect())
            }
            (HostData::Bool(v), Kind::Float) => {
                HostTensor::floats(to, shape, v.iter().map(|&b| b as u8 as f64).collect())
            }
            (HostData::Bool(v), Kind::Bool) => HostTensor::bools(shape, v.clone()),
        })
    }

    /// Pick elements by flat index (used by gather, slice, transpose, expand).
    pub fn take(&self, shape: Vec<usize>, idx: &[usize]) -> HostTensor {
        let data = match &self.data {
            HostData::Int(v) => HostData::Int(idx.iter().map(|&i| v[i].clone()).collect()),
            HostData::Float(v) => HostData::Float(idx.iter().map(|&i| v[i]).collect()),
            HostData::Bool(v) => HostData::Bool(idx.iter().map(|&i| v[i]).collect()),
        };
        HostTensor { dtype: self.dtype, shape, data }
    }
}

/// A lower bound of a dim expression, given that every symbol is at least 1 (the range the
/// reader gives every symbol): the constant term plus the coefficients of the other terms, when
/// every term is a product of plain symbols with a positive coefficient. `None` when the
/// expression has negative terms or floor-division/modulo atoms.
pub(crate) fn lower_bound(d: &Dim) -> Option<i64> {
    if let Some(c) = d.as_const() {
        return Some(c);
    }
    // The canonical text form: `k*s0*s1 + s2 - 3` (terms with parentheses are opaque atoms).
    let text = d.to_string();
    if text.contains('(') {
        return None;
    }
    let mut total: i64 = 0;
    let mut sign = 1i64;
    for (i, tok) in text.split(' ').enumerate() {
        if i % 2 == 1 {
            sign = match tok {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            continue;
        }
        let (neg, body) = match tok.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, tok),
        };
        let sign = if neg { -sign } else { sign };
        let mut coef: i64 = 1;
        let mut symbolic = false;
        for factor in body.split('*') {
            match factor.parse::<i64>() {
                Ok(v) => coef = coef.checked_mul(v)?,
                Err(_) if factor.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !factor.is_empty() => {
                    symbolic = true
                }
                Err(_) => return None,
            }
        }
        if symbolic && sign < 0 {
            return None;
        }
        total = total.checked_add(sign.checked_mul(coef)?)?;
    }
    Some(total)
}

/// Compare two dims: `Some` when their difference is constant, or provably positive or negative.
pub(crate) fn compare_dims(a: &Dim, b: &Dim) -> Option<std::cmp::Ordering> {
    let diff = a.sub(b);
    if let Some(c) = diff.as_const() {
        return Some(c.cmp(&0));
    }
    if lower_bound(&diff).is_some_and(|lb| lb > 0) {
        return Some(std::cmp::Ordering::Greater);
    }
    if lower_bound(&diff.scale(-1)).is_some_and(|lb| lb > 0) {
        return Some(std::cmp::Ordering::Less);
    }
    None
}

/// Row-major strides of a shape.
/// Whether a tensor of this shape may be held on the host for folding: its dims add up to at
/// most [`FOLD_LIMIT`](super::import::FOLD_LIMIT). Folders walk index lists one per axis, as
/// long as the axis, so an empty tensor of shape `[0, 2^40]` (no elements, within every element
/// bound) would otherwise have them allocate terabytes.
pub(crate) fn fits_host(shape: &[usize]) -> bool {
    shape.iter().try_fold(0usize, |a, &d| a.checked_add(d)).is_some_and(|sum| sum <= super::import::FOLD_LIMIT)
}

pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_for_every_host_dtype() {
        for (dtype, bytes) in [
            (DType::Float32, 1.5f32.to_le_bytes().to_vec()),
            (DType::Float16, half::f16::from_f32(-2.25).to_le_bytes().to_vec()),
            (DType::Bfloat16, half::bf16::from_f32(3.0).to_le_bytes().to_vec()),
            (DType::Int32, (-7i32).to_le_bytes().to_vec()),
            (DType::Int8, vec![0xff]),
            (DType::Bool, vec![1]),
        ] {
            let t = HostTensor::from_le_bytes(dtype, vec![1], &bytes).unwrap();
            assert_eq!(t.to_le_bytes().unwrap(), bytes, "{dtype}");
        }
        assert_eq!(HostTensor::from_le_bytes(DType::Int8, vec![1], &[0xff]).unwrap().static_ints(), Some(vec![-1]));
        assert!(HostTensor::from_le_bytes(DType::Float32, vec![2], &[0; 4]).is_none());
    }

    #[test]
    fn symbolic_comparisons_use_symbol_ranges() {
        let d = |t: &str| Dim::parse(t).unwrap();
        assert_eq!(lower_bound(&d("2*s0*s1 + s2 - 3")), Some(0));
        assert_eq!(lower_bound(&d("s0 - s1")), None);
        assert_eq!(lower_bound(&d("(s0)//(2) + 1")), None);
        use std::cmp::Ordering::*;
        assert_eq!(compare_dims(&d("s0"), &Dim::constant(-1)), Some(Greater));
        assert_eq!(compare_dims(&Dim::constant(0), &d("s0 + s1")), Some(Less));
        assert_eq!(compare_dims(&d("s0"), &Dim::constant(1)), None);
        assert_eq!(compare_dims(&d("s0 + 1"), &d("s0")), Some(Greater));
    }

    #[test]
    fn casts_follow_onnx() {
        let f = HostTensor::floats(DType::Float32, vec![3], vec![-1.7, 2.9, 0.0]);
        assert_eq!(f.cast(DType::Int64).unwrap().static_ints(), Some(vec![-1, 2, 0]));
        assert_eq!(f.cast(DType::Bool).unwrap().data, HostData::Bool(vec![true, true, false]));
        let i = HostTensor::i64_vec(vec![Dim::constant(300)]);
        assert_eq!(i.cast(DType::Uint8).unwrap().static_ints(), Some(vec![44]));
        let s = HostTensor::i64_vec(vec![Dim::symbol("s0")]);
        assert!(s.cast(DType::Float32).is_none());
        assert_eq!(s.cast(DType::Int32).unwrap().dims().unwrap()[0], Dim::symbol("s0"));
    }
}

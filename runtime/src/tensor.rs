//! Conversions between SRG facts and libtorch tensors.

use genie_ir::DType;
use tch::Kind;

/// The libtorch kind of an SRG dtype (`None` for types libtorch has no kind for).
pub fn kind_of(dtype: DType) -> Option<Kind> {
    Some(match dtype {
        DType::Bool => Kind::Bool,
        DType::Uint8 => Kind::Uint8,
        DType::Int8 => Kind::Int8,
        DType::Int16 => Kind::Int16,
        DType::Int32 => Kind::Int,
        DType::Int64 => Kind::Int64,
        DType::Float16 => Kind::Half,
        DType::Bfloat16 => Kind::BFloat16,
        DType::Float32 => Kind::Float,
        DType::Float64 => Kind::Double,
        DType::Complex64 => Kind::ComplexFloat,
        DType::Complex128 => Kind::ComplexDouble,
        DType::Float8E4m3fn => Kind::Float8e4m3fn,
        DType::Float8E5m2 => Kind::Float8e5m2,
    })
}

/// The SRG dtype of a libtorch kind.
pub fn dtype_of(kind: Kind) -> Option<DType> {
    DType::ALL.into_iter().find(|d| kind_of(*d) == Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_maps_to_a_kind_with_the_same_size() {
        for d in DType::ALL {
            let k = kind_of(d).unwrap_or_else(|| panic!("{d} has no libtorch kind"));
            assert_eq!(k.elt_size_in_bytes() as u64, d.size_bytes(), "{d}");
            assert_eq!(dtype_of(k), Some(d));
        }
    }
}

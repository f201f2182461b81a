//! Raw little-endian bytes ↔ libtorch tensors (weights, constants, the wire).
//!
//! The byte order is the host's: every platform libtorch ships for is little-endian, as the SRG's
//! weight and constant bytes are.

use genie_ir::TensorType;
use tch::{Device, Tensor};

use super::{torch_message, ExecError};
use crate::tensor::kind_of;

fn bad(ty: &TensorType, reason: impl Into<String>) -> ExecError {
    ExecError::BadTensor { tensor: ty.to_string(), reason: reason.into() }
}

/// A tensor of `ty` (static shape) from little-endian bytes, on `device`.
///
/// `shape` is the concrete shape: it must have `ty`'s rank and agree with each of its static
/// dims (symbolic dims take any size), and `bytes` must hold exactly that many elements.
pub fn tensor_from_bytes(ty: &TensorType, shape: &[i64], bytes: &[u8], device: Device) -> Result<Tensor, ExecError> {
    let kind = kind_of(ty.dtype).ok_or_else(|| bad(ty, format!("libtorch has no kind for {}", ty.dtype)))?;
    if shape.len() != ty.rank() {
        return Err(bad(ty, format!("shape {shape:?} has rank {}, the type has rank {}", shape.len(), ty.rank())));
    }
    let mut numel: u64 = 1;
    for (i, (&d, sym)) in shape.iter().zip(&ty.shape).enumerate() {
        if d < 0 {
            return Err(bad(ty, format!("dim {i} of {shape:?} is negative")));
        }
        if let Some(c) = sym.as_const() {
            if c != d {
                return Err(bad(ty, format!("dim {i} of {shape:?} is {d}, the type says {c}")));
            }
        }
        numel = numel.checked_mul(d as u64).ok_or_else(|| bad(ty, format!("{shape:?} overflows")))?;
    }
    let want = numel.checked_mul(ty.dtype.size_bytes()).ok_or_else(|| bad(ty, format!("{shape:?} overflows")))?;
    if want != bytes.len() as u64 {
        return Err(bad(ty, format!("{} bytes given, {shape:?} needs {want}", bytes.len())));
    }
    let t = Tensor::f_from_data_size(bytes, shape, kind)
        .map_err(|e| bad(ty, format!("creating the tensor: {}", torch_message(&e))))?;
    if device == Device::Cpu {
        return Ok(t);
    }
    t.f_to_device(device).map_err(|e| bad(ty, format!("moving to {device:?}: {}", torch_message(&e))))
}

/// The tensor's bytes, little-endian, contiguous (copies to CPU if needed).
pub fn tensor_to_bytes(t: &Tensor) -> Result<Vec<u8>, ExecError> {
    if !t.defined() {
        return Err(ExecError::BadTensor {
            tensor: "undefined".into(),
            reason: "an undefined tensor has no bytes".into(),
        });
    }
    let err = |reason: String| ExecError::BadTensor { tensor: format!("{:?}", t.size()), reason };
    let kind = t.f_kind().map_err(|e| err(torch_message(&e)))?;
    let numel = t.numel();
    let len = numel.checked_mul(kind.elt_size_in_bytes()).ok_or_else(|| err("too large".into()))?;
    let mut buf = vec![0u8; len];
    if numel > 0 {
        t.f_copy_data_u8(&mut buf, numel).map_err(|e| err(torch_message(&e)))?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genie_ir::{DType, Dim};

    #[test]
    fn bytes_round_trip_every_dtype() {
        for d in DType::ALL {
            let n = 6 * d.size_bytes() as usize;
            let mask = if d == DType::Bool { 1 } else { 0x3f };
            let bytes: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(7) & mask).collect();
            let ty = TensorType::new(d, &[2, 3]);
            let t = tensor_from_bytes(&ty, &[2, 3], &bytes, Device::Cpu).unwrap();
            assert_eq!(t.size(), [2, 3]);
            let back = tensor_to_bytes(&t.tr()).unwrap();
            // The transpose is copied out contiguous: same bytes only for 1-byte patterns, so
            // compare through a second transpose instead.
            let t2 = tensor_from_bytes(&TensorType::new(d, &[3, 2]), &[3, 2], &back, Device::Cpu).unwrap();
            assert_eq!(tensor_to_bytes(&t2.tr()).unwrap(), bytes, "{d}");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let ty = TensorType::with_dims(DType::Float32, vec![Dim::symbol("s0"), Dim::constant(2)]);
        assert!(tensor_from_bytes(&ty, &[3, 2], &[0; 24], Device::Cpu).is_ok());
        for (shape, len) in [(&[3i64, 2][..], 20usize), (&[3, 3][..], 36), (&[3][..], 12), (&[-1, 2][..], 0)] {
            let e = tensor_from_bytes(&ty, shape, &vec![0; len], Device::Cpu).unwrap_err();
            assert!(matches!(e, ExecError::BadTensor { .. }), "{e}");
        }
        let e = tensor_from_bytes(&ty, &[i64::MAX, 2], &[], Device::Cpu).unwrap_err();
        assert!(matches!(e, ExecError::BadTensor { .. }), "{e}");
    }
}

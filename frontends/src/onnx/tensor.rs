//! `TensorProto` decoding: element types, the typed data fields and their packing rules,
//! `raw_data`, and external data files (mapped, never copied).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use genie_ir::{DType, TensorType, WeightHash};
use memmap2::Mmap;

use super::proto::{data_location, data_type as dt, TensorProto};
use super::OnnxError;

/// The SRG dtype of an ONNX element type code.
pub(crate) fn dtype_of(code: i32) -> Option<DType> {
    Some(match code {
        dt::FLOAT => DType::Float32,
        dt::UINT8 => DType::Uint8,
        dt::INT8 => DType::Int8,
        dt::INT16 => DType::Int16,
        dt::INT32 => DType::Int32,
        dt::INT64 => DType::Int64,
        dt::BOOL => DType::Bool,
        dt::FLOAT16 => DType::Float16,
        dt::DOUBLE => DType::Float64,
        dt::COMPLEX64 => DType::Complex64,
        dt::COMPLEX128 => DType::Complex128,
        dt::BFLOAT16 => DType::Bfloat16,
        dt::FLOAT8E4M3FN => DType::Float8E4m3fn,
        dt::FLOAT8E5M2 => DType::Float8E5m2,
        _ => return None,
    })
}

/// The ONNX name of an element type code, for messages.
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        dt::UNDEFINED => "UNDEFINED",
        dt::FLOAT => "FLOAT",
        dt::UINT8 => "UINT8",
        dt::INT8 => "INT8",
        dt::UINT16 => "UINT16",
        dt::INT16 => "INT16",
        dt::INT32 => "INT32",
        dt::INT64 => "INT64",
        dt::STRING => "STRING",
        dt::BOOL => "BOOL",
        dt::FLOAT16 => "FLOAT16",
        dt::DOUBLE => "DOUBLE",
        dt::UINT32 => "UINT32",
        dt::UINT64 => "UINT64",
        dt::COMPLEX64 => "COMPLEX64",
        dt::COMPLEX128 => "COMPLEX128",
        dt::BFLOAT16 => "BFLOAT16",
        dt::FLOAT8E4M3FN => "FLOAT8E4M3FN",
        dt::FLOAT8E4M3FNUZ => "FLOAT8E4M3FNUZ",
        dt::FLOAT8E5M2 => "FLOAT8E5M2",
        dt::FLOAT8E5M2FNUZ => "FLOAT8E5M2FNUZ",
        dt::UINT4 => "UINT4",
        dt::INT4 => "INT4",
        dt::FLOAT4E2M1 => "FLOAT4E2M1",
        _ => "unknown",
    }
}

/// The SRG dtype of a code, or a typed error naming the tensor.
pub(crate) fn dtype_for(code: i32, tensor: &str) -> Result<DType, OnnxError> {
    dtype_of(code).ok_or_else(|| OnnxError::Dtype { tensor: tensor.to_string(), code, name: code_name(code) })
}

/// Where a decoded tensor's bytes are.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    /// Little-endian bytes of the tensor's dtype.
    Inline(Vec<u8>),
    /// A byte range of an external file (already checked to lie inside it).
    External { path: PathBuf, offset: u64, len: u64 },
}

/// A decoded tensor: its type, static shape and bytes.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub ty: TensorType,
    pub shape: Vec<usize>,
    pub payload: Payload,
}

impl Decoded {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// External data files, mapped once each.
pub(crate) struct ExternalFiles {
    dir: PathBuf,
    maps: HashMap<PathBuf, Arc<Mmap>>,
}

impl ExternalFiles {
    pub fn new(dir: &Path) -> ExternalFiles {
        ExternalFiles { dir: dir.to_path_buf(), maps: HashMap::new() }
    }

    /// Map a file (once) and return it with its canonical path.
    fn map(&mut self, tensor: &str, location: &str) -> Result<(PathBuf, Arc<Mmap>), OnnxError> {
        let rel = Path::new(location);
        let err = |path: &Path, reason: String| OnnxError::ExternalData {
            tensor: tensor.to_string(),
            path: path.to_path_buf(),
            reason,
        };
        if location.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(err(rel, "the location must be a relative path inside the model's folder".into()));
        }
        let joined = self.dir.join(rel);
        let path = joined.canonicalize().map_err(|e| err(&joined, e.to_string()))?;
        if let Some(m) = self.maps.get(&path) {
            return Ok((path, m.clone()));
        }
        let file = std::fs::File::open(&path).map_err(|e| err(&path, e.to_string()))?;
        // SAFETY: the map is read-only and lives only while importing; like every reader of
        // memory-mapped model files we assume nobody truncates the file meanwhile.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| err(&path, e.to_string()))?;
        let map = Arc::new(map);
        self.maps.insert(path.clone(), map.clone());
        Ok((path, map))
    }

    /// The bytes of a range already checked by [`decode`].
    pub fn bytes(&mut self, path: &Path, offset: u64, len: u64) -> Option<&[u8]> {
        let map = self.maps.get(path)?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        map.get(start..end)
    }

    /// Hash an external range as a weight of type `ty`, streaming over the map and letting go of
    /// each window's pages once hashed (importing a large model keeps little of it resident).
    pub fn hash(&mut self, ty: &TensorType, path: &Path, offset: u64, len: u64) -> Option<WeightHash> {
        let map = self.maps.get(path)?.clone();
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        let bytes = map.get(start..end)?;
        let mut h = WeightHash::hasher(ty);
        for window in bytes.chunks(1 << 24) {
            for chunk in window.chunks(1 << 20) {
                h.update(chunk);
            }
            crate::mmap::release_pages(&map, window);
        }
        Some(WeightHash(h.finalize().to_hex().to_string()))
    }
}

fn bad(tensor: &str, reason: impl Into<String>) -> OnnxError {
    OnnxError::BadTensor { tensor: tensor.to_string(), reason: reason.into() }
}

/// Decode a tensor: check its dims, find its bytes (typed field, `raw_data` or external file)
/// and check their count. Nothing larger than the data actually present is allocated.
pub(crate) fn decode(t: &TensorProto, name: &str, files: &mut ExternalFiles) -> Result<Decoded, OnnxError> {
    decode_with(t, t.raw_data.clone(), name, files)
}

/// [`decode`] taking the tensor, so that `raw_data` is moved rather than copied.
pub(crate) fn decode_owned(mut t: TensorProto, name: &str, files: &mut ExternalFiles) -> Result<Decoded, OnnxError> {
    let raw = t.raw_data.take();
    decode_with(&t, raw, name, files)
}

fn decode_with(
    t: &TensorProto,
    raw: Option<Vec<u8>>,
    name: &str,
    files: &mut ExternalFiles,
) -> Result<Decoded, OnnxError> {
    let dtype = dtype_for(t.data_type, name)?;
    if t.segment.is_some() {
        return Err(bad(name, "segmented tensors are not supported"));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut numel: u64 = 1;
    for &d in &t.dims {
        let d = u64::try_from(d).map_err(|_| bad(name, format!("negative dim {d} in {:?}", t.dims)))?;
        if d > super::import::MAX_DIM as u64 {
            return Err(bad(name, format!("dim {d} in {:?} is too large", t.dims)));
        }
        numel = numel.checked_mul(d).ok_or_else(|| bad(name, format!("dims {:?} overflow", t.dims)))?;
        shape.push(usize::try_from(d).map_err(|_| bad(name, "dim too large"))?);
    }
    let nbytes = numel
        .checked_mul(dtype.size_bytes())
        .filter(|&b| b <= i64::MAX as u64)
        .ok_or_else(|| bad(name, format!("dims {:?} are too large", t.dims)))?;
    let ty = TensorType::new(dtype, &shape.iter().map(|&d| d as i64).collect::<Vec<_>>());

    if t.data_location == data_location::EXTERNAL || !t.external_data.is_empty() {
        let (mut location, mut offset, mut length) = (None, 0u64, None);
        for kv in &t.external_data {
            let num = |v: &str| {
                v.trim().parse::<u64>().map_err(|_| OnnxError::ExternalData {
                    tensor: name.to_string(),
                    path: PathBuf::from(location.unwrap_or("")),
                    reason: format!("`{}` is not a byte count: `{v}`", kv.key),
                })
            };
            match kv.key.as_str() {
                "location" => location = Some(kv.value.as_str()),
                "offset" => offset = num(&kv.value)?,
                "length" => length = Some(num(&kv.value)?),
                _ => {}
            }
        }
        let location = location.ok_or_else(|| OnnxError::ExternalData {
            tensor: name.to_string(),
            path: PathBuf::new(),
            reason: "no `location` key".into(),
        })?;
        let (path, map) = files.map(name, location)?;
        let range_err =
            |reason: String| OnnxError::ExternalData { tensor: name.to_string(), path: path.clone(), reason };
        if let Some(len) = length {
            if len != nbytes {
                return Err(range_err(format!("length {len} but {} needs {nbytes} bytes", ty)));
            }
        }
        let end = offset.checked_add(nbytes).ok_or_else(|| range_err("offset overflows".into()))?;
        if end > map.len() as u64 {
            return Err(range_err(format!("bytes {offset}..{end} lie outside the file ({} bytes)", map.len())));
        }
        return Ok(Decoded { ty, shape, payload: Payload::External { path, offset, len: nbytes } });
    }

    let n = numel as usize;
    let count_err = |field: &str, got: usize, want: usize| {
        bad(name, format!("{field} has {got} elements but dims {:?} need {want}", t.dims))
    };
    let bytes: Vec<u8> = if let Some(raw) = raw {
        if raw.len() as u64 != nbytes {
            return Err(bad(name, format!("raw_data has {} bytes but {} needs {nbytes}", raw.len(), ty)));
        }
        raw
    } else {
        let complex = matches!(dtype, DType::Complex64 | DType::Complex128);
        let want = if complex { n.saturating_mul(2) } else { n };
        match t.data_type {
            dt::FLOAT | dt::COMPLEX64 => {
                if t.float_data.len() != want {
                    return Err(count_err("float_data", t.float_data.len(), want));
                }
                t.float_data.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
            dt::DOUBLE | dt::COMPLEX128 => {
                if t.double_data.len() != want {
                    return Err(count_err("double_data", t.double_data.len(), want));
                }
                t.double_data.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
            dt::INT64 => {
                if t.int64_data.len() != want {
                    return Err(count_err("int64_data", t.int64_data.len(), want));
                }
                t.int64_data.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
            _ => {
                // INT32, INT16, INT8, UINT8, BOOL, FLOAT16, BFLOAT16, FLOAT8*: one element per
                // int32, in its low bits (16-bit floats as their bit pattern).
                if t.int32_data.len() != want {
                    return Err(count_err("int32_data", t.int32_data.len(), want));
                }
                let size = dtype.size_bytes() as usize;
                if dtype == DType::Bool {
                    t.int32_data.iter().map(|&x| (x != 0) as u8).collect()
                } else {
                    t.int32_data.iter().flat_map(|x| x.to_le_bytes().into_iter().take(size)).collect()
                }
            }
        }
    };
    Ok(Decoded { ty, shape, payload: Payload::Inline(bytes) })
}

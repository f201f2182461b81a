//! A bounded reader of safetensors files (the tensor files `genie run` reads), in plain Rust.
//!
//! The format: a `u64` little-endian header length `N`, `N` bytes of JSON, then the data. The
//! JSON maps each tensor name to `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin,
//! end]}` (offsets into the data), plus an optional `"__metadata__"` map of strings.
//!
//! Nothing in the file is trusted: the header length is checked against the file's size and
//! [`MAX_HEADER`] before the header is read or allocated; each tensor's dtype must be one Genie
//! knows, its rank at most [`MAX_RANK`], its shape × dtype size exactly its offsets' span, its
//! offsets inside the data; the tensors must cover the data exactly, without overlaps or gaps
//! (as the format's specification requires, so that no bytes hide between tensors); a name may
//! appear once. Every refusal is a [`TensorFileError`] naming the tensor and the problem.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use genie_ir::DType;
use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;

use crate::MAX_RANK;

/// The largest header accepted, in bytes. A header spends about 100 bytes per tensor, so this
/// is room for over a hundred thousand tensors; inputs files have a handful.
pub const MAX_HEADER: u64 = 16 << 20;

/// Errors reading a safetensors file.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    /// The file could not be opened or read (or it changed while being read).
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Fewer than the 8 bytes of the header length.
    #[error("{len} bytes is too short for a safetensors file (it starts with an 8-byte header length)")]
    TooShort { len: u64 },
    /// The header length is larger than what follows it in the file, or than [`MAX_HEADER`].
    #[error("header length {len} exceeds the {available} bytes after it or the {MAX_HEADER}-byte limit")]
    HeaderLength { len: u64, available: u64 },
    /// The header is not a JSON object of tensor entries.
    #[error("header is not a safetensors JSON object: {reason}")]
    Header { reason: String },
    /// A tensor name appears twice in the header.
    #[error("tensor `{tensor}` appears twice in the header")]
    Duplicate { tensor: String },
    /// A dtype this reader does not know (or Genie has no type for, such as `U16`).
    #[error("tensor `{tensor}`: unsupported dtype `{dtype}`")]
    Dtype { tensor: String, dtype: String },
    /// More dimensions than [`MAX_RANK`].
    #[error("tensor `{tensor}`: rank {rank} exceeds {MAX_RANK}")]
    Rank { tensor: String, rank: usize },
    /// A shape whose element count or byte size does not fit 64 bits, or a dim beyond `i64`.
    #[error("tensor `{tensor}`: shape {shape:?} is too large")]
    Shape { tensor: String, shape: Vec<u64> },
    /// Shape × dtype size differs from the span of the data offsets.
    #[error("tensor `{tensor}`: {dtype} {shape:?} is {expected} bytes, its data offsets span {found}")]
    Span { tensor: String, dtype: DType, shape: Vec<u64>, expected: u64, found: u64 },
    /// Offsets that go backwards or past the end of the data.
    #[error("tensor `{tensor}`: data offsets [{begin}, {end}] are not inside the {data_len} data bytes")]
    Offsets { tensor: String, begin: u64, end: u64, data_len: u64 },
    /// Two tensors share bytes.
    #[error("tensor `{tensor}` overlaps tensor `{other}`")]
    Overlap { tensor: String, other: String },
    /// Data bytes that belong to no tensor (between tensors or after the last).
    #[error("data bytes [{begin}, {end}) belong to no tensor")]
    Gap { begin: u64, end: u64 },
}

/// A tensor of a file read into memory: its type and its little-endian bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorData {
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

/// A tensor of a file held as bytes: its type and a slice of those bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorView<'a> {
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub data: &'a [u8],
}

/// A safetensors file read into memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorFile {
    /// The header's `__metadata__` (PyTorch's writers put the inputs' `order` here).
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, TensorData>,
}

/// A safetensors file held as bytes, its tensors borrowing them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorFileView<'a> {
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, TensorView<'a>>,
}

/// Read a safetensors file. Only the 8-byte prefix is read before the header length is checked
/// against the file's size; each tensor's buffer is allocated only once the whole header has
/// been checked against the file, so allocation never exceeds the file's size.
pub fn read_safetensors(path: &Path) -> Result<TensorFile, TensorFileError> {
    let io = |source| TensorFileError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(TensorFileError::TooShort { len: file_len });
    }
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(io)?;
    let header_len = header_len(prefix, file_len - 8)?;
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let parsed = parse_header(&header, file_len - 8 - header_len)?;
    // The entries cover the data in order, without gaps: read them one after the other.
    let mut tensors = BTreeMap::new();
    for e in parsed.entries {
        let mut data = vec![0u8; (e.end - e.begin) as usize];
        file.read_exact(&mut data).map_err(io)?;
        tensors.insert(e.name, TensorData { dtype: e.dtype, shape: e.shape, data });
    }
    Ok(TensorFile { metadata: parsed.metadata, tensors })
}

/// Parse a safetensors file already in memory; the tensors borrow `bytes`.
pub fn parse_safetensors(bytes: &[u8]) -> Result<TensorFileView<'_>, TensorFileError> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(TensorFileError::TooShort { len: bytes.len() as u64 });
    };
    let header_len = header_len(*prefix, rest.len() as u64)? as usize;
    let (header, data) = rest.split_at(header_len);
    let parsed = parse_header(header, data.len() as u64)?;
    let tensors = parsed
        .entries
        .into_iter()
        .map(|e| {
            let view = TensorView { dtype: e.dtype, shape: e.shape, data: &data[e.begin as usize..e.end as usize] };
            (e.name, view)
        })
        .collect();
    Ok(TensorFileView { metadata: parsed.metadata, tensors })
}

/// The safetensors name of a dtype, for writers and messages.
pub fn dtype_name(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::Bool => "BOOL",
        DType::Uint8 => "U8",
        DType::Int8 => "I8",
        DType::Int16 => "I16",
        DType::Int32 => "I32",
        DType::Int64 => "I64",
        DType::Float16 => "F16",
        DType::Bfloat16 => "BF16",
        DType::Float32 => "F32",
        DType::Float64 => "F64",
        DType::Complex64 => "C64",
        DType::Float8E4m3fn => "F8_E4M3",
        DType::Float8E5m2 => "F8_E5M2",
        // safetensors has no 128-bit complex.
        DType::Complex128 => return None,
    })
}

fn dtype_of(name: &str) -> Option<DType> {
    DType::ALL.into_iter().find(|d| dtype_name(*d) == Some(name))
}

/// Check the header length against what follows it and [`MAX_HEADER`].
fn header_len(prefix: [u8; 8], available: u64) -> Result<u64, TensorFileError> {
    let len = u64::from_le_bytes(prefix);
    if len > available || len > MAX_HEADER {
        return Err(TensorFileError::HeaderLength { len, available });
    }
    Ok(len)
}

/// One checked tensor entry: where its bytes are within the data.
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<i64>,
    begin: u64,
    end: u64,
}

/// The checked header: entries sorted by offset, covering the data exactly.
struct Header {
    metadata: BTreeMap<String, String>,
    entries: Vec<Entry>,
}

/// A tensor's entry as the JSON has it, before any check.
#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// The header's entries in file order, keeping duplicates (a map would keep only the last).
struct RawHeader {
    metadata: BTreeMap<String, String>,
    entries: Vec<(String, RawEntry)>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<RawHeader, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
                let mut header = RawHeader { metadata: BTreeMap::new(), entries: Vec::new() };
                while let Some(name) = map.next_key::<String>()? {
                    if name == "__metadata__" {
                        header.metadata = map.next_value()?;
                    } else {
                        header.entries.push((name, map.next_value()?));
                    }
                }
                Ok(header)
            }
        }
        d.deserialize_map(V)
    }
}

fn parse_header(header: &[u8], data_len: u64) -> Result<Header, TensorFileError> {
    let raw: RawHeader =
        serde_json::from_slice(header).map_err(|e| TensorFileError::Header { reason: e.to_string() })?;
    let mut entries = Vec::with_capacity(raw.entries.len());
    let mut names = std::collections::BTreeSet::new();
    for (name, e) in raw.entries {
        if !names.insert(name.clone()) {
            return Err(TensorFileError::Duplicate { tensor: name });
        }
        entries.push(check_entry(name, e, data_len)?);
    }
    // Sorted by offsets, each tensor must start where the one before ended (empty tensors
    // may share an offset) and the last must end where the data does.
    entries.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));
    let mut end = 0u64;
    for (i, e) in entries.iter().enumerate() {
        if e.begin > end {
            return Err(TensorFileError::Gap { begin: end, end: e.begin });
        }
        if e.begin < end {
            let other = entries[..i].iter().rev().find(|o| o.end > e.begin).unwrap_or(&entries[i - 1]);
            return Err(TensorFileError::Overlap { tensor: e.name.clone(), other: other.name.clone() });
        }
        end = e.end;
    }
    if end != data_len {
        return Err(TensorFileError::Gap { begin: end, end: data_len });
    }
    Ok(Header { metadata: raw.metadata, entries })
}

fn check_entry(name: String, e: RawEntry, data_len: u64) -> Result<Entry, TensorFileError> {
    let Some(dtype) = dtype_of(&e.dtype) else {
        return Err(TensorFileError::Dtype { tensor: name, dtype: e.dtype });
    };
    if e.shape.len() > MAX_RANK {
        return Err(TensorFileError::Rank { tensor: name, rank: e.shape.len() });
    }
    let bytes =
        e.shape.iter().try_fold(dtype.size_bytes(), |n, &d| if d > i64::MAX as u64 { None } else { n.checked_mul(d) });
    let Some(expected) = bytes else {
        return Err(TensorFileError::Shape { tensor: name, shape: e.shape });
    };
    let (begin, end) = e.data_offsets;
    if begin > end || end > data_len {
        return Err(TensorFileError::Offsets { tensor: name, begin, end, data_len });
    }
    if end - begin != expected {
        return Err(TensorFileError::Span { tensor: name, dtype, shape: e.shape, expected, found: end - begin });
    }
    let shape = e.shape.iter().map(|&d| d as i64).collect();
    Ok(Entry { name, dtype, shape, begin, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file from a header (JSON text) and data.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn err(bytes: &[u8]) -> TensorFileError {
        parse_safetensors(bytes).unwrap_err()
    }

    const GOOD: &str = r#"{"__metadata__":{"order":"b,a"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
        "b":{"dtype":"I64","shape":[1,1],"data_offsets":[8,16]},"e":{"dtype":"BF16","shape":[0,4],"data_offsets":[16,16]}}  "#;

    #[test]
    fn reads_tensors_and_metadata() {
        let data: Vec<u8> = (0..16).collect();
        let bytes = file(GOOD, &data);
        let f = parse_safetensors(&bytes).unwrap();
        assert_eq!(f.metadata["order"], "b,a");
        assert_eq!(f.tensors["a"], TensorView { dtype: DType::Float32, shape: vec![2], data: &data[..8] });
        assert_eq!(f.tensors["b"], TensorView { dtype: DType::Int64, shape: vec![1, 1], data: &data[8..] });
        assert_eq!(f.tensors["e"].shape, [0, 4]);
        assert!(f.tensors["e"].data.is_empty());
        // The file reader gives the same tensors.
        let path = std::env::temp_dir().join(format!("genie-wire-{}.safetensors", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let read = read_safetensors(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read.metadata, f.metadata);
        for (name, view) in &f.tensors {
            let t = &read.tensors[name];
            assert_eq!((t.dtype, &t.shape, t.data.as_slice()), (view.dtype, &view.shape, view.data));
        }
        assert!(matches!(read_safetensors(Path::new("/nonexistent/x.safetensors")), Err(TensorFileError::Io { .. })));
    }

    #[test]
    fn the_header_length_is_checked_before_the_header_is_read() {
        assert!(matches!(err(&[1, 2, 3]), TensorFileError::TooShort { len: 3 }));
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(matches!(err(&huge), TensorFileError::HeaderLength { len: u64::MAX, available: 2 }));
        // Longer than the limit, even when the file is that long.
        let mut big = (MAX_HEADER + 1).to_le_bytes().to_vec();
        big.resize(8 + MAX_HEADER as usize + 1, b' ');
        assert!(matches!(err(&big), TensorFileError::HeaderLength { .. }));
        // The same from a file on disk.
        let path = std::env::temp_dir().join(format!("genie-wire-len-{}.safetensors", std::process::id()));
        std::fs::write(&path, &huge).unwrap();
        let e = read_safetensors(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(e, TensorFileError::HeaderLength { len: u64::MAX, available: 2 }), "{e}");
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in ["", "[]", "{", "{\"a\": 1}", "{\"a\":{\"dtype\":\"F32\"}}", "\u{0}"] {
            assert!(matches!(err(&file(header, &[])), TensorFileError::Header { .. }), "{header}");
        }
        let deep = format!("{{\"__metadata__\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(err(&file(&deep, &[])), TensorFileError::Header { .. }));
        assert!(parse_safetensors(&file("{}", &[])).unwrap().tensors.is_empty());
    }

    /// Each entry's problem is named with the tensor.
    #[test]
    fn bad_entries_name_the_tensor() {
        let one = |entry: &str, data: &[u8]| err(&file(&format!("{{\"t\":{entry}}}"), data));
        let e = one(r#"{"dtype":"U16","shape":[1],"data_offsets":[0,2]}"#, &[0; 2]);
        assert!(matches!(&e, TensorFileError::Dtype { tensor, dtype } if tensor == "t" && dtype == "U16"), "{e}");
        let e = one(&format!(r#"{{"dtype":"U8","shape":{:?},"data_offsets":[0,1]}}"#, vec![1; 17]), &[0]);
        assert!(matches!(&e, TensorFileError::Rank { tensor, rank: 17 } if tensor == "t"), "{e}");
        let e = one(r#"{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}"#, &[0; 4]);
        assert!(matches!(e, TensorFileError::Shape { .. }), "{e}");
        let e = one(r#"{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,4]}"#, &[0; 4]);
        assert!(matches!(e, TensorFileError::Shape { .. }), "a dim beyond i64: {e}");
        let e = one(r#"{"dtype":"F32","shape":[3],"data_offsets":[0,8]}"#, &[0; 8]);
        assert!(matches!(e, TensorFileError::Span { expected: 12, found: 8, .. }), "{e}");
        let e = one(r#"{"dtype":"F32","shape":[2],"data_offsets":[8,0]}"#, &[0; 8]);
        assert!(matches!(e, TensorFileError::Offsets { begin: 8, end: 0, .. }), "{e}");
        let e = one(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, &[0; 4]);
        assert!(matches!(e, TensorFileError::Offsets { end: 8, data_len: 4, .. }), "{e}");
        let e = one(r#"{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}"#, &[0; 8]);
        assert!(matches!(e, TensorFileError::Header { .. }), "{e}");
    }

    #[test]
    fn tensors_must_cover_the_data_exactly() {
        let two = |a: (u64, u64), b: (u64, u64), data: usize| {
            let h = format!(
                r#"{{"a":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}},"b":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}}}}"#,
                a.1 - a.0,
                a.0,
                a.1,
                b.1 - b.0,
                b.0,
                b.1
            );
            parse_safetensors(&file(&h, &vec![0; data])).map(|f| f.tensors.len())
        };
        assert_eq!(two((0, 4), (4, 8), 8).unwrap(), 2);
        let e = two((0, 4), (2, 8), 8).unwrap_err();
        assert!(matches!(&e, TensorFileError::Overlap { tensor, other } if tensor == "b" && other == "a"), "{e}");
        let e = two((0, 4), (5, 8), 8).unwrap_err();
        assert!(matches!(e, TensorFileError::Gap { begin: 4, end: 5 }), "{e}");
        let e = two((0, 4), (4, 8), 9).unwrap_err();
        assert!(matches!(e, TensorFileError::Gap { begin: 8, end: 9 }), "trailing bytes: {e}");
        let e = two((0, 8), (2, 4), 8).unwrap_err();
        assert!(matches!(e, TensorFileError::Overlap { .. }), "one inside another: {e}");
    }

    #[test]
    fn a_name_may_appear_once() {
        for second in ["[1,2]", "[0,1]"] {
            let h = format!(
                r#"{{"a":{{"dtype":"U8","shape":[1],"data_offsets":[0,1]}},"a":{{"dtype":"U8","shape":[1],"data_offsets":{second}}}}}"#
            );
            let e = err(&file(&h, &[0; 2]));
            assert!(matches!(&e, TensorFileError::Duplicate { tensor } if tensor == "a"), "{e}");
        }
    }

    #[test]
    fn every_safetensors_dtype_name_maps_back() {
        for d in DType::ALL {
            if let Some(name) = dtype_name(d) {
                assert_eq!(dtype_of(name), Some(d));
            }
        }
    }

    /// Truncating a good file anywhere gives an error, never a panic.
    #[test]
    fn truncated_files_are_errors() {
        let bytes = file(GOOD, &[7; 16]);
        for cut in 0..bytes.len() {
            assert!(parse_safetensors(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}

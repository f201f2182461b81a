//! The weight store: persistent tensors kept outside the graphs, keyed by content hash.
//!
//! The same weight used by two entry graphs (prefill and decode) is one entry here, uploaded once.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::TensorType;

/// Raw bytes, serialised as a lowercase hex string.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexBytes({} bytes)", self.0.len())
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            text.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HexBytes, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("hex string has odd length"));
        }
        // Digits only: `from_str_radix` alone would also take a sign (`+f`).
        if let Some(at) = text.bytes().position(|b| !b.is_ascii_hexdigit()) {
            return Err(serde::de::Error::custom(format!("invalid hex digit at byte {at}")));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map(HexBytes)
            .map_err(|_| serde::de::Error::custom("invalid hex digit"))
    }
}

/// Content hash of a weight: BLAKE3 over dtype, shape and bytes, as 64 hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WeightHash(pub String);

impl WeightHash {
    /// Hash a tensor's type and bytes.
    pub fn of(ty: &TensorType, bytes: &[u8]) -> WeightHash {
        let mut h = Self::hasher(ty);
        h.update(bytes);
        WeightHash(h.finalize().to_hex().to_string())
    }

    /// A hasher primed with the type, for streaming large weights through.
    pub fn hasher(ty: &TensorType) -> blake3::Hasher {
        let mut h = blake3::Hasher::new();
        h.update(ty.to_string().as_bytes());
        h.update(b"\0");
        h
    }

    /// The first 12 hex digits, for dumps.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for WeightHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WeightHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.short())
    }
}

/// Where a weight's bytes live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightData {
    /// Stored in the program itself.
    Inline(HexBytes),
    /// A byte range of a file (a `.pt2` archive member, an ONNX external data file).
    External { path: PathBuf, offset: u64, len: u64 },
}

/// One weight: its type and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightEntry {
    pub ty: TensorType,
    pub data: WeightData,
}

impl WeightEntry {
    /// Size in bytes (the type is always static for weights).
    pub fn byte_len(&self) -> u64 {
        match &self.data {
            WeightData::Inline(b) => b.0.len() as u64,
            WeightData::External { len, .. } => *len,
        }
    }
}

/// Errors reading weight bytes.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// No weight with this hash in the store.
    #[error("weight {0} is not in the store")]
    Missing(WeightHash),
    /// The external file could not be read.
    #[error("reading weight {hash} from {path}: {source}")]
    Io {
        hash: WeightHash,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Weights keyed by content hash; each distinct tensor is stored once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct WeightStore {
    entries: BTreeMap<WeightHash, WeightEntry>,
}

impl WeightStore {
    pub fn new() -> WeightStore {
        WeightStore::default()
    }

    /// Store bytes inline; returns the hash (the same hash for the same content).
    pub fn insert_inline(&mut self, ty: TensorType, bytes: Vec<u8>) -> WeightHash {
        let hash = WeightHash::of(&ty, &bytes);
        self.entries.entry(hash.clone()).or_insert(WeightEntry { ty, data: WeightData::Inline(HexBytes(bytes)) });
        hash
    }

    /// Store a reference to bytes in a file, under a hash the caller computed.
    pub fn insert_external(&mut self, hash: WeightHash, ty: TensorType, path: PathBuf, offset: u64, len: u64) {
        self.entries.entry(hash).or_insert(WeightEntry { ty, data: WeightData::External { path, offset, len } });
    }

    /// Add every entry of another store (entries already present are kept).
    pub fn absorb(&mut self, other: WeightStore) {
        for (h, e) in other.entries {
            self.entries.entry(h).or_insert(e);
        }
    }

    /// A store of just the entries of `hashes` this one has (external data stays where it is).
    pub fn subset(&self, hashes: &[WeightHash]) -> WeightStore {
        let entries = hashes.iter().filter_map(|h| self.entries.get(h).map(|e| (h.clone(), e.clone()))).collect();
        WeightStore { entries }
    }

    pub fn get(&self, hash: &WeightHash) -> Option<&WeightEntry> {
        self.entries.get(hash)
    }

    pub fn contains(&self, hash: &WeightHash) -> bool {
        self.entries.contains_key(hash)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in hash order.
    pub fn iter(&self) -> impl Iterator<Item = (&WeightHash, &WeightEntry)> {
        self.entries.iter()
    }

    /// Total bytes of all distinct weights.
    pub fn total_bytes(&self) -> u64 {
        self.entries.values().map(WeightEntry::byte_len).sum()
    }

    /// Read a weight's bytes.
    pub fn read(&self, hash: &WeightHash) -> Result<Vec<u8>, WeightError> {
        let entry = self.get(hash).ok_or_else(|| WeightError::Missing(hash.clone()))?;
        match &entry.data {
            WeightData::Inline(b) => Ok(b.0.clone()),
            WeightData::External { path, offset, len } => {
                let io = |source| WeightError::Io { hash: hash.clone(), path: path.clone(), source };
                let mut f = std::fs::File::open(path).map_err(io)?;
                f.seek(SeekFrom::Start(*offset)).map_err(io)?;
                let mut buf = vec![0u8; *len as usize];
                f.read_exact(&mut buf).map_err(io)?;
                Ok(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::DType;

    #[test]
    fn identical_content_is_stored_once() {
        let mut store = WeightStore::new();
        let ty = TensorType::new(DType::Float32, &[2]);
        let a = store.insert_inline(ty.clone(), vec![0, 0, 128, 63, 0, 0, 0, 64]);
        let b = store.insert_inline(ty.clone(), vec![0, 0, 128, 63, 0, 0, 0, 64]);
        assert_eq!(a, b);
        assert_eq!(store.len(), 1);
        // Same bytes under another shape are another weight.
        let c = store.insert_inline(TensorType::new(DType::Float32, &[1, 2]), vec![0, 0, 128, 63, 0, 0, 0, 64]);
        assert_ne!(a, c);
        assert_eq!(store.len(), 2);
        assert_eq!(store.total_bytes(), 16);
    }

    #[test]
    fn hex_bytes_round_trip() {
        let b = HexBytes(vec![0, 1, 0xab, 0xff]);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "\"0001abff\"");
        assert_eq!(serde_json::from_str::<HexBytes>(&json).unwrap(), b);
        assert!(serde_json::from_str::<HexBytes>("\"abc\"").is_err());
        assert!(serde_json::from_str::<HexBytes>("\"zz\"").is_err());
        // A sign is not a digit, and a character of two bytes does not pair up with the next.
        assert!(serde_json::from_str::<HexBytes>("\"+f\"").is_err());
        assert!(serde_json::from_str::<HexBytes>("\"\u{e9}\"").is_err());
    }

    #[test]
    fn external_read_reports_missing_file() {
        let mut store = WeightStore::new();
        let ty = TensorType::new(DType::Float32, &[1]);
        let hash = WeightHash::of(&ty, &[0; 4]);
        store.insert_external(hash.clone(), ty, "/nonexistent/genie.bin".into(), 0, 4);
        let err = store.read(&hash).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/genie.bin"), "{err}");
    }
}

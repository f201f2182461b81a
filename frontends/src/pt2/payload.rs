//! Parameters, buffers and constants: `data/weights/` and `data/constants/`, described by the
//! payload configs (`<model>_weights_config.json`, `<model>_constants_config.json`).
//!
//! Each config entry names a storage member (`weight_0`) and a view of it (dtype, sizes,
//! strides, storage offset); several entries may share one storage (tied weights, slices).
//! A view that is a contiguous slice of a stored member is recorded as a byte range of the
//! archive ([`genie_ir::WeightData::External`]) and hashed straight from the mapped file; any
//! other view is gathered into an inline copy.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rayon::prelude::*;

use genie_ir::{DType, TensorType, WeightHash, WeightStore};

use super::archive::Archive;
use super::schema::{PayloadConfig, PayloadMeta, SymInt, TensorMeta};
use super::{dtype_of, parse_json, Pt2Error};

/// Largest inline copy made for a view that is not a contiguous slice, unless its storage is
/// larger (a stride-0 view could otherwise ask for far more bytes than the archive holds).
const MIN_GATHER_LIMIT: u64 = 1 << 26;

/// Bytes hashed and CRC-checked per step, so both read the data while it is in cache.
const HASH_CHUNK: usize = 1 << 20;
/// Bytes hashed before their pages are released.
const RELEASE_WINDOW: usize = 1 << 24;

/// The archive file, when weights may be referenced in place.
pub struct External<'a> {
    /// Recorded in [`genie_ir::WeightData::External`].
    pub path: &'a Path,
    /// Called with each weight's bytes once hashed, so the pages can be let go (from the
    /// threads that hash).
    pub release: &'a (dyn Fn(&[u8]) + Sync),
}

/// Identity of a view, so tied weights are hashed once.
type ViewKey = (String, DType, Vec<i64>, Vec<i64>, i64);

/// The payload configs of one model and the weights imported so far.
pub struct Payloads {
    configs: Vec<(String, &'static str, PayloadConfig)>,
    seen: BTreeMap<ViewKey, WeightHash>,
    crc_checked: BTreeSet<String>,
    /// Hashes computed ahead by [`Payloads::prehash`], with the CRC of a whole member.
    prehashed: BTreeMap<ViewKey, (WeightHash, Option<u32>)>,
}

/// Static ints of a tensor meta list.
fn static_ints(list: &[SymInt]) -> Option<Vec<i64>> {
    list.iter()
        .map(|s| match s {
            SymInt::Int(v) => Some(*v),
            SymInt::Expr(_) => None,
        })
        .collect()
}

impl Payloads {
    /// Read the payload configs of model `model` (both are optional: a model without weights
    /// may have neither).
    pub fn load(archive: &mut Archive<'_>, model: &str) -> Result<Payloads, Pt2Error> {
        let mut configs = Vec::new();
        for (config, dir) in [
            (format!("data/weights/{model}_weights_config.json"), "data/weights/"),
            (format!("data/constants/{model}_constants_config.json"), "data/constants/"),
        ] {
            if archive.has(&config) {
                let member = archive.member(&config)?;
                member.check_crc(&config)?;
                let parsed: PayloadConfig = parse_json(&config, &member.bytes)?;
                configs.push((config, dir, parsed));
            }
        }
        Ok(Payloads { configs, seen: BTreeMap::new(), crc_checked: BTreeSet::new(), prehashed: BTreeMap::new() })
    }

    fn find(&self, fqn: &str) -> Option<(&str, &'static str, &PayloadMeta)> {
        self.configs.iter().find_map(|(config, dir, c)| c.config.get(fqn).map(|m| (config.as_str(), *dir, m)))
    }

    /// The validated view of weight `fqn`: member, type, sizes, strides and offset.
    fn view(&self, fqn: &str) -> Result<View, Pt2Error> {
        let (config, dir, meta) = self.find(fqn).ok_or_else(|| Pt2Error::Weight {
            fqn: fqn.to_string(),
            member: self
                .configs
                .first()
                .map(|c| c.0.clone())
                .unwrap_or_else(|| "data/weights/model_weights_config.json".to_string()),
            reason: "not listed in the payload configs".into(),
        })?;
        let member_name = format!("{dir}{}", meta.path_name);
        let werr = |reason: String| Pt2Error::Weight { fqn: fqn.to_string(), member: member_name.clone(), reason };
        if meta.use_pickle {
            return Err(werr("stored pickled (a tensor subclass), which Genie cannot read".into()));
        }
        let tm: &TensorMeta = meta.tensor_meta.as_ref().ok_or_else(|| werr(format!("no tensor_meta in `{config}`")))?;
        if tm.layout.is_some_and(|l| l != 7) {
            return Err(werr(format!("layout {} is not strided", tm.layout.unwrap_or_default())));
        }
        let dtype = dtype_of(tm.dtype).ok_or_else(|| werr(format!("unsupported dtype code {}", tm.dtype)))?;
        let sizes = static_ints(&tm.sizes).ok_or_else(|| werr("symbolic sizes".into()))?;
        let strides = if tm.strides.is_empty() && sizes.is_empty() {
            Vec::new()
        } else {
            static_ints(&tm.strides).ok_or_else(|| werr("symbolic strides".into()))?
        };
        let offset = match &tm.storage_offset {
            None => 0,
            Some(SymInt::Int(v)) => *v,
            Some(SymInt::Expr(_)) => return Err(werr("symbolic storage offset".into())),
        };
        if strides.len() != sizes.len() || sizes.iter().chain(&strides).any(|&v| v < 0) || offset < 0 {
            return Err(werr(format!("bad view: sizes {sizes:?}, strides {strides:?}, offset {offset}")));
        }
        let ty = TensorType::new(dtype, &sizes);
        let numel = sizes.iter().try_fold(1u64, |acc, &s| acc.checked_mul(s as u64));
        Ok(View { key: (member_name, dtype, sizes, strides, offset), ty, numel })
    }

    /// Hash, in parallel, the weights among `fqns` that [`Payloads::import`] would reference in
    /// place, so that importing them one by one only looks the hashes up. Hashing is most of an
    /// import's time and each weight's hash is independent. Views that do not qualify, or that
    /// [`Payloads::import`] would refuse, are left for it (it reports the errors in order).
    pub fn prehash(&mut self, archive: &mut Archive<'_>, fqns: &[&str], ext: &External<'_>) {
        let mut jobs: Vec<(ViewKey, TensorType, &[u8], bool)> = Vec::new();
        let mut queued = BTreeSet::new();
        for fqn in fqns {
            let Ok(View { key, ty, numel: Some(numel) }) = self.view(fqn) else { continue };
            let (member_name, dtype, sizes, strides, offset) = &key;
            if numel == 0 || self.seen.contains_key(&key) || queued.contains(&key) || !is_contiguous(sizes, strides) {
                continue;
            }
            let Ok(member) = archive.member(member_name) else { continue };
            // Only a stored member is a slice of the mapped file (and lives as long as it).
            let (Some(_), Cow::Borrowed(storage)) = (member.file_offset, member.bytes) else { continue };
            let es = dtype.size_bytes();
            let Some(end) = numel.checked_add(*offset as u64).and_then(|e| e.checked_mul(es)) else { continue };
            if end > storage.len() as u64 {
                continue;
            }
            let start = *offset as u64 * es;
            let whole = start == 0 && end == storage.len() as u64;
            queued.insert(key.clone());
            jobs.push((key, ty, &storage[start as usize..end as usize], whole));
        }
        let hashed: Vec<(WeightHash, Option<u32>)> =
            jobs.par_iter().map(|(_, ty, bytes, whole)| hash_in_place(ty, bytes, *whole, ext.release)).collect();
        for ((key, ..), result) in jobs.into_iter().zip(hashed) {
            self.prehashed.insert(key, result);
        }
    }

    /// Import the weight `fqn` into `store`; returns its type and hash. Weights are referenced
    /// in place when `external` is given.
    pub fn import(
        &mut self,
        archive: &mut Archive<'_>,
        fqn: &str,
        store: &mut WeightStore,
        external: Option<&External<'_>>,
    ) -> Result<(TensorType, WeightHash), Pt2Error> {
        let View { key, ty, numel } = self.view(fqn)?;
        let (member_name, dtype, sizes, strides, offset) = &key;
        let (dtype, offset) = (*dtype, *offset);
        let werr = |reason: String| Pt2Error::Weight { fqn: fqn.to_string(), member: member_name.clone(), reason };
        if let Some(h) = self.seen.get(&key) {
            return Ok((ty, h.clone()));
        }

        let es = dtype.size_bytes();
        let numel = numel.ok_or_else(|| werr("size overflows".into()))?;
        if numel == 0 {
            let h = store.insert_inline(ty.clone(), Vec::new());
            self.seen.insert(key, h.clone());
            return Ok((ty, h));
        }
        let member = archive.member(member_name)?;
        let crc_pending = !self.crc_checked.contains(member_name);
        let storage = &member.bytes[..];
        let storage_elems = storage.len() as u64 / es;
        // Highest element index the view touches.
        let last = sizes
            .iter()
            .zip(strides)
            .try_fold(offset as u64, |acc, (&s, &st)| acc.checked_add((s as u64 - 1).checked_mul(st as u64)?))
            .ok_or_else(|| werr("view extent overflows".into()))?;
        if last >= storage_elems {
            return Err(werr(format!(
                "view (sizes {sizes:?}, strides {strides:?}, offset {offset}) reaches element {last} but the storage has {storage_elems}"
            )));
        }
        let contiguous = is_contiguous(sizes, strides);
        let start = offset as u64 * es;
        let len = numel * es;
        let in_place = match (external, member.file_offset) {
            (Some(ext), Some(file_offset)) if contiguous => Some((ext, file_offset)),
            _ => None,
        };
        let whole = start == 0 && len == storage.len() as u64;
        if crc_pending && !(in_place.is_some() && whole) {
            member.check_crc(member_name)?;
            self.crc_checked.insert(member_name.clone());
        }
        let hash = if let Some((ext, file_offset)) = in_place {
            let (hash, crc) = match self.prehashed.remove(&key) {
                Some(done) => done,
                None => hash_in_place(&ty, &storage[start as usize..(start + len) as usize], whole, ext.release),
            };
            if crc_pending && whole {
                let crc = crc.expect("a whole member's CRC is computed with its hash");
                member.expect_crc(member_name, crc)?;
                self.crc_checked.insert(member_name.clone());
            }
            store.insert_external(hash.clone(), ty.clone(), ext.path.to_path_buf(), file_offset + start, len);
            hash
        } else if contiguous {
            store.insert_inline(ty.clone(), storage[start as usize..(start + len) as usize].to_vec())
        } else {
            let limit = (storage.len() as u64).max(MIN_GATHER_LIMIT);
            if numel.saturating_mul(es) > limit {
                return Err(werr(format!("a {numel}-element strided view is too large to copy")));
            }
            store.insert_inline(ty.clone(), gather(storage, es as usize, sizes, strides, offset as usize))
        };
        self.seen.insert(key, hash.clone());
        Ok((ty, hash))
    }
}

/// A weight's view as its payload config describes it.
struct View {
    key: ViewKey,
    ty: TensorType,
    /// `None` when the element count overflows.
    numel: Option<u64>,
}

/// Stream a weight's bytes once from the map: the content hash, and the member's CRC when the
/// view is all of it (`whole`); let go of the pages behind.
fn hash_in_place(
    ty: &TensorType,
    bytes: &[u8],
    whole: bool,
    release: &(dyn Fn(&[u8]) + Sync),
) -> (WeightHash, Option<u32>) {
    let mut h = WeightHash::hasher(ty);
    let mut crc = whole.then(crc32fast::Hasher::new);
    for window in bytes.chunks(RELEASE_WINDOW) {
        for chunk in window.chunks(HASH_CHUNK) {
            if let Some(crc) = &mut crc {
                crc.update(chunk);
            }
            h.update(chunk);
        }
        release(window);
    }
    (WeightHash(h.finalize().to_hex().to_string()), crc.map(crc32fast::Hasher::finalize))
}

/// Row-major contiguous (dims of size 1 may have any stride).
fn is_contiguous(sizes: &[i64], strides: &[i64]) -> bool {
    let mut expect = 1i64;
    for (&s, &st) in sizes.iter().zip(strides).rev() {
        if s != 1 && st != expect {
            return false;
        }
        expect = expect.saturating_mul(s);
    }
    true
}

/// Copy a strided view into row-major order. The caller has bounds-checked the extent.
fn gather(storage: &[u8], es: usize, sizes: &[i64], strides: &[i64], offset: usize) -> Vec<u8> {
    let numel: usize = sizes.iter().map(|&s| s as usize).product();
    let mut out = Vec::with_capacity(numel * es);
    let mut idx = vec![0i64; sizes.len()];
    for _ in 0..numel {
        let elem = offset + idx.iter().zip(strides).map(|(&i, &st)| (i * st) as usize).sum::<usize>();
        out.extend_from_slice(&storage[elem * es..(elem + 1) * es]);
        for d in (0..sizes.len()).rev() {
            idx[d] += 1;
            if idx[d] < sizes[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_and_gather() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[1, 3], &[99, 1]));
        assert!(!is_contiguous(&[2, 3], &[1, 2]));
        assert!(is_contiguous(&[], &[]));
        // A transposed 2x3 view of bytes 0..6 (element size 1).
        let storage: Vec<u8> = (0..6).collect();
        assert_eq!(gather(&storage, 1, &[3, 2], &[1, 3], 0), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(gather(&storage, 2, &[2], &[1], 1), vec![2, 3, 4, 5]);
        assert_eq!(gather(&storage, 1, &[3], &[0], 2), vec![2, 2, 2]);
    }
}

//! The zip layer: members of a `torch.export` archive, borrowed from the mapped file.
//!
//! `torch.export.save` writes every member uncompressed under one root folder (the file stem
//! at save time: `prefill/models/model.json`), so a member's bytes are a slice of the mapped
//! file and weights never need copying. Deflated members (a re-zipped archive) are read
//! through the decompressor instead.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use zip::{CompressionMethod, ZipArchive};

use super::Pt2Error;

/// Largest member this reader will decompress into memory.
const MAX_INFLATED: u64 = 1 << 32;

/// An opened archive over the file's bytes.
pub struct Archive<'a> {
    data: &'a [u8],
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// Member name without the root folder → zip index.
    members: BTreeMap<String, usize>,
}

/// A member's bytes, and where they lie in the file when stored uncompressed.
pub struct Member<'a> {
    pub bytes: Cow<'a, [u8]>,
    /// File offset of the first byte when `bytes` is a slice of the file.
    pub file_offset: Option<u64>,
    crc32: u32,
}

impl Member<'_> {
    /// Check the zip CRC of the member's bytes.
    pub fn check_crc(&self, name: &str) -> Result<(), Pt2Error> {
        self.expect_crc(name, crc32fast::hash(&self.bytes))
    }

    /// Compare a CRC computed by the caller with the stored one.
    pub fn expect_crc(&self, name: &str, got: u32) -> Result<(), Pt2Error> {
        if got != self.crc32 {
            return Err(Pt2Error::BadMember {
                member: name.to_string(),
                reason: format!("CRC mismatch (stored {:08x}, computed {got:08x}): the archive is corrupt", self.crc32),
            });
        }
        Ok(())
    }
}

impl<'a> Archive<'a> {
    /// Open the zip and find the archive's root folder.
    pub fn open(data: &'a [u8]) -> Result<Archive<'a>, Pt2Error> {
        let zip = ZipArchive::new(Cursor::new(data)).map_err(Pt2Error::NotZip)?;
        if zip.offset() != 0 {
            // The end record found belongs to a zip stored inside this file (torch stores the
            // sample inputs as a zip): the archive's own end was cut off.
            return Err(Pt2Error::NotZip(zip::result::ZipError::InvalidArchive(
                format!(
                    "the only end-of-archive record found starts a zip at offset {} (the file is truncated)",
                    zip.offset()
                )
                .into(),
            )));
        }
        // The root is the folder holding `archive_format` and `models/`.
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        let root = names
            .iter()
            .find_map(|n| root_of(n))
            .map(str::to_string)
            .ok_or_else(|| Pt2Error::NotPt2 { reason: "no `archive_format` or `models/` member".into() })?;
        let mut members = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            if let Some(rel) = n.strip_prefix(root.as_str()) {
                members.insert(rel.to_string(), i);
            }
        }
        Ok(Archive { data, zip, members })
    }

    /// True when the archive has this member.
    pub fn has(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// Member names (relative to the root) under a folder prefix.
    pub fn names_under<'s>(&'s self, prefix: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.members.keys().filter(move |k| k.starts_with(prefix)).map(String::as_str)
    }

    /// A member's bytes: a slice of the file when stored, decompressed otherwise.
    pub fn member(&mut self, name: &str) -> Result<Member<'a>, Pt2Error> {
        let bad = |reason: String| Pt2Error::BadMember { member: name.to_string(), reason };
        let &index = self.members.get(name).ok_or_else(|| Pt2Error::MissingMember { member: name.to_string() })?;
        let data = self.data;
        let (method, start, csize, size, crc32) = {
            let f = self.zip.by_index_raw(index).map_err(|e| bad(format!("cannot locate its data: {e}")))?;
            (f.compression(), f.data_start(), f.compressed_size(), f.size(), f.crc32())
        };
        match method {
            CompressionMethod::Stored => {
                if csize != size {
                    return Err(bad(format!("stored member with compressed size {csize} != size {size}")));
                }
                let end = start.checked_add(size).filter(|&e| e <= data.len() as u64).ok_or_else(|| {
                    bad(format!("its {size} bytes at offset {start} run past the end of the file (truncated?)"))
                })?;
                Ok(Member {
                    bytes: Cow::Borrowed(&data[start as usize..end as usize]),
                    file_offset: Some(start),
                    crc32,
                })
            }
            CompressionMethod::Deflated => {
                if size > MAX_INFLATED {
                    return Err(bad(format!("deflated member of {size} bytes is too large")));
                }
                let f = self.zip.by_index(index).map_err(|e| bad(format!("cannot open: {e}")))?;
                let mut buf = Vec::with_capacity(size.min(1 << 24) as usize);
                // The zip reader checks the CRC when it reaches the end.
                f.take(MAX_INFLATED).read_to_end(&mut buf).map_err(|e| bad(format!("cannot inflate: {e}")))?;
                Ok(Member { bytes: Cow::Owned(buf), file_offset: None, crc32: 0 }.with_checked_crc())
            }
            other => Err(bad(format!("unsupported compression method {other}"))),
        }
    }
}

/// The root folder (with its trailing `/`, or empty) of a member that marks an archive.
fn root_of(name: &str) -> Option<&str> {
    let marks = |rest: &str| rest == "archive_format" || rest.starts_with("models/");
    if marks(name) {
        return Some("");
    }
    let slash = name.find('/')?;
    marks(&name[slash + 1..]).then(|| &name[..slash + 1])
}

impl Member<'_> {
    /// A member whose CRC the decompressor already checked.
    fn with_checked_crc(mut self) -> Self {
        self.crc32 = crc32fast::hash(&self.bytes);
        self
    }
}

//! `torch.export.save` archives (`.pt2`, PyTorch 2.11, export schema 8.x).
//!
//! An archive is a zip with one root folder holding:
//! - `models/<model>.json`: the exported program (graph, signature, range constraints);
//! - `data/weights/<model>_weights_config.json` + `weight_N`: parameters and buffers as raw
//!   storages with a view (dtype, sizes, strides, storage offset) per FQN;
//! - `data/constants/<model>_constants_config.json` + `tensor_N`: lifted tensor constants;
//! - `archive_format` (`pt2`), `byteorder` (`little`), sample inputs (ignored).
//!
//! [`read`] memory-maps the file; weights that are contiguous slices of a stored member are
//! referenced in place ([`genie_ir::WeightData::External`]) and hashed straight from the map,
//! so importing never copies them. The program and its single entry are named after the file
//! stem (`prefill.pt2` → entry `prefill`); an archive holding several models gives one entry
//! per model (`<stem>.<model>`, except `model` itself).
//!
//! The graph becomes an SRG: placeholders for parameters, buffers and constants become weight
//! values named by FQN; user inputs become graph inputs; symbolic-int nodes (`sym_size`,
//! `_operator.add`, …) are folded into [`genie_ir::Dim`] attributes; in-place ops get a fresh
//! output value that later uses read; buffer mutations stay explicit as graph outputs.

mod archive;
mod build;
mod error;
mod ops;
mod payload;
mod schema;
mod sym;

use std::path::Path;

use genie_ir::{DType, Program};

pub use error::Pt2Error;
pub use ops::supports;

use archive::Archive;

/// Import a `.pt2` archive, memory-mapping it; weights are referenced in place.
pub fn read(path: &Path) -> Result<Program, Pt2Error> {
    let file = std::fs::File::open(path).map_err(Pt2Error::Io)?;
    let len = file.metadata().map_err(Pt2Error::Io)?.len();
    let name = stem(path);
    if len == 0 {
        return import(&[], &name, None);
    }
    // SAFETY: the map is read-only and lives only for this call. Another process truncating
    // the file while we read it could fault; that is the usual caveat of mapped model files.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(Pt2Error::Io)?;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let release = |bytes: &[u8]| crate::mmap::release_pages(&map, bytes);
    import(&map, &name, Some(&payload::External { path: &path, release: &release }))
}

/// Import an archive held in memory. The program is named `name`; weights are stored inline.
pub fn read_bytes(name: &str, bytes: &[u8]) -> Result<Program, Pt2Error> {
    import(bytes, name, None)
}

/// The file stem, used as program and entry name.
fn stem(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string()
}

fn import(data: &[u8], name: &str, external: Option<&payload::External<'_>>) -> Result<Program, Pt2Error> {
    let mut archive = Archive::open(data)?;
    if archive.has("archive_format") {
        let m = archive.member("archive_format")?;
        m.check_crc("archive_format")?;
        let text = String::from_utf8_lossy(&m.bytes);
        if text.trim() != "pt2" {
            return Err(Pt2Error::NotPt2 { reason: format!("archive_format is `{}`, expected `pt2`", text.trim()) });
        }
    }
    if archive.has("byteorder") {
        let m = archive.member("byteorder")?;
        let text = String::from_utf8_lossy(&m.bytes).trim().to_string();
        if text != "little" {
            return Err(Pt2Error::UnsupportedFormat {
                member: "byteorder".into(),
                reason: format!("byte order `{text}` (only little-endian archives are read)"),
            });
        }
    }
    let models: Vec<String> = archive
        .names_under("models/")
        .filter_map(|n| n.strip_prefix("models/")?.strip_suffix(".json"))
        .filter(|m| !m.is_empty() && !m.contains('/'))
        .map(str::to_string)
        .collect();
    if models.is_empty() {
        return Err(Pt2Error::MissingMember { member: "models/model.json".into() });
    }
    let mut program = Program::new(name);
    for model in &models {
        let entry = if models.len() == 1 || model == "model" { name.to_string() } else { format!("{name}.{model}") };
        let member = format!("models/{model}.json");
        let bytes = archive.member(&member)?;
        bytes.check_crc(&member)?;
        let ep: schema::ExportedProgram = parse_json(&member, &bytes.bytes)?;
        if let Some(v) = &ep.schema_version {
            if v.major != 8 {
                return Err(Pt2Error::UnsupportedFormat {
                    member,
                    reason: format!("export schema major version {} (this reader reads 8)", v.major),
                });
            }
        }
        let mut payloads = payload::Payloads::load(&mut archive, model)?;
        let mut ctx = build::Builder::new(&ep, &member, &entry);
        let graph = ctx.build(&mut archive, &mut payloads, &mut program.weights, external)?;
        program.entries.push(graph);
    }
    Ok(program)
}

/// Parse a JSON member.
fn parse_json<T: serde::de::DeserializeOwned>(member: &str, bytes: &[u8]) -> Result<T, Pt2Error> {
    serde_json::from_slice(bytes).map_err(|source| Pt2Error::Json { member: member.to_string(), source })
}

/// The export schema's `ScalarType` code → dtype.
fn dtype_of(code: i64) -> Option<DType> {
    Some(match code {
        1 => DType::Uint8,
        2 => DType::Int8,
        3 => DType::Int16,
        4 => DType::Int32,
        5 => DType::Int64,
        6 => DType::Float16,
        7 => DType::Float32,
        8 => DType::Float64,
        10 => DType::Complex64,
        11 => DType::Complex128,
        12 => DType::Bool,
        13 => DType::Bfloat16,
        29 => DType::Float8E4m3fn,
        30 => DType::Float8E5m2,
        _ => return None,
    })
}

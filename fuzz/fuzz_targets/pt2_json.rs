//! Arbitrary bytes as the `models/model.json` of an otherwise well-formed archive (with the
//! weights of the `edge` fixture), so the fuzzer reaches the JSON and graph-building code that
//! CRC checks shield from `pt2_read`. Seed it with `models/model.json` of the fixtures.
#![no_main]

use std::io::{Cursor, Read, Write};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// Every member of the `edge` fixture except its program.
fn members() -> &'static Vec<(String, Vec<u8>)> {
    static MEMBERS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    MEMBERS.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testsuite/fixtures/edge/model.pt2");
        let bytes = std::fs::read(path).expect("the edge fixture");
        let mut zin = zip::ZipArchive::new(Cursor::new(bytes)).expect("zip");
        let mut out = Vec::new();
        for i in 0..zin.len() {
            let mut f = zin.by_index(i).expect("member");
            let name = f.name().to_string();
            let mut data = Vec::new();
            f.read_to_end(&mut data).expect("read");
            if !name.ends_with("models/model.json") {
                out.push((name, data));
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members() {
        z.start_file(name.as_str(), opts).expect("start");
        z.write_all(bytes).expect("write");
    }
    z.start_file("model/models/model.json", opts).expect("start");
    z.write_all(data).expect("write");
    let archive = z.finish().expect("finish").into_inner();
    if let Ok(program) = genie_frontends::pt2::read_bytes("fuzz", &archive) {
        let _ = genie_ir::verify_program(&program);
    }
});

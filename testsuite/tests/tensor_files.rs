//! The tch-free safetensors reader (`genie_wire::tensor_file`) agrees with libtorch's on every
//! tensor file in the fixtures: the same names, dtypes, shapes and bytes.

use std::path::{Path, PathBuf};

use genie_runtime::exec::tensor_to_bytes;
use genie_runtime::tensor::dtype_of;
use genie_runtime::wire::tensor_file::read_safetensors;
use tch::Tensor;

fn safetensors_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            safetensors_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            out.push(path);
        }
    }
}

#[test]
fn the_reader_agrees_with_libtorch_on_every_fixture() {
    let mut files = Vec::new();
    safetensors_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"), &mut files);
    assert!(files.len() >= 10, "fixtures have tensor files: {files:?}");
    for path in files {
        let ours = read_safetensors(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let torch = Tensor::read_safetensors(&path).unwrap();
        assert_eq!(ours.tensors.len(), torch.len(), "{}", path.display());
        for (name, t) in torch {
            let mine = &ours.tensors[&name];
            assert_eq!(Some(mine.dtype), dtype_of(t.kind()), "{}: {name}", path.display());
            assert_eq!(mine.shape, t.size(), "{}: {name}", path.display());
            assert_eq!(mine.data, tensor_to_bytes(&t).unwrap(), "{}: {name}", path.display());
        }
    }
}

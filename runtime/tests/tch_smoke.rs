//! Smoke test: libtorch links, loads and computes.

use tch::{Device, Kind, Tensor};

#[test]
fn matmul_through_libtorch_gives_the_right_values() {
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).reshape([2, 3]);
    let b = Tensor::from_slice(&[7.0f32, 8.0, 9.0, 10.0, 11.0, 12.0]).reshape([3, 2]);
    let c = a.matmul(&b);
    assert_eq!(c.size(), vec![2, 2]);
    assert_eq!(c.kind(), Kind::Float);
    let got: Vec<f32> = Vec::<f32>::try_from(c.flatten(0, -1)).expect("f32 values");
    // [1 2 3; 4 5 6] x [7 8; 9 10; 11 12] = [58 64; 139 154]
    assert_eq!(got, vec![58.0, 64.0, 139.0, 154.0]);
    assert_eq!(c.device(), Device::Cpu);
}

/// The libtorch this process loaded is the pinned wheel's (`torch==2.11.0` in the project's
/// `.venv`, found through the rpath the build embeds), not some other copy on the machine.
#[test]
fn libtorch_is_the_pinned_version() {
    let x = Tensor::arange(10, (Kind::Int64, Device::Cpu));
    assert_eq!(x.sum(Kind::Int64).int64_value(&[]), 45);
    let maps = std::fs::read_to_string("/proc/self/maps").expect("this process's mappings");
    let loaded: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|path| path.ends_with("/libtorch_cpu.so"))
        .collect();
    let first = *loaded.first().expect("libtorch_cpu.so is mapped");
    assert!(loaded.iter().all(|p| *p == first), "two copies of libtorch are loaded: {loaded:?}");
    let lib = std::path::Path::new(first).canonicalize().unwrap();
    let torch = lib.parent().and_then(|l| l.parent()).expect("torch/lib/libtorch_cpu.so");
    let version = std::fs::read_to_string(torch.join("version.py")).expect("torch/version.py beside the library");
    assert!(version.contains("__version__ = '2.11.0"), "{} is not torch 2.11.0:\n{version}", lib.display());
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv").canonicalize().unwrap();
    assert!(lib.starts_with(&venv), "{} is not the project's pinned wheel under {}", lib.display(), venv.display());
}

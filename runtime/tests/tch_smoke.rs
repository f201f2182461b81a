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

#[test]
fn libtorch_is_the_pinned_version() {
    // tch 0.24 is built against PyTorch 2.11.0; a mismatched libtorch would fail to link or load,
    // and ops would disagree. Check a numerically exact op as a second witness.
    let x = Tensor::arange(10, (Kind::Int64, Device::Cpu));
    let s: i64 = x.sum(Kind::Int64).int64_value(&[]);
    assert_eq!(s, 45);
}

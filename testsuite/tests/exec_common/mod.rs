//! Helpers shared by the executor's end-to-end tests (`exec_fixtures.rs`, `exec_onnx_suite.rs`).

#![allow(dead_code)]

use std::path::PathBuf;

use genie_codegen::{ProgramPlan, Step, CLIENT};
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_ir::Program;
use genie_passes::placement::ClusterSpec;
use tch::{Device, Kind, Tensor};

/// Where the tests run plans: `GENIE_EXEC_DEVICE` (`cpu`, `cuda`, `cuda:N`), CPU by default.
pub fn test_device() -> Device {
    match std::env::var("GENIE_EXEC_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        Ok(s) if s.starts_with("cuda:") => Device::Cuda(s[5..].parse().expect("GENIE_EXEC_DEVICE=cuda:N")),
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok(other) => panic!("GENIE_EXEC_DEVICE={other}: expected cpu, cuda or cuda:N"),
    }
}

/// Devices of a plan that execute at least one node.
pub fn working_devices(plan: &ProgramPlan) -> Vec<String> {
    let mut out: Vec<String> = plan
        .entries
        .iter()
        .flat_map(|e| &e.plans)
        .filter(|p| p.device != CLIENT && p.steps.iter().any(|s| matches!(s, Step::Exec { .. })))
        .map(|p| p.device.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Compile for `workers` local workers. With one worker it has room for everything. With more,
/// each worker gets less memory than one worker needs for the whole program (its peak: weights,
/// KV cache and activations), so placement must split it: the smallest of a few sizes that fits.
pub fn compile(program: &Program, workers: usize) -> Result<ProgramPlan, String> {
    let options = CompileOptions { max_seq: Some(16), ..CompileOptions::default() };
    let mut p = program.clone();
    let whole = compile_program(&mut p, &ClusterSpec::local_workers(1, 1 << 40), &options)
        .map_err(|e| format!("on one worker: {e:?}"))?;
    if workers == 1 {
        return Ok(whole);
    }
    let peak = whole.devices[0].peak_bytes.max(2);
    let mut last = String::new();
    for memory in [60u64, 70, 80, 90, 95].iter().map(|pc| peak * pc / 100).chain([peak - 1]) {
        let mut p = program.clone();
        let cluster = ClusterSpec::local_workers(workers, memory);
        match compile_program(&mut p, &cluster, &options) {
            Ok(plan) => return Ok(plan),
            Err(e) => last = format!("{memory} B per worker: {e:?}"),
        }
    }
    Err(format!("no worker memory below one worker's peak of {peak} B fits: {last}"))
}

/// fp32 tolerance: |got - want| <= ATOL + RTOL * |want|.
pub const RTOL: f64 = 1e-4;
pub const ATOL: f64 = 1e-5;

/// Compare a result with a reference: same dtype and shape; floats to `rtol`/`atol` (NaN where
/// the reference has NaN, infinities equal), everything else exactly.
pub fn compare(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    let got = got.to_device(Device::Cpu);
    let want = want.to_device(Device::Cpu);
    if got.kind() != want.kind() {
        return Err(format!("{what}: dtype {:?}, the reference is {:?}", got.kind(), want.kind()));
    }
    if got.size() != want.size() {
        return Err(format!("{what}: shape {:?}, the reference is {:?}", got.size(), want.size()));
    }
    if got.numel() == 0 {
        return Ok(());
    }
    let floating = matches!(want.kind(), Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double);
    if !floating {
        let equal = if matches!(want.kind(), Kind::ComplexFloat | Kind::ComplexDouble) {
            got.equal(&want)
        } else {
            got.eq_tensor(&want).all().int64_value(&[]) != 0
        };
        return if equal { Ok(()) } else { Err(format!("{what}: values differ ({:?})", want.kind())) };
    }
    let (g, w) = (got.to_kind(Kind::Double), want.to_kind(Kind::Double));
    let nan_ok = g.isnan().eq_tensor(&w.isnan()).all().int64_value(&[]) != 0;
    let inf_ok = w.isinf().logical_not().logical_or(&g.eq_tensor(&w)).all().int64_value(&[]) != 0;
    let finite = w.isfinite();
    let diff = (&g - &w).abs().where_self(&finite, &Tensor::zeros_like(&w));
    let tol = w.abs().where_self(&finite, &Tensor::zeros_like(&w)) * rtol + atol;
    let excess = (&diff - &tol).where_self(&g.isnan().logical_not(), &Tensor::zeros_like(&w));
    let worst = excess.max().double_value(&[]);
    if nan_ok && inf_ok && worst <= 0.0 {
        return Ok(());
    }
    let max_abs = diff.max().double_value(&[]);
    Err(format!(
        "{what}: max |diff| {max_abs:.3e} exceeds atol {atol:e} + rtol {rtol:e}*|ref| by {worst:.3e} (nan match {nan_ok}, inf match {inf_ok})"
    ))
}

/// Read a safetensors file into (name → tensor).
pub fn read_safetensors(path: &PathBuf) -> std::collections::BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

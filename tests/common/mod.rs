//! Helpers shared by the root package's end-to-end tests.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use genie_codegen::{EntryPlan, ProgramPlan};
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_ir::OutputKind;
use genie_ir::Program as SrgProgram;
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientOptions, Cluster, Program};
use genie_runtime::deploy::{self, Deployed, Deployment, LocalMemory};
use tch::Device;
use tch::{Kind, Tensor};

/// A file of the committed test fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testsuite/fixtures").join(rel)
}

/// A safetensors file as named tensors.
pub fn read(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

/// Poll `check` every 20 ms until it gives a value or `within` has passed: tests wait for a
/// worker to do something (a sweep, an eviction) this way, never by sleeping and then asserting.
pub async fn poll<T>(within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `genie worker` process, killed when dropped.
pub struct WorkerProcess {
    pub child: Child,
    /// Where it listens (`127.0.0.1:PORT`).
    pub address: String,
    /// Its certificate's fingerprint, to pin.
    pub fingerprint: String,
    /// Where it serves Prometheus metrics (`127.0.0.1:PORT`), when started with `--metrics`.
    pub metrics: Option<String>,
    /// The cores its calls share, as it reports them (`threads N`).
    pub threads: usize,
}

impl WorkerProcess {
    /// Whether the process is still running (it neither exited nor was killed).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `genie worker` on a free loopback port (unless `extra` gives a `--listen`) with `extra`
/// flags and read where it listens.
pub fn worker_process(extra: &[&str]) -> WorkerProcess {
    let listen: &[&str] = if extra.contains(&"--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
    let child = Command::new(env!("CARGO_BIN_EXE_genie"))
        .arg("worker")
        .args(listen)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("genie worker starts");
    // Owned from here, so that a failed check below kills it rather than leaving it running.
    let mut worker =
        WorkerProcess { child, address: String::new(), fingerprint: String::new(), metrics: None, threads: 0 };
    let mut stdout = std::io::BufReader::new(worker.child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // "genie worker listening on ADDR device cpu fingerprint FP memory M threads N"
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| words.iter().position(|x| *x == w).map(|i| words[i + 1].to_string()).expect(&line);
    (worker.address, worker.fingerprint) = (after("on"), after("fingerprint"));
    worker.threads = after("threads").parse().expect(&line);
    // "genie worker metrics on http://ADDR/metrics"
    worker.metrics = extra.contains(&"--metrics").then(|| {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap_or_default();
        url.trim_start_matches("http://").trim_end_matches("/metrics").to_string()
    });
    worker
}

/// Write a cluster file for two 100 KB devices `w0`, `w1` (so a model is split) on `workers`,
/// pinning their fingerprints when `pin`; returns `path`.
pub fn cluster_file(path: &Path, workers: &[WorkerProcess], pin: bool) -> PathBuf {
    let entries: Vec<String> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| match pin {
            true => format!("\"w{i}\": (address: \"{}\", fingerprint: \"{}\")", w.address, w.fingerprint),
            false => format!("\"w{i}\": (address: \"{}\")", w.address),
        })
        .collect();
    let text = format!(
        "(devices: [(name: \"w0\", kind: cpu, memory: \"100KB\"), (name: \"w1\", kind: cpu, memory: \"100KB\")],\n \
         deployment: (workers: {{{}}}))",
        entries.join(", ")
    );
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

pub fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_close_within(what, got, want, 1e-4, 1e-5)
}

pub fn assert_close_within(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    assert_eq!(got.kind(), want.kind(), "{what}: dtype");
    if want.is_floating_point() {
        let (g, w) = (got.to_kind(Kind::Double), want.to_kind(Kind::Double));
        let excess = ((&g - &w).abs() - (w.abs() * rtol + atol)).max().double_value(&[]);
        assert!(excess <= 0.0, "{what}: differs beyond rtol {rtol}, atol {atol} (by {excess})");
    } else {
        assert!(got.equal(want), "{what}: values differ");
    }
}

/// One call's outputs against the reference: exactly the plan's user outputs came back; every
/// reference output is either one of them (same shape, dtype and values within tolerance) or a
/// state output the plan keeps on its worker; any user output the reference lacks is the new
/// value of a mutated buffer or input (`torch.export` returns those; eager PyTorch does not).
pub fn assert_outputs(
    what: &str,
    got: &BTreeMap<String, Tensor>,
    want: &BTreeMap<String, Tensor>,
    entry: &EntryPlan,
    graph: &genie_ir::Graph,
) {
    let user: BTreeSet<&str> = entry.outputs.iter().filter(|o| o.slot.is_none()).map(|o| o.name.as_str()).collect();
    let state: BTreeSet<&str> = entry.outputs.iter().filter(|o| o.slot.is_some()).map(|o| o.name.as_str()).collect();
    let received: BTreeSet<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(received, user, "{what}: the outputs that came back");
    for (name, w) in want {
        match got.get(name) {
            Some(g) => assert_close(&format!("{what}.{name}"), g, w),
            None => assert!(state.contains(name.as_str()), "{what}: reference output {name} did not come back"),
        }
    }
    let inputs: BTreeSet<&str> = graph.inputs.iter().map(|v| graph.value(*v).name.as_str()).collect();
    for name in received.iter().filter(|n| !want.contains_key(**n)) {
        let output = graph.outputs.iter().find(|o| o.name == *name).expect("a graph output");
        let mutation = matches!(output.kind, OutputKind::BufferMutation { .. }) || inputs.contains(name);
        assert!(mutation, "{what}: output {name} has no reference and is no mutation");
    }
}

/// Compile for two workers with memory just small enough that the program must be split.
pub fn compile_split(files: &[PathBuf]) -> (ProgramPlan, SrgProgram) {
    compile_split_program(genie_frontends::load(files).expect("fixture loads"), files)
}

pub fn compile_split_program(base: SrgProgram, files: &[PathBuf]) -> (ProgramPlan, SrgProgram) {
    let weights = base.weights.total_bytes();
    // Start below the weights and grow until placement finds a split that fits.
    let mut memory = weights * 6 / 10 + 4096;
    // Activations can outweigh the weights many times over (small CNNs on images).
    for _ in 0..80 {
        let mut program = base.clone();
        let cluster = ClusterSpec::local_workers(2, memory);
        let options = CompileOptions { max_seq: Some(32), ..CompileOptions::default() };
        if let Ok(plan) = compile_program(&mut program, &cluster, &options) {
            let busy = plan.devices.iter().filter(|d| d.nodes > 0).count();
            assert_eq!(busy, 2, "{files:?}: {memory} B per worker should force a split");
            return (plan, program);
        }
        memory = memory * 5 / 4;
    }
    panic!("{files:?}: no two-worker split found");
}

pub fn compile_one(files: &[PathBuf]) -> (ProgramPlan, SrgProgram) {
    let mut program = genie_frontends::load(files).expect("fixture loads");
    let cluster = ClusterSpec::local_workers(1, 8 << 30);
    let plan = compile_program(&mut program, &cluster, &CompileOptions::default()).expect("compiles");
    (plan, program)
}

pub struct Running {
    pub runtime: tokio::runtime::Runtime,
    /// Keeps the embedded workers up.
    pub deployed: Deployed,
    pub cluster: Cluster,
    pub program: Program,
}

pub fn start(plan: ProgramPlan, srg: &SrgProgram) -> Running {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Each worker enforces its device's memory from the cluster spec, so the plan's peak must
    // fit where placement put it.
    let local = Deployment::Local { device: Device::Cpu, memory: LocalMemory::FromPlan };
    let deployed = runtime
        .block_on(deploy::deploy(Arc::new(plan), &srg.weights, &local, &ClientOptions::default()))
        .expect("deploys");
    let (cluster, program) = (deployed.cluster().clone(), deployed.program().clone());
    Running { runtime, deployed, cluster, program }
}

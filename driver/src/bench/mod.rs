//! `genie bench`: the semantic advantage, measured. Four modes on the same runtime, workers and
//! models: `local` (in-process tch, the floor), `genie` (the compiled plan: resident weights and
//! state, worker-to-worker cuts), `per-op` (every op its own request, as API-forwarding systems
//! do) and `blind` (the whole graph as one plan with weights resident, but the KV cache travels
//! with every call). Plus compile time next to onnxruntime and QUIC next to TCP.
//!
//! Every remote mode reaches its workers through the runtime's one deployment path
//! ([`genie_runtime::deploy`]); per-op remoting is the runtime's own mode
//! ([`genie_runtime::per_op`]).

mod common;
pub mod pd;
pub mod recovery;
mod report;
pub mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use genie_codegen::{EntryPlan, JitSummary, ProgramPlan};
use genie_ir::WeightStore;
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientError, ClientOptions};
use genie_runtime::deploy::{self, DeployError, Deployment, LocalMemory};
use genie_runtime::exec::ExecError;
use genie_runtime::local::LocalCluster;
use genie_runtime::per_op::{PerOpError, PerOpProgram, WeightMode};
use genie_runtime::progress::{Progress, ProgressSink};
use tch::{Device, Kind, Tensor};

pub use report::{plot, table, torch_ratios, CompileRow, Report, RunRow, TorchRatio, TransportRow};

use crate::pipeline::{compile_program, CompileOptions, PipelineError};

/// What to measure, and where things are.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// `default`: GPT-2-small decode at contexts 128/512/2048, prefill 512, ResNet-18 at batch 1
    /// and 8, a BERT-base encoder (models generated once into `models`). `quick`: the small test
    /// fixtures, in seconds. `pd`/`pd-quick` ([`pd::run`]), `serve`/`serve-quick`
    /// ([`serve::run`]) and `recovery`/`recovery-quick` ([`recovery::run`]) are suites of their
    /// own.
    pub suite: String,
    /// Where the default suite's models are generated (once).
    pub models: PathBuf,
    /// Workers for the `genie` mode; with more than one the model is split across them.
    pub workers: usize,
    /// Timed calls per mode and workload (fewer when the time budget runs out).
    pub runs: usize,
    /// Seconds of timed calls per mode and workload before stopping early (at least 3 calls).
    pub budget_s: f64,
    /// The project's root: fixtures and scripts are found under it.
    pub root: PathBuf,
    /// The Python with torch, onnx and onnxruntime (the project's venv).
    pub python: PathBuf,
    /// Where long steps (generating the models) report progress.
    pub progress: ProgressSink,
    /// The `genie` binary, for suites that start `genie worker` processes (`pd`, `serve`,
    /// `recovery`).
    pub genie: Option<PathBuf>,
    /// The modes to run (`local`, `genie`, `blind`, `per-op`, `torch`); empty: all.
    pub modes: Vec<String>,
    /// Run beside a CPU-bound competitor: this many busy processes (0: none), started before
    /// the workloads and stopped after.
    pub competitors: usize,
    /// The workloads to run (`decode`, `prefill`, `cnn`, `encoder`); empty: all.
    pub workloads: Vec<String>,
    /// Fused element-wise regions in the plans (compiled loops); `false` runs op by op.
    pub jit: bool,
}

impl BenchOptions {
    fn runs_mode(&self, mode: &str) -> bool {
        self.modes.is_empty() || self.modes.iter().any(|m| m == mode)
    }
}

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("unknown suite `{0}` (default, quick, pd, pd-quick, serve, serve-quick, recovery, recovery-quick)")]
    UnknownSuite(String),
    #[error("unknown mode `{0}` (local, genie, blind, per-op, torch)")]
    UnknownMode(String),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
    #[error("{what} failed: {reason}")]
    Script { what: String, reason: String },
    #[error("{workload}: {reason}")]
    Workload { workload: String, reason: String },
    #[error("compiling {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" "))]
    Compile {
        files: Vec<PathBuf>,
        #[source]
        source: Box<PipelineError>,
    },
    /// A model file does not load (the error names the file).
    #[error(transparent)]
    Load(#[from] genie_frontends::FrontendError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    PerOp(#[from] PerOpError),
    #[error("the benchmark's runtime: {0}")]
    Io(#[from] std::io::Error),
    #[error("transport benchmark: {0}")]
    Transport(String),
}

/// One workload: which program, which entry, with which inputs.
struct Workload {
    workload: &'static str,
    context: Option<i64>,
    /// Batch size where a workload is run at several (the CNN).
    batch: Option<i64>,
    /// Label for progress lines.
    label: String,
    files: Vec<PathBuf>,
    entry: String,
    inputs: Inputs,
}

/// All inputs of an entry by name, state (KV) included, and the file they were read from (the
/// `torch` mode reads it too).
struct Inputs {
    tensors: BTreeMap<String, Tensor>,
    file: PathBuf,
}

fn read_tensors(path: &Path) -> Result<Inputs, BenchError> {
    let list =
        Tensor::read_safetensors(path).map_err(|source| BenchError::Read { path: path.to_path_buf(), source })?;
    Ok(Inputs { tensors: list.into_iter().collect(), file: path.to_path_buf() })
}

/// Generate the full-size benchmark models into `options.models` (the script skips what is
/// already there).
fn generate_models(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<(), BenchError> {
    let dir = &options.models;
    progress(&format!("== generating the benchmark models into {} (once)", dir.display()));
    let script = options.root.join("testsuite/scripts/make_bench_models.py");
    let task = "generating the benchmark models".to_string();
    let report = |finished| options.progress.report(Progress { task: task.clone(), done: 0, total: None, finished });
    report(false);
    let status = Command::new(&options.python).arg(&script).arg("--out").arg(dir).status();
    report(true);
    let status = status?;
    if !status.success() {
        return Err(BenchError::Script { what: script.display().to_string(), reason: status.to_string() });
    }
    Ok(())
}

fn workloads(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Vec<Workload>, BenchError> {
    match options.suite.as_str() {
        "quick" => {
            let fx = options.root.join("testsuite/fixtures");
            let gpt2 = vec![fx.join("gpt2/prefill.pt2"), fx.join("gpt2/decode.pt2")];
            let decode = read_tensors(&fx.join("gpt2/decode.inputs.safetensors"))?;
            let context = decode.tensors.get("past_key_0").map(|t| t.size()[2]);
            let one = |workload, batch, label: &str, files: Vec<PathBuf>, entry: &str, inputs| Workload {
                workload,
                context: None,
                batch,
                label: label.into(),
                files,
                entry: entry.into(),
                inputs,
            };
            Ok(vec![
                Workload { context, ..one("decode", None, "gpt2 fixture decode", gpt2.clone(), "decode", decode) },
                one(
                    "prefill",
                    None,
                    "gpt2 fixture prefill",
                    gpt2,
                    "prefill",
                    read_tensors(&fx.join("gpt2/prefill.inputs.safetensors"))?,
                ),
                one(
                    "cnn",
                    Some(1),
                    "resnet fixture",
                    vec![fx.join("resnet/model.pt2")],
                    "model",
                    read_tensors(&fx.join("resnet/model.inputs.safetensors"))?,
                ),
                one(
                    "encoder",
                    None,
                    "bert fixture",
                    vec![fx.join("bert/model.pt2")],
                    "model",
                    read_tensors(&fx.join("bert/model.inputs.safetensors"))?,
                ),
            ])
        }
        "default" => {
            generate_models(options, progress)?;
            let dir = &options.models;
            let g = dir.join("gpt2s");
            let gpt2 = vec![g.join("prefill.pt2"), g.join("decode.pt2")];
            let mut list = Vec::new();
            for context in [128, 512, 2048] {
                list.push(Workload {
                    workload: "decode",
                    context: Some(context),
                    batch: None,
                    label: format!("gpt2-small decode @{context}"),
                    files: gpt2.clone(),
                    entry: "decode".into(),
                    inputs: read_tensors(&g.join(format!("decode_{context}.inputs.safetensors")))?,
                });
            }
            list.push(Workload {
                workload: "prefill",
                context: Some(512),
                batch: None,
                label: "gpt2-small prefill 512".into(),
                files: gpt2,
                entry: "prefill".into(),
                inputs: read_tensors(&g.join("prefill_512.inputs.safetensors"))?,
            });
            for batch in [1, 8] {
                list.push(Workload {
                    workload: "cnn",
                    context: None,
                    batch: Some(batch),
                    label: format!("resnet-18 batch {batch}"),
                    files: vec![dir.join("cnn/model.pt2")],
                    entry: "model".into(),
                    inputs: read_tensors(&dir.join(format!("cnn/batch_{batch}.inputs.safetensors")))?,
                });
            }
            list.push(Workload {
                workload: "encoder",
                context: Some(128),
                batch: None,
                label: "bert-base encoder seq 128".into(),
                files: vec![dir.join("encoder/model.pt2")],
                entry: "model".into(),
                inputs: read_tensors(&dir.join("encoder/seq_128.inputs.safetensors"))?,
            });
            Ok(list)
        }
        other => Err(BenchError::UnknownSuite(other.to_string())),
    }
}

/// The median and 99th percentile of timed calls, and the last call's bytes and round trips.
struct Timed {
    runs: usize,
    median: f64,
    p99: f64,
    bytes: u64,
    trips: u64,
}

/// Timed calls after one warm-up: at most `runs`, at least 3, stopping once the budget is spent.
fn time_calls(
    options: &BenchOptions,
    runs: usize,
    mut call: impl FnMut() -> Result<(u64, u64), BenchError>,
) -> Result<Timed, BenchError> {
    call()?;
    let mut walls = Vec::new();
    let (mut bytes, mut trips) = (0, 0);
    let started = Instant::now();
    while walls.len() < runs.max(1) {
        let t = Instant::now();
        let (b, r) = call()?;
        walls.push(t.elapsed().as_secs_f64());
        (bytes, trips) = (b, r);
        if walls.len() >= 3 && started.elapsed().as_secs_f64() > options.budget_s {
            break;
        }
    }
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    let p99 = walls[((walls.len() as f64 * 0.99).ceil() as usize).clamp(1, walls.len()) - 1];
    Ok(Timed { runs: walls.len(), median, p99, bytes, trips })
}

/// Compile for `workers` local workers. One worker gets 64 GiB. Several get the least memory
/// (in steps of 15 %) that placement can fit the program in, so the model is really split
/// across them and the cut activations show up on the wire.
fn compile(files: &[PathBuf], workers: usize, no_state: bool) -> Result<(ProgramPlan, WeightStore), BenchError> {
    const ROOMY: u64 = 64 << 30;
    let base = genie_frontends::load(files)?;
    let options = CompileOptions { no_state, max_seq: Some(4096), ..CompileOptions::default() };
    let mut memory = if workers > 1 { (base.weights.total_bytes() / workers as u64).max(1 << 20) } else { ROOMY };
    loop {
        let mut program = base.clone();
        let cluster = ClusterSpec::local_workers(workers, memory.min(ROOMY));
        match compile_program(&mut program, &cluster, &options) {
            Ok(plan) => return Ok((plan, program.weights)),
            Err(e) if memory >= ROOMY => {
                return Err(BenchError::Compile { files: files.to_vec(), source: Box::new(e) })
            }
            Err(_) => memory = memory.saturating_mul(115) / 100,
        }
    }
}

/// The user inputs of an entry (not the ones read from state).
fn user_inputs(entry: &EntryPlan, all: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    entry
        .inputs
        .iter()
        .filter(|i| i.slot.is_none())
        .filter_map(|i| all.get(&i.name).map(|t| (i.name.clone(), t.shallow_clone())))
        .collect()
}

fn tensor_bytes(t: &Tensor) -> u64 {
    t.numel() as u64 * t.kind().elt_size_in_bytes() as u64
}

/// A plan and the weights it runs with, shared by the workloads of one program.
type Compiled = (Arc<ProgramPlan>, Arc<WeightStore>);

/// Embedded CPU workers with no memory limit: the modes compare time and bytes, not fit.
const WORKERS: Deployment = Deployment::Local { device: Device::Cpu, memory: LocalMemory::Unlimited };

/// Run the benchmark; `progress` receives a line per stage and per workload's modes.
pub fn run(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    for m in &options.modes {
        if !["local", "genie", "blind", "per-op", "torch"].contains(&m.as_str()) {
            return Err(BenchError::UnknownMode(m.clone()));
        }
    }
    let mut workloads = workloads(options, progress)?;
    workloads.retain(|w| options.workloads.is_empty() || options.workloads.iter().any(|n| n == w.workload));
    let _competitors = Competitors::start(options.competitors, progress)?;
    let threads = tch::get_num_threads();
    let mut torch = if options.runs_mode("torch") { Some(TorchMode::start(options, threads)?) } else { None };
    let mut rows: Vec<RunRow> = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let client = ClientOptions::default();
    // One compile per program and mode family, shared by its workloads.
    let mut compiled: BTreeMap<(Vec<PathBuf>, usize, bool), Compiled> = BTreeMap::new();
    let mut plan_for = |files: &[PathBuf], workers: usize, no_state: bool| -> Result<Compiled, BenchError> {
        let key = (files.to_vec(), workers, no_state);
        if let Some(v) = compiled.get(&key) {
            return Ok(v.clone());
        }
        let (mut plan, weights) = compile(files, workers, no_state)?;
        if !options.jit {
            genie_codegen::fusion::clear(&mut plan);
        }
        let v = (Arc::new(plan), Arc::new(weights));
        compiled.insert(key, v.clone());
        Ok(v)
    };
    for w in &workloads {
        progress(&format!("== {}", w.label));
        let first_row = rows.len();
        let row = |mode: &str, variant: Option<&str>, t: &Timed, peak: u64| RunRow {
            workload: w.workload.to_string(),
            context: w.context,
            batch: w.batch,
            mode: mode.to_string(),
            variant: variant.map(str::to_string),
            runs: t.runs,
            wall_median_s: t.median,
            wall_p99_s: t.p99,
            bytes_per_call: t.bytes,
            round_trips: t.trips,
            peak_worker_bytes: peak,
            jit: None,
            module: None,
        };
        let entry_of = |plan: &ProgramPlan| {
            plan.entry(&w.entry).cloned().ok_or_else(|| BenchError::Workload {
                workload: w.label.clone(),
                reason: format!("the program has no entry `{}`", w.entry),
            })
        };
        // local: the same plan (one device) executed in this process.
        if options.runs_mode("local") {
            let (plan, weights) = plan_for(&w.files, 1, false)?;
            let mut local = LocalCluster::load(&plan, &weights, Device::Cpu)?;
            let t = time_calls(options, options.runs, || {
                local.run(&w.entry, &w.inputs.tensors)?;
                Ok((0, 0))
            })?;
            let peak = local.resident("worker0").map_or(0, |r| r.bytes())
                + w.inputs.tensors.values().map(tensor_bytes).sum::<u64>();
            rows.push(RunRow { jit: Some(JitSummary::of(&plan)), ..row("local", None, &t, peak) });
        }
        // genie: the compiled plan on workers, state resident where it is used.
        if options.runs_mode("genie") {
            let (plan, weights) = plan_for(&w.files, options.workers, false)?;
            let entry = entry_of(&plan)?;
            let deployed = runtime.block_on(deploy::deploy(plan.clone(), &weights, &WORKERS, &client))?;
            let mut session = runtime.block_on(deployed.program().open_session())?;
            if entry.inputs.iter().any(|i| i.slot.is_some()) {
                // The state a decode step reads comes from a prefill of the same length.
                let context = w.context.ok_or_else(|| BenchError::Workload {
                    workload: w.label.clone(),
                    reason: "a stateful workload needs a context".into(),
                })?;
                let prefill = plan.entries.iter().find(|e| e.name != w.entry).ok_or_else(|| BenchError::Workload {
                    workload: w.label.clone(),
                    reason: "no prefill entry".into(),
                })?;
                let ids = Tensor::arange(context, (Kind::Int64, Device::Cpu)).remainder(1000).reshape([1, context]);
                let name = prefill.inputs[0].name.clone();
                runtime.block_on(session.run(&prefill.name, &BTreeMap::from([(name, ids)])))?;
            }
            let inputs = user_inputs(&entry, &w.inputs.tensors);
            let t = time_calls(options, options.runs, || {
                let out = runtime.block_on(session.run(&w.entry, &inputs))?;
                Ok((out.stats.bytes, out.stats.round_trips as u64))
            })?;
            let peak = plan
                .devices
                .iter()
                .map(|d| runtime.block_on(deployed.cluster().stats(&d.name)).map(|s| s.peak_tensor_bytes).unwrap_or(0))
                .max()
                .unwrap_or(0);
            rows.push(RunRow { jit: Some(JitSummary::of(&plan)), ..row("genie", None, &t, peak) });
            runtime.block_on(deployed.close());
        }
        // blind: one plan, weights resident, no state: the KV cache goes back and forth.
        if options.runs_mode("blind") {
            let (plan, weights) = plan_for(&w.files, 1, true)?;
            let entry = entry_of(&plan)?;
            let deployed = runtime.block_on(deploy::deploy(plan.clone(), &weights, &WORKERS, &client))?;
            let mut session = runtime.block_on(deployed.program().open_session())?;
            let inputs = user_inputs(&entry, &w.inputs.tensors);
            let t = time_calls(options, options.runs, || {
                let out = runtime.block_on(session.run(&w.entry, &inputs))?;
                Ok((out.stats.bytes, out.stats.round_trips as u64))
            })?;
            let peak = runtime.block_on(deployed.cluster().stats("worker0")).map(|s| s.peak_tensor_bytes).unwrap_or(0);
            rows.push(row("blind", None, &t, peak));
            runtime.block_on(deployed.close());
        }
        // per-op: every op is a request; its inputs go out and its outputs come back.
        let per_op_modes =
            if options.runs_mode("per-op") { &[WeightMode::Resident, WeightMode::EveryCall][..] } else { &[] };
        for &mode in per_op_modes {
            let (plan, weights) = plan_for(&w.files, 1, true)?;
            let per_op = PerOpProgram::new(plan.clone(), &weights)?;
            let workers = [("worker0".to_string(), 0)];
            let connected = runtime.block_on(deploy::connect(&WORKERS, &workers, &client))?;
            if mode == WeightMode::Resident {
                runtime.block_on(per_op.upload_weights(connected.cluster(), "worker0"))?;
            }
            let runs = if mode == WeightMode::Resident { options.runs.min(5) } else { 3 };
            let t = time_calls(options, runs, || {
                let out =
                    per_op.call(runtime.handle(), connected.cluster(), "worker0", &w.entry, &w.inputs.tensors, mode)?;
                Ok((out.stats.bytes, out.stats.round_trips as u64))
            })?;
            let peak = runtime.block_on(connected.cluster().stats("worker0")).map(|s| s.peak_tensor_bytes).unwrap_or(0);
            let variant = match mode {
                WeightMode::Resident => "cached-weights",
                WeightMode::EveryCall => "weights-every-call",
            };
            rows.push(row("per-op", Some(variant), &t, peak));
            runtime.block_on(connected.close());
        }
        // torch: the workload's own PyTorch module, eager, right after the other modes.
        if let Some(torch) = &mut torch {
            rows.push(torch.time(w)?);
        }
        for line in report::row_lines(&rows[first_row..]) {
            progress(&line);
        }
    }
    let vs_torch = torch_ratios(&rows);
    let compile = compile_times(options, progress)?;
    progress("== transport: QUIC (the runtime's tuned endpoints, TLS) and TCP on loopback");
    let bulk = if options.suite == "quick" { 32 << 20 } else { 256 << 20 };
    let figures =
        genie_runtime::transport::bench::measure(bulk, 3, 500).map_err(|e| BenchError::Transport(e.to_string()))?;
    let transport = TransportRow {
        quic_bulk_gbps: figures.quic_bulk_gbps,
        tcp_bulk_gbps: figures.tcp_bulk_gbps,
        quic_rtt_us: figures.quic_rtt_us,
        tcp_rtt_us: figures.tcp_rtt_us,
    };
    Ok(Report {
        suite: options.suite.clone(),
        workers: options.workers,
        threads,
        competitors: options.competitors,
        runs: rows,
        vs_torch,
        compile,
        transport,
    })
}

/// CPU-bound competitor processes (busy shell loops), killed when dropped.
struct Competitors(Vec<std::process::Child>);

impl Competitors {
    fn start(count: usize, progress: &mut dyn FnMut(&str)) -> Result<Competitors, BenchError> {
        if count > 0 {
            progress(&format!("== {count} CPU-bound competitor process(es) running beside every mode"));
        }
        let mut started = Competitors(Vec::new());
        for _ in 0..count {
            started.0.push(Command::new("sh").args(["-c", "while :; do :; done"]).spawn()?);
        }
        Ok(started)
    }
}

impl Drop for Competitors {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `torch` mode: each workload's own PyTorch module, eager under `torch.inference_mode()`, in
/// the venv's Python, on the same inputs and thread count, timed as the other modes are
/// (`testsuite/scripts/bench_torch.py` says which module each workload uses). One Python process
/// for the whole run, asked for one workload at a time right after the other modes ran it.
struct TorchMode {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    script: PathBuf,
}

impl TorchMode {
    fn start(options: &BenchOptions, threads: i32) -> Result<TorchMode, BenchError> {
        let script = options.root.join("testsuite/scripts/bench_torch.py");
        let mut child = Command::new(&options.python)
            .arg(&script)
            .args(["--suite", &options.suite, "--threads", &threads.to_string()])
            .args(["--runs", &options.runs.to_string(), "--budget-s", &options.budget_s.to_string()])
            .arg("--root")
            .arg(&options.root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(BenchError::Script { what: script.display().to_string(), reason: "no pipes".into() });
        };
        let mut mode = TorchMode { child, stdin, stdout: std::io::BufReader::new(stdout), script };
        // Wait for its imports, so they do not run beside the first workload's timed calls.
        mode.answer()?;
        Ok(mode)
    }

    /// The next line the script writes.
    fn answer(&mut self) -> Result<String, BenchError> {
        use std::io::BufRead as _;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(BenchError::Script {
                what: self.script.display().to_string(),
                reason: format!("it stopped ({status})"),
            });
        }
        Ok(line)
    }

    fn time(&mut self, w: &Workload) -> Result<RunRow, BenchError> {
        use std::io::Write as _;
        let ask = serde_json::json!({
            "workload": w.workload, "context": w.context, "batch": w.batch, "label": w.label,
            "files": w.files, "entry": w.entry, "inputs": w.inputs.file,
        });
        writeln!(self.stdin, "{ask}")?;
        self.stdin.flush()?;
        let line = self.answer()?;
        let failed = |reason: String| BenchError::Script { what: self.script.display().to_string(), reason };
        #[derive(serde::Deserialize)]
        struct Timed {
            module: String,
            runs: usize,
            median_s: f64,
            p99_s: f64,
        }
        let t: Timed = serde_json::from_str(&line).map_err(|e| failed(format!("its answer: {e}")))?;
        Ok(RunRow {
            workload: w.workload.to_string(),
            context: w.context,
            batch: w.batch,
            mode: "torch".into(),
            variant: None,
            runs: t.runs,
            wall_median_s: t.median_s,
            wall_p99_s: t.p99_s,
            bytes_per_call: 0,
            round_trips: 0,
            peak_worker_bytes: 0,
            jit: None,
            module: Some(t.module),
        })
    }
}

impl Drop for TorchMode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Genie's compile (import, passes, placement, codegen) next to onnxruntime's session creation
/// with every graph optimisation, on the same ONNX models.
fn compile_times(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Vec<CompileRow>, BenchError> {
    let root = &options.root;
    let light = root.join(".venv/lib/python3.11/site-packages/onnx/backend/test/data/light/light_resnet50.onnx");
    let models: Vec<(String, PathBuf)> = match options.suite.as_str() {
        "quick" => vec![("gpt2 fixture prefill (onnx)".into(), root.join("testsuite/fixtures/gpt2/prefill.onnx"))],
        _ => vec![
            ("light ResNet-50 (onnx package)".into(), light),
            ("gpt2-small prefill (onnx)".into(), options.models.join("gpt2s/prefill.onnx")),
        ],
    };
    progress("== compile time: genie (import, passes, placement, codegen) vs onnxruntime session (ORT_ENABLE_ALL)");
    let mut rows = Vec::new();
    for (name, path) in models {
        let mut genie = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            compile(std::slice::from_ref(&path), 1, false)?;
            genie.push(t.elapsed().as_secs_f64());
        }
        genie.sort_by(f64::total_cmp);
        let genie_s = genie[1];
        let ort = onnxruntime_session_s(&options.python, &path);
        if let Err(e) = &ort {
            progress(&format!("  onnxruntime unavailable for {name}: {e}"));
        }
        let ort = ort.ok();
        rows.push(CompileRow { model: name, genie_s, onnxruntime_s: ort, ratio: ort.map(|o| genie_s / o) });
    }
    Ok(rows)
}

fn onnxruntime_session_s(python: &Path, path: &Path) -> Result<f64, BenchError> {
    let script = r#"
import sys, time, onnxruntime as ort
times = []
for _ in range(3):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t = time.perf_counter()
    ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
    times.append(time.perf_counter() - t)
print(sorted(times)[1])
"#;
    let out = Command::new(python).args(["-c", script]).arg(path).output()?;
    let failed = |reason: String| BenchError::Script { what: "onnxruntime".into(), reason };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(failed(stderr.lines().last().unwrap_or("onnxruntime failed").to_string()));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().map_err(|e| failed(format!("its time: {e}")))
}

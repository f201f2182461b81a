//! `genie bench`: the semantic advantage, measured. Four modes on the same runtime, workers and
//! models: `local` (in-process tch, the floor), `genie` (the compiled plan: resident weights and
//! state, worker-to-worker cuts), `per-op` (every op its own request, as API-forwarding systems
//! do) and `blind` (the whole graph as one plan with weights resident, but the KV cache travels
//! with every call). Plus compile time next to onnxruntime and QUIC next to TCP.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use genie::pipeline::{compile_program, CompileOptions};
use genie_codegen::{EntryPlan, ProgramPlan, Step, TensorKind, CLIENT};
use genie_ir::{Arg, Dim, ValueId, WeightStore};
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientOptions, Cluster, OpArgument};
use genie_runtime::exec;
use genie_runtime::local::LocalCluster;
use genie_runtime::worker;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Arguments of `genie bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// `default`: GPT-2-small decode at contexts 128/512/2048, prefill 512, ResNet-18 at batch 1
    /// and 8, a BERT-base encoder (models generated once into `--models`). `quick`: the small
    /// test fixtures, in seconds.
    #[arg(long, default_value = "default")]
    pub suite: String,
    /// Write machine-readable results here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The plot of bytes per decode step against context (SVG).
    #[arg(long, value_name = "FILE", default_value = "target/bench/decode_bytes.svg")]
    pub plot: PathBuf,
    /// Where the default suite's models are generated (once).
    #[arg(long, value_name = "DIR", default_value = "target/bench-models")]
    pub models: PathBuf,
    /// Workers for the `genie` mode; with more than one the model is split across them (each
    /// gets the least memory that fits), so cut activations cross between workers.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Timed calls per mode and workload (fewer when a mode's time budget runs out).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Seconds of timed calls per mode and workload before stopping early (at least 3 calls).
    #[arg(long, default_value_t = 12.0)]
    pub budget_s: f64,
}

/// One workload: which program, which entry, with which inputs.
struct Workload {
    workload: &'static str,
    context: Option<i64>,
    /// Batch size where a workload is run at several (the CNN).
    batch: Option<i64>,
    /// Label for the table.
    label: String,
    files: Vec<PathBuf>,
    entry: String,
    /// All inputs of the entry by name, state (KV) included.
    inputs: BTreeMap<String, Tensor>,
}

#[derive(Serialize, Clone)]
struct RunRow {
    workload: String,
    context: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<i64>,
    mode: String,
    /// `per-op` only: `cached-weights` (weights uploaded once, named by handle) or
    /// `weights-every-call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    runs: usize,
    wall_median_s: f64,
    wall_p99_s: f64,
    bytes_per_call: u64,
    round_trips: u64,
    peak_worker_bytes: u64,
}

#[derive(Serialize)]
struct CompileRow {
    model: String,
    genie_s: f64,
    onnxruntime_s: Option<f64>,
    ratio: Option<f64>,
}

#[derive(Serialize)]
struct TransportRow {
    quic_bulk_gbps: f64,
    tcp_bulk_gbps: f64,
    quic_rtt_us: f64,
    tcp_rtt_us: f64,
}

#[derive(Serialize)]
struct Report {
    suite: String,
    workers: usize,
    runs: Vec<RunRow>,
    compile: Vec<CompileRow>,
    transport: TransportRow,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let list = Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(list.into_iter().collect())
}

fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

fn workloads(args: &BenchArgs) -> Result<Vec<Workload>> {
    match args.suite.as_str() {
        "quick" => {
            let fx = root().join("testsuite/fixtures");
            let gpt2 = vec![fx.join("gpt2/prefill.pt2"), fx.join("gpt2/decode.pt2")];
            let decode = read_tensors(&fx.join("gpt2/decode.inputs.safetensors"))?;
            let context = decode.get("past_key_0").map(|t| t.size()[2]);
            Ok(vec![
                Workload {
                    workload: "decode",
                    context,
                    batch: None,
                    label: "gpt2 fixture decode".into(),
                    files: gpt2.clone(),
                    entry: "decode".into(),
                    inputs: decode,
                },
                Workload {
                    workload: "prefill",
                    context: None,
                    batch: None,
                    label: "gpt2 fixture prefill".into(),
                    files: gpt2,
                    entry: "prefill".into(),
                    inputs: read_tensors(&fx.join("gpt2/prefill.inputs.safetensors"))?,
                },
                Workload {
                    workload: "cnn",
                    context: None,
                    batch: Some(1),
                    label: "resnet fixture".into(),
                    files: vec![fx.join("resnet/model.pt2")],
                    entry: "model".into(),
                    inputs: read_tensors(&fx.join("resnet/model.inputs.safetensors"))?,
                },
                Workload {
                    workload: "encoder",
                    context: None,
                    batch: None,
                    label: "bert fixture".into(),
                    files: vec![fx.join("bert/model.pt2")],
                    entry: "model".into(),
                    inputs: read_tensors(&fx.join("bert/model.inputs.safetensors"))?,
                },
            ])
        }
        "default" => {
            let dir = &args.models;
            println!("== generating the benchmark models into {} (once)", dir.display());
            let status = Command::new(venv_python())
                .arg(root().join("testsuite/scripts/make_bench_models.py"))
                .arg("--out")
                .arg(dir)
                .status()
                .context("running testsuite/scripts/make_bench_models.py (run `cargo xtask setup` first)")?;
            if !status.success() {
                bail!("make_bench_models.py failed ({status})");
            }
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
        other => bail!("unknown suite `{other}` (default, quick)"),
    }
}

/// Timed calls: at most `runs`, at least 3, stopping once the budget is spent.
fn time_calls(args: &BenchArgs, runs: usize, mut call: impl FnMut() -> Result<(u64, u64)>) -> Result<Timed> {
    call().context("warm-up call")?;
    let mut walls = Vec::new();
    let (mut bytes, mut trips) = (0, 0);
    let started = Instant::now();
    while walls.len() < runs.max(1) {
        let t = Instant::now();
        let (b, r) = call()?;
        walls.push(t.elapsed().as_secs_f64());
        (bytes, trips) = (b, r);
        if walls.len() >= 3 && started.elapsed().as_secs_f64() > args.budget_s {
            break;
        }
    }
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    let p99 = walls[((walls.len() as f64 * 0.99).ceil() as usize).clamp(1, walls.len()) - 1];
    Ok(Timed { runs: walls.len(), median, p99, bytes, trips })
}

struct Timed {
    runs: usize,
    median: f64,
    p99: f64,
    bytes: u64,
    trips: u64,
}

/// Compile for `workers` local workers. One worker gets 64 GiB. Several get the least memory
/// (in steps of 15 %) that placement can fit the program in, so the model is really split
/// across them and the cut activations show up on the wire.
fn compile(files: &[PathBuf], workers: usize, no_state: bool) -> Result<(ProgramPlan, WeightStore)> {
    const ROOMY: u64 = 64 << 30;
    let base = genie_frontends::load(files)?;
    let options = CompileOptions { no_state, max_seq: Some(4096), ..CompileOptions::default() };
    let mut memory = if workers > 1 { (base.weights.total_bytes() / workers as u64).max(1 << 20) } else { ROOMY };
    loop {
        let mut program = base.clone();
        let cluster = ClusterSpec::local_workers(workers, memory.min(ROOMY));
        match compile_program(&mut program, &cluster, &options) {
            Ok(plan) => return Ok((plan, program.weights)),
            Err(e) if memory >= ROOMY => return Err(e.into()),
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

/// A plot line: name, colour, (context, bytes) points.
type Series<'a> = (String, &'a str, Vec<(f64, f64)>);

/// `genie bench`.
pub fn bench(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let workloads = workloads(&args)?;
    let mut rows: Vec<RunRow> = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // One compile per program and mode family, shared by its workloads.
    let mut compiled: BTreeMap<(Vec<PathBuf>, usize, bool), Compiled> = BTreeMap::new();
    let mut plan_for = |files: &[PathBuf], workers: usize, no_state: bool| -> Result<Compiled> {
        let key = (files.to_vec(), workers, no_state);
        if let Some(v) = compiled.get(&key) {
            return Ok(v.clone());
        }
        let (plan, weights) = compile(files, workers, no_state)?;
        let v = (Arc::new(plan), Arc::new(weights));
        compiled.insert(key, v.clone());
        Ok(v)
    };
    for w in &workloads {
        println!("== {}", w.label);
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
        };
        // local: the same plan (one device) executed in this process.
        {
            let (plan, weights) = plan_for(&w.files, 1, false)?;
            let mut local = LocalCluster::load(&plan, &weights, Device::Cpu)?;
            let t = time_calls(&args, args.runs, || {
                local.run(&w.entry, &w.inputs)?;
                Ok((0, 0))
            })?;
            let peak =
                local.resident("worker0").map_or(0, |r| r.bytes()) + w.inputs.values().map(tensor_bytes).sum::<u64>();
            rows.push(row("local", None, &t, peak));
        }
        // genie: the compiled plan on workers, state resident where it is used.
        {
            let (plan, weights) = plan_for(&w.files, args.workers, false)?;
            let entry = plan.entry(&w.entry).context("entry")?.clone();
            let names: Vec<String> = plan.devices.iter().map(|d| d.name.clone()).collect();
            let workers = worker::start_local(&names, Device::Cpu)?;
            let (cluster, program) = runtime.block_on(async {
                let cluster =
                    Cluster::connect(workers.addresses.clone(), ClientOptions::new(workers.token.clone())).await?;
                let program = cluster.load(plan.clone(), &weights).await?;
                Ok::<_, genie_runtime::client::ClientError>((cluster, program))
            })?;
            let mut session = runtime.block_on(program.open_session())?;
            if entry.inputs.iter().any(|i| i.slot.is_some()) {
                // The state a decode step reads comes from a prefill of the same length.
                let context = w.context.context("a stateful workload needs a context")?;
                let prefill = plan.entries.iter().find(|e| e.name != w.entry).context("no prefill entry")?;
                let ids = Tensor::arange(context, (Kind::Int64, Device::Cpu)).remainder(1000).reshape([1, context]);
                let name = prefill.inputs[0].name.clone();
                runtime.block_on(session.run(&prefill.name, &BTreeMap::from([(name, ids)])))?;
            }
            let inputs = user_inputs(&entry, &w.inputs);
            let t = time_calls(&args, args.runs, || {
                let out = runtime.block_on(session.run(&w.entry, &inputs))?;
                Ok((out.stats.bytes, out.stats.round_trips as u64))
            })?;
            let peak = names
                .iter()
                .map(|d| runtime.block_on(cluster.stats(d)).map(|s| s.peak_tensor_bytes).unwrap_or(0))
                .max()
                .unwrap_or(0);
            rows.push(row("genie", None, &t, peak));
            runtime.block_on(cluster.close());
        }
        // blind: one plan, weights resident, no state: the KV cache goes back and forth.
        {
            let (plan, weights) = plan_for(&w.files, 1, true)?;
            let entry = plan.entry(&w.entry).context("entry")?.clone();
            let workers = worker::start_local(&["worker0".to_string()], Device::Cpu)?;
            let (cluster, program) = runtime.block_on(async {
                let cluster =
                    Cluster::connect(workers.addresses.clone(), ClientOptions::new(workers.token.clone())).await?;
                let program = cluster.load(plan.clone(), &weights).await?;
                Ok::<_, genie_runtime::client::ClientError>((cluster, program))
            })?;
            let mut session = runtime.block_on(program.open_session())?;
            let inputs = user_inputs(&entry, &w.inputs);
            let t = time_calls(&args, args.runs, || {
                let out = runtime.block_on(session.run(&w.entry, &inputs))?;
                Ok((out.stats.bytes, out.stats.round_trips as u64))
            })?;
            let peak = runtime.block_on(cluster.stats("worker0")).map(|s| s.peak_tensor_bytes).unwrap_or(0);
            rows.push(row("blind", None, &t, peak));
            runtime.block_on(cluster.close());
        }
        // per-op: every op is a request; its inputs go out and its outputs come back.
        for cached in [true, false] {
            let (plan, weights) = plan_for(&w.files, 1, true)?;
            let entry = plan.entry(&w.entry).context("entry")?.clone();
            let workers = worker::start_local(&["worker0".to_string()], Device::Cpu)?;
            let cluster = runtime
                .block_on(Cluster::connect(workers.addresses.clone(), ClientOptions::new(workers.token.clone())))?;
            let per_op = PerOp::new(&plan, &entry, &weights)?;
            if cached {
                per_op.upload_weights(&runtime, &cluster)?;
            }
            let runs = if cached { args.runs.min(5) } else { 3 };
            let t = time_calls(&args, runs, || per_op.call(&runtime, &cluster, &w.inputs, cached))?;
            let peak = runtime.block_on(cluster.stats("worker0")).map(|s| s.peak_tensor_bytes).unwrap_or(0);
            let variant = if cached { "cached-weights" } else { "weights-every-call" };
            rows.push(row("per-op", Some(variant), &t, peak));
            runtime.block_on(cluster.close());
        }
        print_rows(rows[first_row..].iter());
    }
    let compile = compile_times(&args)?;
    println!("== transport: QUIC (the runtime's tuned endpoints, TLS) and TCP on loopback");
    let bulk = if args.suite == "quick" { 32 << 20 } else { 256 << 20 };
    let figures = genie_runtime::transport::bench::measure(bulk, 3, 500)?;
    let transport = TransportRow {
        quic_bulk_gbps: figures.quic_bulk_gbps,
        tcp_bulk_gbps: figures.tcp_bulk_gbps,
        quic_rtt_us: figures.quic_rtt_us,
        tcp_rtt_us: figures.tcp_rtt_us,
    };
    let report = Report { suite: args.suite.clone(), workers: args.workers, runs: rows, compile, transport };
    println!("{}", table(&report));
    if let Some(parent) = args.plot.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(&args.plot, plot(&report.runs)).with_context(|| format!("writing {}", args.plot.display()))?;
    println!("plot: {}", args.plot.display());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("json: {}", path.display());
    }
    println!("bench took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Per-op remoting of one entry: the entry's ops in plan order, each sent as its own request.
struct PerOp {
    ops: Vec<(String, Vec<Arg>, Vec<ValueId>)>,
    entry: EntryPlan,
    /// Weights and constants as client tensors, by value id.
    constants: BTreeMap<ValueId, Tensor>,
    weight_hashes: BTreeMap<ValueId, genie_ir::WeightHash>,
    /// When each value is last used (index into `ops`), to drop it from the client.
    last_use: BTreeMap<ValueId, usize>,
}

impl PerOp {
    fn new(plan: &ProgramPlan, entry: &EntryPlan, weights: &WeightStore) -> Result<PerOp> {
        let mut ops = Vec::new();
        for p in &entry.plans {
            if p.device == CLIENT {
                continue;
            }
            for s in &p.steps {
                if let Step::Exec { op, args, outputs, .. } = s {
                    ops.push((op.clone(), args.clone(), outputs.clone()));
                }
            }
        }
        let mut constants = BTreeMap::new();
        let mut weight_hashes = BTreeMap::new();
        for (id, info) in &entry.tensors {
            match &info.kind {
                TensorKind::Weight { hash } => {
                    let bytes = weights.read(hash)?;
                    let shape = info.ty.static_shape().context("weight with a symbolic shape")?;
                    constants.insert(*id, exec::tensor_from_bytes(&info.ty, &shape, &bytes, Device::Cpu)?);
                    weight_hashes.insert(*id, hash.clone());
                }
                TensorKind::Const { data } => {
                    let shape = info.ty.static_shape().context("constant with a symbolic shape")?;
                    constants.insert(*id, exec::tensor_from_bytes(&info.ty, &shape, &data.0, Device::Cpu)?);
                }
                _ => {}
            }
        }
        let mut last_use = BTreeMap::new();
        for (i, (_, args, _)) in ops.iter().enumerate() {
            for a in args {
                for v in a.values() {
                    last_use.insert(v, i);
                }
            }
        }
        let _ = plan;
        Ok(PerOp { ops, entry: entry.clone(), constants, weight_hashes, last_use })
    }

    fn upload_weights(&self, runtime: &tokio::runtime::Runtime, cluster: &Cluster) -> Result<()> {
        for (id, hash) in &self.weight_hashes {
            runtime.block_on(cluster.upload_weight("worker0", hash, &self.constants[id]))?;
        }
        Ok(())
    }

    /// One call; returns bytes on the wire and round trips.
    fn call(
        &self,
        runtime: &tokio::runtime::Runtime,
        cluster: &Cluster,
        inputs: &BTreeMap<String, Tensor>,
        cached: bool,
    ) -> Result<(u64, u64)> {
        let shapes: BTreeMap<ValueId, Vec<i64>> =
            self.entry.inputs.iter().filter_map(|p| inputs.get(&p.name).map(|t| (p.tensor, t.size()))).collect();
        let bindings = exec::bind_symbols(&self.entry, &|v| shapes.get(&v).cloned())?;
        let mut env: BTreeMap<ValueId, Tensor> = self
            .entry
            .inputs
            .iter()
            .filter_map(|p| inputs.get(&p.name).map(|t| (p.tensor, t.shallow_clone())))
            .collect();
        let (mut bytes, mut trips) = (0u64, 0u64);
        for (i, (op, args, outputs)) in self.ops.iter().enumerate() {
            // Tensor arguments become call inputs 0..n; symbols are bound on the client.
            let mut order: Vec<ValueId> = Vec::new();
            let args: Vec<Arg> = args.iter().map(|a| remap(a, &mut order, &bindings)).collect::<Result<_>>()?;
            let mut op_inputs = Vec::new();
            for v in &order {
                match (cached, self.weight_hashes.get(v)) {
                    (true, Some(h)) => op_inputs.push(OpArgument::Weight(h)),
                    _ => {
                        let t = env
                            .get(v)
                            .or_else(|| self.constants.get(v))
                            .with_context(|| format!("per-op: {op} reads {v}, which no earlier op produced"))?;
                        op_inputs.push(OpArgument::Tensor(t));
                    }
                }
            }
            let (out, sent, received) =
                runtime.block_on(cluster.exec_op("worker0", op, args, op_inputs, outputs.len() as u32))?;
            bytes += sent + received;
            trips += 1;
            for (v, t) in outputs.iter().zip(out) {
                env.insert(*v, t);
            }
            for v in order {
                if self.last_use.get(&v) == Some(&i) && !self.entry.outputs.iter().any(|o| o.tensor == v) {
                    env.remove(&v);
                }
            }
        }
        Ok((bytes, trips))
    }
}

/// An argument with tensor ids renumbered by first use and symbols evaluated.
fn remap(arg: &Arg, order: &mut Vec<ValueId>, bindings: &exec::Bindings) -> Result<Arg> {
    let mut index = |v: ValueId| {
        let i = order.iter().position(|o| *o == v).unwrap_or_else(|| {
            order.push(v);
            order.len() - 1
        });
        ValueId(i as u32)
    };
    let eval = |d: &Dim| d.eval(bindings).with_context(|| format!("evaluating {d}"));
    Ok(match arg {
        Arg::Tensor(v) => Arg::Tensor(index(*v)),
        Arg::Tensors(vs) => Arg::Tensors(vs.iter().map(|v| index(*v)).collect()),
        Arg::OptTensors(vs) => Arg::OptTensors(vs.iter().map(|v| v.map(&mut index)).collect()),
        Arg::SymInt(d) => Arg::Int(eval(d)?),
        Arg::SymInts(ds) => Arg::Ints(ds.iter().map(eval).collect::<Result<_>>()?),
        other => other.clone(),
    })
}

/// Genie's compile (import, passes, placement, codegen) next to onnxruntime's session creation
/// with every graph optimisation, on the same ONNX models.
fn compile_times(args: &BenchArgs) -> Result<Vec<CompileRow>> {
    let light = root().join(".venv/lib/python3.11/site-packages/onnx/backend/test/data/light/light_resnet50.onnx");
    let models: Vec<(String, PathBuf)> = match args.suite.as_str() {
        "quick" => vec![("gpt2 fixture prefill (onnx)".into(), root().join("testsuite/fixtures/gpt2/prefill.onnx"))],
        _ => vec![
            ("light ResNet-50 (onnx package)".into(), light),
            ("gpt2-small prefill (onnx)".into(), args.models.join("gpt2s/prefill.onnx")),
        ],
    };
    println!("== compile time: genie (import, passes, placement, codegen) vs onnxruntime session (ORT_ENABLE_ALL)");
    let mut rows = Vec::new();
    for (name, path) in models {
        let mut genie = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            compile(std::slice::from_ref(&path), 1, false).with_context(|| format!("compiling {}", path.display()))?;
            genie.push(t.elapsed().as_secs_f64());
        }
        genie.sort_by(f64::total_cmp);
        let genie_s = genie[1];
        let ort = onnxruntime_session_s(&path);
        if let Err(e) = &ort {
            println!("  onnxruntime unavailable for {name}: {e:#}");
        }
        let ort = ort.ok();
        rows.push(CompileRow { model: name, genie_s, onnxruntime_s: ort, ratio: ort.map(|o| genie_s / o) });
    }
    Ok(rows)
}

fn onnxruntime_session_s(path: &Path) -> Result<f64> {
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
    let out =
        Command::new(venv_python()).args(["-c", script]).arg(path).output().context("running the venv's python")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("onnxruntime failed"));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().context("parsing onnxruntime's time")
}

fn human(bytes: u64) -> String {
    genie_ir::render::human_bytes(bytes)
}

fn print_rows<'a>(rows: impl Iterator<Item = &'a RunRow>) {
    for r in rows {
        println!(
            "  {:<7} {:<20} median {:>9.3} ms  p99 {:>9.3} ms  {:>10}/call  {:>5} round trips  peak worker {}",
            r.mode,
            r.variant.as_deref().unwrap_or(""),
            r.wall_median_s * 1e3,
            r.wall_p99_s * 1e3,
            human(r.bytes_per_call),
            r.round_trips,
            human(r.peak_worker_bytes)
        );
    }
}

/// The table: every mode's figures and their ratio to genie's.
fn table(report: &Report) -> String {
    let mut t = String::new();
    writeln!(
        t,
        "\n{:<9} {:>7} {:<8} {:<19} {:>11} {:>11} {:>12} {:>7} {:>10} {:>9} {:>10} {:>8}",
        "workload",
        "context",
        "mode",
        "variant",
        "median ms",
        "p99 ms",
        "bytes/call",
        "trips",
        "peak",
        "× time",
        "× bytes",
        "× trips"
    )
    .ok();
    for r in &report.runs {
        let genie = report
            .runs
            .iter()
            .find(|g| g.mode == "genie" && g.workload == r.workload && g.context == r.context && g.batch == r.batch);
        let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
        let (rt, rb, rr) = match genie {
            Some(g) => (
                ratio(r.wall_median_s, g.wall_median_s),
                ratio(r.bytes_per_call as f64, g.bytes_per_call as f64),
                ratio(r.round_trips as f64, g.round_trips as f64),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        writeln!(
            t,
            "{:<9} {:>7} {:<8} {:<19} {:>11.3} {:>11.3} {:>12} {:>7} {:>10} {:>9} {:>10} {:>8}",
            match r.batch {
                Some(b) => format!("{} b{b}", r.workload),
                None => r.workload.clone(),
            },
            r.context.map_or("-".to_string(), |c| c.to_string()),
            r.mode,
            r.variant.as_deref().unwrap_or(""),
            r.wall_median_s * 1e3,
            r.wall_p99_s * 1e3,
            r.bytes_per_call,
            r.round_trips,
            human(r.peak_worker_bytes),
            rt,
            rb,
            rr
        )
        .ok();
    }
    writeln!(t, "\ncompile time (median of 3):").ok();
    for c in &report.compile {
        let ort = c.onnxruntime_s.map_or("n/a".to_string(), |o| format!("{:.3} s", o));
        let ratio = c.ratio.map_or("n/a".to_string(), |r| format!("{r:.2}×"));
        writeln!(t, "  {:<34} genie {:.3} s   onnxruntime {}   genie/onnxruntime {}", c.model, c.genie_s, ort, ratio)
            .ok();
    }
    let tr = &report.transport;
    writeln!(
        t,
        "\ntransport (loopback): QUIC {:.2} Gbit/s vs TCP {:.2} Gbit/s ({:.0}% of TCP); round trip QUIC {:.0} µs vs TCP {:.0} µs",
        tr.quic_bulk_gbps,
        tr.tcp_bulk_gbps,
        100.0 * tr.quic_bulk_gbps / tr.tcp_bulk_gbps.max(1e-9),
        tr.quic_rtt_us,
        tr.tcp_rtt_us
    )
    .ok();
    t
}

/// SVG: bytes per decode step (log scale) against context, one line per mode.
fn plot(rows: &[RunRow]) -> String {
    let series: Vec<Series> = [
        ("genie", "#1b9e77"),
        ("blind", "#d95f02"),
        ("per-op cached-weights", "#7570b3"),
        ("per-op weights-every-call", "#e7298a"),
    ]
    .iter()
    .map(|(name, color)| {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.workload == "decode")
            .filter(|r| match r.variant.as_deref() {
                Some(v) => format!("{} {v}", r.mode) == *name,
                None => r.mode == *name,
            })
            .filter_map(|r| r.context.map(|c| (c as f64, r.bytes_per_call.max(1) as f64)))
            .collect();
        (name.to_string(), *color, pts)
    })
    .collect();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.2.iter().copied()).collect();
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 80.0, 220.0, 30.0, 50.0);
    let xs: Vec<f64> = all.iter().map(|p| p.0.log2()).collect();
    let ys: Vec<f64> = all.iter().map(|p| p.1.log10()).collect();
    let (x0, x1) = (xs.iter().copied().fold(f64::MAX, f64::min), xs.iter().copied().fold(f64::MIN, f64::max));
    let (y0, y1) =
        (ys.iter().copied().fold(f64::MAX, f64::min).floor(), ys.iter().copied().fold(f64::MIN, f64::max).ceil());
    let sx = |x: f64| left + (x.log2() - x0) / (x1 - x0).max(1e-9) * (w - left - right);
    let sy = |y: f64| h - bottom - (y.log10() - y0) / (y1 - y0).max(1e-9) * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"18\" font-size=\"14\">Bytes on the wire per decode step (log scale) vs context length</text>\n"
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        h - bottom,
        w - right,
        h - bottom
    );
    let _ = writeln!(s, "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>", h - bottom);
    let mut e = y0 as i32;
    while e <= y1 as i32 {
        let y = sy(10f64.powi(e));
        let _ = writeln!(s, "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", w - right, left - 6.0, y + 4.0, human(10f64.powi(e) as u64));
        e += 1;
    }
    let mut contexts: Vec<f64> = all.iter().map(|p| p.0).collect();
    contexts.sort_by(f64::total_cmp);
    contexts.dedup();
    for c in &contexts {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{c}</text>", sx(*c), h - bottom + 18.0);
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">context (tokens in the KV cache)</text>",
        (left + w - right) / 2.0,
        h - 12.0
    );
    for (i, (name, color, pts)) in series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (x, y) in pts {
            let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>", sx(*x), sy(*y));
        }
        let ly = top + 20.0 + 20.0 * i as f64;
        let _ = writeln!(s, "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{name}</text>", w - right + 10.0, w - right + 30.0, w - right + 36.0, ly + 4.0);
    }
    s.push_str("</svg>\n");
    s
}

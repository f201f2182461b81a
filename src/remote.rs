//! `genie worker`, `genie run` and `genie generate`: arguments and output. Compiling is
//! `genie_driver::pipeline`'s; starting, reaching and loading workers is the runtime's
//! deployment (`genie_runtime::deploy`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use genie_driver::cluster::ClusterChoice;
use genie_driver::pipeline::{compile_program, one_call_options, CompileOptions};
use genie_driver::recovery::Replanner;
use genie_passes::placement::{self, PhaseChoice, Policy, RequestShape};
use genie_runtime::client::{CallStats, ClientOptions};
use genie_runtime::deploy::{self, Deployed, Deployment};
use genie_runtime::generate;
use genie_runtime::metrics::{GenerationMetrics, MetricsServer};
use genie_runtime::trace;

use crate::progress::Display;
use genie_runtime::transport::Identity;
use genie_runtime::wire::tensor_file;
use genie_runtime::worker::{self, Limits, WorkerConfig};
use tch::Tensor;

/// Arguments of `genie worker`.
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (port 0 picks one; the address is printed).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Where ops run: `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The token clients must present.
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the token (first line).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// TLS certificate (PEM); without it the worker makes a self-signed one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Keep this worker's identity in DIR: a self-signed certificate and key made on its first
    /// start and read on every later one, so its fingerprint survives a restart and clients
    /// that pinned it reach it again.
    #[arg(long, value_name = "DIR", conflicts_with = "cert")]
    pub state_dir: Option<PathBuf>,
    /// Free sessions unused for this many seconds.
    #[arg(long, default_value_t = 600)]
    pub session_idle_secs: u64,
    /// Keep weights no loaded program needs cached up to this size (e.g. `4GiB`, `0`).
    #[arg(long, value_name = "SIZE", default_value = "4GiB")]
    pub weight_cache: String,
    /// The memory this worker may fill with weights, sessions' state and activations
    /// (e.g. `16GiB`); loads and sessions beyond it are refused with `OutOfMemory`. Default:
    /// the machine's physical memory for `cpu`, no limit for `cuda:N`.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Programs one client may have loaded at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().programs)]
    pub max_programs: usize,
    /// Sessions one client may have open at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().sessions)]
    pub max_sessions: usize,
    /// Runs and per-op calls one client may have in flight at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().calls)]
    pub max_calls: usize,
    /// The most memory one client's weights, sessions, calls and uploads may hold (e.g. `8GiB`),
    /// so one client cannot fill the worker. Default: the whole `--memory`.
    #[arg(long, value_name = "SIZE")]
    pub max_client_memory: Option<String>,
    /// Runs and per-op calls executing at once (the rest wait their turn).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_executions: usize,
    /// The most decode steps of one program that run together as one batched step: steps of
    /// different sessions (and clients) waiting for the same program and entry join the next
    /// batch as soon as the current one finishes. 1: every step alone.
    #[arg(long, value_name = "N", default_value_t = genie_runtime::worker::DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// Milliseconds a batch waits to fill (up to --max-batch steps) before it runs: larger
    /// batches for some latency per step. 0: a step at an idle worker runs at once.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub batch_window_ms: u64,
    /// The longest a run may take in seconds, whatever its client asks for.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub max_run_secs: u64,
    /// Connections at once still in their handshake or before their Hello; more are refused.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_unauthenticated: usize,
    /// Seconds a connection has for its TLS handshake and Hello.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub hello_secs: u64,
    /// The slowest a tensor stream may move, per second, after its grace (e.g. `1MiB`).
    #[arg(long, value_name = "SIZE", default_value = "1MiB")]
    pub min_stream_rate: String,
    /// Seconds every tensor stream has before its rate counts.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub stream_grace_secs: u64,
    /// Seconds a per-op call waits for its inputs, and a tensor stream for the call it is for.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub input_wait_secs: u64,
    /// Run on these CPU cores only (sched_setaffinity), with as many libtorch threads, e.g.
    /// `--cpus 0` or `--cpus 2,3`.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// The cores the worker's calls share: a call alone runs libtorch on all of them, calls at
    /// once an equal share each (never more threads than this in all). Default: every core this
    /// process may run on (`--cpus` when given).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Where runs go and how to reach the workers.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// The cluster file (RON): the devices placement plans for and, in its `deployment`
    /// section, where each device's worker listens. Without a deployment section, or without
    /// this flag, local workers are started in this process.
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Start N local workers on loopback (default 2).
    #[arg(long, value_name = "N", conflicts_with = "cluster")]
    pub workers: Option<usize>,
    /// Memory of each local worker for placement (default 8GiB).
    #[arg(long, value_name = "SIZE", conflicts_with = "cluster")]
    pub worker_memory: Option<String>,
    /// The workers' token (remote workers).
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the workers' token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Trust workers whose certificate this CA (PEM) signed, instead of pinned fingerprints.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Device for local workers: `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seconds one call may take before it fails.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Seconds within which a worker that stops answering (killed, hung, cut off) is declared
    /// dead: its connection idles out, and a fresh connection gets no answer.
    #[arg(long, value_name = "SECS", default_value_t = genie_runtime::client::DEFAULT_DETECTION.as_secs_f64())]
    pub detect_secs: f64,
    /// The sequence length placement plans memory for.
    #[arg(long, value_name = "N")]
    pub max_seq: Option<i64>,
    /// What placement optimises: `min-latency`, `balance-memory`, `min-ttft` or `min-tpot`.
    #[arg(long, default_value = "min-latency")]
    pub policy: Policy,
    /// Whether an LLM's prefill and decode may run on different devices, the KV cache handed
    /// over once after prefill: `auto` (when the estimates say it pays), `never`, `always`.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub disaggregate: PhaseChoice,
    /// Place R copies of the model on disjoint devices (the cluster's devices cut in order into
    /// R groups); each session opens on the copy whose workers report the least load.
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub replicas: usize,
}

/// Arguments of `genie run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Model files (.pt2, .onnx, .ron), or a plan followed by the model files it was compiled from.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The entry to run (default: the only one).
    #[arg(long)]
    pub entry: Option<String>,
    /// Inputs by name (safetensors).
    #[arg(long, value_name = "FILE")]
    pub inputs: PathBuf,
    /// Where to write the outputs by name (safetensors).
    #[arg(long, value_name = "FILE")]
    pub outputs: PathBuf,
    /// Print wall time, bytes per link and round trips of the call.
    #[arg(long)]
    pub stats: bool,
    /// Write the call's timeline as a Chrome trace (open it in Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

/// Arguments of `genie generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The prefill model (its file stem names the entry).
    pub prefill: PathBuf,
    /// The decode-step model.
    pub decode: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Prompt token ids, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "prompt_ids", required_unless_present = "prompt_ids")]
    pub prompt: Vec<i64>,
    /// Prompt token ids from a safetensors file (its `prompt` or `input_ids` tensor, or its only one).
    #[arg(long, value_name = "FILE")]
    pub prompt_ids: Option<PathBuf>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
    /// Print each step's wall time, bytes per link and round trips.
    #[arg(long)]
    pub stats: bool,
    /// Print `{"tokens": [...], "time_to_first_token_s", "inter_token_s": [...], "steps": [{"wall_s", "bytes", "round_trips"}]}`.
    #[arg(long)]
    pub json: bool,
    /// Print one line of JSON per step as soon as its token is known: `{"step", "token", "wall_s",
    /// "bytes", "batch"}` (step 0 is the prefill; `batch`: how many calls the worker that returned
    /// the logits ran together as one batched step). Stdout then holds these lines only: no
    /// `tokens:` summary, and `--stats` goes to stderr.
    #[arg(long, conflicts_with = "json")]
    pub jsonl: bool,
    /// Serve `genie_time_to_first_token_seconds` and `genie_inter_token_latency_seconds` at
    /// `http://ADDR/metrics` while generating (port 0 picks one; the address is printed).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Write every step's timeline as a Chrome trace (open it in Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// How many times a generation may recover from a lost worker (placing the model again on
    /// the workers of the cluster that answer, spares included, and replaying the prompt and
    /// the tokens so far); 0: a lost worker ends the generation.
    #[arg(long, value_name = "N", default_value_t = genie_runtime::recovery::DEFAULT_MAX_RECOVERIES)]
    pub max_recoveries: usize,
}

fn parse_device(text: &str) -> Result<tch::Device> {
    worker::parse_device(text).with_context(|| format!("--device `{text}` is not `cpu` or `cuda:N`"))
}

/// `genie worker`: serve until killed.
pub fn worker(args: WorkerArgs) -> Result<()> {
    if !args.cpus.is_empty() {
        worker::pin_to_cpus(&args.cpus)?;
    }
    let device = parse_device(&args.device)?;
    worker::check_device(device)?;
    let names = ["localhost".to_string(), args.listen.ip().to_string()];
    let identity = match (&args.cert, &args.key, &args.state_dir) {
        (Some(cert), Some(key), _) => Identity::from_pem_files(cert, key)?,
        (_, _, Some(dir)) => Identity::persisted(dir, &names)?,
        _ => Identity::self_signed(&names)?,
    };
    let token = match read_token(&args.token, &args.token_file)? {
        Some(t) => t,
        None => {
            let t = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
            println!("no --token given; generated token: {t}");
            t
        }
    };
    let mut config = WorkerConfig::new(args.listen, device, token);
    config.limits = Limits {
        programs: args.max_programs,
        sessions: args.max_sessions,
        calls: args.max_calls,
        memory: args
            .max_client_memory
            .as_deref()
            .map(placement::parse_size)
            .transpose()
            .context("--max-client-memory")?,
    };
    config.max_executions = args.max_executions.max(1);
    if let Some(n) = args.threads.or((!args.cpus.is_empty()).then_some(args.cpus.len())) {
        config.threads = n.max(1);
    }
    config.max_batch = args.max_batch.max(1);
    config.batch_window = Duration::from_millis(args.batch_window_ms);
    config.max_run_timeout = Duration::from_secs(args.max_run_secs.max(1));
    config.max_unauthenticated = args.max_unauthenticated.max(1);
    config.hello_timeout = Duration::from_secs(args.hello_secs.max(1));
    config.min_stream_rate = placement::parse_size(&args.min_stream_rate).context("--min-stream-rate")?.max(1);
    config.stream_grace = Duration::from_secs(args.stream_grace_secs);
    config.op_input_timeout = Duration::from_secs(args.input_wait_secs.max(1));
    config.early_tensor_wait = Duration::from_secs(args.input_wait_secs.max(1));
    config.session_idle_timeout = Duration::from_secs(args.session_idle_secs.max(1));
    config.metrics_listen = args.metrics;
    config.weight_cache_bytes = placement::parse_size(&args.weight_cache).context("--weight-cache")?;
    config.memory_bytes = match &args.memory {
        Some(size) => Some(placement::parse_size(size).context("--memory")?),
        None => WorkerConfig::default_memory_bytes(device),
    };
    let memory = config.memory_bytes.map_or_else(|| "unlimited".to_string(), genie_ir::render::human_bytes);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let threads = config.threads;
    let handle = worker::spawn(config, identity)?;
    let cpus = match args.cpus.as_slice() {
        [] => String::new(),
        list => format!(" cpus {}", list.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")),
    };
    println!(
        "genie worker listening on {} device {} fingerprint {} memory {memory}{cpus} threads {threads}",
        handle.addr, args.device, handle.fingerprint
    );
    if let Some(addr) = handle.metrics_addr {
        println!("genie worker metrics on http://{addr}/metrics");
    }
    runtime.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    handle.shutdown();
    Ok(())
}

fn read_token(token: &Option<String>, file: &Option<PathBuf>) -> Result<Option<String>> {
    if let Some(t) = token {
        return Ok(Some(t.clone()));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?;
        let t = text.lines().next().unwrap_or("").trim().to_string();
        if t.is_empty() {
            bail!("token file {} is empty", path.display());
        }
        return Ok(Some(t));
    }
    Ok(None)
}

impl ClusterArgs {
    /// The cluster these arguments name.
    fn choice(&self) -> Result<ClusterChoice> {
        Ok(ClusterChoice {
            file: self.cluster.clone(),
            workers: self.workers,
            worker_memory: self.worker_memory.clone(),
            device: Some(self.device.clone()),
            token: read_token(&self.token, &self.token_file)?,
            ca: self.ca.clone(),
        })
    }
}

/// A program compiled (or read) and deployed, and the runtime its calls run on.
struct Running {
    runtime: tokio::runtime::Runtime,
    deployed: Deployed,
    /// What places the program again after a lost worker (remote workers only: embedded ones
    /// live and die with this process).
    replanner: Option<Replanner>,
}

/// Compile the models (or read a plan and the models it was compiled from) for the cluster the
/// arguments describe, then deploy it. `inputs`, when known, bind the symbols of their shapes
/// for placement's estimates, so the plan is made for the call about to run.
fn prepare(
    files: &[PathBuf],
    args: &ClusterArgs,
    inputs: Option<&BTreeMap<String, Tensor>>,
    entry: Option<&str>,
    request: RequestShape,
    display: &Arc<Display>,
) -> Result<Running> {
    let choice = args.choice()?;
    let spec = choice.spec()?;
    let plan_file = crate::compile::is_plan_file(&files[0]);
    if plan_file && files.len() < 2 {
        bail!(
            "{} is a plan, and plans hold no weights: also give the model files it was compiled from",
            files[0].display()
        );
    }
    let mut program = genie_frontends::load(if plan_file { &files[1..] } else { files })?;
    let shapes: BTreeMap<String, Vec<i64>> =
        inputs.map(|t| t.iter().map(|(name, t)| (name.clone(), t.size())).collect()).unwrap_or_default();
    let options = CompileOptions {
        max_seq: args.max_seq,
        policy: args.policy,
        request: Some(request),
        phases: args.disaggregate,
        replicas: args.replicas,
        ..one_call_options(&program, entry, &shapes)
    };
    let deployment = choice.deployment()?;
    let client = ClientOptions {
        run_timeout: Duration::from_secs(args.timeout.max(1)),
        progress: display.sink(),
        ..ClientOptions::default()
    }
    .with_detection(Duration::try_from_secs_f64(args.detect_secs).context("--detect-secs")?);
    // Compiling writes into the program: a recovery places the program as imported.
    let replanner = matches!(deployment, Deployment::Remote { .. })
        .then(|| Replanner::new(program.clone(), spec.clone(), options.clone(), deployment.clone(), client.clone()));
    let plan = if plan_file {
        crate::compile::read_plan(&files[0])?
    } else {
        display.while_running("compiling", || compile_program(&mut program, &spec, &options))?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let deployed = runtime.block_on(deploy::deploy(Arc::new(plan), &program.weights, &deployment, &client))?;
    Ok(Running { runtime, deployed, replanner })
}

/// `genie run`.
pub fn run(args: RunArgs, display: &Arc<Display>) -> Result<()> {
    let inputs = read_tensors(&args.inputs)?;
    let running =
        prepare(&args.files, &args.cluster, Some(&inputs), args.entry.as_deref(), RequestShape::default(), display)?;
    let program = running.deployed.program();
    // Several entries and no --entry: the error names them.
    let output = running.runtime.block_on(program.run_once(args.entry.as_deref(), &inputs))?;
    let entry = args.entry.clone().unwrap_or_else(|| program.plan().entries[0].name.clone());
    write_tensors(&args.outputs, &output.outputs)?;
    if let Some(path) = &args.trace {
        trace::write_chrome_trace(path, &output.stats.spans).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("wrote {} output(s) to {}", output.outputs.len(), args.outputs.display());
    if args.stats {
        println!("{}", stats_line(&entry, &output.stats));
    }
    running.runtime.block_on(running.deployed.close());
    Ok(())
}

/// One line per call: wall time, bytes per link, round trips.
fn stats_line(label: &str, s: &CallStats) -> String {
    let links: Vec<String> = s.links.iter().map(|(k, v)| format!("{k} {v} B")).collect();
    format!(
        "{label}: {:.3} ms, {} B on the wire ({}), {} round trip(s)",
        s.wall_s * 1e3,
        s.bytes,
        if links.is_empty() { "nothing".to_string() } else { links.join(", ") },
        s.round_trips
    )
}

/// `genie generate --jsonl`: one step's line on stdout, flushed.
fn write_step_line(s: &generate::StepDone<'_>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut line = serde_json::json!({
        "step": s.step,
        "token": s.token,
        "wall_s": s.stats.wall_s,
        "bytes": s.stats.bytes,
        "batch": s.stats.last_stage_batch(),
    });
    if let Some(r) = s.recovered {
        line["recovered"] = recovered_json(r);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// A recovery from a lost worker, as `--jsonl` and `--json` print it.
fn recovered_json(r: &genie_runtime::recovery::Recovered) -> serde_json::Value {
    serde_json::json!({
        "lost": r.lost.join(","),
        "kept": r.kept,
        "replayed_tokens": r.replayed_tokens,
        "detect_s": r.detect_s,
        "seconds": r.seconds,
        "uploaded_bytes": r.uploaded_bytes,
    })
}

/// `genie generate --stats`: a line per step, then the latencies.
fn generation_stats(result: &generate::Generated, replicas: usize) -> String {
    let mut text = String::new();
    if replicas > 1 {
        text += &format!("session on replica {} of {replicas}\n", result.replica);
    }
    for (i, s) in result.steps.iter().enumerate() {
        let label = if i == 0 { "prefill".to_string() } else { format!("decode {i}") };
        text += &stats_line(&label, s);
        text.push('\n');
        for r in result.recoveries.iter().filter(|r| r.step == i) {
            text += &format!(
                "  recovered at step {i}: lost {}, detected after {:.3} s; {} ({} B of weights uploaded), replayed {} tokens in {:.3} s\n",
                if r.lost.is_empty() { "nothing".to_string() } else { r.lost.join(", ") },
                r.detect_s,
                if r.kept.is_empty() {
                    "placed anew".to_string()
                } else {
                    format!("state kept on {}, the lost part moved", r.kept.join(", "))
                },
                r.uploaded_bytes,
                r.replayed_tokens,
                r.seconds
            );
        }
    }
    text + &latency_line(result.time_to_first_token_s, &result.inter_token_s) + "\n"
}

/// Time to first token and the inter-token latencies' median and worst.
fn latency_line(first_token_s: f64, between_s: &[f64]) -> String {
    let mut sorted = between_s.to_vec();
    sorted.sort_by(f64::total_cmp);
    let between = match (sorted.get(sorted.len() / 2), sorted.last()) {
        (Some(median), Some(worst)) => {
            format!("inter-token latency median {:.3} ms, max {:.3} ms", median * 1e3, worst * 1e3)
        }
        _ => "no inter-token latency (one token)".to_string(),
    };
    format!("time to first token: {:.3} ms, {between}", first_token_s * 1e3)
}

/// Tensors by name from a safetensors file, through the bounded reader (a hostile header gets a
/// typed error naming the problem, never an allocation beyond the file's size).
fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let file =
        tensor_file::read_safetensors(path).with_context(|| format!("reading tensors from {}", path.display()))?;
    let mut tensors = BTreeMap::new();
    for (name, t) in file.tensors {
        let ty = genie_ir::TensorType::new(t.dtype, &t.shape);
        let tensor = genie_runtime::exec::tensor_from_bytes(&ty, &t.shape, &t.data, tch::Device::Cpu)
            .with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

fn write_tensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let list: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    Tensor::write_safetensors(&list, path).with_context(|| format!("writing {}", path.display()))
}

/// `genie generate`: a greedy loop, prefill then one decode step per new token.
pub fn generate(args: GenerateArgs, display: &Arc<Display>) -> Result<()> {
    let prompt = match &args.prompt_ids {
        Some(path) => {
            let tensors = read_tensors(path)?;
            let t = tensors
                .get("prompt")
                .or_else(|| tensors.get("input_ids"))
                .or_else(|| if tensors.len() == 1 { tensors.values().next() } else { None })
                .with_context(|| format!("{} has no `prompt` or `input_ids` tensor", path.display()))?;
            Vec::<i64>::try_from(t.flatten(0, -1).to_kind(tch::Kind::Int64))?
        }
        None => args.prompt.clone(),
    };
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let files = vec![args.prefill.clone(), args.decode.clone()];
    let request = RequestShape { prompt_len: prompt.len() as i64, new_tokens: args.max_new_tokens as i64 };
    let running = prepare(&files, &args.cluster, None, None, request, display)?;
    let metrics = Arc::new(GenerationMetrics::default());
    let _serving = match args.metrics {
        Some(addr) => {
            let served = metrics.clone();
            let server = MetricsServer::start(addr, Arc::new(move || served.render()), running.runtime.handle())
                .with_context(|| format!("--metrics {addr}"))?;
            // On stderr: stdout stays the tokens (or pure JSON with --json or --jsonl).
            eprintln!("genie generate metrics on http://{}/metrics", server.addr());
            Some(server)
        }
        None => None,
    };
    // With --jsonl, each step's line goes out (flushed) as the step completes; the first failed
    // write (a closed pipe) is kept and reported once the loop is over.
    let mut unwritten: Option<std::io::Error> = None;
    let on_step = |s: &generate::StepDone<'_>| {
        if args.jsonl && unwritten.is_none() {
            if let Err(e) = write_step_line(s) {
                unwritten = Some(e);
            }
        }
    };
    let generation = genie_driver::recovery::generate(
        running.deployed.program(),
        &prompt,
        args.max_new_tokens,
        Some(&metrics),
        running.replanner.as_ref(),
        args.max_recoveries,
        on_step,
    );
    let result = running.runtime.block_on(generation);
    if let Some(replanner) = &running.replanner {
        running.runtime.block_on(replanner.close());
    }
    let result = result?;
    if let Some(e) = unwritten {
        return Err(e).context("writing the steps to stdout");
    }
    if let Some(path) = &args.trace {
        let spans: Vec<trace::Span> = result.steps.iter().flat_map(|s| s.spans.iter().cloned()).collect();
        trace::write_chrome_trace(path, &spans).with_context(|| format!("writing {}", path.display()))?;
    }
    let replicas = running.deployed.program().replicas();
    if args.json {
        let steps: Vec<serde_json::Value> = result
            .steps
            .iter()
            .map(|s| serde_json::json!({"wall_s": s.wall_s, "bytes": s.bytes, "round_trips": s.round_trips, "links": s.links}))
            .collect();
        let doc = serde_json::json!({
            "prompt": prompt,
            "tokens": result.tokens,
            "time_to_first_token_s": result.time_to_first_token_s,
            "inter_token_s": result.inter_token_s,
            "steps": steps,
            "replica": result.replica,
            "replicas": replicas,
            "recoveries": result.recoveries.iter().map(|r| {
                let mut j = recovered_json(r);
                j["step"] = r.step.into();
                j
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if args.jsonl {
        // Stdout is the JSON lines: people's text goes to stderr.
        if args.stats {
            eprint!("{}", generation_stats(&result, replicas));
        }
    } else {
        let tokens: Vec<String> = result.tokens.iter().map(|t| t.to_string()).collect();
        println!("tokens: {}", tokens.join(" "));
        if args.stats {
            print!("{}", generation_stats(&result, replicas));
        }
    }
    running.runtime.block_on(running.deployed.close());
    Ok(())
}

//! `genie compile` and the plan side of `genie inspect`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use genie_codegen::ProgramPlan;
use genie_driver::pipeline::{compile_program_placed, CompileOptions};

use crate::progress::Display;
use genie_driver::cluster::ClusterChoice;
use genie_passes::placement::{ClusterSpec, PhaseChoice, Policy, RequestShape};

/// Arguments of `genie compile`.
#[derive(clap::Args)]
pub struct CompileArgs {
    /// Model or program files (.pt2, .onnx, .ron); several files form one program.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The cluster spec (RON): devices and links.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["workers", "worker_memory"])]
    pub cluster: Option<PathBuf>,
    /// A local cluster of N identical CPU workers (the default is 2).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Memory of each local worker, e.g. `64MB`, `2GiB` (default 8GiB).
    #[arg(long, value_name = "SIZE")]
    pub worker_memory: Option<String>,
    /// What placement optimises: `min-latency` (for an LLM: TTFT + N × TPOT of a request),
    /// `balance-memory`, `min-ttft` (time to first token) or `min-tpot` (time per output token).
    #[arg(long, default_value = "min-latency")]
    pub policy: Policy,
    #[command(flatten)]
    pub phases: PhaseArgs,
    /// The sequence length the memory check plans for (KV caches and activations).
    #[arg(long, value_name = "N")]
    pub max_seq: Option<i64>,
    /// Bind a symbolic dim for time and transfer estimates, e.g. `--bind s0=512` (repeatable).
    #[arg(long, value_name = "SYM=N")]
    pub bind: Vec<String>,
    /// A state binding the detection cannot decide: `OUT=IN`, each `entry.name` or a unique name.
    #[arg(long, value_name = "OUT=IN")]
    pub state: Vec<String>,
    /// Place R copies of the model on disjoint devices: the cluster's devices are cut, in
    /// order, into R groups of n / R; every group must hold the first group's placement.
    /// A session opens on the copy whose workers report the least load.
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub replicas: usize,
    /// The plan file: `.plan` (binary) or `.plan.ron` (text).
    #[arg(short, long, required = true)]
    pub output: PathBuf,
    /// Also draw the estimated schedule of one call of each entry (compute per device,
    /// transfers per link, idle time blank) as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub timeline: Option<PathBuf>,
}

/// How an LLM's phases are placed: the request the estimates assume, and whether prefill and
/// decode may run on different devices.
#[derive(clap::Args, Clone, Debug)]
pub struct PhaseArgs {
    /// For an LLM: the prompt length the estimates assume (prefill's sequence length; decode's
    /// context is this plus half of --new-tokens).
    #[arg(long, value_name = "P", default_value_t = RequestShape::default().prompt_len)]
    pub prompt_len: i64,
    /// For an LLM: tokens generated per request; `min-latency` minimises TTFT + N × TPOT.
    #[arg(long, value_name = "N", default_value_t = RequestShape::default().new_tokens)]
    pub new_tokens: i64,
    /// Whether prefill and decode may run on different devices, the KV cache handed from
    /// prefill's to decode's once per request: `auto` (when the estimates say it pays),
    /// `never`, `always`.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub disaggregate: PhaseChoice,
}

impl PhaseArgs {
    /// The request shape, checked.
    pub fn request(&self) -> Result<RequestShape> {
        if self.prompt_len < 1 || self.new_tokens < 0 {
            bail!("--prompt-len must be at least 1 and --new-tokens at least 0");
        }
        Ok(RequestShape { prompt_len: self.prompt_len, new_tokens: self.new_tokens })
    }
}

/// True when a path names a plan: `.plan`, `.plan.ron`, or a file starting with the plan magic.
pub fn is_plan_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if name.ends_with(".plan") || name.ends_with(".plan.ron") {
        return true;
    }
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|_| genie_codegen::is_binary_plan(&head))
}

/// Read a plan (binary, or RON).
pub fn read_plan(path: &Path) -> Result<ProgramPlan> {
    genie_codegen::read_file(path).with_context(|| format!("reading plan {}", path.display()))
}

/// The cluster `--cluster FILE`, or else `--workers N --worker-memory SIZE`, describes (shared by
/// `compile`, `run` and `generate`).
pub fn cluster_spec(
    cluster_file: Option<&Path>,
    workers: Option<usize>,
    worker_memory: Option<&str>,
) -> Result<ClusterSpec> {
    let choice = ClusterChoice {
        file: cluster_file.map(Path::to_path_buf),
        workers,
        worker_memory: worker_memory.map(str::to_string),
        ..ClusterChoice::default()
    };
    Ok(choice.spec()?)
}

/// `genie compile`: load, run the passes, place, generate, write.
pub fn compile(args: CompileArgs, bindings: BTreeMap<String, i64>, display: &Arc<Display>) -> Result<String> {
    let cluster = cluster_spec(args.cluster.as_deref(), args.workers, args.worker_memory.as_deref())?;
    let mut program = genie_frontends::load(&args.files)?;
    let options = CompileOptions {
        bindings,
        state: args.state.clone(),
        policy: args.policy,
        max_seq: args.max_seq,
        request: Some(args.phases.request()?),
        phases: args.phases.disaggregate,
        replicas: args.replicas,
        ..Default::default()
    };
    let (plan, placement) =
        display.while_running("compiling", || compile_program_placed(&mut program, &cluster, &options))?;
    genie_codegen::write_file(&args.output, &plan)?;
    let mut report = format!("wrote {}\n", args.output.display());
    if let Some(path) = &args.timeline {
        let svg = genie_passes::placement::timeline::svg(&placement.timelines);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        report.push_str(&format!("wrote {}\n", path.display()));
    }
    report.push_str(&summary_text(&genie_codegen::summary(&plan)));
    Ok(report)
}

/// A plan summary for people.
pub fn summary_text(s: &genie_codegen::PlanSummary) -> String {
    let human = genie_codegen::summary::human;
    let mut t = String::new();
    writeln!(t, "plan {} ({})", s.program, s.policy.as_deref().unwrap_or("no policy")).ok();
    for d in &s.devices {
        writeln!(
            t,
            "  {:<12} {:>6} nodes  peak {:>10} of {:>10}  (weights {}, kv {}, activations {})",
            d.name,
            d.nodes,
            human(d.peak_bytes),
            human(d.memory_bytes),
            human(d.weight_bytes),
            human(d.kv_bytes),
            human(d.activation_bytes)
        )
        .ok();
    }
    for (name, e) in &s.entries {
        write!(
            t,
            "  entry {name}: {} per call in {} transfers, {} round trips",
            human(e.bytes_per_call),
            e.transfers.len(),
            e.round_trips
        )
        .ok();
        if let Some(l) = e.est_latency_s {
            write!(t, ", est {:.3} ms", l * 1e3).ok();
        }
        t.push('\n');
        writeln!(t, "    on {}", e.devices.join(", ")).ok();
        for x in &e.transfers {
            writeln!(t, "    {} -> {}: {} {} ({})", x.from, x.to, x.value, human(x.bytes), x.residency).ok();
        }
    }
    if !s.replicas.is_empty() {
        let copies: Vec<String> = s.replicas.iter().map(|r| r.join(", ")).collect();
        writeln!(t, "  {} replicas, each session on one: {}", s.replicas.len(), copies.join(" | ")).ok();
    }
    for h in &s.state_handoffs {
        writeln!(
            t,
            "  state handoff {} -> {}: {} in {} tensors from {} to {}, {}",
            h.from_entry,
            h.to_entry,
            human(h.bytes),
            h.tensors,
            h.from_device,
            h.to_device,
            if h.layerwise { "layer by layer as prefill produces them" } else { "at the end of the call" }
        )
        .ok();
    }
    if let Some(r) = &s.estimates {
        let line =
            |p: &genie_codegen::PhaseEstimate| format!("TTFT {:.3} ms, TPOT {:.3} ms", p.ttft_s * 1e3, p.tpot_s * 1e3);
        writeln!(
            t,
            "  request of {} prompt tokens and {} new: phases {}; chosen {}",
            r.request.prompt_len,
            r.request.new_tokens,
            if r.disaggregated { "apart" } else { "together" },
            line(&r.chosen)
        )
        .ok();
        if let Some(c) = &r.co_located {
            writeln!(t, "    best with the phases together: {}", line(c)).ok();
        }
        if let Some(a) = &r.disaggregated_alternative {
            writeln!(t, "    best with the phases apart: {}", line(a)).ok();
        }
        writeln!(t, "    why: {}", r.reason).ok();
    }
    t
}

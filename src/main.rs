//! `genie`: the command-line interface.

mod bench;
mod compile;
mod progress;
mod remote;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use genie_ir::render::{self, DotColoring};
use genie_ir::Program;

#[derive(Parser)]
#[command(
    name = "genie",
    version,
    about = "Semantic-aware accelerator disaggregation: inspect, compile and run models"
)]
struct Cli {
    /// More logging (-v: info with per-pass timing, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// No progress bars or progress lines (uploads, compiles, model generation).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what Genie understood of a model or program, or what a plan does.
    Inspect(InspectArgs),
    /// Place a model on a cluster and write its per-device execution plans.
    Compile(compile::CompileArgs),
    /// Serve plans on this machine's CPU or GPU, over QUIC with TLS and a token.
    Worker(remote::WorkerArgs),
    /// Run one call of a model (or plan) on workers: inputs and outputs as safetensors.
    Run(remote::RunArgs),
    /// Greedy generation with a prefill and a decode model; the KV cache stays on the workers.
    Generate(remote::GenerateArgs),
    /// Measure genie against in-process execution, per-op remoting and semantics-blind remoting;
    /// `--suite pd`: prefill and decode apart; `--suite serve`: many sessions at once, batched.
    Bench(bench::BenchArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// One line per node with facts and annotations.
    Text,
    /// The program as RON (reads back exactly).
    Ron,
    /// The program as JSON.
    Json,
    /// Graphviz DOT.
    Dot,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// Model or program files (.ron, .pt2, .onnx); several files form one program.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Print a summary (name, nodes, ops, inputs, outputs, weights) instead of the whole graph.
    #[arg(long)]
    summary: bool,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Stop after this pass and show the graph then: `import` (no passes), a pass name, or `all`.
    /// Models (.pt2, .onnx) default to `all`; RON programs to `import` (they are shown as written).
    #[arg(long, value_name = "NAME")]
    pass: Option<String>,
    /// Bind a symbolic dim for cost hints and byte totals, e.g. `--bind s0=512` (repeatable).
    #[arg(long, value_name = "SYM=N")]
    bind: Vec<String>,
    /// A state binding the detection cannot decide: `OUT=IN`, each `entry.name` or a unique name.
    #[arg(long, value_name = "OUT=IN")]
    state: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause shown only when the message before does not already
/// include it (library errors often print their source inline).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // egg logs every e-graph rebuild at info; keep it to warnings unless asked for with GENIE_LOG.
    let filter = tracing_subscriber::EnvFilter::try_from_env("GENIE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},egg=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}

fn run(cli: Cli) -> Result<()> {
    let display = progress::Display::new(cli.quiet);
    match cli.command {
        Command::Inspect(args) => inspect(args),
        Command::Compile(args) => {
            let bindings = parse_bindings(&args.bind)?;
            let report = compile::compile(args, bindings, &display)?;
            emit(&None, report)
        }
        Command::Worker(args) => remote::worker(args),
        Command::Run(args) => remote::run(args, &display),
        Command::Generate(args) => remote::generate(args, &display),
        Command::Bench(args) => bench::bench(args, &display),
    }
}

/// Load model files; frontend errors already name the file.
fn load(files: &[PathBuf]) -> Result<Program> {
    Ok(genie_frontends::load(files)?)
}

fn parse_bindings(specs: &[String]) -> Result<BTreeMap<String, i64>> {
    specs
        .iter()
        .map(|s| {
            let (k, v) = s.split_once('=').with_context(|| format!("--bind `{s}` is not SYM=N"))?;
            let v: i64 = v.trim().parse().with_context(|| format!("--bind `{s}`: `{v}` is not an integer"))?;
            Ok((k.trim().to_string(), v))
        })
        .collect()
}

/// Run the pass pipeline as far as `--pass` asks.
fn run_passes(program: &mut Program, args: &InspectArgs, bindings: &BTreeMap<String, i64>) -> Result<()> {
    let all_ron = args.files.iter().all(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("ron")));
    let stop = match args.pass.as_deref() {
        Some("import") => return Ok(()),
        None if all_ron => return Ok(()),
        Some("all") | None => None,
        Some(name) => Some(name),
    };
    let state_overrides =
        genie_passes::state::parse_state_overrides(program, &args.state).map_err(anyhow::Error::msg)?;
    let options = genie_passes::PassOptions { bindings: bindings.clone(), state_overrides, request: None };
    genie_passes::PassManager::with_options(options)
        .run(program, stop)
        .with_context(|| format!("running passes on {}", program.name))?;
    Ok(())
}

/// `genie inspect PLAN`: the plan as text, RON, JSON, DOT (nodes coloured by device) or summary.
fn inspect_plan(args: &InspectArgs) -> Result<()> {
    if args.files.len() != 1 {
        bail!("inspect one plan at a time");
    }
    if args.pass.is_some() || !args.bind.is_empty() || !args.state.is_empty() {
        bail!("--pass, --bind and --state apply to models, not to a compiled plan");
    }
    let plan = compile::read_plan(&args.files[0])?;
    let text = if args.summary {
        let summary = genie_codegen::summary(&plan);
        match args.format {
            Format::Json => serde_json::to_string_pretty(&summary)? + "\n",
            Format::Text => compile::summary_text(&summary),
            Format::Ron => ron::ser::to_string_pretty(&summary, ron::ser::PrettyConfig::new())? + "\n",
            Format::Dot => bail!("--summary has no DOT form; use --format text, json or ron"),
        }
    } else {
        match args.format {
            Format::Text => genie_codegen::summary::dump(&plan),
            Format::Ron => genie_codegen::to_ron(&plan)?,
            Format::Json => serde_json::to_string_pretty(&plan)? + "\n",
            Format::Dot => genie_codegen::summary::dot(&plan),
        }
    };
    emit(&args.output, text)
}

fn inspect(args: InspectArgs) -> Result<()> {
    if args.files.iter().any(|f| compile::is_plan_file(f)) {
        return inspect_plan(&args);
    }
    let mut program = load(&args.files)?;
    let bindings = parse_bindings(&args.bind)?;
    run_passes(&mut program, &args, &bindings)?;
    let text = if args.summary {
        let summary = render::summary(&program, &render::SummaryOptions { bindings });
        match args.format {
            Format::Json => serde_json::to_string_pretty(&summary)? + "\n",
            Format::Text => summary_text(&summary),
            Format::Ron => ron::ser::to_string_pretty(&summary, ron::ser::PrettyConfig::new())? + "\n",
            Format::Dot => bail!("--summary has no DOT form; use --format text, json or ron"),
        }
    } else {
        match args.format {
            Format::Text => render::dump_program(&program),
            Format::Ron => program.to_ron()?,
            Format::Json => serde_json::to_string_pretty(&program)? + "\n",
            Format::Dot => render::dot_program(&program, DotColoring::Auto),
        }
    };
    emit(&args.output, text)
}

/// Write to a file, or to standard output.
fn emit(output: &Option<PathBuf>, text: String) -> Result<()> {
    match output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`genie inspect … | head`) is not an error worth reporting.
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e).context("writing to standard output");
                }
            }
        }
    }
    Ok(())
}

fn summary_text(s: &render::Summary) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let port = |p: &render::PortSummary| {
        let dims: Vec<String> = p.shape.iter().map(|d| d.to_string().trim_matches('"').to_string()).collect();
        format!("{}: {}[{}]", p.name, p.dtype, dims.join(", "))
    };
    writeln!(t, "program {}: {} nodes, {} weights ({} bytes)", s.name, s.nodes, s.weights.count, s.weights.bytes).ok();
    for b in &s.state_bindings {
        writeln!(t, "state {} -> {}", b.from, b.to).ok();
    }
    for e in &s.entries {
        writeln!(t, "entry {} (phase {}): {} nodes, {:.3} GFLOP", e.name, e.phase, e.nodes, e.flops as f64 / 1e9).ok();
        if !e.tags.is_empty() {
            let tags: Vec<String> = e.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(t, "  tags      {}", tags.join(" ")).ok();
        }
        if !e.residency_bytes.is_empty() {
            let r: Vec<String> = e.residency_bytes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(t, "  residency {} (bytes)", r.join(" ")).ok();
        }
        for p in &e.inputs {
            writeln!(t, "  input  {}", port(p)).ok();
        }
        for p in &e.outputs {
            writeln!(t, "  output {}", port(p)).ok();
        }
        for (op, n) in &e.ops {
            writeln!(t, "  {n:>6} {op}").ok();
        }
    }
    t
}

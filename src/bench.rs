//! `genie bench`: arguments and output; the benchmark itself is `genie_driver::bench`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use genie_driver::bench::{self, BenchOptions};

use crate::progress::Display;

/// Arguments of `genie bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// `default`: GPT-2-small decode at contexts 128/512/2048, prefill 512, ResNet-18 at batch 1
    /// and 8, a BERT-base encoder (models generated once into `--models`). `quick`: the small
    /// test fixtures, in seconds. `pd`: GPT-2-small requests (prompt 512, 64 new tokens) on two
    /// `genie worker` processes pinned to a core each, prefill and decode co-located vs
    /// disaggregated (a few minutes). `serve`: 1, 4, 16 and 64 GPT-2-small sessions at once
    /// (prompt 256, 32 new tokens each) on one `genie worker`, decode steps batched (default
    /// `--max-batch`) and not (`--max-batch 1`), every session's tokens checked (minutes).
    /// `recovery`: GPT-2-small on two of three `genie worker` processes (the third a spare),
    /// the second SIGKILLed after the fifth token, for 32 and 256 new tokens: detection and
    /// recovery time against the uninterrupted generation (minutes). `pd-quick`, `serve-quick`,
    /// `recovery-quick`: the same on the GPT-2 test fixture, in seconds.
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
    /// Only these modes of the `default`/`quick` suites (comma-separated: local, genie, blind,
    /// per-op, torch); all when not given.
    #[arg(long, value_delimiter = ',')]
    pub modes: Vec<String>,
    /// Run the `default`/`quick` suites beside this many CPU-bound competitor processes (busy
    /// loops, one core each), to see how the modes degrade when cores are taken.
    #[arg(long, default_value_t = 0)]
    pub competitors: usize,
    /// Only these workloads of the `default`/`quick` suites (comma-separated: decode, prefill,
    /// cnn, encoder); all when not given.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Run plans op by op: no fused element-wise regions (the JIT's before/after).
    #[arg(long)]
    pub no_jit: bool,
}

/// `genie bench`.
pub fn bench(args: BenchArgs, display: &Arc<Display>) -> Result<()> {
    let started = Instant::now();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let options = BenchOptions {
        suite: args.suite.clone(),
        models: args.models.clone(),
        workers: args.workers,
        runs: args.runs,
        budget_s: args.budget_s,
        python: root.join(".venv/bin/python"),
        root,
        progress: display.sink(),
        genie: std::env::current_exe().ok(),
        modes: args.modes.clone(),
        competitors: args.competitors,
        workloads: args.workloads.clone(),
        jit: !args.no_jit,
    };
    // The suites of their own: a table, and `{"<suite>": …}` at --json.
    let own = match options.suite.as_str() {
        "pd" | "pd-quick" => {
            let report = bench::pd::run(&options, &mut |line| println!("{line}"))?;
            Some((bench::pd::table(&report), serde_json::json!({ "pd": report })))
        }
        "recovery" | "recovery-quick" => {
            let report = bench::recovery::run(&options, &mut |line| println!("{line}"))?;
            Some((bench::recovery::table(&report), serde_json::json!({ "recovery": report })))
        }
        "serve" | "serve-quick" => {
            let report = bench::serve::run(&options, &mut |line| println!("{line}"))?;
            Some((bench::serve::table(&report), serde_json::json!({ "serve": report.rows })))
        }
        _ => None,
    };
    if let Some((table, json)) = own {
        println!("{table}");
        if let Some(path) = &args.json {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            println!("json: {}", path.display());
        }
        println!("bench took {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let report = bench::run(&options, &mut |line| println!("{line}"))?;
    println!("{}", bench::table(&report));
    if let Some(parent) = args.plot.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(&args.plot, bench::plot(&report.runs))
        .with_context(|| format!("writing {}", args.plot.display()))?;
    println!("plot: {}", args.plot.display());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("json: {}", path.display());
    }
    println!("bench took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

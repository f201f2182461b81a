//! `genie bench --suite pd`: prefill and decode together or apart, measured on real workers.
//!
//! Two `genie worker` processes on loopback, each pinned to its own CPU core
//! (`genie worker --cpus N`: sched_setaffinity, one libtorch thread). The GPT-2-small benchmark
//! model serves one stream of requests (a 512-token prompt, 64 new tokens each, arriving at a
//! fixed interval so that prefills and decodes overlap) twice, in one run:
//! - **co-located**: each worker holds the whole model and runs both phases of the requests it
//!   is given (two replicas, requests alternating), as a non-disaggregated deployment would;
//! - **disaggregated**: placement puts prefill on one worker and decode on the other
//!   (`--disaggregate always`); each request's KV cache goes from worker to worker once.
//!
//! For each: time to first token and inter-token latency (p50, p99) under the stream, tokens
//! per second, one request alone, and placement's estimates for that request beside the
//! measurements (measured / estimated). The devices placement plans for are calibrated first:
//! one core's matmul FLOP/s, its memory bandwidth and its per-op overhead, measured here.

use std::path::PathBuf;
use std::time::Instant;

use genie_ir::RequestShape;
use genie_passes::placement::PhaseChoice;
use genie_runtime::client::Program;
use genie_runtime::deploy::Deployed;
use genie_runtime::generate::{self, Generated};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::common::{self, deployment_section, median, percentile, start_worker, Compile, WorkerProcess};
use super::{generate_models, BenchError, BenchOptions};

/// What a run of the suite serves: the model, the request every stream is made of, and how
/// many requests.
struct Setup {
    model: &'static str,
    files: Vec<PathBuf>,
    request: RequestShape,
    requests: usize,
    /// The vocabulary, for the prompts' token ids.
    vocab: i64,
}

impl Setup {
    /// `pd`: GPT-2-small, 512-token prompts, 64 new tokens, 8 requests. `pd-quick`: the GPT-2
    /// test fixture, so that a test runs the suite's code in seconds.
    fn of(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Setup, BenchError> {
        if options.suite == "pd-quick" {
            let g = options.root.join("testsuite/fixtures/gpt2");
            return Ok(Setup {
                model: "gpt2 test fixture",
                files: vec![g.join("prefill.pt2"), g.join("decode.pt2")],
                request: RequestShape { prompt_len: 24, new_tokens: 8 },
                requests: 4,
                vocab: 128,
            });
        }
        generate_models(options, progress)?;
        let g = options.models.join("gpt2s");
        Ok(Setup {
            model: "gpt2-small (124M parameters, fp32)",
            files: vec![g.join("prefill.pt2"), g.join("decode.pt2")],
            request: RequestShape { prompt_len: 512, new_tokens: 64 },
            requests: 8,
            vocab: 50257,
        })
    }

    /// A deterministic prompt.
    fn prompt(&self, seed: u64) -> Vec<i64> {
        common::prompt(seed, self.request.prompt_len, self.vocab)
    }
}
/// Assumed for loopback between the pinned workers (stated in the report).
const LOOPBACK_BANDWIDTH: f64 = 2e9;
const LOOPBACK_LATENCY: f64 = 1e-4;

/// One core, as placement's cost model is told about it.
#[derive(Serialize, Clone, Debug)]
pub struct Calibration {
    /// FLOP/s of a 512×768 by 768×3072 fp32 matmul on one thread.
    pub flops: f64,
    /// Bytes/s of weights streamed through matrix-vector products (288 MiB of them) on one
    /// thread: what memory-bound ops such as a decode step's dense layers reach.
    pub mem_bandwidth: f64,
    /// Seconds per tiny op.
    pub op_overhead: f64,
}

/// One way of placing the phases, measured.
#[derive(Serialize, Clone, Debug)]
pub struct PdRow {
    /// `co-located` or `disaggregated`.
    pub mode: String,
    /// Where each phase ran.
    pub placement: String,
    /// Bytes of KV cache handed from worker to worker per request (0 when co-located).
    pub handoff_bytes: u64,
    /// One request alone (warm): time to first token and median inter-token latency.
    pub alone_ttft_s: f64,
    pub alone_itl_s: f64,
    /// Placement's estimates for one request alone.
    pub est_ttft_s: f64,
    pub est_tpot_s: f64,
    /// Measured alone / estimated.
    pub ttft_ratio: f64,
    pub tpot_ratio: f64,
    /// Under the stream: from a request's arrival to its first token.
    pub ttft_p50_s: f64,
    pub ttft_p99_s: f64,
    /// Under the stream: between consecutive tokens of a request.
    pub itl_p50_s: f64,
    pub itl_p99_s: f64,
    /// Tokens generated per second, from the first arrival to the last token.
    pub tokens_per_s: f64,
}

/// What `genie bench --suite pd` measured (`--json` writes `{"pd": …}`).
#[derive(Serialize, Clone, Debug)]
pub struct PdReport {
    /// How the workers ran.
    pub workers: String,
    pub model: String,
    pub prompt_len: i64,
    pub new_tokens: i64,
    pub requests: usize,
    /// Seconds between arrivals: two thirds of one request's time alone (co-located), so the
    /// replicas are three-quarters busy and prefills overlap decodes.
    pub interval_s: f64,
    pub calibration: Calibration,
    /// Link parameters assumed for loopback.
    pub link: String,
    pub rows: Vec<PdRow>,
}

fn seconds(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// One core's roofline, measured on one libtorch thread.
fn calibrate() -> Calibration {
    tch::set_num_threads(1);
    let _guard = tch::no_grad_guard();
    let opts = (Kind::Float, Device::Cpu);
    let (a, b) = (Tensor::randn([512, 768], opts), Tensor::randn([768, 3072], opts));
    let _ = a.matmul(&b);
    let reps = 8;
    let t = seconds(|| (0..reps).for_each(|_| drop(a.matmul(&b))));
    let flops = 2.0 * 512.0 * 768.0 * 3072.0 * reps as f64 / t;
    // As memory-bound ops see it: matrix-vector products streaming 288 MiB of weights (more
    // than any cache), as a decode step's dense layers do. A plain copy runs about 1.7× faster
    // on this machine's cores, and a roofline fed with it under-estimates decode by as much.
    let weights: Vec<Tensor> = (0..32).map(|_| Tensor::ones([3072, 768], opts)).collect();
    let row = Tensor::ones([1, 768], opts);
    let stream = || weights.iter().for_each(|w| drop(row.linear::<Tensor>(w, None)));
    stream();
    let t = seconds(|| (0..reps).for_each(|_| stream()));
    let mem_bandwidth = (weights.len() * 3072 * 768 * 4) as f64 * reps as f64 / t;
    let tiny = Tensor::ones([1], opts);
    let t = seconds(|| (0..2000).for_each(|_| drop(&tiny + 1.0)));
    Calibration { flops, mem_bandwidth, op_overhead: t / 2000.0 }
}

/// A cluster file for `devices` (names of started workers), with their deployment.
fn cluster_text(c: &Calibration, devices: &[(&str, &WorkerProcess)]) -> String {
    let specs: Vec<String> = devices
        .iter()
        .map(|(name, _)| {
            format!(
                "(name: \"{name}\", kind: cpu, memory: \"8GiB\", flops: {:e}, mem_bandwidth: {:e}, op_overhead: {:e})",
                c.flops, c.mem_bandwidth, c.op_overhead
            )
        })
        .collect();
    format!(
        "(devices: [{}], default_link: (bandwidth: {LOOPBACK_BANDWIDTH:e}, latency: {LOOPBACK_LATENCY:e}), {})",
        specs.join(", "),
        deployment_section(devices)
    )
}

/// Compile the model for a cluster file and deploy it on the workers the file names.
fn compile_and_deploy(
    runtime: &tokio::runtime::Runtime,
    setup: &Setup,
    cluster: &str,
    phases: PhaseChoice,
    token: &str,
) -> Result<(Deployed, genie_codegen::ProgramPlan), BenchError> {
    let what = Compile { suite: "pd", files: &setup.files, request: setup.request, phases, max_seq: None };
    common::compile_and_deploy(runtime, &what, cluster, token)
}

/// One request alone on `program`: (time to first token, median inter-token latency).
fn alone(runtime: &tokio::runtime::Runtime, setup: &Setup, program: &Program) -> Result<(f64, f64), BenchError> {
    let g = runtime
        .block_on(generate::greedy(program, &setup.prompt(0), setup.request.new_tokens as usize, None))
        .map_err(|e| BenchError::Workload {
            workload: "pd".into(),
            reason: format!("a request alone: {}", common::with_causes(&e)),
        })?;
    Ok((g.time_to_first_token_s, median(&g.inter_token_s)))
}

/// The stream: request `i` arrives at `i × interval` and goes to `programs[i % len]`.
fn stream(
    runtime: &tokio::runtime::Runtime,
    setup: &Setup,
    programs: &[Program],
    interval: f64,
) -> Result<(Vec<Generated>, f64), BenchError> {
    let prompts = (0..setup.requests).map(|i| setup.prompt(i as u64 + 1)).collect();
    common::generate_concurrently(runtime, "pd", programs, prompts, setup.request.new_tokens as usize, interval)
}

fn row(
    mode: &str,
    placement: String,
    plan: &genie_codegen::ProgramPlan,
    alone: (f64, f64),
    generated: &[Generated],
    makespan: f64,
) -> PdRow {
    let (est_ttft_s, est_tpot_s) = plan.phases.as_ref().map_or((0.0, 0.0), |p| (p.chosen.ttft_s, p.chosen.tpot_s));
    let handoff_bytes = plan.entries.iter().flat_map(|e| &e.handoffs).map(|h| h.bytes).fold(0u64, u64::saturating_add);
    let ttfts: Vec<f64> = generated.iter().map(|g| g.time_to_first_token_s).collect();
    let itls: Vec<f64> = generated.iter().flat_map(|g| g.inter_token_s.iter().copied()).collect();
    let tokens: usize = generated.iter().map(|g| g.tokens.len()).sum();
    let ratio = |m: f64, e: f64| if e > 0.0 { m / e } else { 0.0 };
    PdRow {
        mode: mode.to_string(),
        placement,
        handoff_bytes,
        alone_ttft_s: alone.0,
        alone_itl_s: alone.1,
        est_ttft_s,
        est_tpot_s,
        ttft_ratio: ratio(alone.0, est_ttft_s),
        tpot_ratio: ratio(alone.1, est_tpot_s),
        ttft_p50_s: median(&ttfts),
        ttft_p99_s: percentile(&ttfts, 99.0),
        itl_p50_s: median(&itls),
        itl_p99_s: percentile(&itls, 99.0),
        tokens_per_s: tokens as f64 / makespan.max(1e-9),
    }
}

/// Where each entry of a plan ran.
fn placement_of(plan: &genie_codegen::ProgramPlan) -> String {
    let running = |e| genie_codegen::summary::devices_running(e).join("+");
    plan.entries.iter().map(|e| format!("{} on {}", e.name, running(e))).collect::<Vec<_>>().join(", ")
}

/// Run the suite.
pub fn run(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<PdReport, BenchError> {
    let genie = options.genie.clone().ok_or_else(|| BenchError::Workload {
        workload: "pd".into(),
        reason: "the pd suite starts `genie worker` processes: BenchOptions::genie names the binary".into(),
    })?;
    let setup = Setup::of(options, progress)?;
    progress("== calibrating one core (matmul FLOP/s, memory bandwidth, op overhead)");
    let calibration = calibrate();
    progress(&format!(
        "  {:.1} GFLOP/s, {:.1} GB/s, {:.1} µs per op",
        calibration.flops / 1e9,
        calibration.mem_bandwidth / 1e9,
        calibration.op_overhead * 1e6
    ));
    let token = common::token();
    let w0 = start_worker(&genie, &token, &["--cpus", "0"])?;
    let w1 = start_worker(&genie, &token, &["--cpus", "1"])?;
    let workers = format!(
        "w0 = `genie worker --cpus 0` at {}, w1 = `genie worker --cpus 1` at {} (sched_setaffinity to one core each, one libtorch thread each)",
        w0.address, w1.address
    );
    progress(&format!("== {workers}"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    progress("== co-located: a replica of the whole model on each worker");
    let (a, plan_a) =
        compile_and_deploy(&runtime, &setup, &cluster_text(&calibration, &[("w0", &w0)]), PhaseChoice::Never, &token)?;
    let (b, _) =
        compile_and_deploy(&runtime, &setup, &cluster_text(&calibration, &[("w1", &w1)]), PhaseChoice::Never, &token)?;
    let replicas = [a.program().clone(), b.program().clone()];
    let alone_co = alone(&runtime, &setup, &replicas[0])?;
    alone(&runtime, &setup, &replicas[1])?;
    let request_s = alone_co.0 + alone_co.1 * (setup.request.new_tokens - 1) as f64;
    let interval_s = request_s * 2.0 / 3.0;
    progress(&format!(
        "  alone: TTFT {:.3} s, ITL {:.1} ms; {} requests arriving every {interval_s:.2} s",
        alone_co.0,
        alone_co.1 * 1e3,
        setup.requests
    ));
    let (generated, makespan) = stream(&runtime, &setup, &replicas, interval_s)?;
    let co = row(
        "co-located",
        "each worker: prefill and decode (2 replicas)".into(),
        &plan_a,
        alone_co,
        &generated,
        makespan,
    );
    drop((a, b));

    progress("== disaggregated: prefill on one worker, decode on the other");
    let both = cluster_text(&calibration, &[("w0", &w0), ("w1", &w1)]);
    let (d, plan_d) = compile_and_deploy(&runtime, &setup, &both, PhaseChoice::Always, &token)?;
    let program = d.program().clone();
    let alone_d = alone(&runtime, &setup, &program)?;
    let (generated, makespan) = stream(&runtime, &setup, std::slice::from_ref(&program), interval_s)?;
    let apart = row("disaggregated", placement_of(&plan_d), &plan_d, alone_d, &generated, makespan);
    drop(d);

    Ok(PdReport {
        workers,
        model: setup.model.into(),
        prompt_len: setup.request.prompt_len,
        new_tokens: setup.request.new_tokens,
        requests: setup.requests,
        interval_s,
        calibration,
        link: format!("loopback assumed {:.0} GB/s, {:.0} µs", LOOPBACK_BANDWIDTH / 1e9, LOOPBACK_LATENCY * 1e6),
        rows: vec![co, apart],
    })
}

/// The table people read.
pub fn table(r: &PdReport) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    writeln!(t, "\n{}", r.workers).ok();
    writeln!(
        t,
        "{}: {} requests of {} prompt tokens + {} new, one every {:.2} s; cores calibrated at {:.1} GFLOP/s, {:.1} GB/s, {:.1} µs/op; {}",
        r.model,
        r.requests,
        r.prompt_len,
        r.new_tokens,
        r.interval_s,
        r.calibration.flops / 1e9,
        r.calibration.mem_bandwidth / 1e9,
        r.calibration.op_overhead * 1e6,
        r.link
    )
    .ok();
    writeln!(
        t,
        "\n{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>10}",
        "mode",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "tok/s",
        "alone TTFT",
        "est TTFT",
        "×",
        "alone ITL",
        "est TPOT",
        "×",
        "handoff"
    )
    .ok();
    for x in &r.rows {
        writeln!(
            t,
            "{:<14} {:>8.3}s {:>8.3}s {:>7.1}ms {:>7.1}ms {:>9.2} | {:>9.3}s {:>8.3}s {:>7.2} {:>7.1}ms {:>7.1}ms {:>7.2} {:>10}",
            x.mode,
            x.ttft_p50_s,
            x.ttft_p99_s,
            x.itl_p50_s * 1e3,
            x.itl_p99_s * 1e3,
            x.tokens_per_s,
            x.alone_ttft_s,
            x.est_ttft_s,
            x.ttft_ratio,
            x.alone_itl_s * 1e3,
            x.est_tpot_s * 1e3,
            x.tpot_ratio,
            genie_ir::render::human_bytes(x.handoff_bytes)
        )
        .ok();
    }
    for x in &r.rows {
        writeln!(t, "  {}: {}", x.mode, x.placement).ok();
    }
    t
}

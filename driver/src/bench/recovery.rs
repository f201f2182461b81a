//! `genie bench --suite recovery`: what losing a worker costs a generation.
//!
//! Three `genie worker` processes on loopback: GPT-2-small (a 16-token prompt) placed on two of
//! them (their memory makes it split), the third a spare. For 32 and 256 new tokens, a
//! generation runs uninterrupted; then, on fresh workers, the same generation with the worker
//! of the plan's second device SIGKILLed right after the fifth token, once at the default
//! detection bound and once at 1 s. Reported per row: the uninterrupted generation's time
//! (time to first token + every inter-token latency); the time from the lost call's start to
//! its failure (the silent connection idling out: detection); from the failure to the lost
//! step's token (the probe that declares the worker dead; the lost part moved to the spare,
//! the survivor keeping its state; loading; the replay that rebuilds the moved part's state);
//! each as a ratio of the uninterrupted time; and the weight bytes the new placement uploaded.
//! Every token must equal the uninterrupted run's, or the suite fails.
//! `recovery-quick` runs the same on the GPT-2 test fixture, in seconds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use genie_ir::RequestShape;
use genie_passes::placement::{ClusterSpec, PhaseChoice};
use genie_runtime::client::{ClientOptions, DEFAULT_DETECTION};
use genie_runtime::deploy::{self, DeploymentSpec};
use genie_runtime::generate::{self, Generated};
use genie_runtime::recovery::{Recovered, Recovery};
use serde::Serialize;

use super::common::{self, deployment_section, start_worker, with_causes, WorkerProcess};
use super::{generate_models, BenchError, BenchOptions};
use crate::pipeline::{compile_program, CompileOptions};
use crate::recovery::Replanner;

/// What a run of the suite generates.
struct Setup {
    model: &'static str,
    files: Vec<PathBuf>,
    prompt_len: i64,
    vocab: i64,
    /// Generations of this many new tokens, one row each per detection bound.
    new_tokens: &'static [usize],
    detection: Vec<Duration>,
    /// Each device's memory: the model does not fit one.
    memory: &'static str,
}

impl Setup {
    fn of(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Setup, BenchError> {
        if options.suite == "recovery-quick" {
            let g = options.root.join("testsuite/fixtures/gpt2");
            return Ok(Setup {
                model: "gpt2 test fixture",
                files: vec![g.join("prefill.pt2"), g.join("decode.pt2")],
                prompt_len: 5,
                vocab: 128,
                new_tokens: &[16],
                detection: vec![Duration::from_secs(2)],
                memory: "100KB",
            });
        }
        generate_models(options, progress)?;
        let g = options.models.join("gpt2s");
        Ok(Setup {
            model: "gpt2-small (124M parameters, fp32)",
            files: vec![g.join("prefill.pt2"), g.join("decode.pt2")],
            prompt_len: 16,
            vocab: 50257,
            new_tokens: &[32, 256],
            detection: vec![DEFAULT_DETECTION, Duration::from_secs(1)],
            memory: "400MB",
        })
    }
}

/// One generation that lost a worker, against the same generation uninterrupted.
#[derive(Serialize, Clone, Debug)]
pub struct RecoveryRow {
    pub new_tokens: usize,
    /// `--detect-secs`.
    pub detection_bound_s: f64,
    /// Time to first token + every inter-token latency, with no worker lost.
    pub uninterrupted_s: f64,
    /// The step whose call was lost, the worker lost, and the tokens the replay ran over.
    pub step: usize,
    pub lost: String,
    /// The workers that kept the program and the session's state (empty: placed anew).
    pub kept: String,
    pub replayed_tokens: usize,
    /// From the lost call's start to its failure.
    pub detect_s: f64,
    /// From the failure to the lost step's token.
    pub recover_s: f64,
    pub uploaded_bytes: u64,
    pub detect_ratio: f64,
    pub recover_ratio: f64,
    /// (detection + recovery) ÷ uninterrupted.
    pub total_ratio: f64,
}

#[derive(Serialize, Clone, Debug)]
pub struct RecoveryReport {
    pub model: String,
    pub prompt_len: i64,
    pub workers: String,
    pub rows: Vec<RecoveryRow>,
}

/// Run the suite.
pub fn run(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<RecoveryReport, BenchError> {
    let failed = |reason: String| BenchError::Workload { workload: "recovery".into(), reason };
    let genie = options.genie.clone().ok_or_else(|| {
        failed("the recovery suite starts `genie worker` processes: BenchOptions::genie names the binary".into())
    })?;
    let setup = Setup::of(options, progress)?;
    let prompt = common::prompt(7, setup.prompt_len, setup.vocab);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut rows = Vec::new();
    for &new_tokens in setup.new_tokens {
        let whole = generation(&runtime, &genie, &setup, &prompt, new_tokens, DEFAULT_DETECTION, false)?.0;
        let uninterrupted_s = whole.time_to_first_token_s + whole.inter_token_s.iter().sum::<f64>();
        progress(&format!("  {new_tokens} tokens uninterrupted: {uninterrupted_s:.2} s"));
        for &bound in &setup.detection {
            let (g, killed) = generation(&runtime, &genie, &setup, &prompt, new_tokens, bound, true)?;
            if g.tokens != whole.tokens {
                return Err(failed(format!(
                    "{new_tokens} tokens, {killed} lost: the tokens differ from the uninterrupted run's"
                )));
            }
            let Some(r) = g.recoveries.first() else {
                return Err(failed(format!("{new_tokens} tokens: {killed} was killed but nothing recovered")));
            };
            let row = row(new_tokens, bound, uninterrupted_s, r);
            progress(&format!(
                "  {new_tokens} tokens, detection bound {:.0} s: {} lost at step {}, detected after {:.2} s, \
                 recovered in {:.2} s ({:.2}× the uninterrupted generation in all)",
                bound.as_secs_f64(),
                row.lost,
                row.step,
                row.detect_s,
                row.recover_s,
                row.total_ratio
            ));
            rows.push(row);
        }
    }
    Ok(RecoveryReport {
        model: setup.model.into(),
        prompt_len: setup.prompt_len,
        workers: format!(
            "three `genie worker` processes on loopback, devices of {} each, the third a spare",
            setup.memory
        ),
        rows,
    })
}

fn row(new_tokens: usize, bound: Duration, uninterrupted_s: f64, r: &Recovered) -> RecoveryRow {
    RecoveryRow {
        new_tokens,
        detection_bound_s: bound.as_secs_f64(),
        uninterrupted_s,
        step: r.step,
        lost: r.lost.join(","),
        kept: r.kept.join(","),
        replayed_tokens: r.replayed_tokens,
        detect_s: r.detect_s,
        recover_s: r.seconds,
        uploaded_bytes: r.uploaded_bytes,
        detect_ratio: r.detect_s / uninterrupted_s,
        recover_ratio: r.seconds / uninterrupted_s,
        total_ratio: (r.detect_s + r.seconds) / uninterrupted_s,
    }
}

/// One generation on three fresh workers (the third a spare); with `kill`, the worker of the
/// plan's second device is SIGKILLed after the fifth token. Also returns that device's name.
fn generation(
    runtime: &tokio::runtime::Runtime,
    genie: &std::path::Path,
    setup: &Setup,
    prompt: &[i64],
    new_tokens: usize,
    detection: Duration,
    kill: bool,
) -> Result<(Generated, String), BenchError> {
    let failed = |reason: String| BenchError::Workload { workload: "recovery".into(), reason };
    let token = common::token();
    let mut workers: Vec<WorkerProcess> = (0..3).map(|_| start_worker(genie, &token, &[])).collect::<Result<_, _>>()?;
    let devices: Vec<String> = (0..3)
        .map(|i| {
            let spare = if i == 2 { ", spare: true" } else { "" };
            format!("(name: \"w{i}\", kind: cpu, memory: \"{}\"{spare})", setup.memory)
        })
        .collect();
    let named: Vec<(String, &WorkerProcess)> = workers.iter().enumerate().map(|(i, w)| (format!("w{i}"), w)).collect();
    let named: Vec<(&str, &WorkerProcess)> = named.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    let cluster = format!("(devices: [{}], {})", devices.join(", "), deployment_section(&named));
    let spec = ClusterSpec::from_ron(&cluster).map_err(|e| failed(format!("cluster: {e}")))?;
    let source = genie_frontends::load(&setup.files)?;
    let request = RequestShape { prompt_len: setup.prompt_len, new_tokens: new_tokens as i64 };
    let options = CompileOptions {
        request: Some(request),
        phases: PhaseChoice::Never,
        max_seq: Some(setup.prompt_len + new_tokens as i64),
        ..CompileOptions::default()
    };
    let mut program = source.clone();
    let plan = compile_program(&mut program, &spec, &options)
        .map_err(|source| BenchError::Compile { files: setup.files.clone(), source: Box::new(source) })?;
    let victim = plan.devices.get(1).map(|d| d.name.clone()).ok_or_else(|| {
        failed(format!("the model was placed on one device of {}: nothing to lose but everything", setup.memory))
    })?;
    let victim_index: usize = victim.trim_start_matches('w').parse().map_err(|_| failed(victim.clone()))?;
    let deployment = DeploymentSpec::from_cluster_ron(&cluster)?
        .ok_or_else(|| failed("no deployment section".into()))?
        .resolve(token.clone(), None)?;
    let client =
        ClientOptions { run_timeout: Duration::from_secs(600), ..ClientOptions::default() }.with_detection(detection);
    let generated = runtime.block_on(async {
        let deployed = deploy::deploy(Arc::new(plan), &program.weights, &deployment, &client).await?;
        let replanner = Replanner::new(source, spec, options, deployment, client);
        let recovery = Recovery { replace: &replanner, max_recoveries: 1 };
        let on_step = |s: &generate::StepDone<'_>| {
            if kill && s.step == 4 {
                workers[victim_index].kill();
            }
        };
        let g = generate::greedy_recovering(deployed.program(), prompt, new_tokens, None, recovery, on_step).await;
        replanner.close().await;
        deployed.close().await;
        Ok::<_, BenchError>(g)
    })?;
    let generated = generated.map_err(|e| failed(format!("{new_tokens} tokens: {}", with_causes(&e))))?;
    Ok((generated, victim))
}

/// The table people read.
pub fn table(r: &RecoveryReport) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    writeln!(t, "\n{}", r.workers).ok();
    writeln!(
        t,
        "{}: a {}-token prompt; the second device's worker SIGKILLed after the fifth token; every token equal to \
         the uninterrupted run's",
        r.model, r.prompt_len
    )
    .ok();
    writeln!(
        t,
        "\n{:>6} {:>7} {:>14} {:>6} {:>6} {:>9} {:>10} {:>9} {:>10} {:>9} {:>12}",
        "tokens",
        "bound",
        "uninterrupted",
        "lost",
        "kept",
        "detect",
        "÷ uninter.",
        "recover",
        "÷ uninter.",
        "total ÷",
        "uploaded"
    )
    .ok();
    for x in &r.rows {
        writeln!(
            t,
            "{:>6} {:>6.0}s {:>13.2}s {:>6} {:>6} {:>8.2}s {:>10.3} {:>8.2}s {:>10.3} {:>9.3} {:>10.1}MB",
            x.new_tokens,
            x.detection_bound_s,
            x.uninterrupted_s,
            x.lost,
            if x.kept.is_empty() { "-" } else { &x.kept },
            x.detect_s,
            x.detect_ratio,
            x.recover_s,
            x.recover_ratio,
            x.total_ratio,
            x.uploaded_bytes as f64 / 1e6
        )
        .ok();
    }
    t
}

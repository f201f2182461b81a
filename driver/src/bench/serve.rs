//! `genie bench --suite serve`: many sessions at once on one worker, decode steps batched or not.
//!
//! One `genie worker` process on loopback serves N sessions that start together, N = 1, 4, 16
//! and 64: each a greedy generation of the GPT-2-small benchmark model (a 256-token prompt, 32
//! new tokens), all of one deployed program from this one client process, as concurrent tokio
//! tasks over its connection. The sessions prefill, wait until all have, then decode together
//! (`generate::greedy_decoding_together`): the decode phase, what batching serves, is measured
//! apart from the prompts' prefills (which are not batched and would otherwise stand in front
//! of every decode step); the prefill phase's seconds are reported beside it. First on a worker with the default
//! `--max-batch` (decode steps of different sessions may run together as one batched step), then
//! on a worker started with `--max-batch 1` (every step alone), the baseline, in the same run.
//!
//! For each: aggregate decode tokens per second (every session's tokens after its first, over
//! the time from the release to the last session's last token), inter-token latency p50 and p99
//! over every decode step of every session, and the mean batch the worker reports running those steps in
//! (`CallStats::last_stage_batch`). Sessions get different prompts (drawn from a few), and each
//! session's tokens must equal its prompt's generated alone: a lost or different token fails
//! the suite.

use std::path::PathBuf;

use genie_ir::RequestShape;
use genie_passes::placement::PhaseChoice;
use genie_runtime::client::Program;
use genie_runtime::generate::{self, Generated};
use genie_runtime::worker::DEFAULT_MAX_BATCH;
use serde::Serialize;

use super::common::{self, deployment_section, median, percentile, start_worker, with_causes, Compile};
use super::{generate_models, BenchError, BenchOptions};

/// What a run of the suite serves.
struct Setup {
    model: &'static str,
    files: Vec<PathBuf>,
    request: RequestShape,
    /// How many sessions run at once, one configuration each.
    sessions: &'static [usize],
    /// Distinct prompts: session `i` gets prompt `i % prompts`.
    prompts: usize,
    /// The vocabulary, for the prompts' token ids.
    vocab: i64,
    /// The worker's `--memory`, and the device's memory placement plans for.
    memory: &'static str,
}

impl Setup {
    /// `serve`: GPT-2-small, 256-token prompts, 32 new tokens, 1 to 64 sessions. `serve-quick`:
    /// the GPT-2 test fixture, so that a test runs the suite's code in seconds.
    fn of(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Setup, BenchError> {
        if options.suite == "serve-quick" {
            let g = options.root.join("testsuite/fixtures/gpt2");
            return Ok(Setup {
                model: "gpt2 test fixture",
                files: vec![g.join("prefill.pt2"), g.join("decode.pt2")],
                request: RequestShape { prompt_len: 16, new_tokens: 8 },
                sessions: &[1, 4],
                prompts: 4,
                vocab: 128,
                memory: "2GiB",
            });
        }
        generate_models(options, progress)?;
        let g = options.models.join("gpt2s");
        Ok(Setup {
            model: "gpt2-small (124M parameters, fp32)",
            files: vec![g.join("prefill.pt2"), g.join("decode.pt2")],
            request: RequestShape { prompt_len: 256, new_tokens: 32 },
            sessions: &[1, 4, 16, 64],
            prompts: 16,
            vocab: 50257,
            memory: "16GiB",
        })
    }
}

/// One configuration, measured.
#[derive(Serialize, Clone, Debug)]
pub struct ServeRow {
    /// Sessions at once.
    pub sessions: usize,
    /// The worker's `--max-batch`.
    pub max_batch: usize,
    /// New tokens each session asked for.
    pub new_tokens: usize,
    /// New tokens the sessions got in all, each equal to its prompt's generated alone.
    pub tokens: usize,
    /// Seconds from the start to the last session's last token.
    pub wall_s: f64,
    /// Seconds from the start until every session had prefilled (their prefills at once).
    pub prefill_s: f64,
    /// Seconds from then (all sessions released to decode) to the last session's last token.
    pub decode_s: f64,
    /// Decode tokens (each session's tokens after its first) per second of `decode_s`.
    pub tokens_per_s: f64,
    /// Between consecutive tokens of a session, over every session's decode steps.
    pub itl_p50_s: f64,
    pub itl_p99_s: f64,
    /// The mean over every decode step of the batch its last stage ran in.
    pub mean_batch: f64,
}

/// What `genie bench --suite serve` measured (`--json` writes `{"serve": rows}`).
#[derive(Serialize, Clone, Debug)]
pub struct ServeReport {
    pub model: String,
    pub prompt_len: i64,
    pub new_tokens: i64,
    /// Distinct prompts the sessions were given.
    pub prompts: usize,
    /// How the workers ran.
    pub workers: String,
    pub rows: Vec<ServeRow>,
}

/// One prompt generated alone: the tokens every session given it must produce, and by how much
/// each step's token led the runner-up (to tell a near tie from a wrong result).
struct Alone {
    tokens: Vec<i64>,
    margins: Vec<f64>,
}

impl Alone {
    fn of(g: &Generated) -> Alone {
        let margin = |logits: &tch::Tensor| {
            let top = logits.topk(2, 0, true, true).0;
            if top.numel() < 2 {
                return f64::INFINITY;
            }
            top.double_value(&[0]) - top.double_value(&[1])
        };
        Alone { tokens: g.tokens.clone(), margins: g.logits.iter().map(margin).collect() }
    }

    /// Whether `g` generated exactly these tokens; else what differs.
    fn check(&self, g: &Generated) -> Result<(), String> {
        if let Some(step) = (0..self.tokens.len()).find(|&s| g.tokens.get(s) != self.tokens.get(s)) {
            return Err(match g.tokens.get(step) {
                None => format!("got {} of {} tokens", g.tokens.len(), self.tokens.len()),
                Some(t) => format!(
                    "step {step} chose token {t} where the prompt alone chose {} (its logit led the runner-up \
                     by {:.3e})",
                    self.tokens[step], self.margins[step]
                ),
            });
        }
        match g.tokens.len() > self.tokens.len() {
            true => Err(format!("got {} tokens, {} asked for", g.tokens.len(), self.tokens.len())),
            false => Ok(()),
        }
    }
}

/// Run the suite.
pub fn run(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<ServeReport, BenchError> {
    let failed = |reason: String| BenchError::Workload { workload: "serve".into(), reason };
    let genie = options.genie.clone().ok_or_else(|| {
        failed("the serve suite starts `genie worker` processes: BenchOptions::genie names the binary".into())
    })?;
    let setup = Setup::of(options, progress)?;
    let new_tokens = setup.request.new_tokens as usize;
    let prompts: Vec<Vec<i64>> =
        (0..setup.prompts).map(|i| common::prompt(i as u64 + 1, setup.request.prompt_len, setup.vocab)).collect();
    let token = common::token();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut alone: Vec<Alone> = Vec::new();
    let mut rows = Vec::new();
    for max_batch in [DEFAULT_MAX_BATCH, 1] {
        let mut flags = vec!["--memory", setup.memory];
        let max_batch_text = max_batch.to_string();
        if max_batch != DEFAULT_MAX_BATCH {
            flags.extend(["--max-batch", &max_batch_text]);
        }
        let worker = start_worker(&genie, &token, &flags)?;
        progress(&format!("== `genie worker {}` (max-batch {max_batch}) at {}", flags.join(" "), worker.address));
        let cluster = format!(
            "(devices: [(name: \"w0\", kind: cpu, memory: \"{}\")], {})",
            setup.memory,
            deployment_section(&[("w0", &worker)])
        );
        let what = Compile {
            suite: "serve",
            files: &setup.files,
            request: setup.request,
            phases: PhaseChoice::Never,
            // Each session's KV cache is reckoned at the length it reaches, not the model's limit.
            max_seq: Some(setup.request.prompt_len + setup.request.new_tokens),
        };
        let (deployed, _) = common::compile_and_deploy(&runtime, &what, &cluster, &token)?;
        let program = deployed.program().clone();
        // Alone, one after another (which also warms the worker): on the first worker every
        // prompt, whose tokens every session is checked against; on the next, the first one.
        let solo = if alone.is_empty() { &prompts[..] } else { &prompts[..1] };
        progress(&format!("  {} prompt(s) alone", solo.len()));
        for (i, prompt) in solo.iter().enumerate() {
            let g = runtime
                .block_on(generate::greedy(&program, prompt, new_tokens, None))
                .map_err(|e| failed(format!("prompt {i} alone: {}", with_causes(&e))))?;
            match alone.get(i) {
                None => alone.push(Alone::of(&g)),
                Some(a) => a.check(&g).map_err(|e| failed(format!("max-batch {max_batch}: prompt {i} alone: {e}")))?,
            }
        }
        for &sessions in setup.sessions {
            let row = measure(&runtime, &program, &prompts, &alone, sessions, max_batch, new_tokens)?;
            progress(&format!(
                "  {sessions:>3} session(s): prefills {:.1} s, then {:.2} decode tokens/s, ITL p50 {:.1} ms, p99 {:.1} ms, mean batch {:.2}",
                row.prefill_s,
                row.tokens_per_s,
                row.itl_p50_s * 1e3,
                row.itl_p99_s * 1e3,
                row.mean_batch
            ));
            rows.push(row);
        }
        runtime.block_on(deployed.close());
    }
    Ok(ServeReport {
        model: setup.model.into(),
        prompt_len: setup.request.prompt_len,
        new_tokens: setup.request.new_tokens,
        prompts: setup.prompts,
        workers: format!(
            "one `genie worker --memory {}` process on loopback, with the default --max-batch ({DEFAULT_MAX_BATCH}), \
             then with --max-batch 1",
            setup.memory
        ),
        rows,
    })
}

/// `sessions` generations at once, session `i` of prompt `i % prompts`, each checked against
/// its prompt alone.
fn measure(
    runtime: &tokio::runtime::Runtime,
    program: &Program,
    prompts: &[Vec<i64>],
    alone: &[Alone],
    sessions: usize,
    max_batch: usize,
    new_tokens: usize,
) -> Result<ServeRow, BenchError> {
    let failed = |reason: String| BenchError::Workload { workload: "serve".into(), reason };
    // Every session and this thread: released together once all have prefilled.
    let prefilled = std::sync::Arc::new(tokio::sync::Barrier::new(sessions + 1));
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|i| {
            let (program, prompt, prefilled) = (program.clone(), prompts[i % prompts.len()].clone(), prefilled.clone());
            runtime.spawn(async move {
                let g = generate::greedy_decoding_together(&program, &prompt, new_tokens, &prefilled).await;
                (g, std::time::Instant::now())
            })
        })
        .collect();
    runtime.block_on(prefilled.wait());
    let released = std::time::Instant::now();
    let mut generated = Vec::new();
    let mut last = released;
    for (i, task) in tasks.into_iter().enumerate() {
        let (g, done) = runtime.block_on(task).map_err(|e| failed(format!("session {i}'s task: {e}")))?;
        generated.push(g.map_err(|e| failed(format!("session {i}: {}", with_causes(&e))))?);
        last = last.max(done);
    }
    let (prefill_s, decode_s) = ((released - start).as_secs_f64(), (last - released).as_secs_f64());
    for (i, g) in generated.iter().enumerate() {
        alone[i % alone.len()].check(g).map_err(|e| BenchError::Workload {
            workload: "serve".into(),
            reason: format!(
                "{sessions} sessions at once, max-batch {max_batch}: session {i} (prompt {}): {e}",
                i % alone.len()
            ),
        })?;
    }
    let itls: Vec<f64> = generated.iter().flat_map(|g| g.inter_token_s.iter().copied()).collect();
    let batches: Vec<f64> =
        generated.iter().flat_map(|g| g.steps.iter().skip(1).map(|s| f64::from(s.last_stage_batch()))).collect();
    let tokens: usize = generated.iter().map(|g| g.tokens.len()).sum();
    let decode_tokens: usize = generated.iter().map(|g| g.tokens.len().saturating_sub(1)).sum();
    Ok(ServeRow {
        sessions,
        max_batch,
        new_tokens,
        tokens,
        wall_s: prefill_s + decode_s,
        prefill_s,
        decode_s,
        tokens_per_s: decode_tokens as f64 / decode_s.max(1e-9),
        itl_p50_s: median(&itls),
        itl_p99_s: percentile(&itls, 99.0),
        mean_batch: if batches.is_empty() { 0.0 } else { batches.iter().sum::<f64>() / batches.len() as f64 },
    })
}

/// The table people read: each row beside the `--max-batch 1` row with as many sessions
/// (tokens/s ×) and its ITL p99 over the one-session p99 of its worker.
pub fn table(r: &ServeReport) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    writeln!(t, "\n{}", r.workers).ok();
    writeln!(
        t,
        "{}: sessions starting together, each a {}-token prompt (one of {}) + {} new tokens, every session's tokens \
         equal to its prompt's alone",
        r.model, r.prompt_len, r.prompts, r.new_tokens
    )
    .ok();
    writeln!(
        t,
        "\n{:>8} {:>9} {:>10} {:>11} {:>9} {:>9} {:>13} {:>10}",
        "sessions", "max-batch", "tok/s", "× batch 1", "ITL p50", "ITL p99", "p99 ÷ 1 sess", "mean batch"
    )
    .ok();
    let ratio = |a: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_string(),
    };
    for x in &r.rows {
        let unbatched = r.rows.iter().find(|y| y.max_batch == 1 && y.sessions == x.sessions).map(|y| y.tokens_per_s);
        let single = r.rows.iter().find(|y| y.max_batch == x.max_batch && y.sessions == 1).map(|y| y.itl_p99_s);
        writeln!(
            t,
            "{:>8} {:>9} {:>10.2} {:>11} {:>7.1}ms {:>7.1}ms {:>13} {:>10.2}",
            x.sessions,
            x.max_batch,
            x.tokens_per_s,
            ratio(x.tokens_per_s, unbatched),
            x.itl_p50_s * 1e3,
            x.itl_p99_s * 1e3,
            ratio(x.itl_p99_s, single),
            x.mean_batch
        )
        .ok();
    }
    t
}

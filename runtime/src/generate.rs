//! Greedy generation: prefill on the prompt, then one decode step per new token, with the KV
//! cache resident on the workers between steps (only the token goes in, the logits come out).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use genie_codegen::{EntryPlan, Step};
use genie_ir::InputRole;
use tch::{Kind, Tensor};

use crate::client::{CallStats, ClientError, Program};
use crate::metrics::GenerationMetrics;
use crate::recovery::{Loss, Recovered, Recovery, RecoveryError};

/// Why a greedy loop could not run.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The program is not a prefill + decode pair that the loop can drive.
    #[error("{0}")]
    Unsupported(String),
    #[error("step {step} ({entry})")]
    Step {
        step: usize,
        entry: String,
        #[source]
        source: Box<ClientError>,
    },
    #[error("opening a session")]
    Session(#[source] Box<ClientError>),
    #[error("reading the logits of step {step}: {reason}")]
    Logits { step: usize, reason: String },
    /// A worker was lost at `step` and the program could not be placed again.
    #[error("step {step}: {cause}; recovering failed")]
    Recovery {
        step: usize,
        cause: Box<ClientError>,
        #[source]
        source: RecoveryError,
    },
    /// A worker was lost at `step` after the generation had recovered as often as allowed.
    #[error("step {step}: a worker was lost again after {recoveries} recoveries (--max-recoveries)")]
    TooManyRecoveries {
        step: usize,
        recoveries: usize,
        #[source]
        source: Box<ClientError>,
    },
}

/// What a greedy loop produced.
pub struct Generated {
    /// The new tokens.
    pub tokens: Vec<i64>,
    /// The logits that chose each token (the last position), as f32 on the CPU.
    pub logits: Vec<Tensor>,
    /// Each call's measurements: the prefill, then one per decode step.
    pub steps: Vec<CallStats>,
    /// Seconds from the start (before the session opened) to the first token.
    pub time_to_first_token_s: f64,
    /// Seconds between each token and the one before it (one per decode step).
    pub inter_token_s: Vec<f64>,
    /// The replica of the program the session ran on (0 when there is one).
    pub replica: usize,
    /// Each recovery from a lost worker, in order.
    pub recoveries: Vec<Recovered>,
    /// The program the last step ran on: the one given, or the one the last recovery placed
    /// (a caller that keeps a program between generations goes on with this one).
    pub program: Program,
}

/// One step of a greedy loop, reported by [`greedy_with`] as soon as its token is known.
pub struct StepDone<'a> {
    /// 0 for the prefill, then one per decode step.
    pub step: usize,
    pub token: i64,
    /// Seconds since the token before it; for the prefill, since the start (time to first
    /// token).
    pub latency_s: f64,
    /// The call's measurements (for a recovered step: the replay's).
    pub stats: &'a CallStats,
    /// Set when a worker was lost at this step and the generation recovered.
    pub recovered: Option<&'a Recovered>,
}

/// What the loop feeds a per-call input, from the input's role (found by the annotate pass from
/// how the graph uses it, whatever its name).
#[derive(Clone, Debug, PartialEq)]
enum Feed {
    /// The new token ids: the prompt at prefill, the last token at each decode step.
    Tokens,
    /// The positions of the new tokens: `past .. past + new`, shaped like the input
    /// (`position_ids` [1, new] or `cache_position` [new]).
    Positions { rank: usize },
    /// All ones over the whole sequence so far (`attention_mask` [1, past + new]).
    Mask,
}

/// A per-call input: its name, what it is fed, and the dtype the model takes.
struct Fed {
    name: String,
    feed: Feed,
    kind: Kind,
}

/// The per-call inputs of an entry and what each is fed, by role. Exactly one must be the token
/// ids: the input whose role says so, or else the only integer input without a role.
fn feeds(e: &EntryPlan) -> Result<Vec<Fed>, GenerateError> {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    // Inputs the client sends somewhere; the others no op reads.
    let sent: std::collections::HashSet<genie_ir::ValueId> = e
        .plan(genie_ir::CLIENT)
        .map(|p| {
            p.steps
                .iter()
                .filter_map(|s| if let Step::Send { tensor, .. } = s { Some(*tensor) } else { None })
                .collect()
        })
        .unwrap_or_default();
    for port in e.inputs.iter().filter(|i| i.slot.is_none()) {
        let ty = e.tensors.get(&port.tensor).map(|t| &t.ty);
        let rank = ty.map_or(2, |t| t.rank());
        let kind = ty.and_then(|t| crate::tensor::kind_of(t.dtype)).unwrap_or(Kind::Int64);
        let feed = match port.role {
            Some(InputRole::TokenIds) => Some(Feed::Tokens),
            Some(InputRole::AttentionMask) => Some(Feed::Mask),
            Some(InputRole::PositionIds | InputRole::CachePosition) => Some(Feed::Positions { rank }),
            // An input the model takes but never reads (BLOOM's and MPT's `position_ids`, whose
            // ALiBi biases come from the mask): any value of the new tokens' shape will do.
            None if !sent.contains(&port.tensor) => Some(Feed::Positions { rank }),
            None => None,
        };
        match feed {
            Some(feed) => out.push(Fed { name: port.name.clone(), feed, kind }),
            None => unknown.push((port.name.clone(), kind, ty.is_some_and(|t| t.dtype.is_integral()))),
        }
    }
    let has_tokens = out.iter().any(|f| f.feed == Feed::Tokens);
    if let (false, [(name, kind, true)]) = (has_tokens, unknown.as_slice()) {
        out.push(Fed { name: name.clone(), feed: Feed::Tokens, kind: *kind });
        unknown.clear();
    }
    let tokens = out.iter().filter(|f| f.feed == Feed::Tokens).count();
    if tokens != 1 || !unknown.is_empty() {
        let all: Vec<String> = e
            .inputs
            .iter()
            .filter(|i| i.slot.is_none())
            .map(|i| match i.role {
                Some(r) => format!("{} ({r})", i.name),
                None => i.name.clone(),
            })
            .collect();
        return Err(GenerateError::Unsupported(format!(
            "{} takes per-call inputs {}; generate feeds one token-ids input, and optionally an \
             attention mask and positions{}",
            e.name,
            all.join(", "),
            if unknown.is_empty() {
                String::new()
            } else {
                format!(
                    ", and found no role for {}",
                    unknown.iter().map(|(n, _, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                )
            }
        )));
    }
    Ok(out)
}

/// The inputs of one call that adds `ids` ([1, new]) after `past` tokens.
fn call_inputs(feeds: &[Fed], ids: &Tensor, past: i64) -> BTreeMap<String, Tensor> {
    let new = ids.size().last().copied().unwrap_or(1);
    feeds
        .iter()
        .map(|Fed { name, feed, kind }| {
            let t = match feed {
                Feed::Tokens => ids.shallow_clone(),
                Feed::Positions { rank } => {
                    let p = Tensor::arange_start(past, past + new, (Kind::Int64, tch::Device::Cpu));
                    if *rank >= 2 {
                        p.reshape([1, new])
                    } else {
                        p
                    }
                }
                Feed::Mask => Tensor::ones([1, past + new], (Kind::Int64, tch::Device::Cpu)),
            };
            (name.clone(), if t.kind() == *kind { t } else { t.to_kind(*kind) })
        })
        .collect()
}

/// A replay that rebuilds the state of a session's moved parts: the prefill over the first
/// `tokens` of the lineage, the kept workers running their parts in a scratch session.
struct Replay {
    tokens: usize,
    /// The kept workers, each running in the scratch session.
    elsewhere: BTreeMap<String, u64>,
}

impl Replay {
    /// Close the scratch session on the kept workers.
    async fn close(&self, program: &Program) {
        for (device, scratch) in &self.elsewhere {
            program.close_session_on(std::slice::from_ref(device), *scratch, Duration::from_secs(2)).await;
        }
    }
}

/// The workers that run a part of `entry`.
fn plan_of(program: &Program, entry: &str) -> Vec<String> {
    program
        .plan()
        .entry(entry)
        .map(|e| e.plans.iter().map(|p| p.device.clone()).filter(|d| d != genie_codegen::CLIENT).collect())
        .unwrap_or_default()
}

/// The first output that goes to the client (the logits).
fn logits_output(e: &EntryPlan) -> Result<String, GenerateError> {
    e.outputs
        .iter()
        .find(|o| o.slot.is_none())
        .map(|o| o.name.clone())
        .ok_or_else(|| GenerateError::Unsupported(format!("{} returns no logits to the client", e.name)))
}

/// The logits of the last position, as a flat f32 vector.
fn last_position(logits: &Tensor) -> Result<Tensor, tch::TchError> {
    let last = match logits.dim() {
        0 | 1 => logits.shallow_clone(),
        2 => logits.f_select(0, -1)?,
        _ => logits.f_select(-2, -1)?.f_flatten(0, -1)?,
    };
    last.f_flatten(0, -1)?.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)
}

/// Run `new_tokens` greedy steps of a program whose entries are a prefill and a decode step
/// (in that order) joined by state bindings. With `metrics`, each token's latency is observed
/// there as it comes (time to first token, then inter-token latency).
pub async fn greedy(
    program: &Program,
    prompt: &[i64],
    new_tokens: usize,
    metrics: Option<&GenerationMetrics>,
) -> Result<Generated, GenerateError> {
    greedy_with(program, prompt, new_tokens, metrics, |_| {}).await
}

/// [`greedy`], calling `on_step` with each step as soon as its token is known, before the next
/// call starts (`genie generate --jsonl` prints tokens as they are produced this way).
pub async fn greedy_with(
    program: &Program,
    prompt: &[i64],
    new_tokens: usize,
    metrics: Option<&GenerationMetrics>,
    on_step: impl FnMut(&StepDone<'_>) + Send,
) -> Result<Generated, GenerateError> {
    run_greedy(program, prompt, new_tokens, metrics, on_step, None, None).await
}

/// [`greedy_with`], surviving lost workers: when a call fails because a worker was lost,
/// `recovery.replace` gives the program again (its lost parts moved to workers that answer, the
/// others keeping the session's state; or placed anew), the prompt and the tokens produced so
/// far are replayed to rebuild the state that was lost, and the generation goes on; at most
/// `recovery.max_recoveries` times. The tokens are those of an uninterrupted run: none is lost,
/// repeated or changed.
pub async fn greedy_recovering(
    program: &Program,
    prompt: &[i64],
    new_tokens: usize,
    metrics: Option<&GenerationMetrics>,
    recovery: Recovery<'_>,
    on_step: impl FnMut(&StepDone<'_>) + Send,
) -> Result<Generated, GenerateError> {
    run_greedy(program, prompt, new_tokens, metrics, on_step, None, Some(recovery)).await
}

/// [`greedy`] for many sessions that decode together: after its prefill (or its failure) each
/// waits at `prefilled` until every session has prefilled, then decodes. Serving benchmarks use
/// it to measure decode steps of many sessions at once apart from their prefills; the first
/// inter-token latency counts from the release.
pub async fn greedy_decoding_together(
    program: &Program,
    prompt: &[i64],
    new_tokens: usize,
    prefilled: &tokio::sync::Barrier,
) -> Result<Generated, GenerateError> {
    run_greedy(program, prompt, new_tokens, None, |_| {}, Some(prefilled), None).await
}

async fn run_greedy(
    program: &Program,
    prompt: &[i64],
    new_tokens: usize,
    metrics: Option<&GenerationMetrics>,
    mut on_step: impl FnMut(&StepDone<'_>) + Send,
    prefilled: Option<&tokio::sync::Barrier>,
    recovery: Option<Recovery<'_>>,
) -> Result<Generated, GenerateError> {
    let started = Instant::now();
    let mut waiting = prefilled;
    let result =
        greedy_steps(program, prompt, new_tokens, metrics, &mut on_step, &mut waiting, started, recovery).await;
    // A session that failed before the others were released still lets them go.
    if let Some(barrier) = waiting {
        barrier.wait().await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn greedy_steps(
    program: &Program,
    prompt: &[i64],
    new_tokens: usize,
    metrics: Option<&GenerationMetrics>,
    on_step: &mut (impl FnMut(&StepDone<'_>) + Send),
    prefilled: &mut Option<&tokio::sync::Barrier>,
    started: Instant,
    recovery: Option<Recovery<'_>>,
) -> Result<Generated, GenerateError> {
    let plan = program.plan();
    let [prefill, decode] = &plan.entries[..] else {
        return Err(GenerateError::Unsupported(format!(
            "generate needs a prefill and a decode entry; the program has {}",
            plan.entries.len()
        )));
    };
    if prompt.is_empty() {
        return Err(GenerateError::Unsupported("the prompt is empty".into()));
    }
    if !decode.inputs.iter().any(|i| i.slot.is_some()) {
        return Err(GenerateError::Unsupported(format!(
            "{} reads no state: no KV-cache binding between {} and {} was found",
            decode.name, prefill.name, decode.name
        )));
    }
    let (prefill_in, decode_in) = (feeds(prefill)?, feeds(decode)?);
    let (prefill_out, decode_out) = (logits_output(prefill)?, logits_output(decode)?);
    let (prefill_name, decode_name) = (prefill.name.clone(), decode.name.clone());
    // A recovery replaces the program (and its plan) with one placed on the survivors.
    let mut program = program.clone();
    let mut session = program.open_session().await.map_err(|e| GenerateError::Session(Box::new(e)))?;
    let mut out = Generated {
        tokens: Vec::new(),
        logits: Vec::new(),
        steps: Vec::new(),
        time_to_first_token_s: 0.0,
        inter_token_s: Vec::new(),
        replica: session.replica(),
        recoveries: Vec::new(),
        program: program.clone(),
    };
    let mut last_token_at = started;
    // The session's lineage: the prompt and every token produced, all the state was made from.
    let mut lineage: Vec<i64> = prompt.to_vec();
    for step in 0..new_tokens {
        let new = if step == 0 { prompt.len() } else { 1 };
        let ids = Tensor::from_slice(&lineage[lineage.len() - new..]).reshape([1, new as i64]);
        let mut call = if step == 0 {
            (&prefill_name, &prefill_in, &prefill_out, call_inputs(&prefill_in, &ids, 0))
        } else {
            (&decode_name, &decode_in, &decode_out, call_inputs(&decode_in, &ids, (lineage.len() - new) as i64))
        };
        // The recoveries this step needed (a replay can lose a worker too).
        let mut recovered: Vec<Recovered> = Vec::new();
        let mut detected_at = Instant::now();
        // A replay to run before the step's call, rebuilding the state of moved parts only.
        let mut replay: Option<Replay> = None;
        // Tokens the call feeds into the session's state.
        let mut call_fed = new;
        let (result, output) = loop {
            let (entry, _, output, inputs) = &call;
            let call_started = Instant::now();
            let attempt = match &replay {
                Some(r) => {
                    let ids = Tensor::from_slice(&lineage[..r.tokens]).reshape([1, r.tokens as i64]);
                    let inputs = call_inputs(&prefill_in, &ids, 0);
                    session.run_elsewhere_on(&prefill_name, &inputs, &r.elsewhere).await
                }
                None => session.run(entry, inputs).await,
            };
            let (failure, in_replay) = match (attempt, replay.take()) {
                (Ok(result), None) => break (result, *output),
                (Ok(result), Some(r)) => {
                    r.close(&program).await;
                    if r.tokens == lineage.len() {
                        // The kept state holds the step's token already: the replay's is it.
                        break (result, &prefill_out);
                    }
                    // The state is whole again up to the step: its own call runs now.
                    continue;
                }
                (Err(e), r) => {
                    if let Some(r) = &r {
                        r.close(&program).await;
                    }
                    (e, r.is_some())
                }
            };
            let Some(recovery) = recovery.filter(|_| failure.is_worker_loss()) else {
                return Err(GenerateError::Step { step, entry: entry.to_string(), source: Box::new(failure) });
            };
            let recoveries = out.recoveries.len() + recovered.len();
            if recoveries >= recovery.max_recoveries {
                return Err(GenerateError::TooManyRecoveries { step, recoveries, source: Box::new(failure) });
            }
            let detected = Instant::now();
            tracing::warn!("step {step}: {failure}; placing the program again on the workers that answer");
            // What the kept workers' state holds: every token fed so far if each of them
            // finished its part of the failed call, all but the call's own if none did.
            let participants: Vec<String> = plan_of(&program, entry);
            let done = session.last_call_completed().clone();
            let loss = Loss { program: &program, session: session.id(), suspect: failure.device() };
            let replaced = match recovery.replace.replace(loss).await {
                Ok(replaced) => replaced,
                Err(source) => return Err(GenerateError::Recovery { step, cause: Box::new(failure), source }),
            };
            // (A failed replay leaves the kept workers' state unknown to this reckoning: anew.)
            let kept_in_call: Vec<&String> = replaced.kept.iter().filter(|d| participants.contains(d)).collect();
            let kept_tokens = if in_replay {
                None
            } else if kept_in_call.iter().all(|d| done.contains(*d)) {
                Some(lineage.len())
            } else if kept_in_call.iter().all(|d| !done.contains(*d)) {
                Some(lineage.len() - call_fed)
            } else {
                None
            };
            let uploaded_bytes = replaced.program.stats.bytes_uploaded;
            let lost = replaced.lost;
            program = replaced.program;
            let (kept, replayed_tokens) = match kept_tokens.filter(|t| !replaced.kept.is_empty() && *t > 0) {
                Some(tokens) => {
                    // The same session: its state stays on the kept workers, the moved parts
                    // open it empty; the replay writes the kept workers' outputs into a
                    // scratch session there.
                    session = program
                        .open_session_with_id(session.id())
                        .await
                        .map_err(|e| GenerateError::Session(Box::new(e)))?;
                    let scratch = rand::random::<u64>();
                    match program.open_session_on(&replaced.kept, scratch).await {
                        Ok(()) => {
                            let elsewhere = replaced.kept.iter().map(|d| (d.clone(), scratch)).collect();
                            replay = Some(Replay { tokens, elsewhere });
                            (replaced.kept, tokens)
                        }
                        Err(e) => {
                            // No room for a scratch session beside the kept state: the replay
                            // writes the whole lineage's state everywhere instead.
                            tracing::warn!("recovering: no scratch session on the kept workers ({e}); replaying all");
                            program.close_session_on(&replaced.kept, scratch, Duration::from_secs(2)).await;
                            let tokens = lineage.len();
                            replay = Some(Replay { tokens, elsewhere: BTreeMap::new() });
                            (Vec::new(), tokens)
                        }
                    }
                }
                None => {
                    // Everything anew: replay the lineage as one prefill in a fresh session; it
                    // rebuilds every state slot, and its token is this step's.
                    session = program.open_session().await.map_err(|e| GenerateError::Session(Box::new(e)))?;
                    let all = Tensor::from_slice(&lineage).reshape([1, lineage.len() as i64]);
                    call = (&prefill_name, &prefill_in, &prefill_out, call_inputs(&prefill_in, &all, 0));
                    call_fed = lineage.len();
                    (Vec::new(), lineage.len())
                }
            };
            out.replica = session.replica();
            recovered.push(Recovered {
                step,
                lost,
                kept,
                replayed_tokens,
                detect_s: detected.duration_since(call_started).as_secs_f64(),
                seconds: 0.0,
                uploaded_bytes,
            });
            detected_at = detected;
        };
        if let Some(r) = recovered.last_mut() {
            r.seconds = detected_at.elapsed().as_secs_f64();
        }
        if let Some(m) = metrics {
            for r in &recovered {
                m.recoveries.inc();
                m.recovery_seconds.observe(r.detect_s + r.seconds);
            }
        }
        let logits_err = |reason: String| GenerateError::Logits { step, reason };
        let logits = result.outputs.get(output).ok_or_else(|| logits_err(format!("no output `{output}`")))?;
        let last = last_position(logits).map_err(|e| logits_err(e.to_string()))?;
        let token = last.f_argmax(0, false).map_err(|e| logits_err(e.to_string()))?.int64_value(&[]);
        let now = Instant::now();
        let latency = now.duration_since(last_token_at).as_secs_f64();
        last_token_at = now;
        if step == 0 {
            out.time_to_first_token_s = latency;
            if let Some(m) = metrics {
                m.time_to_first_token.observe(latency);
            }
        } else {
            out.inter_token_s.push(latency);
            if let Some(m) = metrics {
                m.inter_token_latency.observe(latency);
            }
        }
        on_step(&StepDone { step, token, latency_s: latency, stats: &result.stats, recovered: recovered.last() });
        out.tokens.push(token);
        out.logits.push(last);
        out.steps.push(result.stats);
        out.recoveries.extend(recovered);
        lineage.push(token);
        if let Some(barrier) = prefilled.take() {
            barrier.wait().await;
            last_token_at = Instant::now();
        }
    }
    let _ = session.close().await;
    out.program = program;
    Ok(out)
}

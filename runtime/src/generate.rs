//! Greedy generation: prefill on the prompt, then one decode step per new token, with the KV
//! cache resident on the workers between steps (only the token goes in, the logits come out).

use std::collections::BTreeMap;

use genie_codegen::EntryPlan;
use tch::{Kind, Tensor};

use crate::client::{CallStats, ClientError, Program};

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
}

/// What a greedy loop produced.
pub struct Generated {
    /// The new tokens.
    pub tokens: Vec<i64>,
    /// The logits that chose each token (the last position), as f32 on the CPU.
    pub logits: Vec<Tensor>,
    /// Each call's measurements: the prefill, then one per decode step.
    pub steps: Vec<CallStats>,
}

/// The one per-call input of an entry (the token ids).
fn token_input(e: &EntryPlan) -> Result<String, GenerateError> {
    let user: Vec<&str> = e.inputs.iter().filter(|i| i.slot.is_none()).map(|i| i.name.as_str()).collect();
    match user.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(GenerateError::Unsupported(format!(
            "{} takes {} per-call inputs ({}); generate drives models whose only per-call input is the token ids",
            e.name,
            user.len(),
            user.join(", ")
        ))),
    }
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
/// (in that order) joined by state bindings.
pub async fn greedy(program: &Program, prompt: &[i64], new_tokens: usize) -> Result<Generated, GenerateError> {
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
    let (prefill_in, decode_in) = (token_input(prefill)?, token_input(decode)?);
    let (prefill_out, decode_out) = (logits_output(prefill)?, logits_output(decode)?);
    let mut session = program.open_session().await.map_err(|e| GenerateError::Session(Box::new(e)))?;
    let mut out = Generated { tokens: Vec::new(), logits: Vec::new(), steps: Vec::new() };
    let mut ids = Tensor::from_slice(prompt).reshape([1, prompt.len() as i64]);
    for step in 0..new_tokens {
        let (entry, input, output) =
            if step == 0 { (prefill, &prefill_in, &prefill_out) } else { (decode, &decode_in, &decode_out) };
        let inputs = BTreeMap::from([(input.clone(), ids)]);
        let result = session.run(&entry.name, &inputs).await.map_err(|source| GenerateError::Step {
            step,
            entry: entry.name.clone(),
            source: Box::new(source),
        })?;
        let logits_err = |reason: String| GenerateError::Logits { step, reason };
        let logits = result.outputs.get(output).ok_or_else(|| logits_err(format!("no output `{output}`")))?;
        let last = last_position(logits).map_err(|e| logits_err(e.to_string()))?;
        let token = last.f_argmax(0, false).map_err(|e| logits_err(e.to_string()))?.int64_value(&[]);
        out.tokens.push(token);
        out.logits.push(last);
        out.steps.push(result.stats);
        ids = Tensor::from_slice(&[token]).reshape([1, 1]);
    }
    let _ = session.close().await;
    Ok(out)
}

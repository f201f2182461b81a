//! Per-op remoting: every op of an entry is its own request to one worker, as API-forwarding
//! systems do. It is `genie bench`'s per-op baseline, and what the Python prototype this project
//! grew from offered (`execute_remote_operation('aten::matmul', [x, y], host)`).
//!
//! There is no second executor for it: the client walks the entry's plan with the plan executor
//! ([`exec::run_device_plan_with`]: the same receives, frees, constants, weights and output
//! checks as a worker), and only each `Exec` step goes to the worker, as one op
//! ([`Cluster::exec_op`], which the worker runs through the same kernel call as its plans).
//! Weights are read from the store with their hashes checked; they either go with every call
//! or are uploaded once (checked against their hash by the worker) and named by hash.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use genie_codegen::{EntryPlan, ProgramPlan, TensorKind, CLIENT};
use genie_ir::{Arg, Dim, ValueId, WeightHash, WeightStore};
use tch::{Device, Tensor};

use crate::client::{CallStats, ClientError, Cluster, OpArgument};
use crate::exec::{self, Bindings, ExecError, ExecStep, Mailbox, OpRunner, Resident};

/// How weights reach the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightMode {
    /// Uploaded once ([`PerOpProgram::upload_weights`]) and named by hash in each op.
    Resident,
    /// Sent with every op that reads them.
    EveryCall,
}

/// Why a per-op call failed.
#[derive(Debug, thiserror::Error)]
pub enum PerOpError {
    /// The plan cannot be run op by op (several devices, state).
    #[error("per-op remoting: {0}")]
    Unsupported(String),
    /// An input, a weight or an op failed (the error names it).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The worker or the connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A single op's arguments do not fit its schema, or it is not an op Genie knows.
    #[error("{0}")]
    Op(String),
}

/// One op on `worker`, as the prototype's `execute_remote_operation` did: its arguments as
/// written against the op's schema (`positional`, then `keywords`), where `Arg::Tensor(%i)`
/// names `tensors[i]`. Omitted arguments take their defaults; the outputs' count and types come
/// from the registry, so a call the op cannot take is refused before anything is sent.
pub async fn exec_single_op(
    cluster: &Cluster,
    worker: &str,
    op: &str,
    positional: Vec<Arg>,
    keywords: Vec<(String, Arg)>,
    tensors: &[Tensor],
) -> Result<Vec<Tensor>, PerOpError> {
    let def = genie_ir::registry::lookup(op).map_err(|e| PerOpError::Op(e.to_string()))?;
    let args = def.schema.bind(positional, keywords).map_err(|e| PerOpError::Op(e.to_string()))?;
    let mut types = BTreeMap::new();
    for (i, t) in tensors.iter().enumerate() {
        let dtype = crate::tensor::dtype_of(t.kind()).ok_or_else(|| {
            PerOpError::Op(format!("{op}: tensor {i} has a dtype Genie does not carry ({:?})", t.kind()))
        })?;
        types.insert(ValueId(i as u32), genie_ir::TensorType::new(dtype, &t.size()));
    }
    let lookup = |v: ValueId| types.get(&v);
    let outputs = genie_ir::registry::infer(op, &args, &lookup).map_err(|e| PerOpError::Op(e.to_string()))?;
    let inputs: Vec<OpArgument<'_>> = tensors.iter().map(OpArgument::Tensor).collect();
    let (out, _, _) = cluster.exec_op(worker, op, args, inputs, outputs.len() as u32).await?;
    Ok(out)
}

/// A single-device plan ready to run op by op.
pub struct PerOpProgram {
    plan: Arc<ProgramPlan>,
    /// The plan's one device: whose steps the client walks.
    device: String,
    /// The weights, on the client, hash-checked.
    weights: Resident,
}

/// The result of one per-op call.
#[derive(Debug)]
pub struct PerOpOutput {
    /// User outputs by name.
    pub outputs: BTreeMap<String, Tensor>,
    /// Bytes both ways and one round trip per op.
    pub stats: CallStats,
}

impl PerOpProgram {
    /// Prepare a plan compiled for one device and without state, reading its weights.
    pub fn new(plan: Arc<ProgramPlan>, weights: &WeightStore) -> Result<PerOpProgram, PerOpError> {
        let [info] = &plan.devices[..] else {
            return Err(PerOpError::Unsupported(format!(
                "the plan has {} devices; compile it for one worker",
                plan.devices.len()
            )));
        };
        if !plan.state_slots.is_empty() {
            return Err(PerOpError::Unsupported(
                "the plan keeps state between calls; compile it without state (every input sent each call)".into(),
            ));
        }
        let weights = Resident::load_device(info, weights, Device::Cpu, &mut Default::default())?;
        Ok(PerOpProgram { device: info.name.clone(), plan, weights })
    }

    /// The plan being run.
    pub fn plan(&self) -> &ProgramPlan {
        &self.plan
    }

    /// Upload every weight to `worker` once (for [`WeightMode::Resident`]); returns the bytes sent.
    pub async fn upload_weights(&self, cluster: &Cluster, worker: &str) -> Result<u64, ClientError> {
        let mut sent = 0;
        for hash in self.weights.hashes() {
            if let Some(t) = self.weights.get(&hash) {
                sent += cluster.upload_weight(worker, &hash, t).await?;
            }
        }
        Ok(sent)
    }

    /// One call of `entry` on `worker`, op by op. Blocking: it waits for each op's reply, so call
    /// it from a thread that is not running async tasks (`spawn_blocking` in async code).
    pub fn call(
        &self,
        runtime: &tokio::runtime::Handle,
        cluster: &Cluster,
        worker: &str,
        entry: &str,
        inputs: &BTreeMap<String, Tensor>,
        weights: WeightMode,
    ) -> Result<PerOpOutput, PerOpError> {
        let started = Instant::now();
        let e = self.plan.entry(entry).ok_or_else(|| {
            ExecError::Plan(format!(
                "no entry `{entry}` (entries: {})",
                self.plan.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let steps = e.plan(&self.device).ok_or_else(|| ExecError::Plan(format!("`{entry}` has no steps")))?;
        let mut given: BTreeMap<ValueId, Tensor> = BTreeMap::new();
        for port in &e.inputs {
            let t = inputs.get(&port.name).ok_or_else(|| ExecError::Input {
                entry: entry.to_string(),
                name: port.name.clone(),
                reason: "not given".into(),
            })?;
            given.insert(port.tensor, t.shallow_clone());
        }
        let bindings = exec::bind_symbols(e, &|v| given.get(&v).map(Tensor::size))?;
        let mut mailbox = ClientSide { entry: e, given, outputs: BTreeMap::new() };
        let mut ops = RemoteOps { runtime, cluster, worker, weights, bytes: 0, ops: 0 };
        exec::run_device_plan_with(e, steps, &bindings, &self.weights, &BTreeMap::new(), &mut mailbox, &mut ops)?;
        let stats = CallStats {
            wall_s: started.elapsed().as_secs_f64(),
            links: BTreeMap::from([(format!("{CLIENT}↔{worker}"), ops.bytes)]),
            bytes: ops.bytes,
            round_trips: ops.ops,
            workers: BTreeMap::new(),
            spans: Vec::new(),
        };
        Ok(PerOpOutput { outputs: mailbox.outputs, stats })
    }
}

/// The walked plan's receives and sends: the user's inputs come from the caller and the outputs
/// go back to it (nothing crosses the network here; the ops do).
struct ClientSide<'a> {
    entry: &'a EntryPlan,
    given: BTreeMap<ValueId, Tensor>,
    outputs: BTreeMap<String, Tensor>,
}

impl Mailbox for ClientSide<'_> {
    fn recv(&mut self, _transfer: u32, tensor: ValueId) -> Result<Tensor, ExecError> {
        self.given.get(&tensor).map(Tensor::shallow_clone).ok_or_else(|| ExecError::MissingTensor {
            tensor,
            name: String::new(),
            reason: "not a user input".into(),
        })
    }

    fn send(&mut self, _transfer: u32, tensor: ValueId, value: &Tensor) -> Result<(), ExecError> {
        for port in self.entry.outputs.iter().filter(|o| o.tensor == tensor) {
            self.outputs.insert(port.name.clone(), value.shallow_clone());
        }
        Ok(())
    }
}

/// Each op sent to the worker.
struct RemoteOps<'a> {
    runtime: &'a tokio::runtime::Handle,
    cluster: &'a Cluster,
    worker: &'a str,
    weights: WeightMode,
    bytes: u64,
    ops: u32,
}

impl OpRunner for RemoteOps<'_> {
    fn exec(
        &mut self,
        entry: &EntryPlan,
        step: ExecStep,
        resolve: &dyn Fn(ValueId) -> Result<Tensor, ExecError>,
        bindings: &Bindings,
        _device: Device,
    ) -> Result<Vec<Tensor>, ExecError> {
        let ExecStep { node, op, args, outputs } = step;
        // Tensor arguments become the op's inputs 0..n in order of first use; symbols are
        // evaluated here, so the worker sees plain numbers.
        let mut order: Vec<ValueId> = Vec::new();
        let remapped = args.iter().map(|a| remap(a, &mut order, bindings)).collect::<Result<Vec<_>, _>>()?;
        let mut held: Vec<Tensor> = Vec::new();
        let mut kinds: Vec<Option<WeightHash>> = Vec::new();
        for v in &order {
            let hash = match (self.weights, entry.tensors.get(v).map(|t| &t.kind)) {
                (WeightMode::Resident, Some(TensorKind::Weight { hash })) => Some(hash.clone()),
                _ => None,
            };
            if hash.is_none() {
                held.push(resolve(*v)?);
            }
            kinds.push(hash);
        }
        let mut sent = held.iter();
        let inputs: Vec<OpArgument> = kinds
            .iter()
            .map(|h| match h {
                Some(hash) => Some(OpArgument::Weight(hash)),
                None => sent.next().map(OpArgument::Tensor),
            })
            .collect::<Option<_>>()
            .ok_or_else(|| ExecError::Plan("per-op: an argument lost its tensor".into()))?;
        let call = self.cluster.exec_op(self.worker, op, remapped, inputs, outputs.len() as u32);
        let (out, sent, received) = self.runtime.block_on(call).map_err(|e| ExecError::Remote {
            node,
            op: op.to_string(),
            worker: self.worker.to_string(),
            message: e.to_string(),
        })?;
        self.bytes += sent + received;
        self.ops += 1;
        Ok(out)
    }
}

/// An argument with tensor ids renumbered by first use and symbols evaluated.
fn remap(arg: &Arg, order: &mut Vec<ValueId>, bindings: &Bindings) -> Result<Arg, ExecError> {
    let mut index = |v: ValueId| {
        let i = order.iter().position(|o| *o == v).unwrap_or_else(|| {
            order.push(v);
            order.len() - 1
        });
        ValueId(i as u32)
    };
    let eval = |d: &Dim| {
        d.eval(bindings).map_err(|e| ExecError::UnboundSymbol { symbol: d.to_string(), reason: e.to_string() })
    };
    Ok(match arg {
        Arg::Tensor(v) => Arg::Tensor(index(*v)),
        Arg::Tensors(vs) => Arg::Tensors(vs.iter().map(|v| index(*v)).collect()),
        Arg::OptTensors(vs) => Arg::OptTensors(vs.iter().map(|v| v.map(&mut index)).collect()),
        Arg::SymInt(d) => Arg::Int(eval(d)?),
        Arg::SymInts(ds) => Arg::Ints(ds.iter().map(eval).collect::<Result<_, _>>()?),
        other => other.clone(),
    })
}

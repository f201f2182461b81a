//! An in-process runner with no network: the "local" baseline mode and the executor's test
//! harness.
//!
//! [`LocalCluster`] holds one [`Resident`] set per device of a plan, all on one `tch::Device`
//! (a weight used by several devices is one libtorch tensor shared by their sets), and one
//! session's state slots. [`LocalCluster::run`] runs one call of an entry: every device plan on
//! its own thread, with channels as mailboxes between the devices and the client (this thread),
//! exactly as workers would exchange tensors over the network.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{channel, Receiver, Sender};

use genie_codegen::{EntryPlan, ProgramPlan, Step, CLIENT};
use genie_ir::{ValueId, WeightHash, WeightStore};
use tch::{Device, Tensor};

use crate::exec::{self, bind_symbols, run_device_plan, ExecError, Mailbox, Resident, SlotValue, Slots};

/// A program's plans running in this process.
pub struct LocalCluster {
    plan: ProgramPlan,
    device: Device,
    /// One per `plan.devices`, in order.
    residents: Vec<Resident>,
    /// The session's state: slot id → value.
    slots: Slots,
    /// The cores this process may run on: each call uses those of them other processes leave
    /// free ([`crate::cores::free_cores`]) as libtorch intra-op threads.
    threads: usize,
}

impl LocalCluster {
    /// Upload each device's resident weights (`plan.devices[i].weights`) to `device`, checking
    /// each weight's bytes against its hash.
    pub fn load(plan: &ProgramPlan, weights: &WeightStore, device: Device) -> Result<Self, ExecError> {
        let _guard = tch::no_grad_guard();
        let mut shared: HashMap<WeightHash, Tensor> = HashMap::new();
        let residents = plan
            .devices
            .iter()
            .map(|d| Resident::load_device(d, weights, device, &mut shared))
            .collect::<Result<Vec<_>, _>>()?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(LocalCluster { plan: plan.clone(), device, residents, slots: BTreeMap::new(), threads })
    }

    /// The plan being run.
    pub fn plan(&self) -> &ProgramPlan {
        &self.plan
    }

    /// Where every tensor lives.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The resident weights of a device of the plan.
    pub fn resident(&self, device: &str) -> Option<&Resident> {
        self.plan.devices.iter().position(|d| d.name == device).map(|i| &self.residents[i])
    }

    /// The current value of a state slot.
    pub fn slot(&self, id: u32) -> Option<&Tensor> {
        self.slots.get(&id).map(SlotValue::tensor)
    }

    /// The value an entry's state output (by name) left in its slot after the last call.
    pub fn state_output(&self, entry: &str, name: &str) -> Option<&Tensor> {
        let e = self.plan.entry(entry)?;
        let slot = e.outputs.iter().find(|o| o.name == name)?.slot?;
        self.slots.get(&slot).map(SlotValue::tensor)
    }

    /// Forget every state slot (a new session).
    pub fn reset_state(&mut self) {
        self.slots.clear();
    }

    /// Run one call of an entry: user inputs by name (IoPort names), returns user outputs by
    /// name.
    ///
    /// State inputs come from their slots; one given by name in `inputs` replaces its slot's
    /// value first (to start decoding from a cache computed elsewhere). Symbols are bound from
    /// the actual shapes (user inputs and slot values) and checked against their ranges. Each
    /// device plan runs on its own thread; the state outputs are kept in their slots for the next
    /// call.
    pub fn run(
        &mut self,
        entry: &str,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, ExecError> {
        let _guard = tch::no_grad_guard();
        if self.device == Device::Cpu {
            crate::cores::set_intra_op_threads(crate::cores::free_cores(self.threads));
        }
        let e = self.plan.entry(entry).ok_or_else(|| ExecError::Plan(format!("no entry `{entry}`")))?;
        let input_err =
            |name: &str, reason: String| ExecError::Input { entry: entry.to_string(), name: name.to_string(), reason };
        for name in inputs.keys() {
            if !e.inputs.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = e.inputs.iter().map(|p| p.name.as_str()).collect();
                return Err(input_err(name, format!("no such input (the entry has {})", known.join(", "))));
            }
        }
        // Every graph input's value, on this device.
        let mut values: HashMap<ValueId, Tensor> = HashMap::new();
        let mut new_slots: Vec<(u32, SlotValue)> = Vec::new();
        for port in &e.inputs {
            let t = match (inputs.get(&port.name), port.slot) {
                (Some(t), _) if !t.defined() => return Err(input_err(&port.name, "an undefined tensor".into())),
                (Some(t), slot) => {
                    let t = self.on_device(t).map_err(|r| input_err(&port.name, r))?;
                    if let Some(s) = slot {
                        new_slots.push((s, SlotValue::new(t.shallow_clone())));
                    }
                    t
                }
                (None, Some(s)) => match self.slots.get(&s) {
                    Some(t) => t.tensor().shallow_clone(),
                    None => {
                        return Err(input_err(
                            &port.name,
                            format!("state slot {s} has no value: run an entry that writes it first, or pass it"),
                        ))
                    }
                },
                (None, None) => return Err(input_err(&port.name, "not given".into())),
            };
            values.insert(port.tensor, t);
        }
        let bindings = bind_symbols(e, &|v| values.get(&v).map(Tensor::size))?;
        self.slots.extend(new_slots);

        // Channels, one per transfer.
        let mut senders: HashMap<String, HashMap<u32, Sender<Tensor>>> = HashMap::new();
        let mut receivers: HashMap<String, HashMap<u32, Receiver<Tensor>>> = HashMap::new();
        for t in &e.transfers {
            let (tx, rx) = channel();
            senders.entry(t.from.clone()).or_default().insert(t.id, tx);
            receivers.entry(t.to.clone()).or_default().insert(t.id, rx);
        }
        let mut mailbox_of = |device: &str| ChannelMailbox {
            device: device.to_string(),
            senders: senders.remove(device).unwrap_or_default(),
            receivers: receivers.remove(device).unwrap_or_default(),
        };

        // Each device's plan, resident set, mailbox and the slots it holds.
        let mut jobs = Vec::new();
        let mut residents: Vec<Option<&mut Resident>> = self.residents.iter_mut().map(Some).collect();
        for dp in &e.plans {
            if dp.device == CLIENT {
                continue;
            }
            let index = self.plan.devices.iter().position(|d| d.name == dp.device).ok_or_else(|| {
                ExecError::Plan(format!("entry `{entry}` has a plan for unknown device `{}`", dp.device))
            })?;
            let resident = residents[index]
                .take()
                .ok_or_else(|| ExecError::Plan(format!("entry `{entry}` has two plans for `{}`", dp.device)))?;
            let held: Slots = self
                .plan
                .state_slots
                .iter()
                .filter(|s| s.device == dp.device)
                .filter_map(|s| self.slots.get(&s.id).map(|t| (s.id, t.share())))
                .collect();
            jobs.push((dp, resident, held, mailbox_of(&dp.device)));
        }
        let mut client_mailbox = mailbox_of(CLIENT);
        let client_plan = e.plan(CLIENT);

        // The first device runs on the calling thread: libtorch's intra-op (OpenMP) pool is per
        // thread and costs milliseconds to create, so a fresh thread per call would dominate small
        // calls. The client's side only moves tensors over channels and gets its own thread.
        let mut jobs = jobs.into_iter();
        let inline_job = jobs.next();
        let (client_result, device_results) = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .map(|(dp, resident, held, mut mailbox)| {
                    let bindings = &bindings;
                    let name = dp.device.clone();
                    let handle = scope.spawn(move || run_device_plan(e, dp, bindings, resident, &held, &mut mailbox));
                    (name, handle)
                })
                .collect();
            let client_values: HashMap<ValueId, Tensor> = values.iter().map(|(k, v)| (*k, v.shallow_clone())).collect();
            let bindings_ref = &bindings;
            let client = scope.spawn(move || {
                let r = run_client(
                    e,
                    client_plan.map(|p| p.steps.as_slice()).unwrap_or(&[]),
                    &client_values,
                    bindings_ref,
                    &mut client_mailbox,
                );
                // The client's channels close here, so a device still waiting on them stops.
                drop(client_mailbox);
                r
            });
            let mut device_results: Vec<(String, Result<Slots, ExecError>)> = Vec::new();
            if let Some((dp, resident, held, mut mailbox)) = inline_job {
                let r = run_device_plan(e, dp, &bindings, resident, &held, &mut mailbox);
                drop(mailbox);
                device_results.push((dp.device.clone(), r));
            }
            for (name, h) in handles {
                let r = h.join().unwrap_or_else(|_| Err(ExecError::Panic { device: name.clone() }));
                device_results.push((name, r));
            }
            let client_result = client.join().unwrap_or_else(|_| Err(ExecError::Panic { device: CLIENT.to_string() }));
            (client_result, device_results)
        });

        // The first error that is not a closed channel is the cause; report it.
        let mut saved = BTreeMap::new();
        let mut errors = Vec::new();
        for (_, r) in device_results {
            match r {
                Ok(s) => saved.extend(s),
                Err(err) => errors.push(err),
            }
        }
        let received = match client_result {
            Ok(r) => r,
            Err(err) => {
                errors.push(err);
                HashMap::new()
            }
        };
        if !errors.is_empty() {
            let pos = errors.iter().position(|e| !matches!(e, ExecError::Mailbox(_))).unwrap_or(0);
            return Err(errors.swap_remove(pos));
        }
        self.slots.extend(saved);

        let mut outputs = BTreeMap::new();
        for port in e.outputs.iter().filter(|p| p.slot.is_none()) {
            let t =
                received.get(&port.tensor).or_else(|| values.get(&port.tensor)).map(Tensor::shallow_clone).ok_or_else(
                    || ExecError::MissingTensor {
                        tensor: port.tensor,
                        name: port.name.clone(),
                        reason: "a user output the client never received".into(),
                    },
                )?;
            outputs.insert(port.name.clone(), t);
        }
        Ok(outputs)
    }

    fn on_device(&self, t: &Tensor) -> Result<Tensor, String> {
        if t.device() == self.device {
            Ok(t.shallow_clone())
        } else {
            t.f_to_device(self.device).map_err(|e| format!("moving to {:?}: {}", self.device, exec::torch_message(&e)))
        }
    }
}

/// The client's side of a call: send the user inputs, receive the outputs (checked).
fn run_client(
    entry: &EntryPlan,
    steps: &[Step],
    values: &HashMap<ValueId, Tensor>,
    bindings: &exec::Bindings,
    mailbox: &mut ChannelMailbox,
) -> Result<HashMap<ValueId, Tensor>, ExecError> {
    let mut received = HashMap::new();
    for step in steps {
        match step {
            Step::Send { tensor, transfer, .. } => {
                let t = values.get(tensor).ok_or_else(|| ExecError::MissingTensor {
                    tensor: *tensor,
                    name: entry.tensors.get(tensor).map(|t| t.name.clone()).unwrap_or_default(),
                    reason: "the client sends it but it is not an input".into(),
                })?;
                mailbox.send(*transfer, *tensor, t)?;
            }
            Step::Recv { tensor, transfer, .. } => {
                let t = mailbox.recv(*transfer, *tensor)?;
                exec::check(entry, *tensor, &t, bindings)?;
                received.insert(*tensor, t);
            }
            other => return Err(ExecError::Plan(format!("the client's plan has a {other:?} step"))),
        }
    }
    Ok(received)
}

/// Channels between the threads of one call, by transfer id.
struct ChannelMailbox {
    device: String,
    senders: HashMap<u32, Sender<Tensor>>,
    receivers: HashMap<u32, Receiver<Tensor>>,
}

impl Mailbox for ChannelMailbox {
    fn recv(&mut self, transfer: u32, tensor: ValueId) -> Result<Tensor, ExecError> {
        let rx = self.receivers.get(&transfer).ok_or_else(|| {
            ExecError::Mailbox(format!("{}: transfer {transfer} ({tensor}) is not addressed to it", self.device))
        })?;
        rx.recv().map_err(|_| {
            ExecError::Mailbox(format!("{}: transfer {transfer} ({tensor}): the sender stopped", self.device))
        })
    }

    fn send(&mut self, transfer: u32, tensor: ValueId, value: &Tensor) -> Result<(), ExecError> {
        let tx = self.senders.get(&transfer).ok_or_else(|| {
            ExecError::Mailbox(format!("{}: transfer {transfer} ({tensor}) is not sent from it", self.device))
        })?;
        tx.send(value.shallow_clone()).map_err(|_| {
            ExecError::Mailbox(format!("{}: transfer {transfer} ({tensor}): the receiver stopped", self.device))
        })
    }
}

//! The worker's ledger: what a worker holds and has promised, and every decision that follows
//! from it. Sans-IO: plain data, no sockets, no tokio, nothing blocks, and time comes in as
//! `now` arguments (never read here), so all of it is unit-tested with plain data.
//!
//! The ledger owns
//! - **programs** loaded per `(client, program id)`: the plan, the device this worker plays, the
//!   weights it needs and what a session and a run of it take;
//! - **sessions** per `(client, session id)`: their program, reservation, state slots, last use
//!   and busy flag (one call at a time);
//! - **weights** resident by content hash (shared by every program and client that needs the
//!   same bytes), each with its last use for the LRU cache;
//! - **clients**: open connections per client id and when the last one closed;
//! - **memory accounting** ([`MemoryUse`]) and admission: with a budget, a load, a session or a
//!   weight upload that would not fit is refused with [`ErrorKind::OutOfMemory`].
//!
//! The shell (the rest of `worker/`) holds it behind one mutex, so a check and the insertion it
//! admits happen together: two loads or sessions cannot both take the last free memory. It is
//! generic over the tensor [`Payload`] so that tests use plain byte counts instead of libtorch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genie_codegen::{EntryPlan, ProgramPlan, TensorKind};
use genie_ir::{TensorType, WeightHash};

use crate::exec::Bindings;
use crate::wire::{ClientId, ErrorKind, PeerInfo, RemoteError};

/// A tensor as the ledger sees it: its size, and a way to hand out another handle to it.
pub trait Payload {
    /// The bytes it occupies.
    fn bytes(&self) -> u64;
    /// Another handle to the same storage (no copy), for a run to read while the ledger keeps it.
    fn share(&self) -> Self;
}

/// What the ledger's decisions depend on (a subset of the worker's configuration).
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// `cpu`, `cuda:0`: named in refusals.
    pub device_label: String,
    /// The memory weights, sessions' state and activations may fill; `None`: no limit.
    pub memory_bytes: Option<u64>,
    /// Weights no loaded program needs stay cached up to this many bytes.
    pub weight_cache_bytes: u64,
    /// Sessions unused this long are freed; clients gone this long lose their programs.
    pub session_idle_timeout: Duration,
}

/// A program loaded by one client, as this worker plays it.
#[derive(Clone, Debug)]
pub struct LoadedProgram {
    pub plan: Arc<ProgramPlan>,
    /// The plan device this worker plays.
    pub device: String,
    /// The other devices' workers, by device name.
    pub peers: HashMap<String, PeerInfo>,
    /// Weights this device needs, with their bytes (from their static types).
    pub needs: Vec<(WeightHash, u64)>,
    /// One session's state on this device at the plan's memory bindings (its KV cache at the
    /// planned maximum sequence length): what opening a session reserves.
    pub session_bytes: u64,
    /// The largest activation peak of the program's entries on this device.
    pub activation_bytes: u64,
    /// Every needed weight has arrived (set by [`Ledger::try_ready`]); only then may sessions
    /// open and runs start.
    pub ready: bool,
}

/// One client's session: the state slots that stay on this worker between calls.
#[derive(Debug)]
pub struct Session<P> {
    pub program: u64,
    /// What the session reserved when it opened (its program's `session_bytes`).
    pub reserved_bytes: u64,
    pub slots: BTreeMap<u32, P>,
    pub last_used: Instant,
    /// A call is running; the session is neither swept nor given to a second call.
    pub busy: bool,
}

/// A resident weight.
#[derive(Debug)]
struct Weight<P> {
    payload: P,
    /// Its bytes when it arrived.
    bytes: u64,
    /// When it was last needed (by a load or its arrival), for the cache.
    last_used: Instant,
}

/// A client's connections.
#[derive(Clone, Copy, Debug)]
struct Presence {
    open: u32,
    /// When the last connection closed (or the first opened).
    since: Instant,
}

/// What a worker's memory holds or has promised (the basis of admission).
#[derive(Debug, Default)]
pub struct MemoryUse {
    /// The weights loaded programs need, resident or still to arrive.
    pub pinned: HashSet<WeightHash>,
    /// Their bytes, each weight counted once.
    pub weights: u64,
    /// Per open session, the larger of what it reserved and what its state holds.
    pub sessions: u64,
    /// The largest activation peak of a loaded program (runs are planned for one at a time).
    pub activations: u64,
}

impl MemoryUse {
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.sessions).saturating_add(self.activations)
    }
}

/// A weight dropped from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    pub hash: WeightHash,
    pub bytes: u64,
}

/// The outcome of an admitted load.
#[derive(Debug)]
pub struct Loaded {
    /// The weights the client must upload.
    pub missing: Vec<WeightHash>,
    /// Cached weights dropped to make room.
    pub evicted: Vec<Evicted>,
}

/// What a run takes from the ledger; its session stays busy until [`Ledger::end_run`].
pub struct RunTicket<P> {
    pub plan: Arc<ProgramPlan>,
    pub device: String,
    pub peers: HashMap<String, PeerInfo>,
    /// The entry's index in `plan.entries`.
    pub entry_index: usize,
    /// The session's state slots, shared.
    pub state: BTreeMap<u32, P>,
    /// The resident weights the device plan reads, shared.
    pub weights: Vec<(WeightHash, P)>,
}

/// What a sweep freed, for the log.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Sessions idle longer than the timeout (busy ones are kept).
    pub freed_sessions: Vec<(ClientId, u64)>,
    /// Clients gone longer than the timeout with no session left, and their programs.
    pub departed_clients: Vec<ClientId>,
    pub unloaded_programs: Vec<(ClientId, u64)>,
    pub evicted: Vec<Evicted>,
}

/// Counts for `Stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerStats {
    pub resident_weights: u64,
    pub resident_weight_bytes: u64,
    pub programs: u64,
    pub sessions: u64,
    /// Bytes held in sessions' state slots.
    pub state_bytes: u64,
    /// [`MemoryUse::total`].
    pub committed_bytes: u64,
    /// Loads, sessions and weight uploads refused for memory.
    pub refused_for_memory: u64,
}

/// Programs, sessions, weights and clients of one worker; see the module docs.
pub struct Ledger<P> {
    config: LedgerConfig,
    programs: HashMap<(ClientId, u64), LoadedProgram>,
    sessions: HashMap<(ClientId, u64), Session<P>>,
    weights: HashMap<WeightHash, Weight<P>>,
    /// Bytes of all resident weights.
    weight_bytes: u64,
    clients: HashMap<ClientId, Presence>,
    refused_for_memory: u64,
}

impl<P: Payload> Ledger<P> {
    pub fn new(config: LedgerConfig) -> Ledger<P> {
        Ledger {
            config,
            programs: HashMap::new(),
            sessions: HashMap::new(),
            weights: HashMap::new(),
            weight_bytes: 0,
            clients: HashMap::new(),
            refused_for_memory: 0,
        }
    }

    // ---- programs -------------------------------------------------------------------------

    /// Load (or load again) `client`'s `program`, playing `device` of `plan`. Admitted only if
    /// the weights no other loaded program holds, and its activation peak if it is the largest,
    /// fit beside what is committed. Returns the weights to upload; the program becomes ready
    /// in [`Ledger::try_ready`] once they are resident.
    pub fn load_program(
        &mut self,
        client: ClientId,
        program: u64,
        device: String,
        plan: ProgramPlan,
        peers: Vec<PeerInfo>,
        now: Instant,
    ) -> Result<Loaded, RemoteError> {
        let info = plan
            .device(&device)
            .ok_or_else(|| RemoteError::new(ErrorKind::BadRequest, format!("the plan has no device `{device}`")))?;
        let needs = weights_needed(&plan, &info.weights)?;
        let (session_bytes, activation_bytes) = (info.kv_bytes, info.activation_bytes);
        let using = self.memory_use_except(Some((client, program)));
        let mut new_hashes = HashSet::new();
        let new_weight_bytes: u64 = needs
            .iter()
            .filter(|(h, _)| !using.pinned.contains(h) && new_hashes.insert(h.clone()))
            .map(|(_, bytes)| *bytes)
            .sum();
        let extra_activations = activation_bytes.saturating_sub(using.activations);
        self.admit(&using, new_weight_bytes.saturating_add(extra_activations), || {
            format!(
                "program {program} needs {} of weights not already resident for other programs and an \
                 activation peak of {} on `{device}`",
                human(new_weight_bytes),
                human(activation_bytes)
            )
        })?;
        let missing = needs.iter().filter(|(h, _)| !self.weights.contains_key(h)).map(|(h, _)| h.clone()).collect();
        for (h, _) in &needs {
            if let Some(w) = self.weights.get_mut(h) {
                w.last_used = now;
            }
        }
        let peers = peers.into_iter().map(|p| (p.device.clone(), p)).collect();
        let loaded =
            LoadedProgram { plan: Arc::new(plan), device, peers, needs, session_bytes, activation_bytes, ready: false };
        self.programs.insert((client, program), loaded);
        // Cached weights of programs gone make room for this one's uploads.
        let evicted = self.evict_weights();
        Ok(Loaded { missing, evicted })
    }

    /// The weights `program` still lacks; when none, the program becomes ready.
    pub fn try_ready(&mut self, client: ClientId, program: u64) -> Result<Vec<WeightHash>, RemoteError> {
        let p = self.programs.get_mut(&(client, program)).ok_or_else(|| unknown_program(program))?;
        let missing: Vec<WeightHash> =
            p.needs.iter().filter(|(h, _)| !self.weights.contains_key(h)).map(|(h, _)| h.clone()).collect();
        if missing.is_empty() {
            p.ready = true;
        }
        Ok(missing)
    }

    /// Unload a program and close its sessions. Its weights stay cached (see the sweep).
    pub fn unload_program(&mut self, client: ClientId, program: u64) -> Result<(), RemoteError> {
        self.sessions.retain(|(c, _), s| !(*c == client && s.program == program));
        match self.programs.remove(&(client, program)) {
            Some(_) => Ok(()),
            None => Err(unknown_program(program)),
        }
    }

    // ---- sessions -------------------------------------------------------------------------

    /// Open a session of a ready program, reserving its state. Opening again is idempotent
    /// (a retried request), but not for another program.
    pub fn open_session(
        &mut self,
        client: ClientId,
        program: u64,
        session: u64,
        now: Instant,
    ) -> Result<Vec<Evicted>, RemoteError> {
        let reserved_bytes = match self.programs.get(&(client, program)) {
            Some(p) if p.ready => p.session_bytes,
            _ => return Err(unknown_program(program)),
        };
        if let Some(s) = self.sessions.get(&(client, session)) {
            return if s.program == program {
                Ok(Vec::new())
            } else {
                Err(RemoteError::new(ErrorKind::BadRequest, format!("session {session} already exists")))
            };
        }
        let using = self.memory_use();
        self.admit(&using, reserved_bytes, || {
            format!("a new session of program {program} reserves {} for its state", human(reserved_bytes))
        })?;
        let s = Session { program, reserved_bytes, slots: BTreeMap::new(), last_used: now, busy: false };
        self.sessions.insert((client, session), s);
        Ok(self.evict_weights())
    }

    pub fn close_session(&mut self, client: ClientId, session: u64) -> Result<(), RemoteError> {
        match self.sessions.remove(&(client, session)) {
            Some(_) => Ok(()),
            None => Err(unknown_session(session)),
        }
    }

    /// Start a call of `entry` in `session`: checks the program (ready), the entry, the symbol
    /// bindings and the session (this program's, not busy), marks the session busy and hands
    /// out its state and the device's resident weights, shared.
    pub fn begin_run(
        &mut self,
        client: ClientId,
        program: u64,
        session: u64,
        entry: &str,
        bindings: &Bindings,
        now: Instant,
    ) -> Result<RunTicket<P>, RemoteError> {
        let p = self.programs.get(&(client, program)).filter(|p| p.ready).ok_or_else(|| unknown_program(program))?;
        let entry_index =
            p.plan.entries.iter().position(|e| e.name == entry).ok_or_else(|| {
                RemoteError::new(ErrorKind::BadRequest, format!("the program has no entry `{entry}`"))
            })?;
        let device = &p.device;
        if p.plan.entries[entry_index].plan(device).is_none() {
            return Err(RemoteError::new(ErrorKind::BadRequest, format!("`{entry}` has no steps on {device}")));
        }
        check_bindings(&p.plan.entries[entry_index], bindings)?;
        let (plan, device, peers) = (p.plan.clone(), p.device.clone(), p.peers.clone());
        let s = self.sessions.get_mut(&(client, session)).ok_or_else(|| unknown_session(session))?;
        if s.program != program {
            return Err(RemoteError::new(ErrorKind::BadRequest, format!("session {session} is of another program")));
        }
        if s.busy {
            return Err(RemoteError::new(ErrorKind::SessionBusy, format!("session {session} is running a call")));
        }
        s.busy = true;
        s.last_used = now;
        let state = s.slots.iter().map(|(k, v)| (*k, v.share())).collect();
        let weights = self.weights_for(&plan, &device);
        Ok(RunTicket { plan, device, peers, entry_index, state, weights })
    }

    /// End a call: the session is free again; `written` (a successful call's state) replaces
    /// its slots, `None` (a failed call) leaves them as they were.
    pub fn end_run(&mut self, client: ClientId, session: u64, written: Option<BTreeMap<u32, P>>, now: Instant) {
        if let Some(s) = self.sessions.get_mut(&(client, session)) {
            s.busy = false;
            s.last_used = now;
            if let Some(w) = written {
                s.slots.extend(w);
            }
        }
    }

    // ---- weights --------------------------------------------------------------------------

    pub fn has_weight(&self, hash: &WeightHash) -> bool {
        self.weights.contains_key(hash)
    }

    /// A resident weight, shared.
    pub fn weight(&self, hash: &WeightHash) -> Option<P> {
        self.weights.get(hash).map(|w| w.payload.share())
    }

    /// Before a weight's bytes are read: a weight no loaded program needs (a per-op upload)
    /// must fit beside what is committed and the other cached weights, least recently used
    /// of which are dropped to make room. Weights a loaded program needs were admitted with it.
    pub fn make_room_for_weight(&mut self, hash: &WeightHash, bytes: u64) -> Result<Vec<Evicted>, RemoteError> {
        let Some(memory) = self.config.memory_bytes else {
            return Ok(Vec::new());
        };
        let using = self.memory_use();
        if using.pinned.contains(hash) {
            return Ok(Vec::new());
        }
        let free = memory.saturating_sub(using.total());
        if bytes > free {
            self.refused_for_memory += 1;
            return Err(RemoteError::new(
                ErrorKind::OutOfMemory,
                format!(
                    "no room for weight {} ({}): this worker has {} of memory and {} is committed",
                    hash.short(),
                    human(bytes),
                    human(memory),
                    human(using.total())
                ),
            ));
        }
        Ok(self.evict_spare_weights(&using.pinned, free - bytes))
    }

    /// Make a weight resident (replacing one with the same hash), last used `now`.
    pub fn insert_weight(&mut self, hash: WeightHash, payload: P, now: Instant) {
        let bytes = payload.bytes();
        if let Some(old) = self.weights.insert(hash, Weight { payload, bytes, last_used: now }) {
            self.weight_bytes = self.weight_bytes.saturating_sub(old.bytes);
        }
        self.weight_bytes = self.weight_bytes.saturating_add(bytes);
    }

    /// The resident weights `device` of `plan` reads, shared.
    fn weights_for(&self, plan: &ProgramPlan, device: &str) -> Vec<(WeightHash, P)> {
        let Some(info) = plan.device(device) else {
            return Vec::new();
        };
        info.weights
            .iter()
            .filter_map(|w| self.weights.get(&w.hash).map(|r| (w.hash.clone(), r.payload.share())))
            .collect()
    }

    fn remove_weight(&mut self, hash: &WeightHash) {
        if let Some(w) = self.weights.remove(hash) {
            self.weight_bytes = self.weight_bytes.saturating_sub(w.bytes);
        }
    }

    /// Keep the weights loaded programs need; of the others, keep the most recently used up to
    /// `weight_cache_bytes`, and only as much as the memory budget leaves beside what loaded
    /// programs and sessions have committed.
    fn evict_weights(&mut self) -> Vec<Evicted> {
        let using = self.memory_use();
        let allowance = match self.config.memory_bytes {
            Some(memory) => memory.saturating_sub(using.total()).min(self.config.weight_cache_bytes),
            None => self.config.weight_cache_bytes,
        };
        self.evict_spare_weights(&using.pinned, allowance)
    }

    /// Drop resident weights outside `pinned`, least recently used first, until the rest take
    /// at most `allowance` bytes.
    fn evict_spare_weights(&mut self, pinned: &HashSet<WeightHash>, allowance: u64) -> Vec<Evicted> {
        let mut spare: Vec<(Instant, WeightHash, u64)> = self
            .weights
            .iter()
            .filter(|(h, _)| !pinned.contains(*h))
            .map(|(h, w)| (w.last_used, h.clone(), w.bytes))
            .collect();
        let mut cached: u64 = spare.iter().map(|s| s.2).sum();
        spare.sort_by_key(|s| s.0);
        let mut evicted = Vec::new();
        for (_, hash, bytes) in spare {
            if cached <= allowance {
                break;
            }
            self.remove_weight(&hash);
            cached -= bytes;
            evicted.push(Evicted { hash, bytes });
        }
        evicted
    }

    // ---- clients and housekeeping ---------------------------------------------------------

    /// A connection of `client` opened.
    pub fn client_connected(&mut self, client: ClientId, now: Instant) {
        self.clients.entry(client).or_insert(Presence { open: 0, since: now }).open += 1;
    }

    /// A connection of `client` closed.
    pub fn client_disconnected(&mut self, client: ClientId, now: Instant) {
        if let Some(p) = self.clients.get_mut(&client) {
            p.open = p.open.saturating_sub(1);
            p.since = now;
        }
    }

    /// Periodic housekeeping: free sessions idle longer than the timeout (busy ones are kept),
    /// unload the programs of clients gone longer than the timeout that have no session left,
    /// then trim the weight cache.
    pub fn sweep(&mut self, now: Instant) -> SweepReport {
        let idle = self.config.session_idle_timeout;
        let mut report = SweepReport::default();
        self.sessions.retain(|key, s| {
            let keep = s.busy || now.duration_since(s.last_used) < idle;
            if !keep {
                report.freed_sessions.push(*key);
            }
            keep
        });
        let gone: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, p)| p.open == 0 && now.duration_since(p.since) >= idle)
            .map(|(c, _)| *c)
            .collect();
        let with_sessions: HashSet<ClientId> = self.sessions.keys().map(|(c, _)| *c).collect();
        for c in gone.into_iter().filter(|c| !with_sessions.contains(c)) {
            self.programs.retain(|&(owner, program), _| {
                if owner == c {
                    report.unloaded_programs.push((owner, program));
                }
                owner != c
            });
            self.clients.remove(&c);
            report.departed_clients.push(c);
        }
        report.freed_sessions.sort_unstable();
        report.departed_clients.sort_unstable();
        report.unloaded_programs.sort_unstable();
        report.evicted = self.evict_weights();
        report
    }

    // ---- accounting -----------------------------------------------------------------------

    /// What loaded programs and open sessions hold or have promised.
    pub fn memory_use(&self) -> MemoryUse {
        self.memory_use_except(None)
    }

    /// [`Ledger::memory_use`] leaving out the program `except` (one being loaded again).
    fn memory_use_except(&self, except: Option<(ClientId, u64)>) -> MemoryUse {
        let mut using = MemoryUse::default();
        for (_, p) in self.programs.iter().filter(|(key, _)| Some(**key) != except) {
            for (h, bytes) in &p.needs {
                if using.pinned.insert(h.clone()) {
                    using.weights = using.weights.saturating_add(*bytes);
                }
            }
            using.activations = using.activations.max(p.activation_bytes);
        }
        for s in self.sessions.values() {
            let holds: u64 = s.slots.values().map(Payload::bytes).sum();
            using.sessions = using.sessions.saturating_add(holds.max(s.reserved_bytes));
        }
        using
    }

    /// Refuse `extra` bytes beside `using` when they exceed the worker's memory. `what` says
    /// what asked for them.
    fn admit(&mut self, using: &MemoryUse, extra: u64, what: impl FnOnce() -> String) -> Result<(), RemoteError> {
        let Some(memory) = self.config.memory_bytes else {
            return Ok(());
        };
        if using.total().saturating_add(extra) <= memory {
            return Ok(());
        }
        self.refused_for_memory += 1;
        Err(RemoteError::new(
            ErrorKind::OutOfMemory,
            format!(
                "{}; this worker ({}) has {} of memory, of which {} is committed: {} to loaded programs' \
                 weights, {} to sessions' state, {} to the largest activation peak",
                what(),
                self.config.device_label,
                human(memory),
                human(using.total()),
                human(using.weights),
                human(using.sessions),
                human(using.activations)
            ),
        ))
    }

    /// Bytes of resident weights and sessions' state (what the tensors take now).
    pub fn held_bytes(&self) -> u64 {
        self.weight_bytes.saturating_add(self.state_bytes())
    }

    fn state_bytes(&self) -> u64 {
        self.sessions.values().flat_map(|s| s.slots.values()).map(Payload::bytes).sum()
    }

    pub fn stats(&self) -> LedgerStats {
        LedgerStats {
            resident_weights: self.weights.len() as u64,
            resident_weight_bytes: self.weight_bytes,
            programs: self.programs.len() as u64,
            sessions: self.sessions.len() as u64,
            state_bytes: self.state_bytes(),
            committed_bytes: self.memory_use().total(),
            refused_for_memory: self.refused_for_memory,
        }
    }
}

/// The weights `device` (whose resident set is `resident`) needs, with their bytes, typed by
/// the entries' tensor tables. Each must be used by an entry and have a static shape.
fn weights_needed(
    plan: &ProgramPlan,
    resident: &[genie_codegen::ResidentWeight],
) -> Result<Vec<(WeightHash, u64)>, RemoteError> {
    let mut types: HashMap<&WeightHash, &TensorType> = HashMap::new();
    for entry in &plan.entries {
        for t in entry.tensors.values() {
            if let TensorKind::Weight { hash } = &t.kind {
                types.insert(hash, &t.ty);
            }
        }
    }
    let mut needs = Vec::new();
    for w in resident {
        let ty = types.get(&w.hash).ok_or_else(|| {
            RemoteError::new(ErrorKind::BadRequest, format!("resident weight {} is used by no entry", w.name))
        })?;
        if ty.static_shape().is_none() {
            return Err(RemoteError::new(ErrorKind::BadRequest, format!("weight {} has a symbolic shape", w.name)));
        }
        needs.push((w.hash.clone(), type_bytes(ty)));
    }
    Ok(needs)
}

/// Every symbol of `entry` bound, within its range.
fn check_bindings(entry: &EntryPlan, bindings: &Bindings) -> Result<(), RemoteError> {
    for s in &entry.symbols {
        let v = *bindings
            .get(&s.name)
            .ok_or_else(|| RemoteError::new(ErrorKind::BadRequest, format!("symbol {} is not bound", s.name)))?;
        if v < s.min || s.max.is_some_and(|m| v > m) {
            let max = s.max.map_or("inf".to_string(), |m| m.to_string());
            return Err(RemoteError::new(
                ErrorKind::BadRequest,
                format!("{} = {v} is outside its range [{}, {max}]", s.name, s.min),
            ));
        }
    }
    Ok(())
}

fn unknown_program(program: u64) -> RemoteError {
    RemoteError::new(ErrorKind::UnknownProgram, format!("no program {program} for this client"))
}

fn unknown_session(session: u64) -> RemoteError {
    RemoteError::new(ErrorKind::UnknownSession, format!("no session {session} for this client"))
}

/// Bytes of a weight's (static) type.
fn type_bytes(ty: &TensorType) -> u64 {
    ty.bytes().as_const().map_or(0, |b| b.max(0) as u64)
}

fn human(bytes: u64) -> String {
    genie_ir::render::human_bytes(bytes)
}

#[cfg(test)]
mod tests;

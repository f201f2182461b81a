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
//! - **clients**, whose ids this worker assigns: the ticket that resumes an id on a new
//!   connection, open connections and when the last one closed, the weights the client uploaded
//!   or proved it holds (the only resident weights it may use), and its calls in flight;
//! - **calls in flight** (runs and per-op calls): what each reserved, and what tensors it may
//!   receive from whom, so a tensor stream is accepted only for a call that exists, from the
//!   device the plan says sends it, with the type the plan says;
//! - **memory accounting** ([`MemoryUse`]) and admission: with a budget, a load, a session, a
//!   call or a weight upload that would not fit is refused with [`ErrorKind::OutOfMemory`]. Every
//!   size is the worker's own reckoning from the plan's types at its memory bindings (nothing a
//!   plan declares about sizes is trusted), and a run whose sizes would exceed them is refused;
//! - **per-client limits** on programs, sessions and calls in flight ([`Limits`]).
//!
//! The shell (the rest of `worker/`) holds it behind one mutex, so a check and the insertion it
//! admits happen together: two loads or sessions cannot both take the last free memory. It is
//! generic over the tensor [`Payload`] so that tests use plain byte counts instead of libtorch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genie_codegen::{EntryPlan, ProgramPlan, TensorKind, CLIENT};
use genie_ir::{DType, TensorType, WeightHash};

use crate::exec::Bindings;
use crate::wire::{ClientId, ErrorKind, PeerInfo, Purpose, RemoteError, Resume};

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
    pub limits: Limits,
}

/// What one client may hold at once on a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Programs loaded.
    pub programs: usize,
    /// Sessions open.
    pub sessions: usize,
    /// Calls (runs and per-op calls) executing, queued for an execution slot or waiting for
    /// their inputs. Well above what one client runs at once in practice (the worker executes
    /// a bounded number at a time and queues the rest); it bounds what a worker without a
    /// memory budget holds for one client.
    pub calls: usize,
    /// The most memory one client's programs (their weights), sessions, calls and uploads may
    /// hold, so that one client cannot fill the whole budget; `None`: the whole budget.
    pub memory: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { programs: 64, sessions: 1024, calls: 1024, memory: None }
    }
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
    /// planned maximum sequence length), from the slots' types: what opening a session reserves.
    pub session_bytes: u64,
    /// Per entry, the activation peak of its steps on this device at its memory bindings (what
    /// a run of it reserves).
    pub activation_bytes: Vec<u64>,
    /// The nonce this load's weight proofs are keyed with.
    pub nonce: [u8; 32],
    /// BLAKE3 of the plan's binary form: calls of programs with equal digests (any client's)
    /// may execute together as one batched step.
    pub digest: [u8; 32],
    /// Every needed weight is resident and this client's (set by [`Ledger::try_ready`]); only
    /// then may sessions open and runs start.
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
    /// When it opened among this worker's sessions (a counter): its rank is the number of
    /// sessions still open that opened before it.
    pub opened: u64,
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

/// A client this worker knows.
#[derive(Debug)]
struct ClientRecord {
    /// The secret that resumes this id on a new connection.
    ticket: Vec<u8>,
    /// Open connections.
    open: u32,
    /// When the last connection closed (or the first opened).
    since: Instant,
    /// The resident weights this client may use: uploaded by it, or proved to be held by it.
    owned: HashSet<WeightHash>,
}

/// A call in flight, by who made it and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKey {
    Run { client: ClientId, run: u64 },
    Op { client: ClientId, call: u64 },
}

impl CallKey {
    fn client(&self) -> ClientId {
        match *self {
            CallKey::Run { client, .. } | CallKey::Op { client, .. } => client,
        }
    }
}

/// What a call in flight reserved and may receive.
#[derive(Debug)]
struct ActiveCall {
    reserved: u64,
    receives: Receives,
}

#[derive(Debug)]
enum Receives {
    /// A run: its program, session, entry and symbol values.
    Run { program: u64, session: u64, entry_index: usize, bindings: Bindings },
    /// A per-op call: the types of the inputs sent with it, by index (`None`: a weight).
    Op { inputs: Vec<Option<(DType, Vec<i64>)>> },
}

/// Who sent a tensor stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A client, by its id on this worker.
    Client(ClientId),
    /// A peer worker, by the fingerprint of the certificate it presented.
    Peer(String),
}

/// The verdict on an incoming tensor stream's header.
#[derive(Debug, PartialEq, Eq)]
pub enum Expectation {
    /// A call in flight expects exactly this tensor from this sender.
    Accept,
    /// No call of that id is in flight yet (its request may still be on its way).
    NotYet,
    /// Refused, with the reason.
    Refuse(String),
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
    /// What the calls in flight reserved (each run its entry's activation peak, each per-op
    /// call its inputs and outputs).
    pub calls: u64,
    /// Weight uploads being read that no load admitted (see [`Ledger::admit_upload`]).
    pub uploads: u64,
}

impl MemoryUse {
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.sessions).saturating_add(self.calls).saturating_add(self.uploads)
    }
}

/// A weight upload being read, admitted by [`Ledger::admit_upload`]; hand it back to
/// [`Ledger::upload_done`] however the upload ends.
#[derive(Debug, PartialEq, Eq)]
pub struct Upload {
    hash: WeightHash,
    client: ClientId,
    /// Bytes reserved for it (0: the first upload of a weight a loaded program needs, which the
    /// load admitted).
    reserved: u64,
}

/// A weight dropped from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    pub hash: WeightHash,
    pub bytes: u64,
}

/// The outcome of an admitted session.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenedSession {
    /// The session's rank: sessions of every client still open that opened before it (when it
    /// first opens: all the others). Opening it again asks for its rank now.
    pub sessions_before: u64,
    /// Weights dropped from the cache to make room.
    pub evicted: Vec<Evicted>,
}

/// The outcome of an admitted load.
#[derive(Debug)]
pub struct Loaded {
    /// The weights the client must prove it holds or upload: every needed weight it does not
    /// already own, whether or not it is resident (so the answer says nothing of other
    /// clients' weights).
    pub prove: Vec<WeightHash>,
    /// Cached weights dropped to make room.
    pub evicted: Vec<Evicted>,
}

/// What a client's weight proofs are checked against: the resident weights it claims, and
/// the nonce its load was given.
pub struct ProofTargets<P> {
    pub weights: Vec<(WeightHash, P)>,
    pub nonce: [u8; 32],
}

/// What a run takes from the ledger; its session stays busy until [`Ledger::end_run`].
pub struct RunTicket<P, S = P> {
    pub plan: Arc<ProgramPlan>,
    /// The program's [`LoadedProgram::digest`].
    pub digest: [u8; 32],
    pub device: String,
    pub peers: HashMap<String, PeerInfo>,
    /// The entry's index in `plan.entries`.
    pub entry_index: usize,
    /// The session's state slots, shared.
    pub state: BTreeMap<u32, S>,
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
    /// Its parts: loaded programs' weights, sessions, calls in flight, uploads being read.
    pub committed_weight_bytes: u64,
    pub committed_session_bytes: u64,
    pub committed_call_bytes: u64,
    pub committed_upload_bytes: u64,
    /// Bytes of resident weights no loaded program needs (the cache eviction may drop).
    pub cached_weight_bytes: u64,
    /// Loads, sessions, calls and weight uploads refused for memory.
    pub refused_for_memory: u64,
    /// Calls in flight.
    pub calls: u64,
}

/// Programs, sessions, weights and clients of one worker; see the module docs. `P` is how a
/// resident weight is held, `S` how a state slot's value is.
pub struct Ledger<P, S = P> {
    config: LedgerConfig,
    programs: HashMap<(ClientId, u64), LoadedProgram>,
    sessions: HashMap<(ClientId, u64), Session<S>>,
    weights: HashMap<WeightHash, Weight<P>>,
    /// Bytes of all resident weights.
    weight_bytes: u64,
    clients: HashMap<ClientId, ClientRecord>,
    calls: HashMap<CallKey, ActiveCall>,
    /// Weights a loaded program needs whose first upload is being read.
    uploading: HashSet<WeightHash>,
    /// Bytes reserved by the other uploads being read, in all and per client.
    upload_bytes: u64,
    client_uploads: HashMap<ClientId, u64>,
    refused_for_memory: u64,
    /// Sessions opened so far (each session's `opened`).
    sessions_opened: u64,
}

impl<P: Payload, S: Payload> Ledger<P, S> {
    pub fn new(config: LedgerConfig) -> Ledger<P, S> {
        Ledger {
            config,
            programs: HashMap::new(),
            sessions: HashMap::new(),
            weights: HashMap::new(),
            weight_bytes: 0,
            clients: HashMap::new(),
            calls: HashMap::new(),
            uploading: HashSet::new(),
            upload_bytes: 0,
            client_uploads: HashMap::new(),
            refused_for_memory: 0,
            sessions_opened: 0,
        }
    }

    // ---- clients --------------------------------------------------------------------------

    /// Admit a connection's Hello as a client: `resume` names an identity an earlier Welcome
    /// gave (its ticket must match), else the client gets `fresh` (an id and ticket the caller
    /// drew at random). Returns the identity to welcome it with.
    pub fn admit_client(
        &mut self,
        resume: Option<&Resume>,
        fresh: Resume,
        now: Instant,
    ) -> Result<Resume, RemoteError> {
        if let Some(r) = resume {
            let known = self.clients.get_mut(&r.client).filter(|c| constant_time_eq(&c.ticket, &r.ticket.0));
            let Some(record) = known else {
                return Err(RemoteError::new(
                    ErrorKind::UnknownClient,
                    format!("client {:016x} is unknown here or its ticket is wrong", r.client),
                ));
            };
            record.open += 1;
            record.since = now;
            return Ok(r.clone());
        }
        if self.clients.contains_key(&fresh.client) {
            return Err(RemoteError::new(ErrorKind::BadRequest, "client id collision; say Hello again"));
        }
        let record = ClientRecord { ticket: fresh.ticket.0.clone(), open: 1, since: now, owned: HashSet::new() };
        self.clients.insert(fresh.client, record);
        Ok(fresh)
    }

    /// A connection of `client` closed.
    pub fn client_disconnected(&mut self, client: ClientId, now: Instant) {
        if let Some(p) = self.clients.get_mut(&client) {
            p.open = p.open.saturating_sub(1);
            p.since = now;
        }
    }

    fn owns(&self, client: ClientId, hash: &WeightHash) -> bool {
        self.clients.get(&client).is_some_and(|c| c.owned.contains(hash))
    }

    fn limit(&self, what: &str, have: usize, limit: usize) -> Result<(), RemoteError> {
        if have >= limit {
            return Err(RemoteError::new(
                ErrorKind::LimitReached,
                format!("this client already has {have} {what} on this worker (the limit is {limit})"),
            ));
        }
        Ok(())
    }

    // ---- programs -------------------------------------------------------------------------

    /// Load (or load again) `client`'s `program`, playing `device` of `plan`. What a session
    /// and a run of it take is reckoned here from the plan's types at its memory bindings. The
    /// load is admitted only if the weights no other loaded program holds, and its largest run,
    /// fit beside what is committed. Returns the weights the client must prove or upload, under
    /// `nonce`; the program becomes ready in [`Ledger::try_ready`].
    #[allow(clippy::too_many_arguments)]
    pub fn load_program(
        &mut self,
        client: ClientId,
        program: u64,
        device: String,
        plan: ProgramPlan,
        peers: Vec<PeerInfo>,
        nonce: [u8; 32],
        now: Instant,
    ) -> Result<Loaded, RemoteError> {
        if !self.clients.contains_key(&client) {
            return Err(RemoteError::new(ErrorKind::UnknownClient, "say Hello first"));
        }
        if !self.programs.contains_key(&(client, program)) {
            let have = self.programs.keys().filter(|(c, _)| *c == client).count();
            self.limit("programs", have, self.config.limits.programs)?;
        }
        let info = plan
            .device(&device)
            .ok_or_else(|| RemoteError::new(ErrorKind::BadRequest, format!("the plan has no device `{device}`")))?;
        let needs = weights_needed(&plan, &info.weights)?;
        let (session_bytes, activation_bytes) = reckon(&plan, &device)?;
        let largest = activation_bytes.iter().copied().max().unwrap_or(0);
        let using = self.memory_use_except(Some((client, program)));
        let mut new_hashes = HashSet::new();
        let new_weight_bytes: u64 = needs
            .iter()
            .filter(|(h, _)| !using.pinned.contains(h) && new_hashes.insert(h.clone()))
            .map(|(_, bytes)| *bytes)
            .sum();
        let mine = self.client_weights(client, Some(program));
        let my_new: u64 = needs
            .iter()
            .filter(|(h, _)| !mine.contains_key(h))
            .map(|(h, b)| (h, *b))
            .collect::<HashMap<_, _>>()
            .values()
            .sum();
        self.within_share(client, Some(program), my_new.saturating_add(largest), || {
            format!("program {program} needs {} of weights and {} for a run", human(my_new), human(largest))
        })?;
        self.admit(&using, new_weight_bytes.saturating_add(largest), || {
            format!(
                "program {program} needs {} of weights not already resident for other programs and \
                 {} for a run on `{device}`",
                human(new_weight_bytes),
                human(largest)
            )
        })?;
        for (h, _) in &needs {
            if let Some(w) = self.weights.get_mut(h) {
                w.last_used = now;
            }
        }
        let mut prove: Vec<WeightHash> =
            needs.iter().filter(|(h, _)| !self.owns(client, h)).map(|(h, _)| h.clone()).collect();
        prove.dedup();
        let peers = peers.into_iter().map(|p| (p.device.clone(), p)).collect();
        let digest = match genie_codegen::to_binary(&plan) {
            Ok(bytes) => *blake3::hash(&bytes).as_bytes(),
            // Never batched with another program.
            Err(_) => *blake3::hash(format!("{client:?}/{program}").as_bytes()).as_bytes(),
        };
        let loaded = LoadedProgram {
            digest,
            plan: Arc::new(plan),
            device,
            peers,
            needs,
            session_bytes,
            activation_bytes,
            nonce,
            ready: false,
        };
        self.programs.insert((client, program), loaded);
        // Cached weights of programs gone make room for this one's uploads.
        let evicted = self.evict_weights();
        Ok(Loaded { prove, evicted })
    }

    /// The weights among `claimed` that `program` needs, that are resident and not yet the
    /// client's, with the nonce their proofs are keyed with: what the client's proofs are
    /// checked against (outside the ledger: hashing large weights must not hold it).
    pub fn proof_targets(
        &self,
        client: ClientId,
        program: u64,
        claimed: &[WeightHash],
    ) -> Result<ProofTargets<P>, RemoteError> {
        let p = self.programs.get(&(client, program)).ok_or_else(|| unknown_program(program))?;
        let targets = claimed
            .iter()
            .filter(|h| p.needs.iter().any(|(n, _)| n == *h) && !self.owns(client, h))
            .filter_map(|h| self.weights.get(h).map(|w| (h.clone(), w.payload.share())))
            .collect();
        Ok(ProofTargets { weights: targets, nonce: p.nonce })
    }

    /// The client proved it holds `proven`: they become its. Returns what `program` still
    /// needs uploaded (every needed weight the client does not own).
    pub fn grant(
        &mut self,
        client: ClientId,
        program: u64,
        proven: &[WeightHash],
    ) -> Result<Vec<WeightHash>, RemoteError> {
        let needs: Vec<WeightHash> = self
            .programs
            .get(&(client, program))
            .ok_or_else(|| unknown_program(program))?
            .needs
            .iter()
            .map(|(h, _)| h.clone())
            .collect();
        let record = self.clients.get_mut(&client).ok_or_else(|| unknown_program(program))?;
        for h in proven.iter().filter(|h| needs.contains(h)) {
            record.owned.insert(h.clone());
        }
        let mut missing: Vec<WeightHash> = needs.into_iter().filter(|h| !record.owned.contains(h)).collect();
        missing.dedup();
        Ok(missing)
    }

    /// The weights `program` still lacks (not resident, or not the client's); when none, the
    /// program becomes ready.
    pub fn try_ready(&mut self, client: ClientId, program: u64) -> Result<Vec<WeightHash>, RemoteError> {
        let owned = self.clients.get(&client).map(|c| &c.owned);
        let p = self.programs.get_mut(&(client, program)).ok_or_else(|| unknown_program(program))?;
        let missing: Vec<WeightHash> = p
            .needs
            .iter()
            .filter(|(h, _)| !self.weights.contains_key(h) || !owned.is_some_and(|o| o.contains(h)))
            .map(|(h, _)| h.clone())
            .collect();
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

    /// Open a session of a ready program, reserving its state; admitted only if a run of the
    /// program's largest entry would fit beside it too (a session that could never run is no
    /// use). Opening again is idempotent (a retried request), but not for another program.
    pub fn open_session(
        &mut self,
        client: ClientId,
        program: u64,
        session: u64,
        now: Instant,
    ) -> Result<OpenedSession, RemoteError> {
        let (reserved_bytes, largest_run) = match self.programs.get(&(client, program)) {
            Some(p) if p.ready => (p.session_bytes, p.activation_bytes.iter().copied().max().unwrap_or(0)),
            _ => return Err(unknown_program(program)),
        };
        if let Some(s) = self.sessions.get(&(client, session)) {
            return if s.program == program {
                let opened = s.opened;
                let sessions_before = self.sessions.values().filter(|o| o.opened < opened).count() as u64;
                Ok(OpenedSession { sessions_before, evicted: Vec::new() })
            } else {
                Err(RemoteError::new(ErrorKind::BadRequest, format!("session {session} already exists")))
            };
        }
        let have = self.sessions.keys().filter(|(c, _)| *c == client).count();
        self.limit("sessions", have, self.config.limits.sessions)?;
        self.within_share(client, None, reserved_bytes.saturating_add(largest_run), || {
            format!(
                "a new session of program {program} needs {} and a run {}",
                human(reserved_bytes),
                human(largest_run)
            )
        })?;
        let using = self.memory_use();
        self.admit(&using, reserved_bytes.saturating_add(largest_run), || {
            format!(
                "a new session of program {program} reserves {} for its state, and a run of it needs {} beside",
                human(reserved_bytes),
                human(largest_run)
            )
        })?;
        self.sessions_opened += 1;
        let opened = self.sessions_opened;
        let s = Session { program, reserved_bytes, slots: BTreeMap::new(), last_used: now, busy: false, opened };
        let sessions_before = self.sessions.len() as u64;
        self.sessions.insert((client, session), s);
        Ok(OpenedSession { sessions_before, evicted: self.evict_weights() })
    }

    /// Close a session. Returns the run it is busy with, if any, for the caller to cancel.
    pub fn close_session(&mut self, client: ClientId, session: u64) -> Result<Option<u64>, RemoteError> {
        match self.sessions.remove(&(client, session)) {
            Some(_) => Ok(self.calls.iter().find_map(|(key, call)| match (key, &call.receives) {
                (CallKey::Run { client: c, run }, Receives::Run { session: s, .. })
                    if *c == client && *s == session =>
                {
                    Some(*run)
                }
                _ => None,
            })),
            None => Err(unknown_session(session)),
        }
    }

    // ---- calls ----------------------------------------------------------------------------

    /// Start run `run` of `entry` in `session`: checks the program (ready), the entry, the
    /// symbol values (within their ranges and within the memory bindings the program was
    /// reckoned at), the session (this program's, not busy), the client's calls in flight and
    /// the memory for the entry's activations; marks the session busy and hands out its state
    /// and the device's resident weights, shared. The run stays in flight until [`Ledger::end_run`].
    #[allow(clippy::too_many_arguments)]
    pub fn begin_run(
        &mut self,
        client: ClientId,
        run: u64,
        program: u64,
        session: u64,
        entry: &str,
        bindings: &Bindings,
        now: Instant,
    ) -> Result<RunTicket<P, S>, RemoteError> {
        let key = CallKey::Run { client, run };
        if self.calls.contains_key(&key) {
            return Err(RemoteError::new(ErrorKind::BadRequest, format!("run {run} is already in flight")));
        }
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
        let reserve = p.activation_bytes.get(entry_index).copied().unwrap_or(0);
        let (plan, device, peers, digest) = (p.plan.clone(), p.device.clone(), p.peers.clone(), p.digest);
        let in_flight = self.calls.keys().filter(|k| k.client() == client).count();
        self.limit("calls in flight", in_flight, self.config.limits.calls)?;
        let s = self.sessions.get(&(client, session)).ok_or_else(|| unknown_session(session))?;
        if s.program != program {
            return Err(RemoteError::new(ErrorKind::BadRequest, format!("session {session} is of another program")));
        }
        if s.busy {
            return Err(RemoteError::new(ErrorKind::SessionBusy, format!("session {session} is running a call")));
        }
        self.within_share(client, None, reserve, || format!("a run of `{entry}` needs {}", human(reserve)))?;
        let using = self.memory_use();
        self.admit(&using, reserve, || format!("a run of `{entry}` needs {} for its activations", human(reserve)))?;
        let s = self.sessions.get_mut(&(client, session)).ok_or_else(|| unknown_session(session))?;
        s.busy = true;
        s.last_used = now;
        let state = s.slots.iter().map(|(k, v)| (*k, v.share())).collect();
        let weights = self.weights_for(&plan, &device);
        let receives = Receives::Run { program, session, entry_index, bindings: bindings.clone() };
        self.calls.insert(key, ActiveCall { reserved: reserve, receives });
        Ok(RunTicket { plan, digest, device, peers, entry_index, state, weights })
    }

    /// End run `run`: its reservation is released and its session is free again; `written`
    /// (a successful call's state) replaces the slots, `None` (a failed call) leaves them.
    pub fn end_run(
        &mut self,
        client: ClientId,
        run: u64,
        session: u64,
        written: Option<BTreeMap<u32, S>>,
        now: Instant,
    ) {
        self.calls.remove(&CallKey::Run { client, run });
        if let Some(s) = self.sessions.get_mut(&(client, session)) {
            s.busy = false;
            s.last_used = now;
            if let Some(w) = written {
                s.slots.extend(w);
            }
        }
    }

    /// Start per-op call `call`: `inputs` are the types of the tensors sent with it (`None`
    /// for a resident weight), `bytes` what its inputs and outputs take; admitted within the
    /// client's calls in flight and the memory. In flight until [`Ledger::end_op`].
    pub fn begin_op(
        &mut self,
        client: ClientId,
        call: u64,
        inputs: Vec<Option<(DType, Vec<i64>)>>,
        bytes: u64,
    ) -> Result<(), RemoteError> {
        let key = CallKey::Op { client, call };
        if self.calls.contains_key(&key) {
            return Err(RemoteError::new(ErrorKind::BadRequest, format!("op call {call} is already in flight")));
        }
        let in_flight = self.calls.keys().filter(|k| k.client() == client).count();
        self.limit("calls in flight", in_flight, self.config.limits.calls)?;
        self.within_share(client, None, bytes, || format!("an op call needs {}", human(bytes)))?;
        let using = self.memory_use();
        self.admit(&using, bytes, || format!("an op call needs {} for its inputs and outputs", human(bytes)))?;
        self.calls.insert(key, ActiveCall { reserved: bytes, receives: Receives::Op { inputs } });
        Ok(())
    }

    /// End per-op call `call`, releasing what it reserved.
    pub fn end_op(&mut self, client: ClientId, call: u64) {
        self.calls.remove(&CallKey::Op { client, call });
    }

    /// May `sender` stream a tensor of `dtype` and `shape` for `purpose`? Only for a call in
    /// flight that expects exactly it: a run's input from its client, a run's activation from
    /// the peer whose certificate the program's peer list pins for the sending device, a
    /// per-op call's input from its client; each with the type the plan (or the call) gives.
    /// Weights are not asked about here (see [`Ledger::make_room_for_weight`]).
    pub fn expect(&self, purpose: &Purpose, sender: &Sender, dtype: DType, shape: &[i64]) -> Expectation {
        let refuse = |why: String| Expectation::Refuse(why);
        let (key, transfer) = match (purpose, sender) {
            (Purpose::Input { run, transfer }, Sender::Client(client)) => {
                (CallKey::Run { client: *client, run: *run }, Some((*transfer, None)))
            }
            (Purpose::Activation { client, run, transfer }, Sender::Peer(fingerprint)) => {
                (CallKey::Run { client: *client, run: *run }, Some((*transfer, Some(fingerprint))))
            }
            (Purpose::OpInput { call, .. }, Sender::Client(client)) => {
                (CallKey::Op { client: *client, call: *call }, None)
            }
            (p, s) => return refuse(format!("{p:?} is not accepted from {s:?}")),
        };
        let Some(call) = self.calls.get(&key) else { return Expectation::NotYet };
        let want: (DType, Vec<i64>) = match (&call.receives, transfer, purpose) {
            (Receives::Op { inputs }, None, Purpose::OpInput { index, .. }) => match inputs.get(*index as usize) {
                Some(Some(t)) => t.clone(),
                _ => return refuse(format!("op call input {index} is not sent with the call")),
            },
            (Receives::Run { program, entry_index, bindings, .. }, Some((transfer, from_peer)), _) => {
                let Some(p) = self.programs.get(&(key.client(), *program)) else {
                    return refuse("the run's program is gone".into());
                };
                let entry = &p.plan.entries[*entry_index];
                let Some(t) = entry.transfers.iter().find(|t| t.id == transfer) else {
                    return refuse(format!("the plan has no transfer {transfer}"));
                };
                if t.to != p.device {
                    return refuse(format!("transfer {transfer} goes to {}, not to this worker ({})", t.to, p.device));
                }
                match from_peer {
                    None if t.from == CLIENT => {}
                    None => return refuse(format!("transfer {transfer} comes from {}, not the client", t.from)),
                    Some(fingerprint) => {
                        let pinned = p.peers.get(&t.from).map(|peer| peer.fingerprint.as_str());
                        if t.from == CLIENT || pinned.map(normalise) != Some(normalise(fingerprint)) {
                            return refuse(format!(
                                "transfer {transfer} comes from {}, and this connection is not its worker",
                                t.from
                            ));
                        }
                    }
                }
                let Some(info) = entry.tensors.get(&t.tensor) else {
                    return refuse(format!("transfer {transfer} names no tensor of the plan"));
                };
                let shape: Result<Vec<i64>, _> = info.ty.shape.iter().map(|d| d.eval(bindings)).collect();
                match shape {
                    Ok(shape) => (info.ty.dtype, shape),
                    Err(e) => return refuse(format!("the shape of transfer {transfer}: {e}")),
                }
            }
            _ => return refuse(format!("{purpose:?} does not fit call {key:?}")),
        };
        if (dtype, shape) != (want.0, want.1.as_slice()) {
            return refuse(format!("{purpose:?} is {dtype} {shape:?}, the call expects {} {:?}", want.0, want.1));
        }
        Expectation::Accept
    }

    // ---- weights --------------------------------------------------------------------------

    /// A resident weight `client` may use (uploaded or proved by it), shared.
    pub fn weight_of(&self, client: ClientId, hash: &WeightHash) -> Option<P> {
        if !self.owns(client, hash) {
            return None;
        }
        self.weights.get(hash).map(|w| w.payload.share())
    }

    /// Before a weight's bytes are read (they are allocated as the header says). The first
    /// upload of a weight a loaded program needs was admitted with the load, and must have the
    /// size the plan's type gives it. Any other upload (a per-op weight, a second copy of one
    /// being read) must fit beside what is committed and the other uploads being read, least
    /// recently used cached weights dropped to make room, and holds its bytes until
    /// [`Ledger::upload_done`].
    pub fn admit_upload(
        &mut self,
        client: ClientId,
        hash: &WeightHash,
        bytes: u64,
    ) -> Result<(Upload, Vec<Evicted>), RemoteError> {
        let needed = self.programs.values().flat_map(|p| &p.needs).find(|(h, _)| h == hash).map(|(_, b)| *b);
        if let Some(needed) = needed {
            if bytes != needed {
                return Err(RemoteError::new(
                    ErrorKind::BadRequest,
                    format!("weight {} is {needed} B by its type, the upload says {bytes} B", hash.short()),
                ));
            }
            if !self.weights.contains_key(hash) && self.uploading.insert(hash.clone()) {
                return Ok((Upload { hash: hash.clone(), client, reserved: 0 }, Vec::new()));
            }
        }
        self.within_share(client, None, bytes, || format!("uploading weight {} needs {}", hash.short(), human(bytes)))?;
        let evicted = self.make_room_for_weight(hash, bytes)?;
        self.upload_bytes = self.upload_bytes.saturating_add(bytes);
        *self.client_uploads.entry(client).or_default() += bytes;
        Ok((Upload { hash: hash.clone(), client, reserved: bytes }, evicted))
    }

    /// An upload admitted by [`Ledger::admit_upload`] ended (its weight inserted or not).
    pub fn upload_done(&mut self, upload: Upload) {
        if upload.reserved == 0 {
            self.uploading.remove(&upload.hash);
        } else {
            self.upload_bytes = self.upload_bytes.saturating_sub(upload.reserved);
            if let Some(mine) = self.client_uploads.get_mut(&upload.client) {
                *mine = mine.saturating_sub(upload.reserved);
                if *mine == 0 {
                    self.client_uploads.remove(&upload.client);
                }
            }
        }
    }

    /// Room for `bytes` of a weight outside what loads admitted: refused beyond the budget;
    /// cached weights no program needs are dropped, least recently used first, to make it.
    fn make_room_for_weight(&mut self, hash: &WeightHash, bytes: u64) -> Result<Vec<Evicted>, RemoteError> {
        let Some(memory) = self.config.memory_bytes else {
            return Ok(Vec::new());
        };
        let using = self.memory_use();
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

    /// Make a weight resident (an identical one already resident is kept), last used `now`; it
    /// becomes `uploader`'s, which sent its bytes (checked against the hash by the caller).
    pub fn insert_weight(&mut self, hash: WeightHash, payload: P, uploader: Option<ClientId>, now: Instant) {
        if let Some(c) = uploader.and_then(|c| self.clients.get_mut(&c)) {
            c.owned.insert(hash.clone());
        }
        if let Some(w) = self.weights.get_mut(&hash) {
            w.last_used = now;
            return;
        }
        let bytes = payload.bytes();
        self.weights.insert(hash, Weight { payload, bytes, last_used: now });
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

    // ---- housekeeping ---------------------------------------------------------------------

    /// Periodic housekeeping: free sessions idle longer than the timeout (busy ones are kept),
    /// forget clients gone longer than the timeout that have no session left (their programs,
    /// ticket and weight ownership go with them), then trim the weight cache.
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
        let with_calls: HashSet<ClientId> = self.calls.keys().map(CallKey::client).collect();
        for c in gone.into_iter().filter(|c| !with_sessions.contains(c) && !with_calls.contains(c)) {
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

    /// The weights `client`'s programs need (but `except`), each once, with their bytes.
    fn client_weights(&self, client: ClientId, except: Option<u64>) -> HashMap<&WeightHash, u64> {
        self.programs
            .iter()
            .filter(|((c, id), _)| *c == client && Some(*id) != except)
            .flat_map(|(_, p)| p.needs.iter().map(|(h, b)| (h, *b)))
            .collect()
    }

    /// What `client` holds: its programs' weights (but `except`'s), its sessions, calls and
    /// uploads being read.
    fn client_use(&self, client: ClientId, except: Option<u64>) -> u64 {
        let weights: u64 = self.client_weights(client, except).values().sum();
        let sessions: u64 = self
            .sessions
            .iter()
            .filter(|((c, _), _)| *c == client)
            .map(|(_, s)| s.slots.values().map(Payload::bytes).sum::<u64>().max(s.reserved_bytes))
            .sum();
        let calls: u64 = self.calls.iter().filter(|(k, _)| k.client() == client).map(|(_, c)| c.reserved).sum();
        let uploads = self.client_uploads.get(&client).copied().unwrap_or(0);
        weights.saturating_add(sessions).saturating_add(calls).saturating_add(uploads)
    }

    /// Refuse `extra` bytes for `client` beyond its share of the memory ([`Limits::memory`]).
    fn within_share(
        &self,
        client: ClientId,
        except: Option<u64>,
        extra: u64,
        what: impl FnOnce() -> String,
    ) -> Result<(), RemoteError> {
        let Some(share) = self.config.limits.memory else {
            return Ok(());
        };
        let have = self.client_use(client, except);
        if have.saturating_add(extra) <= share {
            return Ok(());
        }
        Err(RemoteError::new(
            ErrorKind::LimitReached,
            format!(
                "{}; this client holds {} of its {} share of this worker's memory",
                what(),
                human(have),
                human(share)
            ),
        ))
    }

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
        }
        using.calls = self.calls.values().map(|c| c.reserved).fold(0, u64::saturating_add);
        using.uploads = self.upload_bytes;
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
                 weights, {} to sessions' state, {} to calls in flight",
                what(),
                self.config.device_label,
                human(memory),
                human(using.total()),
                human(using.weights),
                human(using.sessions),
                human(using.calls)
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
        let using = self.memory_use();
        let cached_weight_bytes =
            self.weights.iter().filter(|(h, _)| !using.pinned.contains(*h)).map(|(_, w)| w.bytes).sum();
        LedgerStats {
            resident_weights: self.weights.len() as u64,
            resident_weight_bytes: self.weight_bytes,
            programs: self.programs.len() as u64,
            sessions: self.sessions.len() as u64,
            state_bytes: self.state_bytes(),
            committed_bytes: using.total(),
            committed_weight_bytes: using.weights,
            committed_session_bytes: using.sessions,
            committed_call_bytes: using.calls,
            committed_upload_bytes: using.uploads,
            cached_weight_bytes,
            refused_for_memory: self.refused_for_memory,
            calls: self.calls.len() as u64,
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

/// Every symbol of `entry` bound, within its range and at most its memory binding: the value
/// the worker reckoned the program's memory at, so no run holds more than was admitted.
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
        if v > s.memory_value {
            return Err(RemoteError::new(
                ErrorKind::BadRequest,
                format!(
                    "{} = {v} exceeds {}, the value this program's memory was planned for (compile with a \
                     larger --max-seq)",
                    s.name, s.memory_value
                ),
            ));
        }
    }
    Ok(())
}

/// Bytes of a tensor type under `bindings`.
fn bytes_at(ty: &TensorType, bindings: &Bindings, what: &str) -> Result<u64, RemoteError> {
    let bytes = ty.bytes().eval(bindings).map_err(|e| {
        RemoteError::new(ErrorKind::BadRequest, format!("cannot size {what} ({ty}) at the memory bindings: {e}"))
    })?;
    Ok(bytes.max(0) as u64)
}

/// What `device` of `plan` takes, reckoned by this worker from the plan's types at each
/// entry's memory bindings (nothing the plan declares about sizes is used): one session's
/// state (every slot held here, at its largest port) and, per entry, the activation peak of
/// its steps here (the model codegen plans with: tensors freed after their last use, views
/// sharing storage).
fn reckon(plan: &ProgramPlan, device: &str) -> Result<(u64, Vec<u64>), RemoteError> {
    let mut activations = Vec::with_capacity(plan.entries.len());
    for entry in &plan.entries {
        let Some(steps) = entry.plan(device) else {
            activations.push(0);
            continue;
        };
        let bindings = entry.memory_bindings();
        let mut sizes: HashMap<genie_ir::ValueId, u64> = HashMap::with_capacity(entry.tensors.len());
        for (v, info) in &entry.tensors {
            sizes.insert(*v, bytes_at(&info.ty, &bindings, &format!("tensor {v} of `{}`", entry.name))?);
        }
        activations.push(genie_codegen::memory::activation_peak(&steps.steps, |v| sizes.get(&v).copied().unwrap_or(0)));
    }
    let mut session = 0u64;
    for slot in plan.state_slots.iter().filter(|s| s.device == device) {
        let mut largest = 0u64;
        for (port, output) in slot.reads.iter().map(|p| (p, false)).chain(slot.writes.iter().map(|p| (p, true))) {
            let Some(entry) = plan.entry(&port.entry) else { continue };
            let ports = if output { &entry.outputs } else { &entry.inputs };
            let Some(io) = ports.iter().find(|io| io.name == port.name) else { continue };
            let Some(info) = entry.tensors.get(&io.tensor) else { continue };
            let what = format!("state slot `{}`", slot.name);
            largest = largest.max(bytes_at(&info.ty, &entry.memory_bindings(), &what)?);
        }
        session = session.saturating_add(largest);
    }
    Ok((session, activations))
}

/// Compare secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    crate::handshake::constant_time_eq(a, b)
}

/// A fingerprint as compared (`sha256:` and lowercase hex).
fn normalise(fingerprint: &str) -> String {
    fingerprint.trim().to_ascii_lowercase()
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

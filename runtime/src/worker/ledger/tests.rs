//! The ledger's decisions on plain data: byte counts for tensors, simulated instants for time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use genie_codegen::{
    DeviceInfo, DevicePlan, EntryPlan, IoPort, ProgramPlan, ResidentWeight, StateSlot, Step, SymbolInfo, TensorInfo,
    TensorKind, Transfer, CLIENT,
};
use genie_ir::{DType, Dim, HexBytes, Phase, Port, TensorType, ValueId, WeightHash};

use super::{Evicted, Expectation, Ledger, LedgerConfig, Limits, Payload, Sender};
use crate::exec::Bindings;
use crate::wire::{ErrorKind, PeerInfo, Purpose, RemoteError, Resume};

/// A tensor that is only its size.
#[derive(Debug, PartialEq)]
struct Blob(u64);

impl Payload for Blob {
    fn bytes(&self) -> u64 {
        self.0
    }
    fn share(&self) -> Blob {
        Blob(self.0)
    }
}

const DEVICE: &str = "w0";
const ALICE: u64 = 0xa11ce;
const BOB: u64 = 0xb0b;
const NONCE: [u8; 32] = [7; 32];
/// The value ids of the plan's state input and its client input.
const KV: ValueId = ValueId(100);
const X: ValueId = ValueId(101);

fn config(memory_bytes: Option<u64>, weight_cache_bytes: u64) -> LedgerConfig {
    LedgerConfig {
        device_label: "cpu".into(),
        memory_bytes,
        weight_cache_bytes,
        session_idle_timeout: Duration::from_secs(10),
        limits: Limits::default(),
    }
}

fn hash(name: &str) -> WeightHash {
    WeightHash(name.to_string())
}

fn identity(client: u64) -> Resume {
    Resume { client, ticket: HexBytes(client.to_le_bytes().to_vec()) }
}

/// A ledger with `clients` admitted.
fn ledger_with(config: LedgerConfig, clients: &[u64], now: Instant) -> Ledger<Blob> {
    let mut ledger = Ledger::new(config);
    for &c in clients {
        ledger.admit_client(None, identity(c), now).unwrap();
    }
    ledger
}

fn tensor(name: &str, ty: TensorType, kind: TensorKind) -> TensorInfo {
    // `bytes` is what the plan declares; the ledger must not believe it.
    TensorInfo { name: name.into(), ty, kind, residency: None, bytes: 1 }
}

/// A one-entry plan (`step`) whose device `w0` reads `weights` (name, bytes), holds a `kv`-byte
/// state slot (input `kv`) and receives an `activations`-byte input `x` from the client
/// (transfer 0), its only activation. Every size the plan declares is 1 byte: the ledger must
/// reckon them from the types.
fn plan(weights: &[(&str, u64)], kv: u64, activations: u64) -> ProgramPlan {
    symbolic_plan(weights, kv, TensorType::new(DType::Uint8, &[activations as i64]), Vec::new())
}

/// [`plan`] with `x` of type `x_type` and the entry's `symbols`.
fn symbolic_plan(weights: &[(&str, u64)], kv: u64, x_type: TensorType, symbols: Vec<SymbolInfo>) -> ProgramPlan {
    let mut tensors: BTreeMap<ValueId, TensorInfo> = weights
        .iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let ty = TensorType::new(DType::Uint8, &[*bytes as i64]);
            (ValueId(i as u32), tensor(name, ty, TensorKind::Weight { hash: hash(name) }))
        })
        .collect();
    tensors.insert(X, tensor("x", x_type, TensorKind::Input { index: 0 }));
    let mut inputs = vec![IoPort { name: "x".into(), tensor: X, slot: None, device: CLIENT.into(), role: None }];
    let mut state_slots = Vec::new();
    if kv > 0 {
        let ty = TensorType::new(DType::Uint8, &[kv as i64]);
        tensors.insert(KV, tensor("kv", ty.clone(), TensorKind::State { index: 1, slot: 0 }));
        inputs.push(IoPort { name: "kv".into(), tensor: KV, slot: Some(0), device: DEVICE.into(), role: None });
        let reads = vec![Port { entry: "step".into(), name: "kv".into() }];
        state_slots.push(StateSlot {
            id: 0,
            name: "step.kv".into(),
            device: DEVICE.into(),
            ty,
            bytes: 1,
            writes: Vec::new(),
            reads,
        });
    }
    let transfer = Transfer {
        id: 0,
        tensor: X,
        name: "x".into(),
        from: CLIENT.into(),
        to: DEVICE.into(),
        bytes: 1,
        residency: None,
        producer: None,
        consumers: Vec::new(),
    };
    let steps = vec![Step::Recv { tensor: X, from: CLIENT.into(), transfer: 0 }];
    let entry = EntryPlan {
        name: "step".into(),
        phase: Phase::Unknown,
        symbols,
        tensors,
        inputs,
        outputs: Vec::new(),
        transfers: vec![transfer],
        handoffs: Vec::new(),
        plans: vec![DevicePlan { device: DEVICE.into(), steps, activation_peak_bytes: 1, fused: Vec::new() }],
        bytes_per_call: 0,
        hops: 0,
        estimate: None,
    };
    let device = DeviceInfo {
        name: DEVICE.into(),
        kind: "cpu".into(),
        memory_bytes: 0,
        weights: weights
            .iter()
            .map(|(name, _)| ResidentWeight { hash: hash(name), bytes: 1, name: name.to_string() })
            .collect(),
        weight_bytes: 1,
        slots: Vec::new(),
        kv_bytes: 1,
        activation_bytes: 1,
        peak_bytes: 1,
        nodes: 0,
    };
    ProgramPlan {
        version: 2,
        program: "test".into(),
        policy: None,
        max_seq: None,
        devices: vec![device],
        state_slots,
        entries: vec![entry],
        phases: None,
        replicas: Vec::new(),
    }
}

/// The bytes of each weight of `p`, from its type.
fn weight_sizes(p: &ProgramPlan) -> BTreeMap<WeightHash, u64> {
    p.entries[0]
        .tensors
        .values()
        .filter_map(|t| match &t.kind {
            TensorKind::Weight { hash } => Some((hash.clone(), t.ty.bytes().as_const().unwrap() as u64)),
            _ => None,
        })
        .collect()
}

fn load(
    ledger: &mut Ledger<Blob>,
    client: u64,
    program: u64,
    p: ProgramPlan,
    now: Instant,
) -> Result<Vec<WeightHash>, RemoteError> {
    ledger.load_program(client, program, DEVICE.into(), p, Vec::new(), NONCE, now).map(|l| l.prove)
}

/// Load `p` for `client` and upload the weights it must, so that it is ready.
fn load_ready(ledger: &mut Ledger<Blob>, client: u64, program: u64, p: ProgramPlan, now: Instant) {
    let sizes = weight_sizes(&p);
    for h in load(ledger, client, program, p, now).expect("the load fits") {
        ledger.insert_weight(h.clone(), Blob(sizes[&h]), Some(client), now);
    }
    assert_eq!(ledger.try_ready(client, program).unwrap(), Vec::<WeightHash>::new());
}

fn bindings(pairs: &[(&str, i64)]) -> Bindings {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Begin run `run` of `step` in `session` with no symbols.
fn begin(
    ledger: &mut Ledger<Blob>,
    client: u64,
    run: u64,
    program: u64,
    session: u64,
    now: Instant,
) -> Result<(), RemoteError> {
    ledger.begin_run(client, run, program, session, "step", &Bindings::new(), now).map(|_| ())
}

fn out_of_memory(result: Result<impl std::fmt::Debug, RemoteError>) -> String {
    let err = result.expect_err("refused for memory");
    assert_eq!(err.kind, ErrorKind::OutOfMemory, "{err:?}");
    err.message
}

#[test]
fn a_load_beyond_the_budget_is_refused_naming_its_sizes() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(Some(1000), 0), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 600)], 0, 300), t0);
    // 600 committed (reckoned from the types; the plan declares 1 byte each): 200 more bytes
    // of weights and a 300-byte run do not fit in 1000.
    assert_eq!(ledger.memory_use().total(), 600);
    let message = out_of_memory(load(&mut ledger, ALICE, 2, plan(&[("b", 200)], 0, 300), t0));
    assert!(message.contains("program 2 needs 200 B of weights not already resident"), "{message}");
    assert!(message.contains("and 300 B for a run on `w0`"), "{message}");
    assert!(message.contains("has 1000 B of memory, of which 600 B is committed"), "{message}");
    assert!(message.contains("600 B to loaded programs' weights"), "{message}");
    let stats = ledger.stats();
    assert_eq!((stats.programs, stats.committed_bytes, stats.refused_for_memory), (1, 600, 1));
    // Loading the same program again counts its own weights once: it still fits.
    load(&mut ledger, ALICE, 1, plan(&[("a", 600)], 0, 300), t0).unwrap();
}

#[test]
fn a_session_beyond_the_budget_is_refused_naming_its_reservation() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(Some(800), 0), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 500)], 200, 100), t0);
    ledger.open_session(ALICE, 1, 10, t0).expect("700 of 800");
    let message = out_of_memory(ledger.open_session(ALICE, 1, 11, t0));
    assert!(message.contains("a new session of program 1 reserves 200 B for its state"), "{message}");
    assert!(message.contains("200 B to sessions' state"), "{message}");
    assert_eq!(ledger.stats().sessions, 1);
    ledger.close_session(ALICE, 10).unwrap();
    ledger.open_session(ALICE, 1, 11, t0).expect("the first session's memory is free again");
}

#[test]
fn a_weight_shared_by_two_programs_is_counted_once() {
    let t0 = Instant::now();
    // Bob's load (its new weight and a 50-byte run) fits only if the shared 600 bytes count
    // once: 600 + 100 + 100 + 50.
    let mut ledger = ledger_with(config(Some(850), 0), &[ALICE, BOB], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("shared", 600), ("a", 100)], 0, 50), t0);
    let prove = load(&mut ledger, BOB, 1, plan(&[("shared", 600), ("b", 100)], 0, 50), t0);
    // Bob must still prove he holds the shared bytes (or upload them): Alice's copy is not his.
    assert_eq!(prove.expect("the shared weight is already admitted"), vec![hash("shared"), hash("b")]);
    let using = ledger.memory_use();
    assert_eq!((using.weights, using.total()), (800, 800));
}

#[test]
fn eviction_drops_least_recently_used_unpinned_weights_down_to_the_cache_size() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut ledger = ledger_with(config(None, 200), &[ALICE], t0);
    // The pinned weight is the oldest and the largest: still never evicted.
    load_ready(&mut ledger, ALICE, 1, plan(&[("pinned", 500)], 0, 0), at(0));
    ledger.insert_weight(hash("x"), Blob(100), None, at(1));
    ledger.insert_weight(hash("y"), Blob(100), None, at(2));
    ledger.insert_weight(hash("z"), Blob(100), None, at(3));
    let report = ledger.sweep(at(4));
    assert_eq!(report.evicted, vec![Evicted { hash: hash("x"), bytes: 100 }]);
    for kept in ["pinned", "y", "z"] {
        assert!(ledger.weights.contains_key(&hash(kept)), "{kept} stays resident");
    }
    assert_eq!(ledger.stats().resident_weight_bytes, 700);
    // Unloaded, its weight is the least recently used of the cache and goes first.
    ledger.unload_program(ALICE, 1).unwrap();
    let report = ledger.sweep(at(5));
    assert_eq!(report.evicted, vec![Evicted { hash: hash("pinned"), bytes: 500 }]);
}

#[test]
fn eviction_keeps_cached_weights_within_the_memory_budget() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut ledger = ledger_with(config(Some(1000), 10_000), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("pinned", 700)], 0, 100), at(0));
    ledger.insert_weight(hash("x"), Blob(200), None, at(1));
    ledger.insert_weight(hash("y"), Blob(200), None, at(2));
    // 700 committed leaves 300 for the cache, far below its own limit.
    assert_eq!(ledger.sweep(at(3)).evicted, vec![Evicted { hash: hash("x"), bytes: 200 }]);
    // An upload no program needs evicts to make room, or is refused when it cannot fit at all.
    let (upload, evicted) = ledger.admit_upload(ALICE, &hash("w"), 250).expect("y makes room");
    assert_eq!(evicted, vec![Evicted { hash: hash("y"), bytes: 200 }]);
    // While w is read its bytes are held: a second upload does not fit beside it.
    let message = out_of_memory(ledger.admit_upload(ALICE, &hash("v"), 51));
    assert!(message.contains("no room for weight v (51 B)"), "{message}");
    ledger.upload_done(upload);
    let message = out_of_memory(ledger.admit_upload(ALICE, &hash("big"), 301));
    assert!(message.contains("no room for weight big (301 B)"), "{message}");
    assert_eq!(ledger.stats().refused_for_memory, 2);
}

#[test]
fn the_idle_sweep_frees_idle_sessions_but_keeps_a_busy_one() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut ledger = ledger_with(config(None, 0), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), at(0));
    ledger.open_session(ALICE, 1, 10, at(0)).unwrap();
    ledger.open_session(ALICE, 1, 11, at(0)).unwrap();
    begin(&mut ledger, ALICE, 1, 1, 11, at(0)).unwrap();
    assert!(ledger.sweep(at(5)).freed_sessions.is_empty(), "nothing is idle for 10 s yet");
    let report = ledger.sweep(at(11));
    assert_eq!(report.freed_sessions, vec![(ALICE, 10)], "the busy session stays");
    ledger.end_run(ALICE, 1, 11, None, at(11));
    assert!(ledger.sweep(at(15)).freed_sessions.is_empty(), "used at 11 s");
    assert_eq!(ledger.sweep(at(21)).freed_sessions, vec![(ALICE, 11)]);
    assert_eq!(ledger.stats().sessions, 0);
}

#[test]
fn a_departed_clients_programs_are_unloaded_after_the_idle_timeout_with_no_sessions_left() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Alice leaves with no session; Bob leaves with a session running a call; Carol stays.
    let carol = 0xca201;
    let mut ledger = ledger_with(config(None, 0), &[ALICE, BOB, carol], t0);
    for client in [ALICE, BOB, carol] {
        load_ready(&mut ledger, client, 1, plan(&[("a", 10)], 0, 0), at(0));
    }
    ledger.open_session(BOB, 1, 10, at(0)).unwrap();
    begin(&mut ledger, BOB, 1, 1, 10, at(0)).unwrap();
    ledger.client_disconnected(ALICE, at(1));
    ledger.client_disconnected(BOB, at(1));

    assert!(ledger.sweep(at(10)).unloaded_programs.is_empty(), "gone 9 s, less than the timeout");
    let report = ledger.sweep(at(11));
    assert_eq!(report.unloaded_programs, vec![(ALICE, 1)], "Bob still has a session");
    assert_eq!(report.departed_clients, vec![ALICE]);
    ledger.end_run(BOB, 1, 10, None, at(11));
    assert!(ledger.sweep(at(20)).unloaded_programs.is_empty(), "Bob's session was used at 11 s");
    let report = ledger.sweep(at(21));
    assert_eq!((report.freed_sessions, report.unloaded_programs), (vec![(BOB, 10)], vec![(BOB, 1)]));
    // A departed client is forgotten: its ticket no longer resumes it.
    let err = ledger.admit_client(Some(&identity(ALICE)), identity(0xf00), at(22)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownClient);
    // A client that comes back before the timeout keeps its programs.
    ledger.client_disconnected(carol, at(21));
    ledger.admit_client(Some(&identity(carol)), identity(0xf01), at(25)).expect("Carol resumes");
    assert!(ledger.sweep(at(100)).unloaded_programs.is_empty());
    assert_eq!(ledger.stats().programs, 1);
}

#[test]
fn a_program_is_ready_once_the_client_owns_every_weight_it_needs() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(None, 0), &[ALICE, BOB], t0);
    let prove = load(&mut ledger, ALICE, 1, plan(&[("a", 10), ("b", 20)], 0, 0), t0);
    assert_eq!(prove.unwrap(), vec![hash("a"), hash("b")]);
    assert_eq!(ledger.open_session(ALICE, 1, 10, t0).unwrap_err().kind, ErrorKind::UnknownProgram, "not ready");
    ledger.insert_weight(hash("a"), Blob(10), Some(ALICE), t0);
    assert_eq!(ledger.try_ready(ALICE, 1).unwrap(), vec![hash("b")]);
    assert_eq!(ledger.open_session(ALICE, 1, 10, t0).unwrap_err().kind, ErrorKind::UnknownProgram, "not ready");
    ledger.insert_weight(hash("b"), Blob(20), Some(ALICE), t0);
    assert!(ledger.try_ready(ALICE, 1).unwrap().is_empty());
    ledger.open_session(ALICE, 1, 10, t0).expect("ready");
    // Bob's program needs `b` (resident, Alice's) and `c` (nowhere): he is asked for both alike.
    let prove = load(&mut ledger, BOB, 1, plan(&[("b", 20), ("c", 5)], 0, 0), t0);
    assert_eq!(prove.unwrap(), vec![hash("b"), hash("c")]);
    // His claims are checked only against resident weights his program needs.
    let targets = ledger.proof_targets(BOB, 1, &[hash("a"), hash("b"), hash("c")]).unwrap();
    assert_eq!((targets.weights, targets.nonce), (vec![(hash("b"), Blob(20))], NONCE));
    assert_eq!(ledger.grant(BOB, 1, &[hash("b")]).unwrap(), vec![hash("c")], "c is still to upload");
    assert_eq!(ledger.try_ready(BOB, 1).unwrap(), vec![hash("c")]);
    ledger.insert_weight(hash("c"), Blob(5), Some(BOB), t0);
    assert!(ledger.try_ready(BOB, 1).unwrap().is_empty());
    assert_eq!(ledger.try_ready(BOB, 2).unwrap_err().kind, ErrorKind::UnknownProgram);
}

#[test]
fn a_resident_weight_is_usable_only_by_a_client_that_uploaded_or_proved_it() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(None, 0), &[ALICE, BOB], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("secret", 64)], 0, 0), t0);
    assert_eq!(ledger.weight_of(ALICE, &hash("secret")), Some(Blob(64)));
    // Bob names the hash: the answer is the one a worker without the weight would give.
    let mut fresh = ledger_with(config(None, 0), &[BOB], t0);
    let asked_fresh = load(&mut fresh, BOB, 1, plan(&[("secret", 64)], 0, 0), t0).unwrap();
    let asked = load(&mut ledger, BOB, 1, plan(&[("secret", 64)], 0, 0), t0).unwrap();
    assert_eq!(asked, asked_fresh);
    assert_eq!(ledger.weight_of(BOB, &hash("secret")), None, "not his to read or run with");
    assert_eq!(ledger.try_ready(BOB, 1).unwrap(), vec![hash("secret")]);
    assert_eq!(ledger.open_session(BOB, 1, 10, t0).unwrap_err().kind, ErrorKind::UnknownProgram);
    // Granting a weight his program does not need gives him nothing.
    ledger.grant(BOB, 1, &[hash("other")]).unwrap();
    assert_eq!(ledger.weight_of(BOB, &hash("other")), None);
    // Once he proves it (the caller checked the proof), it is his too.
    assert!(ledger.grant(BOB, 1, &[hash("secret")]).unwrap().is_empty());
    assert_eq!(ledger.weight_of(BOB, &hash("secret")), Some(Blob(64)));
    assert!(ledger.try_ready(BOB, 1).unwrap().is_empty());
}

#[test]
fn concurrent_runs_each_reserve_their_activations() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(Some(800), 0), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 100)], 0, 300), t0);
    for session in [10, 11, 12] {
        ledger.open_session(ALICE, 1, session, t0).unwrap();
    }
    begin(&mut ledger, ALICE, 1, 1, 10, t0).unwrap();
    begin(&mut ledger, ALICE, 2, 1, 11, t0).unwrap();
    assert_eq!((ledger.memory_use().calls, ledger.stats().calls), (600, 2));
    let message = out_of_memory(begin(&mut ledger, ALICE, 3, 1, 12, t0));
    assert!(message.contains("a run of `step` needs 300 B for its activations"), "{message}");
    assert!(message.contains("600 B to calls in flight"), "{message}");
    ledger.end_run(ALICE, 1, 10, None, t0);
    begin(&mut ledger, ALICE, 3, 1, 12, t0).expect("run 1's activations are free again");
    // A run id is one call at a time.
    let err = begin(&mut ledger, ALICE, 3, 1, 10, t0).unwrap_err();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::BadRequest, "run 3 is already in flight"));
}

#[test]
fn symbol_values_beyond_the_memory_bindings_are_refused() {
    let t0 = Instant::now();
    let x = TensorType::with_dims(DType::Uint8, vec![Dim::symbol("s").scale(10)]);
    let symbol =
        SymbolInfo { name: "s".into(), min: 1, max: Some(64), cost_value: 4, memory_value: 8, sources: Vec::new() };
    let mut ledger = ledger_with(config(None, 0), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, symbolic_plan(&[("a", 10)], 0, x, vec![symbol]), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    let mut run = |s: Option<i64>| {
        let b = s.map(|s| bindings(&[("s", s)])).unwrap_or_default();
        ledger.begin_run(ALICE, 1, 1, 10, "step", &b, t0).map(|_| ()).unwrap_err().message
    };
    assert_eq!(run(None), "symbol s is not bound");
    assert_eq!(run(Some(0)), "s = 0 is outside its range [1, 64]");
    // Within the range, but the program's memory was reckoned at s = 8.
    assert!(run(Some(9)).starts_with("s = 9 exceeds 8"));
    ledger.begin_run(ALICE, 1, 1, 10, "step", &bindings(&[("s", 8)]), t0).expect("at the memory bindings");
    assert_eq!(ledger.memory_use().calls, 80, "10 * s at s = 8");
    // The input must have the shape those values give it.
    let input = Purpose::Input { run: 1, transfer: 0 };
    assert_eq!(ledger.expect(&input, &Sender::Client(ALICE), DType::Uint8, &[80]), Expectation::Accept);
    assert!(matches!(ledger.expect(&input, &Sender::Client(ALICE), DType::Uint8, &[90]), Expectation::Refuse(_)));
}

#[test]
fn a_tensor_stream_is_expected_only_from_its_sender_with_its_type() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(None, 0), &[ALICE, BOB], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 16), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    let input = Purpose::Input { run: 1, transfer: 0 };
    let alice = Sender::Client(ALICE);
    assert_eq!(ledger.expect(&input, &alice, DType::Uint8, &[16]), Expectation::NotYet, "no run 1 yet");
    begin(&mut ledger, ALICE, 1, 1, 10, t0).unwrap();
    assert_eq!(ledger.expect(&input, &alice, DType::Uint8, &[16]), Expectation::Accept);
    let refused = |e: Expectation| matches!(e, Expectation::Refuse(_));
    assert!(refused(ledger.expect(&input, &alice, DType::Float32, &[4])), "another dtype");
    assert!(refused(ledger.expect(&input, &alice, DType::Uint8, &[1 << 40])), "another shape");
    let other_transfer = Purpose::Input { run: 1, transfer: 7 };
    assert!(refused(ledger.expect(&other_transfer, &alice, DType::Uint8, &[16])), "no such transfer");
    // Bob cannot feed Alice's run: his run 1 does not exist.
    assert_eq!(ledger.expect(&input, &Sender::Client(BOB), DType::Uint8, &[16]), Expectation::NotYet);
    // A worker cannot send a client's input, nor a client an activation.
    assert!(refused(ledger.expect(&input, &Sender::Peer("sha256:ab".into()), DType::Uint8, &[16])));
    let activation = Purpose::Activation { client: ALICE, run: 1, transfer: 0 };
    assert!(refused(ledger.expect(&activation, &alice, DType::Uint8, &[16])));
    // Nor may anyone stream what goes the other way.
    let output = Purpose::Output { run: 1, transfer: 0 };
    assert!(refused(ledger.expect(&output, &alice, DType::Uint8, &[16])));
    ledger.end_run(ALICE, 1, 10, None, t0);
    assert_eq!(ledger.expect(&input, &alice, DType::Uint8, &[16]), Expectation::NotYet, "the run ended");
}

#[test]
fn an_activation_is_accepted_only_over_the_pinned_peer_certificate() {
    let t0 = Instant::now();
    let mut p = plan(&[("a", 10)], 0, 16);
    p.entries[0].transfers[0].from = "w1".into();
    p.entries[0].plans[0].steps = vec![Step::Recv { tensor: X, from: "w1".into(), transfer: 0 }];
    let peer =
        PeerInfo { device: "w1".into(), address: "10.0.0.2:4433".into(), fingerprint: "sha256:AB".into(), client: 9 };
    let mut ledger = ledger_with(config(None, 0), &[ALICE], t0);
    let sizes = weight_sizes(&p);
    for h in ledger.load_program(ALICE, 1, DEVICE.into(), p, vec![peer], NONCE, t0).unwrap().prove {
        ledger.insert_weight(h.clone(), Blob(sizes[&h]), Some(ALICE), t0);
    }
    assert!(ledger.try_ready(ALICE, 1).unwrap().is_empty());
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    begin(&mut ledger, ALICE, 1, 1, 10, t0).unwrap();
    let activation = Purpose::Activation { client: ALICE, run: 1, transfer: 0 };
    let from = |fingerprint: &str| ledger.expect(&activation, &Sender::Peer(fingerprint.into()), DType::Uint8, &[16]);
    assert_eq!(from("sha256:ab"), Expectation::Accept, "fingerprints compare without case");
    assert!(matches!(from("sha256:cd"), Expectation::Refuse(_)), "another worker's certificate");
    // The client cannot send what the plan says w1 sends.
    let input = Purpose::Input { run: 1, transfer: 0 };
    let err = ledger.expect(&input, &Sender::Client(ALICE), DType::Uint8, &[16]);
    assert_eq!(err, Expectation::Refuse("transfer 0 comes from w1, not the client".into()));
}

#[test]
fn a_per_op_call_expects_exactly_the_inputs_it_declared() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(Some(100), 0), &[ALICE, BOB], t0);
    ledger.begin_op(ALICE, 5, vec![Some((DType::Float32, vec![2, 2])), None], 32).unwrap();
    let input = |index| Purpose::OpInput { call: 5, index };
    let alice = Sender::Client(ALICE);
    assert_eq!(ledger.expect(&input(0), &alice, DType::Float32, &[2, 2]), Expectation::Accept);
    assert!(matches!(ledger.expect(&input(0), &alice, DType::Float32, &[4, 4]), Expectation::Refuse(_)));
    assert!(matches!(ledger.expect(&input(1), &alice, DType::Float32, &[2, 2]), Expectation::Refuse(_)), "a weight");
    assert!(matches!(ledger.expect(&input(2), &alice, DType::Float32, &[2, 2]), Expectation::Refuse(_)));
    assert_eq!(ledger.expect(&input(0), &Sender::Client(BOB), DType::Float32, &[2, 2]), Expectation::NotYet);
    // What it reserved counts against the memory until it ends.
    let message = out_of_memory(ledger.begin_op(BOB, 1, Vec::new(), 69));
    assert!(message.contains("32 B to calls in flight"), "{message}");
    ledger.end_op(ALICE, 5);
    ledger.begin_op(BOB, 1, Vec::new(), 69).expect("Alice's call ended");
    assert_eq!(ledger.expect(&input(0), &alice, DType::Float32, &[2, 2]), Expectation::NotYet);
}

#[test]
fn each_client_is_held_to_its_limits() {
    let t0 = Instant::now();
    let mut limited = config(None, 0);
    limited.limits = Limits { programs: 2, sessions: 2, calls: 1, memory: None };
    let mut ledger = ledger_with(limited, &[ALICE, BOB], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0);
    load_ready(&mut ledger, ALICE, 2, plan(&[("a", 10)], 0, 0), t0);
    let err = load(&mut ledger, ALICE, 3, plan(&[("a", 10)], 0, 0), t0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::LimitReached);
    assert_eq!(err.message, "this client already has 2 programs on this worker (the limit is 2)");
    load(&mut ledger, ALICE, 2, plan(&[("a", 10)], 0, 0), t0).expect("loading a program again is no new program");
    load_ready(&mut ledger, BOB, 1, plan(&[("b", 10)], 0, 0), t0);
    assert_eq!(ledger.open_session(ALICE, 1, 10, t0).unwrap().sessions_before, 0);
    assert_eq!(ledger.open_session(ALICE, 1, 11, t0).unwrap().sessions_before, 1);
    assert_eq!(ledger.open_session(ALICE, 1, 12, t0).unwrap_err().kind, ErrorKind::LimitReached);
    let again = ledger.open_session(ALICE, 1, 11, t0).expect("a retried open is no new session");
    assert_eq!(again.sessions_before, 1, "a retried open gives the session's rank, not counting itself");
    let bobs = ledger.open_session(BOB, 1, 10, t0).expect("Bob has his own limits");
    assert_eq!(bobs.sessions_before, 2, "every client's sessions count: they are the worker's load");
    assert_eq!(ledger.open_session(BOB, 1, 10, t0).unwrap().sessions_before, 2);
    ledger.close_session(ALICE, 10).unwrap();
    assert_eq!(ledger.open_session(BOB, 1, 10, t0).unwrap().sessions_before, 1, "one opened before it is gone");
    assert_eq!(ledger.open_session(ALICE, 1, 11, t0).unwrap().sessions_before, 0);
    ledger.open_session(ALICE, 1, 10, t0).expect("reopened");
    assert_eq!(ledger.open_session(ALICE, 1, 10, t0).unwrap().sessions_before, 2, "now the latest");
    begin(&mut ledger, ALICE, 1, 1, 10, t0).unwrap();
    assert_eq!(begin(&mut ledger, ALICE, 2, 1, 11, t0).unwrap_err().kind, ErrorKind::LimitReached);
    assert_eq!(ledger.begin_op(ALICE, 1, Vec::new(), 0).unwrap_err().kind, ErrorKind::LimitReached);
    begin(&mut ledger, BOB, 1, 1, 10, t0).expect("Bob's calls are his own");
    ledger.end_run(ALICE, 1, 10, None, t0);
    begin(&mut ledger, ALICE, 2, 1, 11, t0).expect("a call ended");
}

#[test]
fn a_client_resumes_its_identity_only_with_its_ticket() {
    let t0 = Instant::now();
    let mut ledger = Ledger::<Blob>::new(config(None, 0));
    let err = load(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownClient, "no Hello, no loads");
    assert_eq!(ledger.admit_client(None, identity(ALICE), t0).unwrap(), identity(ALICE));
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0);
    let forged = Resume { client: ALICE, ticket: HexBytes(vec![0; 8]) };
    assert_eq!(ledger.admit_client(Some(&forged), identity(BOB), t0).unwrap_err().kind, ErrorKind::UnknownClient);
    let unknown = identity(0x5eed);
    assert_eq!(ledger.admit_client(Some(&unknown), identity(BOB), t0).unwrap_err().kind, ErrorKind::UnknownClient);
    let resumed = ledger.admit_client(Some(&identity(ALICE)), identity(BOB), t0).unwrap();
    assert_eq!(resumed, identity(ALICE), "the old id, not the fresh one");
    assert_eq!(ledger.open_session(ALICE, 1, 10, t0).map(|_| ()), Ok(()), "its programs are still there");
    let err = ledger.admit_client(None, identity(ALICE), t0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest, "a fresh id never takes over a known one");
}

#[test]
fn a_busy_session_refuses_a_second_call_and_keeps_its_state_between_calls() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(None, 0), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    let ticket = ledger.begin_run(ALICE, 1, 1, 10, "step", &Bindings::new(), t0).unwrap();
    assert_eq!((ticket.device.as_str(), ticket.entry_index), (DEVICE, 0));
    assert_eq!(ticket.weights, vec![(hash("a"), Blob(10))], "the device's resident weights");
    assert!(ticket.state.is_empty());
    assert_eq!(begin(&mut ledger, ALICE, 2, 1, 10, t0).unwrap_err().kind, ErrorKind::SessionBusy);
    assert_eq!(ledger.close_session(ALICE, 10), Ok(Some(1)), "closing names the run to cancel");
    ledger.end_run(ALICE, 1, 10, None, t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    begin(&mut ledger, ALICE, 2, 1, 10, t0).unwrap();
    ledger.end_run(ALICE, 2, 10, Some(BTreeMap::from([(0, Blob(64))])), t0);
    // A failed call leaves the state as the last successful one wrote it.
    begin(&mut ledger, ALICE, 3, 1, 10, t0).expect("free again");
    ledger.end_run(ALICE, 3, 10, None, t0);
    let ticket = ledger.begin_run(ALICE, 4, 1, 10, "step", &Bindings::new(), t0).unwrap();
    assert_eq!(ticket.state, BTreeMap::from([(0, Blob(64))]));
    assert_eq!(ledger.stats().state_bytes, 64);
    let err = ledger.begin_run(ALICE, 5, 1, 10, "decode", &Bindings::new(), t0).err().unwrap();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::BadRequest, "the program has no entry `decode`"));
}

#[test]
fn a_session_of_another_program_is_refused() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(None, 0), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0);
    load_ready(&mut ledger, ALICE, 2, plan(&[("b", 10)], 0, 0), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    let err = begin(&mut ledger, ALICE, 1, 2, 10, t0).unwrap_err();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::BadRequest, "session 10 is of another program"));
    let err = ledger.open_session(ALICE, 2, 10, t0).unwrap_err();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::BadRequest, "session 10 already exists"));
}

#[test]
fn reopening_a_session_is_idempotent() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(Some(1000), 0), &[ALICE], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 100)], 300, 0), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    begin(&mut ledger, ALICE, 1, 1, 10, t0).unwrap();
    ledger.end_run(ALICE, 1, 10, Some(BTreeMap::from([(0, Blob(64))])), t0);
    ledger.open_session(ALICE, 1, 10, t0).expect("a retried open succeeds");
    let stats = ledger.stats();
    assert_eq!((stats.sessions, stats.committed_bytes, stats.state_bytes), (1, 400, 64), "reserved once, state kept");
}

#[test]
fn one_client_cannot_name_anothers_programs_or_sessions() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(None, 0), &[ALICE, BOB], t0);
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    assert_eq!(ledger.open_session(BOB, 1, 11, t0).unwrap_err().kind, ErrorKind::UnknownProgram);
    assert_eq!(begin(&mut ledger, BOB, 1, 1, 10, t0).unwrap_err().kind, ErrorKind::UnknownProgram);
    assert_eq!(ledger.close_session(BOB, 10).unwrap_err().kind, ErrorKind::UnknownSession);
    assert_eq!(ledger.unload_program(BOB, 1).unwrap_err().kind, ErrorKind::UnknownProgram);
    assert!(ledger.proof_targets(BOB, 1, &[hash("a")]).is_err(), "nor prove against them");
    assert_eq!(ledger.stats().sessions, 1, "Alice's session is untouched");
}

#[test]
fn an_upload_is_admitted_once_at_the_size_its_type_gives() {
    let t0 = Instant::now();
    let mut ledger = ledger_with(config(Some(150), 0), &[ALICE], t0);
    load(&mut ledger, ALICE, 1, plan(&[("a", 100)], 0, 50), t0).unwrap();
    let err = ledger.admit_upload(ALICE, &hash("a"), 1 << 40).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert_eq!(err.message, "weight a is 100 B by its type, the upload says 1099511627776 B");
    // The first upload was admitted with the load; a second copy at the same time needs room
    // of its own, which a budget of exactly the load does not have.
    let (first, _) = ledger.admit_upload(ALICE, &hash("a"), 100).expect("admitted with the load");
    assert_eq!(ledger.memory_use().total(), 100);
    out_of_memory(ledger.admit_upload(ALICE, &hash("a"), 100));
    ledger.upload_done(first);
    let (again, _) = ledger.admit_upload(ALICE, &hash("a"), 100).expect("the first one ended");
    ledger.insert_weight(hash("a"), Blob(100), Some(ALICE), t0);
    ledger.upload_done(again);
    assert_eq!(ledger.memory_use().total(), 100, "the weight counted once");
    out_of_memory(ledger.admit_upload(ALICE, &hash("a"), 100));
}

#[test]
fn each_client_is_held_to_its_share_of_the_memory() {
    let t0 = Instant::now();
    let mut shared = config(Some(10_000), 0);
    shared.limits.memory = Some(500);
    let mut ledger = ledger_with(shared, &[ALICE, BOB], t0);
    // 300 of weights and a 100-byte run: within 500. A second program's 200 more is not.
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 300)], 50, 100), t0);
    let err = load(&mut ledger, ALICE, 2, plan(&[("b", 200)], 0, 10), t0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::LimitReached);
    assert_eq!(err.message, "program 2 needs 200 B of weights and 10 B for a run; this client holds 300 B of its 500 B share of this worker's memory");
    // A program sharing Alice's weight adds nothing for it.
    load_ready(&mut ledger, ALICE, 3, plan(&[("a", 300)], 0, 100), t0);
    // Sessions and runs count too: 300 + 50 + 50 = 400, and a run's 100 fills the share.
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    ledger.open_session(ALICE, 1, 11, t0).unwrap();
    begin(&mut ledger, ALICE, 1, 1, 10, t0).unwrap();
    assert_eq!(begin(&mut ledger, ALICE, 2, 1, 11, t0).unwrap_err().kind, ErrorKind::LimitReached);
    let upload = ledger.admit_upload(ALICE, &hash("z"), 1);
    assert_eq!(upload.unwrap_err().kind, ErrorKind::LimitReached, "an upload counts against the share too");
    // Bob has a share of his own.
    load_ready(&mut ledger, BOB, 1, plan(&[("b", 200), ("c", 200)], 0, 100), t0);
    ledger.end_run(ALICE, 1, 10, None, t0);
    begin(&mut ledger, ALICE, 2, 1, 11, t0).expect("run 1 ended");
}

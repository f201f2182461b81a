//! The ledger's decisions on plain data: byte counts for tensors, simulated instants for time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use genie_codegen::{DeviceInfo, DevicePlan, EntryPlan, ProgramPlan, ResidentWeight, TensorInfo, TensorKind};
use genie_ir::{DType, Phase, TensorType, ValueId, WeightHash};

use super::{Evicted, Ledger, LedgerConfig, Payload};
use crate::exec::Bindings;
use crate::wire::{ErrorKind, RemoteError};

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

fn config(memory_bytes: Option<u64>, weight_cache_bytes: u64) -> LedgerConfig {
    LedgerConfig {
        device_label: "cpu".into(),
        memory_bytes,
        weight_cache_bytes,
        session_idle_timeout: Duration::from_secs(10),
    }
}

fn hash(name: &str) -> WeightHash {
    WeightHash(name.to_string())
}

/// A one-entry plan (`step`) whose device `w0` reads `weights` (name, bytes), reserves `kv`
/// bytes per session and peaks at `activations`.
fn plan(weights: &[(&str, u64)], kv: u64, activations: u64) -> ProgramPlan {
    let tensors = weights
        .iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            let info = TensorInfo {
                name: name.to_string(),
                ty: TensorType::new(DType::Uint8, &[*bytes as i64]),
                kind: TensorKind::Weight { hash: hash(name) },
                residency: None,
                bytes: *bytes,
            };
            (ValueId(i as u32), info)
        })
        .collect();
    let steps = DevicePlan { device: DEVICE.into(), steps: Vec::new(), activation_peak_bytes: activations };
    let entry = EntryPlan {
        name: "step".into(),
        phase: Phase::Unknown,
        symbols: Vec::new(),
        tensors,
        inputs: Vec::new(),
        outputs: Vec::new(),
        transfers: Vec::new(),
        plans: vec![steps],
        bytes_per_call: 0,
        hops: 0,
        estimate: None,
    };
    let weight_bytes = weights.iter().map(|w| w.1).sum();
    let device = DeviceInfo {
        name: DEVICE.into(),
        kind: "cpu".into(),
        memory_bytes: 0,
        weights: weights
            .iter()
            .map(|(name, bytes)| ResidentWeight { hash: hash(name), bytes: *bytes, name: name.to_string() })
            .collect(),
        weight_bytes,
        slots: Vec::new(),
        kv_bytes: kv,
        activation_bytes: activations,
        peak_bytes: weight_bytes + kv + activations,
        nodes: 0,
    };
    ProgramPlan {
        version: 1,
        program: "test".into(),
        policy: None,
        max_seq: None,
        devices: vec![device],
        state_slots: Vec::new(),
        entries: vec![entry],
    }
}

/// Load `p` for `client` and upload its weights, so that it is ready.
fn load_ready(ledger: &mut Ledger<Blob>, client: u64, program: u64, p: ProgramPlan, now: Instant) {
    let sizes: BTreeMap<WeightHash, u64> = p.devices[0].weights.iter().map(|w| (w.hash.clone(), w.bytes)).collect();
    let loaded = ledger.load_program(client, program, DEVICE.into(), p, Vec::new(), now).expect("the load fits");
    for h in loaded.missing {
        ledger.insert_weight(h.clone(), Blob(sizes[&h]), now);
    }
    assert_eq!(ledger.try_ready(client, program).unwrap(), Vec::<WeightHash>::new());
}

fn begin(ledger: &mut Ledger<Blob>, client: u64, program: u64, session: u64, now: Instant) -> Result<(), RemoteError> {
    ledger.begin_run(client, program, session, "step", &Bindings::new(), now).map(|_| ())
}

fn out_of_memory(result: Result<impl std::fmt::Debug, RemoteError>) -> String {
    let err = result.expect_err("refused for memory");
    assert_eq!(err.kind, ErrorKind::OutOfMemory, "{err:?}");
    err.message
}

#[test]
fn a_load_beyond_the_budget_is_refused_naming_its_sizes() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(config(Some(1000), 0));
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 600)], 0, 300), t0);
    // 600 + 300 committed: 200 more bytes of weights do not fit in 1000.
    let refused = ledger.load_program(ALICE, 2, DEVICE.into(), plan(&[("b", 200)], 0, 100), Vec::new(), t0);
    let message = out_of_memory(refused);
    assert!(message.contains("program 2 needs 200 B of weights"), "{message}");
    assert!(message.contains("has 1000 B of memory, of which 900 B is committed"), "{message}");
    assert!(message.contains("600 B to loaded programs' weights"), "{message}");
    let stats = ledger.stats();
    assert_eq!((stats.programs, stats.committed_bytes, stats.refused_for_memory), (1, 900, 1));
    // Loading the same program again counts its own weights once: it still fits.
    ledger.load_program(ALICE, 1, DEVICE.into(), plan(&[("a", 600)], 0, 300), Vec::new(), t0).unwrap();
}

#[test]
fn a_session_beyond_the_budget_is_refused_naming_its_reservation() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(config(Some(900), 0));
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 500)], 200, 100), t0);
    ledger.open_session(ALICE, 1, 10, t0).expect("800 of 900");
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
    // Both programs fit only if the shared 600 bytes count once: 600 + 100 + 100 + 50.
    let mut ledger = Ledger::new(config(Some(850), 0));
    load_ready(&mut ledger, ALICE, 1, plan(&[("shared", 600), ("a", 100)], 0, 50), t0);
    let loaded =
        ledger.load_program(BOB, 1, DEVICE.into(), plan(&[("shared", 600), ("b", 100)], 0, 50), Vec::new(), t0);
    assert_eq!(loaded.expect("the shared weight is already admitted").missing, vec![hash("b")]);
    let using = ledger.memory_use();
    assert_eq!((using.weights, using.total()), (800, 850));
}

#[test]
fn eviction_drops_least_recently_used_unpinned_weights_down_to_the_cache_size() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut ledger = Ledger::new(config(None, 200));
    // The pinned weight is the oldest and the largest: still never evicted.
    load_ready(&mut ledger, ALICE, 1, plan(&[("pinned", 500)], 0, 0), at(0));
    ledger.insert_weight(hash("x"), Blob(100), at(1));
    ledger.insert_weight(hash("y"), Blob(100), at(2));
    ledger.insert_weight(hash("z"), Blob(100), at(3));
    let report = ledger.sweep(at(4));
    assert_eq!(report.evicted, vec![Evicted { hash: hash("x"), bytes: 100 }]);
    assert!(ledger.has_weight(&hash("pinned")) && ledger.has_weight(&hash("y")) && ledger.has_weight(&hash("z")));
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
    let mut ledger = Ledger::new(config(Some(1000), 10_000));
    load_ready(&mut ledger, ALICE, 1, plan(&[("pinned", 600)], 0, 100), at(0));
    ledger.insert_weight(hash("x"), Blob(200), at(1));
    ledger.insert_weight(hash("y"), Blob(200), at(2));
    // 700 committed leaves 300 for the cache, far below its own limit.
    assert_eq!(ledger.sweep(at(3)).evicted, vec![Evicted { hash: hash("x"), bytes: 200 }]);
    // An upload no program needs evicts to make room, or is refused when it cannot fit at all.
    let evicted = ledger.make_room_for_weight(&hash("w"), 250).expect("y makes room");
    assert_eq!(evicted, vec![Evicted { hash: hash("y"), bytes: 200 }]);
    let message = out_of_memory(ledger.make_room_for_weight(&hash("big"), 301));
    assert!(message.contains("no room for weight big (301 B)"), "{message}");
    assert_eq!(ledger.stats().refused_for_memory, 1);
}

#[test]
fn the_idle_sweep_frees_idle_sessions_but_keeps_a_busy_one() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut ledger = Ledger::new(config(None, 0));
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), at(0));
    ledger.open_session(ALICE, 1, 10, at(0)).unwrap();
    ledger.open_session(ALICE, 1, 11, at(0)).unwrap();
    begin(&mut ledger, ALICE, 1, 11, at(0)).unwrap();
    assert!(ledger.sweep(at(5)).freed_sessions.is_empty(), "nothing is idle for 10 s yet");
    let report = ledger.sweep(at(11));
    assert_eq!(report.freed_sessions, vec![(ALICE, 10)], "the busy session stays");
    ledger.end_run(ALICE, 11, None, at(11));
    assert!(ledger.sweep(at(15)).freed_sessions.is_empty(), "used at 11 s");
    assert_eq!(ledger.sweep(at(21)).freed_sessions, vec![(ALICE, 11)]);
    assert_eq!(ledger.stats().sessions, 0);
}

#[test]
fn a_departed_clients_programs_are_unloaded_after_the_idle_timeout_with_no_sessions_left() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut ledger = Ledger::new(config(None, 0));
    // Alice leaves with no session; Bob leaves with a session running a call; Carol stays.
    let carol = 0xca201;
    for client in [ALICE, BOB, carol] {
        ledger.client_connected(client, at(0));
        load_ready(&mut ledger, client, 1, plan(&[("a", 10)], 0, 0), at(0));
    }
    ledger.open_session(BOB, 1, 10, at(0)).unwrap();
    begin(&mut ledger, BOB, 1, 10, at(0)).unwrap();
    ledger.client_disconnected(ALICE, at(1));
    ledger.client_disconnected(BOB, at(1));

    assert!(ledger.sweep(at(10)).unloaded_programs.is_empty(), "gone 9 s, less than the timeout");
    let report = ledger.sweep(at(11));
    assert_eq!(report.unloaded_programs, vec![(ALICE, 1)], "Bob still has a session");
    assert_eq!(report.departed_clients, vec![ALICE]);
    ledger.end_run(BOB, 10, None, at(11));
    assert!(ledger.sweep(at(20)).unloaded_programs.is_empty(), "Bob's session was used at 11 s");
    let report = ledger.sweep(at(21));
    assert_eq!((report.freed_sessions, report.unloaded_programs), (vec![(BOB, 10)], vec![(BOB, 1)]));
    // A client that comes back before the timeout keeps its programs.
    ledger.client_disconnected(carol, at(21));
    ledger.client_connected(carol, at(25));
    assert!(ledger.sweep(at(100)).unloaded_programs.is_empty());
    assert_eq!(ledger.stats().programs, 1);
}

#[test]
fn a_program_is_ready_once_its_missing_weights_arrive() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(config(None, 0));
    let loaded = ledger.load_program(ALICE, 1, DEVICE.into(), plan(&[("a", 10), ("b", 20)], 0, 0), Vec::new(), t0);
    assert_eq!(loaded.unwrap().missing, vec![hash("a"), hash("b")]);
    assert_eq!(ledger.open_session(ALICE, 1, 10, t0).unwrap_err().kind, ErrorKind::UnknownProgram, "not ready");
    ledger.insert_weight(hash("a"), Blob(10), t0);
    assert_eq!(ledger.try_ready(ALICE, 1).unwrap(), vec![hash("b")]);
    assert_eq!(ledger.open_session(ALICE, 1, 10, t0).unwrap_err().kind, ErrorKind::UnknownProgram, "not ready");
    ledger.insert_weight(hash("b"), Blob(20), t0);
    assert!(ledger.try_ready(ALICE, 1).unwrap().is_empty());
    ledger.open_session(ALICE, 1, 10, t0).expect("ready");
    // Another program asks only for what is not resident yet.
    let loaded = ledger.load_program(BOB, 1, DEVICE.into(), plan(&[("b", 20), ("c", 5)], 0, 0), Vec::new(), t0);
    assert_eq!(loaded.unwrap().missing, vec![hash("c")]);
    assert_eq!(ledger.try_ready(BOB, 2).unwrap_err().kind, ErrorKind::UnknownProgram);
}

#[test]
fn a_busy_session_refuses_a_second_call_and_keeps_its_state_between_calls() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(config(None, 0));
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    let ticket = ledger.begin_run(ALICE, 1, 10, "step", &Bindings::new(), t0).unwrap();
    assert_eq!((ticket.device.as_str(), ticket.entry_index), (DEVICE, 0));
    assert_eq!(ticket.weights, vec![(hash("a"), Blob(10))], "the device's resident weights");
    assert!(ticket.state.is_empty());
    assert_eq!(begin(&mut ledger, ALICE, 1, 10, t0).unwrap_err().kind, ErrorKind::SessionBusy);
    ledger.end_run(ALICE, 10, Some(BTreeMap::from([(0, Blob(64))])), t0);
    // A failed call leaves the state as the last successful one wrote it.
    begin(&mut ledger, ALICE, 1, 10, t0).expect("free again");
    ledger.end_run(ALICE, 10, None, t0);
    let ticket = ledger.begin_run(ALICE, 1, 10, "step", &Bindings::new(), t0).unwrap();
    assert_eq!(ticket.state, BTreeMap::from([(0, Blob(64))]));
    assert_eq!(ledger.stats().state_bytes, 64);
    let err = ledger.begin_run(ALICE, 1, 10, "decode", &Bindings::new(), t0).err().unwrap();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::BadRequest, "the program has no entry `decode`"));
}

#[test]
fn a_session_of_another_program_is_refused() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(config(None, 0));
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0);
    load_ready(&mut ledger, ALICE, 2, plan(&[("b", 10)], 0, 0), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    let err = begin(&mut ledger, ALICE, 2, 10, t0).unwrap_err();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::BadRequest, "session 10 is of another program"));
    let err = ledger.open_session(ALICE, 2, 10, t0).unwrap_err();
    assert_eq!((err.kind, err.message.as_str()), (ErrorKind::BadRequest, "session 10 already exists"));
}

#[test]
fn reopening_a_session_is_idempotent() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(config(Some(1000), 0));
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 100)], 300, 0), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    ledger.end_run(ALICE, 10, Some(BTreeMap::from([(0, Blob(64))])), t0);
    ledger.open_session(ALICE, 1, 10, t0).expect("a retried open succeeds");
    let stats = ledger.stats();
    assert_eq!((stats.sessions, stats.committed_bytes, stats.state_bytes), (1, 400, 64), "reserved once, state kept");
}

#[test]
fn one_client_cannot_name_anothers_programs_or_sessions() {
    let t0 = Instant::now();
    let mut ledger = Ledger::new(config(None, 0));
    load_ready(&mut ledger, ALICE, 1, plan(&[("a", 10)], 0, 0), t0);
    ledger.open_session(ALICE, 1, 10, t0).unwrap();
    assert_eq!(ledger.open_session(BOB, 1, 11, t0).unwrap_err().kind, ErrorKind::UnknownProgram);
    assert_eq!(begin(&mut ledger, BOB, 1, 10, t0).unwrap_err().kind, ErrorKind::UnknownProgram);
    assert_eq!(ledger.close_session(BOB, 10).unwrap_err().kind, ErrorKind::UnknownSession);
    assert_eq!(ledger.unload_program(BOB, 1).unwrap_err().kind, ErrorKind::UnknownProgram);
    assert_eq!(ledger.stats().sessions, 1, "Alice's session is untouched");
}

//! The seed corpora of the fuzz targets where untrusted bytes enter (`fuzz/corpus/<target>/`):
//! real frames, tensor headers, plans, programs, dims and tensor files. Every committed seed must
//! still be accepted by what its target fuzzes (a seed that no longer decodes teaches the fuzzer
//! nothing); `GENIE_BLESS=1` rewrites them from the bundled example and the fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use genie_codegen::{from_binary, from_ron, to_binary, to_ron, ProgramPlan};
use genie_ir::example::{gpt_pair, tiny_decoder_pair, GptShape};
use genie_ir::{Arg, Dim, Program, ValueId, WeightHash};
use genie_passes::placement::{schedule, ClusterSpec, PlacementOptions};
use genie_passes::PassManager;
use genie_wire::tensor_file::parse_safetensors;
use genie_wire::*;

const TARGETS: [&str; 5] = ["wire_frame", "plan_binary", "plan_ron", "dim_parse", "safetensors_inputs"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn placed_plan(mut program: Program, workers: usize) -> ProgramPlan {
    PassManager::standard().run(&mut program, None).expect("passes run");
    let options = PlacementOptions { max_seq: Some(16), ..Default::default() };
    let placement = schedule(&program, &ClusterSpec::local_workers(workers, 1 << 30), &options).expect("placed");
    placement.apply(&mut program);
    genie_codegen::generate(&program).expect("codegen")
}

/// `kind` (the target's first byte: 0 request, 1 reply, 3 Hello) and the length-prefixed frame.
fn frame<T: serde::Serialize>(kind: u8, id: u64, body: T) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(encode_frame(&Frame { id, body }).unwrap());
    out
}

fn tensor(header: TensorHeader) -> Vec<u8> {
    let mut out = vec![2];
    out.extend(encode_tensor_header(&header).unwrap());
    out
}

/// Every seed: (target, file name, bytes).
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let plan = placed_plan(tiny_decoder_pair().unwrap(), 2);
    let hash = WeightHash("a80021bf84ad7fec986960b5aef9699c908538409d9d9d101666e3fdc05caf28".into());

    let resume = Resume { client: 7, ticket: genie_ir::HexBytes(vec![0x5a; 32]) };
    let hellos = [
        ("client", Hello { version: PROTOCOL_VERSION, token: "secret".into(), role: Role::Client, resume: None }),
        (
            "resume",
            Hello {
                version: PROTOCOL_VERSION,
                token: "secret".into(),
                role: Role::Client,
                resume: Some(resume.clone()),
            },
        ),
        ("peer", Hello { version: PROTOCOL_VERSION, token: "secret".into(), role: Role::Peer, resume: None }),
    ];
    for (name, h) in hellos {
        out.push(("wire_frame", format!("hello_{name}"), frame(3, 0, h)));
    }
    let requests = [
        (
            "load_program",
            Request::LoadProgram {
                program: 1,
                device: "worker0".into(),
                plan: Box::new(plan.clone()),
                peers: vec![PeerInfo {
                    device: "worker1".into(),
                    address: "127.0.0.1:7071".into(),
                    fingerprint: format!("sha256:{}", "ab".repeat(32)),
                    client: 9,
                }],
            },
        ),
        (
            "prove_weights",
            Request::ProveWeights { program: 1, proofs: vec![(hash.clone(), genie_ir::HexBytes(vec![0x11; 32]))] },
        ),
        ("cancel_run", Request::CancelRun { run: 3 }),
        ("open_session", Request::OpenSession { program: 1, session: 2 }),
        (
            "run",
            Request::Run {
                run: 3,
                program: 1,
                session: 2,
                entry: "decode".into(),
                bindings: BTreeMap::from([("s0".to_string(), 5), ("s1".to_string(), 6)]),
                timeout_ms: 1000,
            },
        ),
        (
            "exec_op",
            Request::ExecOp {
                call: 4,
                op: "aten.view.default".into(),
                args: vec![
                    Arg::Tensor(ValueId(0)),
                    Arg::SymInts(vec![Dim::constant(1), Dim::parse("(s0 - 1)//2 + 1").unwrap()]),
                    Arg::Float(1.5),
                    Arg::Str("tanh".into()),
                ],
                inputs: vec![
                    OpInput::Sent { dtype: genie_ir::DType::Float32, shape: vec![2, 3] },
                    OpInput::Weight(hash.clone()),
                ],
                outputs: 1,
            },
        ),
        ("stats", Request::Stats),
        ("close_session", Request::CloseSession { session: 2 }),
    ];
    for (i, (name, r)) in requests.into_iter().enumerate() {
        out.push(("wire_frame", format!("request_{name}"), frame(0, i as u64, r)));
    }
    let replies = [
        (
            "welcome",
            Reply::Welcome {
                version: PROTOCOL_VERSION,
                device: "worker0".into(),
                worker: "w".into(),
                client: Some(resume),
                clock_us: 1_500_000,
            },
        ),
        (
            "prove_weights",
            Reply::ProveWeights { nonce: genie_ir::HexBytes(vec![0x22; 32]), hashes: vec![hash.clone()] },
        ),
        ("missing_weights", Reply::MissingWeights { hashes: vec![hash.clone()] }),
        (
            "run_done",
            Reply::RunDone {
                stats: RunStats {
                    wall_s: 0.5,
                    exec_s: 0.25,
                    bytes_sent: BTreeMap::from([("client".to_string(), 256)]),
                    bytes_received: BTreeMap::from([("worker1".to_string(), 128)]),
                    batch: 3,
                    spans: vec![TraceSpan {
                        track: "worker0→client".into(),
                        name: "send v7".into(),
                        start_us: 1_000,
                        dur_us: 20,
                        bytes: 256,
                    }],
                },
            },
        ),
        (
            "stats",
            Reply::Stats(WorkerStats { device: "worker0".into(), memory_bytes: Some(1 << 30), ..Default::default() }),
        ),
        ("error", Reply::Error(RemoteError::new(ErrorKind::OutOfMemory, "needs 2 GB, 1 GB free"))),
        ("session_opened", Reply::SessionOpened { sessions_before: 3 }),
    ];
    for (i, (name, r)) in replies.into_iter().enumerate() {
        out.push(("wire_frame", format!("reply_{name}"), frame(1, i as u64, r)));
    }
    let headers = [
        ("input", Purpose::Input { run: 3, transfer: 0 }, genie_ir::DType::Int64, vec![1, 8]),
        ("weight", Purpose::Weight { hash }, genie_ir::DType::Float32, vec![32, 16]),
        (
            "activation",
            Purpose::Activation { client: 7, run: 3, transfer: 1 },
            genie_ir::DType::Bfloat16,
            vec![1, 1, 16],
        ),
    ];
    for (name, purpose, dtype, shape) in headers {
        let byte_len = shape.iter().product::<i64>() as u64 * dtype.size_bytes();
        out.push(("wire_frame", format!("tensor_{name}"), tensor(TensorHeader { purpose, dtype, shape, byte_len })));
    }

    let one_worker = placed_plan(tiny_decoder_pair().unwrap(), 1);
    out.push(("plan_binary", "tiny_decoder_2_workers.plan".into(), to_binary(&plan).unwrap()));
    out.push(("plan_binary", "tiny_decoder_1_worker.plan".into(), to_binary(&one_worker).unwrap()));
    out.push(("plan_ron", "tiny_decoder_2_workers.plan.ron".into(), to_ron(&plan).unwrap().into_bytes()));
    let tiny = GptShape { layers: 1, width: 4, heads: 1, vocab: 4, positions: 4 };
    out.push(("plan_ron", "gpt_tiny.ron".into(), gpt_pair(tiny).unwrap().to_ron().unwrap().into_bytes()));

    let dims = [
        "s0",
        "s0 + 1",
        "2*s0 - 3",
        "(s0 - 1)//2 + 1",
        "s0*s1 + s2",
        "s0 % 3",
        "-s0 + 5",
        "768",
        "s0*((s1)//(2))",
        "(s0 + 1)**2",
        "-9223372036854775807*s0 - s0",
    ];
    for (i, d) in dims.iter().enumerate() {
        out.push(("dim_parse", format!("dim_{i:02}"), d.as_bytes().to_vec()));
    }

    for fixture in ["bert/model", "edge/model", "llama/prefill", "gpt2/decode"] {
        let path = root().join("testsuite/fixtures").join(format!("{fixture}.inputs.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push(("safetensors_inputs", fixture.replace('/', "_") + ".inputs.safetensors", bytes));
    }
    out
}

/// What `target` fuzzes accepts `bytes`.
fn accepted(target: &str, bytes: &[u8]) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match target {
        "wire_frame" => {
            let (&kind, rest) = bytes.split_first().ok_or("empty")?;
            if kind == 2 {
                let len = tensor_header_len(rest[..8].try_into().unwrap()).map_err(|x| e(&x))?;
                decode_tensor_header(&rest[8..8 + len], 1 << 30).map(drop).map_err(|x| e(&x))
            } else {
                let max = if kind == 3 { MAX_HELLO_FRAME } else { MAX_CONTROL_FRAME };
                let len = frame_len_within(rest[..4].try_into().unwrap(), max).map_err(|x| e(&x))?;
                let body = rest.get(4..4 + len).ok_or("short frame")?;
                match kind {
                    0 => decode_frame::<Request>(body).map(drop).map_err(|x| e(&x)),
                    3 => decode_frame::<Hello>(body).map(drop).map_err(|x| e(&x)),
                    _ => decode_frame::<Reply>(body).map(drop).map_err(|x| e(&x)),
                }
            }
        }
        "plan_binary" => from_binary(bytes).map(drop).map_err(|x| e(&x)),
        "plan_ron" => {
            let text = std::str::from_utf8(bytes).map_err(|x| e(&x))?;
            match from_ron(text) {
                Ok(_) => Ok(()),
                Err(_) => Program::from_ron(text).map(drop).map_err(|x| e(&x)),
            }
        }
        "dim_parse" => Dim::parse(std::str::from_utf8(bytes).map_err(|x| e(&x))?).map(drop).map_err(|x| e(&x)),
        "safetensors_inputs" => parse_safetensors(bytes).map(drop).map_err(|x| e(&x)),
        other => Err(format!("unknown target {other}")),
    }
}

#[test]
fn fuzz_seeds_are_accepted_by_their_targets() {
    let corpus = root().join("fuzz/corpus");
    if std::env::var_os("GENIE_BLESS").is_some() {
        for target in TARGETS {
            let dir = corpus.join(target);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (target, name, bytes) in seeds() {
            std::fs::write(corpus.join(target).join(name), bytes).unwrap();
        }
    }
    for target in TARGETS {
        let dir = corpus.join(target);
        let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; rerun with GENIE_BLESS=1", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(entries.len() >= 2, "{target} has {} seeds; rerun with GENIE_BLESS=1", entries.len());
        for path in entries {
            let bytes = std::fs::read(&path).unwrap();
            if let Err(e) = accepted(target, &bytes) {
                panic!("seed {} is no longer accepted ({e}); rerun with GENIE_BLESS=1", path.display());
            }
        }
    }
}

/// The generator itself makes seeds the targets accept (so blessing cannot write bad seeds).
#[test]
fn generated_seeds_are_accepted() {
    for (target, name, bytes) in seeds() {
        assert!(TARGETS.contains(&target));
        accepted(target, &bytes).unwrap_or_else(|e| panic!("{target}/{name}: {e}"));
    }
}

//! The wire protocol: every message and header that crosses a connection, and how each is
//! framed. This is the one place the protocol is defined; worker and client only speak it.
//!
//! A connection carries:
//! - one **control stream** (bidirectional, opened by the connecting side). Each frame is a
//!   little-endian `u32` length then a [`Frame`] encoded with `genie_codegen::binary` (tagged,
//!   bounded). The first frame is a [`Hello`] of at most [`MAX_HELLO_FRAME`] bytes, the only
//!   thing a worker decodes before authentication; after its [`Reply::Welcome`], requests carry
//!   an id and replies answer that id, possibly out of order (many runs share one connection).
//! - **tensor streams** (unidirectional, one per tensor, either direction). Each starts with the
//!   magic `GTNS`, a `u32` header length and a [`TensorHeader`]; then exactly `byte_len` raw
//!   little-endian bytes, which the receiver reads straight into the destination tensor.
//!
//! Every length read off the wire is checked against a bound before anything is allocated.
//!
//! This crate links no libtorch, so fuzzers and tch-free tools reach the protocol; the runtime
//! re-exports it as `genie_runtime::wire`. [`tensor_file`] reads the safetensors files users
//! hand to `genie run`, with the same distrust.

pub mod tensor_file;

use std::collections::BTreeMap;

use genie_codegen::ProgramPlan;
use genie_ir::{DType, WeightHash};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to a message or header (7: `RunStats::batch`; 8:
/// `SessionOpened`, plans of format 5, which `LoadProgram` carries).
pub const PROTOCOL_VERSION: u32 = 8;

/// The largest control frame (plans of big models are the largest messages).
pub const MAX_CONTROL_FRAME: u32 = 64 << 20;

/// The largest first frame, the [`Hello`]: what a worker reads from anyone before knowing who
/// they are.
pub const MAX_HELLO_FRAME: u32 = 4 << 10;

/// The largest tensor header.
pub const MAX_TENSOR_HEADER: u32 = 64 << 10;

/// The most dimensions a tensor on the wire may have.
pub const MAX_RANK: usize = 16;

/// First bytes of every tensor stream.
pub const TENSOR_MAGIC: [u8; 4] = *b"GTNS";

/// A client's identity on one worker, assigned by that worker at its first Hello; sessions,
/// programs and runs are owned by it. A client that reconnects resumes it with its [`Ticket`].
pub type ClientId = u64;

/// The secret that resumes a [`ClientId`] on a new connection (a worker hands it out with the
/// id and never accepts the id without it).
pub type Ticket = genie_ir::HexBytes;

/// A nonce or a keyed hash: 32 bytes.
pub type Digest = genie_ir::HexBytes;

/// The first frame of every connection, and the only thing decoded before authentication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// The cluster's token.
    pub token: String,
    pub role: Role,
    /// A client reconnecting: the id and ticket an earlier Welcome gave it.
    pub resume: Option<Resume>,
}

/// An identity to resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub client: ClientId,
    pub ticket: Ticket,
}

/// Who is connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A user's client: loads programs, opens sessions, runs entries.
    Client,
    /// Another worker delivering activations at a cut.
    Peer,
}

/// A control-stream frame: a request or reply with the id that pairs them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frame<T> {
    pub id: u64,
    pub body: T,
}

/// Where a worker finds another device of the same plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The device name in the plan (`w1`).
    pub device: String,
    /// `host:port`.
    pub address: String,
    /// The peer's certificate fingerprint (`sha256:…`): pinned when this worker connects to it,
    /// and the only certificate an activation from that device is accepted over.
    pub fingerprint: String,
    /// The client's id on that peer (activations for the client's runs there are tagged so).
    pub client: ClientId,
}

/// Client → worker, after the [`Hello`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Install a program: the whole plan, the device this worker plays, and its peers. Answered
    /// by [`Reply::ProveWeights`]: the weights the client must show it holds.
    LoadProgram { program: u64, device: String, plan: Box<ProgramPlan>, peers: Vec<PeerInfo> },
    /// The proofs asked for by [`Reply::ProveWeights`]: per weight, the keyed BLAKE3 hash of its
    /// bytes under the nonce (see [`weight_proof`]); a weight left out is to be uploaded.
    /// Answered by [`Reply::MissingWeights`].
    ProveWeights { program: u64, proofs: Vec<(WeightHash, Digest)> },
    /// All missing weights were sent; answered by [`Reply::Ok`] once every weight the device
    /// needs is resident, or an error naming what is still missing.
    WeightsUploaded { program: u64 },
    /// Open a session of a loaded program (its state slots start empty).
    OpenSession { program: u64, session: u64 },
    /// Run this worker's part of one call. Inputs arrive on tensor streams tagged with `run`.
    Run { run: u64, program: u64, session: u64, entry: String, bindings: BTreeMap<String, i64>, timeout_ms: u64 },
    /// Free a session and its state.
    CloseSession { session: u64 },
    /// Forget a program (its weights stay cached while another program uses them).
    UnloadProgram { program: u64 },
    /// Execute one op (per-op remoting, the baseline `genie bench` compares with). Tensor
    /// arguments arrive on tensor streams tagged `OpInput { op_call }`, or name cached weights.
    ExecOp { call: u64, op: String, args: Vec<genie_ir::Arg>, inputs: Vec<OpInput>, outputs: u32 },
    /// Stop a run of this client that is still executing (its session is freed for the next
    /// call; what it may have written to its state is dropped).
    CancelRun { run: u64 },
    /// Counters and resident sizes.
    Stats,
    /// The client is done with this connection.
    Close,
}

impl Request {
    /// The request's kind, as errors and the `genie_requests_total{kind}` metric name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::LoadProgram { .. } => "load",
            Request::ProveWeights { .. } => "prove_weights",
            Request::WeightsUploaded { .. } => "weights_uploaded",
            Request::OpenSession { .. } => "open_session",
            Request::Run { .. } => "run",
            Request::CancelRun { .. } => "cancel_run",
            Request::CloseSession { .. } => "close_session",
            Request::UnloadProgram { .. } => "unload",
            Request::ExecOp { .. } => "exec_op",
            Request::Stats => "stats",
            Request::Close => "close",
        }
    }
}

/// A tensor argument of [`Request::ExecOp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpInput {
    /// Sent with this call on a tensor stream (`Purpose::OpInput { call, index }`): its type
    /// (so the worker can size the op before any byte arrives).
    Sent { dtype: DType, shape: Vec<i64> },
    /// A weight resident on the worker that this client uploaded or proved it holds.
    Weight(WeightHash),
}

/// The proof that a client holds a weight's bytes: BLAKE3 keyed by the worker's fresh nonce
/// over the bytes, so it can be made only by reading them, and only for this nonce.
pub fn weight_proof(nonce: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(nonce, bytes).as_bytes()
}

/// Worker → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Ok,
    /// Answer to Hello: the worker's identity, and the client's on this worker (a peer gets
    /// none).
    Welcome {
        version: u32,
        device: String,
        worker: String,
        client: Option<Resume>,
        /// The worker's trace clock (microseconds since its process started) when it answered:
        /// the client aligns the worker's spans to its own clock with it.
        clock_us: u64,
    },
    /// Answer to LoadProgram: every weight the program needs that this client has neither
    /// uploaded nor proved, whether or not the worker holds it (so the answer says nothing of
    /// other clients' weights), and the nonce to prove them under.
    ProveWeights {
        nonce: Digest,
        hashes: Vec<WeightHash>,
    },
    /// Answer to ProveWeights: the weights to upload (not held, or not proved).
    MissingWeights {
        hashes: Vec<WeightHash>,
    },
    /// This worker's part of a call finished; outputs were sent on tensor streams.
    RunDone {
        stats: RunStats,
    },
    /// Per-op call finished; outputs were sent on tensor streams (`Purpose::OpOutput`).
    OpDone {
        exec_s: f64,
    },
    Stats(WorkerStats),
    Error(RemoteError),
    /// Answer to OpenSession: the session's rank on this worker, the sessions (of every
    /// client) still open that opened before it; on its first open, all the others. Clients
    /// choosing among replicas use it to tell, among sessions that chose the same replica at
    /// the same moment, which came last (and should move); opening again asks for it anew.
    SessionOpened {
        sessions_before: u64,
    },
}

/// What a worker measured in its part of one call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// Seconds from the Run request to the last send flushed.
    pub wall_s: f64,
    /// Seconds spent executing ops.
    pub exec_s: f64,
    /// Bytes of tensors sent, by destination device (or `client`).
    pub bytes_sent: BTreeMap<String, u64>,
    /// Bytes of tensors received, by source.
    pub bytes_received: BTreeMap<String, u64>,
    /// What the worker did, in order, on its trace clock: the wait for an execution slot, each
    /// region of ops between transfers, each wait for a transfer, each send.
    pub spans: Vec<TraceSpan>,
    /// How many calls (of this and other sessions, of any client) executed together with this
    /// one as one batched step on this worker; 1 when it ran alone, 0 when this part computed
    /// nothing (it only received state).
    pub batch: u32,
}

/// One span of a worker's part of a call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSpan {
    /// Where it shows: `exec` (the worker's ops and waits), or the link it sends on
    /// (`w0→w1`, `w1→client`).
    pub track: String,
    pub name: String,
    /// Microseconds since the worker's process started (its trace clock).
    pub start_us: u64,
    pub dur_us: u64,
    /// Tensor bytes it moved (sends), else 0.
    pub bytes: u64,
}

/// A worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub device: String,
    pub resident_weights: u64,
    pub resident_weight_bytes: u64,
    pub programs: u64,
    pub sessions: u64,
    pub state_bytes: u64,
    pub runs: u64,
    pub failed_runs: u64,
    pub ops: u64,
    pub connections: u64,
    /// Connections refused at their Hello (wrong token, version, ticket).
    pub refused: u64,
    /// Connections refused before their handshake: too many were not yet past their Hello.
    pub refused_unauthenticated: u64,
    /// Tensor streams refused (unexpected, wrong sender or type, too slow, corrupt).
    pub refused_streams: u64,
    /// Runs and per-op calls in flight now.
    pub calls_in_flight: u64,
    /// Peak bytes of resident tensors the worker held at once: weights + sessions' state
    /// (activations, which live only during a call, are not counted).
    pub peak_tensor_bytes: u64,
    /// The memory budget admission checks against (`None`: no limit).
    pub memory_bytes: Option<u64>,
    /// What loaded programs' weights, sessions' state, calls in flight and uploads being read
    /// have committed.
    pub committed_bytes: u64,
    /// Loads, sessions, calls and uploads refused with `OutOfMemory`.
    pub refused_for_memory: u64,
    /// The most runs this worker executed at once.
    pub peak_concurrent_runs: u64,
    /// Sweeps of idle sessions, departed clients and the weight cache done so far.
    pub sweeps: u64,
}

/// An error a worker reports: what kind, and a message naming the problem and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Kinds of worker errors (stable, so clients can match).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Missing or wrong token, or a request before Hello.
    Unauthorized,
    /// The client speaks another protocol version.
    VersionMismatch,
    /// A frame longer than the limit (the connection is closed: framing is lost).
    FrameTooLarge,
    /// A frame or header that does not decode.
    Malformed,
    /// A request that makes no sense now (unknown entry, wrong device, duplicate id).
    BadRequest,
    /// No such program for this client.
    UnknownProgram,
    /// No such session for this client.
    UnknownSession,
    /// The session is running another call.
    SessionBusy,
    /// Weights the program needs are not resident.
    MissingWeights,
    /// A received weight's bytes do not hash to its name.
    WeightHashMismatch,
    /// The executor failed (bad shapes, an op error); the message names the node.
    Exec,
    /// An input or activation did not arrive in time.
    Timeout,
    /// The worker cannot reach a peer.
    PeerUnreachable,
    /// A load or session that would not fit in the worker's memory budget; the message gives
    /// what was asked and what is committed.
    OutOfMemory,
    /// A per-client limit (programs, sessions, concurrent runs) was reached; the message names
    /// it and its value.
    LimitReached,
    /// The run was cancelled (by its client, or because its session closed).
    Cancelled,
    /// A Hello resumed a client id this worker does not know, or with the wrong ticket (the
    /// worker restarted, or forgot a client gone too long): say Hello as a new client.
    UnknownClient,
}

impl RemoteError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> RemoteError {
        RemoteError { kind, message: message.into() }
    }
}

/// What a tensor stream carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Purpose {
    /// A weight upload (client → worker).
    Weight { hash: WeightHash },
    /// A user input of a run (client → worker).
    Input { run: u64, transfer: u32 },
    /// A user output of a run (worker → client).
    Output { run: u64, transfer: u32 },
    /// An activation at a cut (worker → worker), for a run of `client` (the client's id on the
    /// receiving worker, from the sender's [`PeerInfo`]).
    Activation { client: ClientId, run: u64, transfer: u32 },
    /// An argument of a per-op call (client → worker).
    OpInput { call: u64, index: u32 },
    /// A result of a per-op call (worker → client).
    OpOutput { call: u64, index: u32 },
}

/// The header of a tensor stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorHeader {
    pub purpose: Purpose,
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub byte_len: u64,
}

/// Errors reading or writing the wire format.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A control frame longer than [`MAX_CONTROL_FRAME`].
    #[error("control frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { len: u64, max: u64 },
    /// A frame or header that does not decode.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// A tensor header whose sizes do not add up or exceed the limits.
    #[error("bad tensor header: {0}")]
    BadTensorHeader(String),
    /// The stream ended in the middle of a frame or tensor.
    #[error("stream ended {0}")]
    Truncated(&'static str),
    /// The peer reset or stopped the stream, or the connection closed.
    #[error("stream failed: {0}")]
    Stream(String),
    /// Encoding failed (a bug: every message type encodes).
    #[error("encoding {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

impl TensorHeader {
    /// Check the header against the limits and its own arithmetic.
    pub fn validate(&self, max_tensor_bytes: u64) -> Result<(), WireError> {
        if self.shape.len() > MAX_RANK {
            return Err(WireError::BadTensorHeader(format!("rank {} exceeds {MAX_RANK}", self.shape.len())));
        }
        let mut numel: u64 = 1;
        for &d in &self.shape {
            let d = u64::try_from(d).map_err(|_| WireError::BadTensorHeader(format!("negative dim {d}")))?;
            numel = numel
                .checked_mul(d)
                .ok_or_else(|| WireError::BadTensorHeader(format!("shape {:?} overflows", self.shape)))?;
        }
        let expected = numel
            .checked_mul(self.dtype.size_bytes())
            .ok_or_else(|| WireError::BadTensorHeader(format!("shape {:?} overflows", self.shape)))?;
        if expected != self.byte_len {
            return Err(WireError::BadTensorHeader(format!(
                "{} {:?} is {expected} bytes, header says {}",
                self.dtype, self.shape, self.byte_len
            )));
        }
        if self.byte_len > max_tensor_bytes {
            return Err(WireError::BadTensorHeader(format!(
                "{} bytes exceeds the {max_tensor_bytes}-byte tensor limit",
                self.byte_len
            )));
        }
        Ok(())
    }
}

/// Encode a control frame: length prefix and body.
pub fn encode_frame<T: Serialize>(frame: &Frame<T>) -> Result<Vec<u8>, WireError> {
    let body = genie_codegen::binary::to_bytes(frame)
        .map_err(|e| WireError::Encode { what: "control frame", reason: e.to_string() })?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_CONTROL_FRAME)
        .ok_or(WireError::FrameTooLarge { len: body.len() as u64, max: MAX_CONTROL_FRAME as u64 })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode a control frame body (without its length prefix).
pub fn decode_frame<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<Frame<T>, WireError> {
    genie_codegen::binary::from_bytes(body)
        .map_err(|e| WireError::Malformed { what: "control frame", reason: e.to_string() })
}

/// Check a control frame's length prefix.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    frame_len_within(prefix, MAX_CONTROL_FRAME)
}

/// Check a frame's length prefix against `max` ([`MAX_HELLO_FRAME`] before authentication).
pub fn frame_len_within(prefix: [u8; 4], max: u32) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix);
    if len > max {
        return Err(WireError::FrameTooLarge { len: len as u64, max: max as u64 });
    }
    Ok(len as usize)
}

/// Encode the start of a tensor stream: magic, header length, header.
pub fn encode_tensor_header(header: &TensorHeader) -> Result<Vec<u8>, WireError> {
    let body = genie_codegen::binary::to_bytes(header)
        .map_err(|e| WireError::Encode { what: "tensor header", reason: e.to_string() })?;
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&TENSOR_MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Check the 8-byte prefix of a tensor stream; returns the header length.
pub fn tensor_header_len(prefix: [u8; 8]) -> Result<usize, WireError> {
    if prefix[..4] != TENSOR_MAGIC {
        return Err(WireError::Malformed { what: "tensor stream", reason: format!("bad magic {:02x?}", &prefix[..4]) });
    }
    let len = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if len > MAX_TENSOR_HEADER {
        return Err(WireError::BadTensorHeader(format!("header of {len} bytes exceeds {MAX_TENSOR_HEADER}")));
    }
    Ok(len as usize)
}

/// Decode a tensor header and validate it.
pub fn decode_tensor_header(body: &[u8], max_tensor_bytes: u64) -> Result<TensorHeader, WireError> {
    let header: TensorHeader = genie_codegen::binary::from_bytes(body)
        .map_err(|e| WireError::Malformed { what: "tensor header", reason: e.to_string() })?;
    header.validate(max_tensor_bytes)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frame = Frame {
            id: 7,
            body: Request::Run {
                run: 1,
                program: 2,
                session: 3,
                entry: "decode".into(),
                bindings: [("s0".to_string(), 5)].into(),
                timeout_ms: 1000,
            },
        };
        let bytes = encode_frame(&frame).unwrap();
        let len = frame_len(bytes[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, bytes.len() - 4);
        let back: Frame<Request> = decode_frame(&bytes[4..]).unwrap();
        assert_eq!(back, frame);
    }

    #[test]
    fn oversized_frame_lengths_are_refused_before_allocation() {
        let err = frame_len((MAX_CONTROL_FRAME + 1).to_le_bytes()).unwrap_err();
        assert!(matches!(err, WireError::FrameTooLarge { .. }), "{err}");
    }

    #[test]
    fn corrupt_frames_are_malformed_not_panics() {
        let bytes = encode_frame(&Frame { id: 1, body: Request::Stats }).unwrap();
        for cut in 0..bytes.len() - 4 {
            let r: Result<Frame<Request>, _> = decode_frame(&bytes[4..4 + cut]);
            assert!(matches!(r, Err(WireError::Malformed { .. })), "cut at {cut}");
        }
        let r: Result<Frame<Request>, _> = decode_frame(&[0xff; 32]);
        assert!(matches!(r, Err(WireError::Malformed { .. })));
    }

    #[test]
    fn tensor_headers_are_checked() {
        let good = TensorHeader {
            purpose: Purpose::Input { run: 1, transfer: 0 },
            dtype: DType::Float32,
            shape: vec![2, 3],
            byte_len: 24,
        };
        let bytes = encode_tensor_header(&good).unwrap();
        let len = tensor_header_len(bytes[..8].try_into().unwrap()).unwrap();
        assert_eq!(decode_tensor_header(&bytes[8..8 + len], 1 << 20).unwrap(), good);
        let lying = TensorHeader { byte_len: 25, ..good.clone() };
        assert!(matches!(lying.validate(1 << 20), Err(WireError::BadTensorHeader(_))));
        let negative = TensorHeader { shape: vec![-1, 3], ..good.clone() };
        assert!(matches!(negative.validate(1 << 20), Err(WireError::BadTensorHeader(_))));
        let huge = TensorHeader { shape: vec![i64::MAX, i64::MAX], byte_len: 0, ..good.clone() };
        assert!(matches!(huge.validate(u64::MAX), Err(WireError::BadTensorHeader(_))));
        assert!(matches!(good.validate(10), Err(WireError::BadTensorHeader(_))));
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert!(tensor_header_len(bad_magic[..8].try_into().unwrap()).is_err());
    }
}

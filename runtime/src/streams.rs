//! Async I/O of the wire format on quinn streams: control frames and tensor streams.
//!
//! Shared by worker and client. Tensors are sent without copying (the stream borrows the
//! tensor's memory) and received straight into a freshly allocated tensor.

use bytes::Bytes;
use genie_ir::DType;
use quinn::{Connection, RecvStream, SendStream};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::tensor::{dtype_of, kind_of};
use crate::transport;
use crate::wire::{self, Frame, Purpose, TensorHeader, WireError};

/// Write one control frame.
pub async fn write_frame<T: Serialize>(send: &mut SendStream, frame: &Frame<T>) -> Result<(), WireError> {
    let bytes = wire::encode_frame(frame)?;
    transport::write_bytes(send, Bytes::from(bytes)).await.map_err(|e| WireError::Stream(e.to_string()))
}

/// What reading a control frame gave.
pub enum ReadFrame<T> {
    Frame(Frame<T>),
    /// The peer finished the stream between frames.
    End,
}

/// Read one control frame of at most [`wire::MAX_CONTROL_FRAME`] bytes.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(recv: &mut RecvStream) -> Result<ReadFrame<T>, WireError> {
    read_frame_within(recv, wire::MAX_CONTROL_FRAME).await
}

/// How much of a frame's body is read at a time: memory grows with what arrives, not with what
/// a length prefix claims.
const FRAME_CHUNK: usize = 64 << 10;

/// Read one control frame of at most `max` bytes. The length is checked before anything is
/// allocated, and the body grows as its bytes arrive.
pub async fn read_frame_within<T: for<'de> Deserialize<'de>>(
    recv: &mut RecvStream,
    max: u32,
) -> Result<ReadFrame<T>, WireError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(ReadFrame::End),
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(WireError::Truncated("inside a frame length")),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(WireError::Stream(e.to_string())),
    }
    let len = wire::frame_len_within(prefix, max)?;
    let mut body = Vec::with_capacity(len.min(FRAME_CHUNK));
    while body.len() < len {
        let want = (len - body.len()).min(FRAME_CHUNK);
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => return Err(WireError::Truncated("inside a frame")),
            Err(e) => return Err(WireError::Stream(e.to_string())),
        }
    }
    Ok(ReadFrame::Frame(wire::decode_frame(&body)?))
}

/// A contiguous CPU tensor viewed as bytes, kept alive for as long as the stream needs them.
struct TensorBytes {
    tensor: Tensor,
    len: usize,
}

impl AsRef<[u8]> for TensorBytes {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `tensor` is contiguous, on the CPU, owned by this struct and never written
        // while it is shared; `len` is its size in bytes.
        unsafe { std::slice::from_raw_parts(self.tensor.data_ptr() as *const u8, self.len) }
    }
}

/// The tensor as contiguous CPU bytes that can be sent without copying.
pub fn tensor_payload(tensor: &Tensor) -> Result<(DType, Vec<i64>, Bytes), WireError> {
    let dtype = dtype_of(tensor.kind())
        .ok_or_else(|| WireError::BadTensorHeader(format!("libtorch kind {:?} has no wire dtype", tensor.kind())))?;
    let cpu = if tensor.device() == Device::Cpu { tensor.shallow_clone() } else { tensor.to_device(Device::Cpu) };
    let cpu = cpu.contiguous();
    let shape = cpu.size();
    let len = (cpu.numel() as u64 * dtype.size_bytes()) as usize;
    Ok((dtype, shape, Bytes::from_owner(TensorBytes { tensor: cpu, len })))
}

/// Open a stream on `conn` and send one tensor; returns the payload bytes sent.
pub async fn send_tensor(conn: &Connection, purpose: Purpose, tensor: &Tensor) -> Result<u64, WireError> {
    let (dtype, shape, payload) = tensor_payload(tensor)?;
    send_payload(conn, purpose, dtype, shape, payload).await
}

/// Send bytes already laid out as a tensor of `dtype` and `shape`.
pub async fn send_payload(
    conn: &Connection,
    purpose: Purpose,
    dtype: DType,
    shape: Vec<i64>,
    payload: Bytes,
) -> Result<u64, WireError> {
    let header = TensorHeader { purpose, dtype, shape, byte_len: payload.len() as u64 };
    let head = wire::encode_tensor_header(&header)?;
    let mut send = conn.open_uni().await.map_err(|e| WireError::Stream(e.to_string()))?;
    let stream_err = |e: transport::TransportError| WireError::Stream(e.to_string());
    transport::write_bytes(&mut send, Bytes::from(head)).await.map_err(stream_err)?;
    let n = payload.len() as u64;
    transport::write_bytes(&mut send, payload).await.map_err(stream_err)?;
    send.finish().map_err(|e| WireError::Stream(e.to_string()))?;
    Ok(n)
}

/// Read a tensor stream's header (validated against `max_tensor_bytes`).
pub async fn read_tensor_header(recv: &mut RecvStream, max_tensor_bytes: u64) -> Result<TensorHeader, WireError> {
    let mut prefix = [0u8; 8];
    read_exact(recv, &mut prefix, "inside a tensor stream prefix").await?;
    let len = wire::tensor_header_len(prefix)?;
    let mut body = vec![0u8; len];
    read_exact(recv, &mut body, "inside a tensor header").await?;
    wire::decode_tensor_header(&body, max_tensor_bytes)
}

/// Read the payload a header announced straight into a new CPU tensor.
pub async fn read_tensor_payload(recv: &mut RecvStream, header: &TensorHeader) -> Result<Tensor, WireError> {
    let kind = kind_of(header.dtype)
        .ok_or_else(|| WireError::BadTensorHeader(format!("dtype {} has no libtorch kind", header.dtype)))?;
    let tensor = Tensor::f_empty(header.shape.as_slice(), (kind, Device::Cpu))
        .map_err(|e| WireError::BadTensorHeader(format!("cannot allocate {:?}: {e}", header.shape)))?;
    let len = header.byte_len as usize;
    if len > 0 {
        // SAFETY: a fresh contiguous CPU tensor of exactly `byte_len` bytes (validated against
        // dtype and shape), not shared with anything until this function returns it.
        let buf = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut u8, len) };
        transport::read_into(recv, buf).await.map_err(|e| WireError::Stream(e.to_string()))?;
    }
    // Nothing may follow the payload.
    match recv.read(&mut [0u8; 1]).await {
        Ok(None) => Ok(tensor),
        Ok(Some(_)) => Err(WireError::Malformed { what: "tensor stream", reason: "bytes after the payload".into() }),
        Err(e) => Err(WireError::Stream(e.to_string())),
    }
}

async fn read_exact(recv: &mut RecvStream, buf: &mut [u8], at: &'static str) -> Result<(), WireError> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => WireError::Truncated(at),
        quinn::ReadExactError::ReadError(e) => WireError::Stream(e.to_string()),
    })
}

//! What a worker or client reads off a connection: a control frame (length prefix, then a
//! `Frame<Request>` or `Frame<Reply>`) or the start of a tensor stream (magic, header length,
//! `TensorHeader`, validated). Any bytes give a value or a typed error; never a panic, an abort
//! or an allocation beyond the bytes given. What decodes re-encodes to bytes that decode to the
//! same encoding.
//!
//! The first byte picks what the rest is: 0 a request frame, 1 a reply frame, 2 a tensor stream,
//! 3 the first frame of a connection (a `Hello`, within the pre-authentication cap).
//! `cargo xtask fuzz wire_frame 600` (seeds in `fuzz/corpus/wire_frame`).
#![no_main]

use genie_wire::{
    decode_frame, decode_tensor_header, encode_frame, encode_tensor_header, frame_len_within, tensor_header_len,
    Frame, Hello, Reply, Request, MAX_CONTROL_FRAME, MAX_HELLO_FRAME,
};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

/// The tensor size limit the fuzzed headers are validated against.
const MAX_TENSOR_BYTES: u64 = 1 << 30;

/// A length-prefixed control frame of at most `max` bytes: the prefix is checked before the body
/// is looked at.
fn control<T: Serialize + DeserializeOwned>(data: &[u8], max: u32) {
    let Some((prefix, rest)) = data.split_first_chunk::<4>() else { return };
    let Ok(len) = frame_len_within(*prefix, max) else { return };
    let Some(body) = rest.get(..len) else { return };
    if let Ok(frame) = decode_frame::<T>(body) {
        // Encoding what decoded is stable (compared as bytes: floats may be NaN).
        let bytes = encode_frame(&frame).expect("a decoded frame encodes");
        let again: Frame<T> = decode_frame(&bytes[4..]).expect("an encoded frame decodes");
        assert_eq!(encode_frame(&again).expect("encodes"), bytes, "re-encoding changed the frame");
    }
}

fn tensor_stream(data: &[u8]) {
    let Some((prefix, rest)) = data.split_first_chunk::<8>() else { return };
    let Ok(len) = tensor_header_len(*prefix) else { return };
    let Some(body) = rest.get(..len) else { return };
    if let Ok(header) = decode_tensor_header(body, MAX_TENSOR_BYTES) {
        assert!(header.byte_len <= MAX_TENSOR_BYTES);
        let bytes = encode_tensor_header(&header).expect("a decoded header encodes");
        let n = tensor_header_len(bytes[..8].try_into().unwrap()).expect("its own length is accepted");
        assert_eq!(decode_tensor_header(&bytes[8..8 + n], MAX_TENSOR_BYTES).expect("decodes again"), header);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    match kind % 4 {
        0 => control::<Request>(rest, MAX_CONTROL_FRAME),
        1 => control::<Reply>(rest, MAX_CONTROL_FRAME),
        2 => tensor_stream(rest),
        _ => control::<Hello>(rest, MAX_HELLO_FRAME),
    }
});

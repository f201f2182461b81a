//! A small bundled program: one decoder block of a GPT-style language model with a symbolic
//! sequence length, tied embedding/LM-head weights and its K/V as extra outputs.
//!
//! It is what `cargo xtask run` inspects until a frontend-imported model takes its place, and
//! what the IR's own tests exercise (`examples/tiny_decoder.ron` is this program as RON).

use crate::dim::{Dim, SymRange};
use crate::graph::{Arg, Graph, ValueId};
use crate::program::Program;
use crate::registry::InferError;
use crate::types::{DType, TensorType};
use crate::weights::WeightStore;

/// Model width, heads, vocabulary and maximum positions of the example.
pub const WIDTH: i64 = 16;
pub const HEADS: i64 = 2;
pub const VOCAB: i64 = 32;
pub const MAX_POSITIONS: i64 = 64;

/// Deterministic small weights (xorshift), as little-endian f32 bytes in [-0.1, 0.1).
fn pseudo_random_f32(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

struct Builder<'a> {
    g: Graph,
    store: &'a mut WeightStore,
    seed: u64,
}

impl Builder<'_> {
    fn weight(&mut self, name: &str, shape: &[i64]) -> ValueId {
        self.seed += 1;
        let ty = TensorType::new(DType::Float32, shape);
        let n = shape.iter().product::<i64>() as usize;
        let hash = self.store.insert_inline(ty.clone(), pseudo_random_f32(self.seed, n));
        self.g.add_weight(name, ty, hash)
    }

    fn op(&mut self, op: &str, args: Vec<Arg>) -> Result<ValueId, InferError> {
        self.g.add_op(op, args)
    }

    fn linear(&mut self, x: ValueId, name: &str, out: i64, inp: i64) -> Result<ValueId, InferError> {
        let w = self.weight(&format!("{name}.weight"), &[out, inp]);
        let b = self.weight(&format!("{name}.bias"), &[out]);
        self.op("aten.linear.default", vec![Arg::Tensor(x), Arg::Tensor(w), Arg::Tensor(b)])
    }

    fn layer_norm(&mut self, x: ValueId, name: &str) -> Result<ValueId, InferError> {
        let w = self.weight(&format!("{name}.weight"), &[WIDTH]);
        let b = self.weight(&format!("{name}.bias"), &[WIDTH]);
        self.op(
            "aten.layer_norm.default",
            vec![
                Arg::Tensor(x),
                Arg::Ints(vec![WIDTH]),
                Arg::Tensor(w),
                Arg::Tensor(b),
                Arg::Float(1e-5),
                Arg::Bool(true),
            ],
        )
    }

    /// [1, s, W] → [1, H, s, W/H]
    fn heads(&mut self, x: ValueId, s: &Dim) -> Result<ValueId, InferError> {
        let shape = vec![Dim::constant(1), s.clone(), Dim::constant(HEADS), Dim::constant(WIDTH / HEADS)];
        let v = self.op("aten.view.default", vec![Arg::Tensor(x), Arg::sym_ints(shape)])?;
        self.op("aten.transpose.int", vec![Arg::Tensor(v), Arg::Int(1), Arg::Int(2)])
    }
}

/// Build the example program: the prefill entry alone.
pub fn tiny_decoder() -> Result<Program, InferError> {
    let mut program = Program::new("tiny_decoder");
    let g = build_entry("prefill", false, &mut program.weights)?;
    program.entries.push(g);
    Ok(program)
}

/// The example as a prefill + decode program. Both entries use the same weights (stored once);
/// decode takes the past K/V (length `s0`), appends one position and returns the present K/V.
pub fn tiny_decoder_pair() -> Result<Program, InferError> {
    let mut program = Program::new("tiny_decoder");
    let prefill = build_entry("prefill", false, &mut program.weights)?;
    let decode = build_entry("decode", true, &mut program.weights)?;
    program.entries.push(prefill);
    program.entries.push(decode);
    Ok(program)
}

fn build_entry(name: &str, decode: bool, store: &mut WeightStore) -> Result<Graph, InferError> {
    let mut g = Graph::new(name);
    g.add_symbol("s0", SymRange { min: 1, max: Some(MAX_POSITIONS - 1) });
    let past_len = Dim::symbol("s0");
    // Prefill reads s0 new tokens; decode reads one token after s0 cached ones.
    let s = if decode { Dim::constant(1) } else { past_len.clone() };
    let ids = g.add_input("input_ids", TensorType::with_dims(DType::Int64, vec![Dim::constant(1), s.clone()]));
    let head_shape = |len: Dim| vec![Dim::constant(1), Dim::constant(HEADS), len, Dim::constant(WIDTH / HEADS)];
    let past = if decode {
        let k = g.add_input("past_key_0", TensorType::with_dims(DType::Float32, head_shape(past_len.clone())));
        let v = g.add_input("past_value_0", TensorType::with_dims(DType::Float32, head_shape(past_len.clone())));
        Some((k, v))
    } else {
        None
    };
    let mut b = Builder { g, store, seed: 0 };

    let wte = b.weight("wte.weight", &[VOCAB, WIDTH]);
    let wpe = b.weight("wpe.weight", &[MAX_POSITIONS, WIDTH]);
    let positions = if decode {
        let end = past_len.add(&Dim::constant(1));
        b.op(
            "aten.arange.start",
            vec![
                Arg::sym_int(past_len.clone()),
                Arg::sym_int(end),
                Arg::DType(DType::Int64),
                Arg::None,
                Arg::None,
                Arg::None,
            ],
        )?
    } else {
        b.op(
            "aten.arange.default",
            vec![Arg::sym_int(s.clone()), Arg::DType(DType::Int64), Arg::None, Arg::None, Arg::None],
        )?
    };
    let tok = b.op(
        "aten.embedding.default",
        vec![Arg::Tensor(wte), Arg::Tensor(ids), Arg::Int(-1), Arg::Bool(false), Arg::Bool(false)],
    )?;
    let pos = b.op(
        "aten.embedding.default",
        vec![Arg::Tensor(wpe), Arg::Tensor(positions), Arg::Int(-1), Arg::Bool(false), Arg::Bool(false)],
    )?;
    let h = b.op("aten.add.Tensor", vec![Arg::Tensor(tok), Arg::Tensor(pos), Arg::Int(1)])?;

    // Attention.
    let x = b.layer_norm(h, "h.0.ln_1")?;
    let qkv = b.linear(x, "h.0.attn.c_attn", 3 * WIDTH, WIDTH)?;
    let (_, parts) = b.g.add_node("aten.split.Tensor", vec![Arg::Tensor(qkv), Arg::Int(WIDTH), Arg::Int(2)])?;
    let [q, k, v] = parts[..] else { return Err(InferError::new("aten.split.Tensor", "expected three parts")) };
    let (q, mut k, mut v) = (b.heads(q, &s)?, b.heads(k, &s)?, b.heads(v, &s)?);
    if let Some((past_k, past_v)) = past {
        k = b.op("aten.cat.default", vec![Arg::Tensors(vec![past_k, k]), Arg::Int(2)])?;
        v = b.op("aten.cat.default", vec![Arg::Tensors(vec![past_v, v]), Arg::Int(2)])?;
    }
    let att = b.op(
        "aten.scaled_dot_product_attention.default",
        vec![
            Arg::Tensor(q),
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::None,
            Arg::Float(0.0),
            Arg::Bool(!decode),
            Arg::None,
            Arg::Bool(false),
        ],
    )?;
    let att = b.op("aten.transpose.int", vec![Arg::Tensor(att), Arg::Int(1), Arg::Int(2)])?;
    let att = b.op(
        "aten.reshape.default",
        vec![Arg::Tensor(att), Arg::sym_ints(vec![Dim::constant(1), s.clone(), Dim::constant(WIDTH)])],
    )?;
    let proj = b.linear(att, "h.0.attn.c_proj", WIDTH, WIDTH)?;
    let h = b.op("aten.add.Tensor", vec![Arg::Tensor(h), Arg::Tensor(proj), Arg::Int(1)])?;

    // MLP.
    let x = b.layer_norm(h, "h.0.ln_2")?;
    let up = b.linear(x, "h.0.mlp.c_fc", 4 * WIDTH, WIDTH)?;
    let act = b.op("aten.gelu.default", vec![Arg::Tensor(up), Arg::Str("tanh".into())])?;
    let down = b.linear(act, "h.0.mlp.c_proj", WIDTH, 4 * WIDTH)?;
    let h = b.op("aten.add.Tensor", vec![Arg::Tensor(h), Arg::Tensor(down), Arg::Int(1)])?;

    // Head, tied to the token embedding: same bytes, so one weight in the store.
    let x = b.layer_norm(h, "ln_f")?;
    let wte_entry = b.g.value(wte).clone();
    let crate::graph::ValueDef::Weight(wte_hash) = wte_entry.def else {
        return Err(InferError::new("example", "wte is not a weight"));
    };
    let lm_head = b.g.add_weight("lm_head.weight", wte_entry.ty, wte_hash);
    let logits = b.op("aten.linear.default", vec![Arg::Tensor(x), Arg::Tensor(lm_head), Arg::None])?;

    let mut g = b.g;
    g.add_output("logits", logits);
    g.add_output("present_key_0", k);
    g.add_output("present_value_0", v);
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_shares_weights_and_verifies() {
        let single = tiny_decoder().unwrap();
        let pair = tiny_decoder_pair().expect("pair builds");
        crate::verify_program(&pair).expect("pair verifies");
        assert_eq!(pair.weights.len(), single.weights.len(), "decode reuses prefill's weights");
        let decode = pair.entry("decode").unwrap();
        let present = decode.outputs.iter().find(|o| o.name == "present_key_0").unwrap().value;
        assert_eq!(decode.value(present).ty.shape[2].to_string(), "s0 + 1");
    }

    #[test]
    fn example_builds_and_verifies() {
        let p = tiny_decoder().expect("example builds");
        crate::verify_program(&p).expect("example verifies");
        // wte and lm_head share one stored weight.
        let g = &p.entries[0];
        let hashes: Vec<_> = g
            .values
            .iter()
            .filter(|v| v.name == "wte.weight" || v.name == "lm_head.weight")
            .map(|v| v.def.clone())
            .collect();
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[0], hashes[1]);
        let weight_values = g.values.iter().filter(|v| matches!(v.def, crate::ValueDef::Weight(_))).count();
        assert_eq!(p.weights.len(), weight_values - 1);
    }
}

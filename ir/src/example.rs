//! GPT-style decoder programs built in code: N layers of pre-norm attention and a GELU MLP, a
//! symbolic sequence length, tied embedding/LM-head weights, and the K/V of every layer as extra
//! outputs. A decode entry takes the past K/V (length `s0`), appends one position and returns the
//! present K/V. Prefill and decode of one shape share their weights (stored once).
//!
//! [`tiny_decoder_pair`] is what `cargo xtask run` inspects (`examples/tiny_decoder.ron`); tests
//! of the IR, the passes and codegen build other sizes with [`gpt_pair`].

use crate::dim::{Dim, SymRange};
use crate::graph::{Arg, Graph, ValueDef, ValueId};
use crate::program::Program;
use crate::registry::InferError;
use crate::types::{DType, TensorType};
use crate::weights::WeightStore;

/// Shape of a GPT-style program.
#[derive(Clone, Copy, Debug)]
pub struct GptShape {
    pub layers: usize,
    pub width: i64,
    pub heads: i64,
    pub vocab: i64,
    pub positions: i64,
}

impl GptShape {
    /// The bundled example: one layer, 16 wide.
    pub const TINY: GptShape = GptShape { layers: 1, width: 16, heads: 2, vocab: 32, positions: 64 };

    /// `layers` layers, 32 wide, 4 heads.
    pub fn small(layers: usize) -> GptShape {
        GptShape { layers, width: 32, heads: 4, vocab: 64, positions: 64 }
    }
}

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
    shape: GptShape,
}

impl Builder<'_> {
    /// A weight seeded by its name, so prefill and decode get the same bytes (one stored weight).
    fn weight(&mut self, name: &str, shape: &[i64]) -> ValueId {
        let seed = name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let ty = TensorType::new(DType::Float32, shape);
        let n = shape.iter().product::<i64>().max(0) as usize;
        let hash = self.store.insert_inline(ty.clone(), pseudo_random_f32(seed, n));
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
        let width = self.shape.width;
        let w = self.weight(&format!("{name}.weight"), &[width]);
        let b = self.weight(&format!("{name}.bias"), &[width]);
        self.op(
            "aten.layer_norm.default",
            vec![
                Arg::Tensor(x),
                Arg::Ints(vec![width]),
                Arg::Tensor(w),
                Arg::Tensor(b),
                Arg::Float(1e-5),
                Arg::Bool(true),
            ],
        )
    }

    fn embedding(&mut self, table: ValueId, ids: ValueId) -> Result<ValueId, InferError> {
        self.op(
            "aten.embedding.default",
            vec![Arg::Tensor(table), Arg::Tensor(ids), Arg::Int(-1), Arg::Bool(false), Arg::Bool(false)],
        )
    }

    /// [1, s, W] → [1, H, s, W/H]
    fn heads(&mut self, x: ValueId, s: &Dim) -> Result<ValueId, InferError> {
        let (w, h) = (self.shape.width, self.shape.heads);
        let shape = vec![Dim::constant(1), s.clone(), Dim::constant(h), Dim::constant(w / h)];
        let v = self.op("aten.view.default", vec![Arg::Tensor(x), Arg::sym_ints(shape)])?;
        self.op("aten.transpose.int", vec![Arg::Tensor(v), Arg::Int(1), Arg::Int(2)])
    }
}

/// The bundled example: the prefill entry alone.
pub fn tiny_decoder() -> Result<Program, InferError> {
    let mut program = Program::new("tiny_decoder");
    let g = build_entry("prefill", false, &mut program.weights, GptShape::TINY)?;
    program.entries.push(g);
    Ok(program)
}

/// The bundled example as a prefill + decode program.
pub fn tiny_decoder_pair() -> Result<Program, InferError> {
    let mut program = gpt_pair(GptShape::TINY)?;
    program.name = "tiny_decoder".into();
    Ok(program)
}

/// A prefill + decode program of the given shape, before any pass.
pub fn gpt_pair(shape: GptShape) -> Result<Program, InferError> {
    let mut program = Program::new(format!("gpt{}", shape.layers));
    let prefill = build_entry("prefill", false, &mut program.weights, shape)?;
    let decode = build_entry("decode", true, &mut program.weights, shape)?;
    program.entries.push(prefill);
    program.entries.push(decode);
    Ok(program)
}

fn build_entry(name: &str, decode: bool, store: &mut WeightStore, shape: GptShape) -> Result<Graph, InferError> {
    let mut g = Graph::new(name);
    g.add_symbol("s0", SymRange { min: 1, max: Some(shape.positions - 1) });
    let past_len = Dim::symbol("s0");
    // Prefill reads s0 new tokens; decode reads one token after s0 cached ones.
    let s = if decode { Dim::constant(1) } else { past_len.clone() };
    let (w, h) = (shape.width, shape.heads);
    let ids = g.add_input("input_ids", TensorType::with_dims(DType::Int64, vec![Dim::constant(1), s.clone()]));
    let head_shape = |len: Dim| vec![Dim::constant(1), Dim::constant(h), len, Dim::constant(w / h)];
    let mut past = Vec::new();
    if decode {
        for l in 0..shape.layers {
            let k = g.add_input(
                format!("past_key_{l}"),
                TensorType::with_dims(DType::Float32, head_shape(past_len.clone())),
            );
            let v = g.add_input(
                format!("past_value_{l}"),
                TensorType::with_dims(DType::Float32, head_shape(past_len.clone())),
            );
            past.push((k, v));
        }
    }
    let mut b = Builder { g, store, shape };
    let wte = b.weight("transformer.wte.weight", &[shape.vocab, w]);
    let wpe = b.weight("transformer.wpe.weight", &[shape.positions, w]);
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
    let tok = b.embedding(wte, ids)?;
    let pos = b.embedding(wpe, positions)?;
    let mut x = b.op("aten.add.Tensor", vec![Arg::Tensor(tok), Arg::Tensor(pos), Arg::Int(1)])?;
    let mut presents = Vec::new();
    for l in 0..shape.layers {
        let p = format!("transformer.h.{l}");
        // Attention.
        let y = b.layer_norm(x, &format!("{p}.ln_1"))?;
        let qkv = b.linear(y, &format!("{p}.attn.c_attn"), 3 * w, w)?;
        let (_, parts) = b.g.add_node("aten.split.Tensor", vec![Arg::Tensor(qkv), Arg::Int(w), Arg::Int(2)])?;
        let [q, k, v] = parts[..] else { return Err(InferError::new("aten.split.Tensor", "expected three parts")) };
        let (q, mut k, mut v) = (b.heads(q, &s)?, b.heads(k, &s)?, b.heads(v, &s)?);
        if let Some(&(past_k, past_v)) = past.get(l) {
            k = b.op("aten.cat.default", vec![Arg::Tensors(vec![past_k, k]), Arg::Int(2)])?;
            v = b.op("aten.cat.default", vec![Arg::Tensors(vec![past_v, v]), Arg::Int(2)])?;
        }
        presents.push((k, v));
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
            vec![Arg::Tensor(att), Arg::sym_ints(vec![Dim::constant(1), s.clone(), Dim::constant(w)])],
        )?;
        let proj = b.linear(att, &format!("{p}.attn.c_proj"), w, w)?;
        x = b.op("aten.add.Tensor", vec![Arg::Tensor(x), Arg::Tensor(proj), Arg::Int(1)])?;
        // MLP.
        let y = b.layer_norm(x, &format!("{p}.ln_2"))?;
        let up = b.linear(y, &format!("{p}.mlp.c_fc"), 4 * w, w)?;
        let act = b.op("aten.gelu.default", vec![Arg::Tensor(up), Arg::Str("tanh".into())])?;
        let down = b.linear(act, &format!("{p}.mlp.c_proj"), w, 4 * w)?;
        x = b.op("aten.add.Tensor", vec![Arg::Tensor(x), Arg::Tensor(down), Arg::Int(1)])?;
    }
    // Head, tied to the token embedding: same bytes under another name, one stored weight.
    let y = b.layer_norm(x, "transformer.ln_f")?;
    let wte_value = b.g.value(wte).clone();
    let ValueDef::Weight(wte_hash) = wte_value.def else {
        return Err(InferError::new("example", "wte is not a weight"));
    };
    let lm_head = b.g.add_weight("lm_head.weight", wte_value.ty, wte_hash);
    let logits = b.op("aten.linear.default", vec![Arg::Tensor(y), Arg::Tensor(lm_head), Arg::None])?;
    let mut g = b.g;
    g.add_output("logits", logits);
    for (l, (k, v)) in presents.into_iter().enumerate() {
        g.add_output(format!("present_key_{l}"), k);
        g.add_output(format!("present_value_{l}"), v);
    }
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
            .filter(|v| v.name == "transformer.wte.weight" || v.name == "lm_head.weight")
            .map(|v| v.def.clone())
            .collect();
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[0], hashes[1]);
        let weight_values = g.values.iter().filter(|v| matches!(v.def, crate::ValueDef::Weight(_))).count();
        assert_eq!(p.weights.len(), weight_values - 1);
    }
}

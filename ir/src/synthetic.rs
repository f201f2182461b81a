//! Synthetic LLaMA-style programs for benchmarks and scale tests: N decoder layers with RMS norm,
//! rotary embeddings, grouped-query attention and a gated-SiLU MLP, written the way
//! `torch.export` writes them (`linear`, fused attention) or the way `run_decompositions()` does
//! (`mm`/`bmm` with views, attention written out).
//!
//! Weights are zero-filled so that a 96-layer program costs little memory; identical shapes share
//! one stored weight, which the passes do not care about.

use crate::dim::{Dim, SymRange};
use crate::graph::{Arg, Graph, ValueId};
use crate::program::Program;
use crate::registry::InferError;
use crate::types::{DType, TensorType};
use crate::weights::WeightStore;

/// Shape of the synthetic model.
#[derive(Clone, Copy, Debug)]
pub struct LlamaShape {
    pub layers: usize,
    pub hidden: i64,
    pub heads: i64,
    pub kv_heads: i64,
    pub intermediate: i64,
    pub vocab: i64,
}

impl LlamaShape {
    /// A small-width model with `layers` layers and grouped-query attention.
    pub fn small(layers: usize) -> LlamaShape {
        LlamaShape { layers, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, vocab: 256 }
    }
}

/// How the graph is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportForm {
    /// `torch.export.export` default: `linear`, `scaled_dot_product_attention`.
    Default,
    /// `ep.run_decompositions()`: `mm`/`addmm` with views and permutes, attention as `bmm`s.
    CoreAten,
}

struct B<'a> {
    g: Graph,
    store: &'a mut WeightStore,
    form: ExportForm,
}

impl B<'_> {
    fn op(&mut self, op: &str, args: Vec<Arg>) -> Result<ValueId, InferError> {
        self.g.add_op(op, args)
    }

    fn weight(&mut self, name: String, shape: &[i64]) -> ValueId {
        let ty = TensorType::new(DType::Float32, shape);
        let n = shape.iter().product::<i64>().max(0) as usize;
        let hash = self.store.insert_inline(ty.clone(), vec![0u8; n * 4]);
        self.g.add_weight(name, ty, hash)
    }

    fn view(&mut self, x: ValueId, shape: Vec<Dim>) -> Result<ValueId, InferError> {
        self.op("aten.view.default", vec![Arg::Tensor(x), Arg::sym_ints(shape)])
    }

    fn mul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId, InferError> {
        self.op("aten.mul.Tensor", vec![Arg::Tensor(a), Arg::Tensor(b)])
    }

    fn add(&mut self, a: ValueId, b: ValueId) -> Result<ValueId, InferError> {
        self.op("aten.add.Tensor", vec![Arg::Tensor(a), Arg::Tensor(b), Arg::Int(1)])
    }

    /// x [1, s, in] · Wᵀ, W [out, in].
    fn linear(&mut self, x: ValueId, name: String, out: i64, inp: i64, s: &Dim) -> Result<ValueId, InferError> {
        let w = self.weight(format!("{name}.weight"), &[out, inp]);
        match self.form {
            ExportForm::Default => self.op("aten.linear.default", vec![Arg::Tensor(x), Arg::Tensor(w), Arg::None]),
            ExportForm::CoreAten => {
                let wt = self.op("aten.permute.default", vec![Arg::Tensor(w), Arg::Ints(vec![1, 0])])?;
                let flat = self.view(x, vec![s.clone(), Dim::constant(inp)])?;
                let y = self.op("aten.mm.default", vec![Arg::Tensor(flat), Arg::Tensor(wt)])?;
                self.view(y, vec![Dim::constant(1), s.clone(), Dim::constant(out)])
            }
        }
    }

    /// `x.to(float32)` as the default export writes it: a cast plus a metadata assertion.
    fn cast_f32(&mut self, x: ValueId) -> Result<ValueId, InferError> {
        let y = match self.form {
            ExportForm::Default => self.op(
                "aten.to.dtype",
                vec![Arg::Tensor(x), Arg::DType(DType::Float32), Arg::Bool(false), Arg::Bool(false), Arg::None],
            )?,
            ExportForm::CoreAten => self.op(
                "aten._to_copy.default",
                vec![
                    Arg::Tensor(x),
                    Arg::DType(DType::Float32),
                    Arg::None,
                    Arg::None,
                    Arg::None,
                    Arg::Bool(false),
                    Arg::None,
                ],
            )?,
        };
        self.g.add_node(
            "aten._assert_tensor_metadata.default",
            vec![Arg::Tensor(x), Arg::None, Arg::None, Arg::DType(DType::Float32), Arg::None, Arg::None],
        )?;
        Ok(y)
    }

    fn rms_norm(&mut self, x: ValueId, name: String, hidden: i64) -> Result<ValueId, InferError> {
        let w = self.weight(format!("{name}.weight"), &[hidden]);
        let x = self.cast_f32(x)?;
        let sq = self.op("aten.pow.Tensor_Scalar", vec![Arg::Tensor(x), Arg::Int(2)])?;
        let mean = self.op("aten.mean.dim", vec![Arg::Tensor(sq), Arg::Ints(vec![-1]), Arg::Bool(true), Arg::None])?;
        let var = self.op("aten.add.Scalar", vec![Arg::Tensor(mean), Arg::Float(1e-6), Arg::Int(1)])?;
        let r = self.op("aten.rsqrt.default", vec![Arg::Tensor(var)])?;
        let n = self.mul(x, r)?;
        let n = self.cast_f32(n)?;
        self.mul(w, n)
    }

    /// Rotary embedding of [1, h, s, d]: x·cos + rotate_half(x)·sin.
    fn rope(&mut self, x: ValueId, cos: ValueId, sin: ValueId, d: i64) -> Result<ValueId, InferError> {
        let half = d / 2;
        let cos = self.op("aten.unsqueeze.default", vec![Arg::Tensor(cos), Arg::Int(1)])?;
        let sin = self.op("aten.unsqueeze.default", vec![Arg::Tensor(sin), Arg::Int(1)])?;
        let x1 =
            self.op("aten.slice.Tensor", vec![Arg::Tensor(x), Arg::Int(3), Arg::Int(0), Arg::Int(half), Arg::Int(1)])?;
        let x2 = self.op(
            "aten.slice.Tensor",
            vec![Arg::Tensor(x), Arg::Int(3), Arg::Int(half), Arg::Int(i64::MAX), Arg::Int(1)],
        )?;
        let nx2 = self.op("aten.neg.default", vec![Arg::Tensor(x2)])?;
        let rot = self.op("aten.cat.default", vec![Arg::Tensors(vec![nx2, x1]), Arg::Int(-1)])?;
        let a = self.mul(x, cos)?;
        let b = self.mul(rot, sin)?;
        self.add(a, b)
    }

    fn attention(
        &mut self,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        mask: ValueId,
        shape: &LlamaShape,
        s: &Dim,
    ) -> Result<ValueId, InferError> {
        // The causal mask cut to the key length, as transformers does per layer.
        let mask = self.op(
            "aten.slice.Tensor",
            vec![Arg::Tensor(mask), Arg::Int(3), Arg::Int(0), Arg::sym_int(s.clone()), Arg::Int(1)],
        )?;
        let d = shape.hidden / shape.heads;
        let groups = shape.heads / shape.kv_heads;
        // repeat_kv: [1, kvh, s, d] → [1, kvh, g, s, d] → [1, h, s, d].
        let repeat = |b: &mut Self, x: ValueId| -> Result<ValueId, InferError> {
            let u = b.op("aten.unsqueeze.default", vec![Arg::Tensor(x), Arg::Int(2)])?;
            let e = b.op(
                "aten.expand.default",
                vec![
                    Arg::Tensor(u),
                    Arg::sym_ints(vec![1.into(), shape.kv_heads.into(), groups.into(), s.clone(), d.into()]),
                    Arg::Bool(false),
                ],
            )?;
            b.op(
                "aten.reshape.default",
                vec![Arg::Tensor(e), Arg::sym_ints(vec![1.into(), shape.heads.into(), s.clone(), d.into()])],
            )
        };
        let (k, v) = (repeat(self, k)?, repeat(self, v)?);
        match self.form {
            ExportForm::Default => self.op(
                "aten.scaled_dot_product_attention.default",
                vec![
                    Arg::Tensor(q),
                    Arg::Tensor(k),
                    Arg::Tensor(v),
                    Arg::Tensor(mask),
                    Arg::Float(0.0),
                    Arg::Bool(false),
                    Arg::None,
                    Arg::Bool(false),
                ],
            ),
            ExportForm::CoreAten => {
                let bh =
                    |b: &mut Self, x: ValueId, rows: Dim, cols: Dim| b.view(x, vec![shape.heads.into(), rows, cols]);
                let kt = self.op("aten.permute.default", vec![Arg::Tensor(k), Arg::Ints(vec![0, 1, 3, 2])])?;
                let q3 = bh(self, q, s.clone(), d.into())?;
                let k3 = bh(self, kt, d.into(), s.clone())?;
                let scores = self.op("aten.bmm.default", vec![Arg::Tensor(q3), Arg::Tensor(k3)])?;
                let scaled =
                    self.op("aten.mul.Scalar", vec![Arg::Tensor(scores), Arg::Float(1.0 / (d as f64).sqrt())])?;
                let scaled = self.view(scaled, vec![1.into(), shape.heads.into(), s.clone(), s.clone()])?;
                let masked = self.add(scaled, mask)?;
                let masked = self.view(masked, vec![shape.heads.into(), s.clone(), s.clone()])?;
                let probs =
                    self.op("aten._softmax.default", vec![Arg::Tensor(masked), Arg::Int(-1), Arg::Bool(false)])?;
                let v3 = bh(self, v, s.clone(), d.into())?;
                let out = self.op("aten.bmm.default", vec![Arg::Tensor(probs), Arg::Tensor(v3)])?;
                self.view(out, vec![1.into(), shape.heads.into(), s.clone(), d.into()])
            }
        }
    }
}

/// A prefill entry of a synthetic LLaMA-style model with sequence length symbol `s0`.
pub fn synthetic_llama(shape: LlamaShape, form: ExportForm) -> Result<Program, InferError> {
    let mut program = Program::new(format!("llama{}", shape.layers));
    let mut g = Graph::new("prefill");
    g.add_symbol("s0", SymRange { min: 1, max: Some(4096) });
    let s = Dim::symbol("s0");
    let ids = g.add_input("input_ids", TensorType::with_dims(DType::Int64, vec![1.into(), s.clone()]));
    let d = shape.hidden / shape.heads;
    let cos = g.add_input("cos", TensorType::with_dims(DType::Float32, vec![1.into(), s.clone(), d.into()]));
    let sin = g.add_input("sin", TensorType::with_dims(DType::Float32, vec![1.into(), s.clone(), d.into()]));
    let mask = g.add_input(
        "attention_mask",
        TensorType::with_dims(DType::Float32, vec![1.into(), 1.into(), s.clone(), s.clone()]),
    );
    let mut b = B { g, store: &mut program.weights, form };
    let table = b.weight("embed_tokens.weight".into(), &[shape.vocab, shape.hidden]);
    let mut h = b.op(
        "aten.embedding.default",
        vec![Arg::Tensor(table), Arg::Tensor(ids), Arg::Int(-1), Arg::Bool(false), Arg::Bool(false)],
    )?;
    let heads_of = |n: i64| vec![Dim::constant(1), s.clone(), Dim::constant(n), Dim::constant(d)];
    let mut outputs = Vec::new();
    for l in 0..shape.layers {
        let p = format!("layers.{l}");
        let x = b.rms_norm(h, format!("{p}.input_layernorm"), shape.hidden)?;
        let q = b.linear(x, format!("{p}.self_attn.q_proj"), shape.hidden, shape.hidden, &s)?;
        let k = b.linear(x, format!("{p}.self_attn.k_proj"), shape.kv_heads * d, shape.hidden, &s)?;
        let v = b.linear(x, format!("{p}.self_attn.v_proj"), shape.kv_heads * d, shape.hidden, &s)?;
        let q = b.view(q, heads_of(shape.heads))?;
        let q = b.op("aten.transpose.int", vec![Arg::Tensor(q), Arg::Int(1), Arg::Int(2)])?;
        let k = b.view(k, heads_of(shape.kv_heads))?;
        let k = b.op("aten.transpose.int", vec![Arg::Tensor(k), Arg::Int(1), Arg::Int(2)])?;
        let v = b.view(v, heads_of(shape.kv_heads))?;
        let v = b.op("aten.transpose.int", vec![Arg::Tensor(v), Arg::Int(1), Arg::Int(2)])?;
        let q = b.rope(q, cos, sin, d)?;
        let k = b.rope(k, cos, sin, d)?;
        outputs.push((format!("present_key_{l}"), k));
        outputs.push((format!("present_value_{l}"), v));
        let att = b.attention(q, k, v, mask, &shape, &s)?;
        let att = b.op("aten.transpose.int", vec![Arg::Tensor(att), Arg::Int(1), Arg::Int(2)])?;
        let att =
            b.op("aten.contiguous.default", vec![Arg::Tensor(att), Arg::MemoryFormat("contiguous_format".into())])?;
        let att = b.op(
            "aten.reshape.default",
            vec![Arg::Tensor(att), Arg::sym_ints(vec![1.into(), s.clone(), shape.hidden.into()])],
        )?;
        let o = b.linear(att, format!("{p}.self_attn.o_proj"), shape.hidden, shape.hidden, &s)?;
        h = b.add(h, o)?;
        let x = b.rms_norm(h, format!("{p}.post_attention_layernorm"), shape.hidden)?;
        let gate = b.linear(x, format!("{p}.mlp.gate_proj"), shape.intermediate, shape.hidden, &s)?;
        let gate = match form {
            ExportForm::Default => b.op("aten.silu.default", vec![Arg::Tensor(gate)])?,
            ExportForm::CoreAten => {
                let sg = b.op("aten.sigmoid.default", vec![Arg::Tensor(gate)])?;
                b.mul(gate, sg)?
            }
        };
        let up = b.linear(x, format!("{p}.mlp.up_proj"), shape.intermediate, shape.hidden, &s)?;
        let act = b.mul(gate, up)?;
        let down = b.linear(act, format!("{p}.mlp.down_proj"), shape.hidden, shape.intermediate, &s)?;
        h = b.add(h, down)?;
    }
    let x = b.rms_norm(h, "norm".into(), shape.hidden)?;
    let logits = b.linear(x, "lm_head".into(), shape.vocab, shape.hidden, &s)?;
    let mut g = b.g;
    g.add_output("logits", logits);
    for (name, v) in outputs {
        g.add_output(name, v);
    }
    program.entries.push(g);
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_build_and_verify() {
        for form in [ExportForm::Default, ExportForm::CoreAten] {
            let p = synthetic_llama(LlamaShape::small(2), form).unwrap();
            crate::verify_program(&p).unwrap();
        }
    }

    #[test]
    fn ninety_six_layers_is_about_eight_thousand_nodes() {
        let p = synthetic_llama(LlamaShape::small(96), ExportForm::Default).unwrap();
        let n = p.entries[0].nodes.len();
        assert!((6_000..10_000).contains(&n), "{n} nodes");
        let core = synthetic_llama(LlamaShape::small(96), ExportForm::CoreAten).unwrap();
        assert!(core.entries[0].nodes.len() > n, "core ATen form is larger");
    }
}

//! The same model exported as `.pt2` and as `.onnx` imports to graphs with the same inputs (names,
//! dtypes, shapes), the same outputs (in order: dtypes and shapes; exporters name them
//! differently) and the same weights.
//!
//! Weights are compared by content, after dead-code removal on both sides (the ONNX exporter drops
//! unused buffers such as `num_batches_tracked`): every parameter of the `.pt2` (two or more
//! elements) has an ONNX weight with the same elements — the ONNX exporter may store it
//! transposed, so elements are compared as a multiset — and so the same bytes. The ONNX file may
//! hold extra constants the exporter computed (a folded attention mask); those are listed, not
//! failed. The ONNX optimizer folds batch norm into convolutions, so for ResNet only the
//! convolution weights are compared.

use std::path::{Path, PathBuf};

use genie_ir::{Dim, Program, TensorType};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

fn load(rel: &str) -> Program {
    genie_frontends::load(&[fixture(rel)]).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Shapes agree when ranks agree and every dim static in both is equal (symbol names differ
/// between exporters).
fn same_shape(a: &TensorType, b: &TensorType) -> bool {
    a.dtype == b.dtype
        && a.rank() == b.rank()
        && a.shape.iter().zip(&b.shape).all(|(x, y)| match (x.as_const(), y.as_const()) {
            (Some(p), Some(q)) => p == q,
            (None, None) => true,
            _ => false,
        })
}

fn describe(t: &TensorType) -> String {
    let dims: Vec<String> = t.shape.iter().map(Dim::to_string).collect();
    format!("{}[{}]", t.dtype, dims.join(", "))
}

fn assert_parity(stem: &str) {
    let pt2 = load(&format!("{stem}.pt2"));
    let onnx = load(&format!("{stem}.onnx"));
    let (a, b) = (&pt2.entries[0], &onnx.entries[0]);

    let ins = |g: &genie_ir::Graph| {
        g.inputs.iter().map(|v| (g.value(*v).name.clone(), g.value(*v).ty.clone())).collect::<Vec<_>>()
    };
    let (ia, ib) = (ins(a), ins(b));
    assert_eq!(
        ia.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        ib.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "{stem}: input names"
    );
    for ((n, ta), (_, tb)) in ia.iter().zip(&ib) {
        assert!(same_shape(ta, tb), "{stem}: input {n}: {} vs {}", describe(ta), describe(tb));
    }

    assert_eq!(a.outputs.len(), b.outputs.len(), "{stem}: output count");
    for (i, (oa, ob)) in a.outputs.iter().zip(&b.outputs).enumerate() {
        let (ta, tb) = (&a.value(oa.value).ty, &b.value(ob.value).ty);
        assert!(
            same_shape(ta, tb),
            "{stem}: output #{i} ({} / {}): {} vs {}",
            oa.name,
            ob.name,
            describe(ta),
            describe(tb)
        );
    }

    assert_weights_match(stem, pt2, onnx, |_| true);
}

/// Element bytes of every used weight with at least two elements, sorted (transposition-invariant).
fn weight_contents(mut p: Program, keep: impl Fn(&str) -> bool) -> Vec<(String, u64, Vec<Vec<u8>>)> {
    genie_passes::PassManager::standard().run(&mut p, Some("dead-code")).expect("cleanup runs");
    let g = &p.entries[0];
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for v in &g.values {
        let genie_ir::ValueDef::Weight(h) = &v.def else { continue };
        if !keep(&v.name) || !seen.insert(h.clone()) || v.ty.numel().as_const().unwrap_or(0) < 2 {
            continue;
        }
        let bytes = p.weights.read(h).expect("weight bytes readable");
        let mut elems: Vec<Vec<u8>> = bytes.chunks(v.ty.dtype.size_bytes() as usize).map(<[u8]>::to_vec).collect();
        elems.sort();
        out.push((v.name.clone(), bytes.len() as u64, elems));
    }
    out
}

fn assert_weights_match(stem: &str, pt2: Program, onnx: Program, keep: impl Fn(&str) -> bool + Copy) {
    let a = weight_contents(pt2, keep);
    let mut b = weight_contents(onnx, |_| true);
    let mut matched_bytes = 0;
    for (name, bytes, elems) in &a {
        let found = b.iter().position(|(_, _, e)| e == elems);
        let Some(i) = found else {
            panic!("{stem}: parameter {name} ({bytes} bytes) has no ONNX weight with its contents")
        };
        matched_bytes += bytes;
        b.remove(i);
    }
    let total: u64 = a.iter().map(|(_, n, _)| n).sum();
    assert_eq!(matched_bytes, total, "{stem}: parameter bytes");
    for (name, bytes, _) in &b {
        println!("{stem}: ONNX constant {name} ({bytes} bytes) computed by the exporter");
    }
}

#[test]
fn gpt2_pt2_and_onnx_agree() {
    assert_parity("gpt2/prefill");
    assert_parity("gpt2/decode");
}

#[test]
fn llama_pt2_and_onnx_agree() {
    assert_parity("llama/prefill");
    assert_parity("llama/decode");
}

#[test]
fn bert_pt2_and_onnx_agree() {
    assert_parity("bert/model");
}

#[test]
fn vit_pt2_and_onnx_agree() {
    assert_parity("vit/model");
}

#[test]
fn resnet_pt2_and_onnx_agree() {
    let stem = "resnet/model";
    let (pt2, onnx) = (load(&format!("{stem}.pt2")), load(&format!("{stem}.onnx")));
    let (a, b) = (&pt2.entries[0], &onnx.entries[0]);
    assert_eq!(a.inputs.len(), b.inputs.len());
    for (va, vb) in a.inputs.iter().zip(&b.inputs) {
        assert!(same_shape(&a.value(*va).ty, &b.value(*vb).ty), "{stem}: inputs");
    }
    assert_eq!(a.outputs.len(), b.outputs.len(), "{stem}: output count");
    for (oa, ob) in a.outputs.iter().zip(&b.outputs) {
        assert!(same_shape(&a.value(oa.value).ty, &b.value(ob.value).ty), "{stem}: outputs");
    }
    // Batch norm is folded into the convolutions by the ONNX optimizer, which changes their
    // weights; the classifier-free ResNet then has no parameter left to compare by content.
    let convs = |g: &genie_ir::Graph| g.nodes.iter().filter(|n| n.op.contains("conv")).count();
    assert_eq!(convs(a), convs(b), "{stem}: one convolution per convolution");
}

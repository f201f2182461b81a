//! The `.pt2` reader on the committed fixtures (`testsuite/fixtures`, made by
//! `testsuite/scripts/make_fixtures.py`) and on corrupted archives.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use genie_frontends::pt2::{self, Pt2Error};
use genie_frontends::FrontendError;
use genie_ir::{Arg, DType, Dim, Graph, OutputKind, Program, ValueDef, WeightData, WeightHash};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testsuite/fixtures")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest parses")
}

/// Every `(fixture, graph, manifest entry)`.
fn graphs() -> Vec<(String, String, Value)> {
    let m = manifest();
    let mut out = Vec::new();
    for (fixture, entry) in m.as_object().expect("object") {
        for (graph, g) in entry["graphs"].as_object().expect("graphs") {
            out.push((fixture.clone(), graph.clone(), g.clone()));
        }
    }
    out
}

fn load(rel: &str) -> Program {
    let path = fixtures().join(rel);
    genie_frontends::load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_string()).collect()
}

/// Tensor name → (dtype, shape).
type TensorIndex = BTreeMap<String, (String, Vec<i64>)>;

/// The header of a safetensors file: its tensors and its metadata.
fn safetensors_header(path: &Path) -> (TensorIndex, BTreeMap<String, String>) {
    let bytes = std::fs::read(path).expect("safetensors file");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    let mut tensors = BTreeMap::new();
    let mut meta = BTreeMap::new();
    for (k, v) in header.as_object().expect("object") {
        if k == "__metadata__" {
            for (mk, mv) in v.as_object().expect("metadata") {
                meta.insert(mk.clone(), mv.as_str().unwrap_or_default().to_string());
            }
        } else {
            let shape = v["shape"].as_array().expect("shape").iter().map(|d| d.as_i64().expect("int")).collect();
            tensors.insert(k.clone(), (v["dtype"].as_str().expect("dtype").to_string(), shape));
        }
    }
    (tensors, meta)
}

fn safetensors_dtype(d: DType) -> &'static str {
    match d {
        DType::Float32 => "F32",
        DType::Int64 => "I64",
        DType::Bfloat16 => "BF16",
        DType::Bool => "BOOL",
        other => panic!("unexpected dtype {other}"),
    }
}

fn user_outputs(g: &Graph) -> Vec<&genie_ir::GraphOutput> {
    g.outputs.iter().filter(|o| o.kind == OutputKind::User).collect()
}

#[test]
fn every_fixture_imports_verifies_and_matches_the_manifest() {
    let all = graphs();
    assert!(all.len() >= 8, "expected the whole fixture set, got {}", all.len());
    for (fixture, graph, m) in all {
        let inputs_st = safetensors_header(&fixtures().join(format!("{fixture}/{graph}.inputs.safetensors")));
        let outputs_st = safetensors_header(&fixtures().join(format!("{fixture}/{graph}.outputs.safetensors")));
        for (suffix, out_key) in [("", "outputs"), ("_core", "core_outputs")] {
            let stem = format!("{graph}{suffix}");
            let p = load(&format!("{fixture}/{stem}.pt2"));
            let at = format!("{fixture}/{stem}.pt2");
            assert_eq!(p.name, stem, "{at}");
            assert_eq!(p.entries.len(), 1, "{at}");
            let g = &p.entries[0];
            assert_eq!(g.name, stem, "{at}");

            // Inputs: names, dtypes and symbolic shapes as torch.export recorded them.
            let want_inputs = m["inputs"].as_array().expect("inputs");
            let names: Vec<&str> = g.inputs.iter().map(|v| g.value(*v).name.as_str()).collect();
            let want_names: Vec<&str> = want_inputs.iter().map(|i| i["name"].as_str().expect("name")).collect();
            assert_eq!(names, want_names, "{at}");
            assert_eq!(inputs_st.1["order"].split(',').collect::<Vec<_>>(), want_names, "{at}");
            let mut bindings = BTreeMap::new();
            for (v, want) in g.inputs.iter().zip(want_inputs) {
                let ty = &g.value(*v).ty;
                assert_eq!(ty.dtype.torch_name(), want["dtype"].as_str().expect("dtype"), "{at}");
                let shown: Vec<String> = ty.shape.iter().map(Dim::to_string).collect();
                assert_eq!(shown, strs(&want["symbolic_shape"]), "{at} input {}", g.value(*v).name);
                let (st_dtype, st_shape) = &inputs_st.0[g.value(*v).name.as_str()];
                assert_eq!(st_dtype, safetensors_dtype(ty.dtype), "{at}");
                for (d, &n) in ty.shape.iter().zip(st_shape) {
                    if let [sym] = d.symbols().into_iter().collect::<Vec<_>>().as_slice() {
                        if *d == Dim::symbol(sym.clone()) {
                            bindings.insert(sym.clone(), n);
                        }
                    }
                }
            }
            // Symbols and their ranges.
            for (sym, range) in m["range_constraints"].as_object().expect("ranges") {
                let r = &g.symbols[sym];
                assert_eq!(Some(r.min), range[0].as_i64(), "{at} {sym}");
                assert_eq!(r.max, range[1].as_i64(), "{at} {sym}");
            }

            // User outputs: names in signature order, dtypes and (evaluated) shapes.
            let outs = user_outputs(g);
            let mutated_inputs: BTreeSet<String> = m["user_input_mutations"]
                .as_object()
                .expect("mutations")
                .values()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect();
            let outs: Vec<_> = outs.into_iter().filter(|o| !mutated_inputs.contains(&o.name)).collect();
            let names: Vec<String> = outs.iter().map(|o| o.name.clone()).collect();
            let want_names = if out_key == "outputs" {
                m["outputs"]
                    .as_array()
                    .expect("outputs")
                    .iter()
                    .map(|o| o["name"].as_str().expect("name").to_string())
                    .collect()
            } else {
                strs(&m[out_key])
            };
            assert_eq!(names, want_names, "{at}");
            assert_eq!(outs.len(), m["outputs"].as_array().expect("outputs").len(), "{at}: output count");
            for (o, want) in outs.iter().zip(m["outputs"].as_array().expect("outputs")) {
                let ty = &g.value(o.value).ty;
                assert_eq!(ty.dtype.torch_name(), want["dtype"].as_str().expect("dtype"), "{at} {}", o.name);
                let shape: Vec<i64> = ty.shape.iter().map(|d| d.eval(&bindings).expect("bound")).collect();
                let want_shape: Vec<i64> =
                    want["shape"].as_array().expect("shape").iter().map(|d| d.as_i64().expect("int")).collect();
                assert_eq!(shape, want_shape, "{at} {}", o.name);
            }
            if suffix.is_empty() {
                let keys: BTreeSet<&String> = outputs_st.0.keys().collect();
                assert_eq!(keys, names.iter().collect(), "{at}");
                assert_eq!(outputs_st.1["order"].split(',').collect::<Vec<_>>(), names, "{at}");
            }

            // Every node has its registry-inferred types equal to torch's recorded ones
            // (verify_program ran in load_file); weights are named by FQN and stored.
            for v in &g.values {
                if let ValueDef::Weight(h) = &v.def {
                    assert!(p.weights.contains(h), "{at} {}", v.name);
                    assert!(!v.name.starts_with("p_") && !v.name.starts_with("b_"), "{at}: {}", v.name);
                }
            }
        }
    }
}

#[test]
fn weights_dedupe_across_prefill_and_decode() {
    for fixture in ["gpt2", "llama"] {
        let dir = fixtures().join(fixture);
        let both = genie_frontends::load(&[dir.join("prefill.pt2"), dir.join("decode.pt2")]).expect("load both");
        let names: Vec<&str> = both.entries.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["prefill", "decode"]);
        let prefill = load(&format!("{fixture}/prefill.pt2"));
        // The decode graph adds no weight the prefill graph does not have.
        assert_eq!(both.weights.len(), prefill.weights.len(), "{fixture}");
        let hashes = |g: &Graph| -> BTreeMap<String, WeightHash> {
            g.values
                .iter()
                .filter_map(|v| match &v.def {
                    ValueDef::Weight(h) => Some((v.name.clone(), h.clone())),
                    _ => None,
                })
                .collect()
        };
        let (p, d) = (hashes(&both.entries[0]), hashes(&both.entries[1]));
        assert!(!p.is_empty());
        assert_eq!(p, d, "{fixture}: same FQNs with the same content hashes");
        // The core (decomposed) export shares them too.
        let core = load(&format!("{fixture}/decode_core.pt2"));
        assert_eq!(hashes(&core.entries[0]), d, "{fixture}");
    }
}

#[test]
fn weights_are_referenced_in_place_and_hash_to_their_bytes() {
    let p = load("gpt2/prefill.pt2");
    let archive = std::fs::canonicalize(fixtures().join("gpt2/prefill.pt2")).expect("path");
    let mut external = 0;
    for (hash, entry) in p.weights.iter() {
        if let WeightData::External { path, .. } = &entry.data {
            assert_eq!(path, &archive);
            external += 1;
        }
        let bytes = p.weights.read(hash).expect("read weight");
        assert_eq!(&WeightHash::of(&entry.ty, &bytes), hash);
    }
    assert_eq!(external, p.weights.len(), "every gpt2 weight is a contiguous slice of the archive");
}

#[test]
fn read_bytes_matches_read() {
    let path = fixtures().join("llama/decode.pt2");
    let from_file = pt2::read(&path).expect("read");
    let bytes = std::fs::read(&path).expect("bytes");
    let from_bytes = pt2::read_bytes("decode", &bytes).expect("read_bytes");
    assert_eq!(from_file.entries, from_bytes.entries);
    let keys = |p: &Program| p.weights.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&from_file), keys(&from_bytes));
    assert!(from_bytes.weights.iter().all(|(_, e)| matches!(e.data, WeightData::Inline(_))));
}

#[test]
fn module_paths_and_sources_are_filled() {
    let p = load("gpt2/prefill.pt2");
    let g = &p.entries[0];
    let linears: Vec<_> = g.nodes.iter().filter(|n| n.op == "aten.linear.default").collect();
    assert!(!linears.is_empty());
    for n in &linears {
        let path = n.ann.module_path.as_deref().expect("linear has a module path");
        assert!(path.starts_with("model."), "{path}");
    }
    let paths: BTreeSet<&str> = g.nodes.iter().filter_map(|n| n.ann.module_path.as_deref()).collect();
    for want in ["model.h.0.attn.c_attn", "model.h.1.mlp.0", "model.lm_head", "model.wte"] {
        assert!(paths.contains(want), "{want} in {paths:?}");
    }
    assert!(g.nodes.iter().all(|n| n.ann.source.is_some()), "every node has a source");
    let sdpa = g.nodes.iter().find(|n| n.op == "aten.scaled_dot_product_attention.default").expect("sdpa");
    assert!(sdpa.ann.source.as_deref().is_some_and(|s| s.starts_with("make_fixtures.py:")), "{:?}", sdpa.ann.source);
    assert_eq!(sdpa.ann.module_path.as_deref(), Some("model.h.0"));
}

#[test]
fn inplace_ops_get_fresh_values_that_later_uses_read() {
    let p = load("resnet/model.pt2");
    let g = &p.entries[0];
    let inplace: Vec<usize> = (0..g.nodes.len()).filter(|&i| g.nodes[i].op == "aten.add_.Tensor").collect();
    assert_eq!(inplace.len(), 2, "the default ResNet export keeps `hidden_state += residual`");
    for &i in &inplace {
        let n = &g.nodes[i];
        let Arg::Tensor(old) = n.args[0] else { panic!("self is a tensor") };
        let new = n.outputs[0];
        assert_ne!(old, new);
        for later in &g.nodes[i + 1..] {
            assert!(!later.inputs().contains(&old), "{} reads the value {} overwrote", later.op, n.op);
        }
        assert!(g.nodes[i + 1..].iter().any(|later| later.inputs().contains(&new)));
    }
    // The functional core export has no in-place op left.
    let core = load("resnet/model_core.pt2");
    assert!(core.entries[0].nodes.iter().all(|n| !n.op.contains("_.")));
}

#[test]
fn buffer_and_input_mutations_are_explicit_outputs() {
    for stem in ["model", "model_core"] {
        let p = load(&format!("edge/{stem}.pt2"));
        let g = &p.entries[0];
        let steps =
            g.outputs.iter().find(|o| o.kind == OutputKind::BufferMutation { buffer: "steps".into() }).expect("steps");
        assert_eq!(g.value(steps.value).ty.to_string(), "i64[]");
        let producer = g.producer(steps.value).expect("computed");
        assert!(g.node(producer).op.starts_with("aten.add"), "{stem}");
        // The new contents of the user input `x` (written by `x.mul_(2.0)`).
        let x = g.outputs.iter().find(|o| o.name == "x").expect("x output");
        assert_eq!(x.kind, OutputKind::User);
        assert!(g.node(g.producer(x.value).expect("computed")).op.starts_with("aten.mul"), "{stem}");
        // Later reads of `x` see the new value.
        let input = g.inputs[0];
        let readers: Vec<&str> =
            g.nodes.iter().filter(|n| n.inputs().contains(&input)).map(|n| n.op.as_str()).collect();
        assert_eq!(readers.len(), 1, "{stem}: only the mul reads the original x: {readers:?}");
    }
}

#[test]
fn shared_strided_offset_and_empty_weight_views() {
    let p = load("edge/model.pt2");
    let g = &p.entries[0];
    let weight = |name: &str| {
        let v = g.values.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("{name}"));
        let ValueDef::Weight(h) = &v.def else { panic!("{name} is a weight") };
        (p.weights.get(h).expect("stored").clone(), p.weights.read(h).expect("bytes"))
    };
    let f32s = |b: &[u8]| b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect::<Vec<_>>();
    let (w, w_bytes) = weight("lin.weight");
    let WeightData::External { offset: w_off, .. } = w.data else { panic!("lin.weight is in place") };
    let w = f32s(&w_bytes);
    // `lin_t` is the transposed view of lin.weight's storage: not a slice, so copied inline.
    let (t, t_bytes) = weight("lin_t");
    assert!(matches!(t.data, WeightData::Inline(_)));
    assert_eq!(t.ty.to_string(), "f32[6, 4]");
    let t = f32s(&t_bytes);
    for i in 0..4 {
        for j in 0..6 {
            assert_eq!(t[j * 4 + i], w[i * 6 + j]);
        }
    }
    // `rows` is lin.weight[1:3]: a slice at storage offset 6, referenced in place.
    let (r, r_bytes) = weight("rows");
    let WeightData::External { offset, len, .. } = r.data else { panic!("rows is in place") };
    assert_eq!((offset - w_off, len), (6 * 4, 2 * 6 * 4));
    assert_eq!(f32s(&r_bytes), w[6..18]);
    let (e, e_bytes) = weight("empty");
    assert_eq!(e.ty.to_string(), "f32[0, 4]");
    assert!(e_bytes.is_empty());
    let (s, _) = weight("scale");
    assert_eq!(s.ty.to_string(), "bf16[4]");
}

#[test]
fn symbolic_sequence_and_cache_lengths() {
    let p = load("llama/decode.pt2");
    let g = &p.entries[0];
    let past: Vec<_> = g.inputs.iter().skip(1).map(|v| &g.value(*v).ty).collect();
    assert_eq!(past.len(), 4);
    let sym = past[0].shape[2].clone();
    assert!(!sym.is_const());
    assert!(past.iter().all(|t| t.shape[2] == sym), "one cache length for every layer");
    let name = sym.to_string();
    assert_eq!(g.symbols[&name].min, 2);
    assert_eq!(g.symbols[&name].max, Some(63));
    // The present K/V grow by one position.
    for o in g.outputs.iter().skip(1) {
        assert_eq!(g.value(o.value).ty.shape[2], sym.add(&Dim::constant(1)));
    }
    // Sym-int arithmetic is folded into attributes: the RoPE table slice starts at the cache length.
    let slice = g.nodes.iter().find(|n| n.op == "aten.slice.Tensor").expect("slice");
    assert_eq!(slice.args[2], Arg::SymInt(sym.clone()));
    assert_eq!(slice.args[3], Arg::SymInt(sym.add(&Dim::constant(1))));

    let p = load("gpt2/prefill.pt2");
    let g = &p.entries[0];
    let t = &g.value(g.inputs[0]).ty.shape[1];
    let r = &g.symbols[&t.to_string()];
    assert_eq!((r.min, r.max), (2, None), "Dim.AUTO: unbounded above");
}

// ------------------------------------------------------------------ corrupt inputs

/// Rewrite an archive member by member (`None` drops a member), stored uncompressed.
fn rewrite(src: &Path, mut edit: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut zin = zip::ZipArchive::new(std::fs::File::open(src).expect("open")).expect("zip");
    let mut zout = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).expect("member");
        let name = f.name().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("read member");
        if let Some(data) = edit(&name, data) {
            zout.start_file(name, opts).expect("start");
            zout.write_all(&data).expect("write");
        }
    }
    zout.finish().expect("finish").into_inner()
}

/// Write `bytes` as `name` in a temp dir and import it through `load_file`; the error must name
/// the file.
fn import_err(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> Pt2Error {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    match genie_frontends::load_file(&path) {
        Ok(_) => panic!("{name} imported"),
        Err(FrontendError::Pt2 { path: p, source }) => {
            let text = FrontendError::Pt2 { path: p.clone(), source: pt2::read(&path).expect_err("again") }.to_string();
            assert!(text.contains(name), "message names the file: {text}");
            assert_eq!(p, path);
            source
        }
        Err(other) => panic!("{name}: wrong error {other}"),
    }
}

fn small_fixture() -> PathBuf {
    fixtures().join("gpt2/prefill.pt2")
}

#[test]
fn truncated_archive_is_not_a_zip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(small_fixture()).expect("read");
    for cut in [bytes.len() / 2, bytes.len() - 10, 100] {
        let err = import_err(&dir, "truncated.pt2", &bytes[..cut]);
        assert!(matches!(err, Pt2Error::NotZip(_)), "cut at {cut}: {err}");
    }
}

#[test]
fn random_bytes_and_empty_files_are_not_zips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(matches!(import_err(&dir, "noise.pt2", &noise), Pt2Error::NotZip(_)));
    assert!(matches!(import_err(&dir, "empty.pt2", &[]), Pt2Error::NotZip(_)));
}

#[test]
fn zip_without_models_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let no_models = rewrite(&small_fixture(), |name, data| (!name.contains("/models/")).then_some(data));
    match import_err(&dir, "no_models.pt2", &no_models) {
        Pt2Error::MissingMember { member } => assert_eq!(member, "models/model.json"),
        other => panic!("{other}"),
    }
    // A zip with unrelated content is not an archive at all.
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    z.start_file("hello.txt", zip::write::SimpleFileOptions::default()).expect("start");
    z.write_all(b"hello").expect("write");
    let other = z.finish().expect("finish").into_inner();
    assert!(matches!(import_err(&dir, "hello.pt2", &other), Pt2Error::NotPt2 { .. }));
}

#[test]
fn bad_json_names_the_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = rewrite(&small_fixture(), |name, data| {
        Some(if name.ends_with("models/model.json") { b"{\"graph_module\": [".to_vec() } else { data })
    });
    let err = import_err(&dir, "bad_json.pt2", &bad);
    let Pt2Error::Json { member, .. } = &err else { panic!("{err}") };
    assert_eq!(member, "models/model.json");
    assert!(err.to_string().contains("models/model.json"));
    // Well-formed JSON that is not an exported program is a JSON error too.
    let wrong = rewrite(&small_fixture(), |name, data| {
        Some(if name.ends_with("data/weights/model_weights_config.json") { b"{\"config\": 3}".to_vec() } else { data })
    });
    match import_err(&dir, "wrong_schema.pt2", &wrong) {
        Pt2Error::Json { member, .. } => assert_eq!(member, "data/weights/model_weights_config.json"),
        other => panic!("{other}"),
    }
}

#[test]
fn missing_weight_member_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = rewrite(&small_fixture(), |name, data| (!name.ends_with("data/weights/weight_0")).then_some(data));
    match import_err(&dir, "missing_weight.pt2", &missing) {
        Pt2Error::MissingMember { member } => assert_eq!(member, "data/weights/weight_0"),
        other => panic!("{other}"),
    }
}

#[test]
fn corrupt_weight_bytes_fail_the_crc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(small_fixture()).expect("read");
    // Weight data starts at the first 64-byte aligned offset after the first local header.
    let first = {
        let mut z = zip::ZipArchive::new(Cursor::new(&bytes[..])).expect("zip");
        let i = (0..z.len()).find(|&i| z.by_index_raw(i).expect("m").name().ends_with("data/weights/weight_0"));
        let start = z.by_index_raw(i.expect("weight_0")).expect("m").data_start();
        start as usize
    };
    bytes[first + 3] ^= 0x40;
    match import_err(&dir, "flipped.pt2", &bytes) {
        Pt2Error::BadMember { member, reason } => {
            assert_eq!(member, "data/weights/weight_0");
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn unknown_ops_are_all_reported_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = rewrite(&small_fixture(), |name, data| {
        if !name.ends_with("models/model.json") {
            return Some(data);
        }
        let text = String::from_utf8(data).expect("utf8");
        Some(
            text.replace("torch.ops.aten.layer_norm.default", "torch.ops.aten.frobnicate.default")
                .replace("torch.ops.aten.gelu.default", "torch.ops.genie_test.mystery.default")
                .replacen("torch.ops.aten.linear.default", "torch.ops.torchvision.roi_align.default", 1)
                .into_bytes(),
        )
    });
    let err = import_err(&dir, "unknown_ops.pt2", &unknown);
    let Pt2Error::UnsupportedOps { member, ops } = &err else { panic!("{err}") };
    assert_eq!(member, "models/model.json");
    let counts: BTreeMap<&str, usize> = ops.ops.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("aten.frobnicate.default", 5),
            ("genie_test.mystery.default", 2),
            ("torchvision.roi_align.default", 1)
        ])
    );
    assert!(ops.ops["genie_test.mystery.default"].contains(&"gelu".to_string()));
    let text = err.to_string();
    assert!(text.contains("aten.frobnicate.default ×5") && text.contains("layer_norm_1"), "{text}");
    // A library's custom op names its namespace and the library that likely registered it.
    assert!(text.contains("namespace `torchvision`, registered by torchvision"), "{text}");
    assert!(text.contains("namespace `genie_test`"), "{text}");
    assert!(!text.lines().any(|l| l.contains("frobnicate") && l.contains("namespace")), "{text}");
}

#[test]
fn snapshot_of_edge_dump() {
    // From memory, so weights are inline and the dump does not depend on the checkout path.
    let bytes = std::fs::read(fixtures().join("edge/model.pt2")).expect("read");
    let p = pt2::read_bytes("edge", &bytes).expect("import");
    genie_ir::verify_program(&p).expect("verifies");
    insta::assert_snapshot!(genie_ir::render::dump_program(&p));
}

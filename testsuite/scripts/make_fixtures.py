"""Export the small test models Genie's importers and end-to-end tests run on.

Every fixture is a directory under `testsuite/fixtures/` holding, for each graph `<g>` of the
model (`model` for single-graph models, `prefill` and `decode` for the decoder LLMs):

- `<g>.pt2`          torch.export.save of the default export (training IR, may hold in-place ops)
- `<g>_core.pt2`     the same after `ep.run_decompositions()` (core ATen, functional)
- `<g>.onnx`         torch.onnx.export(..., dynamo=True, opset_version=18)
- `<g>.inputs.safetensors`, `<g>.outputs.safetensors`: example inputs and eager PyTorch
  outputs, keyed by the user input/output names of the default export (`<g>.pt2`). The metadata
  field `order` lists the keys in signature order.

`manifest.json` describes every graph: input names, dtypes, example and symbolic shapes; output
names of the default export, the core export and the ONNX model (same order); tolerances.

The families: GPT-2-style and LLaMA-style (grouped-query attention, RoPE, RMSNorm, SwiGLU)
decoders with prefill and decode-with-KV-cache graphs (decode takes the past K/V of every layer
as inputs, `cat`s the new position along the sequence dim and returns the present K/V; sequence
lengths are `Dim.AUTO`, with one cache length shared by every layer), a BERT encoder, a ResNet (conv + batch norm; its default
export holds in-place `add_`) and a ViT, the last three from `transformers` with tiny configs.
`edge` (no ONNX) holds the weight layouts and mutations the `.pt2` reader must get right.
Weights are random with fixed seeds; nothing is downloaded. Running the script twice gives the
same bytes.

Usage: .venv/bin/python testsuite/scripts/make_fixtures.py [OUT_DIR]
"""
import json
import math
import os
import re
import shutil
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.export import Dim

warnings.filterwarnings("ignore")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VOCAB, D_MODEL, N_HEAD, N_KV_HEAD, N_LAYER, D_FF, MAX_POS = 128, 32, 4, 2, 2, 64, 64
HEAD_DIM = D_MODEL // N_HEAD
PROMPT_LEN = 5


# ---------------------------------------------------------------- GPT-2 style decoder

class Gpt2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(D_MODEL)
        self.attn = nn.ModuleDict({"c_attn": nn.Linear(D_MODEL, 3 * D_MODEL), "c_proj": nn.Linear(D_MODEL, D_MODEL)})
        self.ln_2 = nn.LayerNorm(D_MODEL)
        self.mlp = nn.Sequential(nn.Linear(D_MODEL, D_FF), nn.GELU(approximate="tanh"), nn.Linear(D_FF, D_MODEL))

    def forward(self, x, past_k=None, past_v=None):
        b, t, _ = x.shape
        q, k, v = self.attn["c_attn"](self.ln_1(x)).split(D_MODEL, dim=2)
        q = q.view(b, t, N_HEAD, HEAD_DIM).transpose(1, 2)
        k = k.view(b, t, N_HEAD, HEAD_DIM).transpose(1, 2)
        v = v.view(b, t, N_HEAD, HEAD_DIM).transpose(1, 2)
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past_k is None)
        y = y.transpose(1, 2).reshape(b, t, D_MODEL)
        x = x + self.attn["c_proj"](y)
        x = x + self.mlp(self.ln_2(x))
        return x, k, v


class Gpt2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, D_MODEL)
        self.wpe = nn.Embedding(MAX_POS, D_MODEL)
        self.h = nn.ModuleList(Gpt2Block() for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(D_MODEL)
        self.lm_head = nn.Linear(D_MODEL, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2

    def run(self, input_ids, past):
        start = 0 if past is None else past[0][0].shape[2]
        pos = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(pos)
        present = []
        for i, block in enumerate(self.h):
            pk, pv = (None, None) if past is None else past[i]
            x, k, v = block(x, pk, pv)
            present += [k, v]
        return (self.lm_head(self.ln_f(x)), *present)


# ---------------------------------------------------------------- LLaMA style decoder

class RmsNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = RmsNorm(D_MODEL)
        self.self_attn = nn.ModuleDict({
            "q_proj": nn.Linear(D_MODEL, N_HEAD * HEAD_DIM, bias=False),
            "k_proj": nn.Linear(D_MODEL, N_KV_HEAD * HEAD_DIM, bias=False),
            "v_proj": nn.Linear(D_MODEL, N_KV_HEAD * HEAD_DIM, bias=False),
            "o_proj": nn.Linear(D_MODEL, D_MODEL, bias=False),
        })
        self.post_attention_layernorm = RmsNorm(D_MODEL)
        self.mlp = nn.ModuleDict({
            "gate_proj": nn.Linear(D_MODEL, D_FF, bias=False),
            "up_proj": nn.Linear(D_MODEL, D_FF, bias=False),
            "down_proj": nn.Linear(D_FF, D_MODEL, bias=False),
        })

    def forward(self, x, cos, sin, past_k=None, past_v=None):
        b, t, _ = x.shape
        a = self.self_attn
        h = self.input_layernorm(x)
        q = a["q_proj"](h).view(b, t, N_HEAD, HEAD_DIM).transpose(1, 2)
        k = a["k_proj"](h).view(b, t, N_KV_HEAD, HEAD_DIM).transpose(1, 2)
        v = a["v_proj"](h).view(b, t, N_KV_HEAD, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        # Grouped-query attention: each K/V head serves N_HEAD // N_KV_HEAD query heads.
        rep = N_HEAD // N_KV_HEAD
        s = k.shape[2]
        kr = k[:, :, None, :, :].expand(b, N_KV_HEAD, rep, s, HEAD_DIM).reshape(b, N_HEAD, s, HEAD_DIM)
        vr = v[:, :, None, :, :].expand(b, N_KV_HEAD, rep, s, HEAD_DIM).reshape(b, N_HEAD, s, HEAD_DIM)
        y = F.scaled_dot_product_attention(q, kr, vr, is_causal=past_k is None)
        x = x + a["o_proj"](y.transpose(1, 2).reshape(b, t, D_MODEL))
        h = self.post_attention_layernorm(x)
        m = self.mlp
        x = x + m["down_proj"](F.silu(m["gate_proj"](h)) * m["up_proj"](h))
        return x, k, v


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D_MODEL)
        self.layers = nn.ModuleList(LlamaBlock() for _ in range(N_LAYER))
        self.norm = RmsNorm(D_MODEL)
        self.lm_head = nn.Linear(D_MODEL, VOCAB, bias=False)
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
        freqs = torch.outer(torch.arange(MAX_POS).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("rope_cos", emb.cos(), persistent=False)
        self.register_buffer("rope_sin", emb.sin(), persistent=False)

    def run(self, input_ids, past):
        t = input_ids.shape[1]
        start = 0 if past is None else past[0][0].shape[2]
        torch._check(start + t <= MAX_POS)  # so the table slice has length t, not min(t, ...)
        cos = self.rope_cos[start:start + t]
        sin = self.rope_sin[start:start + t]
        x = self.embed_tokens(input_ids)
        present = []
        for i, layer in enumerate(self.layers):
            pk, pv = (None, None) if past is None else past[i]
            x, k, v = layer(x, cos, sin, pk, pv)
            present += [k, v]
        return (self.lm_head(self.norm(x)), *present)


# ---------------------------------------------------------------- prefill / decode wrappers

class Prefill(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model.run(input_ids, None)


class Decode(nn.Module):
    """One decode step: the new token and the past K/V of both layers in, logits and present K/V out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, past_key_0, past_value_0, past_key_1, past_value_1):
        # Every layer's cache has the same length: one symbol, not one per input.
        for p in (past_value_0, past_key_1, past_value_1):
            torch._check(p.shape[2] == past_key_0.shape[2])
        return self.model.run(input_ids, [(past_key_0, past_value_0), (past_key_1, past_value_1)])


# ---------------------------------------------------------------- transformers models

class HfOutputs(nn.Module):
    """Return a plain tuple from a transformers vision model."""

    def __init__(self, model, fields):
        super().__init__()
        self.model = model
        self.fields = fields

    def forward(self, pixel_values):
        out = self.model(pixel_values)
        return tuple(getattr(out, f) for f in self.fields)


class BertEncoder(HfOutputs):
    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state, out.pooler_output


def bert():
    import transformers as tf
    cfg = tf.BertConfig(vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=N_LAYER, num_attention_heads=N_HEAD,
                        intermediate_size=D_FF, max_position_embeddings=MAX_POS)
    return BertEncoder(tf.BertModel(cfg, add_pooling_layer=True), None)


def vit():
    import transformers as tf
    cfg = tf.ViTConfig(hidden_size=D_MODEL, num_hidden_layers=N_LAYER, num_attention_heads=N_HEAD,
                       intermediate_size=D_FF, image_size=32, patch_size=8, num_channels=3)
    return HfOutputs(tf.ViTModel(cfg), ["last_hidden_state", "pooler_output"])


def resnet():
    import transformers as tf
    cfg = tf.ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                          layer_type="bottleneck")
    return HfOutputs(tf.ResNetModel(cfg), ["last_hidden_state", "pooler_output"])


# ---------------------------------------------------------------- importer edge cases

class Edge(nn.Module):
    """Weights and mutations the `.pt2` reader must get right: buffers that are views of a
    parameter's storage (transposed, and sliced at an offset), a zero-element buffer, a bfloat16
    parameter, an int64 buffer updated in place, and an in-place write into a user input."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)
        self.register_buffer("lin_t", self.lin.weight.data.t())  # non-contiguous view, shares storage
        self.register_buffer("rows", self.lin.weight.data[1:3])  # contiguous slice at storage offset 6
        self.register_buffer("empty", torch.zeros(0, 4))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.scale = nn.Parameter(torch.randn(4).to(torch.bfloat16))

    def forward(self, x):
        self.steps.add_(1)
        x.mul_(2.0)
        y = self.lin(x) + x @ self.lin_t
        y = torch.cat([y, self.empty], dim=0) * self.scale.float()
        return y, x @ self.rows.t()


# ---------------------------------------------------------------- export machinery

def flat(x):
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for item in x for t in flat(item)]


def sanitize_stack_traces(ep):
    """Make the archive deterministic: stack traces independent of where the checkout and the
    venv are, and no `from_node` provenance (it records Python object ids)."""
    for node in ep.graph.nodes:
        node.meta.pop("from_node", None)
        trace = node.meta.get("stack_trace")
        if trace:
            trace = re.sub(r'File "[^"]*site-packages/', 'File "', trace)
            trace = trace.replace(REPO + os.sep, "")
            node.meta["stack_trace"] = trace


def bound(v):
    """A range bound as an int, or None when unbounded."""
    text = str(v)
    return int(text) if text.lstrip("-").isdigit() else None


def symbolic_shape(t):
    return [str(d) for d in t.shape]


def export_graph(out_dir, stem, module, inputs, dynamic, tol, onnx_too=True):
    """Export one graph in every form and return its manifest entry."""
    module.eval()
    names = list(inputs)

    def fresh_args():
        return tuple(inputs[n].clone() for n in names)

    args = fresh_args()
    state = {k: v.clone() for k, v in module.state_dict(keep_vars=False).items()}
    with torch.no_grad():
        eager = flat(module(*fresh_args()))
    module.load_state_dict(state)  # undo in-place buffer updates made by the eager run
    ep = torch.export.export(module, args, dynamic_shapes=dynamic)
    sanitize_stack_traces(ep)
    user_inputs = ep.graph_signature.user_inputs
    user_outputs = ep.graph_signature.user_outputs
    assert list(user_inputs) == names, (user_inputs, names)
    assert len(user_outputs) == len(eager), (user_outputs, len(eager))
    torch.export.save(ep, os.path.join(out_dir, f"{stem}.pt2"))
    core = ep.run_decompositions()
    sanitize_stack_traces(core)
    torch.export.save(core, os.path.join(out_dir, f"{stem}_core.pt2"))

    # The exported programs must reproduce eager PyTorch.
    for prog in (ep, core):
        with torch.no_grad():
            got = flat(prog.module()(*fresh_args()))
        for a, b in zip(got, eager):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)

    onnx_inputs, onnx_outputs = (export_onnx(out_dir, stem, module, inputs, names, dynamic, eager, tol)
                                 if onnx_too else (None, None))
    save_file({n: t.contiguous() for n, t in inputs.items()}, os.path.join(out_dir, f"{stem}.inputs.safetensors"),
              metadata={"order": ",".join(names)})
    save_file({n: t.contiguous() for n, t in zip(user_outputs, eager)},
              os.path.join(out_dir, f"{stem}.outputs.safetensors"), metadata={"order": ",".join(user_outputs)})

    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    entry = {
        "inputs": [
            {
                "name": n,
                "dtype": str(inputs[n].dtype).removeprefix("torch."),
                "shape": list(inputs[n].shape),
                "symbolic_shape": symbolic_shape(placeholders[n].meta["val"]),
            }
            for n in names
        ],
        "outputs": [
            {"name": n, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
            for n, t in zip(user_outputs, eager)
        ],
        "core_outputs": list(core.graph_signature.user_outputs),
        "range_constraints": {str(k): [bound(v.lower), bound(v.upper)] for k, v in ep.range_constraints.items()},
        # Mutations as the functional (core) signature lists them: output name -> buffer / input.
        "buffer_mutations": dict(core.graph_signature.buffers_to_mutate),
        "user_input_mutations": dict(core.graph_signature.user_inputs_to_mutate),
        "tolerance": tol,
    }
    if onnx_too:
        entry["onnx_inputs"] = onnx_inputs
        entry["onnx_outputs"] = onnx_outputs
    return entry


def export_onnx(out_dir, stem, module, inputs, names, dynamic, eager, tol):
    """Export to ONNX and check it against eager PyTorch with onnxruntime."""
    args = tuple(inputs[n].clone() for n in names)
    onnx_path = os.path.join(out_dir, f"{stem}.onnx")
    onnx_prog = torch.onnx.export(module, args, onnx_path, dynamo=True, opset_version=18, dynamic_shapes=dynamic,
                                  external_data=False, verbose=False)
    import onnx
    import onnxruntime as ort
    model = onnx.load(onnx_path)
    onnx_inputs = [i.name for i in model.graph.input]
    onnx_outputs = [o.name for o in model.graph.output]
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: inputs[n].numpy() for n in onnx_inputs})
    for a, b in zip(got, eager):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=tol, atol=tol)
    del onnx_prog
    return onnx_inputs, onnx_outputs


def llm(out_dir, family, model):
    torch.manual_seed(1)
    model.eval()
    ids = torch.randint(0, VOCAB, (1, PROMPT_LEN))
    seq = Dim.AUTO
    entries = {}
    entries["prefill"] = export_graph(out_dir, "prefill", Prefill(model), {"input_ids": ids}, ({1: seq},), 1e-4)
    with torch.no_grad():
        logits, *present = Prefill(model)(ids)
    nxt = logits[:, -1:].argmax(-1)
    inputs = {"input_ids": nxt}
    for i in range(N_LAYER):
        inputs[f"past_key_{i}"] = present[2 * i].contiguous()
        inputs[f"past_value_{i}"] = present[2 * i + 1].contiguous()
    dyn = (None,) + tuple({2: Dim.AUTO} for _ in range(2 * N_LAYER))
    entries["decode"] = export_graph(out_dir, "decode", Decode(model), inputs, dyn, 1e-4)
    return {"family": family, "graphs": entries}


# ---------------------------------------------------------------- greedy generation references
#
# Nothing above the model classes' last line may move: the exported programs record the source
# line of every traced op (stack traces), so new code goes below them to keep the committed
# fixtures byte-identical.
#
# The decoder families also get `generate.safetensors`, the eager PyTorch greedy reference for
# `genie generate`: `prompt` int64 [1, P], `tokens` int64 [STEPS], `logits` float32 [STEPS, VOCAB]
# (the row each token is the argmax of: step 0 from prefill's last position, step i from decode
# call i). The prompts are fixed, not drawn (nothing here touches the RNG), and were picked among
# random candidates for a greedy sequence that is not one token repeated and a wide top-1/top-2
# logit margin at every step, so a token-for-token comparison is not decided by rounding.

GENERATE_STEPS = 16
GENERATE_PROMPTS = {"gpt2": [11, 17, 116, 44, 50], "llama": [45, 122, 58, 59, 23]}
MIN_MARGIN = 1e-3


def greedy(prefill, decode, prompt, steps):
    """Greedy generation the way `genie generate` runs it: prefill on the prompt, argmax of the
    last position, then `steps - 1` decode calls fed the previous token and the present K/V.
    Returns the new tokens and the logits row each was chosen from."""
    with torch.no_grad():
        logits, *present = prefill(prompt)
        rows = [logits[0, -1]]
        tokens = [int(rows[-1].argmax())]
        for _ in range(1, steps):
            ids = torch.tensor([[tokens[-1]]], dtype=torch.int64)
            logits, *present = decode(ids, *(p.contiguous() for p in present))
            rows.append(logits[0, -1])
            tokens.append(int(rows[-1].argmax()))
    return torch.tensor(tokens, dtype=torch.int64), torch.stack(rows).float().contiguous()


def covers(constraint, lo, hi):
    """Whether an exported symbol's range [lower, upper] (None: unbounded) holds lo..=hi."""
    lower, upper = constraint
    return (lower is None or lower <= lo) and (upper is None or upper >= hi)


def save_sorted(tensors, path, metadata):
    """A safetensors file with its header keys sorted. `safetensors.torch.save_file` writes the
    metadata in hash-map order, which changes from run to run when there is more than one key."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    codes = {torch.int64: "I64", torch.float32: "F32"}
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        blob = t.numpy().tobytes()  # little-endian on every platform the fixtures are made on
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        f.writelines(blobs)


def generate_reference(out_dir, family, model, entry):
    """Write `generate.safetensors`: the eager greedy reference, checked against the saved
    exported graphs chained. Draws no random numbers."""
    prompt = torch.tensor([GENERATE_PROMPTS[family]], dtype=torch.int64)
    p, steps = prompt.shape[1], GENERATE_STEPS
    assert int(prompt.max()) < VOCAB and p + steps <= MAX_POS
    # The prompt must lie in prefill's sequence range, and every cache length decode sees
    # (p .. p + steps - 2, and p + steps - 1 for the present it returns) in decode's.
    (pre_range,) = entry["graphs"]["prefill"]["range_constraints"].values()
    (dec_range,) = entry["graphs"]["decode"]["range_constraints"].values()
    assert covers(pre_range, p, p), (family, pre_range, p)
    assert covers(dec_range, p, p + steps), (family, dec_range, p + steps)

    model.eval()
    save_greedy_reference(out_dir, family, greedy, Prefill(model), Decode(model), prompt)


def save_greedy_reference(out_dir, family, loop, prefill, decode, prompt):
    """Run the greedy `loop` eagerly, check that the tokens vary, that no step is a near tie and
    that the saved `prefill.pt2` and `decode.pt2` chained give the same tokens (logits within
    rtol 1e-4 / atol 1e-5), and write `generate.safetensors`."""
    steps = GENERATE_STEPS
    p = prompt.shape[1]
    tokens, logits = loop(prefill, decode, prompt, steps)
    top2 = logits.topk(2, dim=-1).values
    margins = top2[:, 0] - top2[:, 1]
    assert len(set(tokens.tolist())) > 1, (family, tokens)
    assert float(margins.min()) >= MIN_MARGIN, (family, margins)

    # The exported graphs, chained, must choose the same tokens.
    pre = torch.export.load(os.path.join(out_dir, "prefill.pt2")).module()
    dec = torch.export.load(os.path.join(out_dir, "decode.pt2")).module()
    got_tokens, got_logits = loop(pre, dec, prompt, steps)
    assert torch.equal(got_tokens, tokens), (family, got_tokens, tokens)
    torch.testing.assert_close(got_logits, logits, rtol=1e-4, atol=1e-5)

    meta = {"order": "prompt,tokens,logits", "prompt_len": str(p), "steps": str(steps), "vocab": str(VOCAB),
            "min_margin": f"{float(margins.min()):.6g}"}
    save_sorted({"prompt": prompt, "tokens": tokens, "logits": logits},
                os.path.join(out_dir, "generate.safetensors"), meta)
    print(f"{family} generate: prompt {prompt[0].tolist()} -> {tokens.tolist()}")
    print(f"{family} generate: top-2 margins {[round(float(m), 4) for m in margins]}")


def single(out_dir, family, module, inputs, dynamic, tol=1e-4, onnx_too=True):
    entry = export_graph(out_dir, "model", module, inputs, dynamic, tol, onnx_too)
    return {"family": family, "graphs": {"model": entry}}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "testsuite", "fixtures")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    manifest = {}

    def fresh(name):
        d = os.path.join(out, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    for name, cls in (("gpt2", Gpt2), ("llama", Llama)):
        torch.manual_seed(0)
        model = cls()
        manifest[name] = llm(fresh(name), "decoder", model)
        generate_reference(os.path.join(out, name), name, model, manifest[name])

    torch.manual_seed(0)
    m = bert()
    torch.manual_seed(2)
    ids = torch.randint(0, VOCAB, (1, 8))
    mask = torch.ones(1, 8, dtype=torch.int64)
    mask[0, 6:] = 0
    manifest["bert"] = single(fresh("bert"), "encoder", m, {"input_ids": ids, "attention_mask": mask},
                              ({1: Dim.AUTO}, {1: Dim.AUTO}))

    torch.manual_seed(0)
    m = resnet()
    torch.manual_seed(3)
    # Non-trivial running statistics, so batch norm is not the identity.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
    manifest["resnet"] = single(fresh("resnet"), "cnn", m, {"pixel_values": torch.randn(1, 3, 32, 32)}, None)

    torch.manual_seed(0)
    m = vit()
    torch.manual_seed(4)
    manifest["vit"] = single(fresh("vit"), "vision", m, {"pixel_values": torch.randn(1, 3, 32, 32)}, None)

    torch.manual_seed(5)
    manifest["edge"] = single(fresh("edge"), "unit", Edge(), {"x": torch.randn(3, 6)}, None, onnx_too=False)

    hf_families(out)

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    total = 0
    for root, _, files in os.walk(out):
        for fn in sorted(files):
            size = os.path.getsize(os.path.join(root, fn))
            total += size
            print(f"{os.path.relpath(os.path.join(root, fn), out):40s} {size:>9,d}")
    print(f"{'total':40s} {total:>9,d}")



# ---------------------------------------------------------------- transformers decoders, as exported
#
# `hf-gpt2`, `hf-llama`, `hf-mistral`: GPT2LMHeadModel, LlamaForCausalLM and MistralForCausalLM
# (tiny configs, random weights)
# exported the way their users export them: the forward takes `attention_mask` (and decode
# `position_ids`), and decode rebuilds a `DynamicCache` from the past K/V, so the graph starts
# with `cat([empty, past], -2)` before appending the new position. Only `.pt2` graphs and the
# greedy reference (`generate.safetensors`, same keys as above) are written, and they are not
# in `manifest.json`.

HF_PROMPTS = {"hf-gpt2": [11, 17, 116, 44, 50], "hf-llama": [11, 17, 116, 44, 50], "hf-mistral": [3, 90, 27, 64, 8]}


def hf_decoder(family):
    import transformers as tf
    common = dict(vocab_size=VOCAB, initializer_range=0.3)
    if family == "hf-gpt2":
        cfg = tf.GPT2Config(n_positions=MAX_POS, n_embd=D_MODEL, n_layer=N_LAYER, n_head=N_HEAD, **common)
        return tf.GPT2LMHeadModel(cfg).eval()
    llama_like = dict(hidden_size=D_MODEL, intermediate_size=D_FF, num_hidden_layers=N_LAYER,
                      num_attention_heads=N_HEAD, num_key_value_heads=N_KV_HEAD, **common)
    if family == "hf-mistral":
        # The sliding-window cache slices the last `sliding_window - 1` positions:
        # `x[:, :, -4095:]`, and `Max(0, s - 4095)` in decode's shape arithmetic.
        cfg = tf.MistralConfig(max_position_embeddings=4096, sliding_window=4096, **llama_like)
        return tf.MistralForCausalLM(cfg).eval()
    cfg = tf.LlamaConfig(max_position_embeddings=MAX_POS, **llama_like)
    return tf.LlamaForCausalLM(cfg).eval()


def flat_cache(cache):
    out = []
    for layer in cache.layers:
        out += [layer.keys, layer.values]
    return out


class HfPrefill(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True)
        return (out.logits, *flat_cache(out.past_key_values))


class HfDecode(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, past_key_0, past_value_0, past_key_1, past_value_1):
        from transformers import DynamicCache
        cache = DynamicCache(config=self.model.config)
        cache.update(past_key_0, past_value_0, 0)
        cache.update(past_key_1, past_value_1, 1)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
        return (out.logits, *flat_cache(out.past_key_values))


def hf_greedy(prefill, decode, prompt, steps):
    """The greedy loop `genie generate` runs on these graphs: the mask covers everything so
    far, the position is the number of tokens before the new one."""
    with torch.no_grad():
        n = prompt.shape[1]
        logits, *present = prefill(prompt, torch.ones_like(prompt))
        rows = [logits[0, -1]]
        tokens = [int(rows[-1].argmax())]
        for _ in range(1, steps):
            ids = torch.tensor([[tokens[-1]]], dtype=torch.int64)
            mask = torch.ones(1, n + 1, dtype=torch.int64)
            logits, *present = decode(ids, mask, torch.tensor([[n]]), *(p.contiguous() for p in present))
            n += 1
            rows.append(logits[0, -1])
            tokens.append(int(rows[-1].argmax()))
    return torch.tensor(tokens, dtype=torch.int64), torch.stack(rows).float().contiguous()


def hf_family(out_dir, family):
    torch.manual_seed(6)
    model = hf_decoder(family)
    prompt = torch.tensor([HF_PROMPTS[family]], dtype=torch.int64)
    auto = Dim.AUTO
    pre = torch.export.export(HfPrefill(model), (prompt, torch.ones_like(prompt)),
                              dynamic_shapes=({1: auto}, {1: auto}))
    sanitize_stack_traces(pre)
    torch.export.save(pre, os.path.join(out_dir, "prefill.pt2"))
    with torch.no_grad():
        _, *present = HfPrefill(model)(prompt, torch.ones_like(prompt))
    p = prompt.shape[1]
    args = (prompt[:, :1], torch.ones(1, p + 1, dtype=torch.int64), torch.tensor([[p]]),
            *(t.contiguous() for t in present))
    dec = torch.export.export(HfDecode(model), args,
                              dynamic_shapes=(None, {1: auto}, None) + tuple({2: auto} for _ in present))
    sanitize_stack_traces(dec)
    torch.export.save(dec, os.path.join(out_dir, "decode.pt2"))

    save_greedy_reference(out_dir, family, hf_greedy, HfPrefill(model), HfDecode(model), prompt)


class HfLastHidden(nn.Module):
    """A transformers text encoder's `last_hidden_state`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def hf_t5_encoder(out_dir):
    """T5's encoder: relative position buckets (`torch.min`, `log`), a mask filled with
    float32's minimum, batch and sequence both symbolic."""
    import transformers as tf
    torch.manual_seed(7)
    cfg = tf.T5Config(vocab_size=VOCAB, d_model=D_MODEL, d_kv=HEAD_DIM, d_ff=D_FF, num_layers=N_LAYER,
                      num_heads=N_HEAD)
    model = HfLastHidden(tf.T5EncoderModel(cfg))
    ids = torch.randint(0, VOCAB, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[1, 6:] = 0
    auto = {0: Dim.AUTO, 1: Dim.AUTO}
    export_graph(out_dir, "model", model, {"input_ids": ids, "attention_mask": mask}, (auto, auto), 1e-4,
                 onnx_too=False)


def hf_families(out):
    """Not in `manifest.json`, which describes the families with every form and reference."""
    for family in list(HF_PROMPTS) + ["hf-t5-encoder"]:
        d = os.path.join(out, family)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        if family == "hf-t5-encoder":
            hf_t5_encoder(d)
        else:
            hf_family(d, family)


if __name__ == "__main__":
    main()

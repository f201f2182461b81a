"""Export the full-size models `genie bench` times, into a cache directory (not committed).

Usage: .venv/bin/python testsuite/scripts/make_bench_models.py --out DIR [--force]

Workloads (random weights, fixed seeds, plain PyTorch modules defined here; no `transformers`):

- `gpt2s/`   GPT-2-small-shaped decoder (12 layers, d_model 768, 12 heads, MLP 3072, vocab 50257,
             LayerNorm, GELU-tanh, tied LM head, 4096 positions), float32, with the calling
             convention of the `gpt2` test fixture: `prefill.pt2` takes `input_ids` [1, prompt];
             `decode.pt2` takes `input_ids` [1, 1] and `past_key_<i>`/`past_value_<i>`
             [1, 12, cache, 64] for every layer and returns the logits then the present K/V of
             every layer (past `cat` the new position). `prefill.onnx`: the prefill through
             `torch.onnx.export(..., dynamo=True)` (opset 18, one file), for timing onnxruntime
             session creation against Genie's compile.
- `cnn/`     ResNet-18-shaped CNN (conv stem, 4 stages of 2 basic blocks, batch norm in eval mode,
             residual adds, global average pool, 1000-way linear), `pixel_values` [batch, 3, 224, 224].
- `encoder/` BERT-base-shaped encoder (12 post-LN layers, 768 wide, 12 heads, GELU MLP 3072,
             vocab 30522, 512 positions, pooler), `input_ids` and `attention_mask` [1, seq].

Every `.pt2` is `torch.export.save` of the default export with explicit `Dim` ranges; the example
inputs the bench uses are `<name>.inputs.safetensors` next to them (metadata `order`: input names
in signature order, `graph`: the `.pt2` stem they feed). The decode caches are random normal
values (shape is what matters for timing), seeded.

`manifest.json` is written last (atomically): a directory without it, or with another `version`,
is a partial or stale run. When the manifest is current and every file it lists is there with its
size, the script exits at once without importing torch; otherwise it deletes the workload
directories and regenerates everything. Bump VERSION whenever the models or inputs change.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import time
import warnings

VERSION = 1
WORKLOADS = ("gpt2s", "cnn", "encoder")
MANIFEST = "manifest.json"


def up_to_date(out):
    """Whether `out` holds a complete run of this VERSION (checked without importing torch)."""
    try:
        with open(os.path.join(out, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    if manifest.get("version") != VERSION:
        return False
    files = manifest.get("files", {})
    return bool(files) and all(
        os.path.isfile(os.path.join(out, rel)) and os.path.getsize(os.path.join(out, rel)) == size
        for rel, size in files.items()
    )


# Everything below needs torch; imported only when there is work to do.

def build():

    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from safetensors.torch import save_file
    from torch.export import Dim

    # ------------------------------------------------------------ GPT-2 small

    G_VOCAB, G_D, G_HEAD, G_LAYER, G_FF, G_POS = 50257, 768, 12, 12, 3072, 4096
    G_HD = G_D // G_HEAD

    class Gpt2Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(G_D)
            self.attn = nn.ModuleDict({"c_attn": nn.Linear(G_D, 3 * G_D), "c_proj": nn.Linear(G_D, G_D)})
            self.ln_2 = nn.LayerNorm(G_D)
            self.mlp = nn.Sequential(nn.Linear(G_D, G_FF), nn.GELU(approximate="tanh"), nn.Linear(G_FF, G_D))

        def forward(self, x, past_k=None, past_v=None):
            b, t, _ = x.shape
            q, k, v = self.attn["c_attn"](self.ln_1(x)).split(G_D, dim=2)
            q = q.view(b, t, G_HEAD, G_HD).transpose(1, 2)
            k = k.view(b, t, G_HEAD, G_HD).transpose(1, 2)
            v = v.view(b, t, G_HEAD, G_HD).transpose(1, 2)
            if past_k is not None:
                k = torch.cat([past_k, k], dim=2)
                v = torch.cat([past_v, v], dim=2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=past_k is None)
            x = x + self.attn["c_proj"](y.transpose(1, 2).reshape(b, t, G_D))
            x = x + self.mlp(self.ln_2(x))
            return x, k, v

    class Gpt2(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(G_VOCAB, G_D)
            self.wpe = nn.Embedding(G_POS, G_D)
            self.h = nn.ModuleList(Gpt2Block() for _ in range(G_LAYER))
            self.ln_f = nn.LayerNorm(G_D)
            self.lm_head = nn.Linear(G_D, G_VOCAB, bias=False)
            self.lm_head.weight = self.wte.weight  # tied, as in GPT-2
            for m in self.modules():  # GPT-2's initialisation: N(0, 0.02) weights, zero biases
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)

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

    class Prefill(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model.run(input_ids, None)

    # The decode step's signature names every layer's past (`past_key_<i>`, `past_value_<i>`):
    # torch.export takes the user input names from the parameter names.
    params = ", ".join(f"past_key_{i}, past_value_{i}" for i in range(G_LAYER))
    pairs = ", ".join(f"(past_key_{i}, past_value_{i})" for i in range(G_LAYER))
    scope = {}
    exec(f"def forward(self, input_ids, {params}):\n    return self.model.run(input_ids, [{pairs}])\n", scope)
    Decode = type("Decode", (Prefill,), {"forward": scope["forward"]})

    # ------------------------------------------------------------ ResNet-18

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return F.relu(y + identity)

    class ResNet18(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            layers, cin = [], 64
            for i, cout in enumerate((64, 128, 256, 512)):
                stride = 1 if i == 0 else 2
                layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(512, classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, pixel_values):
            x = self.maxpool(F.relu(self.bn1(self.conv1(pixel_values))))
            x = self.layers(x)
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    # ------------------------------------------------------------ BERT-base

    E_VOCAB, E_D, E_HEAD, E_LAYER, E_FF, E_POS = 30522, 768, 12, 12, 3072, 512
    E_HD = E_D // E_HEAD

    class BertLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(E_D, 3 * E_D)
            self.out = nn.Linear(E_D, E_D)
            self.ln_1 = nn.LayerNorm(E_D, eps=1e-12)
            self.mlp = nn.Sequential(nn.Linear(E_D, E_FF), nn.GELU(), nn.Linear(E_FF, E_D))
            self.ln_2 = nn.LayerNorm(E_D, eps=1e-12)

        def forward(self, x, mask):
            b, s, _ = x.shape
            q, k, v = (t.view(b, s, E_HEAD, E_HD).transpose(1, 2) for t in self.qkv(x).split(E_D, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = self.ln_1(x + self.out(y.transpose(1, 2).reshape(b, s, E_D)))
            return self.ln_2(x + self.mlp(x))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.word_embeddings = nn.Embedding(E_VOCAB, E_D)
            self.position_embeddings = nn.Embedding(E_POS, E_D)
            self.ln = nn.LayerNorm(E_D, eps=1e-12)
            self.layers = nn.ModuleList(BertLayer() for _ in range(E_LAYER))
            self.pooler = nn.Linear(E_D, E_D)
            for m in self.modules():  # BERT's initialisation
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)

        def forward(self, input_ids, attention_mask):
            s = input_ids.shape[1]
            pos = torch.arange(s, device=input_ids.device)
            x = self.ln(self.word_embeddings(input_ids) + self.position_embeddings(pos))
            # Additive mask over the keys: 0 where attended, -10000 on padding (as BERT).
            mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            for layer in self.layers:
                x = layer(x, mask)
            return x, torch.tanh(self.pooler(x[:, 0]))

    # ------------------------------------------------------------ export machinery

    def dtype_name(t):
        return str(t.dtype).removeprefix("torch.")

    def bound(v):
        text = str(v)
        return int(text) if text.lstrip("-").isdigit() else None

    def export(out, rel, module, inputs, dynamic):
        """torch.export + save; the manifest entry for the graph."""
        started = time.perf_counter()
        ep = torch.export.export(module, tuple(inputs.values()), dynamic_shapes=dynamic)
        export_s = time.perf_counter() - started
        torch.export.save(ep, os.path.join(out, rel))
        placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
        names = list(ep.graph_signature.user_inputs)
        assert names == list(inputs), (names, list(inputs))
        entry = {
            "file": rel,
            "inputs": [{"name": n, "dtype": dtype_name(inputs[n]),
                        "symbolic_shape": [str(d) for d in placeholders[n].meta["val"].shape]} for n in names],
            "outputs": list(ep.graph_signature.user_outputs),
            "range_constraints": {str(k): [bound(v.lower), bound(v.upper)] for k, v in ep.range_constraints.items()},
            "export_s": round(export_s, 2),
            "save_s": round(time.perf_counter() - started - export_s, 2),
        }
        print(f"  {rel}: export {export_s:.1f}s, save {entry['save_s']:.1f}s", flush=True)
        return ep, entry

    def save_inputs(out, rel, graph, inputs, note=None):
        meta = {"order": ",".join(inputs), "graph": graph}
        save_file({n: t.contiguous() for n, t in inputs.items()}, os.path.join(out, rel), metadata=meta)
        entry = {"file": rel, "graph": graph,
                 "tensors": [{"name": n, "dtype": dtype_name(t), "shape": list(t.shape)} for n, t in inputs.items()]}
        if note:
            entry["note"] = note
        return entry

    manifest = {"version": VERSION, "torch": torch.__version__, "threads": torch.get_num_threads(), "workloads": {}}
    return locals()


def make_gpt2s(out, ns):
    import torch
    from torch.export import Dim
    Gpt2, Prefill, Decode = ns["Gpt2"], ns["Prefill"], ns["Decode"]
    vocab, layers, heads, hd, positions = ns["G_VOCAB"], ns["G_LAYER"], ns["G_HEAD"], ns["G_HD"], ns["G_POS"]
    os.makedirs(os.path.join(out, "gpt2s"))
    torch.manual_seed(10)
    model = Gpt2().eval()
    gen = torch.Generator().manual_seed(11)
    entry = {"config": {"layers": layers, "d_model": ns["G_D"], "heads": heads, "d_ff": ns["G_FF"], "vocab": vocab,
                        "positions": positions, "dtype": "float32",
                        "parameters": sum(p.numel() for p in model.parameters())},
             "graphs": {}, "inputs": {}}

    # Prompt and cache lengths: one symbol each, shared by every cache input; the position
    # table bounds them (prompt + new positions <= 4096).
    prompt = Dim("prompt", min=2, max=positions)
    cache = Dim("cache", min=2, max=positions - 1)
    ids = torch.randint(0, vocab, (1, 512), generator=gen)
    pre_inputs = {"input_ids": ids}
    ep, entry["graphs"]["prefill"] = ns["export"](out, "gpt2s/prefill.pt2", Prefill(model), pre_inputs,
                                                  ({1: prompt},))
    entry["inputs"]["prefill_512"] = ns["save_inputs"](out, "gpt2s/prefill_512.inputs.safetensors", "prefill",
                                                       pre_inputs)

    # Decode: exported at a short cache; the bench inputs at contexts 128, 512 and 2048 (the
    # cache length; the new token is position `context`).
    def decode_inputs(context):
        inputs = {"input_ids": torch.randint(0, vocab, (1, 1), generator=gen)}
        for i in range(layers):
            inputs[f"past_key_{i}"] = torch.randn(1, heads, context, hd, generator=gen)
            inputs[f"past_value_{i}"] = torch.randn(1, heads, context, hd, generator=gen)
        return inputs

    dyn = (None,) + tuple({2: cache} for _ in range(2 * layers))
    _, entry["graphs"]["decode"] = ns["export"](out, "gpt2s/decode.pt2", Decode(model), decode_inputs(16), dyn)
    for context in (128, 512, 2048):
        entry["inputs"][f"decode_{context}"] = ns["save_inputs"](
            out, f"gpt2s/decode_{context}.inputs.safetensors", "decode", decode_inputs(context),
            note=f"cache length {context}; past K/V are seeded random normal values")

    # ONNX: converted from the exported prefill (not exported a second time).
    import onnx
    started = time.perf_counter()
    path = os.path.join(out, "gpt2s", "prefill.onnx")
    torch.onnx.export(ep, (ids,), path, dynamo=True, opset_version=18, external_data=False, verbose=False)
    onnx_s = time.perf_counter() - started
    graph = onnx.load(path, load_external_data=False).graph
    entry["onnx"] = {"file": "gpt2s/prefill.onnx", "graph": "prefill", "opset": 18,
                     "inputs": [i.name for i in graph.input], "outputs": [o.name for o in graph.output],
                     "export_s": round(onnx_s, 2)}
    print(f"  gpt2s/prefill.onnx: {onnx_s:.1f}s", flush=True)
    return entry


def make_cnn(out, ns):
    import torch
    import torch.nn as nn
    from torch.export import Dim
    os.makedirs(os.path.join(out, "cnn"))
    torch.manual_seed(20)
    model = ns["ResNet18"]()
    gen = torch.Generator().manual_seed(21)
    # Running statistics from one batch in training mode, so that batch norm keeps the
    # activations of a random network in range; then eval mode for the export.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 224, 224, generator=gen))
    model.eval()
    entry = {"config": {"arch": "resnet18", "image": 224, "classes": 1000, "dtype": "float32",
                        "parameters": sum(p.numel() for p in model.parameters())},
             "graphs": {}, "inputs": {}}
    batch = Dim("batch", min=1, max=64)
    example = {"pixel_values": torch.randn(2, 3, 224, 224, generator=gen)}
    _, entry["graphs"]["model"] = ns["export"](out, "cnn/model.pt2", model, example, ({0: batch},))
    for b in (1, 8):
        entry["inputs"][f"batch_{b}"] = ns["save_inputs"](out, f"cnn/batch_{b}.inputs.safetensors", "model",
                                                          {"pixel_values": torch.randn(b, 3, 224, 224, generator=gen)})
    return entry


def make_encoder(out, ns):
    import torch
    from torch.export import Dim
    os.makedirs(os.path.join(out, "encoder"))
    torch.manual_seed(30)
    model = ns["Bert"]().eval()
    gen = torch.Generator().manual_seed(31)
    entry = {"config": {"layers": ns["E_LAYER"], "d_model": ns["E_D"], "heads": ns["E_HEAD"], "d_ff": ns["E_FF"],
                        "vocab": ns["E_VOCAB"], "positions": ns["E_POS"], "dtype": "float32",
                        "parameters": sum(p.numel() for p in model.parameters())},
             "graphs": {}, "inputs": {}}
    seq = Dim("seq", min=2, max=ns["E_POS"])

    def inputs(s, pad):
        mask = torch.ones(1, s, dtype=torch.int64)
        mask[0, s - pad:] = 0
        return {"input_ids": torch.randint(0, ns["E_VOCAB"], (1, s), generator=gen), "attention_mask": mask}

    _, entry["graphs"]["model"] = ns["export"](out, "encoder/model.pt2", model, inputs(32, 4),
                                               ({1: seq}, {1: seq}))
    entry["inputs"]["seq_128"] = ns["save_inputs"](out, "encoder/seq_128.inputs.safetensors", "model",
                                                   inputs(128, 16), note="the last 16 positions are padding")
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="cache directory, e.g. target/bench-models")
    ap.add_argument("--force", action="store_true", help="regenerate even when the manifest is current")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    if not args.force and up_to_date(out):
        print(f"bench models in {out} are up to date (version {VERSION})")
        return
    started = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    # A partial run must not look complete: the manifest goes first and comes back last.
    for name in (MANIFEST, MANIFEST + ".tmp"):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    for name in WORKLOADS:
        shutil.rmtree(os.path.join(out, name), ignore_errors=True)

    warnings.filterwarnings("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notes
    ns = build()
    manifest = ns["manifest"]
    for name, make in (("gpt2s", make_gpt2s), ("cnn", make_cnn), ("encoder", make_encoder)):
        t0 = time.perf_counter()
        print(f"{name}:", flush=True)
        manifest["workloads"][name] = make(out, ns)
        manifest["workloads"][name]["seconds"] = round(time.perf_counter() - t0, 2)

    files = {}
    for name in WORKLOADS:
        for root, _, names in os.walk(os.path.join(out, name)):
            for fn in sorted(names):
                path = os.path.join(root, fn)
                files[os.path.relpath(path, out)] = os.path.getsize(path)
    manifest["files"] = dict(sorted(files.items()))
    manifest["total_bytes"] = sum(files.values())
    manifest["total_s"] = round(time.perf_counter() - started, 2)
    tmp = os.path.join(out, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, os.path.join(out, MANIFEST))
    for rel, size in manifest["files"].items():
        print(f"{rel:45s} {size:>13,d}")
    print(f"{'total':45s} {manifest['total_bytes']:>13,d}   ({manifest['total_s']:.1f}s)")


if __name__ == "__main__":
    sys.exit(main())

"""Export small random-weight transformers models to ONNX and list the op types they use.

Exports GPT-2, LLaMA (grouped-query attention), BERT, ViT and ResNet (configs only, no download)
with `torch.onnx.export(..., dynamo=True, opset_version=18)`, once with static shapes and once
with a dynamic batch and sequence length (symbolic `dim_param`s), each into its own folder
`<out>/<name>/<name>.onnx` (weights as external data `<name>.onnx.data` beside it) with a
`test_data_set_0` of inputs and onnxruntime outputs (dynamic models are run at another batch and
sequence length than they were exported with). The TorchScript exporter (`dynamo=False`, opsets
11, 14 and 17, dynamic axes) is run too, as `<name>_ts<opset>`: it writes the Shape/Gather/
Concat chains and inline weights of many ONNX files in the wild (models it cannot export are
skipped). Prints each model's op types and the union.
The ONNX reader's tests import whatever this writes when `GENIE_ONNX_MODELS` names the folder,
and `onnx_numeric_check.py` compares the imported graphs with the saved outputs.

Usage: .venv/bin/python testsuite/scripts/onnx_census.py /tmp/genie_onnx
"""
import collections
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
import transformers as tf

torch.manual_seed(0)
warnings.filterwarnings("ignore")


def models():
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=64))
    llama = tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                               num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                               max_position_embeddings=64))
    bert = tf.BertModel(tf.BertConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                      num_attention_heads=4, vocab_size=128, max_position_embeddings=64))
    vit = tf.ViTModel(tf.ViTConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                   num_attention_heads=4, image_size=32, patch_size=8))
    resnet = tf.ResNetModel(tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1]))
    ids = torch.randint(0, 128, (2, 8))
    img = torch.randn(2, 3, 32, 32)
    # Run-time inputs of other sizes, for the dynamic exports.
    ids2 = torch.randint(0, 128, (3, 5))
    img2 = torch.randn(3, 3, 32, 32)
    seq = {0: torch.export.Dim("batch", min=1, max=16), 1: torch.export.Dim("seq", min=2, max=64)}
    batch = {0: torch.export.Dim("batch", min=1, max=16)}
    yield "gpt2", gpt2, (ids,), seq, ids2
    yield "llama", llama, (ids,), seq, ids2
    yield "bert", bert, (ids,), seq, ids2
    yield "vit", vit, (img,), batch, img2
    yield "resnet", resnet, (img,), batch, img2


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        out = self.m(x, use_cache=False) if hasattr(self.m.config, "use_cache") else self.m(x)
        return out[0]


def op_types(path):
    m = onnx.load(path, load_external_data=False)
    ops = collections.Counter()

    def walk(g):
        for n in g.node:
            ops[(n.domain + "::" if n.domain not in ("", "ai.onnx") else "") + n.op_type] += 1
            for a in n.attribute:
                if a.HasField("g"):
                    walk(a.g)
                for sub in a.graphs:
                    walk(sub)

    walk(m.graph)
    for f in m.functions:
        for n in f.node:
            ops[f"{f.domain}::{f.name}/" + n.op_type] += 1
    return ops


def export(model, args, path, tag, shapes):
    if tag.startswith("ts"):
        axes = {"x": {0: "batch", 1: "seq"} if args[0].dim() == 2 else {0: "batch"}}
        torch.onnx.export(Logits(model), args, path, dynamo=False, opset_version=int(tag[2:]),
                          input_names=["x"], output_names=["y"], dynamic_axes=axes)
    else:
        torch.onnx.export(Logits(model), args, path, dynamo=True, opset_version=18,
                          dynamic_shapes=shapes, external_data=True, verbose=False)


def main(out):
    os.makedirs(out, exist_ok=True)
    union = collections.Counter()
    for name, model, args, dyn, other in models():
        model.eval()
        variants = [("static", None, args[0]), ("dynamic", (dyn,), other)]
        variants += [(f"ts{opset}", None, other) for opset in (11, 14, 17)]
        for tag, shapes, run_with in variants:
            folder = os.path.join(out, f"{name}_{tag}")
            path = os.path.join(folder, f"{name}_{tag}.onnx")
            os.makedirs(os.path.join(folder, "test_data_set_0"), exist_ok=True)
            try:
                export(model, args, path, tag, shapes)
            except Exception as e:  # noqa: BLE001 - the TorchScript exporter lacks some ops
                if not tag.startswith("ts"):
                    raise
                print(f"{name}_{tag}: not exportable ({str(e).splitlines()[-1][:120]})", flush=True)
                import shutil
                shutil.rmtree(folder)
                continue
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: run_with.numpy()}
            for k, (n, a) in enumerate(feed.items()):
                with open(os.path.join(folder, "test_data_set_0", f"input_{k}.pb"), "wb") as fh:
                    fh.write(numpy_helper.from_array(a, n).SerializeToString())
            for k, (o, a) in enumerate(zip(sess.get_outputs(), sess.run(None, feed))):
                with open(os.path.join(folder, "test_data_set_0", f"output_{k}.pb"), "wb") as fh:
                    fh.write(numpy_helper.from_array(np.asarray(a), o.name).SerializeToString())
            ops = op_types(path)
            union.update(ops)
            print(f"{name}_{tag}: {sum(ops.values())} nodes: {dict(sorted(ops.items()))}", flush=True)
    print(f"union ({len(union)} op types): {sorted(union)}")


if __name__ == "__main__":
    main(sys.argv[1])

"""List every ATen op that torch.export emits for small transformers models.

Exports GPT-2, LLaMA (grouped-query attention), BERT, ViT and ResNet with random weights (no
download), in the default export graph and in the core-ATen graph of `run_decompositions()`, and
writes `{op: schema}` plus which model/form uses it. The op registry must cover this list; the
`registry_covers_census` test checks it.

Usage: .venv/bin/python testsuite/scripts/op_census.py testsuite/data/op_census.json
"""
import json
import sys

import torch
import transformers as tf

torch.manual_seed(0)


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
    ids = torch.randint(0, 128, (1, 8))
    img = torch.randn(1, 3, 32, 32)
    yield "gpt2", gpt2, (ids,)
    yield "llama", llama, (ids,)
    yield "bert", bert, (ids,)
    yield "vit", vit, (img,)
    yield "resnet", resnet, (img,)


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        out = self.m(x, use_cache=False) if hasattr(self.m.config, "use_cache") else self.m(x)
        return out[0]


def ops_of(ep, seen, tag):
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        t = node.target
        if isinstance(t, torch._ops.OpOverload):
            name = f"aten.{t._schema.name.split('::')[1]}.{t._overloadname}" if t.namespace == "aten" else str(t)
            seen.setdefault(name, {"schema": str(t._schema), "used_by": []})
        else:
            name = f"{t.__module__}.{t.__name__}"
            seen.setdefault(name, {"schema": None, "used_by": []})
        if tag not in seen[name]["used_by"]:
            seen[name]["used_by"].append(tag)


def main(out):
    seen = {}
    for name, model, args in models():
        model.eval()
        ep = torch.export.export(Logits(model), args)
        ops_of(ep, seen, f"{name}:default")
        ops_of(ep.run_decompositions(), seen, f"{name}:core_aten")
    with open(out, "w") as f:
        json.dump(dict(sorted(seen.items())), f, indent=1)
    print(f"{len(seen)} ops -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])

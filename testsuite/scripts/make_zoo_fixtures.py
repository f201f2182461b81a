"""Export the model-coverage fixtures (`testsuite/fixtures/zoo/`): small random-weight models
from the transformers, torchvision and diffusers zoos, exported by PyTorch itself, one family per
attention spelling, block layout or op class that the first fixtures did not have.

Each family gets its graphs as default `.pt2`, core-ATen `_core.pt2` and, where the exporter
manages, `.onnx`; the eager outputs for its example inputs; and, for decoders, the greedy
reference `genie generate` must reproduce token for token (exported with the Python package's
own `export_decoder`, so the fixtures are what a user of `genie.export_decoder` gets).
`zoo/manifest.json` says, per family, what it is (`kind`), the phase and tags Genie must find,
the forms written (with the reason a form is missing), and the input/output names per form.

Deterministic: fixed seeds, no downloads. Run again after changing it:

    .venv/bin/python testsuite/scripts/make_zoo_fixtures.py
"""
import importlib.util
import json
import os
import re
import shutil
import sys
import warnings

import torch
import torch.nn as nn
from safetensors.torch import save_file
from torch.export import Dim

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "testsuite", "fixtures", "zoo")
VOCAB = 128
STEPS = 16
MIN_MARGIN = 0.003

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402 - the scripts' shared greedy loop

_spec = importlib.util.spec_from_file_location("genie_export", os.path.join(REPO, "python", "genie", "export.py"))
genie_export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(genie_export)


def sanitize(ep):
    """Stack traces independent of where the checkout and the venv are; no object ids."""
    for node in ep.graph.nodes:
        node.meta.pop("from_node", None)
        trace = node.meta.get("stack_trace")
        if trace:
            trace = re.sub(r'File "[^"]*site-packages/', 'File "', trace)
            node.meta["stack_trace"] = trace.replace(REPO + os.sep, "")


def flat(x):
    if isinstance(x, torch.Tensor):
        return [x]
    if hasattr(x, "to_tuple"):
        x = x.to_tuple()
    return [t for item in x for t in flat(item)]


def write_core(path):
    """`<stem>_core.pt2`: the default export lowered to core ATen."""
    ep = torch.export.load(path)
    core = ep.run_decompositions()
    sanitize(core)
    torch.export.save(core, path.replace(".pt2", "_core.pt2"))
    return core


def single(out_dir, module, inputs, dynamic, tol):
    """One graph (`model`) in every form the exporters manage; returns its manifest entry."""
    module.eval()
    names = list(inputs)
    args = tuple(inputs[n] for n in names)
    if isinstance(module, Outputs) and dynamic is not None:
        # `forward(*xs)` takes its dims as one tuple, as the signature groups it.
        dynamic = (tuple(dynamic),)
    with torch.no_grad():
        eager = flat(module(*args))
    ep = torch.export.export(module, args, dynamic_shapes=dynamic)
    sanitize(ep)
    path = os.path.join(out_dir, "model.pt2")
    torch.export.save(ep, path)
    core = write_core(path)
    for prog in (ep, core):
        with torch.no_grad():
            got = flat(prog.module()(*args))
        for a, b in zip(got, eager):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    outputs = list(ep.graph_signature.user_outputs)
    # The reference files use the export's names (a `*xs` forward names its inputs `xs_0`, …).
    inputs = dict(zip(ep.graph_signature.user_inputs, inputs.values()))
    names = list(inputs)
    entry = {"inputs": names, "outputs": outputs, "core_outputs": list(core.graph_signature.user_outputs),
             "forms": ["pt2", "core"]}
    try:
        entry["onnx_inputs"], entry["onnx_outputs"] = export_onnx(out_dir, module, inputs, dynamic, eager)
        entry["forms"].append("onnx")
    except Exception as e:  # noqa: BLE001 - recorded in the manifest
        entry["no_onnx"] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        for leftover in ("model.onnx", "model.onnx.data"):
            if os.path.exists(os.path.join(out_dir, leftover)):
                os.remove(os.path.join(out_dir, leftover))
    save_file({n: t.contiguous() for n, t in inputs.items()}, os.path.join(out_dir, "model.inputs.safetensors"),
              metadata={"order": ",".join(names)})
    save_file({n: t.contiguous() for n, t in zip(outputs, eager)}, os.path.join(out_dir, "model.outputs.safetensors"),
              metadata={"order": ",".join(outputs)})
    return entry


def export_onnx(out_dir, module, inputs, dynamic, eager):
    import onnx
    import onnxruntime as ort

    path = os.path.join(out_dir, "model.onnx")
    args = tuple(inputs.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, dynamo=True, opset_version=18, dynamic_shapes=dynamic,
                          external_data=False, verbose=False)
    model = onnx.load(path)
    names_in = [i.name for i in model.graph.input]
    names_out = [o.name for o in model.graph.output]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    by_position = dict(zip(names_in, inputs.values()))
    got = sess.run(None, {n: by_position[n].numpy() for n in names_in})
    for a, b in zip(got, eager):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-3, atol=1e-4)
    return names_in, names_out


# ---------------------------------------------------------------- decoders

def decoders():
    import transformers as tf

    common = dict(vocab_size=VOCAB, initializer_range=0.3)
    yield "bloom", "ALiBi position biases through baddbmm, fused QKV, hand-written attention", tf.BloomForCausalLM(
        tf.BloomConfig(n_layer=2, hidden_size=32, n_head=4, **common))
    yield "falcon", "multi-query attention, parallel attention + MLP, fused QKV, rotary", tf.FalconForCausalLM(
        tf.FalconConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, multi_query=True,
                        parallel_attn=True, new_decoder_architecture=False, alibi=False, bias=False,
                        max_position_embeddings=64, **common))
    yield "gpt-neox", "parallel residual, per-head fused QKV, partial rotary", tf.GPTNeoXForCausalLM(
        tf.GPTNeoXConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=64, rotary_pct=0.25, use_parallel_residual=True, **common))
    yield "gptj", "rotary angles gathered from a precomputed table by position, parallel block", tf.GPTJForCausalLM(
        tf.GPTJConfig(n_layer=2, n_embd=32, n_head=4, n_positions=64, rotary_dim=4, **common))
    yield "opt", "learned positions looked up at position + 2, ReLU MLP", tf.OPTForCausalLM(
        tf.OPTConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, ffn_dim=64,
                     max_position_embeddings=64, word_embed_proj_dim=32, **common))
    yield "mixtral", "mixture of experts: softmax router, top-2 of 4 experts, grouped expert products", \
        tf.MixtralForCausalLM(tf.MixtralConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                               num_key_value_heads=2, intermediate_size=32,
                                               max_position_embeddings=64, num_local_experts=4,
                                               num_experts_per_tok=2, **common))


# The loop `genie generate` runs on transformers decoders: the mask covers everything so far,
# the position is the number of tokens before the new one.
greedy = make_fixtures.hf_greedy


def pick_prompt(model, family):
    """A fixed prompt (drawn from a seeded generator) whose greedy sequence varies and has no
    near tie at any step."""
    prefill = genie_export._Prefill(model, genie_export._accepts(model, "attention_mask"))
    decode = genie_export._Decode(model, genie_export._accepts(model, "attention_mask"),
                                  genie_export._accepts(model, "position_ids"))
    rng = torch.Generator().manual_seed(11)
    for _ in range(200):
        prompt = torch.randint(0, VOCAB, (1, 5), generator=rng)
        tokens, logits = greedy(prefill, decode, prompt, STEPS)
        top2 = logits.topk(2, dim=-1).values
        margin = float((top2[:, 0] - top2[:, 1]).min())
        if len(set(tokens.tolist())) >= 4 and margin >= MIN_MARGIN:
            return prompt, tokens, logits, margin
    raise RuntimeError(f"{family}: no prompt with a varied, untied greedy sequence")


def decoder(out_dir, family, model):
    model.eval()
    model.generation_config.eos_token_id = None
    prompt, tokens, logits, margin = pick_prompt(model, family)
    prefill_path, decode_path = genie_export.export_decoder(model, out_dir, max_seq=64)
    forms, no_core = ["pt2"], None
    for path in (prefill_path, decode_path):
        ep = torch.export.load(path)
        sanitize(ep)
        torch.export.save(ep, path)
    try:
        for path in (prefill_path, decode_path):
            write_core(path)
        forms.append("core")
    except Exception as e:  # noqa: BLE001 - recorded in the manifest
        no_core = f"run_decompositions of the loaded program: {type(e).__name__}: {' '.join(str(e).split())[:160]}"
        for path in (prefill_path, decode_path):
            if os.path.exists(path.replace(".pt2", "_core.pt2")):
                os.remove(path.replace(".pt2", "_core.pt2"))
    # The exported graphs, chained, choose the same tokens; so does transformers' own generate.
    for suffix in ["", "_core"][:len(forms)]:
        pre = torch.export.load(os.path.join(out_dir, f"prefill{suffix}.pt2")).module()
        dec = torch.export.load(os.path.join(out_dir, f"decode{suffix}.pt2")).module()
        got, got_logits = greedy(pre, dec, prompt, STEPS)
        assert torch.equal(got, tokens), (family, suffix, got, tokens)
        torch.testing.assert_close(got_logits, logits, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        hf = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=STEPS,
                            min_new_tokens=STEPS, do_sample=False)
    assert torch.equal(hf[0, prompt.shape[1]:], tokens), (family, hf, tokens)
    meta = {"order": "prompt,tokens,logits", "prompt_len": str(prompt.shape[1]), "steps": str(STEPS),
            "vocab": str(VOCAB), "min_margin": f"{margin:.6g}"}
    save_file({"logits": logits, "prompt": prompt, "tokens": tokens}, os.path.join(out_dir, "generate.safetensors"),
              metadata=meta)
    print(f"{family}: prompt {prompt[0].tolist()} -> {tokens.tolist()} (margin {margin:.4f})")
    entry = {"graphs": ["prefill", "decode"], "forms": forms,
             "no_onnx": "the decoders' DynamicCache round trip is exported as .pt2 only (genie.export_decoder)",
             "layers": model.config.num_hidden_layers}
    if no_core:
        entry["no_core"] = no_core
    return entry


# ---------------------------------------------------------------- encoders, audio, vision, diffusion

class Outputs(nn.Module):
    """A model called with named inputs, its tensors returned as a tuple."""

    def __init__(self, model, names, **kwargs):
        super().__init__()
        self.model, self.names, self.kwargs = model, names, kwargs

    def forward(self, *xs):
        return tuple(flat(self.model(**dict(zip(self.names, xs)), **self.kwargs)))


def encoders():
    import transformers as tf

    torch.manual_seed(3)
    ids = torch.randint(0, VOCAB, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[1, 6:] = 0
    text_dims = ({0: Dim.AUTO, 1: Dim.AUTO}, {0: Dim.AUTO, 1: Dim.AUTO})
    distil = tf.DistilBertModel(tf.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                    max_position_embeddings=64, attn_implementation="eager"))
    yield ("distilbert", "encoder", "hand-written attention with masked_fill", Outputs(distil, ["input_ids", "attention_mask"]),
           {"input_ids": ids, "attention_mask": mask}, text_dims)
    wav = tf.Wav2Vec2Model(tf.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
                                             conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                                             num_conv_pos_embedding_groups=4, feat_extract_norm="group"))
    yield ("wav2vec2", "encoder", "audio: conv feature extractor, group norm, weight-normed positional conv",
           Outputs(wav, ["input_values"]), {"input_values": torch.randn(1, 800)}, ({1: Dim.AUTO},))
    whisper = tf.WhisperModel(tf.WhisperConfig(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                                               encoder_attention_heads=4, decoder_attention_heads=4,
                                               encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
                                               max_source_positions=20, max_target_positions=32,
                                               pad_token_id=1, bos_token_id=1, eos_token_id=2,
                                               decoder_start_token_id=1)).encoder
    yield ("whisper-encoder", "encoder", "audio: log-mel frames through conv1d + GELU, sinusoidal positions",
           Outputs(whisper, ["input_features"]), {"input_features": torch.randn(1, 16, 40)}, None)


def vision():
    import torchvision.models as tv
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    torch.manual_seed(4)
    image = torch.randn(2, 3, 64, 64)
    setting, last = tv.mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    yield ("mobilenet-v3", "vision", "in-place hardswish_/relu_, squeeze-excitation, hardsigmoid",
           tv.MobileNetV3(setting, last, num_classes=10), image)
    setting, last = tv.efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    yield ("efficientnet", "vision", "SiLU, squeeze-excitation, stochastic depth (eval)",
           tv.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=last), image)
    yield ("shufflenet-v2", "vision", "channel shuffle (view, transpose), chunk, in-place relu_",
           tv.ShuffleNetV2([2, 2, 2], [8, 16, 32, 64, 128], num_classes=10), image)
    yield ("convnext", "vision", "depthwise conv, channels-last layer norm (permute), layer scale",
           ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10), image)
    yield ("densenet", "vision", "dense blocks: every layer's input the cat of all before, in-place relu_",
           tv.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, num_classes=10), image)


def unet():
    import diffusers

    torch.manual_seed(5)
    model = diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=4, norm_num_groups=4)
    inputs = {"sample": torch.randn(1, 4, 16, 16), "timestep": torch.tensor([10]),
              "encoder_hidden_states": torch.randn(1, 6, 8)}
    return Outputs(model, list(inputs), return_dict=False), inputs


class Decompositions(nn.Module):
    """Ops the default export leaves in that Genie lowers at import (composite and alias ops,
    in-place variants of functional ones)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x, flags):
        y = self.lin(x)
        a = y.T.mT.swapaxes(0, 1).movedim(0, 1)
        b = torch.nn.functional.hardswish(y.clone(), inplace=True)
        c = torch.nn.functional.logsigmoid(y) + torch.where(flags, 1.0, 0)
        d = y.tile((2,))[:, :6]
        gx, gy = torch.meshgrid(torch.arange(3.0), torch.arange(4.0), indexing="xy")
        parts = torch.tensor_split(y, [1, 3], dim=1)
        e = y.clone().fill_(torch.tensor(2.5)) + y.clone().zero_() + y.broadcast_to(y.shape)
        f = torch.linspace(-1.0, 1.0, 6) * torch.multiply(y, y)
        return a, b, c, d, gx + gy, parts[0], parts[1], parts[2], e, f


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    only = sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    manifest_path = os.path.join(OUT, "manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) and only else {}

    def fresh(name):
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def wanted(name):
        return not only or name in only

    def save():
        with open(manifest_path, "w") as f:
            json.dump(dict(sorted(manifest.items())), f, indent=1)
            f.write("\n")

    for family, what, model in decoders():
        if wanted(family):
            torch.manual_seed(6)
            entry = decoder(fresh(family), family, model)
            tags = ["attention", "kv_cache_update", "embedding", "lm_head"]
            tags += ["moe_router", "moe_expert"] if family == "mixtral" else ["mlp"]
            manifest[family] = {"kind": "decoder", "what": what, "phase": "llm_prefill", "tags": tags, **entry}
            save()
    for family, phase, what, module, inputs, dynamic in encoders():
        if wanted(family):
            entry = single(fresh(family), module, inputs, dynamic, 1e-4)
            manifest[family] = {"kind": "encoder", "what": what, "phase": phase, "tags": ["attention", "mlp"], **entry}
            save()
    for family, phase, what, model, image in vision():
        if wanted(family):
            entry = single(fresh(family), model.eval(), {"image": image}, ({0: Dim.AUTO},), 1e-4)
            manifest[family] = {"kind": "vision", "what": what, "phase": phase, "tags": ["conv_stage"], **entry}
            save()
    if wanted("unet"):
        module, inputs = unet()
        entry = single(fresh("unet"), module, inputs, None, 1e-4)
        manifest["unet"] = {"kind": "diffusion", "what": "diffusers UNet2DConditionModel: time embedding, "
                            "ResNet blocks, self- and cross-attention transformers, up/down sampling",
                            "phase": "vision", "tags": ["attention", "conv_stage"], **entry}
    if wanted("decompositions"):
        torch.manual_seed(8)
        x, flags = torch.randn(5, 6), torch.rand(5, 6) > 0.5
        entry = single(fresh("decompositions"), Decompositions(), {"x": x, "flags": flags}, None, 1e-5)
        manifest["decompositions"] = {"kind": "unit", "what": Decompositions.__doc__.split("\n")[0],
                                      "phase": None, "tags": [], **entry}
    save()


if __name__ == "__main__":
    main()

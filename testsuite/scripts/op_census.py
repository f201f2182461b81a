"""List every op that torch.export emits for the model zoos that can be instantiated here.

Every model type of the `transformers` zoo (its causal-LM class where it has one, else its base
model), every model of `torchvision.models.list_models()` and a few `diffusers` models are built
from their default configuration shrunk to a small size (2 layers, width 64, 4 heads, …) with
random weights (no download), exported with `torch.export.export` (the default graph) and
lowered with `ep.run_decompositions()` (the core-ATen graph). The script writes

- `{op: {"schema", "models", "forms", "used_by"}}` for every op seen (`OUT`: how many models
  use it, in which export forms, the first few of them), and
- `{model: "ok" | "<stage>: <error>"}` for every model tried (`OUT` with `.models.json`), so the
  census says what it covers and why the rest is not covered (the model cannot be built from a
  small config, needs inputs this script does not make, or torch.export refuses it).

Genie must import every op of the census (`frontends/tests/op_census.rs` checks: registered,
in-place form of a registered op, decomposed at import, or a supported library op).

Models run in worker processes (`--jobs`, default 2), each with a time limit, so a crash or a
hang costs one model, not the census.

Needs the venv `cargo xtask` sets up (torch, transformers, torchvision, diffusers). About 20 min
on two cores.

Usage: .venv/bin/python testsuite/scripts/op_census.py [--jobs N] [--only PREFIX] testsuite/data/op_census.json
"""
import argparse
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

MAX_PARAMS = 150_000_000
TIME_LIMIT_S = 240
# Models listed per op (the count covers all).
EXAMPLES = 8

LAYER_KEYS = ["num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers", "decoder_layers",
              "num_encoder_layers", "num_decoder_layers", "num_text_layers", "num_vision_layers"]
WIDTH_KEYS = ["hidden_size", "n_embd", "d_model", "embed_dim", "dim", "text_embed_dim", "vision_embed_dim"]
HEAD_KEYS = ["num_attention_heads", "n_head", "n_heads", "encoder_attention_heads", "decoder_attention_heads",
             "num_heads"]
FFN_KEYS = ["intermediate_size", "n_inner", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "d_ff",
            "hidden_dim", "mlp_dim", "moe_intermediate_size", "shared_expert_intermediate_size"]


def shrink(config, depth=0):
    """Make a transformers config small: few layers, narrow, few experts. Nested configs too."""
    import transformers as tf

    for key in LAYER_KEYS:
        if isinstance(getattr(config, key, None), int) and getattr(config, key) > 2:
            setattr(config, key, 2)
    heads = None
    for key in HEAD_KEYS:
        if isinstance(getattr(config, key, None), int) and getattr(config, key) > 4:
            setattr(config, key, 4)
        heads = heads or getattr(config, key, None)
    for key in WIDTH_KEYS:
        if isinstance(getattr(config, key, None), int) and getattr(config, key) > 64:
            setattr(config, key, 64)
    for key in FFN_KEYS:
        if isinstance(getattr(config, key, None), int) and getattr(config, key) > 128:
            setattr(config, key, 128)
    if isinstance(getattr(config, "num_key_value_heads", None), int):
        config.num_key_value_heads = min(config.num_key_value_heads, 2)
    if isinstance(getattr(config, "head_dim", None), int) and config.head_dim > 16:
        config.head_dim = 16
    for key in ["num_experts", "num_local_experts", "n_routed_experts"]:
        if isinstance(getattr(config, key, None), int) and getattr(config, key) > 4:
            setattr(config, key, 4)
    for key in ["num_experts_per_tok", "top_k", "moe_topk"]:
        if isinstance(getattr(config, key, None), int) and getattr(config, key) > 2:
            setattr(config, key, 2)
    special = [getattr(config, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")]
    if (isinstance(getattr(config, "vocab_size", None), int) and config.vocab_size > 32000
            and all(not isinstance(t, int) or t < 32000 for t in special)):
        config.vocab_size = 32000
    for key in ["layer_types"]:
        if isinstance(getattr(config, key, None), list):
            n = next((getattr(config, k) for k in LAYER_KEYS if isinstance(getattr(config, k, None), int)), None)
            if n is not None:
                setattr(config, key, getattr(config, key)[:n])
    if depth < 3:
        for key, value in list(vars(config).items()):
            if isinstance(value, tf.PretrainedConfig):
                shrink(value, depth + 1)
    return config


def config_value(config, *keys, default=None):
    for c in [config] + [getattr(config, k) for k in ("vision_config", "audio_config", "encoder") if hasattr(config, k)]:
        for key in keys:
            v = getattr(c, key, None)
            if v is not None:
                return v
    return default


def transformers_task(model_type):
    """Build the model and the inputs its forward needs, or raise."""
    import torch
    import transformers as tf
    from transformers.models.auto import configuration_auto as ca, modeling_auto as ma

    config = shrink(ca.CONFIG_MAPPING[model_type]())
    name = ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type) or ma.MODEL_MAPPING_NAMES.get(model_type)
    if isinstance(name, (tuple, list)):
        name = name[0]
    if name is None:
        raise LookupError("no base or causal-LM model class")
    torch.manual_seed(0)
    model = getattr(tf, name)(config)
    params = inspect.signature(model.forward).parameters
    vocab = config_value(config, "vocab_size", default=100) or 100
    low = min(int(vocab), 100)
    main = getattr(model, "main_input_name", "input_ids")
    inputs = {}
    if main == "input_ids" or "input_ids" in params and main not in params:
        inputs["input_ids"] = torch.randint(3, max(low, 4), (1, 8))
    if main == "pixel_values":
        size = config_value(config, "image_size", default=32)
        size = size if isinstance(size, int) else size[0]
        channels = config_value(config, "num_channels", default=3)
        inputs["pixel_values"] = torch.randn(1, channels, size, size)
    if main == "input_values":
        inputs["input_values"] = torch.randn(1, 4000)
    if main == "input_features":
        bins = config_value(config, "num_mel_bins", "feature_size", "input_feat_per_channel", default=80)
        frames = 2 * config_value(config, "max_source_positions", default=50)
        inputs["input_features"] = torch.randn(1, bins, frames)
    if "decoder_input_ids" in params:
        inputs["decoder_input_ids"] = torch.randint(3, max(low, 4), (1, 4))
    if not inputs:
        raise LookupError(f"main input `{main}` is not one this script makes")
    kwargs = {"use_cache": False} if "use_cache" in params else {}
    return model, inputs, kwargs


def torchvision_task(name):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    video = name in torchvision.models.list_models(module=torchvision.models.video)
    flow = name in torchvision.models.list_models(module=torchvision.models.optical_flow)
    size = 299 if name == "inception_v3" else 224
    if video:
        x = {"x": torch.randn(1, 3, 8, 112, 112)}
    elif flow:
        x = {"image1": torch.randn(1, 3, 128, 128), "image2": torch.randn(1, 3, 128, 128)}
    else:
        x = {list(inspect.signature(model.forward).parameters)[0]: torch.randn(1, 3, size, size)}
    return model, x, {}


def diffusers_task(name):
    import torch
    import diffusers

    torch.manual_seed(0)
    if name == "unet2d_condition":
        model = diffusers.UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
        return model, {"sample": torch.randn(1, 4, 16, 16), "timestep": torch.tensor([10]),
                       "encoder_hidden_states": torch.randn(1, 6, 32)}, {"return_dict": False}
    if name == "unet2d":
        model = diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                                      block_out_channels=(32, 64), norm_num_groups=8,
                                      down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                      up_block_types=("AttnUpBlock2D", "UpBlock2D"))
        return model, {"sample": torch.randn(1, 3, 16, 16), "timestep": torch.tensor([10])}, {"return_dict": False}
    if name == "autoencoder_kl":
        model = diffusers.AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                                        down_block_types=("DownEncoderBlock2D",) * 2,
                                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
        return model, {"sample": torch.randn(1, 3, 32, 32)}, {"return_dict": False}
    raise LookupError(name)


def tasks(only):
    from transformers.models.auto import configuration_auto as ca, modeling_auto as ma
    import torchvision

    out = []
    for model_type in sorted(ca.CONFIG_MAPPING_NAMES):
        if model_type in ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type in ma.MODEL_MAPPING_NAMES:
            out.append(f"transformers:{model_type}")
    out += [f"torchvision:{n}" for n in sorted(torchvision.models.list_models())]
    out += [f"diffusers:{n}" for n in ["unet2d_condition", "unet2d", "autoencoder_kl"]]
    return [t for t in out if t.startswith(only)]


class Forward:
    """Calls the model with named inputs and returns its tensors as a flat tuple."""

    def __init__(self, model, names, kwargs):
        import torch

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = model

            def forward(self, *xs):
                out = self.m(**dict(zip(names, xs)), **kwargs)
                flat, _ = torch.utils._pytree.tree_flatten(out)
                return tuple(t for t in flat if isinstance(t, torch.Tensor))

        self.module = M()


def op_name(target):
    import torch

    if isinstance(target, torch._ops.OpOverload):
        if target.namespace == "aten":
            return f"aten.{target._schema.name.split('::')[1]}.{target._overloadname}", str(target._schema)
        return str(target), str(target._schema)
    return f"{target.__module__}.{target.__name__}", None


def run_one(task):
    import torch

    family, name = task.split(":", 1)
    stage = "build"
    try:
        model, inputs, kwargs = {"transformers": transformers_task, "torchvision": torchvision_task,
                                 "diffusers": diffusers_task}[family](name)
        if sum(p.numel() for p in model.parameters()) > MAX_PARAMS:
            return {"status": f"skipped: more than {MAX_PARAMS} parameters"}, {}
        model.eval()
        module = Forward(model, list(inputs), kwargs).module
        stage = "eager"
        with torch.no_grad():
            module(*inputs.values())
        stage = "export"
        ep = torch.export.export(module, tuple(inputs.values()), strict=False)
        ops = {}
        for form, graph in [("default", ep), ("core_aten", None)]:
            if graph is None:
                stage = "run_decompositions"
                graph = ep.run_decompositions()
            for node in graph.graph.nodes:
                if node.op == "call_function":
                    op, schema = op_name(node.target)
                    ops.setdefault(op, [schema, []])
                    if form not in ops[op][1]:
                        ops[op][1].append(form)
        return {"status": "ok"}, ops
    except BaseException as e:  # noqa: BLE001 - every failure is recorded, not raised
        text = " ".join(str(e).split())[:300]
        return {"status": f"{stage}: {type(e).__name__}: {text}"}, {}


def worker(task_file, out_file):
    import torch

    torch.set_num_threads(1)

    def alarm(*_):
        raise TimeoutError(f"more than {TIME_LIMIT_S} s")

    signal.signal(signal.SIGALRM, alarm)
    with open(task_file) as f:
        todo = [line.strip() for line in f if line.strip()]
    for task in todo:
        with open(out_file, "a") as out:
            out.write(json.dumps({"task": task, "started": True}) + "\n")
        signal.alarm(TIME_LIMIT_S)
        result, ops = run_one(task)
        signal.alarm(0)
        with open(out_file, "a") as out:
            out.write(json.dumps({"task": task, **result, "ops": ops}) + "\n")


def run_shard(shard, scratch, index):
    """Run a list of tasks in a worker process; restart it past a task that killed it."""
    out_file = os.path.join(scratch, f"shard{index}.jsonl")
    results = {}
    remaining = list(shard)
    while remaining:
        task_file = os.path.join(scratch, f"shard{index}.tasks")
        with open(task_file, "w") as f:
            f.write("\n".join(remaining))
        proc = subprocess.Popen([sys.executable, __file__, "--worker", task_file, out_file])
        yield proc
        code = proc.returncode
        started = None
        with open(out_file) as f:
            for line in f:
                record = json.loads(line)
                if record.get("started"):
                    started = record["task"]
                else:
                    results[record["task"]] = record
                    started = None
        if started is not None and started not in results:
            results[started] = {"task": started, "status": f"crashed: worker exited with {code}", "ops": {}}
        remaining = [t for t in shard if t not in results]
    yield results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="")
    parser.add_argument("out", nargs="?")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    started = time.time()
    todo = tasks(args.only)
    scratch = tempfile.mkdtemp(prefix="op_census")
    shards = [run_shard(todo[i::args.jobs], scratch, i) for i in range(args.jobs)]
    live = {i: next(s) for i, s in enumerate(shards)}
    results = {}
    while live:
        for i, item in list(live.items()):
            if isinstance(item, subprocess.Popen):
                if item.poll() is None:
                    continue
                live[i] = next(shards[i])
            else:
                results.update(live.pop(i))
        time.sleep(0.5)
    seen = {}
    models = {}
    for task in todo:
        record = results[task]
        models[task] = record["status"]
        for op, (schema, forms) in record["ops"].items():
            entry = seen.setdefault(op, {"schema": schema, "models": 0, "forms": [], "used_by": []})
            entry["models"] += 1
            entry["forms"] = sorted(set(entry["forms"]) | set(forms))
            if len(entry["used_by"]) < EXAMPLES:
                entry["used_by"].append(task)
    with open(args.out, "w") as f:
        json.dump(dict(sorted(seen.items())), f, indent=1)
    with open(args.out.replace(".json", ".models.json"), "w") as f:
        json.dump(models, f, indent=1)
    ok = sum(1 for s in models.values() if s == "ok")
    print(f"{len(seen)} ops from {ok} of {len(models)} models in {time.time() - started:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()

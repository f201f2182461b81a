"""`genie bench`'s `torch` mode: each workload's own PyTorch module, eager, timed the way the bench
times Genie's modes, on the same inputs and thread count.

Usage: .venv/bin/python testsuite/scripts/bench_torch.py --suite default|quick --root ROOT
           --threads N --runs R --budget-s S

A conversation on stdin/stdout, one JSON object per line, so the bench can time this mode right
after its own modes on each workload (the machine's speed drifts; ratios are taken between
neighbours): each line in is a workload {"workload", "context", "batch", "label", "files":
[.pt2 ...], "entry", "inputs": safetensors path}; each line out its figures {"workload",
"context", "batch", "runs", "median_s", "p99_s", "module", "threads"}. The first line out,
{"ready": true}, says the imports are done.

Which module:
- `default` suite: the module `make_bench_models.py` exported (its classes, built by that script's
  `build()`), with the weights and buffers of the exported program loaded into it, strictly (every
  parameter and buffer of the module must come from the export, and nothing else), so it is the
  same model, run as PyTorch runs it: `torch.inference_mode()`, eager, no compile.
- `quick` suite: the fixtures' modules are not kept, so the exported program's own module
  (`torch.export.load(f).module()`), run eagerly: the same ops as the model's.

Timing (as the bench's `time_calls`): one warm-up call, then at most `runs` calls, at least 3,
stopping once `budget_s` is spent; the median and 99th percentile of the timed calls.
"""
import argparse
import json
import os
import sys
import time


def timed(call, runs, budget_s):
    call()
    walls = []
    started = time.perf_counter()
    while len(walls) < max(runs, 1):
        t = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t)
        if len(walls) >= 3 and time.perf_counter() - started > budget_s:
            break
    walls.sort()
    p99 = walls[min(len(walls), max(1, -(-len(walls) * 99 // 100))) - 1]
    return {"runs": len(walls), "median_s": walls[len(walls) // 2], "p99_s": p99}


def load_exported_into(module, path):
    """Load the export's parameters and buffers into `module`, refusing any mismatch."""
    import torch
    ep = torch.export.load(path)
    module.input_names = list(ep.graph_signature.user_inputs)
    state = dict(ep.state_dict)
    state.update({k: v for k, v in ep.constants.items() if isinstance(v, torch.Tensor)})
    own = module.state_dict(keep_vars=True)
    # Tied parameters appear once in the export (the first name); the module lists every name.
    by_id = {}
    for name, t in own.items():
        by_id.setdefault(id(t), []).append(name)
    fill = {}
    for names in by_id.values():
        found = [n for n in names if n in state]
        if not found:
            raise SystemExit(f"{path}: the export has no value for {names}")
        for n in names:
            fill[n] = state[found[0]]
    unused = set(state) - set(fill)
    if unused:
        raise SystemExit(f"{path}: the export has tensors the module does not: {sorted(unused)[:5]}")
    module.load_state_dict(fill, strict=True)
    return module.eval()


def default_modules(root):
    """The bench models' module classes, as `make_bench_models.py` defines them."""
    sys.path.insert(0, os.path.join(root, "testsuite", "scripts"))
    import make_bench_models
    return make_bench_models.build()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=12.0)
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file
    torch.set_num_threads(args.threads)
    ns = default_modules(args.root) if args.suite == "default" else None
    modules = {}
    # Imports done: from here on this process is idle between workloads, so it does not take the
    # cores the bench's own modes are being timed on.
    print(json.dumps({"ready": True}), flush=True)

    def module_for(w):
        key = (tuple(w["files"]), w["entry"])
        if key in modules:
            return modules[key]
        path = next(f for f in w["files"] if os.path.basename(f).startswith(w["entry"]))
        if ns is None:
            ep = torch.export.load(path)
            built, what = ep.module(), "exported program's module (ep.module())"
            built.input_names = list(ep.graph_signature.user_inputs)
        else:
            kind = os.path.basename(os.path.dirname(path))
            if kind == "gpt2s":
                wrapper = ns["Prefill"] if w["entry"] == "prefill" else ns["Decode"]
                built = load_exported_into(wrapper(ns["Gpt2"]()), path)
            elif kind == "cnn":
                built = load_exported_into(ns["ResNet18"](), path)
            elif kind == "encoder":
                built = load_exported_into(ns["Bert"](), path)
            else:
                raise SystemExit(f"no module for {path}")
            what = f"make_bench_models.py's {type(built).__name__}, weights from {os.path.basename(path)}"
        modules[key] = (built, what)
        return modules[key]

    for line in sys.stdin:
        if not line.strip():
            continue
        w = json.loads(line)
        module, what = module_for(w)
        tensors = load_file(w["inputs"])
        # In the exported signature's order, which is the module's.
        inputs = [tensors[n] for n in module.input_names]
        with torch.inference_mode():
            figures = timed(lambda: module(*inputs), args.runs, args.budget_s)
        print(json.dumps({"workload": w["workload"], "context": w["context"], "batch": w["batch"], "module": what,
                          "threads": torch.get_num_threads(), **figures}), flush=True)


if __name__ == "__main__":
    main()

"""Every causal LM of the transformers zoo through `genie.export_decoder` and `genie inspect`:
is the prefill tagged `llm_prefill`, the decode step `llm_decode`, and is every layer's KV
state bound? Models are built from their default configs shrunk as the op census shrinks them
(`op_census.shrink`), random weights, no download.

Writes `{model_type: {"status", "phases", "attention", "bindings", "cache_tensors"}}` to OUT.
A model transformers cannot build or `torch.export` cannot export is recorded with the reason;
what is Genie's to fix shows as a wrong phase or fewer bindings than twice the cache tensors
(prefill → decode and decode → decode for each).

Usage: .venv/bin/python testsuite/scripts/decoder_sweep.py [--only PREFIX] OUT.json
"""
import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import op_census  # noqa: E402 - the census's config shrinking

_spec = importlib.util.spec_from_file_location("genie_export", os.path.join(REPO, "python", "genie", "export.py"))
genie_export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(genie_export)
GENIE = os.path.join(REPO, "target", "release", "genie")
TIME_LIMIT_S = 180


def one(model_type, scratch):
    import transformers as tf
    from transformers.models.auto import configuration_auto as ca, modeling_auto as ma

    stage = "build"
    try:
        config = op_census.shrink(ca.CONFIG_MAPPING[model_type]())
        name = ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]
        torch.manual_seed(0)
        model = getattr(tf, name)(config).eval()
        stage = "export"
        out = os.path.join(scratch, model_type)
        prefill, decode = genie_export.export_decoder(model, out, max_seq=64)
        stage = "inspect"
        r = subprocess.run([GENIE, "inspect", prefill, decode, "--summary", "--format", "json"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode:
            return {"status": "genie: " + " ".join(r.stderr.split())[:300]}
        s = json.loads(r.stdout)
        cache = sum(1 for i in s["entries"][1]["inputs"] if i["name"].startswith("past_"))
        return {
            "status": "ok",
            "phases": [e.get("phase") for e in s["entries"]],
            "attention": s.get("tags", {}).get("attention", 0),
            "bindings": len(s.get("state_bindings", [])),
            "cache_tensors": cache,
        }
    except BaseException as e:  # noqa: BLE001 - recorded
        return {"status": f"{stage}: {type(e).__name__}: {' '.join(str(e).split())[:300]}"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="")
    parser.add_argument("out")
    args = parser.parse_args()
    from transformers.models.auto import modeling_auto as ma

    torch.set_num_threads(1)

    def alarm(*_):
        raise TimeoutError(f"more than {TIME_LIMIT_S} s")

    signal.signal(signal.SIGALRM, alarm)
    results = json.load(open(args.out)) if os.path.exists(args.out) else {}
    with tempfile.TemporaryDirectory() as scratch:
        for model_type in sorted(ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
            if not model_type.startswith(args.only) or model_type in results:
                continue
            signal.alarm(TIME_LIMIT_S)
            results[model_type] = one(model_type, scratch)
            signal.alarm(0)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1, sort_keys=True)
    ok = [r for r in results.values() if r["status"] == "ok"]
    # Each cache tensor is bound twice: prefill → decode and decode → decode.
    right = [r for r in ok if r["phases"] == ["llm_prefill", "llm_decode"] and r["bindings"] == 2 * r["cache_tensors"]]
    print(f"{len(results)} causal LMs: {len(ok)} exported and imported, {len(right)} tagged with every KV tensor bound")


if __name__ == "__main__":
    main()

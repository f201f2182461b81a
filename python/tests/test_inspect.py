"""`Program.summary()` and `Plan.summary()` are what `genie inspect --summary --format json`
prints for the same files; a saved plan is one the CLI reads."""

from __future__ import annotations

import json
import subprocess

import genie
from conftest import FIXTURES, genie_binary

GPT2 = [str(FIXTURES / "gpt2" / "prefill.pt2"), str(FIXTURES / "gpt2" / "decode.pt2")]


def cli_json(*args: str) -> dict:
    out = subprocess.run([str(genie_binary()), "inspect", *args, "--summary", "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_program_summary_is_the_cli_summary():
    program = genie.load(GPT2)
    assert program.summary() == cli_json(*GPT2)
    assert program.summary({"s0": 32}) == cli_json(*GPT2, "--bind", "s0=32")
    assert program.name and program.files == GPT2
    dot = program.dot()
    assert dot.startswith("digraph") and "attention" in dot


def test_a_ron_program_is_summarised_as_written_as_the_cli_does():
    from conftest import ROOT

    example = str(ROOT / "examples" / "tiny_decoder.ron")
    assert genie.load(example).summary() == cli_json(example)


def test_a_plan_summary_is_the_cli_summary_of_the_saved_plan(tmp_path):
    plan = genie.compile(GPT2, genie.local(workers=2, memory="100KB"), max_seq=16)
    assert len(plan.devices) == 2
    for name in ("gpt2.plan", "gpt2.plan.ron"):
        path = tmp_path / name
        plan.save(path)
        assert plan.summary() == cli_json(str(path))
    assert plan.summary()["devices"][0]["memory_bytes"] == 100_000
    assert "digraph" in plan.dot()


def test_a_saved_plan_runs_in_the_cli(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).eval()
    x = torch.randn(3, 8)
    path = genie.export(model, (x,), tmp_path / "mlp.pt2")
    program = genie.load(path)
    name = program.summary()["inputs"][0]["name"]
    plan = genie.compile(program, genie.local(workers=2, memory="1GiB"))
    plan.save(tmp_path / "mlp.plan")
    with genie.connect() as c:
        (ours,) = c.run(plan, {name: x}).values()
    save_file({name: x}, str(tmp_path / "in.safetensors"))
    out = subprocess.run(
        [str(genie_binary()), "run", str(tmp_path / "mlp.plan"), str(path), "--inputs", str(tmp_path / "in.safetensors"),
         "--outputs", str(tmp_path / "out.safetensors")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (theirs,) = load_file(str(tmp_path / "out.safetensors")).values()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(ours, model(x).detach(), rtol=1e-5, atol=1e-6)

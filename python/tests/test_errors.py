"""Errors are Python exceptions carrying the Rust error's message: `genie.GenieError` and its
subclasses for import, compile, placement, runtime and refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import genie
from conftest import FIXTURES, Worker, cluster_file, run_python


def small_model(tmp_path):
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    return genie.export(model, (torch.randn(2, 16),), tmp_path / "mlp.pt2")


def test_the_hierarchy():
    for cls in (genie.GenieImportError, genie.GenieCompileError, genie.GeniePlacementError, genie.GenieRuntimeError):
        assert issubclass(cls, genie.GenieError)
    assert issubclass(genie.GenieRefusedError, genie.GenieRuntimeError)
    assert genie.GenieError.__module__ == "genie"


def test_files_that_do_not_import(tmp_path):
    with pytest.raises(genie.GenieImportError, match="nope.pt2"):
        genie.load(tmp_path / "nope.pt2")
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(genie.GenieImportError, match="garbage.pt2"):
        genie.load(garbage)
    (tmp_path / "model.txt").write_text("hello")
    with pytest.raises(genie.GenieImportError, match="unknown model format"):
        genie.load(tmp_path / "model.txt")


def test_a_program_that_does_not_fit(tmp_path):
    program = genie.load(small_model(tmp_path))
    with pytest.raises(genie.GeniePlacementError, match="does not fit"):
        genie.compile(program, genie.local(workers=2, memory="1KiB"))


def test_bad_arguments_are_python_errors(tmp_path):
    program = genie.load(small_model(tmp_path))
    with pytest.raises(TypeError, match="unknown compile option `colour`"):
        genie.compile(program, colour="blue")
    with pytest.raises(ValueError, match="policy"):
        genie.compile(program, policy="fastest")
    with pytest.raises(ValueError, match="worker memory"):
        genie.local(memory="lots")
    with pytest.raises(ValueError, match="cuda:N"):
        genie.connect(genie.local(device="tpu0"))
    with pytest.raises(TypeError, match="not a torch.Tensor"):
        with genie.connect() as c:
            c.run(program, {"x": [1.0, 2.0]})


def test_runtime_errors_name_the_input(tmp_path):
    path = small_model(tmp_path)
    name = genie.load(path).summary()["inputs"][0]["name"]
    with genie.connect() as c:
        with pytest.raises(genie.GenieRuntimeError, match=f"input `{name}`.*missing"):
            c.run(path, {})
        with pytest.raises(genie.GenieRuntimeError, match=rf"`{name}`: expected \[2, 16\].*got \[2, 15\]"):
            c.run(path, {name: torch.randn(2, 15)})
        # The connection still works after failed calls.
        (out,) = c.run(path, {name: torch.randn(2, 16)}).values()
        assert out.shape == (2, 4)
    with pytest.raises(genie.GenieRuntimeError, match="closed"):
        c.run(path, {name: torch.randn(2, 16)})


def test_a_program_of_several_entries_needs_the_entry_named():
    decoder = [FIXTURES / "gpt2" / "prefill.pt2", FIXTURES / "gpt2" / "decode.pt2"]
    ids = torch.tensor([[11, 17, 116, 44, 50]])
    with genie.connect() as c:
        with pytest.raises(genie.GenieRuntimeError, match=r"several entries \(prefill, decode\)"):
            c.run(decoder, {"input_ids": ids})
        outputs = c.run(decoder, {"input_ids": ids}, entry="prefill")
    assert next(iter(outputs.values())).shape[:2] == (1, 5)


def test_a_generation_of_a_program_that_is_not_a_decoder(tmp_path):
    with genie.connect() as c:
        with pytest.raises(genie.GenieRuntimeError, match="prefill and a decode"):
            c.generate(small_model(tmp_path), [1, 2, 3], max_new_tokens=2)
        with pytest.raises(ValueError, match="empty"):
            c.generate([FIXTURES / "gpt2" / "prefill.pt2", FIXTURES / "gpt2" / "decode.pt2"], [], max_new_tokens=2)


def test_a_wrong_token_is_refused(worker, tmp_path):
    w, _ = worker
    path = cluster_file(tmp_path / "cluster.ron", [w])
    with genie.connect(path, token="not-the-token") as c:
        with pytest.raises(genie.GenieRefusedError, match="(?i)token|unauthori"):
            c.exec_op("aten.relu.default", [torch.randn(3)])


def test_a_worker_out_of_memory_refuses_the_load(tmp_path):
    token = "python-test-token"
    w = Worker(token, "--memory", "4KiB")
    try:
        path = cluster_file(tmp_path / "cluster.ron", [w], memory="1GiB")
        # 128 KiB of weights for a worker of 4 KiB.
        model = genie.export(nn.Linear(64, 512).eval(), (torch.randn(2, 64),), tmp_path / "wide.pt2")
        name = genie.load(model).summary()["inputs"][0]["name"]
        with genie.connect(path, token=token) as c:
            with pytest.raises(genie.GenieRefusedError, match="(?i)memory"):
                c.run(model, {name: torch.randn(2, 64)})
        assert w.process.poll() is None, "the worker stays up"
    finally:
        w.stop()


def test_a_cluster_file_with_remote_workers_needs_their_token(worker, tmp_path):
    w, _ = worker
    path = cluster_file(tmp_path / "cluster.ron", [w])
    with pytest.raises(ValueError, match="token"):
        genie.connect(path)


def test_a_mismatched_torch_is_named_on_import():
    out = run_python("import torch; torch.__version__ = '2.10.0+cpu'; import genie")
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "2.11.0" in out.stderr and "2.10.0+cpu" in out.stderr, out.stderr

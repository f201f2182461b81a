"""Shared helpers of the Python package's tests (run by `cargo xtask test`)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterator, Tuple

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
GENIE = ROOT / "target" / "release" / "genie"
FIXTURES = ROOT / "testsuite" / "fixtures"

# The fixture families' sizes (testsuite/scripts/make_fixtures.py): vocabulary, width, heads,
# KV heads, layers, MLP width, positions.
VOCAB, D_MODEL, N_HEAD, N_KV_HEAD, N_LAYER, D_FF, MAX_POS = 128, 32, 4, 2, 2, 64, 64


def genie_binary() -> Path:
    if not GENIE.exists():
        pytest.fail(f"{GENIE} is missing: build it first (`cargo xtask test` does)")
    return GENIE


class Worker:
    """A real `genie worker` process on loopback."""

    def __init__(self, token: str, *extra: str) -> None:
        self.process = subprocess.Popen(
            [str(genie_binary()), "worker", "--listen", "127.0.0.1:0", "--token", token, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"listening on (\S+) device \S+ fingerprint (\S+)", line)
        if not found:
            self.process.kill()
            raise RuntimeError(f"genie worker did not start: {line!r}")
        self.address, self.fingerprint = found.group(1), found.group(2)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def worker() -> Iterator[Tuple[Worker, str]]:
    token = "python-test-token"
    w = Worker(token)
    try:
        yield w, token
    finally:
        w.stop()


def cluster_file(path: Path, workers: "list[Worker]", memory: str = "1GiB", spares: int = 0) -> Path:
    """A cluster file naming the workers as `w0`, `w1`, ...; the last `spares` are spares."""
    devices = ", ".join(
        f'(name: "w{i}", kind: cpu, memory: "{memory}"{", spare: true" if i >= len(workers) - spares else ""})'
        for i in range(len(workers))
    )
    entries = ", ".join(
        f'"w{i}": (address: "{w.address}", fingerprint: "{w.fingerprint}")' for i, w in enumerate(workers)
    )
    path.write_text(f"(devices: [{devices}], deployment: (workers: {{{entries}}}))\n")
    return path


def decoder(family: str) -> torch.nn.Module:
    """A transformers causal LM of a decoder fixture family, built from the fixture's config,
    random weights (seeded). Its end-of-sequence token is unset, so `generate` runs the full
    length as Genie's greedy loop does."""
    import transformers as tf

    torch.manual_seed(6)
    common = dict(vocab_size=VOCAB, initializer_range=0.3)
    if family == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(n_positions=MAX_POS, n_embd=D_MODEL, n_layer=N_LAYER, n_head=N_HEAD, **common))
    else:
        llama_like = dict(
            hidden_size=D_MODEL,
            intermediate_size=D_FF,
            num_hidden_layers=N_LAYER,
            num_attention_heads=N_HEAD,
            num_key_value_heads=N_KV_HEAD,
            **common,
        )
        if family == "llama":
            model = tf.LlamaForCausalLM(tf.LlamaConfig(max_position_embeddings=MAX_POS, **llama_like))
        elif family == "mistral":
            model = tf.MistralForCausalLM(tf.MistralConfig(max_position_embeddings=4096, sliding_window=4096, **llama_like))
        else:
            raise ValueError(family)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter of this environment (imports start from nothing)."""
    import sys

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )

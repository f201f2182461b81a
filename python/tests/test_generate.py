"""A transformers decoder of each fixture family -> `genie.export_decoder` -> generation on two
embedded workers equals `model.generate(do_sample=False)` token for token."""

from __future__ import annotations

import pytest
import torch

import genie
from conftest import MAX_POS, decoder

PROMPT = [11, 17, 116, 44, 50]
NEW_TOKENS = 16


@pytest.mark.parametrize("family", ["gpt2", "llama", "mistral"])
def test_exported_decoder_generates_what_transformers_generates(family, tmp_path):
    model = decoder(family)
    prefill, decode = genie.export_decoder(model, tmp_path / family, max_seq=MAX_POS)
    assert prefill.endswith("prefill.pt2") and decode.endswith("decode.pt2")

    program = genie.load([prefill, decode])
    summary = program.summary()
    phases = {e["name"]: e["phase"] for e in summary["entries"]}
    assert phases == {"prefill": "llm_prefill", "decode": "llm_decode"}, phases
    # Every layer's K and V: prefill's into decode's first call, and decode's into its next.
    assert len(summary["state_bindings"]) == 2 * 2 * 2, summary["state_bindings"]

    # Placed to balance memory: the model is split over both workers.
    cluster = genie.local(workers=2, memory="64MiB")
    plan = genie.compile(program, cluster, policy="balance-memory", max_seq=32, prompt_len=len(PROMPT), new_tokens=NEW_TOKENS)
    used = [d["name"] for d in plan.summary()["devices"] if d["nodes"] > 0]
    assert len(used) == 2, plan.summary()["devices"]

    prompt = torch.tensor([PROMPT])
    with torch.no_grad():
        expected = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS, do_sample=False
        )[0, len(PROMPT):].tolist()
    assert len(expected) == NEW_TOKENS
    with genie.connect(cluster) as c:
        assert c.generate(plan, prompt, max_new_tokens=NEW_TOKENS) == expected
        streamed = c.generate(plan, PROMPT, max_new_tokens=NEW_TOKENS, stream=True)
        assert not isinstance(streamed, list)
        assert list(streamed) == expected


def test_generation_from_paths_compiles_once_per_connection(tmp_path):
    model = decoder("gpt2")
    files = genie.export_decoder(model, tmp_path, max_seq=MAX_POS, example_prompt_len=4)
    prompt = torch.tensor([PROMPT])
    with torch.no_grad():
        expected = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4, do_sample=False)
    with genie.connect() as c:
        first = c.generate(files, PROMPT, max_new_tokens=4)
        again = c.generate(list(files), torch.tensor(PROMPT), max_new_tokens=4)
    assert first == again == expected[0, len(PROMPT):].tolist()
    assert c.closed


def test_the_exported_pair_runs_in_the_cli_too(tmp_path):
    """The files are ordinary `.pt2` archives: `genie generate` takes them as they are."""
    import subprocess

    from conftest import genie_binary

    model = decoder("llama")
    prefill, decode = genie.export_decoder(model, tmp_path, max_seq=MAX_POS)
    with genie.connect() as c:
        tokens = c.generate([prefill, decode], PROMPT, max_new_tokens=8)
    out = subprocess.run(
        [str(genie_binary()), "generate", prefill, decode, "--prompt", ",".join(map(str, PROMPT)), "--max-new-tokens", "8"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert f"tokens: {' '.join(map(str, tokens))}" in out.stdout

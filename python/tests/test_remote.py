"""The package against real `genie worker` processes named in a cluster file: generation, and
a worker killed mid-generation survived as `genie generate` survives it."""

from __future__ import annotations

import torch

import genie
from conftest import MAX_POS, Worker, cluster_file, decoder

PROMPT = [11, 17, 116, 44, 50]
TOKEN = "python-remote-test"


def reference(model, new_tokens):
    prompt = torch.tensor([PROMPT])
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, do_sample=False)
    return out[0, len(PROMPT):].tolist()


def test_generation_on_worker_processes_survives_a_killed_worker(tmp_path):
    model = decoder("llama")
    files = genie.export_decoder(model, tmp_path / "llama", max_seq=MAX_POS)
    expected = reference(model, 16)
    workers = [Worker(TOKEN) for _ in range(3)]
    try:
        # w0 and w1 hold the model (balanced), w2 is the spare a lost part moves to.
        path = cluster_file(tmp_path / "cluster.ron", workers, memory="64MiB", spares=1)
        plan = genie.compile(genie.load(files), path, policy="balance-memory", max_seq=32)
        assert sorted(d["name"] for d in plan.summary()["devices"] if d["nodes"] > 0) == ["w0", "w1"]
        with genie.connect(path, token=TOKEN, detect_s=1.0) as c:
            assert c.generate(plan, PROMPT, max_new_tokens=16) == expected
            got = []
            for token in c.generate(plan, PROMPT, max_new_tokens=16, stream=True):
                got.append(token)
                if len(got) == 5:
                    workers[1].stop()
            assert got == expected
            # Later calls go on where the recovery placed the model, not to the dead worker.
            assert c.generate(plan, PROMPT, max_new_tokens=16) == expected
        assert workers[0].process.poll() is None and workers[2].process.poll() is None
    finally:
        for w in workers:
            w.stop()


def test_without_recoveries_a_killed_worker_ends_the_generation(tmp_path):
    model = decoder("gpt2")
    files = genie.export_decoder(model, tmp_path / "gpt2", max_seq=MAX_POS)
    workers = [Worker(TOKEN) for _ in range(2)]
    try:
        path = cluster_file(tmp_path / "cluster.ron", workers, memory="64MiB")
        plan = genie.compile(genie.load(files), path, policy="balance-memory", max_seq=32)
        with genie.connect(path, token=TOKEN, detect_s=1.0, max_recoveries=0) as c:
            stream = c.generate(plan, PROMPT, max_new_tokens=16, stream=True)
            assert next(stream) == reference(model, 1)[0]
            workers[1].stop()
            try:
                for _ in stream:
                    pass
                raise AssertionError("the generation went on without w1")
            except genie.GenieRuntimeError as e:
                assert "w1" in str(e), e
    finally:
        for w in workers:
            w.stop()

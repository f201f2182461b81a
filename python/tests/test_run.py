"""`Connection.run`: an encoder and a CNN exported with `genie.export` and run on embedded
workers match eager PyTorch; tensors go in and come out as torch tensors."""

from __future__ import annotations

import torch
from torch import nn

import genie
from conftest import D_MODEL, N_HEAD, N_LAYER, VOCAB


class LastHidden(nn.Module):
    """A transformers encoder's last hidden state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class Pooled(nn.Module):
    """A transformers vision model's pooled output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).pooler_output


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_an_encoder_runs_as_in_eager(tmp_path):
    import transformers as tf

    torch.manual_seed(1)
    config = tf.BertConfig(
        vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=N_LAYER, num_attention_heads=N_HEAD,
        intermediate_size=64, max_position_embeddings=64,
    )
    model = LastHidden(tf.BertModel(config)).eval()
    ids = torch.randint(0, VOCAB, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    path = genie.export(model, (ids, mask), tmp_path / "bert.pt2")
    with torch.no_grad():
        want = model(ids, mask)
    program = genie.load(path)
    assert program.summary()["phase"] == "encoder"
    with genie.connect(genie.local(workers=2, memory="64MiB")) as c:
        out = c.run(program, {"input_ids": ids, "attention_mask": mask})
    assert list(out) == ["last_hidden_state"] or len(out) == 1, list(out)
    assert_close(next(iter(out.values())), want)


def test_a_cnn_runs_as_in_eager_and_a_second_call_reuses_the_deployment(tmp_path):
    import transformers as tf

    torch.manual_seed(2)
    config = tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_channels=3)
    model = Pooled(tf.ResNetModel(config)).eval()
    images = torch.randn(2, 3, 32, 32)
    path = genie.export(model, (images,), tmp_path / "resnet.pt2")
    with torch.no_grad():
        want = model(images)
        other = torch.randn(2, 3, 32, 32)
        want_other = model(other)
    with genie.connect() as c:
        first = c.run(path, {"pixel_values": images})
        second = c.run(str(path), {"pixel_values": other})
    (name,) = first
    assert_close(first[name], want)
    assert_close(second[name], want_other)


def test_inputs_need_not_be_contiguous_and_outputs_are_ordinary_tensors(tmp_path):
    model = nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 3)).eval()
    x = torch.randn(6, 4).t()  # a transposed view: not contiguous
    assert not x.is_contiguous()
    path = genie.export(model, (x.contiguous(),), tmp_path / "mlp.pt2")
    with torch.no_grad():
        want = model(x)
    with genie.connect() as c:
        (out,) = c.run(path, {next(iter(genie.load(path).summary()["inputs"]))["name"]: x}).values()
    assert_close(out, want)
    out.add_(1)  # writable, owned by torch like any other tensor
    assert_close(out, want + 1)


def test_a_decode_step_given_its_past_runs_alone(tmp_path):
    """A stateful graph run once with every input, its past K/V included: the past is the
    initial state and the present K/V come back with the logits, as in eager PyTorch; a decoder
    exported by `genie.export_decoder` the same way."""
    from safetensors.torch import load_file

    from conftest import FIXTURES

    decode = FIXTURES / "gpt2" / "decode.pt2"
    inputs = load_file(str(FIXTURES / "gpt2" / "decode.inputs.safetensors"))
    want = load_file(str(FIXTURES / "gpt2" / "decode.outputs.safetensors"))
    with genie.connect() as c:
        got = c.run(decode, inputs)
        assert sorted(got) == sorted(want)
        for name in want:
            assert_close(got[name], want[name])
        # The same program called with the new token only has no state to start from.
        try:
            c.run(decode, {"input_ids": inputs["input_ids"]})
        except genie.GenieRuntimeError as e:
            assert "past_key_0" in str(e)
        else:
            raise AssertionError("a decode step without its past must fail")

"""Export helpers: `torch.export` archives (`.pt2`) in the forms Genie compiles.

`export_decoder` writes the prefill and decode-step programs of a causal LM the way
`genie generate` runs them: prefill takes the prompt and returns the logits and every layer's
K/V; decode takes one new token with the past K/V of every layer (flattened, `past_0`,
`past_1`, ...) and returns the logits and the present K/V. Genie recognises the K/V as state
and keeps it on the workers between steps.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.export import Dim

PathLike = Union[str, "os.PathLike[str]"]


def export(
    module: nn.Module,
    args: Tuple[Any, ...],
    path: PathLike,
    dynamic_shapes: Optional[Any] = None,
    kwargs: Optional[Dict[str, Any]] = None,
) -> str:
    """`torch.export.export(module, args, dynamic_shapes=...)` saved to `path` (`.pt2`), in
    inference mode with the module in eval. Returns the path."""
    path = os.fspath(path)
    if not path.endswith(".pt2"):
        raise ValueError(f"{path}: Genie reads torch.export archives by their `.pt2` extension")
    module.eval()
    with torch.no_grad():
        program = torch.export.export(module, tuple(args), kwargs=kwargs, dynamic_shapes=dynamic_shapes)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    torch.export.save(program, path)
    return path


def _flat_cache(cache: Any) -> List[torch.Tensor]:
    """Every layer's key then value, in layer order, from any of the cache forms transformers
    has used (`DynamicCache` with `.layers` or `.key_cache`) or a tuple of (key, value) pairs."""
    if hasattr(cache, "layers"):
        out: List[torch.Tensor] = []
        for layer in cache.layers:
            out += [layer.keys, layer.values]
        return out
    if hasattr(cache, "key_cache"):
        return [t for pair in zip(cache.key_cache, cache.value_cache) for t in pair]
    if isinstance(cache, (tuple, list)):
        return [t for pair in cache for t in pair]
    raise TypeError(f"cannot read a KV cache of type {type(cache).__name__}")


def _logits_and_cache(out: Any) -> Tuple[torch.Tensor, Any]:
    if hasattr(out, "logits"):
        # transformers 5 calls the cache `cache` (`past_key_values` still works, with a warning).
        keys = out.keys() if hasattr(out, "keys") else ()
        return out.logits, out["cache"] if "cache" in keys else out.past_key_values
    if isinstance(out, (tuple, list)) and len(out) >= 2:
        return out[0], out[1]
    raise TypeError(
        f"the model returned a {type(out).__name__}; a decoder must return `.logits` and "
        "`.past_key_values` (transformers) or a (logits, past_key_values) tuple"
    )


def _accepts(model: nn.Module, name: str) -> bool:
    params = inspect.signature(model.forward).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _cache_keyword(model: nn.Module) -> str:
    """The keyword the model takes its cache by: `cache` in transformers 5, else
    `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _is_transformers(model: nn.Module) -> bool:
    return any(c.__module__.startswith("transformers.") for c in type(model).__mro__)


def _cache_from(model: nn.Module, past: Sequence[torch.Tensor]) -> Any:
    """The cache object the model takes, rebuilt from flattened past K/V."""
    if _is_transformers(model):
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        return cache
    return tuple((past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2))


class _Prefill(nn.Module):
    def __init__(self, model: nn.Module, with_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.with_mask = with_mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        extra = {"attention_mask": attention_mask} if self.with_mask else {}
        logits, cache = _logits_and_cache(self.model(input_ids=input_ids, use_cache=True, **extra))
        return (logits, *_flat_cache(cache))


class _Decode(nn.Module):
    def __init__(self, model: nn.Module, with_mask: bool, with_positions: bool) -> None:
        super().__init__()
        self.model = model
        self.with_mask = with_mask
        self.with_positions = with_positions

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor
    ) -> Tuple[torch.Tensor, ...]:
        extra: Dict[str, Any] = {}
        if self.with_mask:
            extra["attention_mask"] = attention_mask
        if self.with_positions:
            extra["position_ids"] = position_ids
        extra[_cache_keyword(self.model)] = _cache_from(self.model, past)
        logits, cache = _logits_and_cache(self.model(input_ids=input_ids, use_cache=True, **extra))
        return (logits, *_flat_cache(cache))


def _max_positions(model: nn.Module) -> Optional[int]:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def export_decoder(
    model: nn.Module,
    out_dir: PathLike,
    *,
    max_seq: Optional[int] = None,
    example_prompt_len: int = 8,
) -> Tuple[str, str]:
    """Export a causal LM as `out_dir/prefill.pt2` and `out_dir/decode.pt2`; returns their
    paths, ready for `genie.load`, `Connection.generate` or `genie generate PREFILL DECODE`.

    `model` is a transformers causal LM, or any module with the same convention: called with
    `input_ids`, optionally `attention_mask`/`position_ids`, `past_key_values` and
    `use_cache=True`, it returns `.logits` and `.past_key_values` (or a tuple of both).
    `max_seq` bounds prompt plus generated tokens (default: the model's position limit, if
    its config has one); sequence and cache lengths are symbolic up to it.
    """
    if example_prompt_len < 2:
        raise ValueError("example_prompt_len must be at least 2 (a length of 1 would be specialised)")
    limit = max_seq if max_seq is not None else _max_positions(model)
    if limit is not None and example_prompt_len + 1 > limit:
        raise ValueError(f"example_prompt_len {example_prompt_len} leaves no room below max_seq {limit}")
    model.eval()
    with_mask = _accepts(model, "attention_mask")
    with_positions = _accepts(model, "position_ids")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 2
    # A deterministic example prompt inside the vocabulary: export only traces shapes.
    prompt = (torch.arange(example_prompt_len, dtype=torch.int64) * 7 + 3).remainder(vocab).unsqueeze(0)
    ones = torch.ones_like(prompt)
    prefill, decode = _Prefill(model, with_mask), _Decode(model, with_mask, with_positions)
    with torch.no_grad():
        _, *present = prefill(prompt, ones)
    if not present or len(present) % 2:
        raise ValueError(f"the model returned {len(present)} cache tensors; expected a key and a value per layer")
    seq = Dim.AUTO(max=limit) if limit is not None else Dim.AUTO
    past_len = Dim.AUTO(max=limit - 1) if limit is not None else Dim.AUTO
    out_dir = os.fspath(out_dir)
    prefill_path = export(prefill, (prompt, ones), os.path.join(out_dir, "prefill.pt2"), dynamic_shapes=({1: seq}, {1: seq}))
    p = example_prompt_len
    args = (
        prompt[:, :1],
        torch.ones(1, p + 1, dtype=torch.int64),
        torch.tensor([[p]], dtype=torch.int64),
        *(t.contiguous() for t in present),
    )
    # `*past` takes its dims as one tuple, as the signature groups it.
    dims = (None, {1: seq}, None, tuple({2: past_len} for _ in present))
    decode_path = export(decode, args, os.path.join(out_dir, "decode.pt2"), dynamic_shapes=dims)
    return prefill_path, decode_path

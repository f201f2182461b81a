"""Genie for PyTorch users: export a model, compile it to a placement plan, run it on workers.

    import genie, torch, transformers
    model = transformers.AutoModelForCausalLM.from_config(config)
    prefill, decode = genie.export_decoder(model, "out/")
    with genie.connect() as c:                      # two embedded workers on loopback
        print(c.generate([prefill, decode], [11, 17, 116], max_new_tokens=16))

Everything below `genie.load` is the Rust library the `genie` CLI uses (`genie._native`);
this package only gives it a Python shape. Tensors cross without copies.
"""

from __future__ import annotations

# libtorch comes from the torch of this environment: it must be loaded before the extension,
# which links against it and carries no copy of its own.
import torch as _torch

from ._build import TORCH_VERSION

_found = _torch.__version__.split("+")[0]
if _found != TORCH_VERSION:
    raise ImportError(
        f"genie was built against torch {TORCH_VERSION}, but this environment has torch "
        f"{_torch.__version__}: install torch=={TORCH_VERSION} (pip install torch=={TORCH_VERSION})"
    )

from ._native import (  # noqa: E402
    GenieCompileError,
    GenieError,
    GenieImportError,
    GeniePlacementError,
    GenieRefusedError,
    GenieRuntimeError,
)
from .api import Cluster, Connection, Plan, Program, compile, connect, load, local  # noqa: E402
from .export import export, export_decoder  # noqa: E402

__all__ = [
    "Cluster",
    "Connection",
    "GenieCompileError",
    "GenieError",
    "GenieImportError",
    "GeniePlacementError",
    "GenieRefusedError",
    "GenieRuntimeError",
    "Plan",
    "Program",
    "TORCH_VERSION",
    "compile",
    "connect",
    "export",
    "export_decoder",
    "load",
    "local",
]

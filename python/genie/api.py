"""Inspect, compile and run: the Python face of `genie inspect`, `genie compile`, `genie run`
and `genie generate`. Each call goes straight to the Rust library (`genie._native`)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from . import _native

PathLike = Union[str, "os.PathLike[str]"]


class Program:
    """A model imported from its files (`.pt2`, `.onnx`, `.ron`), every pass run."""

    def __init__(self, native: _native.Program) -> None:
        self._native = native

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def files(self) -> List[str]:
        return self._native.files

    def summary(self, bindings: Optional[Mapping[str, int]] = None) -> Dict[str, Any]:
        """What `genie inspect --summary --format json` prints: entries with their inputs,
        outputs, phases and tags, op counts, weights, state bindings."""
        return json.loads(self._native.summary_json(dict(bindings) if bindings else None))

    def dot(self) -> str:
        """The graphs as Graphviz DOT (`genie inspect --format dot`)."""
        return self._native.dot()

    def __repr__(self) -> str:
        return f"genie.Program({self.name!r}, files={self.files!r})"


class Plan:
    """A program placed on a cluster: one execution plan per device (`genie compile`)."""

    def __init__(self, native: _native.Plan) -> None:
        self._native = native

    @property
    def devices(self) -> List[str]:
        return self._native.devices

    def summary(self) -> Dict[str, Any]:
        """What `genie inspect PLAN --summary --format json` prints: per device its nodes and
        memory, per entry its transfers and round trips, the phase estimates."""
        return json.loads(self._native.summary_json())

    def dot(self) -> str:
        return self._native.dot()

    def save(self, path: PathLike) -> None:
        """Write the plan: RON when the name ends in `.ron`, else binary."""
        self._native.save(os.fspath(path))

    def __repr__(self) -> str:
        return f"genie.Plan(devices={self.devices!r})"


class Cluster:
    """Where a program is placed and run: a cluster file (`cluster.ron`, whose `deployment`
    section names running workers), or embedded workers started in this process."""

    def __init__(self, native: _native.Cluster) -> None:
        self._native = native

    @property
    def devices(self) -> List[Tuple[str, int]]:
        """(name, memory in bytes) of every device placement plans for."""
        return self._native.devices

    def __repr__(self) -> str:
        return f"genie.Cluster(devices={self.devices!r})"


ClusterLike = Union[None, PathLike, Cluster]


def local(workers: int = 2, memory: str = "8GiB", device: str = "cpu") -> Cluster:
    """`workers` embedded workers on loopback, each with `memory` for placement (e.g. `"1GiB"`)
    running ops on `device` (`"cpu"` or `"cuda:N"`). The CLI's default is `local()`."""
    return Cluster(_native.Cluster(workers=workers, memory=memory, device=device))


def _cluster(cluster: ClusterLike, token: Optional[str] = None, ca: Optional[PathLike] = None) -> Cluster:
    if cluster is None:
        return local()
    if isinstance(cluster, Cluster):
        if token is not None or ca is not None:
            raise ValueError("token= and ca= go with a cluster file, not with genie.local(...)")
        return cluster
    if isinstance(cluster, (str, os.PathLike)):
        return Cluster(
            _native.Cluster(file=os.fspath(cluster), token=token, ca=None if ca is None else os.fspath(ca))
        )
    raise TypeError(f"cluster must be None, a cluster file path or genie.local(...), not {type(cluster).__name__}")


def load(paths: Union[PathLike, Sequence[PathLike]]) -> Program:
    """Import model files into one program (a prefill and a decode file form one) and run
    every pass on it."""
    return Program(_native.load(_paths(paths)))


def compile(program: Union[Program, PathLike, Sequence[PathLike]], cluster: ClusterLike = None, **options: Any) -> Plan:
    """Place `program` on `cluster` and generate per-device plans. Options as `genie compile`
    takes them: `policy` (`"min-latency"`, `"balance-memory"`, `"min-ttft"`, `"min-tpot"`),
    `disaggregate` (`"auto"`, `"never"`, `"always"`), `max_seq`, `replicas`, `bindings`
    (`{"s0": 512}`), `state` (`["OUT=IN"]`), `prompt_len`, `new_tokens`."""
    if not isinstance(program, Program):
        program = load(program)
    return Plan(_native.compile(program._native, _cluster(cluster)._native, options))


def _paths(paths: Union[PathLike, Sequence[PathLike]]) -> List[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


Runnable = Union[Program, Plan, PathLike, Sequence[PathLike]]


class Connection:
    """Workers reached (or started) for a cluster. A program is compiled for the cluster and
    deployed on first use, then stays loaded (weights sent once) until `close()`."""

    def __init__(
        self,
        cluster: Cluster,
        timeout_s: float = 120.0,
        detect_s: Optional[float] = None,
        max_recoveries: Optional[int] = None,
    ) -> None:
        self.cluster = cluster
        self._native = _native.Connection(cluster._native, timeout_s, detect_s, max_recoveries)
        self._loaded: Dict[Tuple[str, ...], Program] = {}

    def _runnable(self, program: Runnable) -> Union[_native.Program, _native.Plan]:
        if isinstance(program, (Program, Plan)):
            return program._native
        key = tuple(os.path.abspath(p) for p in _paths(program))
        if key not in self._loaded:
            self._loaded[key] = load(list(key))
        return self._loaded[key]._native

    def run(
        self, program: Runnable, inputs: Mapping[str, torch.Tensor], entry: Optional[str] = None
    ) -> Dict[str, torch.Tensor]:
        """One call of an entry (the only one unless `entry` names it): inputs and outputs by
        the model's names."""
        for name, value in inputs.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"input {name!r} is a {type(value).__name__}, not a torch.Tensor")
        return self._native.run(self._runnable(program), dict(inputs), entry)

    def generate(
        self,
        program: Runnable,
        prompt_ids: Union[Sequence[int], torch.Tensor],
        max_new_tokens: int = 16,
        stream: bool = False,
    ) -> Union[List[int], Iterator[int]]:
        """Greedy generation with a prefill and a decode program (e.g. the two files
        `export_decoder` writes); the KV cache stays on the workers between steps. With
        `stream=True`, an iterator that yields each token as it is produced. On remote workers
        a lost worker is survived as `genie generate` survives it: its part moves to a worker
        that answers (a spare of the cluster file) and the lost state is rebuilt from the
        tokens so far; the tokens are those of an uninterrupted run."""
        prompt = _prompt(prompt_ids)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
        native = self._runnable(program)
        if stream:
            return iter(self._native.generate_stream(native, prompt, max_new_tokens))
        return self._native.generate(native, prompt, max_new_tokens)

    def exec_op(self, op: str, args: Sequence[Any], **kwargs: Any) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """Run one ATen op on a worker, e.g. `exec_op("aten.matmul.default", [x, y])` or
        `exec_op("aten.add.Tensor", [x, y], alpha=2)`: tensors are sent, the result comes back
        (a tuple for ops with several outputs)."""
        out = self._native.exec_op(op, list(args), kwargs or None)
        return out[0] if len(out) == 1 else tuple(out)

    def close(self) -> None:
        """Unload every program from its workers and stop embedded workers."""
        self._native.close()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _prompt(prompt_ids: Union[Sequence[int], torch.Tensor]) -> List[int]:
    if isinstance(prompt_ids, torch.Tensor):
        if prompt_ids.dim() == 2 and prompt_ids.shape[0] == 1:
            prompt_ids = prompt_ids[0]
        if prompt_ids.dim() != 1 or prompt_ids.dtype.is_floating_point:
            raise ValueError(f"prompt_ids must be integer ids shaped [P] or [1, P], not {prompt_ids.dtype}{list(prompt_ids.shape)}")
        return [int(t) for t in prompt_ids.tolist()]
    return [int(t) for t in prompt_ids]


def connect(
    cluster: ClusterLike = None,
    token: Optional[str] = None,
    ca: Optional[PathLike] = None,
    timeout_s: float = 120.0,
    detect_s: Optional[float] = None,
    max_recoveries: Optional[int] = None,
) -> Connection:
    """Reach the workers of `cluster`: `None` starts embedded workers on loopback (as the CLI
    does by default), `genie.local(...)` chooses how many and their memory, a cluster file
    names running workers (`token` is theirs; `ca` trusts certificates it signed instead of
    pinned fingerprints). `timeout_s` bounds one call; `detect_s` (default 4) is how soon a
    worker that stops answering is declared lost, and `max_recoveries` (default 3) how often
    one generation may recover from a lost worker (0: a lost worker ends it), as the CLI's
    `--timeout`, `--detect-secs` and `--max-recoveries`. Use it as a context manager, or call
    `close()`."""
    return Connection(_cluster(cluster, token, ca), timeout_s, detect_s, max_recoveries)

"""`Connection.exec_op`: single ATen ops run on a worker, as the prototype's
`execute_remote_operation` did, match torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import genie

torch.manual_seed(3)
A = torch.randn(4, 6)
B = torch.randn(6, 5)
C = torch.randn(4, 6)
IMG = torch.randn(1, 3, 8, 8)
KERNEL = torch.randn(4, 3, 3, 3)
BATCH = torch.randn(2, 3, 4)
BATCH2 = torch.randn(2, 4, 5)
IDS = torch.tensor([2, 0, 3])
Q, K, V = (torch.randn(1, 2, 5, 8) for _ in range(3))

# (op, args, kwargs, what torch computes)
CASES = [
    ("aten.matmul.default", [A, B], {}, lambda: A @ B),
    ("aten.add.Tensor", [A, C], {"alpha": 2}, lambda: A + 2 * C),
    ("aten.mul.Tensor", [A, C], {}, lambda: A * C),
    ("aten.relu.default", [A], {}, lambda: torch.relu(A)),
    ("aten.gelu.default", [A], {"approximate": "tanh"}, lambda: F.gelu(A, approximate="tanh")),
    ("aten.softmax.int", [A, -1], {}, lambda: torch.softmax(A, -1)),
    ("aten.layer_norm.default", [A, [6]], {}, lambda: F.layer_norm(A, [6])),
    ("aten.conv2d.default", [IMG, KERNEL], {"padding": [1, 1]}, lambda: F.conv2d(IMG, KERNEL, padding=1)),
    ("aten.transpose.int", [A, 0, 1], {}, lambda: A.transpose(0, 1)),
    ("aten.cat.default", [[A, C]], {"dim": 1}, lambda: torch.cat([A, C], 1)),
    ("aten.sum.dim_IntList", [A, [1]], {"keepdim": True}, lambda: A.sum(1, keepdim=True)),
    ("aten.mean.dim", [A, [0]], {}, lambda: A.mean(0)),
    ("aten.exp.default", [A], {}, lambda: torch.exp(A)),
    ("aten.tanh.default", [A], {}, lambda: torch.tanh(A)),
    ("aten.bmm.default", [BATCH, BATCH2], {}, lambda: torch.bmm(BATCH, BATCH2)),
    ("aten.index_select.default", [A, 0, IDS], {}, lambda: A.index_select(0, IDS)),
    ("aten.max_pool2d.default", [IMG, [2, 2]], {}, lambda: F.max_pool2d(IMG, 2)),
    ("aten.to.dtype", [A, torch.float16], {}, lambda: A.to(torch.float16)),
    (
        "aten.scaled_dot_product_attention.default",
        [Q, K, V],
        {"is_causal": True},
        lambda: F.scaled_dot_product_attention(Q, K, V, is_causal=True),
    ),
    ("aten.topk.default", [A, 3], {}, lambda: tuple(torch.topk(A, 3))),
]


@pytest.fixture(scope="module")
def connection():
    with genie.connect() as c:
        yield c


@pytest.mark.parametrize("op,args,kwargs,expected", CASES, ids=[c[0] for c in CASES])
def test_a_single_op_on_a_worker_matches_torch(connection, op, args, kwargs, expected):
    got = connection.exec_op(op, args, **kwargs)
    want = expected()
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    else:
        assert isinstance(got, torch.Tensor)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_ops_run_on_a_remote_worker_process(worker, tmp_path):
    from conftest import cluster_file

    w, token = worker
    path = cluster_file(tmp_path / "cluster.ron", [w])
    with genie.connect(path, token=token) as c:
        torch.testing.assert_close(c.exec_op("aten.matmul.default", [A, B]), A @ B)


def test_a_hundred_concurrent_ops_on_one_connection(connection):
    """The prototype's promise: 100+ operations at once over one reused connection."""
    from concurrent.futures import ThreadPoolExecutor

    xs = [torch.randn(8, 8) for _ in range(128)]
    with ThreadPoolExecutor(max_workers=len(xs)) as pool:
        outs = list(pool.map(lambda x: connection.exec_op("aten.mm.default", [x, x]), xs))
    for x, out in zip(xs, outs):
        torch.testing.assert_close(out, x @ x)


def test_an_unknown_op_or_wrong_arguments_are_errors_naming_them(connection):
    with pytest.raises(genie.GenieRuntimeError, match="aten.no_such_op"):
        connection.exec_op("aten.no_such_op.default", [A])
    with pytest.raises(genie.GenieRuntimeError, match="aten.matmul.default"):
        connection.exec_op("aten.matmul.default", [A])
    with pytest.raises(genie.GenieRuntimeError, match="bogus"):
        connection.exec_op("aten.relu.default", [A], bogus=1)
    with pytest.raises(TypeError, match="object"):
        connection.exec_op("aten.relu.default", [object()])

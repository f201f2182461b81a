"""The type stubs ship with the package and describe what the extension has."""

from __future__ import annotations

import ast
from pathlib import Path

import genie
from genie import _native


def stub_names(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = set()
    return names


def test_the_stubs_name_every_class_function_and_method_of_the_extension():
    package = Path(genie.__file__).parent
    assert (package / "py.typed").exists()
    stubs = stub_names(package / "_native.pyi")
    public = {n for n in dir(_native) if not n.startswith("_")}
    assert set(stubs) == public
    for name, methods in stubs.items():
        have = {m for m in dir(getattr(_native, name)) if not m.startswith("_")}
        if isinstance(getattr(_native, name), type) and not issubclass(getattr(_native, name), Exception):
            assert methods - {"__init__", "__iter__", "__next__"} == have, name

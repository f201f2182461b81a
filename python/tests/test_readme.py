"""The README's Python example runs as written, in a fresh interpreter."""

from __future__ import annotations

import ast
import re

from conftest import ROOT, run_python


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- python-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert found, "README.md has no python-example block"
    return found.group(1)


def test_the_readme_opens_with_the_python_example():
    text = (ROOT / "README.md").read_text()
    assert text.index("```python") < text.index("cargo xtask run"), "the Python example comes before the CLI"
    code = readme_example()
    lines = [l for l in code.splitlines() if l.strip()]
    assert len(lines) <= 12, f"the example is {len(lines)} lines"
    ast.parse(code)


def test_the_readme_example_runs(tmp_path):
    out = run_python(f"import os; os.chdir({str(tmp_path)!r})\n" + readme_example())
    assert out.returncode == 0, out.stderr[-3000:]
    devices, tokens = out.stdout.strip().splitlines()[-2:]
    split = ast.literal_eval(devices)
    assert len(split) == 2 and all(n > 0 for n in split.values()), split
    tokens = ast.literal_eval(tokens)
    assert len(tokens) == 16 and all(isinstance(t, int) and 0 <= t < 128 for t in tokens), tokens
    assert (tmp_path / "out" / "llama" / "prefill.pt2").exists()

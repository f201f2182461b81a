"""The package in a Python process: Ctrl-C interrupts a long call, and a connection that was
never closed does not keep the interpreter from exiting."""

from __future__ import annotations

import time

from conftest import FIXTURES, run_python

SLOW_RUN = """
import os, signal, threading, time, torch, genie

class Slow(torch.nn.Module):
    def forward(self, x):
        for _ in range(60):
            x = torch.tanh(x @ x)
        return x

x = torch.randn(2048, 2048) / 64
path = genie.export(Slow(), (x,), os.path.join({tmp!r}, "slow.pt2"))
with genie.connect() as c:
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    try:
        c.run(path, {{"x": x}})
        print("finished", time.monotonic() - started)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic() - started)
"""


# The interrupt may land while the program is still being compiled and deployed (the first
# call's work): that is interruptible too.
def test_ctrl_c_interrupts_a_long_call(tmp_path):
    out = run_python(SLOW_RUN.format(tmp=str(tmp_path)))
    assert out.returncode == 0, out.stderr[-2000:]
    verdict, seconds = out.stdout.split()[-2:]
    assert verdict == "interrupted", out.stdout
    assert float(seconds) < 2.5, out.stdout


def test_an_unclosed_connection_lets_the_interpreter_exit():
    code = f"""
import genie
c = genie.connect()
files = [{str(FIXTURES / 'gpt2' / 'prefill.pt2')!r}, {str(FIXTURES / 'gpt2' / 'decode.pt2')!r}]
print(c.generate(files, [11, 17, 116, 44, 50], max_new_tokens=4))
"""
    started = time.monotonic()
    out = run_python(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("[")
    assert time.monotonic() - started < 60

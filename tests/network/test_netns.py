"""The test hosts themselves: a run killed before its finalizers leaves namespaces and a
root link behind, and the sweep removes them (and only those of dead runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from harness import ROOT
from netns import Net, sweep

pytestmark = pytest.mark.network

LEFT_BEHIND = """
import time
from netns import Net
net = Net()
net.host("redis")
print(net.run, net.root_link, flush=True)
time.sleep(60)
"""


def names() -> tuple[set[str], set[str]]:
    namespaces = {line.split()[0] for line in _out("ip", "netns", "list").splitlines() if line.strip()}
    links = {line.split(":")[1].strip().split("@")[0] for line in _out("ip", "-o", "link").splitlines()}
    return namespaces, links


def _out(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=10, check=True).stdout


def test_the_sweep_removes_what_a_killed_run_left_and_nothing_of_a_live_one(net: Net) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests' / 'support'}:{ROOT}"}
    with subprocess.Popen(
        [sys.executable, "-c", LEFT_BEHIND], stdout=subprocess.PIPE, text=True, env=env
    ) as run:
        try:
            assert run.stdout is not None
            prefix, link = run.stdout.readline().split()
        finally:
            os.kill(run.pid, signal.SIGKILL)  # no finalizer runs
            run.wait(10)
    namespaces, links = names()
    assert {f"{prefix}-switch", f"{prefix}-redis"} <= namespaces and link in links
    removed = sweep()
    namespaces, links = names()
    assert not any(n.startswith(f"{prefix}-") for n in namespaces) and link not in links
    assert set(removed) >= {f"{prefix}-switch", f"{prefix}-redis", link}
    # This run's own net is alive: left alone.
    assert set(net.namespaces) <= namespaces and net.root_link in links

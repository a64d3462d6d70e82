"""The test hosts themselves: a run killed before its finalizers leaves namespaces and a
root link behind, and the sweep removes them (and only those of dead runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from canwatch_stack.procs import alive

from harness import ROOT
from netns import Net, sweep
from until import until

pytestmark = pytest.mark.network

LEFT_BEHIND = """
import subprocess, time
from netns import Net, mark_run
mark_run()
net = Net()
net.host("redis")
# A part in the root namespace, as authsvc or nginx would be: it outlives the run.
part = subprocess.Popen(["sleep", "60"], start_new_session=True)
print(net.run, net.root_link, part.pid, flush=True)
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
            prefix, link, part = run.stdout.readline().split()
        finally:
            os.kill(run.pid, signal.SIGKILL)  # no finalizer runs
            run.wait(10)
    namespaces, links = names()
    assert {f"{prefix}-switch", f"{prefix}-redis"} <= namespaces and link in links
    assert alive(int(part))
    # A part of this live run, marked with its PID (the session marked the environment).
    with subprocess.Popen(["sleep", "60"], start_new_session=True) as ours:
        try:
            removed = sweep()
            namespaces, links = names()
            assert not any(n.startswith(f"{prefix}-") for n in namespaces) and link not in links
            assert set(removed) >= {f"{prefix}-switch", f"{prefix}-redis", link, f"pid {part}"}
            assert until(lambda: not alive(int(part)), 5)
            # This run's own net and parts are alive: left alone.
            assert set(net.namespaces) <= namespaces and net.root_link in links
            assert ours.poll() is None
        finally:
            ours.kill()

"""`CANWATCH_STACK_REDIS=cluster|sentinel make run`: the whole stack on a local Redis
Cluster or Sentinel set with two authsvc replicas admits and refuses through nginx as on
one Redis, records every process's PID and stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from canwatch_edge.settings import EdgeSettings
from canwatch_stack.procs import alive
from canwatch_stack.settings import StackSettings

from edge_harness import Player, StackFactory, ko
from harness import ROOT, held, shared_by_workers
from until import until

pytestmark = pytest.mark.e2e


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.parametrize(("shape", "nodes"), [("cluster", 6), ("sentinel", 5)])
def test_the_stack_runs_on_a_cluster_and_on_sentinel(
    start_stack: StackFactory, shape: str, nodes: int
) -> None:
    stack = start_stack(why=f"CANWATCH_STACK_REDIS={shape}", redis=shape, api_replicas=2)
    scheme = f"redis+{shape}://"
    assert stack.settings.redis_url.startswith(scheme), stack.settings.redis_url
    pid_files = sorted((stack.run_dir / "pids").glob("*.pid"))
    names = [p.stem for p in pid_files]
    assert names.count("nginx") == 1 and {"authsvc", "authsvc-2"} <= set(names), names
    assert len([n for n in names if n.startswith("redis-")]) == nodes, names
    pids = [int(p.read_text()) for p in pid_files]
    assert all(alive(pid) for pid in pids)

    player = Player(stack.url)
    # Users whose keys land in different slots (and so, on the Cluster, on different
    # primaries): each gets exactly its limit, through whichever replica nginx picks.
    for _ in range(3):
        user = player.new_user()
        streams = [player.new_stream() for _ in range(4)]
        for stream in streams[:3]:
            assert player.activate(user, stream).status_code == 200
        ko(player.activate(user, streams[3]), 403, "Stream Limit Reached")
        assert player.watch(streams[0], user).status_code == 200
        ko(player.watch(streams[3], user), 403, "Stream Not Active")
        assert player.deactivate(user, streams[0]).status_code == 200
        ko(player.watch(streams[0], user), 403, "Stream Not Active")
    player.close()

    stack.stop()
    assert not any(alive(pid) for pid in pids), [pid for pid in pids if alive(pid)]
    assert not list((stack.run_dir / "pids").glob("*.pid"))


@pytest.fixture
def the_default_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The stack's documented ports, for one test at a time of every test worker
    (pytest-xdist's): a lock in the folder their temporary folders share."""
    with held(shared_by_workers(tmp_path_factory) / "the-default-ports.lock"):
        yield


@pytest.mark.parametrize("shape", ["single", "cluster", "sentinel"])
@pytest.mark.usefixtures("the_default_ports")
def test_make_run_serves_on_its_defaults(tmp_path: Path, shape: str) -> None:
    """`CANWATCH_STACK_REDIS=<shape> make run` as a newcomer types it: `authsvc stack` with
    no port set, on the documented ports, answering through the edge until SIGTERM."""
    defaults = (EdgeSettings(), StackSettings(redis=shape))  # type: ignore[arg-type]
    ports = [defaults[0].port, defaults[0].tls_port, defaults[1].origin_port, defaults[1].redis_port]
    busy = [port for port in ports if not refuses_connections(port)]
    assert not busy, f"the stack's default ports {busy} are taken on this machine: stop what holds them"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_"))}
    env["CANWATCH_STACK_REDIS"] = shape
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "authsvc", "stack", "--run-dir", str(tmp_path / "run")],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    try:
        assert until(lambda: "CanWatch is up" in log.read_text() or proc.poll() is not None, 90), (
            log.read_text()
        )
        assert proc.poll() is None, log.read_text()
        replicas = 1 if shape == "single" else 2
        api_ports = StackSettings.from_env({"CANWATCH_STACK_REDIS": shape}).api_ports()
        assert len(api_ports) == replicas and defaults[1].origin_port not in api_ports
        for port in api_ports:
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        player = Player(f"http://127.0.0.1:{defaults[0].port}")
        user, streams = player.new_user(), [player.new_stream() for _ in range(4)]
        for stream in streams[:3]:
            assert player.activate(user, stream).status_code == 200
        ko(player.activate(user, streams[3]), 403, "Stream Limit Reached")
        assert player.watch(streams[0], user).status_code == 200
        player.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, log.read_text()
    assert all(refuses_connections(port) for port in ports)

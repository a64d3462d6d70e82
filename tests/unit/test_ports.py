"""The ports tests and benchmarks give their parts: free, never twice, and out of the range
the kernel takes outgoing connections' ports from (where one could be taken by such a
connection between the probe and the moment its part binds it)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from canwatch_stack import procs


def ephemeral() -> range:
    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    ports = [procs.free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    assert not set(ports) & set(ephemeral())
    assert min(ports) >= 10000


def test_consecutive_ports_are_free_and_outside_the_range() -> None:
    first = procs.free_ports(4)
    wanted = range(first, first + 4)
    assert not set(wanted) & set(ephemeral())
    for port in wanted:  # each one bindable now
        with socket.socket() as sock:
            sock.bind((procs.LOOPBACK, port))
    assert procs.free_port() not in wanted


def test_a_port_something_listens_on_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy, socket.socket() as spare_probe:
        busy.bind((procs.LOOPBACK, 0))
        busy.listen()
        spare_probe.bind((procs.LOOPBACK, 0))
        taken, spare = int(busy.getsockname()[1]), int(spare_probe.getsockname()[1])
        spare_probe.close()
        picks = iter([taken, spare])
        monkeypatch.setattr(procs._pick, "randrange", lambda *_: next(picks))
        assert procs.free_port() == spare


@pytest.mark.parametrize("workers", [2, 3])
def test_test_workers_side_by_side_pick_from_shares_that_do_not_overlap(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    picked: list[set[int]] = []
    for worker in range(workers):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
        monkeypatch.setattr(procs, "_handed_out", set())
        picked.append({procs.free_port() for _ in range(200)} | {procs.free_ports(3) + 2})
    for worker, ports in enumerate(picked):
        others = set().union(*(p for i, p in enumerate(picked) if i != worker))
        assert not ports & others
        assert max(ports) - min(ports) < (procs._ephemeral_start() - 10000) // workers
        assert not ports & set(ephemeral()) and min(ports) >= 10000


def test_a_process_outside_the_test_workers_picks_from_the_whole_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    low, high = procs._share(10000, 32768)
    assert (low, high) == (10000, 32768)

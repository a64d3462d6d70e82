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

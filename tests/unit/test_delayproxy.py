"""The slow-link proxy of the benchmarks (tests/support/delayproxy.py), run as the process
the benchmarks start, in front of an echo server: it delays, keeps bytes and order, and
holds neither one connection's chunks nor other connections behind a chunk's delay."""

from __future__ import annotations

import os
import random
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from canwatch_stack.procs import stop_process

PROXY = Path(__file__).resolve().parents[1] / "support" / "delayproxy.py"


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@contextmanager
def proxy(target_port: int, delay_ms: float) -> Iterator[int]:
    """The proxy process in front of ``target_port``; its port. Stopped by PID."""
    command = [sys.executable, str(PROXY), "--target", f"127.0.0.1:{target_port}"]
    proc = subprocess.Popen([*command, "--delay-ms", str(delay_ms)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once it accepts connections
        assert line.startswith("listening "), line
        yield int(line.split()[1])
    finally:
        stop_process(proc)  # type: ignore[arg-type]
        if proc.stdout is not None:
            proc.stdout.close()


def round_trip(port: int, payload: bytes = b"x") -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        started = time.monotonic()
        s.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += s.recv(65536)
        seconds = time.monotonic() - started
    assert received == payload
    return seconds


def at_once(count: int, work: Callable[[], float]) -> float:
    """``work`` in ``count`` threads released together; the seconds until all are done."""
    barrier = threading.Barrier(count + 1)

    def one() -> None:
        barrier.wait()
        work()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join(60)
    return time.monotonic() - started


def test_a_round_trip_takes_at_least_twice_the_one_way_delay(echo_port: int) -> None:
    with proxy(echo_port, 50) as port:
        times = [round_trip(port) for _ in range(5)]
    assert min(times) >= 0.100, times


def test_without_a_delay_the_proxy_adds_none_of_it(echo_port: int) -> None:
    # The same measurement's other side: at 0 ms no round trip waits anywhere near 100 ms.
    with proxy(echo_port, 0) as port:
        times = [round_trip(port) for _ in range(5)]
    assert min(times) < 0.100, times


def test_bytes_arrive_intact_and_in_order(echo_port: int) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    sizes = random.Random(7)
    with proxy(echo_port, 2) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as s:

        def write() -> None:
            sent = 0
            while sent < len(payload):
                size = sizes.randint(1, 70_000)
                s.sendall(payload[sent : sent + size])
                sent += size
            s.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write)
        writer.start()
        received = bytearray()
        while data := s.recv(65536):  # the echo's end closes after ours, once all is back
            received += data
        writer.join(30)
    assert len(received) == len(payload)
    assert bytes(received) == payload


def test_connections_do_not_wait_on_one_another(echo_port: int) -> None:
    # 10 round trips of 0.4 s each at once: one after another would take 4 s.
    with proxy(echo_port, 200) as port:
        seconds = at_once(10, lambda: round_trip(port))
    assert 0.4 <= seconds < 2.0, seconds


def test_a_connections_chunks_do_not_wait_on_one_another(echo_port: int) -> None:
    # 20 chunks sent 25 ms apart on one connection: each comes back 0.4 s after it left,
    # so all are back after about 0.9 s; a proxy that held each chunk for the delay after
    # sending the one before would take over 4 s (20 x 0.2 s one way, then 0.2 s back).
    with proxy(echo_port, 200) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        started = time.monotonic()
        for n in range(20):
            s.sendall(bytes([n]) * 1000)
            time.sleep(0.025)
        received = b""
        while len(received) < 20_000:
            received += s.recv(65536)
        seconds = time.monotonic() - started
    assert received == b"".join(bytes([n]) * 1000 for n in range(20))
    assert 0.875 <= seconds < 2.5, seconds

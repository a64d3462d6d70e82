"""Several authsvc replicas behind nginx: one is killed (SIGKILL) under load and the gate
goes on deciding on the other; only requests in flight at that moment may fail."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests

from canwatch_edge import render
from canwatch_stack.procs import free_port, spawn, start_nginx, stop_process

from edge_harness import PLAYLIST, Player, StackFactory
from until import until

pytestmark = pytest.mark.e2e

THREADS = 6
BEFORE, AFTER = 300, 300  # answers to see before the kill, and after it
MAX_PER_THREAD = 1500  # the load is bounded in count, whatever happens
BOUND_S = 60.0  # ... and in time


@dataclass(frozen=True)
class Sent:
    """One request of the load: when it was sent and answered, and whether the answer was
    the right one (the gate's decision, or the activate's refresh)."""

    started: float
    ended: float
    kind: str
    ok: bool
    answer: str


def test_killing_a_replica_under_load_fails_at_most_the_requests_in_flight(start_stack: StackFactory) -> None:
    stack = start_stack(why="two authsvc replicas, one of them killed", api_replicas=2)
    assert len(stack.replicas) == 2
    player = Player(stack.url)
    user, active, inactive = player.new_user(), player.new_stream(), player.new_stream()
    assert player.activate(user, active).status_code == 200
    player.close()

    # What each kind of request must answer: the gate allows the active stream and refuses
    # the other; activating the active stream again refreshes it (a PATCH, never retried
    # by nginx on another replica once sent).
    requests_ = [
        ("gate-allowed", "GET", f"{stack.url}/watch/{active}/{PLAYLIST}", 200),
        ("gate-refused", "GET", f"{stack.url}/watch/{inactive}/{PLAYLIST}", 403),
        ("activate", "PATCH", f"{stack.url}/streams/{active}/activate", 200),
    ]
    sent: list[Sent] = []
    lock = threading.Lock()
    stop = threading.Event()
    barrier = threading.Barrier(THREADS + 1)

    def load(offset: int) -> None:
        with requests.Session() as http:
            barrier.wait()
            for n in range(MAX_PER_THREAD):
                if stop.is_set():
                    return
                kind, method, url, expected = requests_[(n + offset) % len(requests_)]
                started = time.monotonic()
                try:
                    r = http.request(method, url, headers={"x-userid": user}, timeout=10)
                    ok, answer = r.status_code == expected, f"{r.status_code} {r.text[:80]}"
                except requests.RequestException as exc:
                    ok, answer = False, repr(exc)
                with lock:
                    sent.append(Sent(started, time.monotonic(), kind, ok, answer))

    def answered() -> int:
        with lock:
            return len(sent)

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    try:
        assert until(lambda: answered() >= BEFORE, BOUND_S), f"only {answered()} answers before the kill"
        # Both replicas took part before the kill: nginx spread the gate over them.
        for url in stack.api_urls:
            assert gate_decisions_at(url) > 0, f"{url} decided nothing"
        killed_at = time.monotonic()
        stack.kill_replica("authsvc-2")
        dead_at = time.monotonic()  # reaped: gone for sure
        seen = answered()
        assert until(lambda: answered() >= seen + AFTER, BOUND_S), "the load stalled after the kill"
    finally:
        stop.set()
        for t in threads:
            t.join(BOUND_S)

    # In flight: sent before the replica was surely gone, answered after the kill began.
    in_flight = [s for s in sent if s.started <= dead_at and s.ended >= killed_at]
    failed = [s for s in sent if not s.ok]
    after = [s for s in sent if s.started > dead_at]
    assert len(after) >= AFTER - THREADS, len(after)
    # At most the requests in flight at the kill (on either replica) went wrong, and only
    # those: every request sent after it was answered correctly by the survivor.
    assert len(failed) <= len(in_flight), (failed, in_flight)
    late = [
        f"{s.kind} {1000 * (s.started - dead_at):+.1f} ms: {s.answer}" for s in failed if s.started > dead_at
    ]
    assert not late, f"failed after the replica was gone: {late}"
    # The gate's subrequest is a GET: one in flight on the killed replica is asked again
    # of the other, so no gate decision is lost at all.
    assert all(s.kind == "activate" for s in failed), failed
    assert {s.kind for s in after} == {"gate-allowed", "gate-refused", "activate"}
    assert stack.dead() == [], stack.dead()
    print(
        f"\n{len(sent)} requests, kill took {1000 * (dead_at - killed_at):.1f} ms, "
        f"{len(in_flight)} in flight, {len(failed)} failed: {[s.kind for s in failed]}"
    )


def gate_decisions_at(api_url: str) -> float:
    """Every gate decision one replica counted (its own /metrics, not through nginx)."""
    text = requests.get(f"{api_url}/metrics", timeout=5).text
    pattern = r'^authsvc_decisions_total\{[^}]*kind="gate"[^}]*\} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


def test_a_hung_replica_costs_a_bounded_wait(start_stack: StackFactory) -> None:
    """One of two replicas stopped (SIGSTOP: it accepts connections, answers nothing). The
    gate moves on to the other after a little over authsvc's Redis timeout, not nginx's
    default; an activation sent to it (never resent: a PATCH) is a JSON 503 at that bound."""
    stack = start_stack(why="two authsvc replicas, one of them stopped", api_replicas=2, redis_timeout_ms=250)
    bound_s = (250 + render.AUTHSVC_MARGIN_MS) / 1000
    player = Player(stack.url)
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    hung = stack.procs["authsvc-2"]
    os.killpg(hung.pid, signal.SIGSTOP)
    try:
        slowest = {"gate": 0.0, "api": 0.0}
        answers: dict[str, set[int]] = {"gate": set(), "api": set()}
        send = {
            "gate": lambda: player.watch(stream, user).status_code,
            "api": lambda: player.activate(user, stream).status_code,
        }
        # nginx takes turns between the replicas, and leaves one that timed out alone for
        # 2 s (max_fails), counted in its clock's whole seconds (up to 3 s): each round
        # waits that out, then sends two of one kind (one of which meets the stopped
        # replica), then two of the other.
        for first, then in [("api", "gate"), ("gate", "api")] * 2:
            for kind in (first, first, then, then):
                started = time.monotonic()
                answers[kind].add(send[kind]())
                slowest[kind] = max(slowest[kind], time.monotonic() - started)
            time.sleep(3.1)
        # Every fetch allowed, through the live replica; every activation answered, a 503
        # where it met the stopped one.
        assert answers == {"gate": {200}, "api": {200, 503}}, answers
        # nginx waited the bound (the gate, then the other replica; the activation, then its
        # 503), not the 3 s (gate) and 5 s (API) it had: under 2.5 s with room for a loaded
        # machine, and at least the bound, so the stopped replica was met.
        assert bound_s <= slowest["gate"] < 2.5, slowest
        assert bound_s <= slowest["api"] < 2.5, slowest
    finally:
        os.killpg(hung.pid, signal.SIGCONT)
    player.close()


def test_authsvc_on_a_unix_socket_serves_api_and_gate(start_stack: StackFactory, tmp_path: Path) -> None:
    """CANWATCH_EDGE_AUTHSVC=unix:PATH, with `authsvc serve --uds PATH` beside nginx (one
    pod, one host): the API and the gate answer through the socket alone."""
    stack = start_stack(why="an authsvc on a unix socket, and an edge of its own for it")
    socket_path = tmp_path / "authsvc.sock"
    beside = spawn(
        [sys.executable, "-m", "authsvc", "serve", "--uds", str(socket_path)], tmp_path / "uds.log", stack.env
    )
    edge: subprocess.Popen[bytes] | None = None
    try:
        assert until(socket_path.exists, 30), (tmp_path / "uds.log").read_text()
        port = free_port()
        config = replace(
            stack.edge,
            prefix=tmp_path / "edge",
            edge=replace(
                stack.edge.edge,
                port=port,
                tls_port=0,
                authsvc=(f"unix:{socket_path}",),
                origin_url=f"http://127.0.0.1:{stack.ports.origin_port}",
            ),
        )
        render.render(config)
        assert f"server unix:{socket_path} " in (config.prefix / "nginx.conf").read_text()
        edge = start_nginx(config.prefix, port)
        # The stack's own replicas gone: whatever answers now came through the socket.
        stack.stop_authsvc()
        player = Player(f"http://127.0.0.1:{port}")
        user, stream = player.new_user(), player.new_stream()
        assert player.activate(user, stream).status_code == 200
        assert player.watch(stream, user).status_code == 200
        assert player.watch(player.new_stream(), user).status_code == 403
        player.close()
    finally:
        if edge is not None:
            stop_process(edge)
        stop_process(beside)

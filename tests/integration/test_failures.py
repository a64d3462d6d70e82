"""Redis failing in every way we know: down, hung, restarted empty, scripts flushed, out of
memory, busy in a script, its writes paused."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import pytest
import requests

from harness import HOST, AuthsvcFactory, Client, RedisServer, need_binary
from races import SEEN_S, SERVED_S, TIMEOUT_MS
from until import until


def unavailable(r: requests.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json() == {"status": "ko", "error": "Service Unavailable"}
    assert r.headers["retry-after"] == "1"


def gate(client: Client, user: str, stream: str) -> requests.Response:
    headers = {"x-userid": user, "X-Original-URI": f"/watch/{stream}/seg1.ts"}
    return client.http.get(f"{client.base}/_authz", headers=headers, timeout=5)


def test_redis_down_is_503_and_recovery_is_quick(
    start_authsvc: AuthsvcFactory, own_redis: RedisServer
) -> None:
    client = Client(start_authsvc(redis=own_redis).url)
    user, stream = client.new_user(), client.new_stream()
    assert client.activate(user, stream).status_code == 200
    own_redis.stop()
    for op in ("activate", "deactivate", "heartbeat"):
        unavailable(client.call(op, user, stream))
    unavailable(client.active(user))
    unavailable(client.http.get(f"{client.base}/readyz", timeout=5))
    r = gate(client, user, stream)
    assert (r.status_code, r.headers["x-error-status"]) == (403, "503")
    # What needs no Redis keeps working.
    assert client.http.get(f"{client.base}/healthz", timeout=5).status_code == 200
    assert client.new_stream()
    time.sleep(3)  # "however long Redis was gone": long enough for any backoff to grow
    own_redis.start()  # returns once it accepts connections
    started = time.monotonic()
    # The very first request succeeds: the pooled connection that died with the old
    # server is replaced on the spot, not reported as a failure.
    assert client.active(user).status_code == 200
    assert time.monotonic() - started < 1.0, "not recovered within 1 s of Redis returning"
    # Restarted without data: the lease is gone, but the ids are still valid.
    assert client.activate(user, stream).json()["outcome"] == "admitted"
    assert client.http.get(f"{client.base}/readyz", timeout=5).status_code == 200


def test_hung_redis_is_503_within_the_timeout(start_authsvc: AuthsvcFactory, own_redis: RedisServer) -> None:
    service = start_authsvc(redis=own_redis, redis_timeout_ms=TIMEOUT_MS)
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    assert client.activate(user, stream).status_code == 200
    own_redis.pause()  # SIGSTOP: connections stay open, nothing answers
    try:
        for op in ("activate", "heartbeat", "deactivate"):
            started = time.monotonic()
            r = client.call(op, user, stream)
            elapsed = time.monotonic() - started
            unavailable(r)
            assert elapsed < SEEN_S, f"{op} took {elapsed:.3f}s"
        started = time.monotonic()
        r = gate(client, user, stream)
        assert r.headers["x-error-status"] == "503"
        assert time.monotonic() - started < SEEN_S
    finally:
        own_redis.resume()
    routes = {"/streams/{stream_id}/activate": 2, "/streams/{stream_id}/heartbeat": 1, "/_authz": 1}
    for route, count in routes.items():
        (entry,) = [e for e in service.access_entries(count, route) if e["status"] == 503]
        assert float(str(entry["ms"])) / 1000 < SERVED_S, entry
    started = time.monotonic()
    while client.heartbeat(user, stream).status_code != 200:
        assert time.monotonic() - started < 1.0
        time.sleep(0.02)


def test_client_pause_is_503_within_the_timeout(
    start_authsvc: AuthsvcFactory, own_redis: RedisServer
) -> None:
    service = start_authsvc(redis=own_redis, redis_timeout_ms=TIMEOUT_MS)
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    client.activate(user, stream)
    own_redis.command("CLIENT", "PAUSE", "1500", "ALL")
    started = time.monotonic()
    unavailable(client.activate(user, stream))
    assert time.monotonic() - started < SEEN_S
    served = service.access_entries(2, "/streams/{stream_id}/activate")[1]
    assert served["status"] == 503 and float(str(served["ms"])) / 1000 < SERVED_S, served
    # Answers again once the pause (1.5 s from the command) is over.
    deadline = time.monotonic() + 30
    while (status := client.activate(user, stream).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200


def test_many_requests_during_a_hang_all_fail_fast(
    start_authsvc: AuthsvcFactory, own_redis: RedisServer
) -> None:
    service = start_authsvc(redis=own_redis, redis_timeout_ms=TIMEOUT_MS)
    client = Client(service.url)
    user = client.new_user()
    streams = [client.new_stream() for _ in range(20)]
    own_redis.pause()
    results: list[tuple[int, float]] = []
    barrier = threading.Barrier(len(streams))

    def one(stream: str) -> None:
        with requests.Session() as http:
            barrier.wait()
            started = time.monotonic()
            r = http.patch(f"{service.url}/streams/{stream}/activate", headers={"x-userid": user}, timeout=5)
            results.append((r.status_code, time.monotonic() - started))

    threads = [threading.Thread(target=one, args=(s,)) for s in streams]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        own_redis.resume()
    assert [status for status, _ in results] == [503] * len(streams)
    assert max(elapsed for _, elapsed in results) < SEEN_S
    served = service.access_entries(len(streams), "/streams/{stream_id}/activate")
    assert max(float(str(e["ms"])) for e in served) / 1000 < SERVED_S, served


def test_script_flush_mid_run_reloads_scripts(authsvc_client_with_redis: tuple[Client, RedisServer]) -> None:
    client, redis = authsvc_client_with_redis
    user = client.new_user()
    streams = [client.new_stream() for _ in range(4)]
    client.activate(user, streams[0])
    assert redis.command("SCRIPT", "FLUSH") == "OK"
    assert client.activate(user, streams[1]).json()["outcome"] == "admitted"
    redis.command("SCRIPT", "FLUSH")
    assert client.heartbeat(user, streams[0]).status_code == 200
    redis.command("SCRIPT", "FLUSH")
    assert gate(client, user, streams[0]).status_code == 204
    redis.command("SCRIPT", "FLUSH")
    assert len(client.active(user).json()["streams"]) == 2


def test_fail_open_lets_the_gate_through_when_redis_is_down(
    start_authsvc: AuthsvcFactory, own_redis: RedisServer
) -> None:
    client = Client(start_authsvc(redis=own_redis, fail_open=True).url)
    user, stream = client.new_user(), client.new_stream()
    own_redis.stop()
    r = gate(client, user, stream)
    assert r.status_code == 204 and r.headers["x-gate-decision"] == "fail_open"
    unavailable(client.activate(user, stream))  # the API never pretends


def test_readonly_after_a_failover_drops_the_connections(
    start_authsvc: AuthsvcFactory, own_redis: RedisServer, redis_server: RedisServer
) -> None:
    client = Client(start_authsvc(redis=own_redis).url)
    user, stream = client.new_user(), client.new_stream()
    assert client.activate(user, stream).status_code == 200
    before = own_redis.command("CLIENT", "LIST", "TYPE", "normal")
    own_redis.command("REPLICAOF", "127.0.0.1", str(redis_server.port))  # now a read-only replica
    try:
        unavailable(client.activate(user, client.new_stream()))
    finally:
        own_redis.command("REPLICAOF", "NO", "ONE")
    assert client.activate(user, client.new_stream()).status_code == 200
    ids_before = {
        f.split("=")[1] for line in before.splitlines() for f in line.split() if f.startswith("id=")
    }
    after = own_redis.command("CLIENT", "LIST", "TYPE", "normal")
    ids_after = {f.split("=")[1] for line in after.splitlines() for f in line.split() if f.startswith("id=")}
    # Only redis-cli's own connection may be in both lists: authsvc's were all replaced.
    assert len(ids_before & ids_after) == 0


def test_a_restart_between_requests_costs_no_failure(
    start_authsvc: AuthsvcFactory, own_redis: RedisServer
) -> None:
    client = Client(start_authsvc(redis=own_redis).url)
    user, stream = client.new_user(), client.new_stream()
    assert client.activate(user, stream).status_code == 200
    own_redis.stop()
    own_redis.start()  # nothing asked in between: authsvc's pooled connection is now dead
    r = client.activate(user, stream)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "admitted"  # the new server holds no lease


def _busy_script(redis: RedisServer) -> Callable[[], None]:
    """A script that never ends (Redis answers BUSY past busy-reply-threshold); the
    function that kills it."""
    redis.command("CONFIG", "SET", "busy-reply-threshold", "50")
    cli = need_binary("redis-cli", "redis-tools")
    looping = subprocess.Popen(
        [cli, "-h", HOST, "-p", str(redis.port), "EVAL", "while true do end", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert until(lambda: redis.command("PING").startswith("BUSY"), 5)

    def end() -> None:
        assert redis.command("SCRIPT", "KILL") == "OK"
        looping.wait(5)

    return end


def _writes_refused(redis: RedisServer, condition: str) -> Callable[[], None]:
    """Bring ``condition`` about on ``redis``; the function that ends it."""
    if condition == "busy":
        return _busy_script(redis)
    start: tuple[str, ...]
    undo: tuple[str, ...]
    if condition == "oom":  # noeviction, the default: every write refused with OOM
        start, undo = ("CONFIG", "SET", "maxmemory", "1"), ("CONFIG", "SET", "maxmemory", "0")
    else:  # writes held, not refused
        start, undo = ("CLIENT", "PAUSE", "60000", "WRITE"), ("CLIENT", "UNPAUSE")
    assert redis.command(*start) == "OK"

    def end() -> None:
        assert redis.command(*undo) == "OK"

    return end


@pytest.mark.parametrize("condition", ["oom", "busy", "writes-paused"])
def test_redis_refusing_or_holding_writes_is_503_within_the_timeout_and_back_within_a_second(
    condition: str, start_authsvc: AuthsvcFactory, own_redis: RedisServer
) -> None:
    service = start_authsvc(redis=own_redis, redis_timeout_ms=TIMEOUT_MS)
    client = Client(service.url)
    user, stream = client.new_user(), client.new_stream()
    assert client.activate(user, stream).status_code == 200
    end = _writes_refused(own_redis, condition)
    try:
        started = time.monotonic()
        unavailable(client.activate(user, client.new_stream()))
        r = gate(client, user, stream)  # a gated fetch refreshes its lease: a write
        assert (r.status_code, r.headers["x-error-status"]) == (403, "503")
        assert time.monotonic() - started < 2 * SEEN_S
    finally:
        end()
    served = [e for e in service.access_entries(2, "/streams/{stream_id}/activate") if e["status"] == 503]
    served += [e for e in service.access_entries(1, "/_authz") if e["status"] == 503]
    assert len(served) == 2 and max(float(str(e["ms"])) for e in served) / 1000 < SERVED_S, served
    ended = time.monotonic()
    until(lambda: gate(client, user, stream).status_code == 204, timeout=5, step=0.01)
    assert time.monotonic() - ended < 1.0, "not answering within 1 s of the condition ending"
    assert [s["streamId"] for s in client.active(user).json()["streams"]] == [stream]  # no lease lost

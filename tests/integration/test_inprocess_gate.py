"""The gate (authsvc/authz.py, nginx's auth subrequest to ``/_authz``) in process, through
Starlette's TestClient (see ``inprocess``), against the session's real redis-server: what
it lets through, what it refuses, and its answers when Redis is unreachable (fail closed,
or open when told).

Each test asserts the status, the whole body and the headers nginx reads; the answers are
those that the process-level tests (test_gate.py) expect.
"""

from __future__ import annotations

import time

import pytest

from authsvc.leasetoken import TokenIssuer
from canwatch_stack.procs import free_port

from inprocess import (
    FORGED,
    LIMIT,
    SECRET,
    TTL_MS,
    Serve,
    Service,
    denied,
    expect,
    foreign_id,
    refused,
)
from until import until

# --- the gate


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_gate_allows_an_active_stream_and_refreshes_it(service: Service, method: str) -> None:
    user, stream = service.new_id("user"), service.new_id("stream")
    activated = service.started(user, stream).body["expiresAt"] - TTL_MS
    assert until(lambda: time.time() * 1000 >= activated + 2, timeout=5, step=0.001)
    answer = service.gate(f"/watch/{stream}/demo/seg1.ts?v=1", user, method)
    allowed = {"X-Userid": user, "X-Stream-Id": stream}
    headers = {**allowed, "X-Error-Status": None, "X-Gate-Decision": "allowed", "X-Lease-Token": None}
    expect(answer, 204, None, headers)
    # The fetch refreshed the lease (at least 2 ms later) and kept its start.
    streams = [
        {
            "streamId": stream,
            "startedAt": activated,
            "refreshedAt": answer.during,
            "expiresAt": answer.during + TTL_MS,
        }
    ]
    expect(service.active(user), 200, {"status": "ok", "userId": user, "limit": LIMIT, "streams": streams})


def test_gate_gives_a_lease_token_when_on(serve: Serve) -> None:
    service = serve(lease_token_s=30)
    user, stream = service.new_id("user"), service.new_id("stream")
    service.started(user, stream)
    answer = service.gate(f"/watch/{stream}/a.ts", user)
    expect(answer, 204, None, {"X-Userid": user, "X-Stream-Id": stream})
    assert TokenIssuer(SECRET, 30).valid(answer.headers["X-Lease-Token"], user, stream)


@pytest.mark.parametrize(
    ("user", "error"),
    [
        (None, "Missing x-userid header."),
        ("", "Missing x-userid header."),
        ("a b", "Malformed x-userid header."),
        (FORGED, "Invalid Data."),
    ],
)
def test_gate_without_a_usable_identity_is_401(service: Service, user: str | None, error: str) -> None:
    stream = service.new_id("stream")
    denied(service.gate(f"/watch/{stream}/a.ts", user), 401, 401, error)


def test_gate_refuses_a_stream_not_active_for_this_user(service: Service) -> None:
    owner, other, stream = service.new_id("user"), service.new_id("user"), service.new_id("stream")
    uri = f"/watch/{stream}/a.ts"
    denied(service.gate(uri, owner), 403, 403, "Stream Not Active")
    service.started(owner, stream)
    denied(service.gate(uri, other), 403, 403, "Stream Not Active")
    service.call("deactivate", owner, stream)
    denied(service.gate(uri, owner), 403, 403, "Stream Not Active")


@pytest.mark.parametrize(
    "uri", [None, "", "/other/x", "/watch/", "/watch/abc", "/watch/abc?x=/y/", "watch/a/b"]
)
def test_gate_refuses_what_is_not_a_stream_url(service: Service, uri: str | None) -> None:
    denied(service.gate(uri, service.new_id("user")), 403, 400, "Not a stream URL.")


@pytest.mark.parametrize("segment", ["a%20b", "%7Babc%7D", "a" * 129])
def test_gate_refuses_a_malformed_stream_id(service: Service, segment: str) -> None:
    denied(service.gate(f"/watch/{segment}/x.ts", service.new_id("user")), 403, 400, "Malformed stream id.")


@pytest.mark.parametrize("how", ["forged", "other service", "other kind"])
def test_gate_refuses_a_stream_id_not_issued_here(service: Service, how: str) -> None:
    uri = f"/watch/{foreign_id(service, 'stream', how)}/x.ts"
    denied(service.gate(uri, service.new_id("user")), 403, 404, "Invalid Data.")


def test_gate_in_shadow_mode_lets_through_and_says_so(serve: Serve) -> None:
    service = serve(enforce=False)
    user, stream = service.new_id("user"), service.new_id("stream")
    answer = service.gate(f"/watch/{stream}/a.ts", user)
    headers = {"X-Userid": user, "X-Stream-Id": stream, "X-Gate-Decision": "shadow_not_active"}
    expect(answer, 204, None, headers)


def test_gate_other_methods_are_405(service: Service) -> None:
    answer = service.send("POST", "/_authz", {"X-Original-URI": "/watch/a/b"})
    refused(answer, 405, "Method Not Allowed", {"Allow": "GET, HEAD"})


# --- Redis cannot answer
def test_the_gate_says_503_when_redis_is_unreachable(no_redis: Service) -> None:
    user, stream = no_redis.new_id("user"), no_redis.new_id("stream")
    denied(no_redis.gate(f"/watch/{stream}/a.ts", user), 403, 503, "Service Unavailable")


def test_the_gate_fails_open_when_told_and_redis_is_unreachable(serve: Serve) -> None:
    service = serve(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_ms=100, fail_open=True)
    user, stream = service.new_id("user"), service.new_id("stream")
    answer = service.gate(f"/watch/{stream}/a.ts", user)
    expect(answer, 204, None, {"X-Userid": user, "X-Stream-Id": stream, "X-Gate-Decision": "fail_open"})

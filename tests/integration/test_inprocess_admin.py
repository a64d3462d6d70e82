"""The admin API (authsvc/admin.py) in process, through Starlette's TestClient (see
``inprocess``), against the session's real redis-server: its token, per-user limits,
listing and ending a user's streams, and its answer when Redis is unreachable.

Each test asserts the status and the whole body; the answers are those that the
process-level tests (test_admin.py, test_bad_input.py) expect.
"""

from __future__ import annotations

import pytest

from canwatch_stack.procs import free_port

from inprocess import ADMIN_TOKEN, LIMIT, Serve, Service, denied, expect, lease, refused

SHAPE = 'Body must be {"limit": n} with 0 <= n <= 10000, or {"limit": null}.'


# --- admin


def admin_routes(user: str, stream: str) -> list[tuple[str, str]]:
    """Every admin route, as (method, path under /admin/users/)."""
    return [
        ("PUT", f"{user}/limit"),
        ("DELETE", f"{user}/limit"),
        ("GET", f"{user}/streams"),
        ("DELETE", f"{user}/streams"),
        ("DELETE", f"{user}/streams/{stream}"),
    ]


def test_admin_is_404_when_no_token_is_set(service: Service) -> None:
    for method, path in admin_routes(service.new_id("user"), service.new_id("stream")):
        # Even with the token other services use: there is none to match here.
        refused(service.admin(method, path, b'{"limit": 1}'), 404, "Not Found")


@pytest.mark.parametrize(
    "auth",
    [None, "", "Bearer wrong", f"Bearer {ADMIN_TOKEN}x", "Basic YWRtaW46YWRtaW4=", "Bearer ", ADMIN_TOKEN],
)
def test_admin_without_the_token_is_401(admin_service: Service, auth: str | None) -> None:
    for method, path in admin_routes(admin_service.new_id("user"), admin_service.new_id("stream")):
        answer = admin_service.admin(method, path, b'{"limit": 1}', auth=auth)
        refused(answer, 401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="authsvc-admin"'})


def test_admin_a_malformed_user_id_is_400(admin_service: Service) -> None:
    for method, path in admin_routes("a%20b", admin_service.new_id("stream")):
        refused(admin_service.admin(method, path, b'{"limit": 1}'), 400, "Malformed user id.")


@pytest.mark.parametrize("body", [b'{"limit": 1}', b'{"limit": 1.0}'])
def test_admin_sets_a_users_limit_and_activate_obeys_it(admin_service: Service, body: bytes) -> None:
    service = admin_service
    user = service.new_id("user")
    streams = [service.new_id("stream") for _ in range(2)]
    expect(service.admin("PUT", f"{user}/limit", body), 200, {"status": "ok", "userId": user, "limit": 1})
    first = service.activate(user, streams[0])
    assert (first.status, first.body["active"], first.body["limit"]) == (200, 1, 1)
    leases = [lease(streams[0], first)]
    refused(service.activate(user, streams[1]), 403, "Stream Limit Reached", limit=1, activeStreams=leases)
    expect(service.active(user), 200, {"status": "ok", "userId": user, "limit": 1, "streams": leases})
    listed = {"status": "ok", "userId": user, "limit": 1, "userLimit": 1, "streams": leases}
    expect(service.admin("GET", f"{user}/streams"), 200, listed)


def test_admin_a_limit_of_zero_refuses_every_stream(admin_service: Service) -> None:
    user, stream = admin_service.new_id("user"), admin_service.new_id("stream")
    admin_service.admin("PUT", f"{user}/limit", b'{"limit": 0}')
    refused(admin_service.activate(user, stream), 403, "Stream Limit Reached", limit=0, activeStreams=[])


@pytest.mark.parametrize(("method", "body"), [("DELETE", None), ("PUT", b'{"limit": null}')])
def test_admin_clears_a_users_limit(admin_service: Service, method: str, body: bytes | None) -> None:
    user = admin_service.new_id("user")
    admin_service.admin("PUT", f"{user}/limit", b'{"limit": 1}')
    answer = admin_service.admin(method, f"{user}/limit", body)
    expect(answer, 200, {"status": "ok", "userId": user, "limit": None})
    listed = {"status": "ok", "userId": user, "limit": LIMIT, "userLimit": None, "streams": []}
    expect(admin_service.admin("GET", f"{user}/streams"), 200, listed)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", SHAPE),
        (b"[]", SHAPE),
        (b"null", SHAPE),
        (b'{"limit": -1}', SHAPE),
        (b'{"limit": 10001}', SHAPE),
        (b'{"limit": "3"}', SHAPE),
        (b'{"limit": true}', SHAPE),
        (b'{"limit": 1.5}', SHAPE),
        (b'{"limit": 1e400}', SHAPE),
        (b'{"limit": NaN}', SHAPE),
        (b'{"other": 1}', SHAPE),
        (b'{"limit": 1, "reason": "x"}', SHAPE),
        (b"not json", "Body must be JSON."),
        (b"\xff\xfe", "Body must be JSON."),
        (b"[" * 1000, "Body must be JSON."),
    ],
)
def test_admin_a_bad_limit_body_is_400(admin_service: Service, body: bytes, error: str) -> None:
    user = admin_service.new_id("user")
    refused(admin_service.admin("PUT", f"{user}/limit", body), 400, error)
    expect(
        admin_service.admin("GET", f"{user}/streams"),
        200,
        {"status": "ok", "userId": user, "limit": LIMIT, "userLimit": None, "streams": []},
    )


def test_admin_a_limit_body_over_1024_bytes_is_413(admin_service: Service) -> None:
    body = b'{"limit": 1' + b" " * 1014 + b"}"
    assert len(body) == 1026
    answer = admin_service.admin("PUT", f"{admin_service.new_id('user')}/limit", body)
    refused(answer, 413, "Body must be at most 1024 bytes.")


def test_admin_lists_a_users_streams(admin_service: Service) -> None:
    user = admin_service.new_id("user")
    streams = [admin_service.new_id("stream") for _ in range(2)]
    leases = [lease(s, admin_service.started(user, s)) for s in streams]
    listed = {"status": "ok", "userId": user, "limit": LIMIT, "userLimit": None, "streams": leases}
    expect(admin_service.admin("GET", f"{user}/streams"), 200, listed)


def test_admin_kicks_one_stream(admin_service: Service) -> None:
    service = admin_service
    user = service.new_id("user")
    kicked, kept = service.new_id("stream"), service.new_id("stream")
    service.started(user, kicked)
    kept_lease = lease(kept, service.started(user, kept))
    ended = {"status": "ok", "userId": user, "streamId": kicked, "wasActive": True}
    expect(service.admin("DELETE", f"{user}/streams/{kicked}"), 200, ended)
    refused(service.call("heartbeat", user, kicked), 404, "Lease Not Found")
    denied(service.gate(f"/watch/{kicked}/a.ts", user), 403, 403, "Stream Not Active")
    expect(
        service.active(user), 200, {"status": "ok", "userId": user, "limit": LIMIT, "streams": [kept_lease]}
    )
    again = service.admin("DELETE", f"{user}/streams/{kicked}")
    expect(again, 200, {**ended, "wasActive": False})


def test_admin_kick_of_a_malformed_stream_id_is_400(admin_service: Service) -> None:
    answer = admin_service.admin("DELETE", f"{admin_service.new_id('user')}/streams/a%20b")
    refused(answer, 400, "Malformed stream id.")


def test_admin_ends_all_of_a_users_streams(admin_service: Service) -> None:
    user = admin_service.new_id("user")
    for _ in range(2):
        admin_service.started(user, admin_service.new_id("stream"))
    expect(
        admin_service.admin("DELETE", f"{user}/streams"), 200, {"status": "ok", "userId": user, "ended": 2}
    )
    expect(admin_service.active(user), 200, {"status": "ok", "userId": user, "limit": LIMIT, "streams": []})
    expect(
        admin_service.admin("DELETE", f"{user}/streams"), 200, {"status": "ok", "userId": user, "ended": 0}
    )


# --- Redis cannot answer


def test_admin_is_503_when_redis_is_unreachable(serve: Serve) -> None:
    service = serve(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_ms=100, admin_token=ADMIN_TOKEN
    )
    user = service.new_id("user")
    refused(service.admin("GET", f"{user}/streams"), 503, "Service Unavailable", {"Retry-After": "1"})
    answer = service.admin("PUT", f"{user}/limit", b'{"limit": 1}')
    refused(answer, 503, "Service Unavailable", {"Retry-After": "1"})

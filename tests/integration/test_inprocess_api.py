"""The REST API (authsvc/api.py) in process: new ids, activate, deactivate, heartbeat and
active through Starlette's TestClient (see ``inprocess``), against the session's real
redis-server, and its answer when Redis is unreachable.

One test per outcome of an endpoint, each asserting the status and the whole body; the
answers are those that the process-level tests (test_api.py, test_bad_input.py) expect.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from authsvc.ids import IdCodec

from inprocess import LIMIT, SECRET, TTL_MS, Serve, Service, expect, foreign_id, lease, refused
from until import until

API_OPS = ("activate", "deactivate", "heartbeat")


def test_new_ids_carry_the_mac_of_their_kind(service: Service) -> None:
    users = {service.new_id("user") for _ in range(3)}
    streams = {service.new_id("stream") for _ in range(3)}
    assert len(users) == len(streams) == 3
    codec = IdCodec(SECRET)
    assert not any(codec.issued("stream", u) for u in users)
    assert not any(codec.issued("user", s) for s in streams)


# --- activate


@pytest.mark.parametrize("method", ["PATCH", "POST"])
def test_activate_admits_a_stream(service: Service, method: str) -> None:
    user, stream = service.new_id("user"), service.new_id("stream")
    answer = service.call("activate", user, stream, method)
    expect(
        answer,
        200,
        {
            "status": "ok",
            "userId": user,
            "streamId": stream,
            "outcome": "admitted",
            "expiresAt": answer.during + TTL_MS,
            "active": 1,
            "limit": LIMIT,
        },
    )


def test_activate_again_refreshes_and_uses_no_slot(service: Service) -> None:
    user = service.new_id("user")
    streams = [service.new_id("stream") for _ in range(LIMIT)]
    service.started(user, streams[0])
    again = service.activate(user, streams[0])
    expect(
        again,
        200,
        {
            "status": "ok",
            "userId": user,
            "streamId": streams[0],
            "outcome": "refreshed",
            "expiresAt": again.during + TTL_MS,
            "active": 1,
            "limit": LIMIT,
        },
    )
    # The slots left are LIMIT - 1: the refresh took none.
    for count, stream in enumerate(streams[1:], start=2):
        answer = service.activate(user, stream)
        assert (answer.status, answer.body["outcome"], answer.body["active"]) == (200, "admitted", count)


def test_activate_at_the_limit_is_403_with_the_active_streams(service: Service) -> None:
    user = service.new_id("user")
    streams = [service.new_id("stream") for _ in range(LIMIT + 1)]
    leases = [lease(s, service.started(user, s)) for s in streams[:LIMIT]]
    answer = service.activate(user, streams[LIMIT])
    refused(answer, 403, "Stream Limit Reached", limit=LIMIT, activeStreams=leases)
    # The refusal took no slot and ended no lease.
    expect(service.active(user), 200, {"status": "ok", "userId": user, "limit": LIMIT, "streams": leases})


def at_the_limit(service: Service) -> tuple[str, list[str]]:
    """A new user holding LIMIT streams, and one stream more of theirs to ask for."""
    user = service.new_id("user")
    streams = [service.new_id("stream") for _ in range(LIMIT + 1)]
    for stream in streams[:LIMIT]:
        service.started(user, stream)
    return user, streams


def test_activate_at_the_limit_evicts_the_oldest_when_told(serve: Serve) -> None:
    service = serve(limit_policy="evict_oldest")
    user, streams = at_the_limit(service)
    answer = service.activate(user, streams[LIMIT])
    expect(
        answer,
        200,
        {
            "status": "ok",
            "userId": user,
            "streamId": streams[LIMIT],
            "outcome": "evicted",
            "expiresAt": answer.during + TTL_MS,
            "active": LIMIT,
            "limit": LIMIT,
            "evicted": [streams[0]],
        },
    )
    refused(service.call("heartbeat", user, streams[0]), 404, "Lease Not Found")


def test_activate_at_the_limit_in_shadow_mode_admits_and_says_so(serve: Serve) -> None:
    service = serve(enforce=False)
    user, streams = at_the_limit(service)
    answer = service.activate(user, streams[LIMIT])
    expect(
        answer,
        200,
        {
            "status": "ok",
            "userId": user,
            "streamId": streams[LIMIT],
            "outcome": "shadow",
            "expiresAt": answer.during + TTL_MS,
            "active": LIMIT + 1,
            "limit": LIMIT,
        },
    )


# --- what activate, deactivate, heartbeat and active refuse alike


@pytest.mark.parametrize("how", ["forged", "other service", "other kind"])
@pytest.mark.parametrize("op", API_OPS)
def test_a_stream_id_not_issued_here_is_404(service: Service, op: str, how: str) -> None:
    user = service.new_id("user")
    refused(service.call(op, user, foreign_id(service, "stream", how)), 404, "Invalid Data.")


@pytest.mark.parametrize("how", ["forged", "other service", "other kind"])
@pytest.mark.parametrize("op", [*API_OPS, "active"])
def test_a_user_id_not_issued_here_is_404(service: Service, op: str, how: str) -> None:
    stream = service.new_id("stream")
    refused(service.call(op, foreign_id(service, "user", how), stream), 404, "Invalid Data.")


@pytest.mark.parametrize(
    ("user", "error"),
    [
        (None, "Missing x-userid header."),
        ("", "Missing x-userid header."),
        ("a b", "Malformed x-userid header."),
        ("{abc}", "Malformed x-userid header."),
        ("a" * 129, "Malformed x-userid header."),
    ],
)
@pytest.mark.parametrize("op", [*API_OPS, "active"])
def test_a_missing_or_malformed_x_userid_is_400(
    service: Service, op: str, user: str | None, error: str
) -> None:
    refused(service.call(op, user, service.new_id("stream")), 400, error)


@pytest.mark.parametrize("stream", ["a b", "{abc}", "a" * 129, ".hidden"])
@pytest.mark.parametrize("op", API_OPS)
def test_a_malformed_stream_id_is_400(service: Service, op: str, stream: str) -> None:
    answer = service.call(op, service.new_id("user"), quote(stream, safe=""))
    refused(answer, 400, "Malformed stream id.")


@pytest.mark.parametrize("op", API_OPS)
def test_other_methods_are_405(service: Service, op: str) -> None:
    answer = service.call(op, service.new_id("user"), service.new_id("stream"), method="GET")
    refused(answer, 405, "Method Not Allowed", {"Allow": "PATCH, POST"})


# --- deactivate


def test_deactivate_ends_an_active_lease_and_frees_its_slot(service: Service) -> None:
    user, streams = at_the_limit(service)
    answer = service.call("deactivate", user, streams[0])
    expect(answer, 200, {"status": "ok", "streamId": streams[0], "wasActive": True})
    assert service.activate(user, streams[LIMIT]).body["outcome"] == "admitted"


def test_deactivate_is_ok_when_not_active(service: Service) -> None:
    user, stream = service.new_id("user"), service.new_id("stream")
    expect(
        service.call("deactivate", user, stream),
        200,
        {"status": "ok", "streamId": stream, "wasActive": False},
    )
    service.started(user, stream)
    service.call("deactivate", user, stream)
    expect(
        service.call("deactivate", user, stream),
        200,
        {"status": "ok", "streamId": stream, "wasActive": False},
    )


# --- heartbeat


def test_heartbeat_refreshes_a_live_lease(service: Service) -> None:
    user, stream = service.new_id("user"), service.new_id("stream")
    started = service.started(user, stream)
    activated = started.body["expiresAt"] - TTL_MS
    assert until(lambda: time.time() * 1000 >= activated + 2, timeout=5, step=0.001)
    answer = service.call("heartbeat", user, stream)
    expect(answer, 200, {"status": "ok", "streamId": stream, "expiresAt": answer.during + TTL_MS})
    # The heartbeat moved the last refresh and kept the start.
    streams = [lease(stream, answer, started)]
    assert streams[0]["refreshedAt"] != streams[0]["startedAt"]
    expect(service.active(user), 200, {"status": "ok", "userId": user, "limit": LIMIT, "streams": streams})


def test_heartbeat_after_deactivate_is_404(service: Service) -> None:
    user, stream = service.new_id("user"), service.new_id("stream")
    service.started(user, stream)
    assert service.call("heartbeat", user, stream).status == 200
    service.call("deactivate", user, stream)
    refused(service.call("heartbeat", user, stream), 404, "Lease Not Found")
    refused(service.call("heartbeat", user, service.new_id("stream")), 404, "Lease Not Found")


# --- active


def test_active_lists_streams_in_activation_order_with_the_limit(serve: Serve) -> None:
    service = serve(max_streams=4)
    user = service.new_id("user")
    by_id = sorted(service.new_id("stream") for _ in range(4))
    order = [by_id[1], by_id[3], by_id[0], by_id[2]]  # neither sorting of the ids gives it
    leases = [lease(s, service.started(user, s)) for s in order]
    expect(service.active(user), 200, {"status": "ok", "userId": user, "limit": 4, "streams": leases})


def test_active_of_a_user_without_streams_is_empty(service: Service) -> None:
    user = service.new_id("user")
    expect(service.active(user), 200, {"status": "ok", "userId": user, "limit": LIMIT, "streams": []})


# --- Redis cannot answer


@pytest.mark.parametrize("op", [*API_OPS, "active"])
def test_the_api_is_503_when_redis_is_unreachable(no_redis: Service, op: str) -> None:
    user, stream = no_redis.new_id("user"), no_redis.new_id("stream")  # ids need no Redis
    refused(no_redis.call(op, user, stream), 503, "Service Unavailable", {"Retry-After": "1"})

"""When a part of the stack is down: clients see 503 in JSON (or, with fail-open, the
stream anyway), and everything recovers when the part returns."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import requests

from canwatch_stack.procs import free_port

from edge_harness import SEGMENT, Player, StackFactory, ko
from until import until

pytestmark = pytest.mark.e2e

RECOVERY_S = 5.0


def test_redis_down_gives_503_at_gate_and_api_and_both_recover(start_stack: StackFactory) -> None:
    stack = start_stack(why="it stops and restarts Redis")
    player = Player(stack.url)
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    stack.stop_redis()
    body = ko(player.watch(stream, user), 503, "Service Unavailable")
    assert body == {"status": "ko", "error": "Service Unavailable"}
    ko(player.activate(user, player.new_stream()), 503, "Service Unavailable")
    ko(player.active(user), 503, "Service Unavailable")
    # Redis back with its data (saved at shutdown, as a Redis with persistence would).
    stack.start_redis()
    assert until(lambda: player.watch(stream, user).status_code == 200, RECOVERY_S)
    assert player.activate(user, player.new_stream()).status_code == 200
    player.close()


def test_authsvc_down_gives_503_at_gate_and_api(start_stack: StackFactory) -> None:
    stack = start_stack(why="it stops and restarts authsvc")
    player = Player(stack.url)
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    stack.stop_authsvc()
    r = player.watch(stream, user)
    ko(r, 503, "Service Unavailable")
    assert r.headers["Retry-After"] == "1"
    ko(requests.get(f"{stack.url}/users/newId", timeout=5), 503, "Service Unavailable")
    stack.start_authsvc()
    assert until(lambda: player.watch(stream, user).status_code == 200, RECOVERY_S)
    player.close()


def test_fail_open_serves_the_stream_when_redis_or_authsvc_is_down(start_stack: StackFactory) -> None:
    stack = start_stack(why="fail-open, and it stops Redis and authsvc", fail_open=True)
    player = Player(stack.url)
    user, stream = player.new_user(), player.new_stream()  # never activated
    # Redis down: authsvc itself fails open (204 with X-Gate-Decision: fail_open).
    stack.stop_redis()
    assert player.watch(stream, user, path=SEGMENT).status_code == 200
    # Redis back: refused at once, the fail-open answer was kept nowhere.
    stack.start_redis()  # returns once Redis accepts connections
    ko(player.watch(stream, user), 403, "Stream Not Active")
    # authsvc down: nginx fails open and fetches from the origin anyway.
    stack.stop_authsvc()
    r = player.watch(stream, user, path=SEGMENT)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp2t"
    # Only the gate fails open: the API still says it cannot answer.
    ko(player.activate(user, stream), 503, "Service Unavailable")
    # Failing open is for callers with an identity: without one, nothing is served.
    ko(player.watch(stream), 401, "Missing or invalid identity.")
    player.close()


@pytest.mark.parametrize("lease_token_s", [0, 2])
def test_failing_open_to_an_origin_that_is_down_answers_in_json(
    start_stack: StackFactory, lease_token_s: int
) -> None:
    """authsvc down and fail-open on: nginx goes to the origin, and when that is down too
    the answer is the edge's JSON, with lease tokens on or off (a second error_page
    hand-over, which nginx answers in HTML unless it is allowed)."""
    stack = start_stack(
        why="fail-open, an origin that is down, and it stops authsvc",
        fail_open=True,
        lease_token_s=lease_token_s,
        origin_url=f"http://127.0.0.1:{free_port()}",
    )
    player = Player(stack.url)
    user, stream = player.new_user(), player.new_stream()
    stack.stop_authsvc()
    r = player.watch(stream, user, path=SEGMENT)
    assert r.headers["content-type"] == "application/json", r.text
    ko(r, 502, "Bad Gateway")
    player.close()


def test_api_rate_limit_per_client_answers_429_in_json(start_stack: StackFactory) -> None:
    stack = start_stack(why="a rate limit of 2 requests per second", api_rate=2)
    codes = [requests.get(f"{stack.url}/healthz", timeout=5) for _ in range(12)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, [r.status_code for r in codes]
    ko(limited[0], 429, "Too Many Requests")
    assert codes[0].status_code == 200


def test_nginx_reloaded_under_load_fails_no_request(start_stack: StackFactory) -> None:
    """Players fetch segments and call the API while nginx is reloaded (SIGHUP) three
    times: every request on a new connection is answered 200. A kept-alive connection
    that an old worker closes at the reload can meet a request on its way (status 0 here):
    players resend such an idempotent GET on a new connection; counted and printed."""
    stack = start_stack(why="it reloads nginx")
    player = Player(stack.url)
    users = [player.new_user() for _ in range(4)]
    streams = {user: player.new_stream() for user in users}
    for user in users:
        assert player.activate(user, streams[user]).status_code == 200
    stop = threading.Event()
    fresh: list[int] = []
    kept: list[int] = []

    def play(user: str, keep_alive: bool) -> None:
        out = kept if keep_alive else fresh
        with requests.Session() as http:
            while not stop.is_set():
                for path in (f"/watch/{streams[user]}/{SEGMENT}", "/streams/active"):
                    headers = {"x-userid": user} if keep_alive else {"x-userid": user, "Connection": "close"}
                    try:
                        out.append(http.get(f"{stack.url}{path}", headers=headers, timeout=5).status_code)
                    except requests.ConnectionError:
                        out.append(0)

    players = [threading.Thread(target=play, args=(user, n % 2 == 0)) for n, user in enumerate(users)]
    for t in players:
        t.start()
    try:
        for _ in range(3):
            before = len(fresh)
            os.kill(stack.procs["nginx"].pid, signal.SIGHUP)
            assert until(lambda: len(fresh) > before + 100, 30)  # noqa: B023
    finally:
        stop.set()
        for t in players:
            t.join(10)
    print(
        f"\nover 3 reloads: {len(fresh)} requests on new connections, answers {sorted(set(fresh))}; "
        f"{len(kept)} on kept-alive ones, {kept.count(0)} met a closing connection"
    )
    assert set(fresh) == {200}
    assert set(kept) <= {200, 0}
    player.close()

"""The gate: /watch/{streamId}/<path> through auth_request, identity, outcomes, leases."""

from __future__ import annotations

import time

import pytest
import requests

from edge_harness import PLAYLIST, SEGMENT, Deployment, Player, StackFactory, access_entry, ko
from until import until

pytestmark = pytest.mark.e2e


def active_stream(player: Player) -> tuple[str, str]:
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    return user, stream


def test_fetch_of_an_active_stream_is_allowed(player: Player) -> None:
    user, stream = active_stream(player)
    playlist = player.watch(stream, user)
    assert playlist.status_code == 200, playlist.text
    assert playlist.text.startswith("#EXTM3U")
    assert playlist.headers["Access-Control-Allow-Origin"] == "*"
    segment = player.watch(stream, user, path=SEGMENT)
    assert segment.status_code == 200
    assert segment.headers["content-type"] == "video/mp2t"
    assert 90_000 <= len(segment.content) <= 120_000


@pytest.mark.parametrize("via", ["header", "cookie", "query"])
def test_identity_from_header_cookie_or_query_parameter(player: Player, via: str) -> None:
    user, stream = active_stream(player)
    r = player.watch(stream, user, via=via)
    assert r.status_code == 200, r.text


def test_fetch_of_an_inactive_stream_is_refused(player: Player) -> None:
    user, stream = player.new_user(), player.new_stream()
    ko(player.watch(stream, user), 403, "Stream Not Active")


def test_fetch_of_another_users_stream_is_refused(player: Player) -> None:
    _, stream = active_stream(player)
    other = player.new_user()
    ko(player.watch(stream, other), 403, "Stream Not Active")
    ko(player.watch(stream, other, via="query"), 403, "Stream Not Active")


def test_fetch_without_identity_is_unauthorized(player: Player) -> None:
    _, stream = active_stream(player)
    ko(player.watch(stream), 401, "Missing or invalid identity.")


def test_stream_id_not_issued_here_is_not_found(player: Player) -> None:
    user = player.new_user()
    ko(player.watch("A" * 32, user), 404, "Invalid Data.")


def test_malformed_stream_id_is_a_bad_request(player: Player) -> None:
    user = player.new_user()
    ko(player.watch("{bad}", user), 400, "Malformed stream id.")


def test_deactivated_stream_is_refused(player: Player, edge: Deployment) -> None:
    user, stream = active_stream(player)
    assert player.watch(stream, user).status_code == 200
    assert player.deactivate(user, stream).status_code == 200
    # With lease tokens a player's token may serve it until it expires.
    bound = edge.revocation_s + 1.5 if edge.revocation_s else 0.0
    assert until(lambda: player.watch(stream, user).status_code == 403, bound)
    ko(player.watch(stream, user), 403, "Stream Not Active")


def test_gated_fetches_alone_keep_the_lease_alive(start_stack: StackFactory) -> None:
    ttl = 2.0
    stack = start_stack(why="a lease TTL of 2 s", lease_ttl_s=ttl)
    player = Player(stack.url)
    user, stream = active_stream(player)
    # Two TTLs of fetching every 0.5 s, no heartbeat: each fetch refreshes the lease.
    started = last_fetch = time.monotonic()
    while last_fetch - started < 2 * ttl + 0.5:
        r = player.watch(stream, user, path=SEGMENT)
        last_fetch = time.monotonic()
        assert r.status_code == 200, r.text
        time.sleep(0.5)
    assert [s["streamId"] for s in player.active(user).json()["streams"]] == [stream]
    # One TTL after the last fetch the lease is gone.
    time.sleep(max(0.0, last_fetch + ttl + 0.3 - time.monotonic()))
    assert player.active(user).json()["streams"] == []
    ko(player.watch(stream, user), 403, "Stream Not Active")
    player.close()


def test_head_request_is_gated_too(player: Player) -> None:
    user, stream = active_stream(player)
    url = f"{player.base}/watch/{stream}/{PLAYLIST}"
    assert requests.head(url, headers={"x-userid": user}, timeout=5).status_code == 200
    assert requests.head(url, timeout=5).status_code == 401


def test_the_log_names_a_fetch_by_its_path_as_sent(player: Player, edge: Deployment) -> None:
    # %80 decodes to a byte that is not UTF-8 on its own: the log keeps the path as the
    # request line had it, so that every entry stays one line of valid JSON.
    if edge.stack is None:
        pytest.skip("reads the edge's access log: only on a stack of our own, not HOST")
    user, stream = active_stream(player)
    answer = player.watch(stream, user, path="demo/caf%C3%A9%80.ts")
    assert answer.status_code == 404  # the origin has no such file; the gate allowed it
    entry = access_entry(edge.stack, answer.headers["X-Request-ID"])
    assert entry["path"] == f"/watch/{stream}/demo/caf%C3%A9%80.ts"
    assert entry["decision"] == "allowed" and entry["route"] == "gate"


def test_the_benchmark_baseline_proxies_like_the_gate_and_logs_the_path_without_its_query(
    start_stack: StackFactory,
) -> None:
    # /open/ (bench/, ungated) is only worth measuring while it does the gate's proxying:
    # the same bytes from the origin, and a log line with the path as sent, query left out.
    stack = start_stack(why="the benchmark's /open/ location", ungated=True)
    player = Player(stack.url)
    user, stream = active_stream(player)
    gated = player.watch(stream, user, path=SEGMENT)
    assert gated.status_code == 200
    opened = requests.get(f"{stack.url}/open/{SEGMENT}?token=not-for-the-log", timeout=5)
    assert opened.status_code == 200
    assert opened.content == gated.content
    entry = access_entry(stack, opened.headers["X-Request-ID"])
    assert entry["path"] == f"/open/{SEGMENT}"
    assert entry["route"] == "open" and entry["status"] == 200
    player.close()

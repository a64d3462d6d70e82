"""The seed's API through nginx: its happy path, the limit, CORS, hidden routes."""

from __future__ import annotations

import pytest
import requests

from edge_harness import Player, ko

pytestmark = pytest.mark.e2e


def test_seed_happy_path_three_streams_activated_then_deactivated(player: Player) -> None:
    user = player.new_user()
    streams = [player.new_stream() for _ in range(3)]
    for stream in streams:
        r = player.activate(user, stream)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ok"
    listed = player.active(user).json()
    assert {s["streamId"] for s in listed["streams"]} == set(streams)
    for stream in streams:
        r = player.deactivate(user, stream)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok", "streamId": stream, "wasActive": True}
    assert player.active(user).json()["streams"] == []


def test_fourth_stream_is_refused_with_a_json_body(player: Player) -> None:
    user = player.new_user()
    streams = [player.new_stream() for _ in range(4)]
    for stream in streams[:3]:
        assert player.activate(user, stream).status_code == 200
    body = ko(player.activate(user, streams[3]), 403, "Stream Limit Reached")
    assert body["limit"] == 3
    leases = body["activeStreams"]
    assert isinstance(leases, list)
    assert {lease["streamId"] for lease in leases} == set(streams[:3])


def test_api_identity_from_query_parameter_but_never_a_cookie_alone(player: Player) -> None:
    # The query parameter is for clients that cannot set headers; a cookie alone is not
    # taken on the API, since any other site could make the browser send it (CSRF).
    user, stream = player.new_user(), player.new_stream()
    by_query = requests.patch(f"{player.base}/streams/{stream}/activate", params={"userid": user}, timeout=5)
    assert by_query.status_code == 200, by_query.text
    assert by_query.json()["userId"] == user
    listed = requests.get(f"{player.base}/streams/active", params={"userid": user}, timeout=5)
    assert [s["streamId"] for s in listed.json()["streams"]] == [stream]
    by_cookie = requests.patch(
        f"{player.base}/streams/{player.new_stream()}/activate", cookies={"cw_userid": user}, timeout=5
    )
    assert by_cookie.status_code == 400, by_cookie.text
    assert by_cookie.json() == {"status": "ko", "error": "Missing x-userid header."}


def test_browser_preflight_is_answered_by_nginx(player: Player) -> None:
    r = requests.options(
        f"{player.base}/streams/x/activate",
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "x-userid",
        },
        timeout=5,
    )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
    assert "x-userid" in r.headers["Access-Control-Allow-Headers"].lower()


def test_api_answers_carry_cors_headers(player: Player) -> None:
    r = requests.get(f"{player.base}/users/newId", headers={"Origin": "https://player.example"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/_authz", "/metrics", "/admin/users/someone/streams"])
def test_internal_routes_are_not_reachable_from_outside(player: Player, path: str) -> None:
    ko(requests.get(player.base + path, timeout=5), 404, "Not Found")

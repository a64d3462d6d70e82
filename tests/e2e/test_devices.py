"""Devices through the real edge: an app's x-device-id reaches authsvc on the API and on
the gate; a browser gets the cw_device cookie, which the gate uses as its device id."""

from __future__ import annotations

import re

import pytest
import requests

from edge_harness import SEGMENT, Deployment, Player, ko

pytestmark = pytest.mark.e2e

# What every browser sends and players like ffmpeg do not.
BROWSER = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}


def activate(player: Player, user: str, stream: str, **headers: str) -> requests.Response:
    sent = {"x-userid": user, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return requests.patch(f"{player.base}/streams/{stream}/activate", headers=sent, timeout=5)


def devices(player: Player, user: str) -> dict[str, object]:
    return {s["streamId"]: s.get("deviceId") for s in player.active(user).json()["streams"]}


def test_an_apps_device_id_replaces_its_stream_through_the_edge(player: Player) -> None:
    user, first, second = player.new_user(), player.new_stream(), player.new_stream()
    assert activate(player, user, first, x_device_id="tv-1").status_code == 200
    assert player.watch(first, user, path=SEGMENT, headers={"x-device-id": "tv-1"}).status_code == 200
    r = activate(player, user, second, x_device_id="tv-1")
    assert r.status_code == 200, r.text
    assert (r.json()["deviceId"], r.json()["replaced"]) == ("tv-1", [first])
    assert devices(player, user) == {second: "tv-1"}
    ko(player.watch(first, user, path=SEGMENT, headers={"x-device-id": "tv-1"}), 403, "Stream Not Active")
    assert player.watch(second, user, path=SEGMENT, headers={"x-device-id": "tv-1"}).status_code == 200
    # Pages of other origins may send it (CORS preflight).
    preflight = requests.options(
        f"{player.base}/streams/{second}/activate",
        headers={"Origin": "https://app.example", "Access-Control-Request-Headers": "x-userid, x-device-id"},
        timeout=5,
    )
    assert "x-device-id" in preflight.headers["Access-Control-Allow-Headers"]


def test_a_browser_gets_a_device_cookie_that_the_gate_uses(player: Player) -> None:
    browser = requests.Session()
    browser.headers.update(BROWSER)
    first = browser.get(f"{player.base}/users/newId", timeout=5)
    cookie = first.headers["Set-Cookie"]
    attributes = [part.strip() for part in cookie.split(";")]
    name, _, device = attributes[0].partition("=")
    assert name == "cw_device" and re.fullmatch(r"[0-9a-f]{32}", device), cookie
    assert set(attributes[1:]) == {"Path=/", "Max-Age=34560000", "HttpOnly", "SameSite=Lax"}, cookie
    user, stream = first.json()["userId"], player.new_stream()
    # The API takes no device from the cookie: the activation has none.
    r = browser.patch(f"{player.base}/streams/{stream}/activate", headers={"x-userid": user}, timeout=5)
    assert r.status_code == 200 and "deviceId" not in r.json()
    assert "Set-Cookie" not in r.headers  # it has one now
    # The gate sends it to authsvc as x-device-id: the lease becomes this browser's.
    fetched = browser.get(f"{player.base}/watch/{stream}/{SEGMENT}", headers={"x-userid": user}, timeout=5)
    assert fetched.status_code == 200
    assert devices(player, user) == {stream: device}


def test_only_browsers_without_a_device_get_the_cookie(player: Player) -> None:
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    # A player that keeps no cookies (ffmpeg, an app) would get a new device every fetch.
    plain = player.watch(stream, user, path=SEGMENT)
    assert plain.status_code == 200 and "Set-Cookie" not in plain.headers
    # A browser that names its device in the header needs none.
    named = player.watch(stream, user, path=SEGMENT, headers={**BROWSER, "x-device-id": "tv"})
    assert named.status_code == 200 and "Set-Cookie" not in named.headers
    assert devices(player, user) == {stream: "tv"}


def test_a_malformed_cookie_is_no_device_and_is_replaced(player: Player) -> None:
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    r = requests.get(
        f"{player.base}/watch/{stream}/{SEGMENT}",
        headers={**BROWSER, "x-userid": user},
        cookies={"cw_device": "not/a{device}"},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    assert re.match(r"cw_device=[0-9a-f]{32};", r.headers["Set-Cookie"])
    assert devices(player, user) == {stream: None}


def test_a_malformed_device_header_is_a_json_400(player: Player) -> None:
    user, stream = player.new_user(), player.new_stream()
    ko(
        activate(player, user, stream, x_device_id="a b"),
        400,
        "Malformed x-device-id header: 1 to 64 of A-Z a-z 0-9 _ . : -",
    )
    assert player.activate(user, stream).status_code == 200
    ko(player.watch(stream, user, path=SEGMENT, headers={"x-device-id": "x" * 65}), 400)


def test_over_tls_the_device_cookie_is_secure(edge: Deployment) -> None:
    if edge.stack is None or edge.stack.local_tls is None:
        pytest.skip("HOST=: the deployment's certificate is not this test's to pin")
    stack = edge.stack
    assert stack.local_tls is not None
    r = requests.get(
        f"{stack.tls_url}/users/newId", headers=BROWSER, verify=str(stack.local_tls.ca), timeout=5
    )
    assert r.status_code == 200
    assert r.headers["Set-Cookie"].startswith("cw_device=") and "; Secure" in r.headers["Set-Cookie"]

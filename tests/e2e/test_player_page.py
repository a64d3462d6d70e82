"""The player page (/player/) in a real browser: headless Debian chromium, driven through
chromedriver by selenium, playing with hls.js (HLS) and Shaka Player (DASH) through the
gate. Per player: three streams play (each <video>'s currentTime advances, and the edge's
access log has their segments served with 200), the fourth is refused with the server's
"Stream Limit Reached", a stop frees the slot, and the fourth then plays. A refused viewer
frees a slot from the refusal itself with one click; the page remembers the viewer's id
and shows their active streams on load. Screenshots of the page are saved
(PLAYER_SCREENSHOT=path keeps the one of the refusal)."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from edge_harness import Deployment, Player, StackFactory, access_lines
from media import chromium
from until import until

pytestmark = pytest.mark.e2e

# Generous: the page must work with both cores busy (three videos decoding, the stack,
# the browser); on an idle machine each condition holds within a second or two.
BOUND_S = 45.0
# How the page shows a time: how long ago, from the API's clock.
AGO = r"\d+ (s|min) ago"
# What each player fetches through the gate: its manifest and its media segments.
FETCHES = {"hls": ("playlist.m3u8", ".ts"), "dash": ("manifest.mpd", ".m4s")}
# Collects the page's Content-Security-Policy violations from its first script on.
CSP_WATCH = (
    "window.cspViolations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def watched(driver: Any) -> Any:
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_WATCH})
    return driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = watched(chromium(tmp_path))
    yield driver
    assert driver.execute_script("return window.cspViolations || []") == []
    driver.quit()


def cards(browser: Any) -> list[dict[str, Any]]:
    """Every stream card on the page: its state, message and <video>'s currentTime."""
    result: list[dict[str, Any]] = browser.execute_script(
        """return [...document.querySelectorAll('.card')].map(card => ({
            stream: card.dataset.stream, state: card.dataset.state || '',
            format: card.dataset.format, message: card.querySelector('.message').textContent,
            time: card.querySelector('video').currentTime,
            src: card.querySelector('video').getAttribute('src'),
            others: [...card.querySelectorAll('.others li')].map(li => ({
                stream: li.dataset.stream, text: li.textContent,
                device: li.querySelector('.device').textContent,
                started: li.querySelector('.started').textContent,
                startedAt: li.querySelector('.started').dataset.startedAt || null}))}));"""
    )
    return result


def wait(browser: Any, check: Callable[[list[dict[str, Any]]], bool], what: str) -> list[dict[str, Any]]:
    assert until(lambda: check(cards(browser)), BOUND_S, step=0.25), (what, cards(browser))
    return cards(browser)


def advancing(browser: Any, index: int) -> None:
    """The card's <video> plays: its currentTime moves on by a second of video."""
    start = wait(
        browser, lambda c: len(c) > index and c[index]["state"] == "playing", f"card {index} playing"
    )
    t0 = start[index]["time"]
    wait(browser, lambda c: c[index]["time"] > t0 + 1.0, f"card {index} currentTime advancing from {t0}")


def click(browser: Any, css: str) -> None:
    browser.execute_script("document.querySelector(arguments[0]).click()", css)


def start(browser: Any, fmt: str) -> None:
    """Start a stream with the player for ``fmt`` (hls or dash), as a viewer would."""
    browser.execute_script("document.getElementById('format').value = arguments[0]", fmt)
    click(browser, "#start")


def open_page(browser: Any, url: str, identity: str = "header") -> None:
    browser.get(url)
    assert until(lambda: browser.execute_script("return document.body.dataset.identity") == identity, BOUND_S)


def new_user(browser: Any) -> str:
    click(browser, "#new-user")
    assert until(
        lambda: browser.execute_script("return document.getElementById('user').value") != "", BOUND_S
    )
    return str(browser.execute_script("return document.getElementById('user').value"))


def listed(browser: Any) -> list[str]:
    """The streams of the active streams panel, in its order."""
    rows: list[str] = browser.execute_script(
        "return [...document.querySelectorAll('#leases tr')].map(row => row.dataset.stream)"
    )
    return rows


def rows(browser: Any) -> dict[str, dict[str, Any]]:
    """stream id -> what the active streams panel shows of it: its start (the text, and the
    API's startedAt the cell carries) and its last refresh."""
    shown: dict[str, dict[str, Any]] = browser.execute_script(
        """return Object.fromEntries([...document.querySelectorAll('#leases tr')].map(row => [
            row.dataset.stream, {started: row.querySelector('.started').textContent,
            startedAt: row.querySelector('.started').dataset.startedAt || null,
            refreshed: row.querySelector('.refreshed').textContent}]));"""
    )
    return shown


def api_leases(edge: Deployment, user: str) -> dict[str, dict[str, Any]]:
    """stream id -> the user's lease as the API lists it."""
    r = requests.get(f"{edge.url}/streams/active", headers={"x-userid": user}, timeout=5)
    assert r.status_code == 200, r.text
    return {lease["streamId"]: lease for lease in r.json()["streams"]}


def served(edge: Deployment, stream: str, fmt: str) -> None:
    """The edge's access log has the stream's manifest and a media segment of ``fmt``
    fetched through the gate and answered 200 (the log is at most a second late)."""
    if edge.stack is None:
        return  # HOST: the deployment's log is not this test's to read
    stack = edge.stack
    manifest, media = FETCHES[fmt]

    def paths() -> set[str]:
        return {
            str(e["path"]).rsplit("/", 1)[-1]
            for e in access_lines(stack)
            if e["route"] == "gate" and e["stream"] == stream and e["status"] == 200
        }

    def seen() -> bool:
        got = paths()
        return manifest in got and any(name.endswith(media) for name in got)

    assert until(seen, BOUND_S), (stream, fmt, paths())


def usage(browser: Any) -> str:
    return str(browser.execute_script("return document.getElementById('usage').dataset.active || ''"))


def screenshot(browser: Any, path: Path, keep: str | None = None) -> None:
    """Save the page as PNG (and a copy at ``keep``: the README's comes from here), tall
    enough for a refusal's list of streams."""
    browser.set_window_size(1280, 1000)
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if keep:
        shutil.copyfile(path, keep)


@pytest.mark.parametrize("fmt", sorted(FETCHES))
def test_player_page_plays_refuses_and_frees_a_slot(
    browser: Any, edge: Deployment, tmp_path: Path, fmt: str
) -> None:
    page = requests.get(f"{edge.url}/player/", timeout=5)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    open_page(browser, f"{edge.url}/player/")
    new_user(browser)

    for index in range(3):
        start(browser, fmt)
        advancing(browser, index)
    for index in range(3):  # all three still play, side by side
        advancing(browser, index)
    assert until(lambda: usage(browser) == "3", BOUND_S)
    streams = [c["stream"] for c in cards(browser)]
    assert [c["format"] for c in cards(browser)] == [fmt] * 3
    for stream in streams:
        served(edge, stream, fmt)
    if fmt == "hls":  # hls.js transmuxes in its worker, loaded from its own file
        names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert any(name.endswith("/player/vendor/hls.js/hls.worker.js") for name in names), names

    start(browser, fmt)
    shown = wait(browser, lambda c: len(c) == 4 and c[3]["state"] == "refused", "fourth refused")
    assert shown[3]["message"] == "Stream Limit Reached"
    assert shown[3]["time"] == 0
    assert sorted(o["stream"] for o in shown[3]["others"]) == sorted(streams)
    screenshot(
        browser, tmp_path / "refused.png", os.environ.get("PLAYER_SCREENSHOT") if fmt == "hls" else None
    )

    click(browser, ".card:nth-child(1) .stop")
    wait(browser, lambda c: c[0]["state"] == "stopped", "first stopped")
    assert until(lambda: usage(browser) == "2", BOUND_S), "the slot is not shown freed"
    assert cards(browser)[0]["src"] is None

    click(browser, ".card:nth-child(4) .retry")
    advancing(browser, 3)
    served(edge, cards(browser)[3]["stream"], fmt)
    assert until(lambda: usage(browser) == "3", BOUND_S)
    for index in (1, 2):
        advancing(browser, index)

    screenshot(browser, tmp_path / "replayed.png")


def test_a_refused_viewer_frees_a_slot_from_the_refusal_with_one_click(
    browser: Any, edge: Deployment
) -> None:
    open_page(browser, f"{edge.url}/player/")
    user = new_user(browser)
    for index, fmt in enumerate(["hls", "dash", "hls"]):
        start(browser, fmt)
        advancing(browser, index)
    first, *rest = [c["stream"] for c in cards(browser)]

    start(browser, "dash")
    shown = wait(browser, lambda c: len(c) == 4 and c[3]["state"] == "refused", "fourth refused")
    fourth = shown[3]["stream"]
    # The refusal lists the user's active streams as the 403 gave them: each with its
    # device, when its lease started (the API's startedAt, which refreshes keep) and its
    # last refresh.
    others = {o["stream"]: o for o in shown[3]["others"]}
    assert set(others) == {first, *rest}
    leases = api_leases(edge, user)
    for stream, other in others.items():
        lease = leases[stream]
        assert other["startedAt"] == str(lease["startedAt"]), (other, lease)
        assert re.fullmatch(f"started {AGO}", other["started"]), other
        assert "last refresh" in other["text"] and "(here)" not in other["text"], other
        # The browser's gated fetches gave each lease its device (the edge's cw_device).
        assert other["device"] == (f"on {lease['deviceId']}" if "deviceId" in lease else ""), (other, lease)

    click(browser, f'.card:nth-child(4) .others li[data-stream="{first}"] .free')
    advancing(browser, 3)
    after = cards(browser)
    assert after[0]["state"] == "stopped" and after[0]["src"] is None, after[0]
    assert after[3]["others"] == []  # the refusal is gone
    served(edge, fourth, "dash")
    active = requests.get(f"{edge.url}/streams/active", headers={"x-userid": user}, timeout=5).json()
    assert sorted(lease["streamId"] for lease in active["streams"]) == sorted([*rest, fourth])
    for index in (1, 2):
        advancing(browser, index)


def test_the_page_remembers_the_viewer_and_shows_their_active_streams_on_load(
    browser: Any, edge: Deployment, player: Player
) -> None:
    # A viewer already watching three streams (started elsewhere: through the API).
    user = player.new_user()
    streams = [player.new_stream() for _ in range(3)]
    for stream in streams:
        assert player.activate(user, stream).status_code == 200

    open_page(browser, f"{edge.url}/player/?userid={user}")
    assert browser.execute_script("return document.getElementById('user').value") == user
    assert until(lambda: sorted(listed(browser)) == sorted(streams), BOUND_S), listed(browser)
    assert usage(browser) == "3"
    # Each with when it started, as the API says: this browser started none of them.
    starts = {s: str(lease["startedAt"]) for s, lease in api_leases(edge, user).items()}
    shown = rows(browser)
    assert {s: row["startedAt"] for s, row in shown.items()} == starts, shown
    for row in shown.values():
        assert re.fullmatch(AGO, row["started"]) and re.fullmatch(AGO, row["refreshed"]), row

    # Another visit, no id in the URL: the page remembers it.
    open_page(browser, f"{edge.url}/player/")
    assert browser.execute_script("return document.getElementById('user').value") == user
    assert until(lambda: sorted(listed(browser)) == sorted(streams), BOUND_S), listed(browser)
    # Watching one of them here takes no new slot.
    click(browser, f'#leases tr[data-stream="{streams[0]}"] .watch')
    advancing(browser, 0)
    assert cards(browser)[0]["stream"] == streams[0]
    assert until(lambda: usage(browser) == "3", BOUND_S)
    # Stopping one from the list ends its lease.
    click(browser, f'#leases tr[data-stream="{streams[1]}"] .end')
    assert until(lambda: sorted(listed(browser)) == sorted([streams[0], streams[2]]), BOUND_S)


def test_player_page_in_jwt_mode_plays_with_a_pasted_token(
    browser: Any, start_stack: StackFactory, tmp_path: Path
) -> None:
    key = "e2e-page-jwt-key-of-at-least-32-bytes"
    stack = start_stack(why="jwt mode with a key the test knows", identity="jwt", jwt_secret=key)
    user = requests.get(f"{stack.url}/users/newId", timeout=5).json()["userId"]
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 300, "max_streams": 1}, key, algorithm="HS256")
    browser.get(f"{stack.url}/player/")
    assert until(lambda: browser.execute_script("return document.body.dataset.identity") == "jwt", BOUND_S)
    browser.execute_script(
        "const t = document.getElementById('token'); t.value = arguments[0];"
        "t.dispatchEvent(new Event('change'));",
        token,
    )
    start(browser, "hls")
    advancing(browser, 0)
    # The token's own limit (max_streams 1): the second stream is refused.
    start(browser, "dash")
    shown = wait(browser, lambda c: len(c) == 2 and c[1]["state"] == "refused", "second refused")
    assert shown[1]["message"] == "Stream Limit Reached"
    assert [o["stream"] for o in shown[1]["others"]] == [shown[0]["stream"]]
    assert until(
        lambda: browser.execute_script("return document.getElementById('usage').textContent") == "(1 of 1)",
        BOUND_S,
    )
    # Freed from the refusal: the DASH stream plays on the token's one slot.
    click(browser, ".card:nth-child(2) .free")
    advancing(browser, 1)
    assert cards(browser)[0]["state"] == "stopped"
    assert until(lambda: listed(browser) == [shown[1]["stream"]], BOUND_S), listed(browser)


def test_player_page_plays_over_tls(edge: Deployment, tmp_path: Path) -> None:
    if edge.stack is None or edge.stack.local_tls is None:
        pytest.skip("HOST=: the deployment's certificate is not this test's to pin")
    stack = edge.stack
    assert stack.local_tls is not None
    browser = watched(chromium(tmp_path, trust_cert=stack.local_tls.cert))
    try:
        browser.get(f"{stack.tls_url}/player/")
        assert until(lambda: browser.execute_script("return location.protocol") == "https:", BOUND_S)
        assert until(
            lambda: browser.execute_script("return document.body.dataset.identity") == "header", BOUND_S
        )
        click(browser, "#new-user")
        assert until(
            lambda: browser.execute_script("return document.getElementById('user').value") != "", BOUND_S
        )
        # Both players, their segments on the stream's cookie (Secure over TLS).
        start(browser, "hls")
        advancing(browser, 0)
        start(browser, "dash")
        advancing(browser, 1)
        assert until(lambda: usage(browser) == "2", BOUND_S)
        assert browser.execute_script("return window.cspViolations") == []
    finally:
        browser.quit()

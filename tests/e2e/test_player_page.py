"""The player page (/player/) in a real browser: headless Debian chromium, driven through
chromedriver by selenium. Three streams play (each <video>'s currentTime advances), the
fourth is refused with the server's "Stream Limit Reached", a stop frees the slot, and the
fourth then plays. Screenshots of the page are saved (PLAYER_SCREENSHOT=path keeps the one of the refusal)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from edge_harness import Deployment, StackFactory
from media import chromium
from until import until

pytestmark = pytest.mark.e2e

# Generous: the page must work with both cores busy (three videos decoding, the stack,
# the browser); on an idle machine each condition holds within a second or two.
BOUND_S = 45.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = chromium(tmp_path)
    yield driver
    driver.quit()


def cards(browser: Any) -> list[dict[str, Any]]:
    """Every stream card on the page: its state, message and <video>'s currentTime."""
    result: list[dict[str, Any]] = browser.execute_script(
        """return [...document.querySelectorAll('.card')].map(card => ({
            stream: card.dataset.stream, state: card.dataset.state || '',
            message: card.querySelector('.message').textContent,
            time: card.querySelector('video').currentTime}));"""
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


def usage(browser: Any) -> str:
    return str(browser.execute_script("return document.getElementById('usage').dataset.active || ''"))


def screenshot(browser: Any, path: Path, keep: str | None = None) -> None:
    """Save the page as PNG (and a copy at ``keep``: the README's comes from here)."""
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if keep:
        shutil.copyfile(path, keep)


def test_player_page_plays_refuses_and_frees_a_slot(browser: Any, edge: Deployment, tmp_path: Path) -> None:
    page = requests.get(f"{edge.url}/player/", timeout=5)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    browser.get(f"{edge.url}/player/")
    assert until(lambda: browser.execute_script("return document.body.dataset.identity") == "header", BOUND_S)
    click(browser, "#new-user")
    assert until(
        lambda: browser.execute_script("return document.getElementById('user').value") != "", BOUND_S
    )

    for index in range(3):
        click(browser, "#start")
        advancing(browser, index)
    for index in range(3):  # all three still play, side by side
        advancing(browser, index)
    assert until(lambda: usage(browser) == "3", BOUND_S)

    click(browser, "#start")
    shown = wait(browser, lambda c: len(c) == 4 and c[3]["state"] == "refused", "fourth refused")
    assert shown[3]["message"] == "Stream Limit Reached"
    assert shown[3]["time"] == 0
    screenshot(browser, tmp_path / "refused.png", os.environ.get("PLAYER_SCREENSHOT"))

    click(browser, ".card:nth-child(1) .stop")
    wait(browser, lambda c: c[0]["state"] == "stopped", "first stopped")
    assert until(lambda: usage(browser) == "2", BOUND_S), "the slot is not shown freed"
    stopped = browser.execute_script("return document.querySelector('.card video').getAttribute('src')")
    assert stopped is None

    click(browser, ".card:nth-child(4) .retry")
    advancing(browser, 3)
    assert until(lambda: usage(browser) == "3", BOUND_S)
    for index in (1, 2):
        advancing(browser, index)

    screenshot(browser, tmp_path / "replayed.png")


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
    click(browser, "#start")
    advancing(browser, 0)
    # The token's own limit (max_streams 1): the second stream is refused.
    click(browser, "#start")
    shown = wait(browser, lambda c: len(c) == 2 and c[1]["state"] == "refused", "second refused")
    assert shown[1]["message"] == "Stream Limit Reached"
    assert until(
        lambda: browser.execute_script("return document.getElementById('usage').textContent") == "(1 of 1)",
        BOUND_S,
    )


def test_player_page_plays_over_tls(edge: Deployment, tmp_path: Path) -> None:
    if edge.stack is None or edge.stack.local_tls is None:
        pytest.skip("HOST=: the deployment's certificate is not this test's to pin")
    stack = edge.stack
    assert stack.local_tls is not None
    browser = chromium(tmp_path, trust_cert=stack.local_tls.cert)
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
        click(browser, "#start")
        advancing(browser, 0)
        assert until(lambda: usage(browser) == "1", BOUND_S)
    finally:
        browser.quit()

"""jwt mode through nginx: the token's subject is the user, whatever x-userid says, and
every token authsvc cannot verify is refused with 401 at the gate and the API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import jwt
import pytest
import requests

from canwatch_stack.supervisor import Stack

from edge_harness import HOST, Player, ko, launch

pytestmark = pytest.mark.e2e

KEY = "e2e-jwt-key-of-at-least-thirty-two-bytes"
AUDIENCE = "canwatch-e2e"


@pytest.fixture(scope="module")
def jwt_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if HOST:
        pytest.skip(f"HOST={HOST}: needs a stack of its own in jwt mode, with a signing key the tests know")
    stack = launch(tmp_path_factory.mktemp("jwt"), identity="jwt", jwt_secret=KEY, jwt_audience=AUDIENCE)
    yield stack
    stack.stop()


@pytest.fixture
def player(jwt_stack: Stack) -> Iterator[Player]:
    p = Player(jwt_stack.url)
    yield p
    p.close()


def token(sub: str, key: str = KEY, **claims: object) -> str:
    payload: dict[str, object] = {"sub": sub, "exp": int(time.time()) + 300, "aud": AUDIENCE, **claims}
    return jwt.encode(payload, key, algorithm="HS256")


def api(player: Player, op: str, stream: str, bearer: str, **headers: str) -> requests.Response:
    return requests.patch(
        f"{player.base}/streams/{stream}/{op}",
        headers={"Authorization": f"Bearer {bearer}", **headers},
        timeout=5,
    )


@pytest.mark.parametrize("via", ["header", "cookie", "query"])
def test_valid_token_activates_and_watches(player: Player, via: str) -> None:
    user, stream = player.new_user(), player.new_stream()
    t = token(user)
    r = api(player, "activate", stream, t)
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == user
    assert player.watch(stream, token=t, via=via).status_code == 200


def test_spoofed_x_userid_is_ignored(player: Player) -> None:
    owner, victim, stream = player.new_user(), player.new_user(), player.new_stream()
    # The API acts for the token's subject, not for the x-userid the client sent.
    r = api(player, "activate", stream, token(owner), **{"x-userid": victim})
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == owner
    assert r.json()["active"] == 1
    # x-userid alone is no identity in this mode, at the API and at the gate.
    ko(player.activate(victim, stream), 401)
    ko(player.watch(stream, victim), 401, "Missing or invalid identity.")
    # The victim's own token sees none of the owner's streams.
    victims_own = requests.get(
        f"{player.base}/streams/active", headers={"Authorization": f"Bearer {token(victim)}"}, timeout=5
    )
    assert victims_own.json()["streams"] == []
    assert player.watch(stream, token=token(victim)).status_code == 403


def forged(sub: str) -> str:
    return token(sub, key="another-key-that-is-also-thirty-two-bytes")


def expired(sub: str) -> str:
    return token(sub, exp=int(time.time()) - 60)


def wrong_audience(sub: str) -> str:
    return token(sub, aud="someone-else")


def alg_none(sub: str) -> str:
    payload = {"sub": sub, "exp": int(time.time()) + 300, "aud": AUDIENCE}
    return jwt.encode(payload, None, algorithm="none")  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [forged, expired, wrong_audience, alg_none], ids=lambda f: f.__name__)
def test_unverifiable_tokens_get_401_at_gate_and_api(player: Player, make: Callable[[str], str]) -> None:
    user, stream = player.new_user(), player.new_stream()
    assert api(player, "activate", stream, token(user)).status_code == 200
    bad = make(user)
    ko(player.watch(stream, token=bad), 401, "Missing or invalid identity.")
    ko(player.watch(stream, token=bad, via="query"), 401, "Missing or invalid identity.")
    ko(api(player, "deactivate", stream, bad), 401)
    # The lease was not touched by any of them.
    assert player.watch(stream, token=token(user)).status_code == 200


def test_no_token_is_401(player: Player) -> None:
    ko(player.watch(player.new_stream()), 401, "Missing or invalid identity.")

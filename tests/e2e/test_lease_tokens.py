"""Lease tokens checked inside nginx (AUTHSVC_LEASE_TOKEN_S): a decision authsvc allowed
comes back as a cookie scoped to the stream, and nginx serves that player's fetches of
that stream by checking it in-process (Lua) until it expires. Every other token falls
through to the exact decision, which never turns a refusal into an allow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from authsvc.leasetoken import lease_token_key, mac
from canwatch_stack.supervisor import Stack

from edge_harness import SEGMENT, Player, StackFactory, access_entry, gate_decisions, ko, launch
from harness import SECRET
from until import until

pytestmark = pytest.mark.e2e

TOKEN_S = 2
TTL_S = 10


@pytest.fixture(scope="module")
def token_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = launch(
        tmp_path_factory.mktemp("token"),
        lease_token_s=TOKEN_S,
        lease_ttl_s=TTL_S,
        access_log=True,
    )
    yield stack
    stack.stop()


@pytest.fixture
def player(token_stack: Stack) -> Iterator[Player]:
    p = Player(token_stack.url)
    yield p
    p.close()


def segment_url(stack: Stack, stream: str, path: str = SEGMENT) -> str:
    return f"{stack.url}/watch/{stream}/{path}"


def fetch(
    stack: Stack, stream: str, user: str, lease: str | None = None, **headers: str
) -> requests.Response:
    cookies = {"cw_lease": lease} if lease is not None else {}
    return requests.get(
        segment_url(stack, stream), headers={"x-userid": user, **headers}, cookies=cookies, timeout=5
    )


def watching(stack: Stack, player: Player) -> tuple[str, str, str]:
    """(user, stream, token): an active stream and the token its first fetch was given."""
    user, stream = player.new_user(), player.new_stream()
    assert player.activate(user, stream).status_code == 200
    first = fetch(stack, stream, user)
    assert first.status_code == 200, first.text
    token = first.cookies.get("cw_lease")
    assert token, first.headers
    return user, stream, token


def asked(stack: Stack) -> float:
    """How often authsvc's gate decided anything."""
    return sum(gate_decisions(stack, o) for o in ("allowed", "not_active", "invalid", "error"))


def test_an_allowed_decision_hands_the_player_a_cookie_for_that_stream_only(
    token_stack: Stack, player: Player
) -> None:
    user, stream = player.new_user(), player.new_stream()
    player.activate(user, stream)
    r = fetch(token_stack, stream, user)
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    parts = {p.strip().split("=")[0].lower(): p.strip() for p in cookie.split(";")}
    assert parts["path"] == f"Path=/watch/{stream}/"
    assert parts["max-age"] == f"Max-Age={TOKEN_S}"
    assert "httponly" in parts and parts["samesite"] == "SameSite=Lax"
    assert "secure" not in parts  # plain HTTP; see the TLS test
    # A refusal hands out nothing.
    other = player.new_stream()
    refused = fetch(token_stack, other, user)
    assert refused.status_code == 403 and "set-cookie" not in refused.headers


def test_over_tls_the_cookie_is_secure(token_stack: Stack, player: Player) -> None:
    assert token_stack.local_tls is not None
    user, stream = player.new_user(), player.new_stream()
    player.activate(user, stream)
    r = requests.get(
        f"{token_stack.tls_url}/watch/{stream}/{SEGMENT}",
        headers={"x-userid": user},
        verify=str(token_stack.local_tls.ca),
        timeout=5,
    )
    assert r.status_code == 200
    assert "; Secure" in r.headers["set-cookie"]


def test_a_valid_token_is_served_by_nginx_alone(token_stack: Stack, player: Player) -> None:
    user, stream, token = watching(token_stack, player)
    segment = fetch(token_stack, stream, user).content  # decided by authsvc: the reference
    before = asked(token_stack)
    for _ in range(5):
        r = fetch(token_stack, stream, user, token)
        assert r.status_code == 200 and r.content == segment
        assert "set-cookie" not in r.headers  # nothing new to hand out
    # authsvc was not asked (its counters are read from its own port, not through nginx).
    assert asked(token_stack) == before


def test_the_log_names_the_viewer_of_a_fetch_a_token_served(token_stack: Stack, player: Player) -> None:
    user, stream, token = watching(token_stack, player)
    by_header = fetch(token_stack, stream, user, token)
    # The identity in the cookie alone, as an HLS player's segment fetches carry it.
    by_cookie = requests.get(
        segment_url(token_stack, stream), cookies={"cw_userid": user, "cw_lease": token}, timeout=5
    )
    for r in (by_header, by_cookie):
        assert r.status_code == 200
        logged = access_entry(token_stack, r.headers["X-Request-ID"])
        assert (logged["decision"], logged["user"]) == ("token", user)


def _wrong_tokens(stack: Stack, player: Player, user: str, stream: str, token: str) -> dict[str, str]:
    key = lease_token_key(SECRET)
    expiry = int(time.time()) + TOKEN_S
    other_user, other_stream = player.new_user(), player.new_stream()
    expired = int(time.time()) - 1
    return {
        "another user's": f"{expiry}.{mac(key, other_user, stream, expiry)}",
        "another stream's": f"{expiry}.{mac(key, user, other_stream, expiry)}",
        "expired": f"{expired}.{mac(key, user, stream, expired)}",
        "tampered expiry": f"{int(token.split('.')[0]) + 60}.{token.split('.')[1]}",
        "tampered mac": token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "another secret's": f"{expiry}.{mac(lease_token_key('z' * 40), user, stream, expiry)}",
        "no mac": f"{expiry}.",
        "no expiry": f".{token.split('.')[1]}",
        "not a number": f"soon.{token.split('.')[1]}",
        "garbage": "x" * 40,
        "far-future expiry": f"{expiry + 60}.{mac(key, user, stream, expiry + 60)}",
        "too long expiry": f"99999999999999.{mac(key, user, stream, 99999999999999)}",
    }


def test_every_wrong_token_falls_through_to_the_exact_decision(token_stack: Stack, player: Player) -> None:
    user, stream, token = watching(token_stack, player)
    assert player.deactivate(user, stream).status_code == 200
    # Wait out the real token, so that only the exact decision could let anything through.
    assert until(lambda: time.time() > int(token.split(".")[0]) + 1, timeout=TOKEN_S + 5)
    for name, wrong in _wrong_tokens(token_stack, player, user, stream, token).items():
        before = asked(token_stack)
        r = fetch(token_stack, stream, user, wrong)
        # Even a validly signed one that claims more than AUTHSVC_LEASE_TOKEN_S from now.
        ko(r, 403, "Stream Not Active")
        assert asked(token_stack) == before + 1, f"{name}: authsvc was not asked"


def test_a_token_counts_only_as_the_cookie_of_its_own_stream(token_stack: Stack, player: Player) -> None:
    user, stream, token = watching(token_stack, player)
    other = player.new_stream()
    before = asked(token_stack)
    # Moved into a header, or replayed on another stream's URLs: the exact decision.
    for headers in ({"X-Lease-Token": token}, {"Authorization": f"Bearer {token}"}):
        ko(fetch(token_stack, other, user, **headers), 403, "Stream Not Active")
    ko(fetch(token_stack, other, user, token), 403, "Stream Not Active")
    assert asked(token_stack) == before + 3
    # The same headers on its own stream, without the cookie: also asked (and allowed).
    assert fetch(token_stack, stream, user, **{"X-Lease-Token": token}).status_code == 200
    assert asked(token_stack) == before + 4


def test_a_token_remembered_as_checked_still_binds_its_viewer_and_stream(
    token_stack: Stack, player: Player
) -> None:
    """Each nginx worker remembers the tokens it found valid (CANWATCH_EDGE_LEASE_TOKEN_CACHE):
    what it remembers is the identity, the stream and the cookie together, never the
    cookie alone."""
    user, stream, token = watching(token_stack, player)
    other_user, other_stream = player.new_user(), player.new_stream()
    assert player.activate(other_user, stream).status_code == 200  # a lease of its own there
    before = asked(token_stack)
    assert fetch(token_stack, stream, user, token).status_code == 200  # checked, remembered
    assert asked(token_stack) == before
    # The remembered cookie with another identity, on another stream, or with the identity
    # given another way: each is another claim, decided exactly.
    r = fetch(token_stack, stream, other_user, token)
    assert r.status_code == 200 and asked(token_stack) == before + 1  # other_user's own lease
    ko(fetch(token_stack, other_stream, user, token), 403, "Stream Not Active")
    assert asked(token_stack) == before + 2
    by_cookie = requests.get(
        segment_url(token_stack, stream), cookies={"cw_userid": other_user, "cw_lease": token}, timeout=5
    )
    assert by_cookie.status_code == 200 and asked(token_stack) == before + 3
    # And the viewer it was issued to is still served by nginx alone.
    assert fetch(token_stack, stream, user, token).status_code == 200
    assert asked(token_stack) == before + 3


def test_tokens_work_while_the_memory_of_checked_ones_turns_over(
    start_stack: StackFactory,
) -> None:
    """With room for two tokens a generation, three players taking turns make the memory
    turn over on every round (a generation fills, the older is dropped, a token found in
    the older is carried over): each is still served by nginx alone, and logged as its
    own viewer."""
    stack = start_stack(
        why="lease tokens", lease_token_s=TOKEN_S * 3, lease_ttl_s=TTL_S * 3, lease_token_cache=2
    )
    # The memory's size reaches the check (tests/integration/test_lease_token_lua.py
    # tests the memory itself).
    assert ", false, 2)" in (stack.edge.prefix / "part-http-lease-token.conf").read_text()
    player = Player(stack.url)
    try:
        viewers = [watching(stack, player) for _ in range(3)]
        before = asked(stack)
        served = []
        for _ in range(3):
            for user, stream, token in viewers:
                r = fetch(stack, stream, user, token)
                assert r.status_code == 200, r.text
                served.append((r.headers["X-Request-ID"], user))
        assert asked(stack) == before
        for request_id, user in served:
            logged = access_entry(stack, request_id)
            assert (logged["decision"], logged["user"]) == ("token", user)
        # A token turned out of the memory is no less bound: another viewer's, sent with
        # this viewer's identity, is no token here, and authsvc decides.
        (user, stream, _), (_, _, other_token) = viewers[0], viewers[1]
        assert fetch(stack, stream, user, other_token).status_code == 200
        assert asked(stack) == before + 1
    finally:
        player.close()


@pytest.mark.parametrize("ending", ["deactivate", "kick", "eviction"])
def test_revocation_is_felt_within_the_token_lifetime(
    start_stack: StackFactory, ending: str, tmp_path: Path
) -> None:
    stack = start_stack(
        why="lease tokens", lease_token_s=TOKEN_S, lease_ttl_s=TTL_S, admin_token="t" * 32, max_streams=1,
        limit_policy="evict_oldest" if ending == "eviction" else "reject",
    )  # fmt: skip
    player = Player(stack.url)
    user, stream, _ = watching(stack, player)
    token = fetch(stack, stream, user).cookies.get("cw_lease") or ""  # the newest, issued now
    assert token
    expiry = int(token.split(".")[0])
    if ending == "deactivate":
        assert player.deactivate(user, stream).status_code == 200
    elif ending == "kick":
        admin = {"Authorization": "Bearer " + "t" * 32}
        r = requests.delete(f"{stack.api_url}/admin/users/{user}/streams/{stream}", headers=admin, timeout=5)
        assert r.json()["wasActive"] is True
    else:
        assert player.activate(user, player.new_stream()).json()["evicted"] == [stream]
    # Served by the token at most until it expires, then refused by the exact decision;
    # never again after that.
    last_served = 0.0
    while (r := fetch(stack, stream, user, token)).status_code == 200:
        last_served = time.time()
        assert last_served <= expiry + 1, "served past the token's expiry"
        time.sleep(0.2)
    ko(r, 403, "Stream Not Active")
    assert time.time() <= expiry + 1 + 5  # refused promptly after expiry (bound for a loaded machine)
    for _ in range(3):
        ko(fetch(stack, stream, user, token), 403, "Stream Not Active")
    player.close()


def test_edges_sharing_the_secret_accept_each_others_tokens(
    token_stack: Stack, player: Player, tmp_path: Path
) -> None:
    redis_url = token_stack.settings.redis_url
    same = launch(tmp_path / "same", lease_token_s=TOKEN_S, lease_ttl_s=TTL_S, redis_url=redis_url)
    other = launch(
        tmp_path / "other", lease_token_s=TOKEN_S, lease_ttl_s=TTL_S, redis_url=redis_url, secret="z" * 40
    )
    try:
        user, stream, token = watching(token_stack, player)  # after the edges start: fresh
        before = asked(same)
        r = fetch(same, stream, user, token)
        assert r.status_code == 200 and asked(same) == before  # nginx alone
        # Another secret: neither the token nor the ids are this edge's.
        before = asked(other)
        ko(fetch(other, stream, user, token), 401)
        assert asked(other) == before + 1
    finally:
        same.stop()
        other.stop()


def test_tokens_survive_an_authsvc_restart(start_stack: StackFactory) -> None:
    stack = start_stack(why="lease tokens", lease_token_s=TOKEN_S, lease_ttl_s=TTL_S)
    player = Player(stack.url)
    user, stream, token = watching(stack, player)
    stack.stop_authsvc()
    # authsvc is gone: a token still plays; anything that needs a decision gets 503.
    assert fetch(stack, stream, user, token).status_code == 200
    ko(fetch(stack, stream, user), 503)
    stack.start_authsvc()
    assert fetch(stack, stream, user, token).status_code == 200
    player.close()


def test_jwt_mode_binds_the_token_to_the_bearer_token(start_stack: StackFactory) -> None:
    key = "e2e-jwt-key-of-at-least-thirty-two-bytes"
    stack = start_stack(
        why="lease tokens in jwt mode",
        identity="jwt",
        jwt_secret=key,
        lease_token_s=TOKEN_S,
        lease_ttl_s=TTL_S,
        access_log=True,
    )
    player = Player(stack.url)

    def bearer(sub: str, extra: int = 0) -> str:
        return jwt.encode({"sub": sub, "exp": int(time.time()) + 600 + extra}, key, algorithm="HS256")

    stream = player.new_stream()
    me, someone = bearer("viewer-1"), bearer("viewer-2")
    auth = {"Authorization": f"Bearer {me}"}
    assert requests.post(f"{stack.url}/streams/{stream}/activate", headers=auth, timeout=5).status_code == 200
    first = requests.get(segment_url(stack, stream), headers=auth, timeout=5)
    token = first.cookies.get("cw_lease")
    assert token and token.endswith(".viewer-1"), first.headers  # the subject, for the log
    before = asked(stack)
    again = requests.get(segment_url(stack, stream), headers=auth, cookies={"cw_lease": token}, timeout=5)
    assert again.status_code == 200 and asked(stack) == before
    # The log names the viewer of a fetch the token served, as authsvc names it on the
    # others: the subject of the JWT the token is bound to.
    logged = access_entry(stack, again.headers["X-Request-ID"])
    assert (logged["decision"], logged["user"]) == ("token", "viewer-1")
    # The subject is under the MAC: renamed, the token is not taken (authsvc is asked).
    renamed = token.rsplit(".", 1)[0] + ".viewer-2"
    r = requests.get(segment_url(stack, stream), headers=auth, cookies={"cw_lease": renamed}, timeout=5)
    assert r.status_code == 200 and asked(stack) == before + 1
    # Another user's bearer with my lease cookie: asked, and refused.
    theirs = {"Authorization": f"Bearer {someone}"}
    r = requests.get(segment_url(stack, stream), headers=theirs, cookies={"cw_lease": token}, timeout=5)
    ko(r, 403, "Stream Not Active")
    assert asked(stack) == before + 2
    player.close()

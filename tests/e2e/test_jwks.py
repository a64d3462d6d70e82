"""jwt mode through nginx with the identity provider's keys (a real JWKS server, found by
discovery from the issuer): a player's token in each of its forms verifies by its kid, and
after a key rotation a token under the new key plays once the fetch it caused lands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from jwks_server import JwksServer, SigningKey

from canwatch_stack.supervisor import Stack

from edge_harness import HOST, Player, ko, launch
from until import until

pytestmark = pytest.mark.e2e

AUDIENCE = "canwatch-e2e"
REALM = "/realms/canwatch"


@pytest.fixture(scope="module")
def provider() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture(scope="module")
def first() -> SigningKey:
    return SigningKey("RS256", kid="first")


@pytest.fixture(scope="module")
def jwks_stack(
    tmp_path_factory: pytest.TempPathFactory, provider: JwksServer, first: SigningKey
) -> Iterator[Stack]:
    if HOST:
        pytest.skip(f"HOST={HOST}: needs a stack of its own in jwt mode, on the tests' identity provider")
    provider.publish(first)
    stack = launch(
        tmp_path_factory.mktemp("jwks"),
        identity="jwt",
        jwt_discovery=True,
        jwt_issuer=provider.issuer + REALM,
        jwt_audience=AUDIENCE,
        jwt_jwks_refresh_s=3600,
        jwt_jwks_refetch_min_s=0.1,
    )
    yield stack
    stack.stop()


@pytest.fixture
def player(jwks_stack: Stack) -> Iterator[Player]:
    p = Player(jwks_stack.url)
    yield p
    p.close()


def token(key: SigningKey, sub: str, provider: JwksServer) -> str:
    return key.token(sub, aud=AUDIENCE, iss=provider.issuer + REALM)


def activate(player: Player, stream: str, bearer: str) -> requests.Response:
    return requests.patch(
        f"{player.base}/streams/{stream}/activate", headers={"Authorization": f"Bearer {bearer}"}, timeout=5
    )


@pytest.mark.parametrize("via", ["header", "cookie", "query"])
def test_a_token_of_the_providers_key_activates_and_watches(
    player: Player, provider: JwksServer, first: SigningKey, via: str
) -> None:
    user, stream = player.new_user(), player.new_stream()
    t = token(first, user, provider)
    r = activate(player, stream, t)
    assert (r.status_code, r.json()["userId"]) == (200, user), r.text
    assert player.watch(stream, token=t, via=via).status_code == 200


def test_after_a_rotation_the_new_keys_tokens_play_through_the_edge(
    player: Player, provider: JwksServer, first: SigningKey
) -> None:
    user, stream = player.new_user(), player.new_stream()
    rotated = SigningKey("ES256", kid="second")
    provider.publish(first, rotated)
    t = token(rotated, user, provider)
    # Refused at once (the edge's JSON 401), then admitted when the fetch it caused lands.
    ko(player.watch(stream, token=t), 401, "Missing or invalid identity.")
    assert until(lambda: activate(player, stream, t).status_code == 200, timeout=15)
    assert player.watch(stream, token=t, via="cookie").status_code == 200
    old = token(first, user, provider)  # still published: still verifies
    assert player.watch(stream, token=old, via="query").status_code == 200

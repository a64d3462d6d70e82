"""jwt identity with the identity provider's keys, authsvc in a process of its own against a
real JWKS server over HTTP: a flood of made-up kids sent truly at once, and a start-up
that has no key to start with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests
from jwks_server import JwksServer, SigningKey
from prometheus_client.parser import text_string_to_metric_families

from canwatch_stack.procs import StackError

from harness import HOST, Authsvc, AuthsvcFactory
from races import fire_at_once
from until import until

FLOOD = 60
NEVER_S = 3600  # no background refresh, and one unknown-kid fetch per test at most


@pytest.fixture
def provider() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


def unknown_kid_fetches(service: Authsvc) -> float:
    text = requests.get(f"{service.url}/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "authsvc_jwks_fetches_total" and s.labels["trigger"] == "unknown_kid"
    )


def asking(path: str, token: str, uri: str = "") -> bytes:
    original = f"X-Original-URI: {uri}\r\n" if uri else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n{original}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_a_flood_of_unknown_kids_causes_one_fetch_and_no_5xx(
    start_authsvc: AuthsvcFactory, provider: JwksServer
) -> None:
    key = SigningKey("RS256")
    provider.publish(key)
    service = start_authsvc(
        identity="jwt",
        jwt_jwks_url=provider.jwks_url,
        jwt_jwks_refresh_s=NEVER_S,
        jwt_jwks_refetch_min_s=NEVER_S,
    )
    assert provider.fetches() == 1  # start-up
    for wave in range(2):
        made_up = [key.token("mallory", kid=uuid.uuid4().hex) for _ in range(FLOOD)]
        sent = [
            asking("/_authz", t, "/watch/s/a.ts") if i % 2 else asking("/streams/active", t)
            for i, t in enumerate(made_up)
        ]
        sent.append(asking("/streams/active", key.token("alice")))  # a real user in the flood
        replies = fire_at_once(service.port, sent)
        *flood, (status, body) = replies
        assert (status, body["userId"]) == (200, "alice")
        assert {status for status, _ in flood} == {401}, [status for status, _ in flood]
        assert {body["error"] for _, body in flood} == {"Invalid token: unknown signing key."}
        assert until(lambda: unknown_kid_fetches(service) == 1, timeout=10)
        assert provider.fetches() == 2, f"wave {wave}"


def test_start_up_refuses_clearly_when_there_is_no_key(
    start_authsvc: AuthsvcFactory, provider: JwksServer
) -> None:
    provider.serve_body(b'{"keys": [{"kty": "oct", "kid": "shared", "k": "c2VjcmV0", "alg": "HS256"}]}')
    with pytest.raises(StackError) as stopped:
        start_authsvc(identity="jwt", jwt_jwks_url=provider.jwks_url)
    message = (
        f"authsvc cannot start: jwt identity has no signing key: {provider.jwks_url}: "
        "none of its 1 keys has a kid and verifies RS256, ES256"
    )
    assert "exited with 3" in str(stopped.value) and message in str(stopped.value), stopped.value
    provider.stop()
    with pytest.raises(StackError, match=r"authsvc cannot start: jwt identity has no signing key: .*refused"):
        start_authsvc(identity="jwt", jwt_jwks_url=provider.jwks_url)


def test_each_worker_fetches_the_keys_for_itself(start_authsvc: AuthsvcFactory, provider: JwksServer) -> None:
    key = SigningKey("ES256")
    provider.publish(key)
    service = start_authsvc(workers=2, identity="jwt", jwt_jwks_url=provider.jwks_url)
    # /healthz answered once a worker was up: wait for the other one's start-up fetch.
    assert until(lambda: provider.fetches() == 2, timeout=30)
    r = requests.get(
        f"{service.url}/streams/active", headers={"Authorization": f"Bearer {key.token('zoe')}"}, timeout=5
    )
    assert (r.status_code, r.json()["userId"]) == (200, "zoe")
    counted = 'authsvc_jwks_fetches_total{outcome="ok",trigger="startup"} 2.0'
    assert until(lambda: counted in requests.get(f"{service.url}/metrics", timeout=5).text, timeout=10)

"""jwt identity with the identity provider's keys (authsvc/jwks.py), in process (see
``inprocess``), against a real JWKS server over HTTP (``jwks_server``) and the session's
real redis-server: keys chosen by kid, rotation, the provider down, discovery, and JWKS
documents that are not usable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from jwks_server import DISCOVERY_PATH, JwksServer, SigningKey
from prometheus_client.parser import text_string_to_metric_families

from authsvc.jwks import MAX_BYTES, KeysUnavailable

from inprocess import Answer, Serve, Service, expect, refused
from until import until

UNKNOWN = "Invalid token: unknown signing key."
# Long enough that only what a test causes fetches the keys while it runs.
NEVER_S = 3600


@pytest.fixture
def provider() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("RS256")


def keyed(serve: Serve, provider: JwksServer, **overrides: Any) -> Service:
    settings = {
        "identity": "jwt",
        "jwt_jwks_url": provider.jwks_url,
        "jwt_jwks_refresh_s": NEVER_S,
        "jwt_jwks_refetch_min_s": NEVER_S,
        **overrides,
    }
    return serve(**settings)


def activate(service: Service, token: str, stream: str | None = None) -> Answer:
    stream = stream or service.new_id("stream")
    return service.send("PATCH", f"/streams/{stream}/activate", {"Authorization": f"Bearer {token}"})


def ask(service: Service, token: str) -> Answer:
    """The token's user's active streams: verifies the token, uses no slot."""
    return service.send("GET", "/streams/active", {"Authorization": f"Bearer {token}"})


def admitted(answer: Answer, user: str) -> None:
    assert answer.status == 200 and answer.body["userId"] == user, answer


def metric(service: Service, name: str, **labels: str) -> float:
    text = service.client.get("/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def fetches(service: Service, trigger: str, outcome: str) -> float:
    return metric(service, "authsvc_jwks_fetches_total", trigger=trigger, outcome=outcome)


# --- keys chosen by kid


def test_a_token_is_verified_by_the_key_its_kid_names(serve: Serve, provider: JwksServer) -> None:
    rsa_key, ec_key = SigningKey("RS256"), SigningKey("ES256")
    provider.publish(rsa_key, ec_key)
    service = keyed(serve, provider)
    admitted(activate(service, rsa_key.token("alice")), "alice")
    admitted(activate(service, ec_key.token("bob")), "bob")
    stream = service.new_id("stream")
    activate(service, rsa_key.token("carol"), stream)
    gate = service.send(
        "GET",
        "/_authz",
        {"Authorization": f"Bearer {rsa_key.token('carol')}", "X-Original-URI": f"/watch/{stream}/a.ts"},
    )
    expect(gate, 204, None, {"X-Userid": "carol"})
    # The right key under another key's kid does not verify.
    refused(
        activate(service, ec_key.token("dave", kid=rsa_key.kid)),
        401,
        "Invalid token: Token algorithm 'ES256' does not match the key's algorithm 'RS256'.",
    )
    refused(
        activate(service, SigningKey("RS256").token("dave", kid=rsa_key.kid)),
        401,
        "Invalid token: Signature verification failed.",
    )
    assert provider.fetches() == 1  # start-up only: a known kid never asks the provider


def _unsigned(header: dict[str, Any], claims: dict[str, Any], key: bytes | None = None) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def test_alg_none_an_hmac_over_the_public_key_and_a_token_without_kid_are_refused(
    serve: Serve, provider: JwksServer, key: SigningKey
) -> None:
    provider.publish(key)
    service = keyed(serve, provider)
    claims = {"sub": "mallory", "exp": int(time.time()) + 300}
    none = _unsigned({"alg": "none", "kid": key.kid}, claims)
    refused(ask(service, none), 401, "Invalid token: The specified alg value is not allowed.")
    public = json.dumps(key.jwk()).encode()
    confused = _unsigned({"alg": "HS256", "kid": key.kid}, claims, public)
    refused(ask(service, confused), 401, "Invalid token: The specified alg value is not allowed.")
    no_kid = jwt.encode(claims, key.private, algorithm="RS256")
    refused(ask(service, no_kid), 401, "Invalid token: no kid in its header.")


def test_the_algorithms_setting_limits_which_published_keys_are_used(
    serve: Serve, provider: JwksServer
) -> None:
    rsa_key, ec_key = SigningKey("RS256"), SigningKey("ES256")
    provider.publish(rsa_key, ec_key)
    service = keyed(serve, provider, jwt_algorithms=("ES256",))
    admitted(ask(service, ec_key.token("erin")), "erin")
    refused(ask(service, rsa_key.token("erin")), 401, UNKNOWN)


# --- rotation


def test_a_token_under_a_new_key_is_refused_at_once_then_verifies_when_its_fetch_lands(
    serve: Serve, provider: JwksServer
) -> None:
    old, new = SigningKey("RS256"), SigningKey("ES256")
    provider.publish(old)
    service = keyed(serve, provider, jwt_jwks_refetch_min_s=0.1)
    admitted(ask(service, old.token("frank")), "frank")
    provider.publish(old, new)  # the provider rotates: the new key first appears beside the old
    # The request does not wait on the provider: refused now, and a fetch is asked for.
    refused(ask(service, new.token("frank")), 401, UNKNOWN)
    assert until(lambda: ask(service, new.token("frank")).status == 200, timeout=10)
    admitted(ask(service, old.token("frank")), "frank")  # the old key is still published
    assert fetches(service, "unknown_kid", "ok") >= 1
    assert fetches(service, "scheduled", "ok") == 0  # it came through the unknown kid alone


def test_old_tokens_verify_until_the_background_refresh_finds_their_key_gone(
    serve: Serve, provider: JwksServer
) -> None:
    old, new = SigningKey("RS256"), SigningKey("RS256")
    provider.publish(old, new)
    service = keyed(serve, provider, jwt_jwks_refresh_s=0.2)
    token = old.token("grace")
    first = provider.fetches()
    # Across several background refreshes, a key still published keeps verifying.
    assert until(lambda: provider.fetches() >= first + 3, timeout=10)
    admitted(ask(service, token), "grace")
    admitted(ask(service, new.token("grace")), "grace")
    provider.publish(new)  # the old key leaves the set
    assert until(lambda: ask(service, token).status == 401, timeout=10)
    refused(ask(service, token), 401, UNKNOWN)
    admitted(ask(service, new.token("grace")), "grace")
    assert fetches(service, "scheduled", "ok") >= 4


# --- the provider down


def test_the_last_keys_stay_in_use_while_the_provider_is_down(
    serve: Serve, provider: JwksServer, key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    provider.publish(key)
    service = keyed(serve, provider, jwt_jwks_refresh_s=0.2, jwt_jwks_refetch_min_s=0.1)
    fetched_at = metric(service, "authsvc_jwks_last_success_timestamp_seconds")
    assert time.time() - 60 < fetched_at <= time.time()
    provider.stop()
    with caplog.at_level(logging.WARNING, "authsvc"):
        assert until(lambda: fetches(service, "scheduled", "unreachable") >= 3, timeout=10)
        admitted(ask(service, key.token("heidi")), "heidi")
        # An unknown kid is refused as always, never a 5xx, however the provider is.
        refused(ask(service, key.token("heidi", kid="rotated-in-meanwhile")), 401, UNKNOWN)
    failures = [r for r in caplog.records if r.getMessage() == "jwks fetch failed: the last keys stay in use"]
    assert failures and all(r.levelno == logging.WARNING for r in failures)
    assert metric(service, "authsvc_jwks_last_success_timestamp_seconds") == fetched_at
    assert metric(service, "authsvc_jwks_keys") == 1
    # The provider back, with a rotated key: it is taken up by the next refresh.
    rotated = SigningKey("ES256")
    provider.publish(rotated)
    provider.start()
    assert until(lambda: ask(service, rotated.token("heidi")).status == 200, timeout=10)
    assert metric(service, "authsvc_jwks_last_success_timestamp_seconds") > fetched_at


def test_requests_are_answered_while_the_provider_holds_a_fetch(
    serve: Serve, provider: JwksServer, key: SigningKey
) -> None:
    provider.publish(key)
    service = keyed(serve, provider, jwt_jwks_refetch_min_s=0.1, jwt_jwks_timeout_s=60)
    provider.hold()
    refused(ask(service, key.token("ivy", kid="new-key")), 401, UNKNOWN)
    assert until(lambda: provider.held() == 1, timeout=10)  # the fetch it caused hangs
    admitted(ask(service, key.token("ivy")), "ivy")
    refused(ask(service, key.token("ivy", kid="new-key")), 401, UNKNOWN)
    assert provider.held() == 1  # answered while the provider still holds the fetch
    provider.release()
    # The held fetch ends well; a second may follow it at once, asked for by the refusal
    # above when that came more than 0.1 s after the first (a slow machine), never more.
    assert until(lambda: fetches(service, "unknown_kid", "ok") >= 1, timeout=10), " ".join(
        line
        for line in service.client.get("/metrics").text.splitlines()
        if line.startswith("authsvc_jwks_fetches")
    )
    assert provider.fetches() <= 3  # at start-up, the held one, and at most that second


def test_start_up_refuses_a_provider_that_does_not_answer_in_time(serve: Serve, provider: JwksServer) -> None:
    provider.hold()
    with pytest.raises(KeysUnavailable, match="timed out"):
        keyed(serve, provider, jwt_jwks_timeout_s=0.5)
    assert provider.held() == 1


def test_start_up_refuses_when_the_provider_cannot_be_reached(serve: Serve, provider: JwksServer) -> None:
    provider.stop()
    with pytest.raises(
        KeysUnavailable, match=r"jwt identity has no signing key: http://127\.0\.0\.1:\d+/jwks\.json: "
    ):
        keyed(serve, provider, jwt_jwks_timeout_s=1)


# --- discovery


def test_discovery_finds_the_keys_from_the_issuer(
    serve: Serve, provider: JwksServer, key: SigningKey
) -> None:
    provider.publish(key)
    issuer = provider.issuer + "/realms/canwatch"  # Keycloak's issuers are realms
    service = serve(identity="jwt", jwt_discovery=True, jwt_issuer=issuer)
    admitted(ask(service, key.token("ivan", iss=issuer)), "ivan")
    refused(
        ask(service, key.token("ivan", iss="https://elsewhere.example")),
        401,
        "Invalid token: Invalid issuer.",
    )
    assert (provider.hits["/realms/canwatch" + DISCOVERY_PATH], provider.fetches()) == (1, 1)


def test_discovery_refuses_a_document_of_another_issuer(
    serve: Serve, provider: JwksServer, key: SigningKey
) -> None:
    provider.publish(key)
    provider.claimed_issuer = "https://impostor.example"
    with pytest.raises(KeysUnavailable, match=re.escape(f"its issuer is not {provider.issuer}") + "$"):
        serve(identity="jwt", jwt_discovery=True, jwt_issuer=provider.issuer)
    assert provider.fetches() == 0


def test_an_issuer_with_a_static_key_does_no_discovery(serve: Serve, provider: JwksServer) -> None:
    secret = "a-shared-secret-of-enough-length-for-hs256"
    service = serve(identity="jwt", jwt_secret=secret, jwt_issuer=provider.issuer)
    token = jwt.encode({"sub": "judy", "exp": int(time.time()) + 300, "iss": provider.issuer}, secret)
    admitted(ask(service, token), "judy")
    assert provider.hits.total() == 0


# --- documents that are not a usable JWKS


def _unusable_keys() -> bytes:
    rs512 = SigningKey("RS256").jwk(alg="RS512")  # not among the accepted algorithms
    return json.dumps(
        {
            "keys": [
                {
                    "kty": "oct",
                    "kid": "hmac",
                    "k": "c2VjcmV0LXNoYXJlZC1vdmVyLXRoZS1uZXR3b3Jr",
                    "alg": "HS256",
                },
                {"kty": "OKP", "kid": "ed", "crv": "Ed448", "x": "AAAA"},
                {"kty": "XYZ", "kid": "what"},
                {"kty": "oct", "kid": "unsigned", "k": "AA", "alg": "none"},
                {**SigningKey("RS256").jwk(), "alg": ["RS256"]},
                SigningKey("RS256").jwk(use="enc"),
                {k: v for k, v in SigningKey("RS256").jwk().items() if k != "kid"},
                rs512,
                "not a key",
            ]
        }
    ).encode()


BAD_DOCUMENTS = {
    "not JSON": (b"<html>502 Bad Gateway</html>", "not JSON"),
    "a JSON array": (b"[]", "not a JSON object"),
    "no keys array": (b'{"keys": "none"}', "no keys array"),
    "empty": (b'{"keys": []}', "none of its 0 keys"),
    "huge": (b'{"keys": [' + b" " * MAX_BYTES + b"]}", f"larger than {MAX_BYTES} bytes"),
    "unsupported keys": (_unusable_keys(), "none of its 9 keys has a kid and verifies RS256, ES256"),
}


@pytest.mark.parametrize("bad", BAD_DOCUMENTS)
def test_start_up_refuses_a_document_with_no_usable_key(serve: Serve, provider: JwksServer, bad: str) -> None:
    body, reason = BAD_DOCUMENTS[bad]
    provider.serve_body(body)
    with pytest.raises(
        KeysUnavailable, match=re.escape(f"jwt identity has no signing key: {provider.jwks_url}: {reason}")
    ):
        keyed(serve, provider)


@pytest.mark.parametrize("bad", BAD_DOCUMENTS)
def test_a_bad_document_later_keeps_the_last_keys(
    serve: Serve, provider: JwksServer, key: SigningKey, bad: str
) -> None:
    provider.publish(key)
    service = keyed(serve, provider, jwt_jwks_refresh_s=0.1)
    provider.serve_body(BAD_DOCUMENTS[bad][0])
    assert until(lambda: fetches(service, "scheduled", "invalid") >= 2, timeout=10)
    admitted(ask(service, key.token("kim")), "kim")
    assert metric(service, "authsvc_jwks_keys") == 1


def test_unusable_keys_beside_a_usable_one_are_skipped(
    serve: Serve, provider: JwksServer, key: SigningKey
) -> None:
    document = json.loads(_unusable_keys())
    provider.serve_body(json.dumps({"keys": [*document["keys"], key.jwk()]}).encode())
    service = keyed(serve, provider)
    admitted(ask(service, key.token("leo")), "leo")
    refused(ask(service, key.token("leo", kid="hmac")), 401, UNKNOWN)
    assert metric(service, "authsvc_jwks_keys") == 1

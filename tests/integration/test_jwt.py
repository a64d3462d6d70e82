"""jwt identity: the user is the verified `sub` of a token; everything else is 401."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import Authsvc, AuthsvcFactory, Client

HS_SECRET = "jwt-test-secret-of-enough-length-for-hs256"
AUDIENCE = "canwatch"


def token(sub: str = "alice", key: Any = HS_SECRET, alg: str = "HS256", **claims: Any) -> str:
    payload = {"sub": sub, "aud": AUDIENCE, "exp": int(time.time()) + 300, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=alg)


def unsigned(sub: str) -> str:
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': sub, 'aud': AUDIENCE, 'exp': 2**31})}."


@pytest.fixture
def hs_service(start_authsvc: AuthsvcFactory) -> Iterator[Authsvc]:
    yield start_authsvc(
        identity="jwt", jwt_secret=HS_SECRET, jwt_audience=AUDIENCE, admin_token="admin-token-for-tests"
    )


def api(client: Client, op: str, stream: str, tok: str | None, **headers: str) -> Any:
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    return client.http.patch(f"{client.base}/streams/{stream}/{op}", headers=headers, timeout=5)


def gate(client: Client, stream: str, tok: str | None = None, query: str = "", **headers: str) -> Any:
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    headers["X-Original-URI"] = f"/watch/{stream}/a.ts{query}"
    return client.http.get(f"{client.base}/_authz", headers=headers, timeout=5)


def test_the_tokens_subject_is_the_user_and_x_userid_is_ignored(hs_service: Authsvc) -> None:
    client = Client(hs_service.url)
    stream = client.new_stream()
    r = api(client, "activate", stream, token("alice"), **{"x-userid": "mallory"})
    assert r.status_code == 200 and r.json()["userId"] == "alice"
    ok = gate(client, stream, token("alice"))
    assert ok.status_code == 204 and ok.headers["x-userid"] == "alice"
    refused = gate(client, stream, token("mallory"), **{"x-userid": "alice"})
    assert refused.status_code == 403 and refused.headers["x-error-status"] == "403"


def test_a_token_in_a_cookie_or_query_alone_is_no_identity_here(hs_service: Authsvc) -> None:
    # nginx moves a player's cw_token cookie or ?token= into Authorization for the gate.
    client = Client(hs_service.url)
    stream = client.new_stream()
    api(client, "activate", stream, token("bob"))
    assert gate(client, stream, cookie=f"cw_token={token('bob')}").status_code == 401
    assert gate(client, stream, query=f"?token={token('bob')}").status_code == 401
    assert gate(client, stream, token("bob")).status_code == 204


@pytest.mark.parametrize(
    "bad",
    ["missing", "garbage", "forged", "expired", "wrong_audience", "no_audience", "alg_none", "no_exp",
     "no_sub", "bad_sub", "bad_limit_claim"],
)  # fmt: skip
def test_bad_tokens_are_401(hs_service: Authsvc, bad: str) -> None:
    tokens = {
        "missing": None,
        "garbage": "not.a.token",
        "forged": token(key="another-secret-of-enough-length-for-hs256"),
        "expired": token(exp=int(time.time()) - 10),
        "wrong_audience": token(aud="someone-else"),
        "no_audience": token(aud=None),
        "alg_none": unsigned("alice"),
        "no_exp": token(exp=None),
        "no_sub": token(sub=None),  # type: ignore[arg-type]
        "bad_sub": token(sub="a b"),
        "bad_limit_claim": token(max_streams="many"),
    }
    client = Client(hs_service.url)
    stream = client.new_stream()
    r = api(client, "activate", stream, tokens[bad])
    assert r.status_code == 401 and r.json()["status"] == "ko", r.text
    g = gate(client, stream, tokens[bad])
    assert (g.status_code, g.headers["x-error-status"]) == (401, "401")


def test_the_tokens_limit_claim_sets_the_users_limit(hs_service: Authsvc) -> None:
    client = Client(hs_service.url)
    tok = token("carol", max_streams=1)
    assert api(client, "activate", client.new_stream(), tok).status_code == 200
    r = api(client, "activate", client.new_stream(), tok)
    assert r.status_code == 403 and r.json()["limit"] == 1
    # An operator's limit wins over the token's.
    client.http.put(f"{client.base}/admin/users/carol/limit", json={"limit": 2},
                    headers={"Authorization": "Bearer admin-token-for-tests"}, timeout=5)  # fmt: skip
    assert api(client, "activate", client.new_stream(), tok).status_code == 200


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_public_key_tokens_and_no_algorithm_confusion(start_authsvc: AuthsvcFactory, alg: str) -> None:
    private = (
        rsa.generate_private_key(65537, 2048) if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    client = Client(
        start_authsvc(identity="jwt", jwt_public_key=public_pem.decode(), jwt_audience=AUDIENCE).url
    )
    stream = client.new_stream()
    assert api(client, "activate", stream, token("dave", key=private, alg=alg)).status_code == 200
    # The public key used as an HMAC secret: the classic confusion attack.
    confused = _hs256_with_raw_key(public_pem)
    assert api(client, "activate", stream, confused).status_code == 401
    assert gate(client, stream, confused).status_code == 401


def _hs256_with_raw_key(key: bytes) -> str:
    """HS256 over a PEM key by hand: PyJWT itself refuses to sign with a PEM as secret."""
    import hashlib
    import hmac

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "dave", "aud": AUDIENCE, "exp": int(time.time()) + 300}).encode())
    signature = b64(hmac.new(key, header + b"." + body, hashlib.sha256).digest())
    return (header + b"." + body + b"." + signature).decode()


def test_logs_carry_no_token_or_secret(hs_service: Authsvc) -> None:
    client = Client(hs_service.url)
    stream = client.new_stream()
    tok = token("erin")
    api(client, "activate", stream, tok)
    client.http.patch(f"{client.base}/streams/{stream}/heartbeat?token={tok}", timeout=5)
    gate(client, stream, tok, query=f"?token={tok}")
    api(client, "activate", stream, token(key="forged-secret-of-enough-length-for-hs256"))
    for admin_auth in ("Bearer wrong", "Bearer admin-token-for-tests"):
        client.http.get(
            f"{client.base}/admin/users/erin/streams", headers={"Authorization": admin_auth}, timeout=5
        )
    hs_service.stop()  # flushes the buffered log
    logs = hs_service.logs()
    assert '"route": "/streams/{stream_id}/heartbeat"' in logs  # the access log did run
    for secret in (tok, tok.split(".")[2], HS_SECRET, "admin-token-for-tests"):
        assert secret not in logs


def test_the_api_does_not_take_the_token_from_a_cookie(hs_service: Authsvc) -> None:
    client = Client(hs_service.url)
    r = client.http.patch(
        f"{client.base}/streams/{client.new_stream()}/activate",
        headers={"cookie": f"cw_token={token()}"},
        timeout=5,
    )
    assert r.status_code == 401  # a cookie alone could be sent by another site


def test_identity_provider_subjects(hs_service: Authsvc) -> None:
    client = Client(hs_service.url)
    r = api(client, "activate", client.new_stream(), token("auth0|5f7c8ec7c33c6c004bbafe82"))
    assert r.status_code == 200 and r.json()["userId"] == "auth0|5f7c8ec7c33c6c004bbafe82"

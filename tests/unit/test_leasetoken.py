from __future__ import annotations

import time

import pytest

from authsvc.leasetoken import TokenIssuer, lease_token_key, mac


def test_a_token_is_valid_for_its_identity_and_stream_only() -> None:
    issuer = TokenIssuer("s" * 32, 5)
    token = issuer.issue("user", "stream")
    assert issuer.valid(token, "user", "stream")
    assert not issuer.valid(token, "other", "stream")
    assert not issuer.valid(token, "user", "other")
    assert not TokenIssuer("t" * 32, 5).valid(token, "user", "stream")  # another secret
    expiry, mac = token.split(".")
    assert int(expiry) <= time.time() + 5
    assert not issuer.valid(f"{int(expiry) + 1}.{mac}", "user", "stream")


def test_a_jwt_mode_token_names_its_subject_under_the_mac() -> None:
    issuer = TokenIssuer("s" * 32, 5)
    token = issuer.issue("eyJ.a.b", "stream", "viewer-1")
    expiry, mac, subject = token.split(".", 2)
    assert subject == "viewer-1" and issuer.valid(token, "eyJ.a.b", "stream", "viewer-1")
    assert not issuer.valid(f"{expiry}.{mac}.viewer-2", "eyJ.a.b", "stream", "viewer-2")  # renamed
    assert not issuer.valid(f"{expiry}.{mac}", "eyJ.a.b", "stream")  # the name dropped
    assert not issuer.valid(token, "eyJ.a.b", "stream")  # a name where none is expected
    assert not issuer.valid(token, "eyJ.a.c", "stream", "viewer-1")  # another JWT
    # A subject with dots is still the one after the MAC.
    dotted = issuer.issue("eyJ.a.b", "stream", "a.b@c.d")
    assert issuer.valid(dotted, "eyJ.a.b", "stream", "a.b@c.d")


def test_a_token_claiming_more_than_one_lifetime_is_not_valid() -> None:
    issuer, key = TokenIssuer("s" * 32, 5), lease_token_key("s" * 32)
    far = int(time.time()) + 60
    assert not issuer.valid(f"{far}.{mac(key, 'user', 'stream', far)}", "user", "stream")


def test_an_expired_token_is_not_valid() -> None:
    issuer = TokenIssuer("s" * 32, -1)
    assert not issuer.valid(issuer.issue("user", "stream"), "user", "stream")


def test_nginx_gets_a_key_derived_from_the_secret_never_the_secret() -> None:
    key = lease_token_key("s" * 32)
    assert len(key) == 64 and "s" * 32 not in key
    assert lease_token_key("s" * 32) == key != lease_token_key("t" * 32)


def test_the_cli_prints_the_key_nginx_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from authsvc import cli

    monkeypatch.setenv("AUTHSVC_SECRET", "s" * 32)
    assert cli.main(["lease-token-key"]) == 0
    assert capsys.readouterr().out.strip() == lease_token_key("s" * 32)

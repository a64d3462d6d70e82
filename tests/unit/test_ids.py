from __future__ import annotations

import pytest

from authsvc.ids import IdCodec, Kind


def test_issued_ids_verify_under_the_same_secret_only() -> None:
    a, b = IdCodec("one"), IdCodec("two")
    user = a.issue("user")
    assert a.issued("user", user)
    assert IdCodec("one").issued("user", user)  # another replica with the same secret
    assert not b.issued("user", user)


def test_kinds_do_not_mix() -> None:
    codec = IdCodec("s")
    assert not codec.issued("stream", codec.issue("user"))
    assert not codec.issued("user", codec.issue("stream"))


def test_tampering_is_detected() -> None:
    codec = IdCodec("s")
    user = codec.issue("user")
    flipped = user[:-1] + ("A" if user[-1] != "A" else "B")
    assert not codec.issued("user", flipped)
    assert not codec.issued("user", user[:-1])
    assert not codec.issued("user", user + "A")
    assert not codec.issued("user", "é" * 32)


def test_ids_are_url_and_key_safe_and_unique() -> None:
    codec = IdCodec("s")
    ids = {codec.issue("stream") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(IdCodec.well_formed(i) and len(i) == 32 for i in ids)


@pytest.mark.parametrize("value", ["", " ", "a b", "../x", ".hidden", "{x}", "a/b", "a\x00", "é", "a" * 129])
def test_malformed(value: str) -> None:
    assert not IdCodec.well_formed(value)


@pytest.mark.parametrize("value", ["a", "user-42", "alice@example.com", "tenant:7:user_9", "a" * 128])
def test_well_formed_platform_ids(value: str) -> None:
    assert IdCodec.well_formed(value)
    assert IdCodec("s", check_mac=False).issued("user", value)


def test_identity_provider_subjects_are_well_formed() -> None:
    for sub in ("auth0|5f7c8ec7c33c6c004bbafe82", "google-oauth2|1234", "a+b@example.com"):
        assert IdCodec.well_formed(sub)


def test_checking_macs_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="AUTHSVC_SECRET"):
        IdCodec(None)
    assert IdCodec(None, check_mac=False).issued("user", "any-id")


class CountingCodec(IdCodec):
    """Counts the MACs it computes: a check the cache answers computes none."""

    _CACHE_SIZE = 1_000

    def __init__(self) -> None:
        super().__init__("s")
        self.macs = 0

    def _mac(self, kind: Kind, body: str) -> str:
        self.macs += 1
        return super()._mac(kind, body)


def test_ids_checked_in_turn_beyond_one_generation_still_hit_the_cache() -> None:
    codec = CountingCodec()
    users = [codec.issue("user") for _ in range(1_500)]  # 1.5 generations, in rotation
    for _ in range(3):
        for user in users:
            assert codec.issued("user", user)
    codec.macs = 0
    for user in users:
        assert codec.issued("user", user)
    assert codec.macs < 0.6 * len(users)  # one generation cleared when full: every one
    # A forged id is never remembered, however often it comes.
    forged = users[0][:-1] + ("A" if users[0][-1] != "A" else "B")
    assert not any(codec.issued("user", forged) for _ in range(3))
    assert not codec.issued("stream", users[0])  # remembered per kind

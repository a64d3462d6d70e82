"""Issuing and verifying user and stream ids.

An issued id is 16 random characters followed by 16 characters of an HMAC-SHA256
over its kind and those random characters, under the service's secret. Whether an id
was issued here is therefore a local computation: no Redis lookup, nothing stored per
id, valid across Redis restarts and on every replica that shares the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Literal

Kind = Literal["user", "stream"]

# What any id must look like, issued here or not: safe in a URL path segment, an HTTP
# header, a log line and a Redis key (no braces, so the Cluster hash tag stays intact).
# `|` and `+` are in identity providers' subjects (auth0|5f7c..., a+b@example.com).
WELL_FORMED = re.compile(r"[A-Za-z0-9_@:|+-][A-Za-z0-9_.@:|+-]{0,127}")

_RANDOM_LEN = 16  # characters of base64url: 96 bits
_MAC_LEN = 16  # characters of base64url: 96 bits of the MAC


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class IdCodec:
    """Issues ids and tells whether an id is acceptable."""

    # Valid ids recur on every request of a session; remembering them skips the HMAC. Two
    # generations of up to this many each: when the newer is full it becomes the older (the
    # oldest one is dropped), and an id found in the older moves back to the newer. So ids
    # checked in turn, as playing users' are, keep hitting beyond one generation's size: of
    # 100,000 in rotation about 60% hit, where one set cleared when full hit none.
    _CACHE_SIZE = 65_536

    def __init__(self, secret: str | None, check_mac: bool = True) -> None:
        """Raises ValueError when ids must carry a MAC and there is no secret to make it
        with (``authsvc serve`` makes one for the process when AUTHSVC_SECRET is unset)."""
        if check_mac and not secret:
            raise ValueError("AUTHSVC_SECRET must be set when AUTHSVC_ID_CHECK=mac")
        self._key = (secret or "").encode("utf-8")
        self._check_mac = check_mac
        self._known: set[tuple[Kind, str]] = set()
        self._older: set[tuple[Kind, str]] = set()

    def _mac(self, kind: Kind, body: str) -> str:
        digest = hmac.new(self._key, f"{kind}:{body}".encode("ascii"), hashlib.sha256).digest()
        return _b64(digest[:12])

    def issue(self, kind: Kind) -> str:
        """A new id of this kind, accepted by every codec that shares the secret."""
        body = _b64(secrets.token_bytes(12))
        return body + self._mac(kind, body)

    @staticmethod
    def well_formed(value: str) -> bool:
        """True when the value may be used as an id at all (else the caller answers 400)."""
        return WELL_FORMED.fullmatch(value) is not None

    def issued(self, kind: Kind, value: str) -> bool:
        """True when a well-formed id is acceptable: issued here, or any id without MAC check."""
        key = (kind, value)
        if not self._check_mac or key in self._known:
            return True
        if key not in self._older:
            if len(value) != _RANDOM_LEN + _MAC_LEN:
                return False
            body, mac = value[:_RANDOM_LEN], value[_RANDOM_LEN:]
            try:
                expected = self._mac(kind, body)
            except UnicodeEncodeError:
                return False
            if not hmac.compare_digest(mac, expected):
                return False
        if len(self._known) >= self._CACHE_SIZE:
            self._older, self._known = self._known, set()
        self._known.add(key)
        return True

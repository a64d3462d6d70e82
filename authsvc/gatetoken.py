"""Lease tokens: the gate's "allowed", signed, for nginx to check by itself (njs).

With ``AUTHSVC_GATE_TOKEN_S`` on, an allowed gate decision carries a token that nginx
hands the player as a cookie scoped to the stream's URLs. Until it expires, nginx serves
that player's fetches of that stream after checking the token in-process
(authsvc/stack/nginx/gate.js), without asking authsvc: a deactivate, an eviction or a
kick is felt within the token's life. Anything else falls through to the exact decision.

A token is ``<expiry, unix seconds>.<MAC>``: HMAC-SHA256, base64url without padding, over
``identity \\n stream \\n expiry``, where the identity is what nginx derived (the user id
in header mode, the bearer token in jwt mode). Its key is derived from AUTHSVC_SECRET,
so every authsvc replica and every nginx node that shares the secret agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

_CONTEXT = b"canwatch gate token v1"


def gate_key(secret: str) -> str:
    """The token key for a secret (hex): nginx gets this, never the secret itself."""
    return hmac.new(secret.encode("utf-8"), _CONTEXT, hashlib.sha256).hexdigest()


def mac(key: str, identity: str, stream_id: str, expiry: int) -> str:
    message = f"{identity}\n{stream_id}\n{expiry}".encode()
    digest = hmac.new(key.encode("ascii"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class TokenIssuer:
    """Issues tokens valid for ``lifetime_s`` from now."""

    def __init__(self, secret: str, lifetime_s: float) -> None:
        self._key = gate_key(secret)
        self._lifetime_s = lifetime_s

    def issue(self, identity: str, stream_id: str) -> str:
        expiry = int(time.time() + self._lifetime_s)
        return f"{expiry}.{mac(self._key, identity, stream_id, expiry)}"

    def valid(self, token: str, identity: str, stream_id: str) -> bool:
        """What nginx checks (for tests and tools; the gate itself never reads tokens)."""
        expiry_text, _, given = token.partition(".")
        if not expiry_text.isdigit() or int(expiry_text) < time.time():
            return False
        return hmac.compare_digest(given, mac(self._key, identity, stream_id, int(expiry_text)))

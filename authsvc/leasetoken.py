"""Lease tokens: the gate's "allowed", signed, for nginx to check by itself (Lua).

With ``AUTHSVC_LEASE_TOKEN_S`` on, an allowed gate decision carries a token that nginx
hands the player as a cookie scoped to the stream's URLs. Until it expires, nginx serves
that player's fetches of that stream after checking the token in-process
(nginx/lease_token.lua), without asking authsvc: a deactivate, an eviction or a
kick is felt within the token's life. Anything else falls through to the exact decision.

A token is ``<expiry, unix seconds>.<MAC>``: HMAC-SHA256, base64url without padding, over
``identity \\n stream \\n expiry``, where the identity is what nginx derived (the user id
in header mode, the bearer token in jwt mode). Its key is derived from AUTHSVC_SECRET,
so every authsvc replica and every nginx node that shares the secret agree.

In jwt mode the token also names the user, for nginx's access log on the fetches it
serves alone (nginx does not verify, or decode, JWTs): ``<expiry>.<MAC>.<subject>``, the
MAC then over ``identity \\n stream \\n subject \\n expiry``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

# The key derivation's label, unchanged since the first release: a new label would make
# every edge refuse the tokens of replicas not yet upgraded.
_CONTEXT = b"canwatch gate token v1"


def lease_token_key(secret: str) -> str:
    """The token key for a secret (hex): nginx gets this, never the secret itself."""
    return hmac.new(secret.encode("utf-8"), _CONTEXT, hashlib.sha256).hexdigest()


def mac(key: str, identity: str, stream_id: str, expiry: int, subject: str | None = None) -> str:
    named = f"{identity}\n{stream_id}" if subject is None else f"{identity}\n{stream_id}\n{subject}"
    message = f"{named}\n{expiry}".encode()
    digest = hmac.new(key.encode("ascii"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class TokenIssuer:
    """Issues tokens valid for ``lifetime_s`` from now."""

    def __init__(self, secret: str, lifetime_s: float) -> None:
        self._key = lease_token_key(secret)
        self._lifetime_s = lifetime_s

    def issue(self, identity: str, stream_id: str, subject: str | None = None) -> str:
        """A token for this identity and stream; in jwt mode ``subject`` is the verified sub."""
        expiry = int(time.time() + self._lifetime_s)
        token = f"{expiry}.{mac(self._key, identity, stream_id, expiry, subject)}"
        return token if subject is None else f"{token}.{subject}"

    def valid(self, token: str, identity: str, stream_id: str, subject: str | None = None) -> bool:
        """What nginx checks (for tests and tools; the gate itself never reads tokens): the
        shape (in jwt mode ending in ``subject``), an expiry neither past nor beyond one
        lifetime from now, and the MAC."""
        parts = token.split(".", 2)
        if len(parts) != (2 if subject is None else 3) or (subject is not None and parts[2] != subject):
            return False
        expiry_text, given = parts[0], parts[1]
        if len(expiry_text) != 10 or not expiry_text.isdigit():
            return False
        expiry, now = int(expiry_text), time.time()
        if not now <= expiry <= now + self._lifetime_s + 1:
            return False
        return hmac.compare_digest(given, mac(self._key, identity, stream_id, expiry, subject))

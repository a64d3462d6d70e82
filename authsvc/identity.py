"""Who is asking: the user id from the x-userid header, or from a verified JWT.

In ``header`` mode the edge (nginx) is trusted to have put the user's id in
``x-userid``. In ``jwt`` mode the client's own token is verified here (PyJWT:
signature, expiry, audience, issuer) and ``x-userid`` from the client is ignored. The key
is one shared secret, one PEM public key, or the identity provider's key named by the
token's ``kid`` (authsvc/jwks.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from .ids import IdCodec
from .jwks import ProviderKeys
from .settings import Settings

USER_HEADER = "x-userid"
DEVICE_HEADER = "x-device-id"
# A device id: an app's own (a UUID, an install id) or the edge's cookie (32 hex digits).
DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class Identity:
    user_id: str
    claim_limit: int | None = None  # the user's own limit, carried by their token


class IdentityError(Exception):
    """No usable identity: ``status`` is 400 (malformed), 401 (missing or not verified) or 404."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class IdentityResolver:
    """Turns the identity headers nginx sends (``x-userid`` or ``Authorization``) into an
    Identity; nginx alone reads cookies and query parameters."""

    def __init__(self, settings: Settings, codec: IdCodec, provider: ProviderKeys | None = None) -> None:
        self._settings = settings
        self._codec = codec
        self._provider = provider
        self._jwt_mode = settings.identity == "jwt"
        self._key = settings.jwt_secret or settings.jwt_public_key or ""
        self._algorithms = list(settings.effective_jwt_algorithms)

    def resolve(self, headers: Mapping[str, str], gate: bool = False) -> Identity:
        """The caller's identity, from ``x-userid`` (header mode) or the bearer token (jwt
        mode) only. Players that cannot set headers put it in a cookie or a query
        parameter: nginx alone turns those into these headers, so that the identity it
        binds a lease token to is the one decided for. Raises IdentityError (401 for a
        missing identity at the gate, 400 on the API, as the seed did)."""
        if self._jwt_mode:
            return self._from_token(headers)
        user_id = headers.get(USER_HEADER)
        if not user_id:
            raise IdentityError(401 if gate else 400, "Missing x-userid header.")
        if not self._codec.well_formed(user_id):
            raise IdentityError(400, "Malformed x-userid header.")
        if not self._codec.issued("user", user_id):
            raise IdentityError(404, "Invalid Data.")
        return Identity(user_id)

    def _from_token(self, headers: Mapping[str, str]) -> Identity:
        token = None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        if not token:
            raise IdentityError(401, "Missing token.")
        key: str | jwt.PyJWK = self._key
        try:
            if self._provider is not None:
                key = self._provider_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_s,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise IdentityError(401, f"Invalid token: {exc}.") from None
        user_id = claims["sub"]
        if not isinstance(user_id, str) or not self._codec.well_formed(user_id):
            raise IdentityError(401, "Invalid token: malformed sub claim.")
        limit = claims.get(self._settings.jwt_limit_claim)
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 10_000
        ):
            raise IdentityError(401, "Invalid token: malformed limit claim.")
        return Identity(user_id, limit)

    def _provider_key(self, token: str) -> jwt.PyJWK:
        """The provider's key named by the token's kid; an unknown kid is refused at once
        (and asks for a fetch in the background): this never waits on the provider."""
        assert self._provider is not None
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str):
            raise IdentityError(401, "Invalid token: no kid in its header.")
        key = self._provider.key(kid)
        if key is None:
            raise IdentityError(401, "Invalid token: unknown signing key.")
        return key


def device_of(headers: Mapping[str, str]) -> str | None:
    """The device the request comes from (``x-device-id``), or None when it names none (an
    empty header is none). It only groups the user's own leases, and identifies no one.
    Raises IdentityError (400) when it is malformed."""
    device = headers.get(DEVICE_HEADER)
    if not device:
        return None
    if DEVICE_ID.fullmatch(device) is None:
        raise IdentityError(400, "Malformed x-device-id header: 1 to 64 of A-Z a-z 0-9 _ . : -")
    return device

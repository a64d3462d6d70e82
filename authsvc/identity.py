"""Who is asking: the user id from the x-userid header, or from a verified JWT.

In ``header`` mode the edge (nginx) is trusted to have put the user's id in
``x-userid``. In ``jwt`` mode the client's own token is verified here (PyJWT:
signature, expiry, audience, issuer) and ``x-userid`` from the client is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from .ids import IdCodec
from .settings import Settings

USER_HEADER = "x-userid"
USER_COOKIE = "cw_userid"
USER_QUERY = "userid"
TOKEN_COOKIE = "cw_token"
TOKEN_QUERY = "token"


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
    """Turns a request's headers (and, for the gate, the original query) into an Identity."""

    def __init__(self, settings: Settings, codec: IdCodec) -> None:
        self._settings = settings
        self._codec = codec
        self._jwt_mode = settings.identity == "jwt"
        self._key = settings.jwt_secret or settings.jwt_public_key or ""
        self._algorithms = list(settings.effective_jwt_algorithms)

    def resolve(self, headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> Identity:
        """The caller's identity. ``query`` is only given for the gate, whose client's
        query string arrives inside X-Original-URI; only the gate also accepts the identity
        from a cookie or a query parameter. Raises IdentityError."""
        if self._jwt_mode:
            return self._from_token(headers, query)
        user_id = headers.get(USER_HEADER)
        if user_id is None and query is not None:
            user_id = _cookie(headers, USER_COOKIE) or query.get(USER_QUERY)
        if user_id is None or user_id == "":
            raise IdentityError(400 if query is None else 401, "Missing x-userid header.")
        if not self._codec.well_formed(user_id):
            raise IdentityError(400, "Malformed x-userid header.")
        if not self._codec.issued("user", user_id):
            raise IdentityError(404, "Invalid Data.")
        return Identity(user_id)

    def _from_token(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> Identity:
        token = None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        # A cookie or a query parameter only for the gate: a segment fetch changes nothing,
        # while an API call carried by a cookie alone could be forged by another site.
        if not token and query is not None:
            token = _cookie(headers, TOKEN_COOKIE) or query.get(TOKEN_QUERY)
        if not token:
            raise IdentityError(401, "Missing token.")
        try:
            claims = jwt.decode(
                token,
                self._key,
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


def _cookie(headers: Mapping[str, str], name: str) -> str | None:
    """The first cookie of that name, split as nginx's $cookie_ does: by hand, because
    http.cookies stops at the first cookie it dislikes and loses the ones after it."""
    raw = headers.get("cookie")
    if not raw or name not in raw:
        return None
    for pair in raw.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None

"""Settings: the one place that reads the environment.

Every setting is an ``AUTHSVC_*`` variable, read once at start-up into a frozen
object. A bad value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from .redis_url import parse as parse_redis_url

PREFIX = "AUTHSVC_"

Policy = Literal["reject", "evict_oldest"]
IdCheck = Literal["mac", "none"]
IdentityMode = Literal["header", "jwt"]

T = TypeVar("T")

# Redis checks a blocked WAIT's timeout at its `hz` (10 a second by default): measured, WAIT
# 1 100 without a replica answers after 110-200 ms.
WAIT_LATE_MS = 100


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return value

    return parse


def _text(raw: str) -> str:
    return raw


def _optional_text(raw: str) -> str | None:
    return raw or None


def _key_material(raw: str) -> str | None:
    # Short keys can be found offline from any issued id or token.
    if raw and len(raw) < 16:
        raise ValueError("must be at least 16 characters")
    return raw or None


def _ttl(raw: str) -> float:
    value = _float_range(0, 86_400 * 365)(raw)
    if 0 < value < 0.1:
        raise ValueError("must be 0 (never expires) or at least 0.1")
    return value


def _pem(raw: str) -> str | None:
    # Environment files often carry a PEM on one line with literal \n.
    return raw.replace("\\n", "\n").strip() or None


def _key_prefix(raw: str) -> str:
    # Braces would break the Cluster hash tag that keeps a user's keys in one slot.
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{0,64}", raw):
        raise ValueError("must be at most 64 of A-Z a-z 0-9 _ . : -")
    return raw


def _algorithms(raw: str) -> tuple[str, ...]:
    allowed = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
    algs = tuple(a.strip().upper() for a in raw.split(",") if a.strip())
    bad = [a for a in algs if a not in allowed]
    if bad or not algs:
        raise ValueError("must be a comma-separated list of " + ", ".join(sorted(allowed)))
    return algs


def _setting(default: T, parse: Callable[[str], Any], doc: str, secret: bool = False, env: str = "") -> T:
    metadata = {"parse": parse, "doc": doc, "secret": secret, "env": env}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Everything authsvc can be told, validated; build it directly in tests."""

    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0",
        _text,
        "Redis to keep leases in: redis://, redis+cluster://, redis+sentinel:// (may hold a password)",
        secret=True,
    )
    redis_timeout_ms: int = _setting(
        250, _int_range(10, 60_000), "timeout of every Redis call; past it the answer is 503"
    )
    redis_wait_replicas: int = _setting(
        0,
        _int_range(0, 16),
        "replicas that must acknowledge an activation before it is answered (WAIT); 0 = off",
    )
    redis_wait_ms: int = _setting(
        50,
        _int_range(1, 60_000),
        "how long an activation waits for them; at most AUTHSVC_REDIS_TIMEOUT_MS - 100",
    )
    key_prefix: str = _setting("canwatch:", _key_prefix, "prefix of every Redis key")
    max_streams: int = _setting(3, _int_range(0, 10_000), "streams a user may watch at once")
    lease_ttl_s: float = _setting(120.0, _ttl, "lease lifetime since its last refresh; 0 = never expires")
    limit_policy: Policy = _setting(
        "reject", _choice("reject", "evict_oldest"), "at the limit: refuse, or end the lease idle longest"
    )
    enforce: bool = _setting(True, _bool, "false = shadow mode: decide, log and count, never deny")
    secret: str | None = _setting(
        None, _key_material, "key of the MAC in issued ids; set the same on every replica", secret=True
    )
    id_check: IdCheck = _setting(
        "mac", _choice("mac", "none"), "mac = accept only ids issued here; none = any well-formed id"
    )
    admin_token: str | None = _setting(
        None, _key_material, "bearer token of /admin/; unset = admin routes answer 404", secret=True
    )
    identity: IdentityMode = _setting(
        "header", _choice("header", "jwt"), "header = trust x-userid; jwt = verify a JWT"
    )
    jwt_secret: str | None = _setting(None, _key_material, "HS256 key for jwt identity", secret=True)
    jwt_public_key: str | None = _setting(None, _pem, "PEM public key (RS256/ES256) for jwt identity")
    jwt_algorithms: tuple[str, ...] = _setting(
        (), _algorithms, "accepted algorithms; default HS256 with a secret, RS256,ES256 with a key"
    )
    jwt_audience: str | None = _setting(None, _optional_text, "required aud claim, if set")
    jwt_issuer: str | None = _setting(None, _optional_text, "required iss claim, if set")
    jwt_limit_claim: str = _setting(
        "max_streams", _text, "claim carrying the user's own stream limit, if present"
    )
    jwt_leeway_s: int = _setting(0, _int_range(0, 3600), "clock skew allowed on exp/nbf")
    fail_open: bool = _setting(False, _bool, "let gated fetches through when Redis or authsvc cannot answer")
    gate_token_s: float = _setting(
        0.0, _float_range(0, 3600), "lease tokens that nginx checks itself (njs), seconds; 0 = off"
    )
    log_level: str = _setting("info", _choice("debug", "info", "warning", "error"), "level of the JSON logs")
    access_log: bool = _setting(
        False, _bool, "one JSON line per request (nginx writes the access log of record)"
    )
    drain_s: float = _setting(
        0.0, _float_range(0, 3600), "on SIGTERM: /readyz 503 and keep serving this long, then stop"
    )
    # prometheus-client's own switch; `authsvc serve --workers N` sets it for N > 1.
    multiproc_dir: str | None = _setting(
        None, _optional_text, "metrics folder shared by workers", env="PROMETHEUS_MULTIPROC_DIR"
    )

    def __post_init__(self) -> None:
        if self.identity == "jwt" and not (self.jwt_secret or self.jwt_public_key):
            raise SettingsError(
                "AUTHSVC_IDENTITY=jwt needs AUTHSVC_JWT_SECRET (HS256) or AUTHSVC_JWT_PUBLIC_KEY"
            )
        if self.jwt_secret and self.jwt_public_key:
            raise SettingsError("set only one of AUTHSVC_JWT_SECRET and AUTHSVC_JWT_PUBLIC_KEY")
        # A key of one family must never verify tokens of the other (algorithm confusion).
        hmac_algs = [a for a in self.jwt_algorithms if a.startswith("HS")]
        if self.jwt_secret and len(hmac_algs) != len(self.jwt_algorithms):
            raise SettingsError("AUTHSVC_JWT_ALGORITHMS: only HS* algorithms go with AUTHSVC_JWT_SECRET")
        if self.jwt_public_key and hmac_algs:
            raise SettingsError("AUTHSVC_JWT_ALGORITHMS: HS* algorithms cannot go with a public key")
        try:
            parse_redis_url(self.redis_url)
        except ValueError as exc:
            raise SettingsError(f"AUTHSVC_REDIS_URL: {exc}") from None
        if self.redis_wait_replicas and self.redis_wait_ms > self.redis_timeout_ms - WAIT_LATE_MS:
            # Otherwise the batch's timeout fires first whenever a replica is slow or down:
            # every activation a 503, where a short WAIT should answer it.
            raise SettingsError(
                f"AUTHSVC_REDIS_WAIT_MS ({self.redis_wait_ms}) must be below AUTHSVC_REDIS_TIMEOUT_MS "
                f"({self.redis_timeout_ms}) by at least {WAIT_LATE_MS}"
            )
        if self.jwt_public_key:
            _check_public_key(self.jwt_public_key, self.effective_jwt_algorithms)
        if self.gate_token_s and self.lease_ttl_s and self.gate_token_s > self.lease_ttl_s / 2:
            # A player served by its token alone refreshes nothing: the lease must outlive
            # at least two tokens, or it would expire under a playing client.
            raise SettingsError(
                f"AUTHSVC_GATE_TOKEN_S ({self.gate_token_s:g}) must be at most half of "
                f"AUTHSVC_LEASE_TTL_S ({self.lease_ttl_s:g})"
            )
        if self.gate_token_s and not self.secret:
            raise SettingsError(
                "AUTHSVC_GATE_TOKEN_S needs AUTHSVC_SECRET: nginx checks tokens with a key made from it"
            )

    @property
    def lease_ttl_ms(self) -> int:
        return int(self.lease_ttl_s * 1000)

    @property
    def redis_timeout_s(self) -> float:
        return self.redis_timeout_ms / 1000

    @property
    def effective_jwt_algorithms(self) -> tuple[str, ...]:
        if self.jwt_algorithms:
            return self.jwt_algorithms
        return ("HS256",) if self.jwt_secret else ("RS256", "ES256")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``AUTHSVC_*`` variable; raise SettingsError naming the first bad one."""
        return cls(**_read(cls, os.environ if env is None else env))


def _check_public_key(pem: str, algorithms: tuple[str, ...]) -> None:
    """Stop start-up on a key that could never verify a token, rather than answer 401."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise SettingsError("AUTHSVC_JWT_PUBLIC_KEY: not a PEM public key") from None
    usable = [
        a
        for a in algorithms
        if (a.startswith(("RS", "PS")) and isinstance(key, rsa.RSAPublicKey))
        or (a.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey))
    ]
    if not usable:
        raise SettingsError(
            f"AUTHSVC_JWT_PUBLIC_KEY: a {type(key).__name__} cannot verify {', '.join(algorithms)}"
        )


def unknown_variables(env: Mapping[str, str] | None = None, *also: type) -> list[str]:
    """``AUTHSVC_*`` variables that neither Settings nor the ``also`` settings classes read:
    most likely typos."""
    source = os.environ if env is None else env
    known = {f.metadata["env"] or PREFIX + f.name.upper() for cls in (Settings, *also) for f in fields(cls)}
    return sorted(name for name in source if name.startswith(PREFIX) and name not in known)


def _read(cls: type, source: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(cls):
        name = f.metadata["env"] or PREFIX + f.name.upper()
        raw = source.get(name)
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            shown = "<hidden>" if f.metadata["secret"] else repr(raw[:60])
            raise SettingsError(f"{name}: {exc} (got {shown})") from None
    return values


def documented(*also: type) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting of Settings and the ``also`` classes,
    for the README and `authsvc settings`."""
    rows = []
    for f in (f for cls in (Settings, *also) for f in fields(cls)):
        default = f.default
        shown = (
            "unset"
            if default in (None, ())
            else str(default).lower()
            if isinstance(default, bool)
            else str(default)
        )
        rows.append((f.metadata["env"] or PREFIX + f.name.upper(), shown, f.metadata["doc"]))
    return rows

"""Settings: the one place that reads the environment.

Every setting of authsvc is an ``AUTHSVC_*`` variable, read once at start-up into a frozen
object. A bad value stops start-up with a message naming the variable. The edge's renderer
(``CANWATCH_EDGE_*``) and the local stack (``CANWATCH_STACK_*``) read theirs through the
same public machinery: ``setting``, the parsers, ``read_env`` and ``documented``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar, Literal, TypeVar

from .redis_url import parse as parse_redis_url

PREFIX = "AUTHSVC_"

Policy = Literal["reject", "evict_oldest"]
IdCheck = Literal["mac", "none"]
IdentityMode = Literal["header", "jwt"]
LimitBy = Literal["stream", "device"]

T = TypeVar("T")

# Redis checks a blocked WAIT's timeout at its `hz` (10 a second by default): measured, WAIT
# 1 100 without a replica answers after 110-200 ms.
WAIT_LATE_MS = 100


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return value

    return parse


def text(raw: str) -> str:
    return raw


def optional_text(raw: str) -> str | None:
    return raw or None


def _key_material(raw: str) -> str | None:
    # Short keys can be found offline from any issued id or token.
    if raw and len(raw) < 16:
        raise ValueError("must be at least 16 characters")
    return raw or None


def _ttl(raw: str) -> float:
    value = float_range(0, 86_400 * 365)(raw)
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


def _http_url(raw: str) -> str | None:
    from urllib.parse import urlsplit

    if not raw:
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return raw.strip()


def setting(default: T, parse: Callable[[str], Any], doc: str, secret: bool = False, env: str = "") -> T:
    metadata = {"parse": parse, "doc": doc, "secret": secret, "env": env}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Everything authsvc can be told, validated; build it directly in tests."""

    PREFIX: ClassVar[str] = PREFIX
    READER: ClassVar[str] = "authsvc"

    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        text,
        "Redis to keep leases in: redis://, redis+cluster://, redis+sentinel:// (may hold a password)",
        secret=True,
    )
    redis_timeout_ms: int = setting(
        250, int_range(10, 60_000), "timeout of every Redis call; past it the answer is 503"
    )
    redis_wait_replicas: int = setting(
        0,
        int_range(0, 16),
        "replicas that must acknowledge an activation before it is answered (WAIT); 0 = off",
    )
    redis_wait_ms: int = setting(
        50,
        int_range(1, 60_000),
        "how long an activation waits for them; at most AUTHSVC_REDIS_TIMEOUT_MS - 100",
    )
    key_prefix: str = setting("canwatch:", _key_prefix, "prefix of every Redis key")
    max_streams: int = setting(3, int_range(0, 10_000), "streams a user may watch at once")
    lease_ttl_s: float = setting(120.0, _ttl, "lease lifetime since its last refresh; 0 = never expires")
    limit_policy: Policy = setting(
        "reject", choice("reject", "evict_oldest"), "at the limit: refuse, or end the lease idle longest"
    )
    enforce: bool = setting(True, boolean, "false = shadow mode: decide, log and count, never deny")
    device_replaces: bool = setting(
        True,
        boolean,
        "a device (x-device-id) that activates a stream ends its other leases: one stream per device",
    )
    limit_by: LimitBy = setting(
        "stream",
        choice("stream", "device"),
        "what AUTHSVC_MAX_STREAMS counts: leases, or distinct devices (a lease without one is its own)",
    )
    secret: str | None = setting(
        None, _key_material, "key of the MAC in issued ids; set the same on every replica", secret=True
    )
    id_check: IdCheck = setting(
        "mac", choice("mac", "none"), "mac = accept only ids issued here; none = any well-formed id"
    )
    admin_token: str | None = setting(
        None, _key_material, "bearer token of /admin/; unset = admin routes answer 404", secret=True
    )
    identity: IdentityMode = setting(
        "header", choice("header", "jwt"), "header = trust x-userid; jwt = verify a JWT"
    )
    jwt_secret: str | None = setting(None, _key_material, "HS256 key for jwt identity", secret=True)
    jwt_public_key: str | None = setting(None, _pem, "PEM public key (RS256/ES256) for jwt identity")
    jwt_algorithms: tuple[str, ...] = setting(
        (), _algorithms, "accepted algorithms; default HS256 with a secret, RS256,ES256 with a key"
    )
    jwt_jwks_url: str | None = setting(
        None, _http_url, "the identity provider's JWKS (its signing keys, chosen by kid) for jwt identity"
    )
    jwt_discovery: bool = setting(
        False,
        boolean,
        "true = find the JWKS in AUTHSVC_JWT_ISSUER's /.well-known/openid-configuration (jwks_uri)",
    )
    jwt_jwks_refresh_s: float = setting(
        300.0, float_range(0.1, 86_400), "the JWKS is fetched again in the background this often, seconds"
    )
    jwt_jwks_refetch_min_s: float = setting(
        10.0,
        float_range(0.1, 3600),
        "at least this long between two fetches caused by tokens naming an unknown kid, seconds",
    )
    jwt_jwks_timeout_s: float = setting(
        5.0, float_range(0.1, 60), "bound of one fetch of the JWKS or of the discovery document, seconds"
    )
    jwt_audience: str | None = setting(None, optional_text, "required aud claim, if set")
    jwt_issuer: str | None = setting(None, optional_text, "required iss claim, if set")
    jwt_limit_claim: str = setting(
        "max_streams", text, "claim carrying the user's own stream limit, if present"
    )
    jwt_leeway_s: int = setting(0, int_range(0, 3600), "clock skew allowed on exp/nbf")
    fail_open: bool = setting(False, boolean, "let gated fetches through when Redis or authsvc cannot answer")
    lease_token_s: float = setting(
        0.0, float_range(0, 3600), "life of the lease tokens that the edge checks itself, seconds; 0 = off"
    )
    log_level: str = setting("info", choice("debug", "info", "warning", "error"), "level of the JSON logs")
    access_log: bool = setting(
        False, boolean, "one JSON line per request (nginx writes the access log of record)"
    )
    drain_s: float = setting(
        0.0, float_range(0, 3600), "on SIGTERM: /readyz 503 and keep serving this long, then stop"
    )
    # prometheus-client's own switch; `authsvc serve --workers N` sets it for N > 1.
    multiproc_dir: str | None = setting(
        None, optional_text, "metrics folder shared by workers", env="PROMETHEUS_MULTIPROC_DIR"
    )

    def __post_init__(self) -> None:
        sources = [
            name
            for name, value in (
                ("AUTHSVC_JWT_SECRET", self.jwt_secret),
                ("AUTHSVC_JWT_PUBLIC_KEY", self.jwt_public_key),
                ("AUTHSVC_JWT_JWKS_URL", self.jwt_jwks_url),
                ("AUTHSVC_JWT_DISCOVERY", self.jwt_discovery),
            )
            if value
        ]
        if self.identity == "jwt" and not sources:
            raise SettingsError(
                "AUTHSVC_IDENTITY=jwt needs AUTHSVC_JWT_SECRET (HS256), AUTHSVC_JWT_PUBLIC_KEY, "
                "AUTHSVC_JWT_JWKS_URL or AUTHSVC_JWT_DISCOVERY=true"
            )
        if len(sources) > 1:
            raise SettingsError("set only one of " + " and ".join(sources))
        if self.jwt_discovery and not self.jwt_issuer:
            raise SettingsError("AUTHSVC_JWT_DISCOVERY=true needs AUTHSVC_JWT_ISSUER")
        # A key of one family must never verify tokens of the other (algorithm confusion).
        hmac_algs = [a for a in self.jwt_algorithms if a.startswith("HS")]
        if self.jwt_secret and len(hmac_algs) != len(self.jwt_algorithms):
            raise SettingsError("AUTHSVC_JWT_ALGORITHMS: only HS* algorithms go with AUTHSVC_JWT_SECRET")
        if (self.jwt_public_key or self.jwt_keys_from_provider) and hmac_algs:
            # A provider publishes public keys; an HMAC key in a JWKS would be a shared
            # secret fetched over the network.
            raise SettingsError("AUTHSVC_JWT_ALGORITHMS: HS* algorithms cannot go with public keys")
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
        if self.lease_token_s and self.lease_ttl_s and self.lease_token_s > self.lease_ttl_s / 2:
            # A player served by its token alone refreshes nothing: the lease must outlive
            # at least two tokens, or it would expire under a playing client.
            raise SettingsError(
                f"AUTHSVC_LEASE_TOKEN_S ({self.lease_token_s:g}) must be at most half of "
                f"AUTHSVC_LEASE_TTL_S ({self.lease_ttl_s:g})"
            )
        if self.lease_token_s and not self.secret:
            raise SettingsError(
                "AUTHSVC_LEASE_TOKEN_S needs AUTHSVC_SECRET: nginx checks tokens with a key made from it"
            )

    @property
    def lease_ttl_ms(self) -> int:
        return int(self.lease_ttl_s * 1000)

    @property
    def redis_timeout_s(self) -> float:
        return self.redis_timeout_ms / 1000

    @property
    def jwt_keys_from_provider(self) -> bool:
        """Whether jwt identity takes its keys from a JWKS (a URL, or found by discovery)."""
        return bool(self.jwt_jwks_url or self.jwt_discovery)

    @property
    def effective_jwt_algorithms(self) -> tuple[str, ...]:
        if self.jwt_algorithms:
            return self.jwt_algorithms
        return ("HS256",) if self.jwt_secret else ("RS256", "ES256")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``AUTHSVC_*`` variable; raise SettingsError naming the first bad one."""
        return cls(**read_env(cls, os.environ if env is None else env))


def _public(name: str) -> Any:
    """A field of PublicSettings: Settings' own, default, parser and meaning."""
    (original,) = (f for f in fields(Settings) if f.name == name)
    return field(default=original.default, metadata=original.metadata)


@dataclass(frozen=True)
class PublicSettings:
    """What authsvc's settings tell the parts around it (the edge): read from the same
    AUTHSVC_* variables, holding no secret and needing none to be read."""

    PREFIX: ClassVar[str] = PREFIX
    READER: ClassVar[str] = "authsvc"

    identity: IdentityMode = _public("identity")
    fail_open: bool = _public("fail_open")
    lease_token_s: float = _public("lease_token_s")
    redis_timeout_ms: int = _public("redis_timeout_ms")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PublicSettings:
        """Read them; raise SettingsError naming a bad value (or an old name still set)."""
        return cls(**read_env(cls, os.environ if env is None else env))

    @classmethod
    def of(cls, settings: Settings) -> PublicSettings:
        """The public part of a service's settings."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


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


# Variables that an earlier release read, and the one that replaced each: a renamed
# setting still set would otherwise be ignored, and the part would run on a default.
RENAMED = {
    "AUTHSVC_GATE_TOKEN_S": "AUTHSVC_LEASE_TOKEN_S",
    "AUTHSVC_PORT": "CANWATCH_EDGE_PORT",
    "AUTHSVC_HOST": "CANWATCH_EDGE_HOST",
    "AUTHSVC_TLS_PORT": "CANWATCH_EDGE_TLS_PORT",
    "AUTHSVC_TLS_CERT": "CANWATCH_EDGE_TLS_CERT",
    "AUTHSVC_TLS_KEY": "CANWATCH_EDGE_TLS_KEY",
    "AUTHSVC_ORIGIN_URL": "CANWATCH_EDGE_ORIGIN_URL",
    "AUTHSVC_API_UPSTREAMS": "CANWATCH_EDGE_AUTHSVC",
    "AUTHSVC_API_HOST": "CANWATCH_EDGE_AUTHSVC",
    "AUTHSVC_EXPOSE_INTERNAL": "CANWATCH_EDGE_EXPOSE_INTERNAL",
    "AUTHSVC_API_RATE": "CANWATCH_EDGE_API_RATE",
    "AUTHSVC_NGINX_WORKERS": "CANWATCH_EDGE_WORKERS",
    "AUTHSVC_CORS_ORIGINS": "CANWATCH_EDGE_CORS_ORIGINS",
    "AUTHSVC_TRUSTED_PROXIES": "CANWATCH_EDGE_TRUSTED_PROXIES",
    "AUTHSVC_RESOLVER": "CANWATCH_EDGE_RESOLVER",
    "AUTHSVC_NGINX_USER": "CANWATCH_EDGE_USER",
    "AUTHSVC_NGINX_LOGS": "CANWATCH_EDGE_LOGS",
    "CANWATCH_GATE_KEY": "CANWATCH_EDGE_LEASE_TOKEN_KEY",
    "AUTHSVC_STACK_REDIS": "CANWATCH_STACK_REDIS",
    "AUTHSVC_REDIS_PORT": "CANWATCH_STACK_REDIS_PORT",
    "AUTHSVC_API_PORT": "CANWATCH_STACK_API_PORT",
    "AUTHSVC_ORIGIN_PORT": "CANWATCH_STACK_ORIGIN_PORT",
    "AUTHSVC_API_REPLICAS": "CANWATCH_STACK_API_REPLICAS",
    "AUTHSVC_WORKERS": "CANWATCH_STACK_WORKERS",
}


# Settings that are gone, and why: set, they stop start-up rather than be ignored.
RETIRED = {
    "AUTHSVC_GATE_CACHE_S": "the micro-cache of gate decisions is retired; lease tokens "
    "(AUTHSVC_LEASE_TOKEN_S) do its job, and measured faster with real players",
}


def env_name(cls: Any, f: Field[Any]) -> str:
    """The variable a settings field is read from: its class's prefix and its name."""
    return str(f.metadata["env"] or cls.PREFIX + f.name.upper())


def unknown_variables(cls: Any, env: Mapping[str, str] | None = None) -> list[str]:
    """Variables of ``cls``'s prefix that it does not read: most likely typos."""
    source = os.environ if env is None else env
    prefix: str = cls.PREFIX
    known = {env_name(cls, f) for f in fields(cls)} | set(RENAMED) | set(RETIRED)
    return sorted(name for name in source if name.startswith(prefix) and name not in known)


def read_env(cls: Any, source: Mapping[str, str]) -> dict[str, Any]:
    """The fields of the settings class ``cls`` that ``source`` sets, parsed; SettingsError
    names the first bad variable, or an old name that is still set."""
    for old, new in RENAMED.items():
        if old in source:
            raise SettingsError(f"{old} was renamed {new}: set {new} instead")
    for old, why in RETIRED.items():
        # Under its old name, or under the name it would have had (the edge's prefix).
        for name in (old, old.replace("AUTHSVC_", "CANWATCH_EDGE_")):
            if name in source:
                raise SettingsError(f"{name}: {why}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        name = env_name(cls, f)
        raw = source.get(name)
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            shown = "<hidden>" if f.metadata["secret"] else repr(raw[:60])
            raise SettingsError(f"{name}: {exc} (got {shown})") from None
    return values


def documented(*classes: Any) -> list[tuple[str, str, str, str]]:
    """(variable, default, part that reads it, meaning) of every setting of ``classes``,
    for `authsvc settings` and the docs' settings page."""
    rows = []
    for cls in classes:
        for f in fields(cls):
            default = f.default
            if default in (None, (), ""):
                shown = "unset"
            elif isinstance(default, bool):
                shown = str(default).lower()
            elif isinstance(default, tuple):
                shown = ",".join(default)
            else:
                shown = str(default)
            rows.append((env_name(cls, f), shown, cls.READER, f.metadata["doc"]))
    return rows

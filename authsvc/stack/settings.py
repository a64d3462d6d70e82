"""Settings of the local stack (`make run`, the end-to-end tests, the benchmarks): ports and
switches of nginx, Redis and authsvc as the stack starts them. Read like the service's own
settings, through the same ``AUTHSVC_*`` machinery; the service never imports this."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..settings import (
    SettingsError,
    _bool,
    _choice,
    _float_range,
    _int_range,
    _optional_text,
    _read,
    _setting,
)


def _listen_address(raw: str) -> str:
    # Rendered into nginx's `listen`: an IPv4 address or a host name, nothing else.
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value):
        raise ValueError("must be an IPv4 address or a host name")
    return value


def _cors_origins(raw: str) -> str:
    # Rendered into an nginx map: each origin must be scheme://host[:port] exactly.
    origins = [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]
    if origins == ["*"]:
        return "*"
    if not origins or not all(re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", o) for o in origins):
        raise ValueError("must be * or a comma-separated list of origins like https://player.example.com")
    return ",".join(origins)


def _nginx_path(raw: str) -> str | None:
    # Rendered into nginx directives unquoted: an absolute path without spaces, quotes,
    # semicolons or braces.
    if not raw:
        return None
    if not re.fullmatch(r"/[A-Za-z0-9._/+@=-]*", raw):
        raise ValueError("must be an absolute path of letters, digits and ._/+@=-")
    return raw


def _networks(raw: str) -> str:
    # Rendered into set_real_ip_from and a geo block: each an address or a CIDR.
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if item:
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item[:50]!r} is not an IP address or CIDR") from None
    return ",".join(networks)


def _resolver(raw: str) -> str | None:
    # Rendered into nginx's `resolver`: addresses only (a name would need a resolver itself).
    addresses = [part.strip() for part in raw.split(",") if part.strip()]
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"{address[:50]!r} is not an IP address") from None
    return " ".join(addresses) or None


def _user(raw: str) -> str | None:
    if raw and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", raw):
        raise ValueError("must be a user name like nginx or www-data")
    return raw or None


@dataclass(frozen=True)
class StackSettings:
    """Ports and switches of the local stack that `make run` starts (nginx, Redis, authsvc)."""

    port: int = _setting(9004, _int_range(1, 65535), "public port of nginx")
    api_port: int = _setting(9005, _int_range(1, 65535), "port of authsvc behind nginx")
    api_host: str = _setting("127.0.0.1", _listen_address, "host of authsvc as nginx reaches it")
    redis_port: int = _setting(6390, _int_range(1, 65535), "port of the local redis-server")
    origin_port: int = _setting(9006, _int_range(1, 65535), "port of the demo stream origin")
    origin_url: str | None = _setting(
        None, _optional_text, "stream origin to gate (default: the demo origin)"
    )
    workers: int = _setting(1, _int_range(1, 64), "authsvc worker processes")
    gate_cache_s: float = _setting(
        0.0, _float_range(0, 60), "micro-cache of allowed gate decisions, seconds; 0 = off"
    )
    expose_internal: bool = _setting(False, _bool, "serve /metrics and /admin/ through nginx too")
    api_rate: int = _setting(200, _int_range(1, 1_000_000), "API requests per second per client IP")
    host: str = _setting("127.0.0.1", _listen_address, "address nginx listens on; 0.0.0.0 = every one")
    nginx_workers: int = _setting(0, _int_range(0, 64), "nginx worker processes; 0 = one per core")
    cors_origins: str = _setting(
        "*", _cors_origins, "pages that may call the API and streams (CORS): *, or origins with cookies"
    )
    tls_port: int = _setting(9443, _int_range(0, 65535), "HTTPS (and HTTP/2) port of nginx; 0 = no TLS")
    tls_cert: str | None = _setting(
        None, _nginx_path, "PEM certificate chain for TLS (default: one from a local CA in the run dir)"
    )
    tls_key: str | None = _setting(None, _nginx_path, "PEM private key of AUTHSVC_TLS_CERT")
    trusted_proxies: str = _setting(
        "", _networks, "CIDRs of load balancers whose X-Forwarded-For names the real client"
    )
    resolver: str | None = _setting(
        None, _resolver, "DNS servers nginx re-resolves authsvc's name with (compose: 127.0.0.11)"
    )
    nginx_user: str | None = _setting(None, _user, "user nginx's workers run as when started as root")
    nginx_logs: str = _setting(
        "files", _choice("files", "stdio"), "nginx logs: files in its prefix, or stdio"
    )

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("AUTHSVC_TLS_CERT and AUTHSVC_TLS_KEY must be set together")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        """Read the stack's ``AUTHSVC_*`` variables; raise SettingsError naming a bad one."""
        return cls(**_read(cls, os.environ if env is None else env))

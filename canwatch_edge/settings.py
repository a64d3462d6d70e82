"""Settings of the edge's renderer (``CANWATCH_EDGE_*``): where nginx listens, what it
gates and proxies to, and how. Read through the service's public settings machinery; the
edge reads nothing else of the service but its public ``Settings``."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from authsvc.settings import (
    SettingsError,
    boolean,
    choice,
    int_range,
    optional_text,
    read_env,
    setting,
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
            ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{address[:50]!r} is not an IPv4 address") from None
    return " ".join(addresses) or None


def _user(raw: str) -> str | None:
    # nginx's `user` takes a group after the user (by default a group of the user's name).
    if raw and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}( [a-z_][a-z0-9_-]{0,31})?", raw):
        raise ValueError("must be a user name like www-data, and a group after it if need be")
    return raw or None


def upstreams(raw: str) -> tuple[str, ...]:
    """A comma-separated list of host:port or unix:/path (authsvc beside nginx, `authsvc
    serve --uds`), as nginx's upstream block takes them."""
    entries = tuple(e.strip() for e in raw.split(",") if e.strip())
    if not entries:
        raise ValueError("must name at least one host:port")
    for entry in entries:
        if entry.startswith("unix:"):
            if not re.fullmatch(r"unix:/[A-Za-z0-9._/+@=-]*", entry):
                raise ValueError(
                    "a unix socket must be unix: and an absolute path of letters, digits and ._/+@=-"
                )
            continue
        host, _, port = entry.rpartition(":")
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                "must be a comma-separated list of host:port or unix:/path, like 10.0.0.5:9005,10.0.0.6:9005"
            )
    return entries


@dataclass(frozen=True)
class EdgeSettings:
    """Everything the edge's renderer can be told, validated; build it directly in tests."""

    PREFIX: ClassVar[str] = "CANWATCH_EDGE_"
    READER: ClassVar[str] = "edge"

    port: int = setting(9004, int_range(1, 65535), "public HTTP port of nginx")
    host: str = setting("127.0.0.1", _listen_address, "address nginx listens on; 0.0.0.0 = every one")
    tls_port: int = setting(9443, int_range(0, 65535), "HTTPS (and HTTP/2) port of nginx; 0 = no TLS")
    tls_cert: str | None = setting(
        None, _nginx_path, "PEM certificate chain for TLS (default: one from a local CA beside the config)"
    )
    tls_key: str | None = setting(None, _nginx_path, "PEM private key of CANWATCH_EDGE_TLS_CERT")
    origin_url: str | None = setting(
        None, optional_text, "stream origin to gate, http(s)://host[:port][/path] (default: the demo origin)"
    )
    authsvc: tuple[str, ...] = setting(
        ("127.0.0.1:9005",),
        upstreams,
        "host:port,... (or unix:/path) of the authsvc replicas nginx spreads over",
    )
    expose_internal: bool = setting(False, boolean, "serve /metrics and /admin/ through nginx too")
    api_rate: int = setting(200, int_range(1, 1_000_000), "API requests per second per client IP")
    workers: int = setting(0, int_range(0, 64), "nginx worker processes; 0 = one per core")
    cors_origins: str = setting(
        "*", _cors_origins, "pages that may call the API and streams (CORS): *, or origins with cookies"
    )
    trusted_proxies: str = setting(
        "", _networks, "CIDRs of load balancers whose X-Forwarded-For names the real client"
    )
    resolver: str | None = setting(
        None, _resolver, "DNS servers nginx re-resolves authsvc's name with (compose: 127.0.0.11)"
    )
    user: str | None = setting(None, _user, "user (and group) nginx's workers run as when started as root")
    logs: str = setting("files", choice("files", "stdio"), "nginx logs: files in its prefix, or stdio")
    lease_token_cache: int = setting(
        10_000,
        int_range(0, 10_000_000),
        "lease tokens each nginx worker remembers as checked, until they expire (twice this at "
        "most); 0 = every fetch checks its token",
    )
    nginx: str = setting(
        "debian",
        choice("debian", "openresty"),
        "the nginx that runs the edge: debian (its Lua module loaded with load_module) or "
        "openresty (built in; the compose and Kubernetes images)",
    )

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("CANWATCH_EDGE_TLS_CERT and CANWATCH_EDGE_TLS_KEY must be set together")
        if self.resolver is not None and any(a.startswith("unix:") for a in self.authsvc):
            raise SettingsError(
                "CANWATCH_EDGE_RESOLVER looks up a name: CANWATCH_EDGE_AUTHSVC must be host:port"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeSettings:
        """Read the ``CANWATCH_EDGE_*`` variables; raise SettingsError naming a bad one."""
        return cls(**read_env(cls, os.environ if env is None else env))

"""``AUTHSVC_REDIS_URL``: one Redis, a Redis Cluster or a Sentinel-managed primary.

- ``redis://``, ``rediss://``, ``unix://``: one Redis, as redis-py reads it.
- ``redis+cluster://[user:pass@]host:port[,host:port...]``: seed nodes of a Cluster; the
  rest of the topology is discovered from them and followed as it changes.
- ``redis+sentinel://[user:pass@]host:port[,host:port...]/<service>``: the sentinels and
  the name they monitor the primary under. The credentials are the data nodes'.
- ``rediss+cluster://``, ``rediss+sentinel://``: the same over TLS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

Mode = Literal["single", "cluster", "sentinel"]

_SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+")
_SERVICE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


@dataclass(frozen=True)
class RedisURL:
    """A parsed ``AUTHSVC_REDIS_URL``. ``url`` is the original, for the single mode,
    whose parsing is left to redis-py; ``hosts`` are the seeds or sentinels."""

    mode: Mode
    url: str
    tls: bool = False
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        # Never show the password, should the object land in a log or a traceback.
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"RedisURL(mode={self.mode!r}, tls={self.tls}, hosts={hosts!r}, service={self.service!r})"


def parse(url: str) -> RedisURL:
    """Parse and check a Redis URL; ValueError says what is wrong (never echoing it)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError("must start with " + ", ".join(f"{s}://" for s in _SCHEMES))
    mode, tls = _SCHEMES[scheme.lower()]
    if mode == "single":
        return RedisURL(mode, url, tls)
    if "?" in rest or "#" in rest:
        raise ValueError(f"a {scheme}:// URL takes no query or fragment")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # redis://secret@host is a password alone, as redis-py reads it
            username, password = None, unquote(user) or None
    hosts = tuple(_host_port(item) for item in hostlist.split(","))
    if mode == "cluster":
        if path not in ("", "0"):
            raise ValueError("a Cluster has only database 0: nothing may follow the hosts")
        return RedisURL(mode, url, tls, hosts, "", username, password)
    if not _SERVICE.fullmatch(path):
        raise ValueError(f"{scheme}:// needs the service name after the hosts: .../<service-name>")
    return RedisURL(mode, url, tls, hosts, path, username, password)


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if not colon or not _HOST.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("hosts must be host:port[,host:port...]")
    return host.strip("[]"), int(port)

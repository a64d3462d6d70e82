"""``AUTHSVC_REDIS_URL``: one Redis, a Redis Cluster or a Sentinel-managed primary.

- ``redis://``, ``rediss://``, ``unix://``: one Redis, as redis-py reads it, with only the
  query options that leave authsvc's timeouts and replies its own (``_SINGLE_OPTIONS``).
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
from urllib.parse import parse_qsl, unquote, urlsplit

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

# What a one-Redis URL's query may set. redis-py hands any other name to the connection
# as an argument, and a typo there failed every connection (every request a 503) instead
# of start-up; some would undo what authsvc relies on. Each name refused says why.
_SINGLE_OPTIONS = frozenset({"db", "client_name", "socket_keepalive", "username", "password"})
_TLS_OPTIONS = frozenset(
    {
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_ca_data",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
    }
)
_NUMBER = re.compile(r"[0-9]+")
_REFUSED = {
    **dict.fromkeys(
        (
            "socket_timeout",
            "socket_connect_timeout",
            "timeout",
            "retry_on_timeout",
            "retry_on_error",
            "health_check_interval",
            "max_connections",
            "socket_read_size",
        ),
        "authsvc sets it: AUTHSVC_REDIS_TIMEOUT_MS bounds every call, and no call is retried",
    ),
    **dict.fromkeys(
        ("decode_responses", "encoding", "encoding_errors", "protocol", "legacy_responses"),
        "authsvc writes UTF-8 and reads Redis's replies as bytes, in RESP2",
    ),
}


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
        _check_single(url, scheme.lower(), tls)
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


def _check_single(url: str, scheme: str, tls: bool) -> None:
    parts = urlsplit(url)
    if parts.fragment:
        raise ValueError(f"a {scheme}:// URL takes no fragment")
    database = parts.path.strip("/") if scheme != "unix" else ""
    if database and not _NUMBER.fullmatch(database):
        # redis-py would quietly use database 0.
        raise ValueError(f"the database after the host must be a number: {scheme}://host:port/<db>")
    seen = {"db"} if database else set()
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _SINGLE_OPTIONS | _TLS_OPTIONS | _REFUSED.keys():
            # Not echoed: an unknown name may be a piece of a password (an unencoded `?`).
            taken = ", ".join(sorted(_SINGLE_OPTIONS | (_TLS_OPTIONS if tls else set())))
            raise ValueError(f"the query holds an option authsvc does not take (it takes {taken})")
        if name in seen:
            also = " (or with the database after the host)" if name == "db" else ""
            raise ValueError(f"?{name}= is given twice{also}")
        seen.add(name)
        if name in _REFUSED:
            raise ValueError(f"?{name}= is not taken: {_REFUSED[name]}")
        if name in _TLS_OPTIONS and not tls:
            raise ValueError(f"?{name}= is an option of rediss:// (TLS) only")
        if name == "db" and not _NUMBER.fullmatch(value):
            raise ValueError("?db= must be a number")
        if name == "ssl_cert_reqs" and value not in ("none", "optional", "required"):
            raise ValueError("?ssl_cert_reqs= must be none, optional or required")


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if not colon or not _HOST.fullmatch(host) or not _NUMBER.fullmatch(port) or not 0 < int(port) < 65536:
        raise ValueError("hosts must be host:port[,host:port...]")
    return host.strip("[]"), int(port)

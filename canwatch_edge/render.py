"""Rendering the nginx edge from the templates in ``nginx/`` at the top of the repository
(shipped in the wheel as the package data ``canwatch_edge.nginx``), and the demo origin's files.

The templates are real nginx configuration with ``{{name}}`` placeholders for ports,
paths and switches. Switches that change whole blocks pick one of two files (for
example ``identity-header.conf`` or ``identity-jwt.conf``), copied beside the result
under the name the main file includes (``identity.conf``), so every rendered file is
plain nginx configuration that a platform can read and copy.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from urllib.parse import urlsplit

from authsvc.settings import PublicSettings, SettingsError

from . import demo
from .settings import EdgeSettings


def _templates() -> Traversable:
    """The templates: package data in a wheel; in a source tree (an editable install too)
    the repository's own ``nginx/``, which setuptools maps only when it builds a wheel."""
    try:
        return resources.files("canwatch_edge.nginx")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "nginx"


TEMPLATES = _templates()
MAIN = "canwatch.conf"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

# Files copied as they are (after substitution), whatever the switches.
COMMON = (
    "authsvc-proxy.conf",
    "origin-proxy.conf",
    "answer-headers.conf",
    "cors-preflight.conf",
    "errors.conf",
    "error-pages.conf",
    "follow-cookie.conf",
    "device.conf",
    "identity-follow.conf",
    "player.conf",
    "server.conf",
    "hygiene.conf",
    "realip.conf",
    "gate-checks.conf",
    "gate-origin.conf",
    "api-proxy.conf",
    "lease_token.lua",
    "lease_token_valid.lua",
)
# Debian's OpenResty core (libnginx-mod-http-ndk, libnginx-mod-http-lua): the lease tokens'
# check inside nginx. The Lua module needs the development kit loaded first.
LUA_MODULES = (
    "/usr/lib/nginx/modules/ndk_http_module.so",
    "/usr/lib/nginx/modules/ngx_http_lua_module.so",
)
# How nginx gets the lease tokens' key (never the secret itself): in its environment.
LEASE_TOKEN_KEY_ENV = "CANWATCH_EDGE_LEASE_TOKEN_KEY"
PLAYER = resources.files(__package__).joinpath("player")  # the page's static files
PAGE_TYPES = (".html", ".js", ".css")

# What the identity is called in each mode: the query parameter and the cookie that carry
# it (the parameter is also what a query must not carry toward the origin), the variable
# nginx derived it into, and the characters it may hold.
IDENTITY_FORMS = {
    "header": {
        "identity_param": "userid",
        "identity_cookie": "cw_userid",
        "identity_used": "$cw_user",
        "identity_chars": "A-Za-z0-9._~:@%-",
    },
    "jwt": {
        "identity_param": "token",
        "identity_cookie": "cw_token",
        "identity_used": "$cw_token",
        "identity_chars": "A-Za-z0-9._-",
    },
}

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's; ca-certificates installs it
# How much longer than authsvc's Redis timeout nginx waits for authsvc's answer.
AUTHSVC_MARGIN_MS = 500


@dataclass(frozen=True)
class EdgeConfig:
    """What the edge is rendered from: the service's public settings, the edge's own, and
    where this rendering goes. Everything else is read from the two settings objects."""

    settings: PublicSettings
    edge: EdgeSettings
    prefix: Path  # nginx's own directory: config, pid, logs, temp files
    demo_root: Path | None = None  # serve the demo origin from here (no origin URL set)
    demo_port: int = 9006
    # (certificate, key) to use when the edge's settings name none (a local CA's).
    tls: tuple[str, str] | None = None
    ungated: bool = False  # the benchmark's baseline location /open/
    # Where nginx finds the files copied beside the configuration (the Lua check) when it
    # runs them from elsewhere (a Kubernetes ConfigMap); default the prefix.
    conf_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.edge.tls_port and self.tls_files is None:
            raise SettingsError(
                "CANWATCH_EDGE_TLS_PORT needs a certificate: "
                "set CANWATCH_EDGE_TLS_CERT and CANWATCH_EDGE_TLS_KEY"
            )
        _origin(self.origin_url)  # SettingsError on a URL nginx could not be given

    @property
    def origin_url(self) -> str:
        """The origin the gate proxies to: the edge's, else the demo origin."""
        return self.edge.origin_url or f"http://127.0.0.1:{self.demo_port}"

    @property
    def serves_demo(self) -> bool:
        return self.edge.origin_url is None and self.demo_root is not None

    @property
    def tls_files(self) -> tuple[str, str] | None:
        if self.edge.tls_cert and self.edge.tls_key:
            return self.edge.tls_cert, self.edge.tls_key
        return self.tls


def _origin(url: str) -> tuple[str, str, str, str]:
    """(scheme, host:port for the upstream, Host header, path prefix) of the origin URL."""
    parts = urlsplit(url)
    bad = SettingsError(f"CANWATCH_EDGE_ORIGIN_URL: must be http(s)://host[:port][/path] (got {url[:60]!r})")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise bad
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise bad from None
    host = parts.hostname
    path = parts.path.rstrip("/")
    # Rendered into nginx directives: no quotes, spaces, semicolons or braces.
    if not re.fullmatch(r"[A-Za-z0-9.-]+", host) or not re.fullmatch(r"[A-Za-z0-9._~/-]*", path):
        raise bad
    default_port = port == (443 if parts.scheme == "https" else 80)
    host_header = host if default_port else f"{host}:{port}"
    return parts.scheme, f"{host}:{port}", host_header, path


def _api_servers(config: EdgeConfig) -> str:
    """The ``server`` lines of the authsvc upstream, one per replica."""
    upstreams = config.edge.authsvc
    # max_fails=1 fail_timeout=2s: a replica that refused a connection is left out for
    # 2 s, then tried again by one request (a restarted replica is back that soon).
    return "\n".join(f"        server {u} max_fails=1 fail_timeout=2s;" for u in upstreams)


def _cors_origins_re(origins: str) -> str:
    """The regex of the listed CORS origins ($cw_cors_origin); one that matches nothing
    with ``*``, whose cors-any.conf reads no map."""
    if origins == "*":
        return "(?!)"
    return "|".join(re.escape(origin) for origin in origins.split(","))


def spelled(word: str) -> str:
    """A case-insensitive regex for ``word`` with any letter percent-encoded, as a query
    can carry it (nginx does not decode the query string)."""
    return "".join(f"(?:{c}|%{ord(c):02x})" for c in word)


def identity_like(names: tuple[str, ...], jwt_shaped: bool) -> str:
    """The regex (for ``~*``) of what must not reach the origin: ``name=`` for each
    identity parameter name, and with ``jwt_shaped`` the start of any JWT (``eyJ``, a JSON
    object's ``{"`` in base64url), case-sensitive."""
    parts = [spelled(name) + "(?:=|%3d)" for name in names]
    if jwt_shaped:
        parts.append("(?-i:(?:e|%65)(?:y|%79)(?:J|%4[aA]))")
    return "(?:" + "|".join(parts) + ")"


def tls_hosts(host: str) -> tuple[str, ...]:
    """The names a local certificate is made for: loopback, and the listen address when
    it is a particular one."""
    hosts = ("localhost", "127.0.0.1", "::1")
    return hosts if host in ("0.0.0.0", "", *hosts) else (*hosts, host)


def _parts(config: EdgeConfig, https_origin: bool) -> tuple[str, ...]:
    """The optional parts this edge has."""
    tokens = bool(config.settings.lease_token_s)
    wanted = {
        "part-main-user.conf": _nginx_user(config) is not None,
        "part-main-lua.conf": tokens and config.edge.nginx == "debian",
        "part-main-lease-token.conf": tokens,
        "part-http-lease-token.conf": tokens,
        "part-http-resolver.conf": config.edge.resolver is not None,
        "part-http-tls.conf": bool(config.edge.tls_port),
        "part-server-lease-token.conf": tokens,
        "part-server-ungated.conf": config.ungated,
        "part-origin-tls.conf": https_origin,
    }
    return tuple(name for name, on in wanted.items() if on)


def _nginx_user(config: EdgeConfig) -> str | None:
    """The workers' user: the one set, else root when started as root (as `nobody` they
    could not read a private directory nor write the prefix), else none applies."""
    if config.edge.user:
        return config.edge.user
    return "root" if os.geteuid() == 0 else None


def _values(config: EdgeConfig) -> dict[str, str]:
    scheme, server, host_header, path = _origin(config.origin_url)
    networks = [n for n in config.edge.trusted_proxies.split(",") if n]
    stdio = config.edge.logs == "stdio"
    return {
        "prefix": str(config.prefix),
        # The lease-token check's Lua files are copied beside the configuration.
        "lua_dir": str(config.conf_dir or config.prefix),
        # A little over authsvc's slowest answer: its Redis timeout, and room for a busy
        # event loop.
        "authsvc_timeout": f"{config.settings.redis_timeout_ms + AUTHSVC_MARGIN_MS}ms",
        "nginx_user": _nginx_user(config) or "",
        "lua_ndk_module": LUA_MODULES[0],
        "lua_module": LUA_MODULES[1],
        "ca_bundle": CA_BUNDLE,
        "lease_token_s": str(max(1, math.ceil(config.settings.lease_token_s)))
        if config.settings.lease_token_s
        else "0",
        "lease_token_jwt": "true" if config.settings.identity == "jwt" else "false",
        "lease_token_cache": str(config.edge.lease_token_cache),
        "worker_processes": str(config.edge.workers or "auto"),
        "host": config.edge.host,
        "port": str(config.edge.port),
        "api_servers": _api_servers(config),
        "origin_port": str(config.demo_port),
        "origin_root": str(config.demo_root if config.serves_demo else ""),
        "origin_scheme": scheme,
        "origin_server": server,
        "origin_host": host_header,
        "origin_host_name": host_header.split(":")[0],
        "origin_path": path,
        "api_rate": str(config.edge.api_rate),
        "api_burst": str(config.edge.api_rate),
        "cors_origins_re": _cors_origins_re(config.edge.cors_origins),
        "gate_unreachable": "@gate_fail_open" if config.settings.fail_open else "/_errors/gate-unreachable",
        "identity": config.settings.identity,
        **IDENTITY_FORMS[config.settings.identity],
        "tls_port": str(config.edge.tls_port),
        "tls_cert": (config.tls_files or ("", ""))[0],
        "tls_key": (config.tls_files or ("", ""))[1],
        "set_real_ip_from": "\n".join(f"set_real_ip_from {n};" for n in networks)
        or "# (CANWATCH_EDGE_TRUSTED_PROXIES is empty: every client's own address is used)",
        "trusted_geo": "\n".join(f"    {n} 1;" for n in networks),
        "resolver": config.edge.resolver or "",
        "authsvc_address": config.edge.authsvc[0],
        # Through a variable when authsvc's name is looked up again (part-http-resolver.conf).
        "authsvc_pass": "http://$cw_authsvc_address" if config.edge.resolver else "http://canwatch_authsvc",
        "error_log": "stderr" if stdio else f"{config.prefix}/error.log",
        "access_log": "/dev/stdout" if stdio else f"{config.prefix}/access.log",
        "identity_like": identity_like(
            (IDENTITY_FORMS[config.settings.identity]["identity_param"],), config.settings.identity == "jwt"
        ),
        "any_identity_like": identity_like(("userid", "token"), jwt_shaped=True),
    }


def substitute(text: str, values: dict[str, str], name: str = "template") -> str:
    """Replace every ``{{key}}``; an unknown key is an error, not an empty string."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"{name}: no value for {{{{{key}}}}}")
        return values[key]

    return PLACEHOLDER.sub(one, text)


def render(config: EdgeConfig, templates: Traversable = TEMPLATES) -> Path:
    """Write the edge's configuration under ``config.prefix``; returns the main file.

    Also creates the directories nginx writes to (logs, temp files), so that
    nothing outside the prefix is touched.
    """
    values = _values(config)
    https_origin = urlsplit(config.origin_url).scheme == "https"
    chosen = {
        "identity.conf": f"identity-{config.settings.identity}.conf",
        "internal.conf": "internal-exposed.conf" if config.edge.expose_internal else "internal-hidden.conf",
        "origin.conf": "origin-demo.conf" if config.serves_demo else "origin-external.conf",
        "cors.conf": "cors-any.conf" if config.edge.cors_origins == "*" else "cors-listed.conf",
        "gate.conf": "gate-lease-token.conf" if config.settings.lease_token_s else "gate-authsvc.conf",
        "nginx.conf": MAIN,
    }
    # With lease tokens, @gate_authsvc includes authsvc's decision under its own name.
    decision = ("gate-authsvc.conf",) if config.settings.lease_token_s else ()
    files = {**{name: name for name in (*COMMON, *decision, *_parts(config, https_origin))}, **chosen}
    config.prefix.mkdir(parents=True, exist_ok=True)
    (config.prefix / "tmp").mkdir(exist_ok=True)
    # Rendered again into the same prefix (a reload): a part switched off must go, or its
    # pattern would still include it.
    for stale in config.prefix.glob("part-*.conf"):
        stale.unlink()
    for target, source in files.items():
        text = templates.joinpath(source).read_text(encoding="utf-8")
        (config.prefix / target).write_text(substitute(text, values, source))
    _copy_page(PLAYER, config.prefix / "player")
    return config.prefix / "nginx.conf"


def _copy_page(source: Traversable, target: Path, vendored: bool = False) -> None:
    """The player page's own files, and under vendor/ the web players as vendored (each
    with its licence, and vendor.json)."""
    target.mkdir(exist_ok=True)
    for entry in source.iterdir():
        if entry.is_dir() and entry.name != "__pycache__":
            _copy_page(entry, target / entry.name, vendored=True)
        elif entry.is_file() and (vendored or entry.name.endswith(PAGE_TYPES)):
            (target / entry.name).write_bytes(entry.read_bytes())


def command(binary: str, prefix: Path, *extra: str) -> list[str]:
    """The nginx command line for a rendered prefix (``-e``: not even start-up errors go
    to the compiled-in log path)."""
    conf = prefix / "nginx.conf"
    return [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log"), *extra]


def check(binary: str, prefix: Path) -> None:
    """``nginx -t`` on the rendered configuration; raises RuntimeError with nginx's words."""
    result = subprocess.run(command(binary, prefix, "-t", "-q"), capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{result.stderr.strip()}")


def write_demo_origin(root: Path) -> Path:
    """Put the demo HLS stream (real H.264 video, see ``demo.py``) under ``root/demo``;
    returns the playlist."""
    return demo.install(root)

"""Rendering the nginx edge from the templates in ``authsvc/stack/nginx/`` (package data,
also reachable as ``nginx/`` at the top of the repository), and the demo origin's files.

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

from ..settings import IdentityMode, Settings, SettingsError
from .settings import StackSettings

TEMPLATES = resources.files(__package__).joinpath("nginx")
MAIN = "canwatch.conf"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

# Files copied as they are (after substitution), whatever the switches.
COMMON = (
    "authsvc-proxy.conf",
    "origin-proxy.conf",
    "cors.conf",
    "cors-preflight.conf",
    "errors.conf",
    "ungated.conf",
)

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's; ca-certificates installs it
SEGMENT_COUNT = 5
SEGMENT_SECONDS = 4
TS_PACKET = 188
SEGMENT_PACKETS = 545  # 102,460 bytes: a segment of about 100 KB


@dataclass(frozen=True)
class EdgeConfig:
    """Everything the nginx edge is rendered from."""

    prefix: Path  # nginx's own directory: config, pid, logs, temp files, cache
    port: int
    api_port: int
    origin_url: str  # scheme://host[:port][/path] the gate proxies to
    demo_root: Path | None = None  # serve the demo origin from here on origin_port
    origin_port: int = 9006
    host: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    # host:port of every authsvc replica; empty = api_host:api_port alone.
    api_upstreams: tuple[str, ...] = ()
    identity: IdentityMode = "header"
    gate_cache_s: float = 0.0
    fail_open: bool = False
    expose_internal: bool = False
    api_rate: int = 200
    cors_origins: str = "*"
    worker_processes: int = 0  # 0 = one per core
    ungated: bool = False  # the benchmark's baseline location /open/

    @classmethod
    def from_settings(
        cls, settings: Settings, stack: StackSettings, prefix: Path, demo_root: Path | None
    ) -> EdgeConfig:
        """The edge for these settings; the demo origin is served when no origin URL is set."""
        demo = stack.origin_url is None
        return cls(
            prefix=prefix,
            port=stack.port,
            api_port=stack.api_port,
            origin_url=stack.origin_url or f"http://127.0.0.1:{stack.origin_port}",
            demo_root=demo_root if demo else None,
            origin_port=stack.origin_port,
            host=stack.host,
            api_host=stack.api_host,
            api_upstreams=stack.upstreams,
            identity=settings.identity,
            gate_cache_s=stack.gate_cache_s,
            fail_open=settings.fail_open,
            expose_internal=stack.expose_internal,
            api_rate=stack.api_rate,
            cors_origins=stack.cors_origins,
            worker_processes=stack.nginx_workers,
        )


def _origin(url: str) -> tuple[str, str, str, str]:
    """(scheme, host:port for the upstream, Host header, path prefix) of the origin URL."""
    parts = urlsplit(url)
    bad = SettingsError(f"AUTHSVC_ORIGIN_URL: must be http(s)://host[:port][/path] (got {url[:60]!r})")
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


def _origin_tls(scheme: str) -> str:
    if scheme != "https":
        return "# (the origin is plain HTTP: no certificate to verify)"
    # nginx does not verify an upstream's certificate unless told to.
    return (
        "# Verify the origin's certificate against the system's CAs (nginx does not by default).\n"
        f"proxy_ssl_verify on;\nproxy_ssl_verify_depth 4;\nproxy_ssl_trusted_certificate {CA_BUNDLE};"
    )


def _api_servers(config: EdgeConfig) -> str:
    """The ``server`` lines of the authsvc upstream, one per replica."""
    upstreams = config.api_upstreams or (f"{config.api_host}:{config.api_port}",)
    # max_fails=1 fail_timeout=2s: a replica that refused a connection is left out for
    # 2 s, then tried again by one request (a restarted replica is back that soon).
    return "\n".join(f"        server {u} max_fails=1 fail_timeout=2s;" for u in upstreams)


def _cors_maps(origins: str) -> tuple[str, str]:
    """Entries of the $cw_cors_origin and $cw_cors_credentials maps."""
    pad = " " * 8
    if origins == "*":
        # Any page, but never with credentials: "*" and cookies do not go together.
        return f'{pad}default "*";', ""
    entries = [f'{pad}default "";'] + [f'{pad}"{o}" $http_origin;' for o in origins.split(",")]
    return "\n".join(entries), f'{pad}"~." true;'


def _values(config: EdgeConfig) -> dict[str, str]:
    scheme, server, host_header, path = _origin(config.origin_url)
    origin_map, credentials_map = _cors_maps(config.cors_origins)
    if os.geteuid() == 0:
        # Started as root, nginx would switch its workers to `nobody`, which cannot read
        # files under a private directory (a pytest tmp dir) nor write this prefix.
        user_line = "# Workers keep the user who started the stack (see nginxconf.py).\nuser root;"
    else:
        user_line = "# Started unprivileged: workers run as this user, no `user` directive applies."
    cache_on = config.gate_cache_s > 0
    return {
        "prefix": str(config.prefix),
        "user_line": user_line,
        "worker_processes": str(config.worker_processes or "auto"),
        "host": config.host,
        "port": str(config.port),
        "api_port": str(config.api_port),
        "api_host": config.api_host,
        "api_servers": _api_servers(config),
        "origin_port": str(config.origin_port),
        "origin_root": str(config.demo_root or ""),
        "origin_scheme": scheme,
        "origin_server": server,
        "origin_host": host_header,
        "origin_host_name": host_header.split(":")[0],
        "origin_path": path,
        "origin_tls": _origin_tls(scheme),
        "api_rate": str(config.api_rate),
        "api_burst": str(config.api_rate),
        "cors_origin_map": origin_map,
        "cors_credentials_map": credentials_map,
        "gate_cache_zone": "canwatch_gate" if cache_on else "off",
        # nginx keeps cache validity in whole seconds.
        "gate_cache_ttl": f"{max(1, math.ceil(config.gate_cache_s))}s",
        "gate_unreachable": "@gate_fail_open" if config.fail_open else "/_errors/gate-unreachable",
        "ungated_include": "        include ungated.conf;" if config.ungated else "",
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

    Also creates the directories nginx writes to (logs, temp files, cache), so that
    nothing outside the prefix is touched.
    """
    values = _values(config)
    chosen = {
        "identity.conf": f"identity-{config.identity}.conf",
        "internal.conf": "internal-exposed.conf" if config.expose_internal else "internal-hidden.conf",
        "origin.conf": "origin-demo.conf" if config.demo_root is not None else "origin-external.conf",
        "nginx.conf": MAIN,
    }
    files = {**{name: name for name in COMMON}, **chosen}
    config.prefix.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp", "cache"):
        (config.prefix / sub).mkdir(exist_ok=True)
    for target, source in files.items():
        text = templates.joinpath(source).read_text(encoding="utf-8")
        (config.prefix / target).write_text(substitute(text, values, source))
    return config.prefix / "nginx.conf"


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
    """Generate the demo HLS stream under ``root/demo``; returns the playlist.

    The segments are MPEG-TS null packets (sync byte, PID 0x1FFF) with a pattern that
    differs per segment: the right size and shape for the gate, no video to decode.
    """
    demo = root / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{SEGMENT_SECONDS}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for index in range(SEGMENT_COUNT):
        packets = bytearray()
        for n in range(SEGMENT_PACKETS):
            header = bytes((0x47, 0x1F, 0xFF, 0x10 | (n % 16)))
            packets += header + bytes([(index * 37 + n) & 0xFF]) * (TS_PACKET - len(header))
        segment = demo / f"segment{index}.ts"
        if not segment.exists() or segment.stat().st_size != len(packets):
            segment.write_bytes(bytes(packets))
        lines += [f"#EXTINF:{SEGMENT_SECONDS}.0,", segment.name]
    lines.append("#EXT-X-ENDLIST")
    playlist = demo / "playlist.m3u8"
    playlist.write_text("\n".join(lines) + "\n")
    return playlist

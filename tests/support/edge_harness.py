"""What the end-to-end tests share: a player's requests, the JSON error check, polling
with a bound, and starting a whole stack on free loopback ports."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests

from canwatch_edge.settings import EdgeSettings
from canwatch_stack.procs import free_port, free_ports
from canwatch_stack.settings import StackSettings
from canwatch_stack.supervisor import Stack

from harness import SECRET, Client, need_binary
from until import until

HOST = os.environ.get("HOST", "").rstrip("/")
PLAYLIST = "demo/playlist.m3u8"
SEGMENT = "demo/segment0.ts"
MANIFEST = "demo/manifest.mpd"  # the same video as DASH
DASH_SEGMENT = "demo/segment1.m4s"

StackFactory = Callable[..., Stack]


class Player(Client):
    """A player: the public API, and gated fetches of /watch/{streamId}/<path>."""

    def watch(
        self,
        stream: str,
        user: str | None = None,
        via: str = "header",
        path: str = PLAYLIST,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """Fetch through the gate, the identity given ``via`` header, cookie or query
        (a user id, or in jwt mode a ``token``)."""
        url = f"{self.base}/watch/{stream}/{path}"
        sent = dict(headers or {})
        cookies: dict[str, str] = {}
        params: dict[str, str] = {}
        if user is not None:
            if via == "header":
                sent["x-userid"] = user
            elif via == "cookie":
                cookies["cw_userid"] = user
            else:
                params["userid"] = user
        if token is not None:
            if via == "header":
                sent["Authorization"] = f"Bearer {token}"
            elif via == "cookie":
                cookies["cw_token"] = token
            else:
                params["token"] = token
        # A fresh request each time: a session would keep cookies between calls.
        return requests.get(url, headers=sent, cookies=cookies, params=params, timeout=5)


def ko(r: requests.Response, status: int, error: str | None = None) -> dict[str, object]:
    """Assert the JSON error shape (from nginx or authsvc) and return the body."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["status"] == "ko", body
    if error is not None:
        assert body["error"] == error, body
    return dict(body)


def access_lines(stack: Stack) -> list[dict[str, object]]:
    """nginx's access log so far (written at most a second late: poll with ``until``)."""
    path = stack.prefix / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def access_entry(stack: Stack, request_id: str) -> dict[str, object]:
    """The access-log entry of one request (by the X-Request-ID it was answered with)."""
    assert until(lambda: any(e["request_id"] == request_id for e in access_lines(stack)), 5), request_id
    (entry,) = [e for e in access_lines(stack) if e["request_id"] == request_id]
    return entry


def gate_decisions(stack: Stack, outcome: str) -> float:
    """authsvc's count of gate decisions with this outcome, read from its own port."""
    text = requests.get(f"{stack.api_url}/metrics", timeout=5).text
    pattern = rf'^authsvc_decisions_total\{{[^}}]*kind="gate"[^}}]*outcome="{outcome}"[^}}]*\}} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


def launch(run_dir: Path, ungated: bool = False, **settings: Any) -> Stack:
    """Start a stack on free loopback ports. ``settings`` are ``api_host`` and
    ``api_prefix`` (authsvc on a test host of the network tests: its address, and the
    command that runs it there), fields of the stack's settings (``redis=``,
    ``api_replicas=``), of the edge's (``origin_url=``, ``tls_port=``), and otherwise
    authsvc's (``identity=``), in that order."""
    api_host = str(settings.pop("api_host", "127.0.0.1"))
    api_prefix = tuple(settings.pop("api_prefix", ()))
    need_binary("nginx", "nginx")
    need_binary("redis-server", "redis-server")
    ports = StackSettings(
        api_port=free_ports(int(settings.get("api_replicas", 1))),  # one port per replica
        redis_port=free_port(),
        origin_port=free_port(),
    )
    edge = EdgeSettings(
        port=free_port(),
        tls_port=free_port(),
        api_rate=100_000,  # the tests' own pace must not meet the rate limit
        workers=1,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "CANWATCH_"))}
    env["AUTHSVC_SECRET"] = SECRET
    for key, value in settings.items():
        if key in StackSettings.__dataclass_fields__:
            ports = replace(ports, **{key: value})
        elif key in EdgeSettings.__dataclass_fields__:
            edge = replace(edge, **{key: value})
        else:
            env["AUTHSVC_" + key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    stack = Stack(run_dir, env, ports, edge, ungated=ungated, api_host=api_host, api_prefix=api_prefix)
    stack.start()
    return stack


@dataclass
class Deployment:
    """Where the tests send requests: a stack of ours, or HOST."""

    url: str
    stack: Stack | None
    # How long a deactivate may take to be felt: the lease tokens' life, if they are on.
    revocation_s: float

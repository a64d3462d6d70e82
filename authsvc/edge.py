"""The outermost ASGI layer: metrics and access log for every request, and the hot routes.

A playing client calls activate, heartbeat and deactivate, and nginx calls the gate on
every segment fetch. Those four are served here straight from the ASGI scope, without
Starlette's request and response objects and middleware stack: on this 2-core machine
that is the difference between about 11k and 14k requests per second for one worker.
Every other route goes to the Starlette app.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import HOT_ROUTES, Handler, Reply, ko
from .authz import gate
from .leases import StoreUnavailable
from .metrics import Metrics

log = logging.getLogger("authsvc")

GATE_METHODS = frozenset({"GET", "HEAD"})
JSON_TYPE = (b"content-type", b"application/json")


def _encode_headers(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    if not headers:
        return []
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_reply(send: Send, reply: Reply) -> int:
    """Write a handler's reply; returns its status."""
    status, body, headers = reply
    raw_headers = _encode_headers(headers)
    if body is None:
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": b""})
        return status
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw_headers.append(JSON_TYPE)
    raw_headers.append((b"content-length", str(len(payload)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
    return status


class Edge:
    """The outermost layer: routes hot requests to their handlers directly, everything
    else on to Starlette's middleware stack."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, access: Callable[[dict[str, Any]], None] | None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access = access

    def _hot(self, path: str) -> tuple[str, frozenset[str], Handler, str] | None:
        """(route template, methods, handler, stream id) when the path is a hot route."""
        if path == "/_authz":
            return "/_authz", GATE_METHODS, gate, ""
        if path.startswith("/streams/"):
            parts = path.split("/")
            # ["", "streams", stream_id, op]; an empty stream id is malformed, not hot.
            if len(parts) == 4 and parts[2] and parts[3] in HOT_ROUTES:
                methods, handler = HOT_ROUTES[parts[3]]
                return f"/streams/{{stream_id}}/{parts[3]}", methods, handler, parts[2]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method: str = scope["method"]
        hot = self._hot(scope["path"])
        if hot is not None:
            template, methods, handler, stream_id = hot
            if method in methods:
                status = await self._serve(handler, scope, send, stream_id)
            else:
                allow = ", ".join(sorted(methods))
                status = await send_reply(send, ko(405, "Method Not Allowed", {"Allow": allow}))
        else:
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            except BaseException:
                # Starlette's error middleware (inside this) has answered 500; count it.
                self._observe(scope, method, 500, start)
                raise
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
        self._observe(scope, method, status, start, template)

    def _observe(self, scope: Scope, method: str, status: int, start: float, template: str = "") -> None:
        if not template:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
        elapsed = time.perf_counter() - start
        self.metrics.observe_request(template, method, status, elapsed)
        if self.access:
            self.access(
                {
                    "method": method,
                    "path": scope["path"],  # never the query string: it may carry a token
                    "route": template,
                    "status": status,
                    "ms": round(elapsed * 1000, 3),
                }
            )

    async def _serve(self, handler: Handler, scope: Scope, send: Send, stream_id: str) -> int:
        # ASGI header names are lower-case already.
        headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        svc: Any = scope["app"].state.svc
        try:
            reply = await handler(svc, headers, stream_id)
        except StoreUnavailable:
            reply = ko(503, "Service Unavailable", {"Retry-After": "1"})
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            reply = ko(500, "Internal Server Error")
        status = await send_reply(send, reply)
        # The gate's 403 carries the real status for nginx (503 when Redis is down): count
        # that one, or an outage of the busiest route looks like refusals in the metrics.
        real = reply[2].get("X-Error-Status") if reply[2] else None
        return int(real) if real else status

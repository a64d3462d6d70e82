"""The outermost ASGI layer: metrics and access log for every request, and the hot routes.

A playing client calls activate, heartbeat and deactivate, and nginx calls the gate on
every segment fetch. Those routes (``hot`` in authsvc/routes.py) are served here straight
from the ASGI scope, without Starlette's request and response objects and middleware
stack: on this 2-core machine that is the difference between about 11k and 14k requests
per second for one worker. Every other route goes on to the Starlette app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .appstate import app_state
from .metrics import Metrics
from .replies import Call, Reply, ko
from .routes import Route, serve

JSON_TYPE = (b"content-type", b"application/json")
# While draining (SIGTERM), every answer closes its connection: nginx and load balancers
# then open their next one to a replica that is not going away.
CLOSE = (b"connection", b"close")


def _no_body() -> Any:
    raise AssertionError("hot routes take no body")


def encode(reply: Reply) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The raw headers and body of a reply: a dict body as compact JSON."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (reply.headers or {}).items()]
    if reply.body is None:
        return headers, b""
    if isinstance(reply.body, bytes):
        payload = reply.body
    else:
        payload = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers.append(JSON_TYPE)
    headers.append((b"content-length", str(len(payload)).encode("ascii")))
    return headers, payload


class _Template:
    """A hot route's path split at "/": literal segments must match, parameters be non-empty."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.parts = route.path.split("/")
        self.params = {i: p[1:-1] for i, p in enumerate(self.parts) if p.startswith("{")}

    def match(self, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for i, expected in enumerate(self.parts):
            name = self.params.get(i)
            if name is None:
                if parts[i] != expected:
                    return None
            elif not parts[i]:
                return None  # an empty id is malformed, not this route
            else:
                params[name] = parts[i]
        return params


class HotPath:
    """Routes hot requests to their handlers directly, everything else on to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Iterable[Route],
        metrics: Metrics,
        access: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access = access
        self._by_length: dict[int, list[_Template]] = {}
        for route in routes:
            if route.hot:
                template = _Template(route)
                self._by_length.setdefault(len(template.parts), []).append(template)

    def _match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        parts = path.split("/")
        for template in self._by_length.get(len(parts), ()):
            params = template.match(parts)
            if params is not None:
                return template.route, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method: str = scope["method"]
        hot = self._match(scope["path"])
        if hot is None:
            await self._pass_on(scope, receive, send, start)
            return
        route, params = hot
        state = app_state(scope["state"])
        if method in route.methods:
            # ASGI header names are lower-case already.
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            reply = await serve(route, Call(state, headers, params, _no_body), scope["path"])
        else:
            reply = ko(405, "Method Not Allowed", {"Allow": ", ".join(sorted(route.methods))})
        raw_headers, payload = encode(reply)
        if state.drain.draining:
            raw_headers.append(CLOSE)
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})
        # The gate answers nginx 401/403 and puts the status its client gets (503 when Redis
        # is down) in X-Error-Status: that is the one to count.
        real = reply.headers.get("X-Error-Status") if reply.headers else None
        self._observe(scope, method, int(real) if real else reply.status, start, route.path)

    async def _pass_on(self, scope: Scope, receive: Receive, send: Send, start: float) -> None:
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if "state" in scope and app_state(scope["state"]).drain.draining:
                    message["headers"] = [*message.get("headers", ()), CLOSE]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # Starlette's error middleware (inside this) has answered 500 if it raised.
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            self._observe(scope, scope["method"], status, start, template)

    def _observe(self, scope: Scope, method: str, status: int, start: float, template: str) -> None:
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
                    # nginx's X-Request-ID: the same request in both access logs.
                    "request_id": next(
                        (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), ""
                    ),
                }
            )

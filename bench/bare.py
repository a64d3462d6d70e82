"""The floor for `make bench-api`: a bare Starlette endpoint on the same uvicorn settings."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


async def ok(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/streams/{stream_id}/{op}", ok, methods=["PATCH", "POST"])])


async def gate(scope: Scope, receive: Receive, send: Send) -> None:
    """The floor for bench/instructions.py's authsvc part: an ASGI app that answers every
    request as the gate answers an allowed fetch, deciding nothing."""
    if scope["type"] != "http":
        return
    headers = [(b"x-userid", b"u"), (b"x-stream-id", b"s"), (b"x-gate-decision", b"allowed")]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})

"""The floor for `make bench-api`: a bare Starlette endpoint on the same uvicorn settings."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def ok(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/streams/{stream_id}/{op}", ok, methods=["PATCH", "POST"])])

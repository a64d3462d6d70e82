"""Operator API under /admin/, behind a bearer token; 404 everywhere when no token is set."""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .api import ko, lease_json, response
from .service import Service

MAX_LIMIT = 10_000
MAX_BODY = 1024


def _authorized(request: Request) -> tuple[Service, str] | Response:
    """The service and target user, or the answer that refuses the request."""
    svc: Service = request.app.state.svc
    token = svc.settings.admin_token
    if not token:
        return response(ko(404, "Not Found"))
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        return response(ko(401, "Unauthorized", headers={"WWW-Authenticate": 'Bearer realm="authsvc-admin"'}))
    user_id: str = request.path_params["user_id"]
    if not svc.codec.well_formed(user_id):
        return response(ko(400, "Malformed user id."))
    return svc, user_id


async def set_limit(request: Request) -> Response:
    """Give a user their own limit: body ``{"limit": n}``, or ``{"limit": null}`` to go back
    to the default. 200; 400 bad body; 401; 404 when admin is off; 503."""
    checked = _authorized(request)
    if isinstance(checked, Response):
        return checked
    svc, user_id = checked
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return response(ko(413, f"Body must be at most {MAX_BODY} bytes."))
    try:
        body: Any = json.loads(raw or b"null")
    except (ValueError, RecursionError):
        return response(ko(400, "Body must be JSON."))
    limit = body.get("limit", ...) if isinstance(body, dict) else ...
    valid = limit is None or (
        isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit <= MAX_LIMIT
    )
    if limit is ... or not valid:
        return response(
            ko(400, f'Body must be {{"limit": n}} with 0 <= n <= {MAX_LIMIT}, or {{"limit": null}}.')
        )
    await svc.leases.set_limit(user_id, limit)
    svc.log.info("admin set limit", extra={"user": user_id, "limit": limit})
    return JSONResponse({"status": "ok", "userId": user_id, "limit": limit})


async def clear_limit(request: Request) -> Response:
    """Return a user to the default limit. 200; 401; 404 when admin is off; 503."""
    checked = _authorized(request)
    if isinstance(checked, Response):
        return checked
    svc, user_id = checked
    await svc.leases.set_limit(user_id, None)
    return JSONResponse({"status": "ok", "userId": user_id, "limit": None})


async def user_streams(request: Request) -> Response:
    """A user's live leases, limit and own limit. 200; 401; 404 when admin is off; 503."""
    checked = _authorized(request)
    if isinstance(checked, Response):
        return checked
    svc, user_id = checked
    active = await svc.leases.active(user_id)
    return JSONResponse(
        {
            "status": "ok",
            "userId": user_id,
            "limit": active.limit,
            "userLimit": active.operator_limit,
            "streams": [lease_json(lease) for lease in active.leases],
        }
    )


async def end_stream(request: Request) -> Response:
    """End one of a user's leases (kick). 200 ``{"wasActive"}``; 400; 401; 404 when admin is
    off; 503."""
    checked = _authorized(request)
    if isinstance(checked, Response):
        return checked
    svc, user_id = checked
    stream_id: str = request.path_params["stream_id"]
    if not svc.codec.well_formed(stream_id):
        return response(ko(400, "Malformed stream id."))
    was_active = await svc.leases.deactivate(user_id, stream_id)
    svc.log.info("admin ended stream", extra={"user": user_id, "stream": stream_id})
    return JSONResponse({"status": "ok", "userId": user_id, "streamId": stream_id, "wasActive": was_active})


async def end_all(request: Request) -> Response:
    """End every lease of a user. 200 ``{"ended": n}``; 401; 404 when admin is off; 503."""
    checked = _authorized(request)
    if isinstance(checked, Response):
        return checked
    svc, user_id = checked
    ended = await svc.leases.end_all(user_id)
    svc.log.info("admin ended all streams", extra={"user": user_id, "ended": ended})
    return JSONResponse({"status": "ok", "userId": user_id, "ended": ended})


USER = "/admin/users/{user_id}"
routes = [
    Route(f"{USER}/limit", set_limit, methods=["PUT"]),
    Route(f"{USER}/limit", clear_limit, methods=["DELETE"]),
    Route(f"{USER}/streams", user_streams, methods=["GET"]),
    Route(f"{USER}/streams", end_all, methods=["DELETE"]),
    Route(f"{USER}/streams/{{stream_id}}", end_stream, methods=["DELETE"]),
]

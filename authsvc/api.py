"""The REST API that canWatch clients use, plus heartbeat and the caller's active streams.

Handlers are thin: parse, call the limiter, shape the answer. Errors are always
``{"status": "ko", "error": ...}``; a Redis failure raises StoreUnavailable, which the
app turns into 503.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .identity import Identity, IdentityError
from .leases import Activation, Lease, Outcome, StoreUnavailable
from .service import Service

# What a handler answers: status, JSON body (None for no body), extra headers.
Reply = tuple[int, dict[str, Any] | None, dict[str, str] | None]
Handler = Callable[[Service, Mapping[str, str], str], Awaitable[Reply]]


def ko(status: int, error: str, headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    """The seed's error shape, with optional extra fields."""
    return status, {"status": "ko", "error": error, **extra}, headers


def ok(**fields: Any) -> Reply:
    return 200, {"status": "ok", **fields}, None


class Rejected(Exception):
    """Bad input found while parsing a request; carries the answer."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


def lease_json(lease: Lease) -> dict[str, Any]:
    return {"streamId": lease.stream_id, "refreshedAt": lease.refreshed_ms, "expiresAt": lease.expires_ms}


def _caller(svc: Service, headers: Mapping[str, str]) -> Identity:
    try:
        return svc.identity.resolve(headers)
    except IdentityError as exc:
        raise Rejected(ko(exc.status, exc.message)) from None


def _stream(svc: Service, stream_id: str) -> str:
    if not svc.codec.well_formed(stream_id):
        raise Rejected(ko(400, "Malformed stream id."))
    if not svc.codec.issued("stream", stream_id):
        raise Rejected(ko(404, "Invalid Data."))
    return stream_id


async def activate(svc: Service, headers: Mapping[str, str], stream_id: str) -> Reply:
    """Start (or refresh) watching a stream.

    200 ``{"status": "ok", ...}``; 400 malformed identity or id; 401 bad token (jwt mode);
    404 ``Invalid Data.`` for ids not issued here; 403 ``Stream Limit Reached`` with the
    active streams and the limit; 503 when Redis cannot answer.
    """
    try:
        caller = _caller(svc, headers)
        _stream(svc, stream_id)
    except Rejected as bad:
        svc.metrics.decision("activate", "invalid")
        return bad.reply
    try:
        result = await svc.leases.activate(caller.user_id, stream_id, caller.claim_limit)
    except StoreUnavailable:
        svc.metrics.decision("activate", "error")
        raise
    return _activation_reply(svc, caller.user_id, stream_id, result)


def _activation_reply(svc: Service, user_id: str, stream_id: str, result: Activation) -> Reply:
    if result.outcome is Outcome.LIMIT:
        svc.metrics.decision("activate", "limit")
        svc.log.info("limit reached", extra={"user": user_id, "stream": stream_id, "limit": result.limit})
        return ko(
            403,
            "Stream Limit Reached",
            limit=result.limit,
            activeStreams=[lease_json(lease) for lease in result.active],
        )
    body: dict[str, Any] = {
        "status": "ok",
        "userId": user_id,
        "streamId": stream_id,
        "outcome": result.outcome.name.lower(),
        "expiresAt": result.expires_ms,
        "active": result.active_count,
        "limit": result.limit,
    }
    if result.outcome is Outcome.SHADOW:
        svc.metrics.decision("activate", "shadow_denied")
        svc.log.warning(
            "shadow: would refuse at the limit",
            extra={"user": user_id, "stream": stream_id, "limit": result.limit},
        )
    else:
        svc.metrics.decision("activate", "allowed")
    if result.outcome is Outcome.EVICTED:
        svc.metrics.evictions.inc(len(result.evicted))
        body["evicted"] = list(result.evicted)
        svc.log.info(
            "evicted to admit", extra={"user": user_id, "stream": stream_id, "evicted": body["evicted"]}
        )
    return 200, body, None


async def deactivate(svc: Service, headers: Mapping[str, str], stream_id: str) -> Reply:
    """Stop watching a stream. 200 ``{"status": "ok", "wasActive"}`` also when it was not
    active; 400, 401, 404 as for activate; 503 when Redis cannot answer."""
    try:
        caller = _caller(svc, headers)
        _stream(svc, stream_id)
    except Rejected as bad:
        return bad.reply
    was_active = await svc.leases.deactivate(caller.user_id, stream_id)
    return ok(streamId=stream_id, wasActive=was_active)


async def heartbeat(svc: Service, headers: Mapping[str, str], stream_id: str) -> Reply:
    """Keep a lease alive. 200 with the new ``expiresAt``; 404 ``Lease Not Found`` when it
    expired or was ended (activate again); 400, 401, 404 as for activate; 503."""
    try:
        caller = _caller(svc, headers)
        _stream(svc, stream_id)
    except Rejected as bad:
        svc.metrics.decision("heartbeat", "invalid")
        return bad.reply
    try:
        touch = await svc.leases.touch(caller.user_id, stream_id)
    except StoreUnavailable:
        svc.metrics.decision("heartbeat", "error")
        raise
    if not touch.alive:
        svc.metrics.decision("heartbeat", "not_active")
        return ko(404, "Lease Not Found")
    svc.metrics.decision("heartbeat", "allowed")
    return ok(streamId=stream_id, expiresAt=touch.expires_ms)


async def active_streams(svc: Service, headers: Mapping[str, str], _: str = "") -> Reply:
    """The caller's live leases and limit. 200; 400, 401, 404 for identity; 503."""
    try:
        caller = _caller(svc, headers)
    except Rejected as bad:
        return bad.reply
    active = await svc.leases.active(caller.user_id, caller.claim_limit)
    return ok(
        userId=caller.user_id,
        limit=active.limit,
        streams=[lease_json(lease) for lease in active.leases],
    )


# Served by the app's edge without Starlette's request/response objects: these are the
# calls a player makes all the time. Path template -> (methods, handler).
HOT_ROUTES: dict[str, tuple[frozenset[str], Handler]] = {
    "activate": (frozenset({"PATCH", "POST"}), activate),
    "deactivate": (frozenset({"PATCH", "POST"}), deactivate),
    "heartbeat": (frozenset({"PATCH", "POST"}), heartbeat),
}


def response(reply: Reply) -> Response:
    status, body, headers = reply
    if body is None:
        return Response(status_code=status, headers=headers)
    return JSONResponse(body, status, headers=headers)


async def new_user_id(request: Request) -> Response:
    """Issue a user id. 200 ``{"userId"}``."""
    svc: Service = request.app.state.svc
    return JSONResponse({"userId": svc.codec.issue("user")})


async def new_stream_id(request: Request) -> Response:
    """Issue a stream id. 200 ``{"streamId"}``."""
    svc: Service = request.app.state.svc
    return JSONResponse({"streamId": svc.codec.issue("stream")})


async def active_streams_endpoint(request: Request) -> Response:
    return response(await active_streams(request.app.state.svc, request.headers))


routes = [
    Route("/users/newId", new_user_id, methods=["GET"]),
    Route("/streams/newId", new_stream_id, methods=["GET"]),
    Route("/streams/active", active_streams_endpoint, methods=["GET"]),
]

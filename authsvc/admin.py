"""Operator API under /admin/, behind a bearer token; 404 everywhere when no token is set."""

from __future__ import annotations

import hmac
import json
from typing import Any

from .api import lease_json, limit_by
from .replies import Call, Refusal, Reply, ok

MAX_LIMIT = 10_000
MAX_BODY = 1024


def target_user(call: Call) -> str:
    """The user the request is about, once the caller has proved to be the operator.

    Raises a Refusal: 404 when admin is off, 401 for a missing or wrong token, 400 for a
    malformed user id.
    """
    token = call.state.settings.admin_token
    if not token:
        raise Refusal(404, "Not Found")
    auth = call.headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Refusal(401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="authsvc-admin"'})
    user_id = call.params["user_id"]
    if not call.state.codec.well_formed(user_id):
        raise Refusal(400, "Malformed user id.")
    return user_id


async def _limit_in_body(call: Call) -> int | None:
    raw = await call.body()
    if len(raw) > MAX_BODY:
        raise Refusal(413, f"Body must be at most {MAX_BODY} bytes.")
    try:
        body: Any = json.loads(raw or b"null")
    except (ValueError, RecursionError):
        raise Refusal(400, "Body must be JSON.") from None
    # Exactly {"limit": ...}: a field it does not know (a typo, a reason) is refused, not ignored.
    limit = body["limit"] if isinstance(body, dict) and body.keys() == {"limit"} else ...
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # 3.0 is the integer 3 to JSON Schema, and so to OpenAPI
    valid = limit is None or (
        isinstance(limit, int) and not isinstance(limit, bool) and 0 <= limit <= MAX_LIMIT
    )
    if limit is ... or not valid:
        raise Refusal(400, f'Body must be {{"limit": n}} with 0 <= n <= {MAX_LIMIT}, or {{"limit": null}}.')
    assert limit is None or isinstance(limit, int)
    return limit


async def set_limit(call: Call) -> Reply:
    """Give a user their own limit: body ``{"limit": n}``, or ``{"limit": null}`` to go back
    to the default. 200; 400 bad body; 401; 404 when admin is off; 413; 503."""
    user_id = target_user(call)
    limit = await _limit_in_body(call)
    await call.state.leases.set_limit(user_id, limit)
    call.state.log.info("admin set limit", extra={"user": user_id, "limit": limit})
    return ok(userId=user_id, limit=limit)


async def clear_limit(call: Call) -> Reply:
    """Return a user to the default limit. 200; 400; 401; 404 when admin is off; 503."""
    user_id = target_user(call)
    await call.state.leases.set_limit(user_id, None)
    call.state.log.info("admin set limit", extra={"user": user_id, "limit": None})
    return ok(userId=user_id, limit=None)


async def user_streams(call: Call) -> Reply:
    """A user's live leases (each with its device), limit and own limit. 200; 400; 401; 404
    when admin is off; 503."""
    user_id = target_user(call)
    active = await call.state.leases.active(user_id)
    return ok(
        userId=user_id,
        limit=active.limit,
        **limit_by(call.state),
        userLimit=active.operator_limit,
        streams=[lease_json(lease) for lease in active.leases],
    )


async def end_stream(call: Call) -> Reply:
    """End one of a user's leases (kick). 200 ``{"wasActive"}``; 400; 401; 404 when admin is
    off; 503."""
    user_id = target_user(call)
    stream_id = call.params["stream_id"]
    if not call.state.codec.well_formed(stream_id):
        raise Refusal(400, "Malformed stream id.")
    was_active = await call.state.leases.deactivate(user_id, stream_id)
    call.state.log.info("admin ended stream", extra={"user": user_id, "stream": stream_id})
    return ok(userId=user_id, streamId=stream_id, wasActive=was_active)


async def end_all(call: Call) -> Reply:
    """End every lease of a user. 200 ``{"ended": n}``; 400; 401; 404 when admin is off; 503."""
    user_id = target_user(call)
    ended = await call.state.leases.end_all(user_id)
    call.state.log.info("admin ended all streams", extra={"user": user_id, "ended": ended})
    return ok(userId=user_id, ended=ended)

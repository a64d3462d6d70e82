"""The REST API that canWatch clients use, plus heartbeat and the caller's active streams.

Handlers are thin: parse, call the limiter, shape the answer. Errors are always
``{"status": "ko", "error": ...}``, raised as a Refusal; a Redis failure raises
StoreUnavailable, which becomes 503 (authsvc/replies.py).
"""

from __future__ import annotations

from typing import Any

from .appstate import AppState
from .identity import Identity, IdentityError, device_of
from .leases import Lease, Outcome
from .replies import Call, Decision, Refusal, Reply, ok

# How each activation outcome is counted.
ACTIVATION_DECISIONS = {
    Outcome.ADMITTED: Decision.ALLOWED,
    Outcome.REFRESHED: Decision.ALLOWED,
    Outcome.EVICTED: Decision.ALLOWED,
    Outcome.SHADOW: Decision.SHADOW_DENIED,
    Outcome.LIMIT: Decision.LIMIT,
}


def lease_json(lease: Lease) -> dict[str, Any]:
    """A lease as the API shows it; ``deviceId`` only when a device holds it (clients that
    send none see no field of devices), ``startedAt`` only when its start is known (not for
    a lease admitted before starts were kept)."""
    shown: dict[str, Any] = {"streamId": lease.stream_id}
    if lease.started_ms is not None:
        shown["startedAt"] = lease.started_ms
    shown["refreshedAt"] = lease.refreshed_ms
    shown["expiresAt"] = lease.expires_ms
    if lease.device_id is not None:
        shown["deviceId"] = lease.device_id
    return shown


def limit_by(state: AppState) -> dict[str, Any]:
    """``limitBy`` for the bodies that carry a limit, when it counts devices."""
    return {"limitBy": "device"} if state.settings.limit_by == "device" else {}


def caller(call: Call) -> Identity:
    """Who is asking; raises a Refusal (400, 401 or 404) when that cannot be told."""
    try:
        return call.state.identity.resolve(call.headers)
    except IdentityError as exc:
        raise Refusal(exc.status, exc.message) from None


def device(call: Call) -> str | None:
    """The caller's device id, if it sent one; raises a Refusal (400) when malformed."""
    try:
        return device_of(call.headers)
    except IdentityError as exc:
        raise Refusal(exc.status, exc.message) from None


def issued_stream(state: AppState, stream_id: str) -> str:
    """The stream id when it may be used; raises a Refusal (400 malformed, 404 not issued here)."""
    if not state.codec.well_formed(stream_id):
        raise Refusal(400, "Malformed stream id.")
    if not state.codec.issued("stream", stream_id):
        raise Refusal(404, "Invalid Data.")
    return stream_id


async def activate(call: Call) -> Reply:
    """Start (or refresh) watching a stream.

    200 ``{"status": "ok", ...}``, naming in ``replaced`` the streams this device held and
    no longer does; 400 malformed identity, device id or stream id; 401 bad token (jwt
    mode); 404 ``Invalid Data.`` for ids not issued here; 403 ``Stream Limit Reached``
    with the active streams and the limit; 503 when Redis cannot answer.
    """
    state = call.state
    user = caller(call)
    device_id = device(call)
    stream_id = issued_stream(state, call.params["stream_id"])
    result = await state.leases.activate(user.user_id, stream_id, user.claim_limit, device_id)
    decision = ACTIVATION_DECISIONS[result.outcome]
    where = {"user": user.user_id, "stream": stream_id}
    if result.outcome is Outcome.LIMIT:
        state.log.info("limit reached", extra={**where, "limit": result.limit})
        raise Refusal(
            403,
            "Stream Limit Reached",
            decision=decision,
            limit=result.limit,
            **limit_by(state),
            activeStreams=[lease_json(lease) for lease in result.active],
        )
    body: dict[str, Any] = {
        "userId": user.user_id,
        "streamId": stream_id,
        "outcome": result.outcome.name.lower(),
        "expiresAt": result.expires_ms,
        "active": result.active_count,
        "limit": result.limit,
    }
    if device_id is not None:
        body["deviceId"] = device_id
        body["replaced"] = list(result.replaced)
    if state.settings.limit_by == "device":
        body["activeDevices"] = result.counted
    if result.replaced:
        state.metrics.replacements.inc(len(result.replaced))
        state.log.info("replaced on its device", extra={**where, "replaced": body["replaced"]})
    if result.outcome is Outcome.SHADOW:
        state.log.warning("shadow: would refuse at the limit", extra={**where, "limit": result.limit})
    if result.outcome is Outcome.EVICTED:
        state.metrics.evictions.inc(len(result.evicted))
        body["evicted"] = list(result.evicted)
        state.log.info("evicted to admit", extra={**where, "evicted": body["evicted"]})
    return ok(decision, **body)


async def deactivate(call: Call) -> Reply:
    """Stop watching a stream. 200 ``{"status": "ok", "wasActive"}`` also when it was not
    active; 400, 401, 404 as for activate; 503 when Redis cannot answer."""
    user = caller(call)
    stream_id = issued_stream(call.state, call.params["stream_id"])
    was_active = await call.state.leases.deactivate(user.user_id, stream_id)
    return ok(streamId=stream_id, wasActive=was_active)


async def heartbeat(call: Call) -> Reply:
    """Keep a lease alive. 200 with the new ``expiresAt``; 404 ``Lease Not Found`` when it
    expired or was ended (activate again); 400, 401, 404 as for activate; 503."""
    user = caller(call)
    device_id = device(call)
    stream_id = issued_stream(call.state, call.params["stream_id"])
    touch = await call.state.leases.touch(user.user_id, stream_id, device_id)
    if not touch.alive:
        raise Refusal(404, "Lease Not Found", decision=Decision.NOT_ACTIVE)
    return ok(Decision.ALLOWED, streamId=stream_id, expiresAt=touch.expires_ms)


async def active_streams(call: Call) -> Reply:
    """The caller's live leases (each with its device) and limit. 200; 400, 401, 404 for
    identity; 503."""
    user = caller(call)
    active = await call.state.leases.active(user.user_id, user.claim_limit)
    return ok(
        userId=user.user_id,
        limit=active.limit,
        **limit_by(call.state),
        streams=[lease_json(lease) for lease in active.leases],
    )


async def new_user_id(call: Call) -> Reply:
    """Issue a user id. 200 ``{"userId"}`` (no Redis: the id carries its own MAC)."""
    return Reply(200, {"userId": call.state.codec.issue("user")})


async def new_stream_id(call: Call) -> Reply:
    """Issue a stream id. 200 ``{"streamId"}``."""
    return Reply(200, {"streamId": call.state.codec.issue("stream")})

"""The decision endpoint behind nginx's ``auth_request``.

nginx only understands 2xx, 401 and 403 from an auth subrequest (anything else becomes
a 500), so the answer is 204, 401 or 403, and the real status travels in
``X-Error-Status`` for nginx to map: 400 malformed stream id, 403 not active for this
user, 404 id not issued here, 503 Redis cannot answer.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from .identity import IdentityError, device_of
from .leases import StoreUnavailable
from .replies import Call, Decision, Refusal, Reply

# /watch/{streamId}/<path inside the stream>
WATCH_URI = re.compile(r"/watch/([^/?#]+)/")


def _deny(status: int, real_status: int, error: str, decision: Decision = Decision.INVALID) -> Refusal:
    return Refusal(status, error, {"X-Error-Status": str(real_status)}, decision)


def _bearer(call: Call) -> str:
    return call.headers.get("authorization", "")[7:].strip()


async def gate(call: Call) -> Reply:
    """Decide whether the caller may fetch ``X-Original-URI`` and refresh its lease.

    204 with ``X-Userid``, ``X-Stream-Id`` and ``X-Gate-Decision: allowed`` when allowed
    (and ``X-Lease-Token``, a lease token, in token mode); 401 no or bad identity; 403
    with ``X-Error-Status`` 400 (also a malformed ``x-device-id``), 403, 404 or 503
    otherwise. A lease without a device becomes the device's that fetches it
    (``x-device-id``, from the edge's cookie for browsers); the gate replaces nothing. In
    shadow mode and with fail-open, 204 with ``X-Gate-Decision`` naming what would have
    been refused. nginx logs ``X-Gate-Decision`` as the fetch's decision.
    """
    state = call.state
    path = call.headers.get("x-original-uri", "").partition("?")[0]
    match = WATCH_URI.match(path)
    if match is None:
        raise _deny(403, 400, "Not a stream URL.")
    stream_id = unquote(match.group(1))
    try:
        user = state.identity.resolve(call.headers, gate=True)
    except IdentityError as exc:
        raise _deny(401, 401, exc.message) from None
    try:
        device_id = device_of(call.headers)
    except IdentityError as exc:
        raise _deny(403, 400, exc.message) from None
    if not state.codec.well_formed(stream_id):
        raise _deny(403, 400, "Malformed stream id.")
    if not state.codec.issued("stream", stream_id):
        raise _deny(403, 404, "Invalid Data.")

    allowed = {"X-Userid": user.user_id, "X-Stream-Id": stream_id}
    try:
        touch = await state.leases.touch(user.user_id, stream_id, device_id)
    except StoreUnavailable:
        if state.settings.fail_open:
            return Reply(204, None, {**allowed, "X-Gate-Decision": "fail_open"}, Decision.ERROR)
        raise _deny(403, 503, "Service Unavailable", Decision.ERROR) from None
    if touch.alive:
        if state.tokens is not None:
            # Bound to the identity as nginx derived and will present it again.
            # In jwt mode it names the verified subject too, for nginx's log.
            if state.settings.identity == "header":
                allowed["X-Lease-Token"] = state.tokens.issue(user.user_id, stream_id)
            else:
                allowed["X-Lease-Token"] = state.tokens.issue(_bearer(call), stream_id, user.user_id)
        return Reply(204, None, {**allowed, "X-Gate-Decision": "allowed"}, Decision.ALLOWED)
    if not state.settings.enforce:
        return Reply(204, None, {**allowed, "X-Gate-Decision": "shadow_not_active"}, Decision.SHADOW_DENIED)
    raise _deny(403, 403, "Stream Not Active", Decision.NOT_ACTIVE)

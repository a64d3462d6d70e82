"""The decision endpoint behind nginx's ``auth_request``.

nginx only understands 2xx, 401 and 403 from an auth subrequest (anything else becomes
a 500), so the answer is 204, 401 or 403, and the real status travels in
``X-Error-Status`` for nginx to map: 400 malformed stream id, 403 not active for this
user, 404 id not issued here, 503 Redis cannot answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

from .api import Reply
from .identity import IdentityError
from .leases import StoreUnavailable
from .service import Service

# /watch/{streamId}/<path inside the stream>
WATCH_URI = re.compile(r"/watch/([^/?#]+)/")


def _deny(status: int, real_status: int, error: str) -> Reply:
    return status, {"status": "ko", "error": error}, {"X-Error-Status": str(real_status)}


async def gate(svc: Service, headers: Mapping[str, str], _: str = "") -> Reply:
    """Decide whether the caller may fetch ``X-Original-URI`` and refresh its lease.

    204 with ``X-Userid`` and ``X-Stream-Id`` when allowed; 401 no or bad identity; 403
    with ``X-Error-Status`` 400, 403, 404 or 503 otherwise. In shadow mode and with
    fail-open, 204 with ``X-Gate-Decision`` naming what would have been refused.
    """
    original = headers.get("x-original-uri", "")
    path = original.partition("?")[0]
    match = WATCH_URI.match(path)
    if match is None:
        svc.metrics.decision("gate", "invalid")
        return _deny(403, 400, "Not a stream URL.")
    stream_id = unquote(match.group(1))
    try:
        caller = svc.identity.resolve(headers, gate=True)
    except IdentityError as exc:
        svc.metrics.decision("gate", "invalid")
        return _deny(401, 401, exc.message)
    if not svc.codec.well_formed(stream_id):
        svc.metrics.decision("gate", "invalid")
        return _deny(403, 400, "Malformed stream id.")
    if not svc.codec.issued("stream", stream_id):
        svc.metrics.decision("gate", "invalid")
        return _deny(403, 404, "Invalid Data.")

    allowed = {"X-Userid": caller.user_id, "X-Stream-Id": stream_id}
    try:
        touch = await svc.leases.touch(caller.user_id, stream_id)
    except StoreUnavailable:
        svc.metrics.decision("gate", "error")
        if svc.settings.fail_open:
            return 204, None, {**allowed, "X-Gate-Decision": "fail_open"}
        return _deny(403, 503, "Service Unavailable")
    if touch.alive:
        svc.metrics.decision("gate", "allowed")
        return 204, None, allowed
    if not svc.settings.enforce:
        svc.metrics.decision("gate", "shadow_denied")
        return 204, None, {**allowed, "X-Gate-Decision": "shadow_not_active"}
    svc.metrics.decision("gate", "not_active")
    return _deny(403, 403, "Stream Not Active")

"""What every handler takes and gives: a Call in, a Reply out, a Refusal raised.

One handler shape for every route, hot or not, and one place (``answer``) that runs a
handler and turns whatever it raised into the JSON answer: a refusal into its own status,
Redis trouble into 503 with ``Retry-After``, anything else into 500.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .appstate import AppState
from .leases import StoreUnavailable

log = logging.getLogger("authsvc")


class Decision(enum.Enum):
    """How a lease decision ended, as counted in ``authsvc_decisions_total{outcome}``."""

    ALLOWED = "allowed"
    LIMIT = "limit"
    NOT_ACTIVE = "not_active"
    INVALID = "invalid"
    SHADOW_DENIED = "shadow_denied"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a handler sees it: the app's shared objects, the headers (names in
    lower case), the path parameters and, for the few routes that take one, the body."""

    state: AppState
    headers: Mapping[str, str]
    params: Mapping[str, str]
    body: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer: status, body (a dict is sent as JSON, bytes as they are with the
    content type in ``headers``, None for no body), extra headers, and the decision it
    made when the route counts decisions."""

    status: int
    body: dict[str, Any] | bytes | None = None
    headers: Mapping[str, str] | None = None
    decision: Decision | None = None


Handler = Callable[[Call], Awaitable[Reply]]


class Refusal(Exception):
    """Raised by a handler to refuse a request; becomes ``{"status": "ko", "error": ...}``
    with ``status``, ``headers`` and any extra body fields."""

    def __init__(
        self,
        status: int,
        error: str,
        headers: Mapping[str, str] | None = None,
        decision: Decision = Decision.INVALID,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.reply = Reply(status, {"status": "ko", "error": error, **extra}, headers, decision)


def ok(decision: Decision | None = None, **fields: Any) -> Reply:
    """200 ``{"status": "ok", ...fields}``."""
    return Reply(200, {"status": "ok", **fields}, None, decision)


def ko(status: int, error: str, headers: Mapping[str, str] | None = None) -> Reply:
    """The seed's error shape."""
    return Reply(status, {"status": "ko", "error": error}, headers)


UNAVAILABLE = Reply(
    503, {"status": "ko", "error": "Service Unavailable"}, {"Retry-After": "1"}, Decision.ERROR
)
SERVER_ERROR = ko(500, "Internal Server Error")


def error_reply(exc: BaseException, path: str) -> Reply:
    """The answer to an exception that escaped a handler (or Starlette's router)."""
    if isinstance(exc, Refusal):
        return exc.reply
    if isinstance(exc, StoreUnavailable):
        return UNAVAILABLE
    log.error("unhandled error", exc_info=exc, extra={"path": path})
    return SERVER_ERROR


async def answer(handler: Handler, call: Call, path: str) -> Reply:
    """Run a handler; every exception becomes its answer here and nowhere else."""
    try:
        return await handler(call)
    except Exception as exc:
        return error_reply(exc, path)

"""The one table of routes: path, methods, handler, what OpenAPI says, and whether the
hot path serves it. Starlette's router, the hot path's dispatcher and /openapi.json are
all derived from ``ROUTES``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import __version__, admin, api, authz, probes
from .openapi import (
    ACTIVATED,
    ACTIVE,
    DEACTIVATED,
    DEVICE_HEADER,
    ENDED,
    ENDED_ALL,
    HEARTBEAT,
    LIMIT_BODY,
    ORIGINAL_URI,
    STR,
    USER_ACTIVE,
    USER_HEADER,
    USER_LIMIT,
    Doc,
    obj,
    spec,
)
from .replies import Call, Handler, Reply, answer

CHANGE = frozenset({"PATCH", "POST"})  # the seed took PATCH; POST for clients that cannot
READ = frozenset({"GET"})
GATE = frozenset({"GET", "HEAD"})  # nginx sends the subrequest with the original method


@dataclass(frozen=True)
class Route:
    """One route. ``hot`` routes are served by authsvc/hotpath.py straight from the ASGI
    scope; ``decisions`` names the kind under which its Reply's decision is counted."""

    path: str
    methods: frozenset[str]
    handler: Handler
    doc: Doc
    hot: bool = False
    decisions: str | None = None


async def openapi_document(call: Call) -> Reply:
    """The OpenAPI 3.1 description of every route. 200."""
    return Reply(200, document(call.state.settings.identity))


def document(identity: str) -> dict[str, Any]:
    """The OpenAPI document of ROUTES for an identity mode."""
    return spec(((r.path, r.methods, r.doc) for r in ROUTES), __version__, identity)


STREAM = "/streams/{stream_id}"
USER = "/admin/users/{user_id}"
ANY_USER = (400, 401, 404, 503)
READY = obj(status=STR, redis=STR)

ROUTES: tuple[Route, ...] = (
    Route("/", READ, probes.root, Doc("Name and version", obj(name=STR, version=STR))),
    Route("/healthz", READ, probes.healthz, Doc("Liveness (no I/O)", obj(status=STR))),
    Route(
        "/readyz", READ, probes.readyz, Doc("Readiness: Redis answers", obj(status=STR, redis=STR), (503,))
    ),
    Route("/metrics", READ, probes.metrics, Doc("Prometheus metrics")),
    Route("/openapi.json", READ, openapi_document, Doc("This document", {"type": "object"})),
    Route("/users/newId", READ, api.new_user_id, Doc("Issue a user id", obj(["userId"], userId=STR))),
    Route(
        "/streams/newId",
        READ,
        api.new_stream_id,
        Doc("Issue a stream id", obj(["streamId"], streamId=STR), (503,)),
    ),
    Route(
        "/streams/active",
        READ,
        api.active_streams,
        Doc(
            "The caller's live leases (start, last refresh, expiry, device) and limit",
            ACTIVE,
            ANY_USER,
            parameters=(USER_HEADER,),
        ),
    ),
    Route(
        f"{STREAM}/activate",
        CHANGE,
        api.activate,
        Doc(
            "Start or refresh watching a stream",
            ACTIVATED,
            (400, 401, 403, 404, 503),
            parameters=(USER_HEADER, DEVICE_HEADER),
            limit_403=True,
        ),
        hot=True,
        decisions="activate",
    ),
    Route(
        f"{STREAM}/deactivate",
        CHANGE,
        api.deactivate,
        Doc("Stop watching a stream (ok when not active)", DEACTIVATED, ANY_USER, parameters=(USER_HEADER,)),
        hot=True,
    ),
    Route(
        f"{STREAM}/heartbeat",
        CHANGE,
        api.heartbeat,
        Doc(
            "Keep a lease alive; 404 when it is gone",
            HEARTBEAT,
            ANY_USER,
            parameters=(USER_HEADER, DEVICE_HEADER),
        ),
        hot=True,
        decisions="heartbeat",
    ),
    Route(
        "/_authz",
        GATE,
        authz.gate,
        Doc(
            "Gate decision for nginx auth_request; the real status is in X-Error-Status",
            None,
            (401, 403),
            ok_status=204,
            parameters=(ORIGINAL_URI, USER_HEADER, DEVICE_HEADER),
        ),
        hot=True,
        decisions="gate",
    ),
    Route(
        f"{USER}/limit",
        frozenset({"PUT"}),
        admin.set_limit,
        Doc(
            "Set or clear (null) a user's own limit",
            USER_LIMIT,
            (400, 401, 404, 413, 503),
            request_body=LIMIT_BODY,
            admin=True,
        ),
    ),
    Route(
        f"{USER}/limit",
        frozenset({"DELETE"}),
        admin.clear_limit,
        Doc("Clear a user's own limit", USER_LIMIT, ANY_USER, admin=True),
    ),
    Route(
        f"{USER}/streams",
        READ,
        admin.user_streams,
        Doc("A user's live leases and limits", USER_ACTIVE, ANY_USER, admin=True),
    ),
    Route(
        f"{USER}/streams",
        frozenset({"DELETE"}),
        admin.end_all,
        Doc("End every lease of a user", ENDED_ALL, ANY_USER, admin=True),
    ),
    Route(
        f"{USER}/streams/{{stream_id}}",
        frozenset({"DELETE"}),
        admin.end_stream,
        Doc("End one lease (kick)", ENDED, ANY_USER, admin=True),
    ),
)


async def serve(route: Route, call: Call, path: str) -> Reply:
    """Run a route's handler and count its decision: the one way every request is served."""
    reply = await answer(route.handler, call, path)
    if route.decisions is not None and reply.decision is not None:
        call.state.metrics.decision(route.decisions, reply.decision.value)
    return reply

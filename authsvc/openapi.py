"""The OpenAPI 3.1 description served at /openapi.json."""

from __future__ import annotations

from typing import Any


def _obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


STR = {"type": "string"}
INT = {"type": "integer"}
MS = {"type": ["integer", "null"], "description": "epoch milliseconds (Redis clock); null = never"}
KO = _obj(["status", "error"], status={"const": "ko"}, error=STR)
LEASE = _obj(["streamId", "refreshedAt", "expiresAt"], streamId=STR, refreshedAt=INT, expiresAt=MS)
LEASES = {"type": "array", "items": LEASE}
ACTIVATED = _obj(
    ["status", "userId", "streamId", "outcome", "expiresAt", "active", "limit"],
    status={"const": "ok"},
    userId=STR,
    streamId=STR,
    outcome={"enum": ["admitted", "refreshed", "evicted", "shadow"]},
    expiresAt=MS,
    active=INT,
    limit=INT,
    evicted={"type": "array", "items": STR},
)
LIMIT = _obj(
    ["status", "error", "limit", "activeStreams"],
    status={"const": "ko"},
    error={"const": "Stream Limit Reached"},
    limit=INT,
    activeStreams=LEASES,
)
ACTIVE = _obj(
    ["status", "userId", "limit", "streams"], status={"const": "ok"}, userId=STR, limit=INT, streams=LEASES
)

ERRORS = {
    400: "Malformed x-userid header or id",
    401: "Missing or invalid token (jwt identity) or admin token",
    403: "Refused",
    404: "Id not issued here (`Invalid Data.`), or lease gone, or admin disabled",
    503: "Redis cannot answer; retry after `Retry-After` seconds",
}


def _op(
    summary: str, ok: dict[str, Any] | None, errors: tuple[int, ...], ok_status: int = 200, **extra: Any
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if ok_status == 204:
        responses["204"] = {"description": "Allowed"}
    else:
        body = {"application/json": {"schema": ok}} if ok else {"text/plain": {"schema": STR}}
        responses[str(ok_status)] = {"description": "OK", "content": body}
    for code in errors:
        schema = LIMIT if (code == 403 and "limit" in extra.get("tags", [])) else KO
        responses[str(code)] = {
            "description": ERRORS[code],
            "content": {"application/json": {"schema": schema}},
        }
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    op.update({k: v for k, v in extra.items() if k != "tags"})
    return op


USER_HEADER = {"name": "x-userid", "in": "header", "required": True, "schema": STR}
STREAM = {"name": "streamId", "in": "path", "required": True, "schema": STR}
USER = {"name": "userId", "in": "path", "required": True, "schema": STR}
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]


def spec(version: str) -> dict[str, Any]:
    """The document; every route, its bodies and status codes."""
    activate = _op(
        "Start or refresh watching a stream",
        ACTIVATED,
        (400, 401, 403, 404, 503),
        parameters=[STREAM, USER_HEADER],
        tags=["limit"],
    )
    deactivate = _op(
        "Stop watching a stream (ok when not active)",
        _obj(["status", "wasActive"], status={"const": "ok"}, streamId=STR, wasActive={"type": "boolean"}),
        (400, 401, 404, 503),
        parameters=[STREAM, USER_HEADER],
    )
    heartbeat = _op(
        "Keep a lease alive; 404 when it is gone",
        _obj(["status", "expiresAt"], status={"const": "ok"}, streamId=STR, expiresAt=MS),
        (400, 401, 404, 503),
        parameters=[STREAM, USER_HEADER],
    )
    limit_body = {
        "content": {
            "application/json": {
                "schema": _obj(["limit"], limit={"type": ["integer", "null"], "minimum": 0, "maximum": 10000})
            }
        }
    }
    user_limit = _obj(
        ["status", "userId", "limit"], status={"const": "ok"}, userId=STR, limit={"type": ["integer", "null"]}
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "CanWatch authsvc", "version": version},
        "components": {"securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/": {"get": _op("Name and version", _obj(name=STR, version=STR), ())},
            "/healthz": {"get": _op("Liveness (no I/O)", _obj(status=STR), ())},
            "/readyz": {"get": _op("Readiness: Redis answers", _obj(status=STR, redis=STR), (503,))},
            "/metrics": {"get": _op("Prometheus metrics", None, ())},
            "/openapi.json": {"get": _op("This document", {"type": "object"}, ())},
            "/users/newId": {"get": _op("Issue a user id", _obj(["userId"], userId=STR), (503,))},
            "/streams/newId": {"get": _op("Issue a stream id", _obj(["streamId"], streamId=STR), (503,))},
            "/streams/active": {
                "get": _op(
                    "The caller's live leases and limit",
                    ACTIVE,
                    (400, 401, 404, 503),
                    parameters=[USER_HEADER],
                )
            },
            "/streams/{streamId}/activate": {"patch": activate, "post": activate},
            "/streams/{streamId}/deactivate": {"patch": deactivate, "post": deactivate},
            "/streams/{streamId}/heartbeat": {"patch": heartbeat, "post": heartbeat},
            "/_authz": {
                "get": _op(
                    "Gate decision for nginx auth_request; the real status is in X-Error-Status",
                    None,
                    (401, 403),
                    ok_status=204,
                    parameters=[{"name": "X-Original-URI", "in": "header", "required": True, "schema": STR}],
                )
            },
            "/admin/users/{userId}/limit": {
                "put": _op(
                    "Set or clear (null) a user's own limit",
                    user_limit,
                    (400, 401, 404, 503),
                    parameters=[USER],
                    requestBody=limit_body,
                    security=ADMIN,
                ),
                "delete": _op(
                    "Clear a user's own limit", user_limit, (401, 404, 503), parameters=[USER], security=ADMIN
                ),
            },
            "/admin/users/{userId}/streams": {
                "get": _op(
                    "A user's live leases", ACTIVE, (400, 401, 404, 503), parameters=[USER], security=ADMIN
                ),
                "delete": _op(
                    "End every lease of a user",
                    _obj(status=STR, ended=INT),
                    (400, 401, 404, 503),
                    parameters=[USER],
                    security=ADMIN,
                ),
            },
            "/admin/users/{userId}/streams/{streamId}": {
                "delete": _op(
                    "End one lease (kick)",
                    _obj(status=STR, wasActive={"type": "boolean"}),
                    (400, 401, 404, 503),
                    parameters=[USER, STREAM],
                    security=ADMIN,
                ),
            },
        },
    }

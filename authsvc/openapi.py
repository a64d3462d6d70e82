"""The OpenAPI 3.1 description served at /openapi.json, built from the route table
(authsvc/routes.py): the schemas of the bodies, and each route's Doc."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .identity import DEVICE_ID
from .ids import WELL_FORMED


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


STR = {"type": "string"}
# Any id, in a path or in x-userid: the shape every id must have (authsvc/ids.py). With
# AUTHSVC_ID_CHECK=mac (the default) only ids issued here are accepted (404 otherwise).
ID = {"type": "string", "pattern": f"^{WELL_FORMED.pattern}$"}
INT = {"type": "integer"}
MS = {"type": ["integer", "null"], "description": "epoch milliseconds (Redis clock); null = never"}
KO = obj(["status", "error"], status={"const": "ko"}, error=STR)
# A device id as the API returns it: null for a lease no device claimed.
# Fields of devices are there only when they apply: clients that send no device id, on a
# limit of streams, get no field of devices.
DEVICE = {"type": "string", "description": "the x-device-id that holds it; absent = none"}
LIMIT_BY = {"const": "device", "description": "the limit counts devices (AUTHSVC_LIMIT_BY=device)"}
LEASE = obj(
    ["streamId", "refreshedAt", "expiresAt"],
    streamId=STR,
    startedAt={
        "type": "integer",
        "description": "epoch milliseconds (Redis clock) when the lease was admitted; kept by its "
        "refreshes; absent for a lease admitted before starts were kept",
    },
    refreshedAt=INT,
    expiresAt=MS,
    deviceId=DEVICE,
)
LEASES = {"type": "array", "items": LEASE}
ACTIVATED = obj(
    ["status", "userId", "streamId", "outcome", "expiresAt", "active", "limit"],
    status={"const": "ok"},
    userId=STR,
    streamId=STR,
    deviceId=DEVICE,
    outcome={"enum": ["admitted", "refreshed", "evicted", "shadow"]},
    expiresAt=MS,
    active=INT,
    limit=INT,
    evicted={"type": "array", "items": STR},
    replaced={
        "type": "array",
        "items": STR,
        "description": "with x-device-id: this device's leases ended to admit this one",
    },
    activeDevices={"type": "integer", "description": "with AUTHSVC_LIMIT_BY=device: devices holding a lease"},
)
LIMIT = obj(
    ["status", "error", "limit", "activeStreams"],
    status={"const": "ko"},
    error={"const": "Stream Limit Reached"},
    limit=INT,
    limitBy=LIMIT_BY,
    activeStreams=LEASES,
)
ACTIVE = obj(
    ["status", "userId", "limit", "streams"],
    status={"const": "ok"},
    userId=STR,
    limit=INT,
    limitBy=LIMIT_BY,
    streams=LEASES,
)
# The same for an admin, with the user's own limit (null: the default applies).
USER_ACTIVE = obj(
    ["status", "userId", "limit", "userLimit", "streams"],
    status={"const": "ok"},
    userId=STR,
    limit=INT,
    limitBy=LIMIT_BY,
    userLimit={"type": ["integer", "null"]},
    streams=LEASES,
)
ENDED_ALL = obj(["status", "userId", "ended"], status={"const": "ok"}, userId=STR, ended=INT)
ENDED = obj(
    ["status", "userId", "streamId", "wasActive"],
    status={"const": "ok"},
    userId=STR,
    streamId=STR,
    wasActive={"type": "boolean"},
)

ERRORS = {
    400: "Malformed x-userid or x-device-id header, id or body",
    401: "Missing or invalid token (jwt identity) or admin token",
    403: "Refused",
    404: "Id not issued here (`Invalid Data.`), or lease gone, or admin disabled",
    413: "Body too large",
    503: "Redis cannot answer; retry after `Retry-After` seconds",
}

USER_HEADER = {"name": "x-userid", "in": "header", "required": True, "schema": ID}
# Optional: the device the request comes from; it groups the user's own leases (one
# stream per device, AUTHSVC_LIMIT_BY=device), never identifies anyone.
DEVICE_HEADER = {
    "name": "x-device-id",
    "in": "header",
    "required": False,
    # An empty header names no device, as no header does.
    "schema": {"type": "string", "pattern": f"^({DEVICE_ID.pattern})?$"},
}
# The gated URL as the client asked for it: /watch/{streamId}/<path>.
ORIGINAL_URI = {
    "name": "X-Original-URI",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "pattern": f"^/watch/{WELL_FORMED.pattern}/[A-Za-z0-9._~/-]*$"},
}
LIMIT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                **obj(["limit"], limit={"type": ["integer", "null"], "minimum": 0, "maximum": 10000}),
                "additionalProperties": False,
            }
        }
    },
}
USER_LIMIT = obj(
    ["status", "userId", "limit"], status={"const": "ok"}, userId=STR, limit={"type": ["integer", "null"]}
)
DEACTIVATED = obj(
    ["status", "wasActive"], status={"const": "ok"}, streamId=STR, wasActive={"type": "boolean"}
)
HEARTBEAT = obj(["status", "expiresAt"], status={"const": "ok"}, streamId=STR, expiresAt=MS)


@dataclass(frozen=True)
class Doc:
    """What OpenAPI says about one route: its success body (a JSON schema; None for text or
    no body), its error statuses, parameters beyond the path's, and its request body."""

    summary: str
    ok: dict[str, Any] | None = None
    errors: tuple[int, ...] = ()
    ok_status: int = 200
    parameters: tuple[dict[str, Any], ...] = ()
    request_body: dict[str, Any] | None = None
    admin: bool = False  # behind the admin bearer token
    limit_403: bool = False  # its 403 is "Stream Limit Reached" with the active streams


_PARAM = re.compile(r"\{(\w+)\}")

EDGE_NOTE = (
    "authsvc's own answers. Through the CanWatch edge (nginx) a route may also get the edge's "
    'own, with the same error body ({"status": "ko", "error": "..."}): among them 429 Too '
    "Many Requests (the per-client rate limit, with Retry-After), 400, 413 and 414 for "
    "malformed or oversized requests, and 503 when authsvc cannot be reached."
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _operation(path: str, doc: Doc, identity: str) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if doc.ok_status == 204:
        responses["204"] = {"description": "Allowed"}
    else:
        body = {"application/json": {"schema": doc.ok}} if doc.ok else {"text/plain": {"schema": STR}}
        responses[str(doc.ok_status)] = {"description": "OK", "content": body}
    for code in doc.errors:
        schema = LIMIT if (code == 403 and doc.limit_403) else KO
        responses[str(code)] = {
            "description": ERRORS[code],
            "content": {"application/json": {"schema": schema}},
        }
    in_path = [
        {"name": _camel(name), "in": "path", "required": True, "schema": ID} for name in _PARAM.findall(path)
    ]
    op: dict[str, Any] = {"summary": doc.summary, "responses": responses}
    parameters = doc.parameters
    if identity == "jwt" and USER_HEADER in parameters:
        # The caller is the subject of a JWT in Authorization; x-userid is ignored.
        parameters = tuple(p for p in parameters if p is not USER_HEADER)
        op["security"] = [{"userToken": []}]
    if in_path or parameters:
        op["parameters"] = [*in_path, *parameters]
    if doc.request_body:
        op["requestBody"] = doc.request_body
    if doc.admin:
        op["security"] = [{"adminToken": []}]
    return op


def spec(
    routes: Iterable[tuple[str, Iterable[str], Doc]], version: str, identity: str = "header"
) -> dict[str, Any]:
    """The document for (path template, methods, Doc) of every route, as the identity mode
    (AUTHSVC_IDENTITY) has callers name themselves: x-userid, or a JWT."""
    paths: dict[str, dict[str, Any]] = {}
    for path, methods, doc in routes:
        public = _PARAM.sub(lambda m: "{" + _camel(m.group(1)) + "}", path)
        for method in sorted(methods):
            paths.setdefault(public, {})[method.lower()] = _operation(path, doc, identity)
    schemes: dict[str, Any] = {"adminToken": {"type": "http", "scheme": "bearer"}}
    if identity == "jwt":
        schemes["userToken"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "CanWatch authsvc", "version": version, "description": EDGE_NOTE},
        "components": {"securitySchemes": schemes},
        "paths": paths,
    }

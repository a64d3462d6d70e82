"""authsvc does what its OpenAPI document says, for any request the document allows and
for many it does not: schemathesis generates them from the document and sends them to a
real authsvc on a real Redis, and checks every answer (no 5xx; a documented status, content
type, body and Allow; schema-invalid input refused with a 4xx). In both identity modes,
whose documents differ in how the caller is named."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import missing_required_header
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from authsvc.routes import document

from harness import Authsvc, RedisServer, settings_env

ADMIN_TOKEN = "admin-token-for-the-contract"
JWT_SECRET = "jwt-secret-for-the-contract-0123456789"
# A request the document calls valid, sent with the credentials its operation names, must
# not be refused as malformed or unauthenticated: 403 (the limit, a stream not active) and
# 404 (a lease gone) are the refusals a valid request can get.
VALID = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2XX", 403, 404]}}}
)
HEADER = schemathesis.openapi.from_dict(document("header"), config=VALID)
JWT = schemathesis.openapi.from_dict(document("jwt"), config=VALID)
# Each operation: 40 generated requests per generation mode (valid, invalid), derandomized
# so that a clean clone of the same code sends the same ones and a failure reproduces.
CONTRACT = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


def _service(redis: RedisServer, **overrides: str) -> Iterator[Authsvc]:
    # Any well-formed id is accepted, so generated ids reach the Lua scripts, not only the
    # MAC check.
    service = Authsvc(settings_env(redis, id_check="none", admin_token=ADMIN_TOKEN, **overrides))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def header_authsvc(redis_server: RedisServer) -> Iterator[Authsvc]:
    yield from _service(redis_server)


@pytest.fixture(scope="module")
def jwt_authsvc(redis_server: RedisServer) -> Iterator[Authsvc]:
    yield from _service(redis_server, identity="jwt", jwt_secret=JWT_SECRET)


def _credentials(case: schemathesis.Case[Any]) -> dict[str, str]:
    """The Authorization an operation's security asks for (none: the generated headers)."""
    schemes = {
        name for requirement in case.operation.definition.raw.get("security", ()) for name in requirement
    }
    if "adminToken" in schemes:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if "userToken" in schemes:
        claims = {"sub": "contract-user", "exp": int(time.time()) + 600}
        return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}
    return {}


@pytest.mark.parametrize(("mode", "service"), [("header", "header_authsvc"), ("jwt", "jwt_authsvc")])
def test_the_document_is_the_one_served(mode: str, service: str, request: pytest.FixtureRequest) -> None:
    authsvc: Authsvc = request.getfixturevalue(service)
    served = requests.get(f"{authsvc.url}/openapi.json", timeout=5).json()
    assert served == document(mode)
    user_routes = served["paths"]["/streams/{streamId}/activate"]["patch"]
    named_by_header = any(p["name"] == "x-userid" for p in user_routes["parameters"])
    assert named_by_header == (mode == "header")


def _call_and_validate(case: schemathesis.Case[Any], authsvc: Authsvc) -> None:
    if case.operation.path != "/_authz":
        case.call_and_validate(base_url=authsvc.url, headers=_credentials(case))
        return
    # nginx's auth_request passes on only 401 and 403, so the gate refuses a malformed
    # request (no X-Original-URI among them) with 403 and the real status in X-Error-Status.
    response = case.call_and_validate(
        base_url=authsvc.url, headers=_credentials(case), excluded_checks=[missing_required_header]
    )
    if response.status_code == 403:
        real = response.headers.get("x-error-status")
        assert real in (["400"], ["403"], ["404"], ["503"]), response.headers
        # A request the document calls valid is decided (not active: 403), not malformed.
        meta = case.meta
        if meta is not None and meta.generation.mode == GenerationMode.POSITIVE:
            assert real == ["403"], (case.headers, response.headers)


@HEADER.parametrize()
@CONTRACT
def test_header_mode_answers_as_documented(case: schemathesis.Case[Any], header_authsvc: Authsvc) -> None:
    _call_and_validate(case, header_authsvc)


@JWT.parametrize()
@CONTRACT
def test_jwt_mode_answers_as_documented(case: schemathesis.Case[Any], jwt_authsvc: Authsvc) -> None:
    _call_and_validate(case, jwt_authsvc)

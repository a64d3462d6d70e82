"""authsvc does what its OpenAPI document says, for any request the document allows and
for many it does not: schemathesis generates them from the document and sends them to a
real authsvc on a real Redis, and checks every answer (no 5xx; a documented status, content
type and body)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from authsvc import __version__
from authsvc.openapi import spec
from authsvc.routes import ROUTES

from harness import Authsvc, RedisServer, settings_env

ADMIN_TOKEN = "admin-token-for-the-contract"
DOCUMENT = spec(((r.path, r.methods, r.doc) for r in ROUTES), __version__)
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def contract_authsvc(redis_server: RedisServer) -> Iterator[Authsvc]:
    # Any well-formed id is accepted, so generated ids reach the Lua scripts, not only
    # the MAC check.
    service = Authsvc(settings_env(redis_server, id_check="none", admin_token=ADMIN_TOKEN))
    service.start()
    yield service
    service.stop()


def test_the_document_is_the_one_served(contract_authsvc: Authsvc) -> None:
    assert requests.get(f"{contract_authsvc.url}/openapi.json", timeout=5).json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented(case: schemathesis.Case[Any], contract_authsvc: Authsvc) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if case.operation.path.startswith("/admin/") else {}
    case.call_and_validate(base_url=contract_authsvc.url, headers=headers)

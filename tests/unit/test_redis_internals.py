"""store.AutoPipeline writes batches on a pooled connection directly, through redis-py's
connection-level methods (a third of a pipeline's cost, see store.py). pyproject pins
redis-py below its next major version; this test names what changed if a release moves
those internals anyway."""

from __future__ import annotations

import inspect

import pytest
from redis.asyncio.connection import AbstractConnection, ConnectionPool

USED = {
    (ConnectionPool, "get_connection"): [],
    (ConnectionPool, "release"): ["connection"],
    (AbstractConnection, "pack_commands"): ["commands"],
    (AbstractConnection, "send_packed_command"): ["command", "check_health"],
    (AbstractConnection, "read_response"): [],
    (AbstractConnection, "disconnect"): ["nowait"],
    (AbstractConnection, "connect"): [],
}


@pytest.mark.parametrize(("owner", "method"), list(USED), ids=lambda v: getattr(v, "__name__", v))
def test_the_connection_internals_store_uses_are_there(owner: type, method: str) -> None:
    function = getattr(owner, method, None)
    assert callable(function), (
        f"redis-py no longer has {owner.__name__}.{method}: authsvc/store.py AutoPipeline must be "
        "adapted to this redis-py version (or pin the previous one)"
    )
    params = inspect.signature(function).parameters
    missing = [name for name in USED[owner, method] if name not in params]
    assert not missing, (
        f"redis-py's {owner.__name__}.{method} lost parameters {missing}: authsvc/store.py "
        "AutoPipeline must be adapted to this redis-py version"
    )

"""The network tests: Redis, and in some tests authsvc, on test hosts of their own
(network namespaces, tests/support/netns.py), partitioned by iptables DROP rules.

Every test gets a ``net`` of its own, removed by name when it ends, failed or not; the
session starts by removing what killed runs left behind. Needs root: without it every
test fails saying so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netns import Net, mark_run, network, require, sweep


@pytest.fixture(scope="session", autouse=True)
def _swept() -> None:
    require()
    sweep()
    mark_run()


@pytest.fixture
def net() -> Iterator[Net]:
    """A switch of this test's own; add hosts with ``net.host(name)``."""
    with network() as made:
        yield made

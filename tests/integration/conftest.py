"""Integration fixtures: the lease tests run against every Redis topology.

Tests marked ``every_topology`` (a module's ``pytestmark``, or one test's) that reach
authsvc through ``authsvc`` or ``start_authsvc`` (and do not break a Redis of their own)
run three times: on one redis-server, on a 3+3 Redis Cluster and on a Sentinel set; the
last two runs carry the markers ``cluster`` and ``sentinel`` (``-m "not cluster"`` leaves
them out). Each topology starts once per session, when first needed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import RedisServer, Topology
from topologies import ClusterTopology, SentinelTopology, started

TOPOLOGIES = [
    pytest.param("single"),
    pytest.param("cluster", marks=pytest.mark.cluster),
    pytest.param("sentinel", marks=pytest.mark.sentinel),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "topology" not in metafunc.fixturenames or "topology" in getattr(metafunc.function, "pytestmark", ()):
        return
    marked = metafunc.definition.get_closest_marker("every_topology") is not None
    every = marked and "own_redis" not in metafunc.fixturenames
    metafunc.parametrize("topology", TOPOLOGIES if every else ["single"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    """A Redis Cluster of 3 primaries and 3 replicas, shared by the session."""
    cluster = started(ClusterTopology(tmp_path_factory.mktemp("cluster")))
    assert isinstance(cluster, ClusterTopology)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    """A primary, a replica and 3 sentinels, shared by the session."""
    sentinel = started(SentinelTopology(tmp_path_factory.mktemp("sentinel")))
    assert isinstance(sentinel, SentinelTopology)
    yield sentinel
    sentinel.stop()


@pytest.fixture(scope="session")
def topology(request: pytest.FixtureRequest, redis_server: RedisServer) -> Topology:
    """The Redis the lease tests run against (parametrised by pytest_generate_tests)."""
    name = getattr(request, "param", "single")
    if name == "single":
        return redis_server
    value: Topology = request.getfixturevalue(f"redis_{name}")
    return value

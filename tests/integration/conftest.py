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

from canwatch_stack.procs import free_port

from harness import RedisServer, Topology
from inprocess import ADMIN_TOKEN, Serve, Service, serving
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


# The in-process tests' apps (tests/support/inprocess.py): built from Settings, in this process.


@pytest.fixture
def serve(redis_server: RedisServer) -> Iterator[Serve]:
    """Start the app of ``Settings(...)`` with these overrides (see ``inprocess.serving``)."""
    with serving(redis_server.url) as start:
        yield start


@pytest.fixture
def service(serve: Serve) -> Service:
    """The app with no admin token."""
    return serve()


@pytest.fixture
def no_redis(serve: Serve) -> Service:
    """The app on a Redis address that nothing listens on."""
    return serve(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_ms=100)


@pytest.fixture
def admin_service(serve: Serve) -> Service:
    return serve(admin_token=ADMIN_TOKEN)

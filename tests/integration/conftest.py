"""Integration fixtures: the lease tests run against every Redis topology.

Tests of the modules in TOPOLOGY_MODULES that reach authsvc through ``authsvc`` or
``start_authsvc`` (and do not break a Redis of their own) run three times: on one
redis-server, on a 3+3 Redis Cluster and on a Sentinel set. Each topology starts once per
session, when first needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import Authsvc, RedisServer, settings_env
from topologies import ClusterTopology, SentinelTopology, Topology, started

# Test modules import this from "conftest", which is this file while they are collected.
AuthsvcFactory = Callable[..., Authsvc]

TOPOLOGY_MODULES = {"test_api", "test_race", "test_policies", "test_gate"}
TOPOLOGIES = ["single", "cluster", "sentinel"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "topology" not in metafunc.fixturenames or "topology" in getattr(metafunc.function, "pytestmark", ()):
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    every = module in TOPOLOGY_MODULES and "own_redis" not in metafunc.fixturenames
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


@pytest.fixture(scope="session")
def authsvc(topology: Topology) -> Iterator[Authsvc]:
    """authsvc with default settings (and an admin token) on the topology, for the session."""
    service = Authsvc(settings_env(topology, admin_token="admin-token-for-tests"))  # type: ignore[arg-type]
    service.start()
    yield service
    service.stop()


@pytest.fixture
def start_authsvc(topology: Topology, tmp_path: Path) -> Iterator[AuthsvcFactory]:
    """Start authsvc on the topology (or ``redis=``) with overridden settings."""
    started_: list[Authsvc] = []

    def start(redis: Topology | None = None, workers: int = 1, **overrides: object) -> Authsvc:
        env = settings_env(redis or topology, **overrides)  # type: ignore[arg-type]
        service = Authsvc(env, workers=workers)
        service.start()
        started_.append(service)
        return service

    yield start
    for service in started_:
        service.stop()

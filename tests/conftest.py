from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import harness
from harness import Authsvc, AuthsvcFactory, Client, RedisServer, Topology, settings_env

LAYERS = ("unit", "integration", "e2e")

# A run that collected more tests than it reports on fails (tests/support/every_test_ran.py).
pytest_plugins = ["every_test_ran"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries the marker of its layer (its folder): `-m integration` etc."""
    for item in items:
        layer = next((part for part in item.path.parts if part in LAYERS), None)
        if layer is not None:
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session", autouse=True)
def authsvc_logs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """authsvc's logs under this run's temporary folder, kept for the last three runs."""
    harness.LOGS = tmp_path_factory.mktemp("authsvc-logs")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests that break Redis use `own_redis`."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop, pause or flush."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def topology(redis_server: RedisServer) -> Topology:
    """The Redis that authsvc runs on; tests/integration runs its lease tests on every
    topology by overriding this."""
    return redis_server


@pytest.fixture(scope="session")
def authsvc(topology: Topology) -> Iterator[Authsvc]:
    """authsvc with default settings (and an admin token), shared by the session."""
    service = Authsvc(settings_env(topology, admin_token="admin-token-for-tests"))
    service.start()
    yield service
    service.stop()


@pytest.fixture
def start_authsvc(topology: Topology) -> Iterator[AuthsvcFactory]:
    """Start authsvc with overridden settings: start_authsvc(lease_ttl_s=1, redis=...)."""
    started: list[Authsvc] = []

    def start(redis: Topology | None = None, workers: int = 1, **overrides: object) -> Authsvc:
        env = settings_env(redis or topology, **overrides)  # type: ignore[arg-type]
        service = Authsvc(env, workers=workers)
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def client(authsvc: Authsvc) -> Iterator[Client]:
    c = Client(authsvc.url)
    yield c
    c.close()


@pytest.fixture
def authsvc_client_with_redis(
    start_authsvc: AuthsvcFactory, own_redis: RedisServer
) -> Iterator[tuple[Client, RedisServer]]:
    c = Client(start_authsvc(redis=own_redis).url)
    yield c, own_redis
    c.close()

"""The Redis client for ``AUTHSVC_REDIS_URL``, and the auto-pipeline that fits it.

- one Redis: a connection pool; the auto-pipeline writes each batch on one connection.
- Sentinel: the same, with a pool whose connections ask the sentinels for the primary
  each time they connect. A connection that fails (the primary died) or hears READONLY
  (it was demoted) is dropped, so the next batch connects to whatever the sentinels name
  then: requests succeed again as soon as a replica is promoted, without a restart.
- Cluster: redis-py's RedisCluster for the slot map and the per-node pools, driven by
  authsvc/cluster.py.

No call retries on its own: every batch runs under the pipeline's one timeout, and a hung
Redis must cost one timeout, not several.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from .cluster import ClusterPipeline
from .redis_url import parse
from .settings import Settings
from .store import AutoPipeline

Client = Redis | RedisCluster


def connect(settings: Settings) -> Client:
    """The client for ``settings.redis_url`` (nothing is connected yet).

    There is no per-read socket timeout (redis-py would arm a timer for every reply): the
    pipeline bounds each whole batch by ``redis_timeout_ms``.
    """
    url = parse(settings.redis_url)
    timeout = settings.redis_timeout_s
    common: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": timeout,
        "username": url.username,
        "password": url.password,
    }
    if url.mode == "single":
        return Redis.from_url(
            settings.redis_url,
            socket_timeout=None,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=256,
        )
    if url.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in url.hosts],
            # A primary that is down leaves its slots uncovered until a replica takes
            # over; the other nodes' slots must stay usable meanwhile.
            require_full_coverage=False,
            max_connections=256,
            ssl=url.tls,
            retry=AsyncRetry(NoBackoff(), 0),
            **common,
        )
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        url.hosts,
        # Sentinels answer quickly or not at all: a hung one must not hold up discovery.
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout, "ssl": url.tls},
        retry=Retry(NoBackoff(), 0),
        max_connections=256,
        ssl=url.tls,
        **common,
    )
    return cast(SentinelPrimary, sentinel.master_for(url.service, redis_class=SentinelPrimary))


class SentinelPrimary(Redis):
    """The primary's client from ``Sentinel.master_for``; closing it closes the clients
    of the sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            await manager.aclose()


def auto_pipeline(
    client: Client,
    timeout: float,
    wait: tuple[int, int] = (0, 0),
    on_wait_short: Callable[[int], None] | None = None,
) -> AutoPipeline:
    """The auto-pipeline for a client made by ``connect`` (or any redis-py client);
    ``wait`` = (replicas, ms) of the WAIT behind durable commands (authsvc/store.py)."""
    if isinstance(client, RedisCluster):
        return ClusterPipeline(client, timeout, wait=wait, on_wait_short=on_wait_short)
    return AutoPipeline(client, timeout, wait=wait, on_wait_short=on_wait_short)

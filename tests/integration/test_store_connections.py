"""The auto-pipeline keeps the connections it has used between batches (authsvc/store.py),
and reopens one before sending on it when redis-py's pool has closed it, when the server
has marked it for reconnection, or when Sentinel has named a primary it is not connected
to. Against a real redis-server and a real Sentinel set."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from authsvc.redis_client import auto_pipeline, connect
from authsvc.settings import Settings
from authsvc.store import AutoPipeline

from failover import wait_sentinel_failover
from harness import RedisServer, settings_env
from topologies import SentinelTopology, started


def pipeline_for(env: dict[str, str]) -> tuple[Any, AutoPipeline]:
    settings = Settings.from_env(env)
    client = connect(settings)
    return client, auto_pipeline(client, settings.redis_timeout_s)


async def client_id(pipeline: AutoPipeline) -> int:
    return int(await pipeline.execute("CLIENT", "ID"))


def test_a_connection_is_reused_and_reopened_once_closed_or_marked(redis_server: RedisServer) -> None:
    async def run() -> None:
        client, pipeline = pipeline_for(settings_env(redis_server))
        try:
            first = await client_id(pipeline)
            assert await client_id(pipeline) == first  # the same connection, batch after batch
            # Closed by the pool (what READONLY and MASTERDOWN replies do): reopened.
            await client.connection_pool.disconnect()
            second = await client_id(pipeline)
            assert second != first
            # Marked by the server's maintenance notices: reopened before it is sent on.
            (conn,) = pipeline._idle
            conn.mark_for_reconnect()  # type: ignore[no-untyped-call]
            third = await client_id(pipeline)
            assert third not in (first, second)
            assert await client_id(pipeline) == third
        finally:
            await client.aclose()

    asyncio.run(run())


def test_an_idle_connection_follows_the_primary_sentinel_names(tmp_path: Path) -> None:
    """The pool closes only the connections it holds itself when it learns of a new
    primary; the pipeline's own must not go on writing to the old one."""
    sentinel = started(SentinelTopology(tmp_path / "sentinel"))
    assert isinstance(sentinel, SentinelTopology)

    async def run() -> None:
        client, pipeline = pipeline_for(settings_env(sentinel))
        try:
            old = sentinel.primary_port()
            assert (await pipeline.execute("ROLE"))[0] == b"master"
            (conn,) = pipeline._idle
            assert conn.port == old  # type: ignore[attr-defined]
            sentinel.nodes.command(sentinel.sentinel_ports[0], "SENTINEL", "FAILOVER", sentinel.service)
            new = await asyncio.to_thread(wait_sentinel_failover, sentinel, old)
            # Another connection asks the sentinels (a new one opened under load would).
            assert await client.connection_pool.get_master_address() == (sentinel.nodes.host(new), new)
            assert pipeline._stale(conn)
            assert (await pipeline.execute("ROLE"))[0] == b"master"
            (conn,) = pipeline._idle
            assert conn.port == new  # type: ignore[attr-defined]
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        sentinel.stop()

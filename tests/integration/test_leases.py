"""The limiter and its Redis round trips in-process, against a real redis-server: no HTTP,
no authsvc process. Fast, and the first place to look when a decision is wrong."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from authsvc.leases import Leases, Outcome, StoreUnavailable
from authsvc.redis_client import auto_pipeline
from authsvc.redis_client import connect as redis_client
from authsvc.settings import Settings
from canwatch_stack.procs import free_port

from harness import RedisServer

T = TypeVar("T")


def run(redis: RedisServer, body: Callable[[Leases], Awaitable[T]], **settings: object) -> T:
    """Run ``body`` with a Leases of its own key space on ``redis``, closed afterwards."""
    config = Settings(redis_url=redis.url, key_prefix=f"l{free_port()}:", **settings)  # type: ignore[arg-type]

    async def main() -> T:
        client = redis_client(config)
        leases = Leases(client, config)
        try:
            return await body(leases)
        finally:
            await leases.close()
            await client.aclose()

    return asyncio.run(main())


def test_admits_up_to_the_limit_then_refuses_with_the_active_streams(redis_server: RedisServer) -> None:
    async def body(leases: Leases) -> None:
        outcomes = [(await leases.activate("u", f"s{i}")).outcome for i in range(3)]
        assert outcomes == [Outcome.ADMITTED] * 3
        assert (await leases.activate("u", "s1")).outcome is Outcome.REFRESHED  # no new slot
        refused = await leases.activate("u", "s3")
        assert refused.outcome is Outcome.LIMIT and refused.limit == 3
        assert sorted(lease.stream_id for lease in refused.active) == ["s0", "s1", "s2"]
        assert (await leases.activate("other", "s3")).outcome is Outcome.ADMITTED

    run(redis_server, body)


def test_evict_oldest_ends_the_lease_idle_longest(redis_server: RedisServer) -> None:
    async def body(leases: Leases) -> None:
        # A step apart, so that "longest idle" has one answer whatever the clock's resolution.
        for stream in ("a", "b"):
            await leases.activate("u", stream)
            await asyncio.sleep(0.01)
        await leases.touch("u", "a")  # b is now idle the longest
        result = await leases.activate("u", "c")
        assert result.outcome is Outcome.EVICTED and result.evicted == ("b",)
        assert [lease.stream_id for lease in (await leases.active("u")).leases] == ["a", "c"]

    run(redis_server, body, max_streams=2, limit_policy="evict_oldest")


def test_leases_refreshed_in_one_millisecond_keep_their_order(redis_server: RedisServer) -> None:
    """Activations of one loop turn go to Redis in one pipeline, a few microseconds apart:
    the order of their refreshes, not of their stream ids, decides which is idle longest."""

    async def body(leases: Leases) -> None:
        streams = ("z", "y", "x")  # the reverse of the order a tie would give
        await asyncio.gather(*(leases.activate("u", s) for s in streams))
        listed = await leases.active("u")
        assert [lease.stream_id for lease in listed.leases] == list(streams)
        await asyncio.gather(leases.touch("u", "z"), leases.touch("u", "y"))
        result = await leases.activate("u", "w")
        assert result.outcome is Outcome.EVICTED and result.evicted == ("x",)

    for _ in range(20):
        run(redis_server, body, limit_policy="evict_oldest")


def test_touch_deactivate_end_all_and_an_operator_limit(redis_server: RedisServer) -> None:
    async def body(leases: Leases) -> None:
        assert not (await leases.touch("u", "a")).alive
        await leases.activate("u", "a")
        touched = await leases.touch("u", "a")
        assert touched.alive and touched.expires_ms is not None
        assert await leases.deactivate("u", "a") is True
        assert await leases.deactivate("u", "a") is False
        await leases.set_limit("u", 1)
        await leases.activate("u", "a")
        assert (await leases.activate("u", "b")).outcome is Outcome.LIMIT
        assert (await leases.active("u", claim_limit=5)).operator_limit == 1
        await leases.set_limit("u", None)
        assert (await leases.active("u", claim_limit=5)).limit == 5  # the token's claim again
        assert await leases.end_all("u") == 1

    run(redis_server, body)


def test_leases_expire_with_their_ttl(redis_server: RedisServer) -> None:
    async def body(leases: Leases) -> None:
        await leases.activate("u", "a")
        assert len((await leases.active("u")).leases) == 1
        deadline = time.monotonic() + 30  # generous: the expiry is Redis's, 0.3 s after
        while time.monotonic() < deadline and (await leases.active("u")).leases:
            await asyncio.sleep(0.05)
        assert not (await leases.active("u")).leases
        assert not (await leases.touch("u", "a")).alive

    run(redis_server, body, lease_ttl_s=0.3)


def test_scripts_are_loaded_again_after_script_flush(redis_server: RedisServer) -> None:
    async def body(leases: Leases) -> None:
        await leases.activate("u", "a")
        redis_server.command("SCRIPT", "FLUSH")
        assert (await leases.activate("u", "b")).outcome is Outcome.ADMITTED

    run(redis_server, body)


def _connections(redis: RedisServer) -> int:
    stats = redis.command("INFO", "stats")
    line = next(x for x in stats.splitlines() if x.startswith("total_connections_received:"))
    return int(line.split(":")[1])


def test_commands_of_one_loop_turn_share_one_connection(own_redis: RedisServer) -> None:
    async def body(leases: Leases) -> None:
        before = _connections(own_redis)
        results = await asyncio.gather(*(leases.activate(f"user{i}", "s") for i in range(100)))
        assert all(r.outcome is Outcome.ADMITTED for r in results)
        # One for the 100 activations, one for the redis-cli that asks.
        assert _connections(own_redis) - before == 2

    run(own_redis, body)


def test_a_hung_redis_fails_the_batch_within_the_timeout(own_redis: RedisServer) -> None:
    async def body(leases: Leases) -> float:
        await leases.ping()
        own_redis.pause()
        try:
            start = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await asyncio.gather(*(leases.activate(f"u{i}", "s") for i in range(10)))
            return time.monotonic() - start
        finally:
            own_redis.resume()

    elapsed = run(own_redis, body, redis_timeout_ms=200)
    assert elapsed < 5  # 0.2 s timeout; the bound only catches a hang, not speed


def test_the_pipeline_answers_every_waiter_when_redis_is_gone(own_redis: RedisServer) -> None:
    async def body(leases: Leases) -> None:
        client = redis_client(Settings(redis_url=own_redis.url))
        pipeline = auto_pipeline(client, timeout=1.0)
        try:
            assert await pipeline.execute("PING") == b"PONG"
            own_redis.stop()
            replies = await asyncio.gather(
                *(pipeline.execute("PING") for _ in range(20)), return_exceptions=True
            )
            assert all(isinstance(r, StoreUnavailable) for r in replies), replies
        finally:
            await pipeline.drain()
            await client.aclose()

    run(own_redis, body)

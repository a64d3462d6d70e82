"""authsvc_active_leases and authsvc_active_users: the counters the scripts keep beside the
leases agree with the leases themselves, through every way a lease begins and ends, on one
counter hash or one per Cluster slot, and across replicas and workers."""

from __future__ import annotations

import asyncio
import random

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.crc import key_slot

from authsvc.leases import Leases, Outcome
from authsvc.settings import Settings
from authsvc.stats import StatsKeys, bucket_ms, read_counts, slot_tags

from harness import SECRET, Authsvc, Client, RedisServer, free_port, settings_env
from topologies import ClusterTopology
from until import until


def test_every_slot_has_a_tag_and_a_users_counters_share_its_slot() -> None:
    tags = slot_tags()
    assert [key_slot(t.encode()) for t in tags] == list(range(16384))
    assert max(len(t) for t in tags) <= 3
    keys = StatsKeys("canwatch:", per_slot=True)
    for _ in range(2000):
        user = "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=random.randint(1, 40)))
        assert key_slot(keys.for_user(user).encode()) == key_slot(f"canwatch:{{{user}}}:streams".encode())
    assert len(set(keys.every())) == 16384


async def _now(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _truth(redis: Redis, prefix: str, ttl_ms: int, before: int) -> tuple[range, range]:
    """The range the counts must fall in, from every lease key (the expensive way): from
    what is alive now to what is alive or expired within the bucket that was counted
    ``before`` (the documented error of one bucket)."""
    after = await _now(redis)
    width = bucket_ms(ttl_ms)
    oldest_counted = (before - ttl_ms) // width * width if ttl_ms else 0
    leases, users = [0, 0], [0, 0]
    async for key in redis.scan_iter(match=f"{prefix}{{*}}:streams"):
        pairs = await redis.zrange(key, 0, -1, withscores=True)
        scores = [float(pair[1]) for pair in pairs if isinstance(pair, (tuple, list))]
        alive = sum(1 for s in scores if not ttl_ms or s > after - ttl_ms)
        counted = sum(1 for s in scores if s >= oldest_counted)
        leases[0] += alive
        leases[1] += counted
        users[0] += alive > 0
        users[1] += counted > 0
    return range(leases[0], leases[1] + 1), range(users[0], users[1] + 1)


@pytest.mark.parametrize("per_slot", [False, True], ids=["one-hash", "per-slot"])
# The walk compares with the leases exactly, so none may expire during it (a TTL of 30 s);
# expiry itself is the next test's.
@pytest.mark.parametrize("ttl_s", [0.0, 30.0], ids=["never-expire", "ttl"])
def test_counts_follow_every_change(redis_server: RedisServer, per_slot: bool, ttl_s: float) -> None:
    prefix = f"g{free_port()}:"
    settings = Settings(
        redis_url=redis_server.url, secret=SECRET, key_prefix=prefix, lease_ttl_s=ttl_s,
        limit_policy="evict_oldest", max_streams=3,
    )  # fmt: skip

    async def scenario() -> None:
        redis = Redis.from_url(redis_server.url)
        leases = Leases(redis, settings, stats_per_slot=per_slot)
        ttl_ms = settings.lease_ttl_ms
        rng = random.Random(7)
        users = [f"user{i}" for i in range(40)]
        streams = [f"s{i}" for i in range(6)]

        async def agree() -> None:
            before = await _now(redis)
            counts = await read_counts(redis, leases.stats_keys, ttl_ms)
            lease_range, user_range = await _truth(redis, prefix, ttl_ms, before)
            assert counts.leases in lease_range and counts.users in user_range, (
                counts,
                lease_range,
                user_range,
            )

        try:
            for step in range(300):
                user, stream = rng.choice(users), rng.choice(streams)
                op = rng.random()
                if op < 0.5:
                    result = await leases.activate(user, stream)
                    assert result.outcome in (Outcome.ADMITTED, Outcome.REFRESHED, Outcome.EVICTED)
                elif op < 0.75:
                    await leases.touch(user, stream)
                elif op < 0.9:
                    await leases.deactivate(user, stream)
                elif op < 0.95:
                    await leases.active(user)
                else:
                    await leases.end_all(user)
                if step % 100 == 0:
                    await agree()
            await agree()
            held = (await read_counts(redis, leases.stats_keys, ttl_ms)).leases
            assert held > 10
        finally:
            await leases.close()
            await redis.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("per_slot", [False, True], ids=["one-hash", "per-slot"])
def test_expired_leases_leave_the_counts_within_one_bucket(redis_server: RedisServer, per_slot: bool) -> None:
    prefix = f"g{free_port()}:"
    settings = Settings(redis_url=redis_server.url, secret=SECRET, key_prefix=prefix, lease_ttl_s=1)

    async def scenario() -> None:
        redis = Redis.from_url(redis_server.url)
        leases = Leases(redis, settings, stats_per_slot=per_slot)
        ttl_ms = settings.lease_ttl_ms

        async def counts() -> tuple[int, int]:
            read = await read_counts(redis, leases.stats_keys, ttl_ms)
            return read.leases, read.users

        try:
            for user in range(20):
                for stream in range(user % 3 + 1):
                    await leases.activate(f"u{user}", f"s{stream}")
            assert await counts() == (39, 20)  # 1 + 2 + 3 streams, in turn
            # TTL + one bucket later, nothing is counted, though nothing ran in between.
            await asyncio.sleep((ttl_ms + bucket_ms(ttl_ms)) / 1000 + 0.1)
            assert await counts() == (0, 0)
            # Scripts that meet the expired leases drop them without counting them twice.
            for user in range(10):
                await leases.activate(f"u{user}", "s0")
                await leases.active(f"u{user + 10}")
            assert await counts() == (10, 10)
            assert await leases.deactivate("u0", "s0")
            assert await leases.end_all("u1") == 1
            assert await counts() == (8, 8)
        finally:
            await leases.close()
            await redis.aclose()

    asyncio.run(scenario())


def gauges(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name in ("authsvc_active_leases", "authsvc_active_users")
    }


def test_every_replica_and_worker_reports_the_global_counts(redis_server: RedisServer) -> None:
    env = settings_env(redis_server, lease_ttl_s=2)
    one, two = Authsvc(env), Authsvc(env, workers=2)
    try:
        one.start()
        two.start()
        client_one, client_two = Client(one.url), Client(two.url)
        users = [client_one.new_user() for _ in range(5)]
        for i, user in enumerate(users):
            for n in range(i % 3 + 1):  # 1 + 2 + 3 + 1 + 2 = 9 leases
                client = client_one if n % 2 else client_two
                assert client.activate(user, client.new_stream()).status_code == 200
        expected = {"authsvc_active_leases": 9, "authsvc_active_users": 5}
        # Fresh connections reach either worker; reads are kept 5 s, so allow for that.
        for url in (one.url, two.url, two.url, two.url):
            assert until(lambda u=url: gauges(u) == expected, 15), gauges(url)  # type: ignore[misc]
        # Nobody refreshes: the leases expire, and every replica sees it.
        gone = {"authsvc_active_leases": 0, "authsvc_active_users": 0}
        for url in (one.url, two.url):
            assert until(lambda u=url: gauges(u) == gone, 20), gauges(url)  # type: ignore[misc]
    finally:
        one.stop()
        two.stop()


def test_the_counts_are_global_on_a_cluster(redis_cluster: ClusterTopology) -> None:
    """Counters live in each user's own slot, spread over the three primaries; a scrape
    adds them all up."""
    service = Authsvc(settings_env(redis_cluster, lease_ttl_s=2))
    try:
        service.start()
        client = Client(service.url)
        users = [client.new_user() for _ in range(12)]
        slots = {key_slot(f"{{{user}}}".encode()) for user in users}
        assert len(slots) > 1
        for i, user in enumerate(users):
            for _ in range(i % 3 + 1):  # 4 users each with 1, 2 and 3 leases: 24
                assert client.activate(user, client.new_stream()).status_code == 200
        expected = {"authsvc_active_leases": 24, "authsvc_active_users": 12}
        assert until(lambda: gauges(service.url) == expected, 15), gauges(service.url)
        gone = {"authsvc_active_leases": 0, "authsvc_active_users": 0}
        assert until(lambda: gauges(service.url) == gone, 20), gauges(service.url)
    finally:
        service.stop()

"""AUTHSVC_REDIS_WAIT_REPLICAS: an activation is answered once a replica has its lease.

On a primary with one replica (two redis-server processes, REPLICAOF): the replica holds
the lease when the 200 arrives, also when it was paused until after the lease was written;
a replica that stays paused delays activations by AUTHSVC_REDIS_WAIT_MS, counted in
authsvc_redis_wait_short_total, and nothing else. In the auto-pipeline: a batch's other
commands are answered before its WAIT, and on a Cluster every node's share gets its own.
The failover under load with WAIT on is in test_failover.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode

from authsvc.cluster import ClusterPipeline
from authsvc.store import AutoPipeline
from canwatch_stack.procs import StackError

from harness import Authsvc, Client, need_binary, settings_env
from races import users_by_primary, wait_short
from replicated import PrimaryReplica
from topologies import ClusterTopology


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[PrimaryReplica]:
    need_binary("redis-server", "redis-server")
    need_binary("redis-cli", "redis-tools")
    pair = PrimaryReplica(tmp_path / "redis")
    try:
        pair.start()
    except StackError as exc:
        pytest.fail(str(exc))
    yield pair
    pair.stop()


def started(pair: PrimaryReplica, **overrides: str | int) -> tuple[Authsvc, str]:
    """authsvc on the pair's primary; and its key prefix."""
    env = settings_env(pair, **overrides)  # type: ignore[arg-type]
    service = Authsvc(env)
    service.start()
    return service, env["AUTHSVC_KEY_PREFIX"]


def on_replica(pair: PrimaryReplica, prefix: str, user: str, stream: str) -> bool:
    return pair.command(pair.replica, "ZSCORE", f"{prefix}{{{user}}}:streams", stream) != ""


def test_the_replica_has_the_lease_when_the_activation_is_answered(replicated: PrimaryReplica) -> None:
    service, prefix = started(replicated, redis_wait_replicas=1, redis_wait_ms=4000, redis_timeout_ms=5000)
    client = Client(service.url)
    try:
        user = client.new_user()
        first, second = client.new_stream(), client.new_stream()
        assert client.activate(user, first).status_code == 200
        assert on_replica(replicated, prefix, user, first)

        # The replica stopped: the lease is written on the primary, the answer is held.
        replicated.pause_replica()
        answers: list[int] = []

        def activate() -> None:
            other = Client(service.url)
            answers.append(other.activate(user, second).status_code)
            other.close()

        request = threading.Thread(target=activate)
        request.start()
        key = f"{prefix}{{{user}}}:streams"
        deadline = time.monotonic() + 3
        while replicated.command(replicated.primary, "ZSCORE", key, second) == "":
            assert time.monotonic() < deadline, "the lease never reached the primary"
        assert request.is_alive() and not answers
        replicated.resume_replica()
        request.join(10)
        assert answers == [200]
        assert on_replica(replicated, prefix, user, second)
        assert wait_short(service) == 0
    finally:
        client.close()
        service.stop()


def test_a_paused_replica_delays_only_activations_by_the_wait(replicated: PrimaryReplica) -> None:
    wait_s = 1.0
    service, _ = started(replicated, redis_wait_replicas=1, redis_wait_ms=1000, redis_timeout_ms=2000)
    client = Client(service.url)
    try:
        user, stream = client.new_user(), client.new_stream()
        replicated.pause_replica()
        started_at = time.monotonic()
        r = client.activate(user, stream)
        took = time.monotonic() - started_at
        # Answered (not 503, so within the 2 s Redis timeout) after the whole WAIT.
        assert r.status_code == 200, r.text
        assert took >= wait_s
        assert wait_short(service) == 1
        # A WAIT with the replica stopped always lasts its full timeout: these had none.
        gate = {"x-userid": user, "X-Original-URI": f"/watch/{stream}/seg1.ts"}
        calls: list[Callable[[], requests.Response]] = [
            lambda: client.heartbeat(user, stream),
            lambda: client.http.get(f"{service.url}/_authz", headers=gate, timeout=5),
            lambda: client.deactivate(user, stream),
        ]
        for call in calls:
            started_at = time.monotonic()
            answer = call()
            assert answer.status_code in (200, 204), answer.text
            assert time.monotonic() - started_at < wait_s
        assert wait_short(service) == 1
    finally:
        replicated.resume_replica()
        client.close()
        service.stop()


def test_a_batch_answers_its_other_commands_before_its_wait(replicated: PrimaryReplica) -> None:
    shorts: list[int] = []

    async def main() -> tuple[bool, object, object]:
        redis = Redis(host="127.0.0.1", port=replicated.primary)
        pipeline = AutoPipeline(redis, 5.0, wait=(1, 1000), on_wait_short=shorts.append)
        try:
            # Queued in the same event-loop turn: one batch, SET then PING then WAIT.
            durable = asyncio.ensure_future(pipeline.execute_durable("SET", "durable", "1"))
            plain = asyncio.ensure_future(pipeline.execute("PING"))
            pong = await plain
            held = not durable.done()
            return held, pong, await durable
        finally:
            await pipeline.drain()
            await redis.aclose()

    replicated.pause_replica()
    try:
        held, pong, ok = asyncio.run(main())
    finally:
        replicated.resume_replica()
    assert held, "the PING waited for the WAIT of the durable SET"
    assert (pong, ok) == (b"PONG", b"OK")
    assert shorts == [1]


def replica_has(cluster: ClusterTopology, primary: int, key: str) -> bool:
    """Whether the replica of the primary on ``primary`` holds ``key`` (READONLY: a
    replica answers reads of its primary's slots only on a connection that asks so)."""
    primary_id = next(n.node_id for n in cluster.cluster_nodes() if n.port == primary)
    port = next(n.port for n in cluster.cluster_nodes() if n.primary_id == primary_id)
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as conn:
        conn.execute_command("READONLY")
        return bool(conn.exists(key))


def test_every_cluster_node_waits_for_its_own_replica(redis_cluster: ClusterTopology) -> None:
    by_primary = {
        port: f"wait-test:{{{users[0]}}}" for port, users in users_by_primary(redis_cluster, 1).items()
    }

    async def run(replicas: int) -> list[int]:
        shorts: list[int] = []
        cluster = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in by_primary])
        pipeline = ClusterPipeline(cluster, 5.0, wait=(replicas, 200), on_wait_short=shorts.append)
        try:
            keys = list(by_primary.values())
            replies = await asyncio.gather(*(pipeline.execute_durable("SET", key, replicas) for key in keys))
            assert replies == [b"OK"] * len(keys)
        finally:
            await pipeline.drain()
            await cluster.aclose()
        return shorts

    # Each primary has one replica: WAIT 1 is met on every node, each replica has its key...
    assert asyncio.run(run(1)) == []
    assert all(replica_has(redis_cluster, port, key) for port, key in by_primary.items())
    # ...and WAIT 2 falls short on each of the three, counted once per node's share.
    assert sorted(asyncio.run(run(2))) == [1, 1, 1]

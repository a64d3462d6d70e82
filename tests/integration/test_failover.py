"""A primary SIGKILLed under load, on a Redis Cluster and on a Sentinel set.

200 users activate, heartbeat and pass the gate while the primary dies. Asserted: no
request waits past the Redis timeout + 100 ms; requests for slots on the other primaries
see no error at all; the 503s for the dead primary's slots end within LAG_S of Redis
having promoted a replica (failure detection at 1000 ms, then the election), and Redis
does that within PROMOTION_S; afterwards the limit is exact on the new primary. Leases
admitted just before the kill that did not reach the replica are lost (replication is
asynchronous): counted and printed, for the README. With
AUTHSVC_REDIS_WAIT_REPLICAS=1 on the Cluster, none is: every lease answered 200 had
reached a replica, unless its WAIT fell short (counted, and none does on a healthy set).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from failover import wait_cluster_failover, wait_sentinel_failover
from harness import Authsvc, Client, settings_env
from load import Load
from races import SEEN_S, SERVED_S, TIMEOUT_MS, codec, exact_race, slot_of, wait_for_requests, wait_short
from topologies import ClusterTopology, SentinelTopology, started

USERS = 200
# The 503 window is Redis's failover, then authsvc finding the new primary. Redis's part
# with node timeout / down-after 1000 ms: detection after 1.0-1.5 s, then (Cluster) an
# election delay of 0.5-1 s; promoted after 2.0-2.9 s here on an idle machine, past 3 s
# at times with both cores busy. authsvc's part, from a poller seeing the promotion to
# the last 503, was -0.16 to +0.07 s. So: Redis promotes within PROMOTION_S, and the 503s
# end within LAG_S of that; whenever Redis promotes within 2.5 s the window is at most 3 s.
PROMOTION_S = 5.0
LAG_S = 0.5


def lost_leases(load: Load) -> int:
    """Leases lost in the failover: seen gone by the load, or missing at the end."""
    client = Client(load.base)
    missing = 0
    for user, stream in load.current.items():
        if user in load.between:
            continue  # its lease was ended, its next not admitted when the load stopped
        r = client.active(user)
        assert r.status_code == 200, r.text
        missing += stream not in {a["streamId"] for a in r.json()["streams"]}
    client.close()
    return len(load.lost) + missing


def run_failover(
    service: Authsvc, kill: Callable[[], object], wait_failover: Callable[[], object], users: list[str]
) -> tuple[Load, float, float]:
    """Load on, kill, wait for the promotion and for the load to get through again; the
    load (stopped), the moment of the kill and how long after it Redis had promoted."""
    load = Load(service.url, users, {u: [codec.issue("stream") for _ in range(3)] for u in users})
    load.admit_all()
    load.start()
    try:
        wait_for_requests(load, 300)
        killed_at = time.monotonic()
        kill()
        wait_failover()
        promoted_after = time.monotonic() - killed_at
        wait_for_requests(load, len(load.outcomes) + 600)
    finally:
        load.stop()
    return load, killed_at, promoted_after


def check(
    service: Authsvc, load: Load, killed_at: float, promoted_after: float, affected: set[str], name: str
) -> int:
    """Assert the failover's bounds; the number of leases lost."""
    unaffected = set(load.users) - affected
    assert load.errors(unaffected) == []
    failed = load.errors(affected)
    assert {o.status for o in failed} <= {503}, {o.status for o in failed}
    window = max((o.started + o.seconds for o in failed), default=killed_at) - killed_at
    slowest = max(o.seconds for o in load.outcomes)
    served = service.slowest_answer(len(load.users) + len(load.outcomes))
    lost = lost_leases(load)
    print(
        f"\n{name}: {len(load.outcomes)} requests, {len(failed)} answered 503 over {window:.2f} s "
        f"after the kill (Redis promoted after {promoted_after:.2f} s), slowest {slowest * 1000:.0f} ms "
        f"({served * 1000:.0f} ms in authsvc), "
        f"leases lost {lost} of {len(load.users)}"
    )
    assert promoted_after <= PROMOTION_S
    assert window <= promoted_after + LAG_S
    assert slowest < SEEN_S
    assert served < SERVED_S
    after = [o for o in load.outcomes if o.user in affected and o.started > killed_at + window]
    assert after and all(o.status in (200, 403, 404) for o in after)
    return lost


def owner(cluster: ClusterTopology, user: str) -> int:
    return cluster.primary_of(slot_of(user))


def test_a_cluster_primary_killed_under_load(tmp_path: Path) -> None:
    cluster = started(ClusterTopology(tmp_path / "cluster"))
    assert isinstance(cluster, ClusterTopology)
    service = Authsvc(settings_env(cluster, redis_timeout_ms=TIMEOUT_MS, access_log=True))
    try:
        service.start()
        victim = cluster.primaries()[0]
        users = [codec.issue("user") for _ in range(USERS)]
        affected = {u for u in users if victim.owns(slot_of(u))}
        assert 0 < len(affected) < USERS
        promoted: list[int] = []
        load, killed_at, promoted_after = run_failover(
            service,
            lambda: cluster.kill(victim.port),
            lambda: promoted.append(wait_cluster_failover(cluster, victim.port)),
            users,
        )
        check(service, load, killed_at, promoted_after, affected, "cluster")
        user = next(
            u for u in iter(lambda: codec.issue("user"), "") if cluster.primary_of(slot_of(u)) == promoted[0]
        )
        assert [exact_race(service, user) for _ in range(1)] == [3]
    finally:
        service.stop()
        cluster.stop()


def test_with_wait_a_cluster_primary_killed_under_load_loses_no_lease(tmp_path: Path) -> None:
    cluster = started(ClusterTopology(tmp_path / "cluster"))
    assert isinstance(cluster, ClusterTopology)
    # After the kill the promoted replica has no replica of its own: its activations
    # wait the whole 50 ms (up to 150 ms: Redis's hz), still inside the timeout.
    env = settings_env(
        cluster, redis_timeout_ms=TIMEOUT_MS, redis_wait_replicas=1, redis_wait_ms=50, access_log=True
    )
    service = Authsvc(env)
    try:
        service.start()
        victim = cluster.primaries()[0]
        users = [codec.issue("user") for _ in range(USERS)]
        affected = {u for u in users if victim.owns(slot_of(u))}
        short_at_kill: list[float] = []

        def kill() -> None:
            cluster.kill(victim.port)
            # No WAIT on the dead node can answer from now on: these are every
            # admission answered before its replica had it.
            short_at_kill.append(wait_short(service))

        load, killed_at, promoted_after = run_failover(
            service, kill, lambda: wait_cluster_failover(cluster, victim.port), users
        )
        lost = check(service, load, killed_at, promoted_after, affected, "cluster, WAIT 1")
        print(f"short WAITs before the kill: {short_at_kill[0]:.0f}")
        assert lost <= short_at_kill[0]
        assert wait_short(service) > short_at_kill[0]  # the promoted primary has no replica
    finally:
        service.stop()
        cluster.stop()


def test_the_sentinel_primary_killed_under_load(tmp_path: Path) -> None:
    sentinel = started(SentinelTopology(tmp_path / "sentinel"))
    assert isinstance(sentinel, SentinelTopology)
    service = Authsvc(settings_env(sentinel, redis_timeout_ms=TIMEOUT_MS, access_log=True))
    try:
        service.start()
        primary = sentinel.primary_port()
        users = [codec.issue("user") for _ in range(USERS)]
        load, killed_at, promoted_after = run_failover(
            service, lambda: sentinel.kill(primary), lambda: wait_sentinel_failover(sentinel, primary), users
        )
        check(service, load, killed_at, promoted_after, set(users), "sentinel")
        assert exact_race(service, codec.issue("user")) == 3
    finally:
        service.stop()
        sentinel.stop()

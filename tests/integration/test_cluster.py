"""authsvc on a Redis Cluster: the limit stays exact on every primary, a primary that hangs
fails only its own slots, slots moving under load cost no request, scripts reload per node."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from failover import move_slot, reshard
from harness import Authsvc, Client, settings_env
from load import Load
from races import (
    SEEN_S,
    SERVED_S,
    TIMEOUT_MS,
    codec,
    exact_race,
    slot_of,
    users_by_primary,
    wait_for_requests,
)
from topologies import ClusterTopology


@pytest.fixture
def cluster_authsvc(redis_cluster: ClusterTopology) -> Iterator[Authsvc]:
    service = Authsvc(settings_env(redis_cluster, redis_timeout_ms=TIMEOUT_MS, access_log=True))
    service.start()
    yield service
    service.stop()


def test_forty_at_once_on_every_primary(redis_cluster: ClusterTopology, cluster_authsvc: Authsvc) -> None:
    by_primary = users_by_primary(redis_cluster, 7)
    users = [u for trio in zip(*by_primary.values(), strict=True) for u in trio][:20]
    assert {redis_cluster.primary_of(slot_of(u)) for u in users} == set(by_primary)
    assert [exact_race(cluster_authsvc, user) for user in users] == [3] * 20


def test_a_paused_primary_fails_only_its_own_slots_within_the_timeout(
    redis_cluster: ClusterTopology, cluster_authsvc: Authsvc
) -> None:
    by_primary = users_by_primary(redis_cluster, 5)
    paused, *others = sorted(by_primary)
    client = Client(cluster_authsvc.url)
    stream = codec.issue("stream")
    # CLIENT PAUSE stops its clients, not the cluster bus: no failover starts.
    redis_cluster.node_command(paused, "CLIENT", "PAUSE", "2000", "ALL")
    try:
        for port, users in by_primary.items():
            for user in users:
                started = time.monotonic()
                r = client.activate(user, stream)
                took = time.monotonic() - started
                if port == paused:
                    assert r.status_code == 503, r.text
                    assert took < SEEN_S
                else:
                    assert r.status_code == 200, r.text
    finally:
        redis_cluster.node_command(paused, "CLIENT", "UNPAUSE")
    assert others
    # Within the timeout by authsvc's own clock (its access log), 503s included.
    assert cluster_authsvc.slowest_answer(sum(len(users) for users in by_primary.values())) < SERVED_S
    r = client.http.get(f"{client.base}/readyz", timeout=5)
    assert r.status_code == 200, r.text
    client.close()


def test_scripts_flushed_on_every_node_are_loaded_again_where_needed(
    redis_cluster: ClusterTopology, cluster_authsvc: Authsvc
) -> None:
    users = [u for us in users_by_primary(redis_cluster, 3).values() for u in us]
    client = Client(cluster_authsvc.url)
    stream = codec.issue("stream")
    for user in users:
        assert client.activate(user, stream).status_code == 200
    for node in redis_cluster.primaries():
        assert redis_cluster.node_command(node.port, "SCRIPT", "FLUSH") == "OK"
    for user in users:
        assert client.heartbeat(user, stream).status_code == 200
        assert client.activate(user, codec.issue("stream")).status_code == 200
    client.close()


def test_resharding_under_load_fails_no_request(
    redis_cluster: ClusterTopology, cluster_authsvc: Authsvc
) -> None:
    """Slots move with their keys (redis-cli --cluster reshard, then CLUSTER SETSLOT steps
    with MIGRATE) while 200 users activate, heartbeat and pass the gate: no request fails,
    authsvc takes none past the timeout, no lease is lost, and the limit is exact afterwards."""
    source, target, _ = (n.port for n in redis_cluster.primaries())
    low = next(n for n in redis_cluster.primaries() if n.port == source).slots[0][0]
    # Half the users live in the first 110 slots of the source: those are the ones moved.
    moving: list[str] = []
    while len(moving) < 100:
        user = codec.issue("user")
        if low <= slot_of(user) < low + 110:
            moving.append(user)
    users = moving + [codec.issue("user") for _ in range(100)]
    load = Load(cluster_authsvc.url, users, {u: [codec.issue("stream") for _ in range(3)] for u in users})
    load.admit_all()
    load.start()
    try:
        wait_for_requests(load, 300)
        reshard(redis_cluster, source, target, 100)
        for slot in sorted({slot_of(u) for u in moving if slot_of(u) >= low + 100}):
            move_slot(redis_cluster, slot, target)
        wait_for_requests(load, len(load.outcomes) + 300)
    finally:
        load.stop()
    assert {redis_cluster.primary_of(slot_of(u)) for u in moving} == {target}
    assert load.errors() == []
    assert load.lost == []
    assert max(o.seconds for o in load.outcomes) < SEEN_S
    assert cluster_authsvc.slowest_answer(len(users) + len(load.outcomes)) < SERVED_S
    fresh = next(u for u in iter(lambda: codec.issue("user"), "") if low <= slot_of(u) < low + 110)
    assert exact_race(cluster_authsvc, fresh) == 3


def test_leases_end_and_start_while_their_slot_is_half_migrated(
    redis_cluster: ClusterTopology, cluster_authsvc: Authsvc
) -> None:
    """A slot in MIGRATING/IMPORTING, none of its keys moved yet: a script may run on the
    source, but Redis fails one that reads a key it has just deleted ("non local key": it
    cannot redirect mid-script). Ending a user's last lease deletes the key: it must answer
    200 all the same (it was a 500), with the lease gone once the slot has settled."""
    client = Client(cluster_authsvc.url)
    user, stream = codec.issue("user"), codec.issue("stream")
    assert client.activate(user, stream).status_code == 200
    slot = str(slot_of(user))
    source = next(n for n in redis_cluster.primaries() if n.owns(int(slot)))
    target = next(n for n in redis_cluster.primaries() if n.port != source.port)
    try:
        assert (
            redis_cluster.node_command(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            == "OK"
        )
        assert (
            redis_cluster.node_command(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
            == "OK"
        )
        ended = client.deactivate(user, stream)
        assert ended.status_code == 200, ended.text
    finally:
        for port in (source.port, target.port):
            redis_cluster.node_command(port, "CLUSTER", "SETSLOT", slot, "STABLE")
    assert client.active(user).json()["streams"] == []
    client.close()

"""authsvc cut off from Redis by a network partition: every packet between them dropped,
both ways, for 5 s, then healed; on one redis-server, a Sentinel set and a Cluster, each
on a test host of its own, with authsvc and nginx on this one.

A dropped packet is not a refused connection: a request written on a pooled connection
waits for a reply that never comes, a new connection waits for a SYN-ACK that never
comes. Asserted: through the edge, the API and the gate answer a JSON 503 within the
Redis timeout + 100 ms, each request timed; both answer again within 1 s of the heal;
no lease is lost; the limit is exact afterwards (40 activations sent at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from edge_harness import Player, launch
from netns import Host, HostedRedis, Net, OnHosts
from races import AT_ONCE, activation, codec, fire_at_once
from topologies import ClusterTopology, SentinelTopology, started

pytestmark = pytest.mark.network

TIMEOUT_MS = 250
BOUND_S = (TIMEOUT_MS + 100) / 1000
PARTITION_S = 5.0
HEALED_S = 1.0
LIMIT = 3


def unavailable(r: requests.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.json() == {"status": "ko", "error": "Service Unavailable"}


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    r = call()
    return r, time.monotonic() - started


@pytest.mark.parametrize("kind", ["single", "sentinel", "cluster"])
def test_a_partition_from_redis_is_a_prompt_503_and_heals_within_a_second(
    kind: str, net: Net, tmp_path: Path
) -> None:
    host = net.host("redis")
    redis: HostedRedis | ClusterTopology | SentinelTopology
    if kind == "single":
        redis = HostedRedis(tmp_path / "redis", host)
        redis.start()
    elif kind == "sentinel":
        redis = started(SentinelTopology(tmp_path / "redis", OnHosts(host)))
    else:
        redis = started(ClusterTopology(tmp_path / "redis", OnHosts(host)))
    try:
        stack = launch(tmp_path / "stack", redis_url=redis.url, redis_timeout_ms=TIMEOUT_MS)
        try:
            partition_and_heal(stack.url, stack.edge_settings.port, host, net.root.ip)
        finally:
            stack.stop()
    finally:
        redis.stop()


def partition_and_heal(url: str, port: int, host: Host, authsvc_ip: str) -> None:
    """Leases to the limit; the partition; the heal; the leases and the limit after it."""
    player = Player(url)
    user = codec.issue("user")
    leases = [codec.issue("stream") for _ in range(LIMIT)]
    for stream in leases:
        assert player.activate(user, stream).status_code == 200
    assert player.watch(leases[0], user).status_code == 200

    host.cut(authsvc_ip)
    cut_at = time.monotonic()
    seen: list[tuple[str, float]] = []
    while time.monotonic() - cut_at < PARTITION_S:
        r, api_s = timed(lambda: player.activate(user, codec.issue("stream")))
        unavailable(r)
        r, gate_s = timed(lambda: player.watch(leases[0], user))
        unavailable(r)
        seen += [("api", api_s), ("gate", gate_s)]
    assert host.dropped() > 0  # the rules did drop packets: a partition, not a refusal
    host.heal()
    healed_at = time.monotonic()

    def answers() -> bool:
        return player.watch(leases[0], user).status_code == 200 and player.active(user).status_code == 200

    while not answers():
        assert time.monotonic() - healed_at < 10, "no answer 10 s after the heal"
    back_s = time.monotonic() - healed_at
    slowest = max(s for _, s in seen)
    print(
        f"\n{len(seen)} requests during the partition, all 503, slowest {slowest * 1000:.0f} ms; "
        f"answering {back_s * 1000:.0f} ms after the heal"
    )
    assert slowest <= BOUND_S, seen
    assert back_s <= HEALED_S

    # No lease lost; then one slot free, and exactly one of 40 simultaneous activations gets it.
    active = {s["streamId"] for s in player.active(user).json()["streams"]}
    assert active == set(leases)
    assert player.deactivate(user, leases[0]).status_code == 200
    streams = [codec.issue("stream") for _ in range(AT_ONCE)]
    replies = fire_at_once(port, [activation(user, s) for s in streams])
    admitted = {s for s, (status, _) in zip(streams, replies, strict=True) if status == 200}
    assert len(admitted) == 1 and {status for status, _ in replies} == {200, 403}
    active = {s["streamId"] for s in player.active(user).json()["streams"]}
    assert active == set(leases[1:]) | admitted
    player.close()

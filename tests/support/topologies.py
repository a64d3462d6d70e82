"""The Redis topologies the lease tests run against: one redis-server (harness.RedisServer),
a Redis Cluster of 3 primaries + 3 replicas, and a Sentinel set (primary, replica, 3
sentinels), all on free loopback ports and stopped by PID. Each has ``url`` (for
AUTHSVC_REDIS_URL) and ``command(*args)`` (redis-cli against whichever node holds the key)."""

from __future__ import annotations

from pathlib import Path

from canwatch_stack.procs import StackError
from canwatch_stack.topology import LocalCluster, LocalSentinel, Placement

from harness import need_binary


class ClusterTopology(LocalCluster):
    """LocalCluster whose ``command`` follows redirects (redis-cli -c) from a live primary."""

    def __init__(self, workdir: Path, placement: Placement | None = None) -> None:
        need_binary("redis-server", "redis-server")
        need_binary("redis-cli", "redis-tools")
        super().__init__(workdir, placement=placement)

    def command(self, *args: str) -> str:  # type: ignore[override]
        return self.nodes.command(self.primaries()[0].port, "-c", *args)

    def node_command(self, port: int, *args: str) -> str:
        return super().command(port, *args)


class SentinelTopology(LocalSentinel):
    """LocalSentinel whose ``command`` goes to the primary the sentinels name now."""

    def __init__(self, workdir: Path, placement: Placement | None = None) -> None:
        need_binary("redis-server", "redis-server")
        need_binary("redis-cli", "redis-tools")
        super().__init__(workdir, placement=placement)

    def command(self, *args: str) -> str:  # type: ignore[override]
        return self.nodes.command(self.primary_port(), *args)


def started(topology: ClusterTopology | SentinelTopology) -> ClusterTopology | SentinelTopology:
    try:
        topology.start()
    except StackError as exc:
        raise AssertionError(str(exc)) from None
    return topology

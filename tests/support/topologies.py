"""The Redis topologies the lease tests run against: one redis-server (harness.RedisServer),
a Redis Cluster of 3 primaries + 3 replicas, and a Sentinel set (primary, replica, 3
sentinels), all on free loopback ports and stopped by PID. Each has ``url`` (for
AUTHSVC_REDIS_URL) and ``command(*args)`` (redis-cli against whichever node holds the key)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from canwatch_stack.procs import StackError
from canwatch_stack.topology import LocalCluster, LocalSentinel

from harness import HOST, need_binary


def _cli(port: int, *args: str, cluster: bool = False) -> str:
    cli = need_binary("redis-cli", "redis-tools")
    mode = ["-c"] if cluster else []
    out = subprocess.run(
        [cli, *mode, "-h", HOST, "-p", str(port), *args], capture_output=True, text=True, timeout=5
    )
    return out.stdout.strip()


class ClusterTopology(LocalCluster):
    """LocalCluster whose ``command`` follows redirects (redis-cli -c) from a live primary."""

    def __init__(self, workdir: Path) -> None:
        need_binary("redis-server", "redis-server")
        super().__init__(workdir)

    def command(self, *args: str) -> str:  # type: ignore[override]
        return _cli(self.primaries()[0].port, *args, cluster=True)

    def node_command(self, port: int, *args: str) -> str:
        return super().command(port, *args)


class SentinelTopology(LocalSentinel):
    """LocalSentinel whose ``command`` goes to the primary the sentinels name now."""

    def __init__(self, workdir: Path) -> None:
        need_binary("redis-server", "redis-server")
        super().__init__(workdir)

    def command(self, *args: str) -> str:  # type: ignore[override]
        return _cli(self.primary_port(), *args)


def started(topology: ClusterTopology | SentinelTopology) -> ClusterTopology | SentinelTopology:
    try:
        topology.start()
    except StackError as exc:
        raise AssertionError(str(exc)) from None
    return topology

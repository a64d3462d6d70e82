"""What the tests do to a Redis Cluster or Sentinel set beyond running it: wait for a
failover, move slots with their keys."""

from __future__ import annotations

import subprocess
from typing import Any

import redis

from canwatch_stack.procs import LOOPBACK, StackError
from canwatch_stack.topology import LocalCluster, LocalSentinel, info_fields, wait_until


def _command(conn: redis.Redis, *args: Any) -> Any:
    return conn.execute_command(*args)  # type: ignore[no-untyped-call]


def wait_cluster_failover(cluster: LocalCluster, dead_port: int, timeout: float = 15.0) -> int:
    """Wait until a replica serves the slots ``dead_port`` served; its port."""
    dead = [n for n in cluster.cluster_nodes() if n.port == dead_port]
    slot = dead[0].slots[0][0] if dead and dead[0].slots else None
    if slot is None:
        raise StackError(f"node {dead_port} served no slots")
    found: list[int] = []

    def promoted() -> bool:
        try:
            port = cluster.primary_of(slot)
        except StackError:
            return False
        if port == dead_port:
            return False
        found.append(port)
        return True

    wait_until(f"failover of {dead_port}", promoted, timeout)
    return found[-1]


def move_slot(cluster: LocalCluster, slot: int, target_port: int, batch: int = 100) -> int:
    """Move one slot to the primary on ``target_port`` by the CLUSTER SETSLOT steps,
    MIGRATE-ing its keys in batches; the number of keys moved.

    IMPORTING on the target, MIGRATING on the source, keys moved (clients meanwhile
    get ASK for keys already gone, TRYAGAIN for scripts whose keys are split), then
    NODE on both and on every other primary. One connection per node, as redis-cli
    --cluster reshard does: the slot is in between for milliseconds.
    """
    nodes = {n.port: n for n in cluster.cluster_nodes()}
    source = next(n for n in nodes.values() if n.primary and n.owns(slot))
    target = nodes[target_port]
    if source.port == target_port:
        return 0
    others = [n.port for n in nodes.values() if n.primary and not n.failed]
    conns = {port: redis.Redis(host=LOOPBACK, port=port, socket_timeout=5) for port in others}
    try:
        _command(conns[target_port], "CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
        _command(conns[source.port], "CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
        moved = 0
        from_ = conns[source.port]
        while keys := _command(from_, "CLUSTER GETKEYSINSLOT", slot, batch):
            _command(from_, "MIGRATE", LOOPBACK, target_port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        _command(conns[target_port], "CLUSTER SETSLOT", slot, "NODE", target.node_id)
        _command(conns[source.port], "CLUSTER SETSLOT", slot, "NODE", target.node_id)
        for port in others:
            if port not in (source.port, target_port):
                _command(conns[port], "CLUSTER SETSLOT", slot, "NODE", target.node_id)
    except redis.RedisError as exc:
        raise StackError(f"moving slot {slot} to {target_port}: {exc}") from None
    finally:
        for conn in conns.values():
            conn.close()
    return moved


def reshard(
    cluster: LocalCluster, source_port: int, target_port: int, slots: int, timeout: float = 60.0
) -> None:
    """Move ``slots`` slots (the lowest numbered) with their keys from one primary to
    another with ``redis-cli --cluster reshard``."""
    nodes = {n.port: n for n in cluster.cluster_nodes()}
    args = [cluster.nodes.cli, "--cluster", "reshard", f"{LOOPBACK}:{source_port}"]
    args += ["--cluster-from", nodes[source_port].node_id, "--cluster-to", nodes[target_port].node_id]
    args += ["--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "100"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise StackError(f"redis-cli --cluster reshard failed:\n{out.stdout[-800:]}{out.stderr[-400:]}")


def wait_sentinel_failover(sentinel: LocalSentinel, dead_port: int, timeout: float = 15.0) -> int:
    """Wait until the sentinels name a new primary that says it is one; its port."""
    found: list[int] = []

    def promoted() -> bool:
        try:
            port = sentinel.primary_port()
        except StackError:
            return False
        if port == dead_port:
            return False
        role = info_fields(sentinel.nodes.command(port, "INFO", "replication")).get("role")
        found.append(port)
        return role == "master"

    wait_until(f"sentinel failover of {dead_port}", promoted, timeout)
    return found[-1]

"""Local Redis topologies on loopback ports: a Redis Cluster of primaries with replicas and
a Sentinel-managed primary/replica set, from Debian's redis-server, stopped by PID.

Tooling for the tests, the benchmarks and ``make run`` (never imported by the service).
Both are tuned to fail over fast (cluster-node-timeout and down-after-milliseconds of
1000 ms) so that failover tests finish in seconds; each has a ``url`` in the form
``AUTHSVC_REDIS_URL`` takes.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .procs import LOOPBACK, StackError, find_binary, free_port, spawn, stop_process, wait_port

SLOTS = 16384


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` until it holds; StackError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not ready after {timeout:g} s")
        time.sleep(0.05)


def info_fields(text: str) -> dict[str, str]:
    """``key:value`` lines (INFO, CLUSTER INFO) as a dict."""
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, _, v in pairs}


class Placement:
    """Where a topology's nodes run: here, on the loopback address. The network tests
    place each node on a test host of its own (tests/support/netns.py) by overriding both."""

    def host(self, port: int) -> str:
        """The address the node on ``port`` binds and is reached at."""
        return LOOPBACK

    def command(self, port: int, args: list[str]) -> list[str]:
        """``args`` as run where the node on ``port`` lives (its redis-cli commands too)."""
        return args


class Nodes:
    """redis-server processes of one topology, each under ``workdir/<port>/``."""

    def __init__(self, workdir: Path, placement: Placement | None = None) -> None:
        self.workdir = workdir
        self.placement = placement or Placement()
        self.binary = find_binary("redis-server")
        self.cli = find_binary("redis-cli")
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.args: dict[int, list[str]] = {}

    def spawn(self, port: int, args: list[str], wait: bool = True) -> None:
        """Start redis-server with ``args`` (remembered for ``restart``) on ``port``."""
        self.args[port] = args
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        log = node_dir / "redis.log"
        proc = spawn(self.placement.command(port, args), log)
        self.procs[port] = proc
        if wait:
            try:
                wait_port(port, proc, log, host=self.placement.host(port))
            except BaseException:
                self.stop()
                raise

    def command(self, port: int, *args: str, timeout: float = 5.0) -> str:
        """One redis-cli command against the node on ``port``; its output ("" if it fails)."""
        try:
            out = subprocess.run(
                self.placement.command(port, [self.cli, "-h", self.host(port), "-p", str(port), *args]),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return ""
        return out.stdout.strip()

    def host(self, port: int) -> str:
        return self.placement.host(port)

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Stop one node abruptly (SIGKILL: no shutdown, no last words to its replicas)."""
        stop_process(self.procs.pop(port), sig)

    def restart(self, port: int) -> None:
        """Start a stopped node again with the arguments it had."""
        if port in self.procs and self.procs[port].poll() is None:
            return
        self.spawn(port, self.args[port])

    def stop(self) -> None:
        """Stop every node by its PID."""
        for port in list(self.procs):
            stop_process(self.procs.pop(port), signal.SIGKILL)

    def base_args(self, port: int) -> list[str]:
        node_dir = self.workdir / str(port)
        return [
            self.binary, "--port", str(port), "--bind", self.host(port), "--dir", str(node_dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
            "--protected-mode", "no",
        ]  # fmt: skip


@dataclass(frozen=True)
class ClusterNode:
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    primary: bool
    primary_id: str  # "-" for a primary
    failed: bool
    slots: tuple[tuple[int, int], ...]  # inclusive ranges

    def owns(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)


class LocalCluster:
    """A Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each.

    Every node has a client port and a bus port of its own (``--cluster-port``: the
    default, port + 10000, may not be free). cluster-node-timeout is ``node_timeout_ms``,
    so a dead primary is replaced about two timeouts after it stops answering.
    """

    def __init__(
        self,
        workdir: Path,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        placement: Placement | None = None,
    ) -> None:
        self.nodes = Nodes(workdir, placement)
        self.size = primaries * (1 + replicas)
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a seed."""
        return "redis+cluster://" + ",".join(f"{self.nodes.host(p)}:{p}" for p in self.ports)

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes, create the cluster and return once every node says it is ok."""
        ports: set[int] = set()
        while len(ports) < 2 * self.size:
            ports.add(free_port())
        client, bus = sorted(ports)[: self.size], sorted(ports)[self.size :]
        self.ports = client
        try:
            for port, bus_port in zip(client, bus, strict=True):
                args = [
                    *self.nodes.base_args(port),
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms), "--cluster-port", str(bus_port),
                    # Otherwise every node refuses every command (CLUSTERDOWN) from a
                    # primary's failure until its replica takes over, about 1-2 s.
                    "--cluster-require-full-coverage", "no",
                ]  # fmt: skip
                self.nodes.spawn(port, args)
            create = [self.nodes.cli, "--cluster", "create", *(f"{self.nodes.host(p)}:{p}" for p in client)]
            create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            out = subprocess.run(create, capture_output=True, text=True, timeout=timeout)
            if out.returncode != 0:
                tail = out.stdout[-800:] + out.stderr[-800:]
                raise StackError(f"redis-cli --cluster create failed:\n{tail}")
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node by PID."""
        self.nodes.stop()

    def command(self, port: int, *args: str) -> str:
        return self.nodes.command(port, *args)

    def cluster_nodes(self, port: int | None = None) -> list[ClusterNode]:
        """The topology as one live node (or ``port``) sees it."""
        for asked in [port] if port else self.live_ports():
            text = self.nodes.command(asked, "CLUSTER", "NODES")
            if text:
                return [_parse_node(line) for line in text.splitlines() if line.strip()]
        raise StackError("no cluster node answers CLUSTER NODES")

    def live_ports(self) -> list[int]:
        return [p for p in self.ports if p in self.nodes.procs and self.nodes.procs[p].poll() is None]

    def primaries(self) -> list[ClusterNode]:
        """The primaries that own slots, by port."""
        nodes = self.cluster_nodes()
        return sorted((n for n in nodes if n.primary and n.slots and not n.failed), key=lambda n: n.port)

    def primary_of(self, slot: int) -> int:
        """The port of the primary serving ``slot`` now."""
        for node in self.primaries():
            if node.owns(slot):
                return node.port
        raise StackError(f"no primary serves slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL one node."""
        self.nodes.kill(port)

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed node again (it rejoins, as a replica if it was failed over)."""
        self.nodes.restart(port)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every live node says cluster_state:ok with all slots served, every
        live node agrees on who serves them, and every replica's link to its primary is up
        (a replica still syncing could not take over)."""

        def ready() -> bool:
            views = set()
            for port in self.live_ports():
                info = info_fields(self.nodes.command(port, "CLUSTER", "INFO"))
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                text = self.nodes.command(port, "CLUSTER", "NODES")
                nodes = [_parse_node(line) for line in text.splitlines() if line.strip()]
                views.add(tuple(sorted((n.port, n.slots) for n in nodes if n.primary and n.slots)))
                repl = info_fields(self.nodes.command(port, "INFO", "replication"))
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return False
            return len(views) == 1

        wait_until("redis cluster", ready, timeout)

    def _ok(self, port: int, *args: str) -> None:
        reply = self.nodes.command(port, *args)
        if reply != "OK":
            raise StackError(f"{' '.join(args)} on {port}: {reply}")


def _parse_node(line: str) -> ClusterNode:
    parts = line.split()
    flags = parts[2].split(",")
    port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
    slots = []
    for item in parts[8:]:
        if item.startswith("["):  # a slot being imported or migrated
            continue
        low, _, high = item.partition("-")
        slots.append((int(low), int(high or low)))
    return ClusterNode(
        node_id=parts[0],
        port=port,
        primary="master" in flags,
        primary_id=parts[3],
        failed="fail" in flags,
        slots=tuple(slots),
    )


class LocalSentinel:
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels watching them under
    ``service`` (quorum 2), with down-after-milliseconds ``down_after_ms``."""

    def __init__(
        self,
        workdir: Path,
        replicas: int = 1,
        sentinels: int = 3,
        service: str = "canwatch",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
        placement: Placement | None = None,
    ) -> None:
        self.nodes = Nodes(workdir, placement)
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.data_ports: list[int] = []
        self.sentinel_ports: list[int] = []

    @property
    def url(self) -> str:
        """``redis+sentinel://`` with every sentinel and the service name."""
        hosts = ",".join(f"{self.nodes.host(p)}:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the primary, its replicas and the sentinels; return once every sentinel
        knows the primary, every replica and the other sentinels (a failover needs them)."""
        ports: set[int] = set()
        while len(ports) < 1 + self.replica_count + self.sentinel_count:
            ports.add(free_port())
        ordered = sorted(ports)
        self.data_ports = ordered[: 1 + self.replica_count]
        self.sentinel_ports = ordered[1 + self.replica_count :]
        primary = self.data_ports[0]
        try:
            self.nodes.spawn(primary, self.nodes.base_args(primary))
            for port in self.data_ports[1:]:
                replica = [*self.nodes.base_args(port), "--replicaof", self.nodes.host(primary), str(primary)]
                self.nodes.spawn(port, replica)
            for port in self.sentinel_ports:
                conf = self._sentinel_conf(port, primary)
                self.nodes.spawn(port, [self.nodes.binary, str(conf), "--sentinel"])
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _sentinel_conf(self, port: int, primary: int) -> Path:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        # Sentinel rewrites its config file with what it learns: it must be its own.
        conf = node_dir / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind {self.nodes.host(port)}\nprotected-mode no\ndaemonize no\ndir {node_dir}\n"
            f"loglevel warning\nsentinel monitor {self.service} {self.nodes.host(primary)} {primary} 2\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        return conf

    @property
    def workdir(self) -> Path:
        return self.nodes.workdir

    def stop(self) -> None:
        """Stop the sentinels and the data nodes by PID."""
        self.nodes.stop()

    def command(self, port: int, *args: str) -> str:
        return self.nodes.command(port, *args)

    def primary_port(self) -> int:
        """The primary as the sentinels (a majority of those answering) see it now."""
        seen: dict[int, int] = {}
        for port in self.sentinel_ports:
            reply = self.nodes.command(port, "SENTINEL", "get-master-addr-by-name", self.service).split()
            if len(reply) == 2:
                seen[int(reply[1])] = seen.get(int(reply[1]), 0) + 1
        if not seen:
            raise StackError("no sentinel answers")
        return max(seen, key=lambda p: seen[p])

    def kill(self, port: int) -> None:
        """SIGKILL one data node or sentinel."""
        self.nodes.kill(port)

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed data node again; the sentinels make it a replica of the current
        primary. Returns once everything is ready again."""
        self.nodes.restart(port)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Every sentinel agrees on the primary, which says it is one, and knows every
        live replica (link up) and every other sentinel."""
        live_data = [p for p in self.data_ports if p in self.nodes.procs]

        def ready() -> bool:
            primaries = set()
            for port in self.sentinel_ports:
                state = _fields_pairs(self.nodes.command(port, "SENTINEL", "master", self.service))
                if state.get("flags") != "master":
                    return False
                if state.get("num-other-sentinels") != str(self.sentinel_count - 1):
                    return False
                if state.get("num-slaves") != str(len(live_data) - 1):
                    return False
                primaries.add(state.get("port"))
            if len(primaries) != 1:
                return False
            primary = int(primaries.pop() or 0)
            if info_fields(self.nodes.command(primary, "INFO", "replication")).get("role") != "master":
                return False
            for port in live_data:
                if port != primary:
                    repl = info_fields(self.nodes.command(port, "INFO", "replication"))
                    if repl.get("master_port") != str(primary) or repl.get("master_link_status") != "up":
                        return False
            return True

        wait_until("redis sentinel", ready, timeout)


def _fields_pairs(text: str) -> dict[str, str]:
    """A flat name/value reply as redis-cli prints it, one item a line."""
    lines = text.splitlines()
    return dict(zip(lines[0::2], lines[1::2], strict=False))

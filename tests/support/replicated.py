"""A primary with one replica (REPLICAOF), no sentinels: the smallest set where WAIT has
something to wait for. For the WAIT tests and ``make bench-scale`` (BENCH_PARTS=wait);
never imported by the service.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from canwatch_stack.procs import LOOPBACK, free_port
from canwatch_stack.topology import Nodes, info_fields, wait_until


class PrimaryReplica:
    """redis-server on ``primary`` and a replica of it on ``replica``, stopped by PID."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = Nodes(workdir)
        self.primary = 0
        self.replica = 0

    @property
    def url(self) -> str:
        """The primary's ``redis://`` URL (AUTHSVC_REDIS_URL)."""
        return f"redis://{LOOPBACK}:{self.primary}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start both and return once the replica's link is up and it has synced."""
        self.primary = free_port()
        self.replica = free_port()
        while self.replica == self.primary:
            self.replica = free_port()
        try:
            # The default waits 5 s for more replicas before a diskless full sync.
            primary = [*self.nodes.base_args(self.primary), "--repl-diskless-sync-delay", "0"]
            self.nodes.spawn(self.primary, primary)
            args = [*self.nodes.base_args(self.replica), "--replicaof", LOOPBACK, str(self.primary)]
            self.nodes.spawn(self.replica, args)
            wait_until("replica link", self.linked, timeout)
        except BaseException:
            self.stop()
            raise

    def linked(self) -> bool:
        """True when the replica is connected to the primary and in sync."""
        repl = info_fields(self.nodes.command(self.replica, "INFO", "replication"))
        return repl.get("master_link_status") == "up" and repl.get("master_sync_in_progress") == "0"

    def command(self, port: int, *args: str) -> str:
        """One redis-cli command against ``port`` (the primary or the replica)."""
        return self.nodes.command(port, *args)

    def pause_replica(self) -> None:
        """SIGSTOP the replica: it stays connected but acknowledges nothing."""
        os.kill(self.nodes.procs[self.replica].pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        os.kill(self.nodes.procs[self.replica].pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop both by PID (SIGKILL, which a paused replica gets too)."""
        self.nodes.stop()

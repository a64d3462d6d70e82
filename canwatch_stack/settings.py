"""Settings of the local stack (``CANWATCH_STACK_*``, read by `make run` alone): which Redis
it starts, and the ports of the processes it runs behind the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from authsvc.settings import SettingsError, choice, int_range, read_env, setting

RedisShape = Literal["single", "cluster", "sentinel"]


@dataclass(frozen=True)
class StackSettings:
    """Ports and switches of the local stack that `make run` starts (Redis, authsvc, the
    demo origin); the edge's own are in ``canwatch_edge.settings``."""

    PREFIX: ClassVar[str] = "CANWATCH_STACK_"
    READER: ClassVar[str] = "stack"

    redis: RedisShape = setting(
        "single",
        choice("single", "cluster", "sentinel"),
        "Redis the stack starts: single, cluster (3 primaries + 3 replicas) or sentinel "
        "(primary, replica, 3 sentinels); cluster and sentinel start 2 authsvc replicas",
    )
    redis_port: int = setting(6390, int_range(1, 65535), "port of the local redis-server (single)")
    api_port: int = setting(
        9005,
        int_range(1, 65535),
        "port of authsvc; further replicas take the next ports the stack leaves free",
    )
    api_replicas: int = setting(1, int_range(1, 16), "authsvc processes the stack starts behind nginx")
    workers: int = setting(1, int_range(1, 64), "worker processes of each authsvc")
    origin_port: int = setting(9006, int_range(1, 65535), "port of the demo stream origin")

    def __post_init__(self) -> None:
        if self.api_port + self.api_replicas + 8 > 65535:
            raise SettingsError("CANWATCH_STACK_API_REPLICAS: the replicas' ports would pass 65535")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        """Read the ``CANWATCH_STACK_*`` variables; raise SettingsError naming a bad one."""
        values = read_env(cls, os.environ if env is None else env)
        # A Cluster or a Sentinel set is there to survive a failure: so are the replicas.
        if values.get("redis", "single") != "single":
            values.setdefault("api_replicas", 2)
        return cls(**values)

    def api_ports(self, taken: tuple[int, ...] = ()) -> tuple[int, ...]:
        """The ports of the authsvc replicas: ``api_port``, then the next ones that are not
        ``taken`` by another part of the stack (the demo origin is 9006 by default)."""
        ports: list[int] = []
        port = self.api_port
        while len(ports) < self.api_replicas:
            if port not in taken and port not in (self.origin_port, self.redis_port):
                ports.append(port)
            port += 1
        return tuple(ports)

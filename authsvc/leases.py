"""The limiter: stream leases kept in Redis, one atomic Lua script per decision.

No HTTP in here. Every Redis failure, including a timeout, surfaces as
``StoreUnavailable`` so that callers answer 503 and never mistake it for a refusal.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import RedisCluster

from .redis_client import Client, auto_pipeline
from .settings import Settings
from .stats import StatsKeys, bucket_ms
from .store import Script, StoreUnavailable

__all__ = ["Activation", "ActiveLeases", "Lease", "Leases", "Outcome", "StoreUnavailable", "Touch"]


class Outcome(enum.Enum):
    ADMITTED = 1
    REFRESHED = 2
    LIMIT = 3
    EVICTED = 4
    SHADOW = 5


@dataclass(frozen=True)
class Lease:
    stream_id: str
    refreshed_ms: int
    expires_ms: int | None  # None when leases never expire
    device_id: str | None = None  # the device that holds it, when one said so
    started_ms: int | None = None  # when it was admitted; None for a lease from before starts were kept


@dataclass(frozen=True)
class Activation:
    outcome: Outcome
    limit: int
    active_count: int
    expires_ms: int | None
    evicted: tuple[str, ...] = ()
    active: tuple[Lease, ...] = ()  # filled when refused at the limit
    replaced: tuple[str, ...] = ()  # the device's other leases, ended to admit this one
    counted: int = 0  # what the limit compares with: leases, or devices (AUTHSVC_LIMIT_BY)


@dataclass(frozen=True)
class Touch:
    alive: bool
    expires_ms: int | None


@dataclass(frozen=True)
class ActiveLeases:
    leases: tuple[Lease, ...]
    limit: int
    operator_limit: int | None


def _script(name: str) -> str:
    """The script with the counters' functions (lua/stats.lua) before it.

    Declared with a shebang (no flags: it may write, it may not run out of memory) so that
    Redis checks maxmemory before the script starts and refuses it whole with OOM. Without
    one, Redis checks only each write command that may grow memory, and none after the
    script's first write: the counters' PEXPIRE came first, so a Redis past maxmemory
    went on admitting (tests/integration/test_failures.py, the oom case)."""
    lua = resources.files(__package__).joinpath("lua")
    stats = lua.joinpath("stats.lua").read_text(encoding="utf-8")
    return "#!lua\n" + stats + lua.joinpath(name).read_text(encoding="utf-8")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Leases:
    """Stream leases of every user, kept in one Redis (or one Cluster slot per user)."""

    def __init__(
        self,
        redis: Client,
        settings: Settings,
        on_store_state: Callable[[bool, str, bool], None] | None = None,
        stats_per_slot: bool | None = None,
        on_wait_short: Callable[[int], None] | None = None,
    ) -> None:
        """``on_store_state(up, reason, changed)`` is called on every failed call (up=False)
        and when Redis answers again after one; ``changed`` says whether up/down changed.
        Never called on the hot path of a healthy store. ``stats_per_slot``: one counter
        hash per Cluster slot (the default on a RedisCluster) rather than one in all
        (authsvc/stats.py). ``on_wait_short(n)``: n activations were answered before
        ``redis_wait_replicas`` replicas acknowledged them (WAIT timed out)."""
        self._on_store_state = on_store_state or (lambda up, reason, changed: None)
        self._up = True
        self._prefix = settings.key_prefix
        self._ttl_ms = settings.lease_ttl_ms
        self._default_limit = settings.max_streams
        self._policy = settings.limit_policy
        self._enforce = "1" if settings.enforce else "0"
        self._replaces = "1" if settings.device_replaces else "0"
        self._limit_by = settings.limit_by
        wait = (settings.redis_wait_replicas, settings.redis_wait_ms)
        self._pipeline = auto_pipeline(redis, settings.redis_timeout_s, wait, on_wait_short)
        self._activate = Script(_script("activate.lua"))
        # Only activations (admissions and evictions) wait for replicas: a lost refresh,
        # end or gate decision costs nothing that the next one does not repair.
        self._run_activate = self._activate.durable if settings.redis_wait_replicas else self._activate
        self._touch = Script(_script("touch.lua"))
        self._active = Script(_script("active.lua"))
        self._end_all = Script(_script("end_all.lua"))
        self._deactivate = Script(_script("deactivate.lua"))
        per_slot = isinstance(redis, RedisCluster) if stats_per_slot is None else stats_per_slot
        self.stats_keys = StatsKeys(self._prefix, per_slot)
        self._bucket_ms = bucket_ms(self._ttl_ms)

    # Keys share the {user} hash tag, so every script touches one Cluster slot.
    def _streams_key(self, user_id: str) -> str:
        return f"{self._prefix}{{{user_id}}}:streams"

    def _limit_key(self, user_id: str) -> str:
        return f"{self._prefix}{{{user_id}}}:limit"

    def _devices_key(self, user_id: str) -> str:
        return f"{self._prefix}{{{user_id}}}:devices"

    def _starts_key(self, user_id: str) -> str:
        return f"{self._prefix}{{{user_id}}}:starts"

    def _expiry(self, refreshed_ms: int) -> int | None:
        return refreshed_ms + self._ttl_ms if self._ttl_ms else None

    async def _call(self, coro: Awaitable[Any]) -> Any:
        try:
            reply = await coro
        except StoreUnavailable as exc:
            changed, self._up = self._up, False
            self._on_store_state(False, str(exc), changed)
            raise
        if not self._up:
            self._up = True
            self._on_store_state(True, "", True)
        return reply

    def _user_keys(self, user_id: str) -> list[str]:
        """KEYS of the scripts that read the whole of a user's state (activate.lua,
        active.lua): leases, limit, devices, starts and the stats buckets, one slot."""
        return [
            self._streams_key(user_id),
            self._limit_key(user_id),
            self._devices_key(user_id),
            self._starts_key(user_id),
            self.stats_keys.for_user(user_id),
        ]

    @property
    def activate_script(self) -> Script:
        return self._activate

    def activation(
        self, user_id: str, stream_id: str, claim_limit: int | None = None, device_id: str | None = None
    ) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of ``activate_script`` for this activation: what ``activate``
        sends, for tools that load many leases at once (bench/scale.py)."""
        keys = self._user_keys(user_id)
        args: list[str | int] = [
            stream_id,
            self._ttl_ms,
            self._default_limit,
            "" if claim_limit is None else claim_limit,
            self._policy,
            self._enforce,
            device_id or "",
            self._replaces,
            self._limit_by,
            self._bucket_ms,
        ]
        return keys, args

    async def activate(
        self, user_id: str, stream_id: str, claim_limit: int | None = None, device_id: str | None = None
    ) -> Activation:
        """Admit, refresh or refuse a stream for a user, atomically.

        The user's limit is the operator's override if set, else ``claim_limit`` (from
        the user's token) if given, else the default. With ``device_id``, the stream is
        that device's, and (AUTHSVC_DEVICE_REPLACES) its other leases end in the same
        step. Raises StoreUnavailable.
        """
        keys, args = self.activation(user_id, stream_id, claim_limit, device_id)
        reply = await self._call(self._run_activate(self._pipeline, keys, args))
        assert isinstance(reply, list)
        code, limit, now, count, counted = (int(v) for v in reply[:5])
        outcome = Outcome(code)
        replaced = tuple(_text(v) for v in reply[5])
        extra = [_text(v) for v in reply[6:]]
        active: tuple[Lease, ...] = ()
        evicted: tuple[str, ...] = ()
        if outcome is Outcome.LIMIT:
            active = self._listed(extra)
        elif outcome is Outcome.EVICTED:
            evicted = tuple(extra)
        expires = None if outcome is Outcome.LIMIT else self._expiry(now)
        return Activation(outcome, limit, count, expires, evicted, active, replaced, counted)

    async def touch(self, user_id: str, stream_id: str, device_id: str | None = None) -> Touch:
        """Refresh the user's lease on a stream if it is alive (heartbeat and gate); a
        lease without a device becomes ``device_id``'s. Raises StoreUnavailable.
        """
        keys = [self._streams_key(user_id), self._starts_key(user_id), self.stats_keys.for_user(user_id)]
        if device_id:
            keys.insert(2, self._devices_key(user_id))
        reply = await self._call(
            self._touch(self._pipeline, keys, [stream_id, self._ttl_ms, device_id or "", self._bucket_ms])
        )
        assert isinstance(reply, list)
        alive, now = bool(int(reply[0])), int(reply[1])
        return Touch(alive, self._expiry(now) if alive else None)

    async def deactivate(self, user_id: str, stream_id: str) -> bool:
        """End the user's lease on a stream; True if there was one. Raises StoreUnavailable."""
        keys = [self._streams_key(user_id), self._starts_key(user_id), self.stats_keys.for_user(user_id)]
        args = [stream_id, self._ttl_ms, self._bucket_ms]
        return bool(await self._call(self._deactivate(self._pipeline, keys, args)))

    async def active(self, user_id: str, claim_limit: int | None = None) -> ActiveLeases:
        """The user's live leases, oldest refresh first, and their limit. Raises StoreUnavailable."""
        keys = self._user_keys(user_id)
        reply = await self._call(self._active(self._pipeline, keys, [self._ttl_ms, self._bucket_ms]))
        assert isinstance(reply, list)
        override_raw = _text(reply[0])
        # As in activate.lua: a value that is not a number counts as absent.
        operator_limit = int(override_raw) if override_raw.isdigit() else None
        if operator_limit is not None:
            limit = operator_limit
        elif claim_limit is not None:
            limit = claim_limit
        else:
            limit = self._default_limit
        leases = self._listed([_text(v) for v in reply[2:]])
        return ActiveLeases(leases, limit, operator_limit)

    async def set_limit(self, user_id: str, limit: int | None) -> None:
        """Give a user their own limit, or with None go back to the default. Raises StoreUnavailable."""
        key = self._limit_key(user_id)
        command = ("DEL", key) if limit is None else ("SET", key, limit)
        await self._call(self._pipeline.execute(*command))

    async def end_all(self, user_id: str) -> int:
        """End every lease of a user; returns how many there were. Raises StoreUnavailable."""
        keys = [self._streams_key(user_id), self._starts_key(user_id), self.stats_keys.for_user(user_id)]
        return int(await self._call(self._end_all(self._pipeline, keys, [self._ttl_ms, self._bucket_ms])))

    async def ping(self) -> bool:
        """True when Redis answers (on a Cluster: every primary). Raises StoreUnavailable."""
        return bool(await self._call(self._pipeline.ping()))

    async def close(self) -> None:
        """Let the batches under way finish."""
        await self._pipeline.drain()

    def _listed(self, flat: list[str]) -> tuple[Lease, ...]:
        """Leases from the scripts' (stream, score, device or '', start or '') quadruples."""
        leases = []
        for i in range(0, len(flat) - 3, 4):
            refreshed = int(float(flat[i + 1]))
            started = int(float(flat[i + 3])) if flat[i + 3] else None
            leases.append(Lease(flat[i], refreshed, self._expiry(refreshed), flat[i + 2] or None, started))
        return tuple(leases)

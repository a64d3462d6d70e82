"""The gauges of active leases and users, without a scan of the leases.

Every lease script keeps counters beside the leases it changes (``lua/stats.lua``): a
hash per Cluster slot, ``<prefix>{<tag>}:stats``, where ``<tag>`` is a short hash tag
that maps to the user's own slot, so each script still touches one slot. Leases are
counted per time bucket of their last refresh (a bucket is an eighth of the TTL), users
per bucket of their newest refresh; what is active is the sum of the buckets that reach
into the TTL window. A lease that expired less than one bucket ago (TTL/8) may still be
counted; a live one is never left out. With a TTL of 0 there is one bucket and the counts
are exact.

A scrape reads only those hashes: on one Redis one key, on a Cluster the 16384 slots'
keys, summed inside Redis by a read-only script per primary (SUM_LUA). The result is kept for a
few seconds, so that several scrapes (or workers) within that time cost one read, and
with workers the freshest value wins (``livemostrecent``). Every replica reports the same
global figure: aggregate with ``max``, never ``sum``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import string
import time
from dataclasses import dataclass
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

log = logging.getLogger("authsvc")

BUCKETS_PER_TTL = 8
READ_CHUNK = 2048  # keys per script: Redis serves other clients between two of them


def bucket_ms(ttl_ms: int) -> int:
    """Width of a counting bucket; 0 (one bucket) when leases never expire."""
    return max(1, ttl_ms // BUCKETS_PER_TTL) if ttl_ms else 0


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For every Cluster slot, a shortest hash tag of letters and digits that maps to it
    (CRC16 as Redis Cluster computes it): 70-200 ms once per process, Cluster only, as
    StatsKeys is made."""
    tags: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    missing = REDIS_CLUSTER_HASH_SLOTS
    alphabet = string.ascii_letters + string.digits
    for length in itertools.count(1):
        for chars in itertools.product(alphabet, repeat=length):
            tag = "".join(chars)
            slot = key_slot(tag.encode())
            if tags[slot] is None:
                tags[slot] = tag
                missing -= 1
                if missing == 0:
                    return tuple(t for t in tags if t is not None)
    raise AssertionError("unreachable")


class StatsKeys:
    """Names of the counter hashes: one per slot on a Cluster, one in all on one Redis."""

    def __init__(self, prefix: str, per_slot: bool) -> None:
        self.prefix = prefix
        self.per_slot = per_slot
        self._single = f"{prefix}stats"
        if per_slot:
            # Computed here, as the app starts: left to the first request, it held up
            # that request and every other on the event loop (70 ms here, a paused
            # primary's first 503 past the Redis timeout).
            slot_tags()

    def for_user(self, user_id: str) -> str:
        """The hash in the same slot as the user's keys (``<prefix>{<userId>}:...``)."""
        if not self.per_slot:
            return self._single
        return f"{self.prefix}{{{slot_tags()[key_slot(user_id.encode())]}}}:stats"

    def every(self) -> list[str]:
        if not self.per_slot:
            return [self._single]
        return [f"{self.prefix}{{{tag}}}:stats" for tag in slot_tags()]


@dataclass(frozen=True)
class Counts:
    leases: int
    users: int
    read_s: float  # how long the read took


# Sums the window's fields over many counter hashes inside Redis: one round trip where a
# pipeline of HMGETs cost about 150 us of client CPU per key (2.5 s for 16384 slots on this
# loaded machine). The hashes are read, not declared in KEYS: on a Cluster the script runs
# once per primary on the keys of its own slots, which Redis 7 allows with this flag.
SUM_LUA = """
local half = tonumber(ARGV[1])
local fields = {}
for i = 2, 1 + 2 * half do fields[#fields + 1] = ARGV[i] end
local leases, users = 0, 0
for i = 2 + 2 * half, #ARGV do
  local values = redis.call('HMGET', ARGV[i], unpack(fields))
  for j = 1, half do leases = leases + (tonumber(values[j]) or 0) end
  for j = half + 1, 2 * half do users = users + (tonumber(values[j]) or 0) end
end
return {leases, users}
"""
CLUSTER_SUM_LUA = "#!lua flags=no-writes,allow-cross-slot-keys\n" + SUM_LUA


async def read_counts(redis: Any, keys: StatsKeys, ttl_ms: int, cluster: bool = False) -> Counts:
    """Sum the buckets inside the TTL window over every counter hash."""
    started = time.perf_counter()
    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    width = bucket_ms(ttl_ms)
    # One bucket ahead too: a node or replica whose clock runs a little ahead.
    buckets = range((now - ttl_ms) // width, now // width + 2) if width else range(1)
    fields = [f"l{b}" for b in buckets] + [f"u{b}" for b in buckets]
    leases = users = 0
    names = keys.every()
    if cluster:
        by_node: dict[Any, list[str]] = {}
        for name in names:
            by_node.setdefault(redis.get_node_from_key(name), []).append(name)
        groups = [(node, group) for node, group in by_node.items()]
    else:
        groups = [(None, names)]
    for node, group in groups:
        for start in range(0, len(group), READ_CHUNK):
            args = [len(buckets), *fields, *group[start : start + READ_CHUNK]]
            if node is None:
                reply = await redis.eval(SUM_LUA, 0, *args)
            else:
                reply = await redis.execute_command("EVAL", CLUSTER_SUM_LUA, 0, *args, target_nodes=node)
            leases += int(reply[0])
            users += int(reply[1])
    # Counters only go negative if a hash was lost (evicted, flushed) under live leases.
    return Counts(max(0, leases), max(0, users), time.perf_counter() - started)


class ActiveGauges:
    """Keeps ``authsvc_active_leases`` and ``authsvc_active_users`` fresh, read at most
    once per ``max_age_s`` however often /metrics is asked."""

    def __init__(
        self,
        redis: Any,
        keys: StatsKeys,
        ttl_ms: int,
        gauges: Any,
        max_age_s: float = 5.0,
        cluster: bool = False,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = ttl_ms
        self._leases_gauge, self._users_gauge = gauges
        self._max_age_s = max_age_s
        self._cluster = cluster
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self, timeout: float = 10.0) -> None:
        """Read the counters unless they were read less than ``max_age_s`` ago. A failed
        read leaves the last values (authsvc_redis_up tells that Redis is away)."""
        async with self._lock:
            if time.monotonic() - self._read_at < self._max_age_s:
                return
            try:
                async with asyncio.timeout(timeout):
                    counts = await read_counts(self._redis, self._keys, self._ttl_ms, self._cluster)
            except Exception as exc:  # a scrape must never fail for it
                log.warning("active counts not read", extra={"reason": f"{type(exc).__name__}: {exc}"[:120]})
                return
            self._read_at = time.monotonic()
            self._leases_gauge.set(counts.leases)
            self._users_gauge.set(counts.users)

"""The auto-pipeline on a Redis Cluster: one pipeline per node, redirects followed.

Every decision is one script on one slot (the user's keys share the ``{user}`` hash tag),
so a batch splits cleanly by the node that owns each command's slot. redis-py's
``RedisCluster`` keeps the slot map and a connection pool per node; its own pipeline is
not used because it answers a batch only when every node has, so one slow or dead node
would hold up every other node's requests. Here each node's share goes out at once and is
answered as soon as that node replies:

- MOVED (the slot lives elsewhere now): the slot map is updated and the command resent
  to the new owner.
- ASK (the slot is being migrated and this key is already gone): ASKING + the command on
  the target, once.
- TRYAGAIN (a multi-key script on a slot mid-migration, its keys split between the two
  nodes, or absent): sent again after a few milliseconds, until the batch's timeout.
- A node that cannot be reached fails only its own commands (503), and the slot map is
  asked again so that a replica promoted in its place is found as soon as it serves.
  So does a node that does not answer within the batch's timeout (hung, or cut off by a
  partition that drops packets: no error ever comes), and the map is then asked of the
  other nodes first: without this, authsvc on the majority side of a partition kept
  sending the old primary's slots to it after its replica had been promoted, and
  answered 503 for them until restarted (tests/network/test_cluster_minority.py).
- Durable commands (authsvc/store.py): a node's share that holds one ends with WAIT on
  that node's connection; a durable command redirected elsewhere gets the WAIT of the
  node that finally runs it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from .store import AutoPipeline, Command, StoreUnavailable, pipelined

Future = asyncio.Future[Any]
Item = tuple[Command, Future, ClusterNode | None]  # node: ASK target

# Redirects and retries of one command within one batch; the batch's timeout bounds them.
MAX_HOPS = 64
# How long a slot map refresh waits after the previous one: nodes failing keep asking for
# one, and a refresh costs every node a reconnect (redis-py recycles connections on it).
REFRESH_INTERVAL_S = 0.1
TRYAGAIN_PAUSE_S = (0.002, 0.005, 0.01, 0.02)


def _migrating(reply: object) -> bool:
    """A script that met a key of its slot missing while the slot is being migrated: Redis
    cannot redirect it mid-script and fails it. Like TRYAGAIN, it is asked again once the
    slot has settled: what a script did before that access (dropping expired leases and
    their counts) is what it would do again, so a second run does not repeat it."""
    return isinstance(reply, redis_errors.ResponseError) and "non local key" in str(reply)


class ClusterPipeline(AutoPipeline):
    """Commands queued in one event-loop turn go to their slots' nodes, one pipeline per
    node, all at once; each request is answered as soon as its node replies."""

    def __init__(
        self,
        cluster: RedisCluster,
        timeout: float,
        max_batch: int = 128,
        wait: tuple[int, int] = (0, 0),
        on_wait_short: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(cluster, timeout, max_batch, wait, on_wait_short)  # type: ignore[arg-type]
        self._cluster = cluster
        self._nodes = cluster.nodes_manager
        self._ready = False
        self._start_lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._loading: dict[tuple[str, str], asyncio.Future[list[Any]]] = {}

    async def _send_durable(self, batch: list[tuple[Command, Future]], durable: set[Future]) -> None:
        await self._send(batch, durable)

    async def _send(self, batch: list[tuple[Command, Future]], durable: set[Future] | None = None) -> None:
        async def work() -> None:
            await self._start()
            await self._dispatch([(command, future, None) for command, future in batch], 0, durable)

        await self._settle(batch, work())

    async def _start(self) -> None:
        """Learn the slot map from the seed nodes, once (again on every batch until it works)."""
        if self._ready:
            return
        async with self._start_lock:
            if not self._ready:
                await self._cluster.initialize()
                self._ready = True

    async def _dispatch(self, items: list[Item], hops: int, durable: set[Future] | None) -> None:
        groups: dict[ClusterNode, list[Item]] = {}
        for item in items:
            command, future, target = item
            try:
                node = target or self._node_for(command)
            except (redis_errors.RedisClusterException, KeyError, IndexError) as exc:
                future.set_exception(StoreUnavailable(f"no node serves this slot: {type(exc).__name__}"))
                self.refresh_soon()
                continue
            groups.setdefault(node, []).append(item)
        if len(groups) == 1:
            ((node, share),) = groups.items()
            await self._node_batch(node, share, hops, durable)
        elif groups:
            await asyncio.gather(
                *(self._node_batch(node, share, hops, durable) for node, share in groups.items())
            )

    def _node_for(self, command: Command) -> ClusterNode:
        """The primary serving the slot of the command's first key (every command here
        touches one slot); a keyless command goes to the default node."""
        name = command[0]
        if name in ("EVALSHA", "EVAL"):
            key = command[3] if int(command[2]) else None
        else:
            key = command[1] if len(command) > 1 else None
        if key is None:
            node = self._nodes.default_node
            if node is None:
                raise redis_errors.RedisClusterException("no default node")
            return node
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        return self._nodes.slots_cache[slot][0]

    async def _node_batch(
        self, node: ClusterNode, items: list[Item], hops: int, durable: set[Future] | None
    ) -> None:
        """One pipeline to one node; its replies answered, its redirects followed; WAIT
        at its end when it holds a durable command."""
        commands: list[Command] = []
        for command, _, target in items:
            if target is not None:
                commands.append(("ASKING",))
            commands.append(command)
        waits = durable is not None and any(future in durable for _, future, _ in items)
        on_reply = None
        if waits:
            assert durable is not None
            on_reply = _answer_early(items, durable)
            commands.append(self._wait)
        try:
            replies = await self._round_trip_on(node, commands, on_reply)
        except asyncio.CancelledError:
            # The batch's timeout ran out while this node was silent.
            self.refresh_soon(silent=node.name)
            raise
        except (redis_errors.RedisError, OSError) as exc:
            # Only this node's requests fail; the others are answered by their nodes.
            for _, future, _ in items:
                if not future.done():
                    future.set_exception(StoreUnavailable(f"{type(exc).__name__} from {node.name}"))
            self.refresh_soon()
            return
        again: list[Item] = []
        busy: list[Item] = []
        kept: list[Any] = []  # replies of the durable commands answered here
        position = 0
        for command, future, target in items:
            if target is not None:
                position += 1  # ASKING's OK
            reply = replies[position]
            position += 1
            if hops < MAX_HOPS and isinstance(reply, redis_errors.MovedError):
                await self._nodes.move_slot(reply)
                again.append((command, future, None))
            elif hops < MAX_HOPS and isinstance(reply, redis_errors.AskError):
                again.append((command, future, self._node_at(reply.host, reply.port)))
            elif hops < MAX_HOPS and (isinstance(reply, redis_errors.TryAgainError) or _migrating(reply)):
                busy.append((command, future, None))
            else:
                if isinstance(reply, (redis_errors.ClusterDownError, redis_errors.ReadOnlyError)):
                    self.refresh_soon()
                if waits and durable is not None and future in durable:
                    kept.append(reply)
                if not future.done():
                    future.set_result(reply)
        if waits:
            self._count_short(replies[-1], kept)
        if busy:
            await asyncio.sleep(TRYAGAIN_PAUSE_S[min(hops, len(TRYAGAIN_PAUSE_S) - 1)])
        if again or busy:
            await self._dispatch(again + busy, hops + 1, durable)

    def _node_at(self, host: str, port: int) -> ClusterNode:
        node = self._nodes.get_node(host=host, port=port)
        if node is None:  # a node this client has not met yet
            node = ClusterNode(host, port, "primary", **self._nodes.connection_kwargs)
            self._nodes.set_nodes(self._nodes.nodes_cache, {node.name: node})
        return node

    async def _round_trip_on(
        self, node: ClusterNode, commands: list[Command], on_reply: Callable[[int, Any], None] | None = None
    ) -> list[Any]:
        conn = node.acquire_connection()
        try:
            # A slot map refresh marks every connection to be reconnected before next use.
            await node.disconnect_if_needed(conn)
            return await pipelined(conn, commands, on_reply)
        finally:
            node.release(conn)

    def refresh_soon(self, silent: str | None = None) -> None:
        """Ask the cluster for its slot map in the background, at most every 100 ms;
        the ``silent`` node (host:port) last, if at all (it would cost the whole timeout)."""
        if self._refresh is not None and not self._refresh.done():
            return
        if time.monotonic() - self._refreshed_at < REFRESH_INTERVAL_S:
            return
        self._refreshed_at = time.monotonic()
        self._refresh = asyncio.ensure_future(self._refresh_slots(silent))

    async def _refresh_slots(self, silent: str | None = None) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._nodes.initialize(last_failed_node_name=silent)
        except (redis_errors.RedisError, redis_errors.RedisClusterException, TimeoutError, OSError):
            pass  # the next failure asks again

    async def ping(self) -> bool:
        """True when every primary answers PING. Raises StoreUnavailable naming those that
        do not."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._start()
        except (redis_errors.RedisError, redis_errors.RedisClusterException, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"cluster unreachable: {type(exc).__name__}") from None
        primaries = self._nodes.get_nodes_by_server_type("primary")
        replies = await asyncio.gather(*(self._ping(node) for node in primaries))
        silent = [node.name for node, ok in zip(primaries, replies, strict=True) if not ok]
        if silent or not primaries:
            self.refresh_soon()
            raise StoreUnavailable("no answer from " + ", ".join(silent or ["any primary"]))
        return True

    async def _ping(self, node: ClusterNode) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                (reply,) = await self._round_trip_on(node, [("PING",)])
        except (redis_errors.RedisError, TimeoutError, OSError):
            return False
        return reply in (b"PONG", "PONG", True)

    async def load_script(self, source: str, key: str) -> None:
        """SCRIPT LOAD on the primary serving ``key``'s slot, once per node however many
        requests found the script missing at the same time. Raises StoreUnavailable."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._start()
                node = self._node_for(("GET", key))
                key_ = (node.name, source)
                loading = self._loading.get(key_)
                if loading is None:
                    loading = asyncio.ensure_future(self._round_trip_on(node, [("SCRIPT", "LOAD", source)]))
                    self._loading[key_] = loading
                    loading.add_done_callback(functools.partial(self._loaded, key_))
                (reply,) = await asyncio.shield(loading)
        except (redis_errors.RedisError, redis_errors.RedisClusterException, TimeoutError, OSError) as exc:
            self.refresh_soon()
            raise StoreUnavailable(f"SCRIPT LOAD: {type(exc).__name__}") from None
        if isinstance(reply, redis_errors.RedisError):
            raise StoreUnavailable(f"SCRIPT LOAD: {type(reply).__name__}")

    def _loaded(self, key: tuple[str, str], _: object) -> None:
        self._loading.pop(key, None)

    async def drain(self) -> None:
        """Wait for the batches under way, and stop a slot map refresh."""
        await super().drain()
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)


_REDIRECTS = (redis_errors.MovedError, redis_errors.AskError, redis_errors.TryAgainError)


def _answer_early(items: list[Item], durable: set[Future]) -> Callable[[int, Any], None]:
    """While a node's share waits for WAIT: answer its other commands as their replies
    arrive, and durable ones that failed (NOSCRIPT: nothing was written); a redirect is
    left to the share's own handling."""
    owners: dict[int, Future] = {}
    position = 0
    for _, future, target in items:
        position += target is not None  # ASKING's OK
        owners[position] = future
        position += 1

    def on_reply(at: int, reply: Any) -> None:
        future = owners.get(at)
        if future is None or future.done() or isinstance(reply, _REDIRECTS):
            return
        if future not in durable or isinstance(reply, redis_errors.RedisError):
            future.set_result(reply)

    return on_reply

"""Redis access for the hot path: commands from concurrent requests share round trips.

redis-py spends about 65 us of CPU on each command it sends alone (measured here with
uvloop and hiredis), which by itself caps one worker near 15k commands per second.
Requests that arrive in the same event-loop turn are therefore queued and written to one
pooled connection at once, as a pipeline (no MULTI: each command stays its own atomic
script), which costs well under 20 us per command. Every batch runs under one timeout,
so a hung Redis fails the whole batch within ``timeout`` rather than leaving requests
waiting.

Durable commands (activations, with ``AUTHSVC_REDIS_WAIT_REPLICAS``): replication is
asynchronous, so a lease admitted just before its primary dies can be missing on the
replica that takes over. ``WAIT n ms`` blocks a connection until every write sent before
it on that connection has reached ``n`` replicas, so a batch holding a durable command gets
one WAIT at its end (one per node on a Cluster): the batching stays, the other commands
are answered as their replies arrive, the durable ones once WAIT has answered. When fewer
replicas acknowledged in time, the activation is answered all the same and counted
(``on_wait_short``): the lease exists on the primary, and refusing would turn a
replication lag, or a replica down, into an outage of every activation.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hiredis import pack_command
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

Command = tuple[Any, ...]


class StoreUnavailable(Exception):
    """Redis cannot serve requests now: unreachable, too slow, or refusing writes."""


class StoreDataError(Exception):
    """Redis answered, but with an error about this request's data (WRONGTYPE, a script
    error): a fault of this one key, not of the store, so not a reason to report it down."""


# Errors that say the node cannot serve now, rather than that the request was wrong.
_UNAVAILABLE = (
    redis_errors.ReadOnlyError,
    redis_errors.BusyLoadingError,
    redis_errors.OutOfMemoryError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # MASTERDOWN too
    redis_errors.AskError,  # MOVED too: redirected more often than a batch follows
    redis_errors.ConnectionError,  # NOAUTH, WRONGPASS
    redis_errors.NoPermissionError,
)
# After a failover the old primary answers READONLY on connections that stay open
# forever: drop them so that the next batch resolves the address again.
_RECONNECT = (redis_errors.ReadOnlyError, redis_errors.MasterDownError)


class AutoPipeline:
    """Sends the commands queued during one event-loop turn as one pipeline, on one pooled
    connection of one Redis (a single server, or the primary a Sentinel names)."""

    def __init__(
        self,
        redis: Redis,
        timeout: float,
        max_batch: int = 128,
        wait: tuple[int, int] = (0, 0),
        on_wait_short: Callable[[int], None] | None = None,
    ) -> None:
        """``wait``: (replicas, ms) of the WAIT after a batch holding a durable command;
        ``on_wait_short(n)``: n durable commands were answered with fewer replicas."""
        self._redis = redis
        self._timeout = timeout
        self._max_batch = max_batch
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._wait_replicas, wait_ms = wait
        self._wait: Command = ("WAIT", self._wait_replicas, wait_ms)
        self._on_wait_short = on_wait_short or (lambda count: None)
        # Futures of the durable commands queued in this turn; empty unless WAIT is on.
        self._durable: set[asyncio.Future[Any]] = set()
        # Connections between batches (see _round_trip).
        self._idle: list[AbstractConnection] = []

    async def execute(self, *command: Any) -> Any:
        """Run one command and return its reply (a NoScriptError is returned, not raised).

        Raises StoreUnavailable when Redis cannot be reached, does not answer in time, or
        answers with an error (OOM, READONLY replica, BUSY script...).
        """
        reply = await self._enqueue(command)
        if isinstance(reply, redis_errors.RedisError) and not isinstance(reply, redis_errors.NoScriptError):
            raise _failure(reply)
        return reply

    async def execute_durable(self, *command: Any) -> Any:
        """Like ``execute``, but answered only once WAIT has asked the replicas to
        acknowledge it (or timed out, counted by ``on_wait_short``). Without WAIT
        configured, the same as ``execute``. Raises StoreUnavailable."""
        reply = await self._enqueue(command, durable=bool(self._wait_replicas))
        if isinstance(reply, redis_errors.RedisError) and not isinstance(reply, redis_errors.NoScriptError):
            raise _failure(reply)
        return reply

    def _enqueue(self, command: Command, durable: bool = False) -> asyncio.Future[Any]:
        """Queue a command for this loop turn's batch; the future of its reply. (A plain
        function, not a coroutine: it runs for every command.)"""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if durable:
            self._durable.add(future)
        self._queue.append((command, future))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        elif len(self._queue) >= self._max_batch:
            self._flush()
        return future

    async def ping(self) -> bool:
        """True when Redis answers PING. Raises StoreUnavailable."""
        return bool(await self.execute("PING"))

    async def load_script(self, source: str, key: str) -> None:
        """SCRIPT LOAD where ``key`` lives (here: the one Redis). Raises StoreUnavailable."""
        await self.execute("SCRIPT", "LOAD", source)

    def _flush(self) -> None:
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        if self._durable:  # the one check per batch that WAIT costs when it is off
            durable, self._durable = self._durable, set()
            task = asyncio.ensure_future(self._send_durable(batch, durable))
        else:
            task = asyncio.ensure_future(self._send(batch))
        # Keep a reference: the loop holds tasks only weakly.
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _settle(self, batch: list[tuple[Command, asyncio.Future[Any]]], work: Awaitable[None]) -> None:
        """Run ``work`` (which answers the batch's requests) within the batch's timeout;
        whatever happens, no request is left waiting: the unanswered get StoreUnavailable.

        The timeout is one timer that cancels this task (the batch's own, see _flush), as
        asyncio.timeout() does, for a fraction of that context manager's cost on every
        batch (docs/benchmarks.md)."""
        failure = "no reply"
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self._timeout, expire)
        try:
            await work
        except (redis_errors.RedisError, redis_errors.RedisClusterException, TimeoutError, OSError) as exc:
            failure = type(exc).__name__
        except asyncio.CancelledError:
            # The timer's own cancellation is the timeout; any other (shutdown) goes on.
            if not expired or task.uncancel() > 0:
                failure = "CancelledError"
                raise
            failure = "TimeoutError"
        except BaseException as exc:  # a bug
            failure = type(exc).__name__
            raise
        finally:
            timer.cancel()
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(failure))

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        async def work() -> None:
            replies = await self._round_trip([command for command, _ in batch])
            for (_, future), reply in zip(batch, replies, strict=False):
                if not future.done():
                    future.set_result(reply)
            await self._after(replies)

        await self._settle(batch, work())

    async def _after(self, replies: list[Any]) -> None:
        # After a failover the old primary answers READONLY: drop its connections.
        if any(isinstance(r, _RECONNECT) for r in replies):
            await self._redis.connection_pool.disconnect()

    async def _send_durable(
        self, batch: list[tuple[Command, asyncio.Future[Any]]], durable: set[asyncio.Future[Any]]
    ) -> None:
        """``_send`` with WAIT after the batch: the durable commands' replies are held
        until WAIT answers, the others are answered as they arrive."""
        held: list[tuple[asyncio.Future[Any], Any]] = []

        def on_reply(position: int, reply: Any) -> None:
            if position == len(batch):
                return  # WAIT's own
            future = batch[position][1]
            # An error (NOSCRIPT, READONLY...) wrote nothing: no reason to hold it.
            if future in durable and not isinstance(reply, redis_errors.RedisError):
                held.append((future, reply))
            elif not future.done():
                future.set_result(reply)

        async def work() -> None:
            replies = await self._round_trip([*(command for command, _ in batch), self._wait], on_reply)
            self._count_short(replies[-1], [reply for _, reply in held])
            for future, reply in held:
                if not future.done():
                    future.set_result(reply)
            await self._after(replies)

        await self._settle(batch, work())

    def _count_short(self, wait_reply: Any, durable_replies: list[Any]) -> None:
        """Count the durable commands that succeeded as short when WAIT heard from too few
        replicas (or failed: a node demoted since the batch was sent refuses WAIT)."""
        if isinstance(wait_reply, int) and wait_reply >= self._wait_replicas:
            return
        written = sum(1 for reply in durable_replies if not isinstance(reply, redis_errors.RedisError))
        if written:
            self._on_wait_short(written)

    async def _round_trip(
        self, commands: list[Command], on_reply: Callable[[int, Any], None] | None = None
    ) -> list[Any]:
        # A connection that answered goes back to this pipeline's own idle list, not to the
        # pool: the pool's checkout (a lock, and a read on the socket to see that nothing
        # is pending) cost the hot path as much as packing and sending the batch. The pool
        # still made it and still owns it: its disconnect() (READONLY, MASTERDOWN,
        # shutdown) closes idle ones too, and _stale() finds those and the ones Sentinel's
        # new primary or the server's maintenance notices left behind. One that failed
        # (pipelined() has closed it) goes back to the pool.
        pool = self._redis.connection_pool
        conn = self._idle.pop() if self._idle else await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            if self._stale(conn):
                await conn.disconnect()
                await conn.connect()  # on Sentinel, asks for the primary
            replies = await pipelined(conn, commands, on_reply)
        except BaseException:
            await pool.release(conn)
            raise
        self._idle.append(conn)
        return replies

    def _stale(self, conn: AbstractConnection) -> bool:
        """True for a connection to reopen before it is sent on: closed, marked by the
        server's maintenance notices, or to a primary Sentinel has since replaced (the
        pool closes only the connections it holds itself when it learns of a new one)."""
        if not conn.is_connected or conn.should_reconnect():  # type: ignore[no-untyped-call]
            return True
        primary = getattr(self._redis.connection_pool, "master_address", None)
        return primary is not None and primary != (conn.host, conn.port)  # type: ignore[attr-defined]

    async def drain(self) -> None:
        """Wait for the batches under way (used at shutdown)."""
        self._flush()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)


def _failure(reply: redis_errors.RedisError) -> Exception:
    message = f"{type(reply).__name__}: {str(reply)[:80]}"
    # BUSY (a script running too long) has no class of its own.
    if isinstance(reply, _UNAVAILABLE) or str(reply).startswith("BUSY"):
        return StoreUnavailable(message)
    return StoreDataError(message)


async def pipelined(
    conn: AbstractConnection, commands: Sequence[Command], on_reply: Callable[[int, Any], None] | None = None
) -> list[Any]:
    """Write every command at once on ``conn``, then read the replies (error replies are
    returned, not raised); ``on_reply(position, reply)`` is called as each one arrives.

    This is what a redis-py pipeline does, without its per-command bookkeeping (response
    callbacks, command stack, retry wrapper): a third of its cost here. hiredis packs the
    commands, in C: redis-py's asyncio connection packs them in Python. A connection that
    fails before any reply arrived (a pooled one that died with a Redis restart: the new
    server has run nothing) is replaced and the batch sent once more; after the first
    reply nothing is sent twice.
    """
    try:
        # hiredis sends str as UTF-8 (redis-py's default encoding) and refuses what is not
        # str, bytes or a number with TypeError: the same as redis-py's DataError here.
        packed = b"".join(map(pack_command, commands))
    except TypeError as exc:
        raise redis_errors.DataError(f"not a Redis argument: {exc}") from None
    try:
        for attempt in (1, 2):
            replies: list[Any] = []
            try:
                await conn.send_packed_command(packed, check_health=False)
                if on_reply is None:
                    for _ in commands:
                        try:
                            replies.append(await conn.read_response())
                        except redis_errors.ResponseError as error:
                            replies.append(error)
                else:
                    await _read_each(conn, len(commands), replies, on_reply)
                return replies
            except (redis_errors.ConnectionError, OSError):
                if replies or attempt == 2:
                    raise
                await conn.disconnect()
                await conn.connect()  # type: ignore[no-untyped-call]
        raise AssertionError("unreachable")
    except BaseException:
        # Cancelled (timeout) or failed mid-reply: what is left unread would be taken
        # for the next batch's replies.
        await conn.disconnect(nowait=True)
        raise


async def _read_each(
    conn: AbstractConnection, count: int, replies: list[Any], on_reply: Callable[[int, Any], None]
) -> None:
    for position in range(count):
        try:
            reply = await conn.read_response()
        except redis_errors.ResponseError as error:
            reply = error
        replies.append(reply)
        on_reply(position, reply)


class Script:
    """A Lua script run by EVALSHA through the auto-pipeline, loaded again after NOSCRIPT
    (a Redis restart without data, or SCRIPT FLUSH).

    redis-py's ``register_script`` does the same for single commands, but through a
    pipeline it checks SCRIPT EXISTS before every batch: one more round trip each time.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    async def __call__(self, pipeline: AutoPipeline, keys: Sequence[str], args: Sequence[Any]) -> Any:
        reply = await pipeline.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        # On a Cluster a slot may move between the load and the call: load once more there.
        for _ in range(3):
            if not isinstance(reply, redis_errors.NoScriptError):
                return reply
            await pipeline.load_script(self.source, keys[0])
            reply = await pipeline.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        raise StoreUnavailable("NoScriptError after SCRIPT LOAD")

    async def durable(self, pipeline: AutoPipeline, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script, answered once replicas acknowledged it (``execute_durable``).
        A method of its own rather than a flag, so that ``__call__`` costs what it did."""
        reply = await pipeline.execute_durable("EVALSHA", self.sha, len(keys), *keys, *args)
        for _ in range(3):
            if not isinstance(reply, redis_errors.NoScriptError):
                return reply
            await pipeline.load_script(self.source, keys[0])
            reply = await pipeline.execute_durable("EVALSHA", self.sha, len(keys), *keys, *args)
        raise StoreUnavailable("NoScriptError after SCRIPT LOAD")

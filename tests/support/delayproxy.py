"""A TCP proxy on loopback that delays every chunk, in each direction, by a fixed one-way
latency: a slow link between two parts (this machine's kernel has no netem).

Each connection has its own two pumps (client -> target, target -> client). A pump reads
whatever has arrived, stamps it with the time it is due (arrival + delay) and queues it;
its writer sends each chunk once it is due, in the order read. So a round trip through
the proxy takes at least twice the delay, chunks keep their order, a connection's chunks
do not wait on one another's delay (a chunk read 1 ms after another is sent 1 ms after
it), and no connection waits on another.

Run as a process of its own, which the benchmarks start and stop by PID:

    python tests/support/delayproxy.py --target 127.0.0.1:6379 --delay-ms 2 --port 0

It prints ``listening <port>`` once it accepts connections, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

CHUNK = 256 * 1024


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> bool:
    """Copy ``reader`` to ``writer``, every chunk sent ``delay`` seconds after it was read;
    True once the reader's end closed and all was sent, False when a side failed."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:  # the other side closed its end: close ours once the rest is sent
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
        await sender
        return True
    except (ConnectionError, OSError):
        return False
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await sender


async def serve(target: tuple[str, int], delay: float, port: int, host: str = "127.0.0.1") -> None:
    """Accept connections on ``host:port`` (0: a free one, printed) and relay each to
    ``target`` through two delayed pumps, until cancelled."""

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        pending = {
            asyncio.ensure_future(pump(client_reader, target_writer, delay)),
            asyncio.ensure_future(pump(target_reader, client_writer, delay)),
        }
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if not all(task.result() for task in done):
                    break  # a reset: the other direction would wait for ever
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for writer in (client_writer, target_writer):
                writer.close()

    connections: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await relay(reader, writer)
        finally:
            connections.discard(task)

    server = await asyncio.start_server(tracked, host, port)
    listening = server.sockets[0].getsockname()[1]
    print(f"listening {listening}", flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop
    server.close()
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port to relay to")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay of every chunk")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 = a free one")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    asyncio.run(serve((host, int(port)), args.delay_ms / 1000, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

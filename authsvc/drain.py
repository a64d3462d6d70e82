"""Graceful stop: on SIGTERM, /readyz answers 503 at once while the worker keeps serving
for ``AUTHSVC_DRAIN_S``; then uvicorn's own shutdown runs (listener closed, in-flight
requests finished, idle connections closed, lifespan ended).

uvicorn closes the listener the moment SIGTERM arrives, before a load balancer or a
Kubernetes Service has seen the readiness probe fail: requests sent in that gap are
refused. Its handler is therefore wrapped here rather than replaced in a Server subclass:
with ``--workers N`` uvicorn's supervisor builds plain Servers inside the workers, so a
subclass would only ever cover a single-process run. The wrapper is installed from the
app's lifespan, which uvicorn starts after installing its handlers, in every worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType

from . import logs

log = logging.getLogger("authsvc")


class Drain:
    """Whether this worker is draining, and the SIGTERM handler that starts it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False

    def install(self) -> bool:
        """Wrap the server's SIGTERM handler (call from the lifespan, inside the event
        loop). False when there is nothing to wrap: not the main thread (a test client),
        or no Python handler installed (a server that does not handle SIGTERM)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        stop = signal.getsignal(signal.SIGTERM)
        if not callable(stop):
            return False
        loop = asyncio.get_running_loop()

        def begin(sig: int, frame: FrameType | None) -> None:
            logs.flush()
            log.info("SIGTERM: draining", extra={"drain_s": self.seconds})
            loop.call_later(self.seconds, end, sig, frame)

        def end(sig: int, frame: FrameType | None) -> None:
            # uvicorn ends the process by raising SIGTERM again after its shutdown, which
            # runs no exit handler: from here on, every line is written as it comes.
            logs.write_through()
            stop(sig, frame)

        def on_term(sig: int, frame: FrameType | None) -> None:
            if self.draining:
                return  # a second SIGTERM (the supervisor's, after the group's) changes nothing
            self.draining = True
            # A signal handler runs between two steps of the loop, maybe inside a write of
            # the log's: nothing here but the flag and the hand-over to the loop, scheduled
            # thread-safely so that a loop asleep in select() wakes up.
            loop.call_soon_threadsafe(begin, sig, frame)

        signal.signal(signal.SIGTERM, on_term)
        return True

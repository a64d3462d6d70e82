"""What the service says about itself: name, liveness, readiness, metrics."""

from __future__ import annotations

from . import __version__
from .metrics import CONTENT_TYPE
from .replies import Call, Reply, ko


async def root(call: Call) -> Reply:
    """Name and version. 200."""
    return Reply(200, {"name": "canwatch-authsvc", "version": __version__})


async def healthz(call: Call) -> Reply:
    """Liveness, no I/O. 200."""
    return Reply(200, {"status": "ok"})


async def readyz(call: Call) -> Reply:
    """Readiness: 200 when Redis answers, 503 when it does not or while draining (SIGTERM)."""
    if call.state.drain.draining:
        return ko(503, "Draining")
    await call.state.leases.ping()
    return Reply(200, {"status": "ok", "redis": "up"})


async def metrics(call: Call) -> Reply:
    """Prometheus text format. 200."""
    await call.state.active.refresh()
    return Reply(200, call.state.metrics.render(), {"Content-Type": CONTENT_TYPE})

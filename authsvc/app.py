"""The Starlette application: routes, JSON errors, metrics and access log, Redis lifespan."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp

from . import __version__, admin, api, logs
from .api import ko, response
from .edge import Edge
from .identity import IdentityResolver
from .ids import IdCodec
from .leases import Leases, StoreUnavailable
from .metrics import CONTENT_TYPE, Metrics
from .openapi import spec
from .redis_client import connect
from .service import Service
from .settings import Settings

log = logging.getLogger("authsvc")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, exc.detail)
    return response(ko(exc.status_code, message, headers=dict(exc.headers or {})))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    return response(ko(503, "Service Unavailable", headers={"Retry-After": "1"}))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return response(ko(500, "Internal Server Error"))


async def root(request: Request) -> Response:
    """Name and version. 200."""
    return JSONResponse({"name": "canwatch-authsvc", "version": __version__})


async def healthz(request: Request) -> Response:
    """Liveness, no I/O. 200."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: 200 when Redis answers, 503 when it does not."""
    svc: Service = request.app.state.svc
    await svc.leases.ping()
    return JSONResponse({"status": "ok", "redis": "up"})


async def metrics(request: Request) -> Response:
    """Prometheus text format. 200."""
    svc: Service = request.app.state.svc
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 description of every route. 200."""
    return JSONResponse(spec(__version__))


def create_app(settings: Settings, redis: Redis | None = None) -> Starlette:
    """The authsvc ASGI app. Its lifespan opens (or adopts) the Redis client and closes
    what it opened."""
    if settings.secret is None and settings.id_check == "mac":
        raise ValueError("AUTHSVC_SECRET must be set when AUTHSVC_ID_CHECK=mac")
    codec = IdCodec(settings.secret or "", check_mac=settings.id_check == "mac")
    metrics_ = Metrics(settings.multiproc_dir)
    store_was_up = [True]

    def store_state(up: bool, reason: str) -> None:
        metrics_.redis_up.set(1 if up else 0)
        if not up:
            metrics_.redis_errors.inc()
        if up != store_was_up[0]:
            store_was_up[0] = up
            if up:
                log.info("redis answers again")
            else:
                log.warning("redis unavailable", extra={"reason": reason})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis if redis is not None else connect(settings)
        app.state.svc = Service(
            settings=settings,
            codec=codec,
            identity=IdentityResolver(settings, codec),
            leases=Leases(client, settings, store_state),
            metrics=metrics_,
            log=log,
        )
        log.info(
            "authsvc started",
            extra={
                "version": __version__,
                "limit": settings.max_streams,
                "lease_ttl_s": settings.lease_ttl_s,
                "policy": settings.limit_policy,
                "enforce": settings.enforce,
                "identity": settings.identity,
                "id_check": settings.id_check,
            },
        )
        metrics_.redis_up.set(1)
        with contextlib.suppress(StoreUnavailable):  # not fatal: /readyz tells, calls retry
            await app.state.svc.leases.ping()
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over it stalled every request for ~18 ms here.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await app.state.svc.leases.close()
            if redis is None:
                await client.aclose()

    routes: list[Any] = [
        Route("/", root, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *api.routes,
        *admin.routes,
    ]
    access = logs.access_writer() if settings.access_log else None
    app = _EdgeFirst(
        edge=lambda inner: Edge(inner, metrics=metrics_, access=access),
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            StoreUnavailable: _store_unavailable,
            Exception: _server_error,
        },
    )
    # A trailing-slash redirect is an HTML-less 307 that non-browser clients rarely follow.
    assert isinstance(app.router, Router)
    app.router.redirect_slashes = False
    return app


class _EdgeFirst(Starlette):
    """Starlette with the Edge outside its own middleware stack: the hot routes then skip
    the error middleware's wrapping of every send (Edge answers their errors itself),
    and a 500 that the error middleware writes for another route is still counted."""

    def __init__(self, edge: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        self._edge = edge
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return self._edge(super().build_middleware_stack())


def app_from_env() -> Starlette:
    """Factory for uvicorn (``authsvc.app:app_from_env``): settings from the environment."""
    settings = Settings.from_env()
    logs.setup(settings.log_level)
    return create_app(settings)

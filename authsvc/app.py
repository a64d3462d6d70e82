"""The ASGI application: the hot path in front of Starlette, both built from the route
table, and the lifespan that owns Redis and the objects every handler shares."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from redis.asyncio import RedisCluster
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp

from . import __version__, logs
from .appstate import STATE_KEY, AppState, app_state
from .drain import Drain
from .hotpath import HotPath, encode
from .identity import IdentityResolver
from .ids import IdCodec
from .jwks import KeysUnavailable, ProviderKeys
from .leases import Leases, StoreUnavailable
from .leasetoken import TokenIssuer
from .metrics import Metrics
from .redis_client import connect
from .replies import Call, Reply, error_reply, ko
from .routes import ROUTES, Route, serve
from .settings import Settings
from .stats import ActiveGauges

log = logging.getLogger("authsvc")


def response(reply: Reply) -> Response:
    """A Starlette response carrying exactly what the hot path would send."""
    raw_headers, payload = encode(reply)
    answer = Response(payload, reply.status)
    answer.raw_headers = raw_headers
    return answer


def _endpoint(by_method: dict[str, Route]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        # Starlette answers HEAD wherever GET is allowed.
        route = by_method.get(request.method) or by_method["GET"]
        call = Call(app_state(request.scope["state"]), request.headers, request.path_params, request.body)
        return response(await serve(route, call, request.url.path))

    return endpoint


def _starlette_routes(routes: Iterable[Route]) -> list[StarletteRoute]:
    """One Starlette route per path, however many rows of the table share it: Starlette
    answers a 405 with the Allow of the first route whose path matches, so a path split
    over two routes (PUT and DELETE of an admin limit) would leave one method out."""
    by_path: dict[str, dict[str, Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, {}).update(dict.fromkeys(route.methods, route))
    return [
        StarletteRoute(path, _endpoint(by_method), methods=sorted(by_method))
        for path, by_method in by_path.items()
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, exc.detail)
    return response(ko(exc.status_code, message, dict(exc.headers or {})))


async def _error(request: Request, exc: Exception) -> Response:
    return response(error_reply(exc, request.url.path))


def _store_observer(metrics: Metrics) -> Callable[[bool, str, bool], None]:
    """What happens when Redis fails a call, and when it answers again."""
    metrics.redis_up.set(1)

    def observe(up: bool, reason: str, changed: bool) -> None:
        metrics.redis_up.set(1 if up else 0)
        if not up:
            metrics.redis_errors.inc()
        if changed and up:
            log.info("redis answers again")
        elif changed:
            log.warning("redis unavailable", extra={"reason": reason})

    return observe


def create_app(settings: Settings) -> ASGIApp:
    """The authsvc ASGI app. Its lifespan opens the Redis client and closes it again."""
    codec = IdCodec(settings.secret, check_mac=settings.id_check == "mac")
    metrics = Metrics(settings.multiproc_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, AppState]]:
        provider = None
        if settings.identity == "jwt" and settings.jwt_keys_from_provider:
            provider = ProviderKeys(settings, metrics)
            try:
                await provider.start()
            except KeysUnavailable as exc:
                # Refuse to start: every token would be refused, and /readyz would say ready.
                log.error(f"authsvc cannot start: {exc}")
                raise
        client = connect(settings)
        short = metrics.redis_wait_short.inc
        leases = Leases(client, settings, _store_observer(metrics), on_wait_short=short)
        gauges = (metrics.active_leases, metrics.active_users)
        state = AppState(
            settings=settings,
            codec=codec,
            identity=IdentityResolver(settings, codec, provider),
            leases=leases,
            metrics=metrics,
            log=log,
            drain=Drain(settings.drain_s),
            active=ActiveGauges(
                client,
                leases.stats_keys,
                settings.lease_ttl_ms,
                gauges,
                cluster=isinstance(client, RedisCluster),
            ),
            tokens=TokenIssuer(settings.secret, settings.lease_token_s)
            if settings.lease_token_s and settings.secret
            else None,
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
                **({"jwks_url": provider.url} if provider else {}),
            },
        )
        state.drain.install()
        with contextlib.suppress(StoreUnavailable):  # not fatal: /readyz tells, calls retry
            await state.leases.ping()
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over it stalled every request for ~18 ms here.
        gc.collect()
        gc.freeze()
        try:
            yield {STATE_KEY: state}
        finally:
            # Stopping (SIGTERM before the drain's handler was installed included): what
            # uvicorn logs from here is written as it comes (logs.BufferedHandler).
            logs.write_through()
            if provider is not None:
                await provider.stop()
            await state.leases.close()
            await client.aclose()

    starlette = Starlette(
        routes=_starlette_routes(route for route in ROUTES if not route.hot),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, StoreUnavailable: _error, Exception: _error},
    )
    # A trailing-slash redirect is an HTML-less 307 that non-browser clients rarely follow.
    starlette.router.redirect_slashes = False
    access = logs.access_writer() if settings.access_log else None
    return HotPath(starlette, ROUTES, metrics, access)


def app_from_env() -> ASGIApp:
    """Factory for uvicorn (``authsvc.app:app_from_env``): settings from the environment."""
    settings = Settings.from_env()
    logs.setup(settings.log_level)
    return create_app(settings)

"""Signing keys from the platform's identity provider: a JWKS, keys chosen by ``kid``.

The keys are fetched at start-up (no key, no start), again in the background every
``AUTHSVC_JWT_JWKS_REFRESH_S``, and again when a token names a ``kid`` the set lacks, at
most once per ``AUTHSVC_JWT_JWKS_REFETCH_MIN_S``: made-up kids cannot turn authsvc against
the provider. A request never waits on the provider: it is verified with the keys in hand,
and a token under a key not yet fetched is refused until the fetch it caused lands. When
the provider cannot be reached, or answers something unusable, the last keys stay in use.

Each process keeps keys of its own: workers and replicas fetch independently.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jwt import PyJWK

from .metrics import Metrics
from .settings import Settings

# Published sets are a few kB (a handful of keys); anything far larger is not a JWKS.
MAX_BYTES = 256 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"

log = logging.getLogger("authsvc")


class KeysUnavailable(Exception):
    """No usable signing key could be had from the provider: jwt identity cannot start."""


class FetchFailed(Exception):
    """One fetch failed; ``outcome`` is ``unreachable`` or ``invalid``."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass(frozen=True)
class KeySet:
    """The usable keys of one fetch, by kid, and when they were fetched (time.time())."""

    keys: Mapping[str, PyJWK]
    fetched_at: float
    skipped: int  # keys of the document that cannot verify a token here


def get(url: str, timeout_s: float) -> bytes:
    """The body of GET ``url``, within ``timeout_s`` in all and MAX_BYTES; FetchFailed."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            if answer.status != 200:
                raise FetchFailed("unreachable", f"HTTP {answer.status}")
            body = b""
            while chunk := answer.read(64 * 1024):
                body += chunk
                if len(body) > MAX_BYTES:
                    raise FetchFailed("invalid", f"larger than {MAX_BYTES} bytes")
                if time.monotonic() > deadline:  # a server that sends slowly, byte by byte
                    raise FetchFailed("unreachable", f"not answered within {timeout_s:g} s")
            return body
    except urllib.error.HTTPError as exc:
        raise FetchFailed("unreachable", f"HTTP {exc.code}") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, timeout, bad answer
        reason = getattr(exc, "reason", exc)
        raise FetchFailed("unreachable", str(reason) or type(exc).__name__) from None


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FetchFailed("invalid", "not JSON") from None
    if not isinstance(document, dict):
        raise FetchFailed("invalid", "not a JSON object")
    return document


def parse_key_set(body: bytes, algorithms: tuple[str, ...], now: float) -> KeySet:
    """The keys of a JWKS document that can verify a token: a ``kid``, ``use`` absent or
    ``sig``, and an algorithm (the key's ``alg``, or its type's) among ``algorithms``.
    FetchFailed("invalid") when the document is not a JWKS or holds no such key."""
    document = parse_json(body)
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise FetchFailed("invalid", "no keys array")
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(entry)  # the key's own alg, else its type's default
        except Exception:  # PyJWK raises NotImplementedError (alg none), TypeError (alg a list), ...
            continue
        if key.algorithm_name in algorithms:
            keys[entry["kid"]] = key
    if not keys:
        raise FetchFailed(
            "invalid", f"none of its {len(entries)} keys has a kid and verifies {', '.join(algorithms)}"
        )
    return KeySet(keys, now, len(entries) - len(keys))


class ProviderKeys:
    """The provider's signing keys, kept fresh by one background task per process."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._algorithms = settings.effective_jwt_algorithms
        self._url = settings.jwt_jwks_url or ""
        self._set = KeySet({}, 0.0, 0)
        self._wake = asyncio.Event()
        self._next_refetch = 0.0  # monotonic time from which an unknown kid may cause a fetch
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The JWKS' URL: the setting's, or the one discovery found."""
        return self._url

    def key(self, kid: str) -> PyJWK | None:
        """The key of ``kid``, or None; None asks the background task for a fetch, at most
        once per AUTHSVC_JWT_JWKS_REFETCH_MIN_S. Never waits (the hot path)."""
        key = self._set.keys.get(kid)
        if key is None:
            self._metrics.jwks_unknown_kid.inc()
            now = time.monotonic()
            if now >= self._next_refetch:
                self._next_refetch = now + self._settings.jwt_jwks_refetch_min_s
                self._wake.set()
        return key

    async def start(self) -> None:
        """Fetch the keys (after discovery, if on) and start the background refresh;
        KeysUnavailable, with the reason, when no usable key can be had."""
        try:
            if self._settings.jwt_discovery:
                self._url = await asyncio.to_thread(self._discover)
            await self._refresh("startup")
        except FetchFailed as exc:
            raise KeysUnavailable(
                f"jwt identity has no signing key: {self._url or 'discovery'}: {exc.reason}"
            ) from None
        self._task = asyncio.create_task(self._run(), name="jwks-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _discover(self) -> str:
        issuer = self._settings.jwt_issuer or ""
        url = issuer.rstrip("/") + DISCOVERY_PATH
        try:
            document = parse_json(get(url, self._settings.jwt_jwks_timeout_s))
        except FetchFailed as exc:
            raise FetchFailed(exc.outcome, f"{url}: {exc.reason}") from None
        jwks_uri = document.get("jwks_uri")
        # OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer asked.
        if document.get("issuer") != issuer:
            raise FetchFailed("invalid", f"{url}: its issuer is not {issuer}")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise FetchFailed("invalid", f"{url}: no http(s) jwks_uri")
        log.info("jwks found by discovery", extra={"issuer": issuer, "jwks_uri": jwks_uri})
        return jwks_uri

    async def _run(self) -> None:
        while True:
            trigger = "unknown_kid"
            try:
                await asyncio.wait_for(self._wake.wait(), self._settings.jwt_jwks_refresh_s)
            except TimeoutError:
                trigger = "scheduled"
            self._wake.clear()
            try:
                await self._refresh(trigger)
            except Exception as exc:  # the task must outlive any one fetch, whatever it met
                age = time.time() - self._set.fetched_at
                reason = exc.reason if isinstance(exc, FetchFailed) else repr(exc)
                log.warning(
                    "jwks fetch failed: the last keys stay in use",
                    extra={
                        "url": self._url,
                        "trigger": trigger,
                        "reason": reason,
                        "keys_age_s": round(age),
                    },
                )

    async def _refresh(self, trigger: str) -> None:
        """One fetch; the new set replaces the old only when it holds a usable key."""
        try:
            body = await asyncio.to_thread(get, self._url, self._settings.jwt_jwks_timeout_s)
            fresh = parse_key_set(body, self._algorithms, time.time())
        except FetchFailed as exc:
            self._metrics.jwks_fetches.labels(trigger, exc.outcome).inc()
            raise
        self._metrics.jwks_fetches.labels(trigger, "ok").inc()
        if set(fresh.keys) != set(self._set.keys):
            log.info(
                "jwks keys in use",
                extra={
                    "url": self._url,
                    "trigger": trigger,
                    "kids": sorted(fresh.keys),
                    "skipped": fresh.skipped,
                },
            )
        self._set = fresh
        self._metrics.jwks_keys.set(len(fresh.keys))
        self._metrics.jwks_last_success.set(fresh.fetched_at)

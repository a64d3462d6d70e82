"""Prometheus metrics, on a registry of their own.

With several worker processes, prometheus-client's multiprocess mode is used: the
CLI points PROMETHEUS_MULTIPROC_DIR at a fresh folder before the workers start, every
worker writes its values there, and /metrics adds them up.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from . import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DECISION_KINDS = ("activate", "heartbeat", "gate")
DECISION_OUTCOMES = ("allowed", "limit", "not_active", "invalid", "shadow_denied", "error")
JWKS_TRIGGERS = ("startup", "scheduled", "unknown_kid")
JWKS_OUTCOMES = ("ok", "unreachable", "invalid")


class Metrics:
    """Every metric authsvc exports; one instance per app."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        r = self.registry
        self.requests = Counter(
            "authsvc_http_requests_total",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "authsvc_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.decisions = Counter(
            "authsvc_decisions_total",
            "Lease decisions by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.evictions = Counter(
            "authsvc_evictions_total", "Leases ended to admit a newer stream", registry=r
        )
        self.replacements = Counter(
            "authsvc_device_replacements_total",
            "Leases ended because their device activated another stream",
            registry=r,
        )
        self.redis_errors = Counter(
            "authsvc_redis_errors_total", "Redis calls that failed or timed out", registry=r
        )
        self.redis_wait_short = Counter(
            "authsvc_redis_wait_short_total",
            "Activations answered before AUTHSVC_REDIS_WAIT_REPLICAS replicas acknowledged them",
            registry=r,
        )
        self.redis_up = Gauge(
            "authsvc_redis_up",
            "1 when the last Redis call succeeded, else 0",
            registry=r,
            multiprocess_mode="livemin",
        )
        # Read from Redis on a scrape (authsvc/stats.py) by whichever worker is asked: the
        # freshest worker's value is the answer. Global figures: every replica reports them.
        self.active_leases = Gauge(
            "authsvc_active_leases",
            "Live leases in Redis, all replicas together (may include some expired < TTL/8 ago)",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.active_users = Gauge(
            "authsvc_active_users",
            "Users with a live lease, all replicas together",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        # jwt identity with the provider's keys (authsvc/jwks.py); each worker fetches its own.
        self.jwks_fetches = Counter(
            "authsvc_jwks_fetches_total",
            "Fetches of the identity provider's JWKS, by what caused them and their outcome",
            ["trigger", "outcome"],
            registry=r,
        )
        self.jwks_unknown_kid = Counter(
            "authsvc_jwks_unknown_kid_total",
            "Tokens refused because they name a kid the key set lacks",
            registry=r,
        )
        self.jwks_last_success = Gauge(
            "authsvc_jwks_last_success_timestamp_seconds",
            "When the keys in use were fetched (the stalest worker's); time() minus it is their age",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.jwks_keys = Gauge(
            "authsvc_jwks_keys",
            "Usable signing keys in the set in use (the fewest of any worker)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.build_info = Gauge(
            "authsvc_build_info",
            "Version of authsvc",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(__version__).set(1)
        # Every decision's child made at once (so that each shows as 0 before it happens),
        # and kept: labels() costs more than the increment.
        self._decisions = {
            (kind, outcome): self.decisions.labels(kind, outcome)
            for kind in DECISION_KINDS
            for outcome in DECISION_OUTCOMES
        }
        for trigger in JWKS_TRIGGERS:
            for outcome in JWKS_OUTCOMES:
                self.jwks_fetches.labels(trigger, outcome)
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request; label children are cached (this is the hot path)."""
        key = (route, method, str(status))
        pair = self._children.get(key)
        if pair is None:
            pair = (self.requests.labels(*key), self.latency.labels(route))
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def decision(self, kind: str, outcome: str) -> None:
        child = self._decisions.get((kind, outcome))
        (child or self.decisions.labels(kind, outcome)).inc()

    def render(self) -> bytes:
        """The text exposition; with workers, the sum over every worker's files."""
        if self.multiprocess_dir:
            _forget_dead_workers(self.multiprocess_dir)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def _forget_dead_workers(path: str) -> None:
    """Drop the live-gauge files of workers that died (uvicorn replaces a crashed worker
    with a new process): their last values would otherwise count for ever."""
    for file in Path(path).glob("gauge_live*_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, owned by someone else

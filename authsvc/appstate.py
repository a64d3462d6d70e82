"""The objects every handler shares, built once per app by its lifespan and handed to
each request through the lifespan state (``scope["state"]``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .drain import Drain
from .identity import IdentityResolver
from .ids import IdCodec
from .leases import Leases
from .leasetoken import TokenIssuer
from .metrics import Metrics
from .settings import Settings
from .stats import ActiveGauges

STATE_KEY = "authsvc"


@dataclass(frozen=True)
class AppState:
    settings: Settings
    codec: IdCodec
    identity: IdentityResolver
    leases: Leases
    metrics: Metrics
    log: logging.Logger
    drain: Drain  # set on SIGTERM: /readyz answers 503 while requests are still served
    active: ActiveGauges  # the active leases and users gauges, read from Redis on scrape
    tokens: TokenIssuer | None = None  # lease tokens for nginx, when AUTHSVC_LEASE_TOKEN_S is on


def app_state(scope_state: Mapping[str, Any]) -> AppState:
    """The AppState in a request's lifespan state."""
    state = scope_state[STATE_KEY]
    assert isinstance(state, AppState)
    return state

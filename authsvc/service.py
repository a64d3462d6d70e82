"""What every handler needs, built once per app in its lifespan."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .identity import IdentityResolver
from .ids import IdCodec
from .leases import Leases
from .metrics import Metrics
from .settings import Settings


@dataclass
class Service:
    settings: Settings
    codec: IdCodec
    identity: IdentityResolver
    leases: Leases
    metrics: Metrics
    log: logging.Logger

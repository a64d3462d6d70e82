"""The one way a test waits: on the condition it needs, with a generous bound."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(check: Callable[[], bool], timeout: float = 30.0, step: float = 0.05) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass (a bound for a loaded
    machine, not a speed claim); its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()

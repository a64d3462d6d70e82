"""The service package holds the service only: the local stack is tooling around it."""

from __future__ import annotations

import subprocess
import sys


def test_the_service_never_loads_the_stack() -> None:
    code = (
        "import sys, authsvc.app, authsvc.cli\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('authsvc.stack'))\n"
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"the service imported {out.stdout.strip()}"
